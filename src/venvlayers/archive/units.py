"""Units: the pieces of a layer that publish compresses on their own, so that deploy can
fetch and decode one without the rest.

A unit is the files of one installed distribution (by its ``.dist-info/RECORD``; small
distributions grouped), or a group of the files no ``RECORD`` claims. Every folder is in
the first unit, so any extractor meets a folder before what it holds. A tar writer lays
the members out unit by unit and starts a new xz stream or zstd frame at each unit's first
header (``Segment``: a run of the tar stream compressed on its own; a big unit is several
segments back to back). The archive stays one ordinary ``.tar.xz`` / ``.tar.zst``.

Planning needs only the scanned entries and the ``RECORD`` files, and decoding only the
standard library: nothing here writes an archive (deploy imports it).
"""

from __future__ import annotations

import bisect
import csv
import io
import itertools
import lzma
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass

from venvlayers.archive import tuning
from venvlayers.archive.formats import ArchiveFormat, zstd
from venvlayers.archive.scan import Entry

#: A distribution at least this big (bytes of its files) is a unit of its own ...
OWN_UNIT = 128 << 10
#: ... smaller ones are grouped up to this size.
GROUP_UNIT = 512 << 10
#: The files no RECORD claims (a runtime's standard library, a venv's own files) change
#: together (a new runtime) or hardly ever: grouped up to this size (tar.xz's stream size
#: before units), except the layer's own metadata (``share/venv/``: what a republish with
#: only a new version changes), a unit of its own.
OTHER_UNIT = 16 << 20
OWN_METADATA = "share/venv/"
OTHER = "(other)"
#: tar.zst: the libraries every distribution vendors, one unit. Wheels vendor the same
#: builds (OpenBLAS in both NumPy and SciPy, libgfortran, libgomp) under other names, and
#: only a frame holding both finds what repeats: NumPy and SciPy's two OpenBLAS are 10.2
#: MB in two frames, 9.0 MB in one. They change with their build, far less often than
#: their distribution's own files.
VENDORED = "(vendored libraries)"
#: A zstd frame holds whole units up to this size: frames lose the window of the frame
#: before, so zstd groups more than xz (whose small units cost it little).
ZSTD_GROUP = 2 << 20


@dataclass(frozen=True)
class Unit:
    name: str
    """The distribution's ``.dist-info`` folder (the first of a group), or ``(other)``."""
    entries: list[Entry]

    @property
    def size(self) -> int:
        return sum(e.size for e in self.entries)


@dataclass(frozen=True)
class Segment:
    """A run of the tar stream ``[tar_start, tar_end)`` compressed on its own into the
    archive's bytes ``[start, end)`` (one xz stream or one zstd frame)."""

    tar_start: int
    tar_end: int
    start: int
    end: int


@dataclass(frozen=True)
class ArchiveLayout:
    """What a tar writer laid out: entries in archive order, each one's content offset in
    the tar stream, the segments, and each file's sha256 (by path below the root)."""

    fmt: ArchiveFormat
    entries: list[Entry]
    data_offsets: list[int]
    segments: list[Segment]
    digests: dict[str, str]

    def placements(self) -> list[tuple[int, int, int]]:
        """Each entry's content: the archive bytes ``[start, end)`` of the segments
        holding it, and where it begins in their decompressed bytes."""
        tar_starts = [s.tar_start for s in self.segments]
        found = []
        for entry, offset in zip(self.entries, self.data_offsets, strict=True):
            first = bisect.bisect_right(tar_starts, offset) - 1
            last = bisect.bisect_right(tar_starts, offset + max(entry.size, 1) - 1) - 1
            begin = self.segments[first]
            found.append((begin.start, self.segments[last].end, offset - begin.tar_start))
        return found


def _record_paths(entry: Entry) -> list[str]:
    """The paths a ``RECORD`` lists, relative to the layer (``None`` entries dropped)."""
    site = posixpath.dirname(posixpath.dirname(entry.rel))
    try:
        text = entry.path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    paths = []
    for row in csv.reader(io.StringIO(text)):
        if not row or not row[0]:
            continue
        path = posixpath.normpath(posixpath.join(site, row[0]))
        if not path.startswith("../") and path != "..":
            paths.append(path)
    return paths


def plan_units(entries: list[Entry], *, shared_vendored: bool = False) -> list[Unit]:
    """The sorted ``entries`` as units, in archive order (each entry in exactly one; inside a
    unit, like files side by side, ``_family``).

    ``shared_vendored`` (tar.zst): the libraries wheels vendor (``_vendored``) of every
    distribution are one unit, ``VENDORED``, each library beside its namesakes."""
    by_rel = {e.rel: e for e in entries}
    claimed: set[str] = set()
    dists: list[Unit] = []
    vendored: list[Entry] = []
    records = [
        e
        for e in entries
        if e.kind == "file"
        and e.rel.endswith("/RECORD")
        and posixpath.basename(posixpath.dirname(e.rel)).endswith(".dist-info")
    ]
    for record in records:
        members = []
        site = posixpath.dirname(posixpath.dirname(record.rel))
        for path in _record_paths(record):
            entry = by_rel.get(path)
            if entry is not None and entry.kind != "dir" and path not in claimed:
                claimed.add(path)
                if shared_vendored and _vendored(path, site):
                    vendored.append(entry)
                else:
                    members.append(entry)
        if members:
            members.sort(key=lambda e: e.rel)
            dists.append(Unit(posixpath.dirname(record.rel), members))
    folders = [e for e in entries if e.kind == "dir"]
    rest = [e for e in entries if e.kind != "dir" and e.rel not in claimed]
    units = [Unit("(folders)", folders)] if folders else []
    own = [e for e in rest if e.rel.startswith(OWN_METADATA)]
    rest = [e for e in rest if not e.rel.startswith(OWN_METADATA)]
    units += _group([Unit(OTHER, [e]) for e in rest], OTHER_UNIT, OTHER_UNIT)
    units += [Unit("(layer metadata)", own)] if own else []
    units += _group(dists, GROUP_UNIT, OWN_UNIT)
    units = [
        u if u.name == "(folders)" else Unit(u.name, sorted(u.entries, key=_family)) for u in units
    ]
    if vendored:
        vendored.sort(key=lambda e: (posixpath.basename(e.rel), e.rel))
        units.append(Unit(VENDORED, vendored))
    return units


def _vendored(path: str, site: str) -> bool:
    """A library a wheel vendors: in a ``<name>.libs/`` folder of site-packages (auditwheel,
    delvewheel) or in a ``.dylibs/`` folder (delocate)."""
    if not path.startswith(site + "/"):
        return False
    parts = path[len(site) + 1 :].split("/")
    return len(parts) > 1 and (parts[0].endswith(".libs") or ".dylibs" in parts[:-1])


#: Suffixes of compiled libraries (after any version numbers: ``libfoo.so.1.2``).
_LIBRARY_SUFFIXES = frozenset({".so", ".dylib", ".dll", ".pyd", ".a", ".lib"})


def _family(entry: Entry) -> tuple[str, str]:
    """Where a member goes inside its unit: by kind of file, then by path. Like files side
    by side compress better (a compressor's window holds more of what repeats): NumPy and
    SciPy's archive is 0.4 % (tar.zst) to 0.8 % (tar.xz) smaller than in path order."""
    name = posixpath.basename(entry.rel)
    parts = name.split(".")
    while len(parts) > 2 and parts[-1].isdigit():  # libfoo.so.1.2 -> libfoo.so
        parts.pop()
    suffix = "." + parts[-1] if len(parts) > 1 else ""
    return ("~library" if suffix in _LIBRARY_SUFFIXES else suffix, entry.rel)


def _group(units: list[Unit], limit: int, alone: int) -> list[Unit]:
    """Neighbouring units under ``alone`` bytes joined up to ``limit``; others stay alone."""
    grouped: list[Unit] = []
    batch: list[Unit] = []
    size = 0

    def close() -> None:
        nonlocal batch, size
        if batch:
            grouped.append(Unit(batch[0].name, [e for u in batch for e in u.entries]))
        batch, size = [], 0

    for unit in units:
        if unit.size >= alone:
            close()
            grouped.append(unit)
            continue
        if batch and size + unit.size > limit:
            close()
        batch.append(unit)
        size += unit.size
    close()
    return grouped


def cut_points(unit_starts: list[int], total: int, fmt: ArchiveFormat) -> list[int]:
    """Where segments start in the tar stream: the units' first headers (zstd: small units
    share a frame up to ``ZSTD_GROUP``; a unit that big has frames of its own), and every ``tuning.XZ_CHUNK`` (zstd:
    ``ZSTD_SPLIT``) bytes inside a unit: cores in parallel, memory bounded, and deploy
    fetches only the pieces of a big unit that hold the files it needs."""
    split = tuning.XZ_CHUNK if fmt is ArchiveFormat.TAR_XZ else tuning.ZSTD_SPLIT
    group = 0 if fmt is ArchiveFormat.TAR_XZ else ZSTD_GROUP
    bounds = [*unit_starts, total]
    cuts: list[int] = []
    big = False  # the unit before was big: it keeps its frames to itself
    for begin, end in itertools.pairwise(bounds):
        if not cuts or big or end - begin >= group or begin - cuts[-1] >= group:
            cuts.append(begin)
        big = end - begin >= group
        cuts += range(begin + split, end, split)
    return cuts or [0]


# --- reading ------------------------------------------------------------------------------


def decode_segments(fmt: ArchiveFormat, data: bytes, limit: int) -> Iterator[bytes]:
    """The first ``limit`` decompressed bytes of ``data``: segments (xz streams or zstd
    frames) back to back. Raises lzma.LZMAError / zstd.ZstdError / EOFError when damaged."""
    produced = 0
    while produced < limit:
        if not data:
            raise EOFError("the range ends before the bytes it should hold")
        decoder: lzma.LZMADecompressor | zstd.ZstdDecompressor = (
            lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
            if fmt is ArchiveFormat.TAR_XZ
            else zstd.ZstdDecompressor()
        )
        piece = decoder.decompress(data, max_length=min(limit - produced, 1 << 20))
        while True:
            produced += len(piece)
            if piece:
                yield piece
            if decoder.eof or produced >= limit:
                break
            if decoder.needs_input:
                raise EOFError("a segment of the range is cut off")
            piece = decoder.decompress(b"", max_length=min(limit - produced, 1 << 20))
        if produced >= limit:
            return
        data = decoder.unused_data
