"""Updating a deployed layer by fetching only what changed inside it (issue 21).

For a changed layer whose previous version is deployed at the same install target and
whose metadata names a layer index (``formats/layer_index``, checked against the sha256
in the metadata):

1. every file of the new index whose deployed twin (same path, a regular file, same size)
   has the sha256 the index gives is taken from the deployed layer: hard-linked when staged
   without being read again if it is still the file that was hashed (``KnownCopy``: same
   inode, size, mtime and ctime, none of them recent when it was hashed), read and checked
   against its sha256 again otherwise;
2. the others' byte ranges (``net/ranges``: coalesced, several per request) are fetched
   into a sparse file of this run's own in the download cache (``net/scratch``: locked
   while in use, removed by ``DeltaPlan.discard`` once the deploy is done with it, and by
   the next update if a killed run left it);
3. ``members`` hands the new layer to ``archive/extract.extract_members`` as if it were
   the archive: the same name and link rules, the same reuse of identical files with
   their bytecode, the same staging. Every file is checked against its sha256 as it is
   read, and the tree is the index's exactly, so a bad range, a changed deployed file or
   a lying server fails the deploy (exit 2) before the switch.

An archive in a folder (``deploy --from DIR``) is read the same way, in place: only its
ranges holding what changed are decoded (an app-only update of the realistic bench stack
decoded 5.9 MB of xz before, to change one file).

No index, no deployed version, a server without ``Range``, or ranges adding up to more
than ``MAX_SHARE`` of the archive: ``plan_delta`` returns None and the whole archive is
fetched (or read) as before.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from venvlayers.archive.formats import READ_SIZE, ArchiveFormat
from venvlayers.archive.read import KnownCopy, Member
from venvlayers.archive.units import decode_segments
from venvlayers.core.errors import ArchiveError, DeployError
from venvlayers.core.linkfree import LinkFreeTree
from venvlayers.core.report import Reporter
from venvlayers.deploy.sources import ArchiveSource
from venvlayers.formats.layer_index import IndexEntry, LayerIndex, load_index
from venvlayers.formats.records import LayerMetadata
from venvlayers.net.downloads import Downloader
from venvlayers.net.ranges import RangeStats, RangesUnsupported, coalesce, fetch_ranges
from venvlayers.net.scratch import Scratch, new_scratch

MAX_SHARE = 0.5
"""Ranges worth more than this share of the archive: fetch the whole archive instead."""


@dataclass
class DeltaPlan:
    """A changed layer to be made from its deployed version plus fetched ranges."""

    item: LayerMetadata
    index: LayerIndex
    base: Path
    """The deployed version of the layer (a real folder)."""
    reused: dict[str, KnownCopy | None]
    """Paths whose bytes come from ``base``, with the deployed file as it was hashed (None:
    it had changed too recently to be linked on the strength of that hash)."""
    tree: LinkFreeTree
    ranges: Path
    """A sparse file of the archive's size holding the fetched ranges at their offsets
    (for an archive in a folder: that archive)."""
    stats: RangeStats = field(default_factory=RangeStats)
    scratch: Scratch | None = None
    """The file of fetched ranges (None: ``ranges`` is the archive itself, never removed)."""

    def discard(self) -> None:
        """Remove the fetched ranges (the deploy is done with them, or failed)."""
        if self.scratch is not None:
            self.scratch.close()

    def members(self) -> Iterator[Member]:
        """The new layer as archive members (``archive/extract.extract_members``)."""
        root = self.index.root
        fmt = ArchiveFormat(self.index.archive_format)
        cursor = _Cursor(self.ranges, fmt)
        for entry in self.index.entries:
            name = f"{root}/{entry.path}" if entry.path else root
            if entry.kind == "dir":
                yield Member(name + "/", "dir", entry.mode, 0, "", None)
            elif entry.kind == "symlink":
                yield Member(name, "symlink", entry.mode, 0, entry.target or "", None)
            else:
                opener = self._opener(entry, cursor)
                known = self.reused.get(entry.path)
                yield Member(name, "file", entry.mode, entry.size, "", opener, known)

    def _opener(self, entry: IndexEntry, cursor: _Cursor) -> Callable[[], IO[bytes]]:
        label = f"{self.index.archive_name}: {entry.path}"

        def opener() -> IO[bytes]:
            if entry.path in self.reused:
                deployed = self.tree.open_file(tuple(entry.path.split("/")))
                if deployed is None:
                    raise ArchiveError(
                        f"{self.base / entry.path}: the deployed file went away or was "
                        "replaced while the update was staged; run the deploy again"
                    )
                raw: IO[bytes] = deployed
            elif entry.size == 0:
                raw = io.BytesIO(b"")
            else:
                raw = cursor.open(entry)
            return _Checked(raw, entry, label)  # type: ignore[return-value]

        return opener


class _Checked:
    """Reads a member's bytes, checking size and sha256 against the index at the end."""

    def __init__(self, raw: IO[bytes], entry: IndexEntry, label: str) -> None:
        self.raw = raw
        self.entry = entry
        self.label = label
        self.digest = hashlib.sha256()
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        want = self.entry.size - self.count if size < 0 else min(size, self.entry.size - self.count)
        data = self.raw.read(want) if want > 0 else b""
        self.digest.update(data)
        self.count += len(data)
        if not data and (
            self.count != self.entry.size or self.digest.hexdigest() != self.entry.sha256
        ):
            raise ArchiveError(
                f"{self.label}: {self.count} bytes with sha256 {self.digest.hexdigest()}, the "
                f"layer index says {self.entry.size} bytes with sha256 {self.entry.sha256}; "
                "the fetched range or the deployed file is damaged — the target was left as it was"
            )
        return data

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> _Checked:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Cursor:
    """Decodes fetched ranges; files of one range come in order, so a range is decoded
    once, front to back, however many files it holds."""

    def __init__(self, ranges: Path, fmt: ArchiveFormat) -> None:
        self.ranges = ranges
        self.fmt = fmt
        self.key: tuple[int, int] | None = None
        self.stream: Iterator[bytes] = iter(())
        self.position = 0
        self.buffer = b""

    def open(self, entry: IndexEntry) -> IO[bytes]:
        assert entry.range is not None and entry.skip is not None
        if self.key != entry.range or entry.skip < self.position:
            start, end = entry.range
            with self.ranges.open("rb") as f:
                f.seek(start)
                data = f.read(end - start)
            # decode up to the range's end at most; the index bounds skip + size
            self.stream = decode_segments(self.fmt, data, 1 << 62)
            self.key, self.position, self.buffer = entry.range, 0, b""
        self._skip(entry.skip - self.position)
        return _Slice(self, entry.size)  # type: ignore[return-value]

    def take(self, size: int) -> bytes:
        while not self.buffer:
            piece = next(self.stream, None)
            if piece is None:
                return b""
            self.buffer = piece
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        self.position += len(data)
        return data

    def _skip(self, size: int) -> None:
        while size > 0:
            data = self.take(min(size, READ_SIZE))
            if not data:
                raise EOFError("the range ends before the file starts")
            size -= len(data)


class _Slice:
    def __init__(self, cursor: _Cursor, size: int) -> None:
        self.cursor = cursor
        self.left = size

    def read(self, size: int = -1) -> bytes:
        want = self.left if size < 0 else min(size, self.left)
        data = self.cursor.take(want) if want > 0 else b""
        self.left -= len(data)
        return data

    def close(self) -> None:
        pass


def _same_file(tree: LinkFreeTree, entry: IndexEntry) -> tuple[bool, KnownCopy | None]:
    """Whether the deployed file at the entry's path is a regular file with the entry's
    bytes, and if so what it was when read (None: it had changed too recently to tell a
    later change apart)."""
    started = time.time_ns()
    try:
        f = tree.open_file(tuple(entry.path.split("/")))
        if f is None:
            return False, None
        with f:
            if os.fstat(f.fileno()).st_size != entry.size:
                return False, None
            digest = hashlib.sha256()
            while block := f.read(READ_SIZE):
                digest.update(block)
            if digest.hexdigest() != entry.sha256:
                return False, None
            st = os.fstat(f.fileno())
    except OSError:
        return False, None
    if st.st_size != entry.size:  # changed while read
        return False, None
    return True, KnownCopy.of(st) if KnownCopy.is_settled(st, started) else None


def plan_delta(
    item: LayerMetadata,
    where: ArchiveSource,
    index_source: ArchiveSource | None,
    base: Path | None,
    downloader: Downloader,
    reporter: Reporter,
) -> DeltaPlan | None:
    """Fetch what ``item``'s new archive holds that ``base`` (its deployed version) does
    not; None: fetch the whole archive instead."""
    ref = item.venvlayers_index
    if ref is None or index_source is None or base is None:
        return None
    if where.download is None and where.local is None:
        return None
    if not base.is_dir() or item.archive_size is None:
        return None
    if where.local is not None and where.local.stat().st_size != item.archive_size:
        return None  # the whole-archive path names the size mismatch
    name = item.install_target
    if index_source.local is not None:
        data = index_source.local.read_bytes()
    elif index_source.download is not None:
        fetched = downloader.fetch_bytes(index_source.download, missing_ok=True)
        if fetched is None:
            reporter.info(f"{name}: no layer index at the source; whole archive")
            return None
        data = fetched
    else:
        return None
    index = load_index(data, ref.sha256, ref.name, DeployError)
    if (
        index.archive_sha256 != item.archive_sha256
        or index.archive_size != item.archive_size
        or index.root != name
    ):
        raise DeployError(
            f"{ref.name}: describes {index.archive_name} ({index.archive_sha256}), not the "
            f"archive of {item.layer_name} the metadata names; publish again"
        )
    tree = LinkFreeTree(base)
    base = Path(tree.root)
    files = [e for e in index.entries if e.kind == "file"]
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        same = list(pool.map(lambda e: _same_file(tree, e), files))
    reused = {e.path: known for e, (ok, known) in zip(files, same, strict=True) if ok}
    wanted = [e.range for e in files if e.path not in reused and e.range is not None]
    ranges = coalesce(wanted)
    need = sum(b - a for a, b in ranges)
    if need > MAX_SHARE * item.archive_size:
        reporter.info(f"{name}: {need} of {item.archive_size} bytes changed; whole archive")
        return None
    if where.local is not None:
        # the archive is here: its ranges are read in place (each file is checked against
        # the index as it is read, the index against the metadata)
        reporter.info(
            f"{name}: {len(reused)} of {len(files)} files unchanged; reading {len(ranges)} "
            f"range(s), {need} of {item.archive_size} bytes, of {where.local.name}"
        )
        return DeltaPlan(item, index, base, reused, tree, where.local)
    assert where.download is not None
    scratch = new_scratch(downloader.cache / "partial", item.archive_sha256, item.archive_size)
    try:
        with scratch.path.open("r+b") as out:

            def sink(offset: int, piece: bytes) -> None:
                out.seek(offset)
                out.write(piece)

            reporter.info(
                f"{name}: {len(reused)} of {len(files)} files unchanged; fetching "
                f"{len(ranges)} range(s), {need} of {item.archive_size} bytes"
            )
            stats = fetch_ranges(downloader, where.download, item.archive_size, ranges, sink)
    except RangesUnsupported:
        scratch.close()
        reporter.info(f"{name}: the server ignores Range; fetching the whole archive")
        return None
    except BaseException:
        scratch.close()
        raise
    return DeltaPlan(item, index, base, reused, tree, scratch.path, stats, scratch)
