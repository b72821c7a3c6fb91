"""Pydantic models of every JSON file venvlayers writes or reads.

Field names of the venvstacks formats are kept exactly (DESIGN.md, "Formats we keep
compatible"); ``extra="allow"`` on read models lets files from newer tools load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from venvlayers.errors import VenvlayersError
from venvlayers.fsutil import write_json_atomic

M = TypeVar("M", bound=BaseModel)


class FileModel(BaseModel):
    model_config = ConfigDict(extra="allow")

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    def write(self, path: Path) -> bool:
        """Write sorted, indented JSON; True if the file changed."""
        return write_json_atomic(path, self.dump())


def read_model(model: type[M], path: Path, error: type[VenvlayersError] = VenvlayersError) -> M:
    try:
        return model.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise error(f"{path}: not found", path=path) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise error(
            f"{path}: field '{where}': {first['msg']}; regenerate this file", path=path
        ) from None


class LockMetadata(FileModel):
    """``requirements/<layer>/pylock.<layer>.meta.json``."""

    requirements_hash: str
    lock_input_hash: str
    other_inputs_hash: str
    version_inputs_hash: str
    lock_version: int
    locked_at: str


class LayerConfig(FileModel):
    """``share/venv/metadata/venvstacks_layer.json`` inside a deployed layer."""

    python: str
    py_version: str
    base_python: str
    site_dir: str
    pylib_dirs: list[str]
    dynlib_dirs: list[str]
    launch_module: str | None = None


class ArchiveHashes(FileModel):
    sha256: str


class SupportModule(FileModel):
    name: str
    hash: str


class LayerMetadata(FileModel):
    """Published/exported layer metadata (``env_metadata/<layer>.json``)."""

    layer_name: str
    install_target: str
    requirements_hash: str
    lock_version: int
    locked_at: str
    runtime_layer: str | None = None
    python_implementation: str | None = None
    bound_to_implementation: bool | None = None
    required_layers: list[str] | None = None
    app_launch_module: str | None = None
    app_launch_module_hash: str | None = None
    app_support_modules: list[SupportModule] | None = None
    # Archive fields (publish only)
    archive_build: int | None = None
    archive_name: str | None = None
    target_platform: str | None = None
    archive_size: int | None = None
    archive_hashes: ArchiveHashes | None = None


class StackManifest(FileModel):
    """``__venvstacks__/<platform>/venvstacks.json``: every layer published for a platform."""

    layers: dict[str, list[LayerMetadata]]


class PublishInfo(FileModel):
    """``__venvstacks__/<platform>/venvlayers-publish.json``: what one publish job ran."""

    tool_version: str
    spec_hash: str
    platform: str
    layers: list[str]
    """Every layer the spec targets on this platform (whether or not it was published)."""
