"""Writing the layer index beside a published tar archive (``formats/layer_index``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from venvlayers.archive.formats import ArchiveInfo
from venvlayers.core.fsutil import atomic_path
from venvlayers.formats.assets import layer_index_name
from venvlayers.formats.layer_index import IndexEntry, LayerIndex
from venvlayers.formats.models import LayerIndexRef


def build_index(archive: Path, root: str, info: ArchiveInfo) -> LayerIndex | None:
    """The index of ``archive`` as ``write_archive`` laid it out (None: a zip archive)."""
    layout = info.layout
    if layout is None:
        return None
    entries = []
    for entry, (start, end, skip) in zip(layout.entries, layout.placements(), strict=True):
        if entry.kind == "file":
            sized = entry.size > 0
            entries.append(
                IndexEntry(
                    path=entry.rel,
                    kind="file",
                    mode=entry.mode,
                    size=entry.size,
                    sha256=layout.digests[entry.rel],
                    range=(start, end) if sized else None,
                    skip=skip if sized else None,
                )
            )
        elif entry.kind == "symlink":
            entries.append(
                IndexEntry(path=entry.rel, kind="symlink", mode=entry.mode, target=entry.target)
            )
        else:
            entries.append(IndexEntry(path=entry.rel, kind="dir", mode=entry.mode))
    return LayerIndex(
        archive_name=archive.name,
        archive_size=info.size,
        archive_sha256=info.sha256,
        archive_format="tar.xz" if layout.fmt == "tar.xz" else "tar.zst",
        root=root,
        entries=entries,
    )


def write_index(archive: Path, root: str, info: ArchiveInfo) -> LayerIndexRef | None:
    """Write ``<archive stem>.index.json.xz`` beside ``archive``; the metadata's reference."""
    index = build_index(archive, root, info)
    if index is None:
        return None
    data = index.to_bytes()
    path = archive.with_name(layer_index_name(archive.name))
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
        tmp.chmod(0o644)
    return LayerIndexRef(name=path.name, sha256=hashlib.sha256(data).hexdigest())
