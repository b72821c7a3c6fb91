"""Running the venvlayers CLI in-process from tests, and pointing specs at the local index."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import copy_source


@dataclass
class Run:
    """What one CLI call returned and printed."""

    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def index_table(url: str) -> str:
    """A ``[[tool.uv.index]]`` table making ``url`` the spec's default index."""
    return f'\n[[tool.uv.index]]\nname = "local"\nurl = "{url}"\ndefault = true\n'


#: Test stacks (tests/data/stacks/<name>/venvstacks.toml plus launch modules).
STACKS = Path(__file__).parent.parent / "data" / "stacks"
#: The layers of the "layered" test stack, in stack order.
LAYERED_LAYERS = [
    "cpython-3.12",
    "framework-base",
    "framework-upper",
    "framework-side",
    "app-one",
    "app-two",
]


def make_stack(dest: Path, index_url: str, name: str = "layered") -> Path:
    """Copy a test stack into ``dest`` and point it at ``index_url``; return the spec path."""
    copy_source(STACKS / name, dest)
    spec = dest / "venvstacks.toml"
    spec.write_text(spec.read_text() + index_table(index_url))
    return spec
