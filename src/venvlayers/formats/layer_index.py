"""The layer index: every member of a published tar archive and where its bytes are.

Published beside the archive as ``<archive stem>.index.json.xz`` (a release asset, like
the SBOM). Each file has its path below the layer root, size, mode and sha256, and the
archive's byte range ``[start, end)`` of the xz streams / zstd frames that hold it
(``archive.units``) with ``skip``, where its bytes begin in their decompressed output.
The index's own name and sha256 are in the layer's published metadata
(``venvlayers_index``, a field venvstacks ignores), so deploy trusts it exactly as far as it
trusts the metadata, and every file fetched through it is checked against its sha256.

The JSON is sorted and compact, compressed as one xz stream: the same archive gives the
same bytes.
"""

from __future__ import annotations

import hashlib
import json
import lzma
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from venvlayers.core.errors import VenvlayersError
from venvlayers.formats.assets import layer_index_name
from venvlayers.formats.models import LayerMetadata

FORMAT = "venvlayers-layer-index"
#: A decompressed index bigger than this is refused (a bomb, or not an index).
MAX_INDEX_BYTES = 512 << 20


class IndexEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    """Below the layer root, posix; "" is the root folder."""
    kind: Literal["dir", "file", "symlink"]
    mode: int
    size: int = 0
    sha256: str | None = None
    target: str | None = None
    range: tuple[int, int] | None = None
    skip: int | None = None

    @model_validator(mode="after")
    def _complete(self) -> IndexEntry:
        if self.kind == "file":
            if self.sha256 is None or len(self.sha256) != 64 or self.size < 0:
                raise ValueError(f"file {self.path!r} needs a size and a sha256")
            if self.size and (self.range is None or self.skip is None or self.skip < 0):
                raise ValueError(f"file {self.path!r} needs a range and a skip")
            if self.range is not None and not 0 <= self.range[0] < self.range[1]:
                raise ValueError(f"file {self.path!r} has an empty or negative range")
        if self.kind == "symlink" and not self.target:
            raise ValueError(f"symlink {self.path!r} needs a target")
        return self


class LayerIndex(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["venvlayers-layer-index"] = "venvlayers-layer-index"
    format_version: Literal[1] = 1
    archive_name: str
    archive_size: int
    archive_sha256: str
    archive_format: Literal["tar.xz", "tar.zst"]
    root: str
    entries: list[IndexEntry]

    @model_validator(mode="after")
    def _ranges_inside(self) -> LayerIndex:
        for entry in self.entries:
            if entry.range is not None and entry.range[1] > self.archive_size:
                raise ValueError(f"file {entry.path!r}: its range ends past the archive")
        return self

    def to_bytes(self) -> bytes:
        text = json.dumps(
            self.model_dump(mode="json", exclude_none=True),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        return lzma.compress(text.encode("utf-8"), format=lzma.FORMAT_XZ, preset=6)


def load_index(
    data: bytes, sha256: str, label: str, error: type[VenvlayersError] = VenvlayersError
) -> LayerIndex:
    """The index in ``data``, after checking it against the sha256 the metadata gives."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise error(
            f"{label}: sha256 {actual} does not match venvlayers_index.sha256 in the metadata "
            f"({sha256}); the index was altered — refusing it"
        )
    try:
        decoder = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        text = decoder.decompress(data, max_length=MAX_INDEX_BYTES)
        if not decoder.eof:
            raise error(f"{label}: not a complete layer index (or over {MAX_INDEX_BYTES} bytes)")
        return LayerIndex.model_validate_json(text)
    except lzma.LZMAError as exc:
        raise error(f"{label}: not an xz-compressed layer index ({exc})") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise error(f"{label}: field '{where}': {first['msg']}; publish again") from None


def index_problem(archives_dir: Path, meta: LayerMetadata) -> str | None:
    """What is wrong with the layer index the metadata names, in an output folder (merge):
    None when the metadata names none, or it is there with its sha256."""
    ref = meta.venvlayers_index
    if ref is None or meta.archive_name is None:
        return None
    expected = layer_index_name(meta.archive_name)
    if ref.name != expected:
        return f"venvlayers_index.name is {ref.name!r}, not {expected!r}; publish again"
    path = archives_dir / ref.name
    if not path.is_file() or path.is_symlink():
        return f"layer index {ref.name} is missing from {archives_dir}; upload it with the archive"
    try:
        load_index(path.read_bytes(), ref.sha256, str(path))
    except (VenvlayersError, OSError) as exc:
        return str(exc)
    return None
