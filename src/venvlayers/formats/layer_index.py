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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeGuard

from venvlayers.core.errors import VenvlayersError
from venvlayers.formats.assets import layer_index_name

FORMAT = "venvlayers-layer-index"
#: A decompressed index bigger than this is refused (a bomb, or not an index).
MAX_INDEX_BYTES = 512 << 20

Kind = Literal["dir", "file", "symlink"]


class IndexRef(Protocol):
    """``venvlayers_index`` of a layer's metadata (the model's or the record's)."""

    @property
    def name(self) -> str: ...

    @property
    def sha256(self) -> str: ...


class IndexProblem(ValueError):
    """What is wrong in an index document, and where."""


@dataclass(frozen=True)
class IndexEntry:
    path: str
    """Below the layer root, posix; "" is the root folder."""
    kind: Kind
    mode: int
    size: int = 0
    sha256: str | None = None
    target: str | None = None
    range: tuple[int, int] | None = None
    skip: int | None = None

    def dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "kind": self.kind, "mode": self.mode}
        if self.kind == "file":
            out |= {"size": self.size, "sha256": self.sha256}
            if self.range is not None:
                out |= {"range": list(self.range), "skip": self.skip}
        if self.target is not None:
            out["target"] = self.target
        return out

    @staticmethod
    def parse(value: Any, where: str, archive_size: int) -> IndexEntry:
        if not isinstance(value, dict):
            raise IndexProblem(f"{where}: not an object")
        path, kind, mode = value.get("path"), value.get("kind"), value.get("mode")
        if not isinstance(path, str) or kind not in ("dir", "file", "symlink"):
            raise IndexProblem(f"{where}: needs a path and a kind (dir, file or symlink)")
        if not _is_int(mode) or not 0 <= mode <= 0o7777:
            raise IndexProblem(f"{where} ({path!r}): mode is not a permission number")
        if kind == "dir":
            return IndexEntry(path, "dir", mode)
        if kind == "symlink":
            target = value.get("target")
            if not isinstance(target, str) or not target:
                raise IndexProblem(f"{where} ({path!r}): a symlink needs a target")
            return IndexEntry(path, "symlink", mode, target=target)
        size, sha256 = value.get("size"), value.get("sha256")
        if not _is_int(size) or size < 0 or not _is_sha256(sha256):
            raise IndexProblem(f"{where} ({path!r}): a file needs a size and a sha256")
        if not size:
            return IndexEntry(path, "file", mode, 0, sha256)
        span, skip = value.get("range"), value.get("skip")
        if (
            not isinstance(span, list)
            or len(span) != 2
            or not all(_is_int(x) for x in span)
            or not 0 <= span[0] < span[1] <= archive_size
            or not _is_int(skip)
            or skip < 0
        ):
            raise IndexProblem(
                f"{where} ({path!r}): its range is not inside the archive "
                f"({archive_size} bytes) or its skip is missing"
            )
        return IndexEntry(path, "file", mode, size, sha256, range=(span[0], span[1]), skip=skip)


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_sha256(value: Any) -> TypeGuard[str]:
    return (
        isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    )


@dataclass(frozen=True)
class LayerIndex:
    archive_name: str
    archive_size: int
    archive_sha256: str
    archive_format: Literal["tar.xz", "tar.zst"]
    root: str
    entries: list[IndexEntry]

    def to_bytes(self) -> bytes:
        document = {
            "format": FORMAT,
            "format_version": 1,
            "archive_name": self.archive_name,
            "archive_size": self.archive_size,
            "archive_sha256": self.archive_sha256,
            "archive_format": self.archive_format,
            "root": self.root,
            "entries": [e.dump() for e in self.entries],
        }
        data = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        raw = data.encode("utf-8")
        # preset 6 with a dictionary no bigger than the document: the same matches, without
        # setting up preset 6's 8 MiB dictionary for every index (a quarter of its time)
        window = min(8 << 20, max(4096, 1 << max(len(raw) - 1, 1).bit_length()))
        filters = [{"id": lzma.FILTER_LZMA2, "preset": 6, "dict_size": window}]
        return lzma.compress(raw, format=lzma.FORMAT_XZ, filters=filters)

    @staticmethod
    def parse(document: Any) -> LayerIndex:
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise IndexProblem(f"not a {FORMAT} document")
        if document.get("format_version") != 1:
            raise IndexProblem(f"format_version {document.get('format_version')!r} is not 1")
        name, size, sha256 = (
            document.get(k) for k in ("archive_name", "archive_size", "archive_sha256")
        )
        fmt, root, entries = (document.get(k) for k in ("archive_format", "root", "entries"))
        if not isinstance(name, str) or not _is_int(size) or size < 0 or not _is_sha256(sha256):
            raise IndexProblem("archive_name, archive_size or archive_sha256 missing or invalid")
        if fmt not in ("tar.xz", "tar.zst") or not isinstance(root, str):
            raise IndexProblem("archive_format must be tar.xz or tar.zst, root a name")
        if not isinstance(entries, list):
            raise IndexProblem("entries is not a list")
        parsed = [IndexEntry.parse(e, f"entries.{n}", size) for n, e in enumerate(entries)]
        return LayerIndex(name, size, sha256, fmt, root, parsed)


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
        return LayerIndex.parse(json.loads(text))
    except lzma.LZMAError as exc:
        raise error(f"{label}: not an xz-compressed layer index ({exc})") from None
    except (ValueError, RecursionError) as exc:  # IndexProblem, JSON, UTF-8
        raise error(f"{label}: {exc}; publish again") from None


def index_problem(archives_dir: Path, archive_name: str | None, ref: IndexRef | None) -> str | None:
    """What is wrong with the layer index a layer's metadata names, in an output folder
    (merge): None when the metadata names none, or it is there with its sha256."""
    if ref is None or archive_name is None:
        return None
    expected = layer_index_name(archive_name)
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
