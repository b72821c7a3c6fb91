"""Running the venvlayers CLI in-process from tests, and pointing specs at the local index."""

from __future__ import annotations

from dataclasses import dataclass


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
