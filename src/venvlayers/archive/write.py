"""``write_archive``: scan a folder, then hand it to the writer of the chosen format."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, cast

from venvlayers.archive import tuning
from venvlayers.archive.formats import ArchiveFormat, ArchiveInfo, ExcludeCallback, ProgressCallback
from venvlayers.archive.scan import (
    ArchiveJob,
    Entry,
    Progress,
    check_root_name,
    read_pieces,
    scan_tree,
    thread_count,
)
from venvlayers.archive.tar import TarLayout, write_tar_xz, write_tar_zst
from venvlayers.archive.units import OTHER, ArchiveLayout, plan_units
from venvlayers.archive.zip import write_zip
from venvlayers.core.errors import ArchiveError
from venvlayers.core.fsutil import atomic_path, sha256_file
from venvlayers.core.memory import return_big_blocks

# --- public writing API -----------------------------------------------------------------


_ArchiveWriter = Callable[[ArchiveJob], TarLayout | None]


class _HashingWriter:
    """Passes writes on, keeping the sha256 and size of everything written."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.out.write(data)


def write_archive(
    source_dir: Path,
    archive_path: Path,
    *,
    root_name: str,
    fmt: ArchiveFormat,
    mtime: int,
    exclude: ExcludeCallback | None = None,
    threads: int | None = None,
    progress: ProgressCallback | None = None,
    x86_code: bool = False,
) -> ArchiveInfo:
    """Archive ``source_dir`` as ``root_name/…`` into ``archive_path`` (written atomically).

    ``exclude`` gets each path relative to ``source_dir``; an excluded folder is skipped
    whole. ``progress(done, total)`` counts file content bytes, about once per percent.
    ``x86_code``: the binaries in the folder are x86 code (tar.xz then compresses them
    with xz's x86 filter).
    """
    fmt = ArchiveFormat(fmt)
    check_root_name(root_name, "Archive root folder name")
    if mtime < 0:
        raise ArchiveError(f"{archive_path}: archive mtime must not be negative (got {mtime}).")
    if not source_dir.is_dir():
        raise ArchiveError(f"{source_dir}: cannot archive it, it is not a folder.")
    return_big_blocks()  # compressors' buffers come and go: keep them out of the heap
    entries = scan_tree(source_dir, exclude)
    # members unit by unit in every format (tar writers start a stream/frame at each)
    units = plan_units(entries, shared_vendored=fmt is ArchiveFormat.TAR_ZST)
    entries = [e for unit in units for e in unit.entries]
    starts, count = [], 0
    for n, unit in enumerate(units):
        # zstd keeps the files no RECORD claims in one run of frames: they change together,
        # and its long window finds what repeats across them (libpython.a and .so)
        joined = fmt is ArchiveFormat.TAR_ZST and n and unit.name == units[n - 1].name == OTHER
        if not joined:
            starts.append(count)
        count += len(unit.entries)
    unit_starts = tuple(starts)
    total = sum(e.size for e in entries if e.kind == "file")
    tracker = Progress(progress, total)
    workers = thread_count(threads)
    writers: dict[ArchiveFormat, _ArchiveWriter] = {
        ArchiveFormat.TAR_XZ: functools.partial(
            write_tar_xz, filters=tuning.XZ_FILTERS_X86 if x86_code else tuning.XZ_FILTERS
        ),
        ArchiveFormat.TAR_ZST: write_tar_zst,
        ArchiveFormat.ZIP: write_zip,
    }
    with atomic_path(archive_path) as tmp:
        with tmp.open("wb") as out:
            # tar writers only append: hash as they write rather than read the file again
            sink = out if fmt is ArchiveFormat.ZIP else _HashingWriter(out)
            job = ArchiveJob(
                entries, root_name, mtime, cast(IO[bytes], sink), workers, tracker, unit_starts
            )
            tar_layout = writers[fmt](job)
        tmp.chmod(0o644)  # mkstemp creates 0o600; an archive is meant to be shared
        if isinstance(sink, _HashingWriter):
            info = ArchiveInfo(size=sink.size, sha256=sink.digest.hexdigest())
        else:  # zip goes back to fill in its headers
            info = ArchiveInfo(size=tmp.stat().st_size, sha256=sha256_file(tmp))
    tracker.finish()
    if tar_layout is not None:
        digests = _digests(entries, tar_layout.digests, workers)
        layout = ArchiveLayout(fmt, entries, tar_layout.data_offsets, tar_layout.segments, digests)
        info = dataclasses.replace(info, layout=layout)
    return info


def _digests(entries: list[Entry], known: dict[str, str], workers: int) -> dict[str, str]:
    """sha256 of every file, by path below the root (for the layer index): those the
    writer hashed as it read them, the rest (empty files, files cut by a segment end) read
    again here."""

    def digest(entry: Entry) -> str:
        h = hashlib.sha256()
        for piece in read_pieces(entry):
            h.update(piece)
        return h.hexdigest()

    files = [e for e in entries if e.kind == "file"]
    missing = [e for e in files if e.rel not in known]
    with ThreadPoolExecutor(workers) as pool:
        found = dict(zip((e.rel for e in missing), pool.map(digest, missing), strict=True))
    return {e.rel: known.get(e.rel) or found[e.rel] for e in files}
