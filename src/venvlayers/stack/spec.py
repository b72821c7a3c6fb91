"""The stack spec as the rest of venvlayers sees it: layer kinds, each layer as declared,
the whole spec. ``spec_file`` reads and validates a ``venvstacks.toml`` into these (one layer
at a time, with ``layer_tables``); checks that need the whole layer graph (references,
cycles, C3 order, inherited indexes) live in ``graph``.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from venvlayers.core.platforms import Platform


class LayerKind(StrEnum):
    RUNTIME = "runtime"
    FRAMEWORK = "framework"
    APPLICATION = "application"

    @property
    def table(self) -> str:
        """The spec's array-of-tables key for this kind."""
        return {"runtime": "runtimes", "framework": "frameworks", "application": "applications"}[
            self.value
        ]

    @property
    def prefix(self) -> str:
        return {"runtime": "", "framework": "framework-", "application": "app-"}[self.value]


class SpecWarning(UserWarning):
    """A deprecated but still accepted spec field."""


class LayerSpec(BaseModel):
    """One layer exactly as declared (names are the spec's, without kind prefixes)."""

    model_config = ConfigDict(frozen=True)

    kind: LayerKind
    name: str
    requirements: tuple[str, ...] = ()
    platforms: tuple[Platform, ...] | None = None
    linux_target: tuple[int, int] | None = None
    macosx_target: tuple[int, int] | None = None
    linux_target_text: str | None = None
    """The spec's own text (venvstacks hashes it into the lock metadata)."""
    macosx_target_text: str | None = None
    dynlib_exclude: tuple[str, ...] = ()
    package_indexes: dict[str, str] = {}
    priority_indexes: tuple[str, ...] = ()
    index_overrides: dict[str, str] = {}
    versioned: bool = False
    python_implementation: str | None = None
    runtime: str | None = None
    frameworks: tuple[str, ...] | None = None
    launch_module: str | None = None
    support_modules: tuple[str, ...] = ()
    line: int | None = None

    @property
    def layer_name(self) -> str:
        """The prefixed name: ``framework-x``, ``app-y``; runtimes keep their name."""
        return self.kind.prefix + self.name

    @property
    def py_version(self) -> str | None:
        """``X.Y.Z`` of a runtime layer."""
        if self.python_implementation is None:
            return None
        return self.python_implementation.partition("@")[2]


class StackSpec(BaseModel):
    """The whole spec: layers in file order (runtimes, frameworks, applications)."""

    model_config = ConfigDict(frozen=True)

    path: Path
    layers: tuple[LayerSpec, ...]
    uv_config: dict[str, Any] = {}
    uv_config_path: Path | None = None

    @property
    def spec_dir(self) -> Path:
        return self.path.parent

    def index_names(self) -> list[str]:
        return [str(i.get("name")) for i in self.uv_config.get("index", []) if isinstance(i, dict)]


def module_name(relative: str) -> str:
    """Import name of a launch/support module path: ``mods/app.py`` -> ``app``."""
    path = Path(relative)
    return path.stem if path.suffix == ".py" else path.name
