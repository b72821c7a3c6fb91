"""Pydantic models of every JSON file venvlayers writes or reads.

Field names of the venvstacks formats are kept exactly (DESIGN.md, "Formats we keep
compatible"); ``extra="allow"`` on read models lets files from newer tools load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, RootModel, ValidationError

from venvlayers.core.errors import VenvlayersError
from venvlayers.core.fsutil import dumps_json, write_json_atomic, write_text_atomic

M = TypeVar("M", bound=BaseModel)

# The published layout (layout.py): <output>/__venvstacks__/venvstacks[-<platform>].json
# and env_metadata/<layer>[-<platform>].json
METADATA_DIR = "__venvstacks__"
MANIFEST_NAME = "venvstacks.json"
ENV_METADATA_DIR = "env_metadata"
INDEX_NAME = "venvstacks-index.json"


class FileModel(BaseModel):
    model_config = ConfigDict(extra="allow")

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    def text(self) -> str:
        """The sorted, indented JSON ``write`` writes."""
        return dumps_json(self.dump())

    def write(self, path: Path) -> bool:
        """Write ``text()``; True if the file changed."""
        return write_text_atomic(path, self.text())


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


class LayerIndexRef(FileModel):
    """``venvlayers_index`` in a layer's metadata: the layer index published beside its
    archive (``formats/layer_index``). venvstacks reads metadata as plain JSON and ignores it."""

    name: str
    sha256: str


class SupportModule(FileModel):
    name: str
    hash: str


class VenvstacksFile(FileModel):
    """A file venvstacks also writes: JSON byte for byte as it does (ASCII, ``\\u`` escapes)."""

    def text(self) -> str:
        return dumps_json(self.dump(), ascii_only=True)


class LayerMetadata(VenvstacksFile):
    """Published/exported layer metadata (``env_metadata/<layer>[-<platform>].json``)."""

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
    # venvlayers only (publish of tar archives): what deploy needs to fetch only changes
    venvlayers_index: LayerIndexRef | None = None

    @property
    def archive_sha256(self) -> str:
        """The archive's sha256 (deploy refuses metadata without one before using this)."""
        if self.archive_hashes is None:
            raise ValueError(f"{self.layer_name}: the metadata has no archive_hashes")
        return self.archive_hashes.sha256


class StackManifest(VenvstacksFile):
    """``__venvstacks__/venvstacks[-<platform>].json``: every layer published for a platform."""

    layers: dict[str, list[LayerMetadata]]


class PublishInfo(FileModel):
    """``__venvstacks__/venvlayers-publish[-<platform>].json``: what one publish job ran."""

    tool_version: str
    spec_hash: str
    platform: str
    layers: list[str]
    """Every layer the spec targets on this platform (whether or not it was published)."""


class BuildStamp(FileModel):
    """``_build/_stamps/<layer>.json``: every input of a layer's build (unchanged: no rebuild)."""

    tool: str
    lock: str
    python: str
    dependencies: list[str]
    lower_locks: dict[str, str]
    dynlib_exclude: list[str]
    modules: dict[str, str] | None = None
    """Launch and support module hashes, application layers only."""


class PublishStamp(FileModel):
    """``_build/_stamps/<layer>.publish-<folder>.json``: the archive the last publish wrote."""

    key: str
    """sha256 of everything the archive's bytes and name depend on."""
    archive: str
    mtime_ns: int


class IndexArchive(FileModel):
    archive_name: str
    archive_size: int
    sha256: str
    archive_build: int | None = None
    metadata: str
    """Path of the layer's ``env_metadata`` file, relative to the index."""


class IndexLayer(FileModel):
    category: str
    install_target: str
    lock_version: int
    requirements_hash: str
    locked_at: str
    platforms: dict[str, IndexArchive]


class StackIndex(FileModel):
    """``venvstacks-index.json``: every layer of the stack on every platform."""

    format_version: int = 1
    platforms: list[str]
    layers: dict[str, IndexLayer]
    tool_version: str | None = None
    spec_hash: str | None = None


class RuntimeArch(FileModel):
    family: str
    variant: str | None


class RuntimeDownload(FileModel):
    """One CPython archive in uv's python downloads JSON (uv's own field names)."""

    name: str
    arch: RuntimeArch
    os: str
    libc: str
    major: int
    minor: int
    patch: int
    prerelease: str
    url: str
    sha256: str
    variant: str | None
    build: str | None = None

    def dump(self) -> dict[str, Any]:
        # uv's format spells absent values as null, except ``build``, absent when unknown
        return self.model_dump(mode="json", exclude_unset=True)


class RuntimeDownloads(RootModel[dict[str, RuntimeDownload]]):
    """The downloads JSON that ``UV_PYTHON_DOWNLOADS_JSON_URL`` points uv at, keyed like uv."""

    def write(self, path: Path) -> bool:
        return write_json_atomic(path, {key: entry.dump() for key, entry in self.root.items()})


class DeployedLayer(FileModel):
    """One layer of a deployment: which archive was unpacked for it."""

    install_target: str
    layer_name: str
    archive_name: str
    archive_sha256: str
    app_launch_module: str | None = None


class DeploymentRecord(FileModel):
    """``<target>/.venvlayers/deployments/<id>/deployment.json``: what one deploy put in place.

    Written into the staged deployment before the switch, so the deployment the
    ``current`` link names always carries the truth about itself.
    """

    format_version: int = 1
    id: str
    source: str
    platform: str
    deployed_at: str
    layers: list[DeployedLayer]
