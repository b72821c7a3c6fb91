"""Reproducible, parallel archive writing and safe extraction (the only module that packs/unpacks).

Writing: the same tree gives the same bytes on every run, from any folder, with any thread
count. Entries are sorted by path, owners are root with empty names, modes are normalized
and every timestamp is the caller's ``mtime``. Compression uses every core while the result
stays a standard archive:

- ``tar.xz``: the tar stream is cut into fixed-size chunks, each compressed as its own xz
  stream (concatenated xz streams are a valid ``.xz`` file for xz, GNU tar and Python);
- ``tar.zst``: one zstd frame written by zstd's own worker threads (its output does not
  depend on the worker count as long as there is at least one worker);
- ``zip``: files are deflated in parallel (big files in chunks, pigz style) and written in
  sorted order.

Extraction validates every member itself (it does not rely on tarfile's filters), unpacks
into a temporary folder beside the destination and renames it into place only when
complete, so a refused or broken archive leaves the destination untouched.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import lzma
import os
import shutil
import stat
import struct
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import IO, Generic, Literal, TypeVar, cast

from venvlayers.errors import ArchiveError
from venvlayers.fsutil import atomic_path, replace_dir, sha256_file

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

__all__ = [
    "ArchiveFormat",
    "ArchiveInfo",
    "ProgressCallback",
    "archive_suffix",
    "default_format_for",
    "detect_format",
    "extract_archive",
    "iter_archive_members",
    "write_archive",
]

ProgressCallback = Callable[[int, int], None]
ExcludeCallback = Callable[[PurePosixPath], bool]


class ArchiveFormat(StrEnum):
    TAR_XZ = "tar.xz"
    TAR_ZST = "tar.zst"
    ZIP = "zip"


@dataclass(frozen=True)
class ArchiveInfo:
    size: int
    sha256: str


def default_format_for(platform_tag: str) -> ArchiveFormat:
    """zip for Windows targets (no tar there by default), tar.xz elsewhere (as venvstacks)."""
    return ArchiveFormat.ZIP if platform_tag.startswith("win") else ArchiveFormat.TAR_XZ


def archive_suffix(fmt: ArchiveFormat) -> str:
    return "." + ArchiveFormat(fmt).value


# --- tuning (measured with bench/archive_bench.py; see the notes there) ------------------

# The reference tool writes tarfile "w:xz": xz preset 6 with a CRC64 check.
XZ_PRESET = 6
XZ_FILTERS: list[dict[str, int]] = [{"id": lzma.FILTER_LZMA2, "preset": XZ_PRESET}]
# Layers of x86-64 platforms are mostly x86 machine code (.so/.dylib/.pyd, executables):
# xz's x86 branch-call-jump filter makes it more compressible. With match length 32
# instead of preset 6's 64, on the realistic bench stack: -1.4 % size and -13 % CPU
# against preset 6 alone (the filter alone: -2.1 % size, same CPU). Every xz decoder
# (xz, tar -J, bsdtar, 7-Zip, Python's lzma) reads it. Arm64 has a filter too only since
# xz 5.4, which older decoders and Python's lzma module lack, so arm64 layers keep preset 6.
XZ_FILTERS_X86: list[dict[str, int]] = [
    {"id": lzma.FILTER_X86},
    {"id": lzma.FILTER_LZMA2, "preset": XZ_PRESET, "nice_len": 32},
]
# 16 MiB chunks cost ~1 % size against one xz stream (8 MiB: ~2 %, 4 MiB: ~4 %).
# Chunk boundaries are fixed, so the output does not depend on the thread count.
XZ_CHUNK = 16 << 20
# Each xz preset-6 encoder needs ~94 MiB; more threads than this buys little but memory.
XZ_MAX_THREADS = 16
# Level 12 with long-distance matching and a window up to 128 MiB. On the realistic bench
# stack (CPython runtimes, NumPy + SciPy, scikit-learn): 6x faster than our tar.xz, +13 %
# size over the reference's tar.xz. A 16 MiB window gave +17 %: binaries repeat across
# packages (e.g. OpenBLAS in both numpy.libs and scipy.libs); levels 16+ were 5-10x slower.
# 128 MiB is the largest window zstd decoders accept without options (`zstd -d`,
# `tar --zstd`, Python's ZstdDecompressor); smaller layers get a window just big enough
# for them, so their decoders need no more memory than the layer's size.
ZSTD_OPTIONS: dict[int, int] = {
    zstd.CompressionParameter.compression_level: 12,
    zstd.CompressionParameter.enable_long_distance_matching: 1,
    zstd.CompressionParameter.checksum_flag: 1,
}
ZSTD_WINDOW_LOG_MAX = 27
ZSTD_WINDOW_LOG_MIN = 20
ZSTD_FEED = 4 << 20
# zlib's default level, like zipfile's ZIP_DEFLATED. Files bigger than one chunk are
# deflated in chunks primed with the previous 32 KiB, so big files use every core too.
ZIP_LEVEL = 6
ZIP_CHUNK = 1 << 20
_DEFLATE_WINDOW = 32 << 10

_READ_SIZE = 1 << 20
_TAR_BLOCK = tarfile.BLOCKSIZE
_TAR_RECORD = tarfile.RECORDSIZE

_XZ_MAGIC = b"\xfd7zXZ\x00"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")


# --- scanning the source tree -----------------------------------------------------------

Kind = Literal["dir", "file", "symlink"]


@dataclass(frozen=True)
class _Entry:
    rel: str  # posix path below the source folder; "" is the folder itself
    kind: Kind
    path: Path
    mode: int  # normalized permission bits
    size: int  # regular files only
    target: str  # symlinks only


def _check_root_name(root_name: str, what: str) -> None:
    bad = (
        not root_name
        or root_name in (".", "..")
        or any(c in root_name for c in "/\\\0")
        or (len(root_name) >= 2 and root_name[1] == ":")
    )
    if bad:
        raise ArchiveError(f"{what} {root_name!r} must be a single folder name (no '/', '..').")


def _normalized_mode(kind: Kind, st_mode: int) -> int:
    if kind == "dir":
        return 0o755
    if kind == "symlink":
        return 0o777
    return 0o755 if st_mode & 0o111 else 0o644


def _utf8_name(path: Path, rel: str) -> None:
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        raise ArchiveError(
            f"{path}: the file name is not valid UTF-8; rename it before archiving."
        ) from None


def _scan(source_dir: Path, exclude: ExcludeCallback | None) -> list[_Entry]:
    """Every folder, file and symlink below ``source_dir``, sorted by posix path."""
    entries = [_Entry("", "dir", source_dir, 0o755, 0, "")]
    pending = [(source_dir, "")]
    while pending:
        folder, rel_folder = pending.pop()
        try:
            with os.scandir(folder) as it:
                children = list(it)
        except OSError as exc:
            raise ArchiveError(f"{folder}: cannot list the folder ({exc.strerror}).") from exc
        for child in children:
            rel = f"{rel_folder}/{child.name}" if rel_folder else child.name
            path = Path(child.path)
            _utf8_name(path, rel)
            if exclude is not None and exclude(PurePosixPath(rel)):
                continue
            st = child.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                entries.append(_Entry(rel, "dir", path, 0o755, 0, ""))
                pending.append((path, rel))
            elif stat.S_ISREG(st.st_mode):
                # Hard links are simply stored again as regular files.
                mode = _normalized_mode("file", st.st_mode)
                entries.append(_Entry(rel, "file", path, mode, st.st_size, ""))
            elif stat.S_ISLNK(st.st_mode):
                target = os.readlink(path)
                _utf8_name(path, target)
                if target.startswith("/") or os.path.isabs(target):
                    # Extraction refuses absolute links, so fail now rather than at deploy.
                    raise ArchiveError(
                        f"{path}: symlink to the absolute path {target!r}; make it relative "
                        "to its folder (or exclude it) so the layer can be relocated."
                    )
                entries.append(_Entry(rel, "symlink", path, 0o777, 0, target))
            else:
                raise ArchiveError(
                    f"{path}: cannot archive a {_special_kind(st.st_mode)}; a layer may "
                    "only hold folders, regular files and symlinks. Remove it or exclude it."
                )
    entries.sort(key=lambda e: e.rel)
    return entries


def _special_kind(st_mode: int) -> str:
    if stat.S_ISSOCK(st_mode):
        return "socket"
    if stat.S_ISFIFO(st_mode):
        return "fifo"
    if stat.S_ISCHR(st_mode) or stat.S_ISBLK(st_mode):
        return "device file"
    return "special file"


def _member_name(root_name: str, entry: _Entry) -> str:
    return f"{root_name}/{entry.rel}" if entry.rel else root_name


def _read_pieces(entry: _Entry, start: int = 0, length: int | None = None) -> Iterator[bytes]:
    """The file's bytes from ``start``; ArchiveError if it shrank while being archived."""
    remaining = entry.size - start if length is None else length
    try:
        with entry.path.open("rb") as f:
            if start:
                f.seek(start)
            while remaining > 0:
                piece = f.read(min(_READ_SIZE, remaining))
                if not piece:
                    raise ArchiveError(
                        f"{entry.path}: the file changed size while it was being archived; "
                        "make sure nothing writes to the layer, then retry."
                    )
                remaining -= len(piece)
                yield piece
    except OSError as exc:
        raise ArchiveError(f"{entry.path}: cannot read the file ({exc.strerror}).") from exc


class _Progress:
    """Calls the callback about once per percent of content bytes (not once per file)."""

    def __init__(self, callback: ProgressCallback | None, total: int) -> None:
        self.callback = callback
        self.total = total
        self.done = 0
        self.step = max(total // 100, 1 << 20)
        self.next_report = self.step
        if callback is not None:
            callback(0, total)

    def advance(self, nbytes: int) -> None:
        self.done += nbytes
        if self.callback is not None and self.done >= self.next_report:
            self.next_report = self.done + self.step
            self.callback(min(self.done, self.total), self.total)

    def finish(self) -> None:
        if self.callback is not None:
            self.callback(self.total, self.total)


# --- ordered parallel pipeline ----------------------------------------------------------


T = TypeVar("T")


class _Ordered(Generic[T]):
    """Runs jobs on a pool, hands results back in submission order, bounded look-ahead."""

    def __init__(self, pool: ThreadPoolExecutor, window: int, sink: Callable[[T], None]):
        self.pool = pool
        self.window = window
        self.sink = sink
        self.queue: deque[Future[T]] = deque()

    def submit(self, job: Callable[[], T]) -> None:
        self.queue.append(self.pool.submit(job))
        self._trim()

    def put_ready(self, value: T) -> None:
        done: Future[T] = Future()
        done.set_result(value)
        self.queue.append(done)
        self._trim()

    def _trim(self) -> None:
        while len(self.queue) > self.window:
            self.sink(self.queue.popleft().result())

    def drain(self) -> None:
        while self.queue:
            self.sink(self.queue.popleft().result())

    def cancel(self) -> None:
        for future in self.queue:
            future.cancel()
        self.queue.clear()


def _thread_count(threads: int | None) -> int:
    if threads is None:
        return os.cpu_count() or 1
    return max(1, threads)


# --- tar writing ------------------------------------------------------------------------


def _tar_header(name: str, entry: _Entry, mtime: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.mtime = mtime
    info.mode = entry.mode
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
    elif entry.kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = entry.target
    else:
        info.type = tarfile.REGTYPE
        info.size = entry.size
    # PAX always: long names and non-ASCII names get standard extended headers.
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "strict")


class _Chunker:
    """Collects the tar stream and passes it on in pieces of exactly ``size`` bytes."""

    def __init__(self, size: int, emit: Callable[[bytes, int], None]):
        self.size = size
        self.emit = emit
        self.buffer = bytearray()
        self.content = 0  # file bytes in the buffer, for progress
        self.total = 0

    def write(self, data: bytes, content: int = 0) -> None:
        self.buffer += data
        self.content += content
        self.total += len(data)
        while len(self.buffer) >= self.size:
            piece = bytes(self.buffer[: self.size])
            del self.buffer[: self.size]
            # Progress is attributed to the chunk that completes, close enough for a bar.
            self.emit(piece, self.content)
            self.content = 0

    def close(self) -> None:
        if self.buffer:
            self.emit(bytes(self.buffer), self.content)
            self.buffer = bytearray()
            self.content = 0


def _produce_tar(entries: list[_Entry], root_name: str, mtime: int, out: _Chunker) -> None:
    for entry in entries:
        out.write(_tar_header(_member_name(root_name, entry), entry, mtime))
        if entry.kind != "file":
            continue
        for piece in _read_pieces(entry):
            out.write(piece, len(piece))
        if entry.size % _TAR_BLOCK:
            out.write(b"\0" * (_TAR_BLOCK - entry.size % _TAR_BLOCK))
    # End-of-archive marker, then pad to a whole record like tarfile and GNU tar do.
    out.write(b"\0" * (2 * _TAR_BLOCK))
    if out.total % _TAR_RECORD:
        out.write(b"\0" * (_TAR_RECORD - out.total % _TAR_RECORD))
    out.close()


# Across every archive written at once (publish compresses layers concurrently), no more
# xz encoders (~94 MiB each) run than there are cores: more would only cost memory.
_XZ_ENCODERS = threading.BoundedSemaphore(min(os.cpu_count() or 1, XZ_MAX_THREADS))


def _xz_chunk(data: bytes, filters: list[dict[str, int]]) -> bytes:
    with _XZ_ENCODERS:
        return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, filters=filters)


def _write_tar_xz(
    entries: list[_Entry],
    root_name: str,
    mtime: int,
    out: IO[bytes],
    threads: int,
    progress: _Progress,
    filters: list[dict[str, int]] = XZ_FILTERS,
) -> None:
    def sink(result: tuple[bytes, int]) -> None:
        out.write(result[0])
        progress.advance(result[1])

    threads = min(threads, XZ_MAX_THREADS)
    with ThreadPoolExecutor(threads, thread_name_prefix="xz") as pool:
        ordered: _Ordered[tuple[bytes, int]] = _Ordered(pool, threads + 1, sink)

        def emit(data: bytes, content: int) -> None:
            ordered.submit(lambda: (_xz_chunk(data, filters), content))

        try:
            _produce_tar(entries, root_name, mtime, _Chunker(XZ_CHUNK, emit))
            ordered.drain()
        except BaseException:
            ordered.cancel()
            raise


def _zstd_window_log(entries: list[_Entry]) -> int:
    """The smallest window holding the whole tar stream (bounded), from the entries alone."""
    # The tar size, generously: content rounded up to blocks, a header block and a PAX
    # header per entry, the end-of-archive blocks. (Only paths over ~450 bytes need more;
    # a window a little short of the stream is still correct, just less effective.)
    tar_bytes = sum(-(-e.size // 512) * 512 + 3 * 512 for e in entries) + 1024
    needed = max(tar_bytes - 1, 1).bit_length()
    return max(ZSTD_WINDOW_LOG_MIN, min(ZSTD_WINDOW_LOG_MAX, needed))


def _write_tar_zst(
    entries: list[_Entry],
    root_name: str,
    mtime: int,
    out: IO[bytes],
    threads: int,
    progress: _Progress,
) -> None:
    # Always at least one worker: zstd's single-threaded mode writes different bytes.
    workers = min(threads, zstd.CompressionParameter.nb_workers.bounds()[1])
    options = {
        **ZSTD_OPTIONS,
        zstd.CompressionParameter.window_log: _zstd_window_log(entries),
        zstd.CompressionParameter.nb_workers: workers,
    }
    compressor = zstd.ZstdCompressor(options=options)

    def emit(data: bytes, content: int) -> None:
        out.write(compressor.compress(data))
        progress.advance(content)

    _produce_tar(entries, root_name, mtime, _Chunker(ZSTD_FEED, emit))
    out.write(compressor.flush())


# --- zip writing ------------------------------------------------------------------------

_ZIP64_LIMIT = 0xFFFFFFFF
_ZIP_UNIX = 3


def _dos_datetime(mtime: int) -> tuple[int, int]:
    """(time, date) in MS-DOS format; zip cannot store dates before 1980 or after 2107."""
    t = time.gmtime(mtime)
    if t.tm_year < 1980:
        return 0, (0 << 9) | (1 << 5) | 1
    if t.tm_year > 2107:
        return (23 << 11) | (59 << 5) | 29, (127 << 9) | (12 << 5) | 31
    dos_time = (t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2)
    dos_date = ((t.tm_year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday
    return dos_time, dos_date


@dataclass
class _ZipRecord:
    name: bytes
    flags: int
    method: int
    crc: int
    compressed: int
    size: int
    offset: int
    external: int
    zip64: bool


def _deflate_chunk(entry: _Entry, start: int, length: int, last: bool) -> tuple[bytes, bytes]:
    """(raw, deflated) for one chunk; raw is returned so the writer can keep the CRC."""
    prime = min(start, _DEFLATE_WINDOW)
    data = b"".join(_read_pieces(entry, start - prime, prime + length))
    if len(data) != prime + length:
        raise ArchiveError(f"{entry.path}: the file changed size while it was being archived.")
    if prime:
        comp = zlib.compressobj(
            ZIP_LEVEL, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY, zdict=data[:prime]
        )
    else:
        comp = zlib.compressobj(ZIP_LEVEL, zlib.DEFLATED, -15)
    raw = data[prime:]
    # Non-final chunks end with a sync flush (byte aligned, not final): pigz's trick.
    deflated = comp.compress(raw) + comp.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)
    return raw, deflated


class _ZipWriter:
    def __init__(self, out: IO[bytes], mtime: int):
        self.out = out
        self.dos_time, self.dos_date = _dos_datetime(mtime)
        self.records: list[_ZipRecord] = []
        self.current: _ZipRecord | None = None

    def _local_header(self, rec: _ZipRecord) -> bytes:
        version = 45 if rec.zip64 else 20
        extra = b""
        crc, compressed, size = rec.crc, rec.compressed, rec.size
        if rec.zip64:
            extra = struct.pack("<HHQQ", 1, 16, rec.size, rec.compressed)
            compressed = size = _ZIP64_LIMIT
        return (
            struct.pack(
                "<IHHHHHIIIHH",
                0x04034B50,
                version,
                rec.flags,
                rec.method,
                self.dos_time,
                self.dos_date,
                crc,
                compressed,
                size,
                len(rec.name),
                len(extra),
            )
            + rec.name
            + extra
        )

    def begin(self, name: str, external: int, method: int, size: int) -> None:
        encoded = name.encode("utf-8")
        flags = 0 if encoded.isascii() else 0x800  # 0x800: name is UTF-8
        # Decided from the uncompressed size (known up front), like zipfile does.
        zip64 = size * 1.05 > _ZIP64_LIMIT
        rec = _ZipRecord(encoded, flags, method, 0, 0, 0, self.out.tell(), external, zip64)
        self.out.write(self._local_header(rec))
        self.current = rec
        self.records.append(rec)

    def data(self, raw: bytes, stored: bytes) -> None:
        assert self.current is not None
        rec = self.current
        rec.crc = zlib.crc32(raw, rec.crc)
        rec.size += len(raw)
        rec.compressed += len(stored)
        self.out.write(stored)

    def end(self) -> None:
        assert self.current is not None
        rec, self.current = self.current, None
        if rec.crc or rec.size or rec.compressed:
            end = self.out.tell()
            self.out.seek(rec.offset)
            self.out.write(self._local_header(rec))
            self.out.seek(end)

    def add_small(self, name: str, external: int, content: bytes) -> None:
        self.begin(name, external, zipfile.ZIP_STORED, len(content))
        self.data(content, content)
        self.end()

    def finish(self) -> None:
        cd_offset = self.out.tell()
        for rec in self.records:
            extra_fields: list[int] = []
            size, compressed, offset = rec.size, rec.compressed, rec.offset
            if size >= _ZIP64_LIMIT:
                extra_fields.append(size)
                size = _ZIP64_LIMIT
            if compressed >= _ZIP64_LIMIT:
                extra_fields.append(compressed)
                compressed = _ZIP64_LIMIT
            if offset >= _ZIP64_LIMIT:
                extra_fields.append(offset)
                offset = _ZIP64_LIMIT
            extra = b""
            if extra_fields:
                extra = struct.pack(
                    f"<HH{len(extra_fields)}Q", 1, 8 * len(extra_fields), *extra_fields
                )
            version = 45 if (rec.zip64 or extra_fields) else 20
            self.out.write(
                struct.pack(
                    "<IHHHHHHIIIHHHHHII",
                    0x02014B50,
                    (_ZIP_UNIX << 8) | version,
                    version,
                    rec.flags,
                    rec.method,
                    self.dos_time,
                    self.dos_date,
                    rec.crc,
                    compressed,
                    size,
                    len(rec.name),
                    len(extra),
                    0,
                    0,
                    0,
                    rec.external,
                    offset,
                )
                + rec.name
                + extra
            )
        cd_end = self.out.tell()
        count, cd_size = len(self.records), cd_end - cd_offset
        if count > 0xFFFF or cd_offset >= _ZIP64_LIMIT or cd_size >= _ZIP64_LIMIT:
            self.out.write(
                struct.pack(
                    "<IQHHIIQQQQ",
                    0x06064B50,
                    44,
                    (_ZIP_UNIX << 8) | 45,
                    45,
                    0,
                    0,
                    count,
                    count,
                    cd_size,
                    cd_offset,
                )
            )
            self.out.write(struct.pack("<IIQI", 0x07064B50, 0, cd_end, 1))
        self.out.write(
            struct.pack(
                "<IHHHHIIH",
                0x06054B50,
                0,
                0,
                min(count, 0xFFFF),
                min(count, 0xFFFF),
                min(cd_size, _ZIP64_LIMIT),
                min(cd_offset, _ZIP64_LIMIT),
                0,
            )
        )


# A zip job result: (entry, chunk start, raw bytes, deflated bytes, is last chunk)
_ZipResult = tuple[_Entry, int, bytes, bytes, bool]


def _write_zip(
    entries: list[_Entry],
    root_name: str,
    mtime: int,
    out: IO[bytes],
    threads: int,
    progress: _Progress,
) -> None:
    writer = _ZipWriter(out, mtime)

    def sink(result: _ZipResult) -> None:
        entry, start, raw, deflated, last = result
        name = _member_name(root_name, entry)
        if entry.kind == "dir":
            writer.add_small(name + "/", ((stat.S_IFDIR | 0o755) << 16) | 0x10, b"")
            return
        if entry.kind == "symlink":
            writer.add_small(name, (stat.S_IFLNK | 0o777) << 16, raw)
            return
        if start == 0:
            mode = stat.S_IFREG | entry.mode
            writer.begin(
                _member_name(root_name, entry), mode << 16, zipfile.ZIP_DEFLATED, entry.size
            )
        writer.data(raw, deflated)
        progress.advance(len(raw))
        if last:
            writer.end()

    def job(entry: _Entry, start: int, length: int, last: bool) -> Callable[[], _ZipResult]:
        def run() -> _ZipResult:
            raw, deflated = _deflate_chunk(entry, start, length, last)
            return entry, start, raw, deflated, last

        return run

    with ThreadPoolExecutor(threads, thread_name_prefix="zip") as pool:
        # Chunks are small, so a deeper look-ahead keeps every worker busy.
        ordered: _Ordered[_ZipResult] = _Ordered(pool, 4 * threads + 4, sink)
        try:
            for entry in entries:
                if entry.kind == "file":
                    starts = range(0, max(entry.size, 1), ZIP_CHUNK)
                    for i, start in enumerate(starts):
                        length = min(ZIP_CHUNK, entry.size - start)
                        ordered.submit(job(entry, start, length, i == len(starts) - 1))
                    continue
                # Folders and symlinks need no work; they just keep their place in line.
                ordered.put_ready((entry, 0, entry.target.encode("utf-8"), b"", True))
            ordered.drain()
        except BaseException:
            ordered.cancel()
            raise
    writer.finish()


# --- public writing API -----------------------------------------------------------------


_ArchiveWriter = Callable[[list[_Entry], str, int, IO[bytes], int, _Progress], None]


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
    _check_root_name(root_name, "Archive root folder name")
    if mtime < 0:
        raise ArchiveError(f"{archive_path}: archive mtime must not be negative (got {mtime}).")
    if not source_dir.is_dir():
        raise ArchiveError(f"{source_dir}: cannot archive it, it is not a folder.")
    entries = _scan(source_dir, exclude)
    total = sum(e.size for e in entries if e.kind == "file")
    tracker = _Progress(progress, total)
    workers = _thread_count(threads)
    writers: dict[ArchiveFormat, _ArchiveWriter] = {
        ArchiveFormat.TAR_XZ: functools.partial(
            _write_tar_xz, filters=XZ_FILTERS_X86 if x86_code else XZ_FILTERS
        ),
        ArchiveFormat.TAR_ZST: _write_tar_zst,
        ArchiveFormat.ZIP: _write_zip,
    }
    with atomic_path(archive_path) as tmp:
        with tmp.open("wb") as out:
            writers[fmt](entries, root_name, mtime, out, workers, tracker)
        tmp.chmod(0o644)  # mkstemp creates 0o600; an archive is meant to be shared
        info = ArchiveInfo(size=tmp.stat().st_size, sha256=sha256_file(tmp))
    tracker.finish()
    return info


# --- reading ----------------------------------------------------------------------------


def detect_format(archive_path: Path) -> ArchiveFormat:
    """The archive's format, from its first bytes (not its name)."""
    try:
        with archive_path.open("rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise ArchiveError(f"{archive_path}: cannot read the archive ({exc.strerror}).") from exc
    if head.startswith(_XZ_MAGIC):
        return ArchiveFormat.TAR_XZ
    if head.startswith(_ZSTD_MAGIC):
        return ArchiveFormat.TAR_ZST
    if head.startswith(_ZIP_MAGICS):
        return ArchiveFormat.ZIP
    raise ArchiveError(
        f"{archive_path}: not a tar.xz, tar.zst or zip archive (unrecognized first bytes)."
    )


class _CountingReader:
    """Counts decompressed bytes, to tell a complete tar stream from a cut-off one."""

    def __init__(self, raw: IO[bytes]):
        self.raw = raw
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.count += len(data)
        return data


def _open_decompressed(archive_path: Path, fmt: ArchiveFormat) -> IO[bytes]:
    if fmt is ArchiveFormat.TAR_XZ:
        return lzma.open(archive_path, "rb")
    return cast(IO[bytes], zstd.ZstdFile(archive_path, "rb"))


_CORRUPT = (
    tarfile.TarError,
    lzma.LZMAError,
    EOFError,
    zlib.error,
    zipfile.BadZipFile,
    zstd.ZstdError,
    NotImplementedError,  # zipfile: unsupported compression method
    UnicodeDecodeError,
    struct.error,  # zipfile: malformed headers
)


def _corrupt(archive_path: Path, exc: BaseException, member: str | None = None) -> ArchiveError:
    where = f" (at member {member!r})" if member else ""
    return ArchiveError(
        f"{archive_path}: the archive is truncated or corrupt{where}: {exc}. "
        "Download or build it again."
    )


@dataclass
class _Member:
    name: str
    kind: Literal["dir", "file", "symlink", "hardlink", "device", "other"]
    mode: int
    size: int
    linkname: str
    open: Callable[[], IO[bytes]] | None


def _tar_members(archive_path: Path, fmt: ArchiveFormat) -> Iterator[_Member]:
    with _open_decompressed(archive_path, fmt) as raw:
        counter = _CountingReader(raw)
        try:
            # Stream mode: one pass, no seeking back into the decompressed data.
            tf = tarfile.open(fileobj=counter, mode="r|")  # type: ignore[call-overload]  # noqa: SIM115
        except _CORRUPT as exc:
            raise _corrupt(archive_path, exc) from exc
        with tf:
            while True:
                try:
                    info = tf.next()
                except _CORRUPT as exc:
                    raise _corrupt(archive_path, exc) from exc
                if info is None:
                    break
                yield _tar_member(tf, info)
            end = tf.offset
            try:
                while counter.read(_TAR_RECORD):
                    pass
            except _CORRUPT as exc:
                raise _corrupt(archive_path, exc) from exc
        # tarfile stops quietly at a cut-off header; require the end-of-archive marker.
        if counter.count < end + 2 * _TAR_BLOCK:
            raise _corrupt(archive_path, EOFError("the end-of-archive marker is missing"))


def _tar_member(tf: tarfile.TarFile, info: tarfile.TarInfo) -> _Member:
    name = info.name + ("/" if info.isdir() and not info.name.endswith("/") else "")
    if info.isreg():

        def opener() -> IO[bytes]:
            f = tf.extractfile(info)
            assert f is not None
            return f

        return _Member(name, "file", info.mode, info.size, "", opener)
    if info.isdir():
        return _Member(name, "dir", info.mode, 0, "", None)
    if info.issym():
        return _Member(name, "symlink", info.mode, 0, info.linkname, None)
    if info.islnk():
        return _Member(name, "hardlink", info.mode, 0, info.linkname, None)
    if info.ischr() or info.isblk() or info.isfifo():
        return _Member(name, "device", info.mode, 0, "", None)
    return _Member(name, "other", info.mode, 0, "", None)


def _zip_members(archive_path: Path) -> Iterator[_Member]:
    try:
        zf = zipfile.ZipFile(archive_path)
    except _CORRUPT as exc:
        raise _corrupt(archive_path, exc) from exc
    with zf:
        for info in zf.infolist():
            yield _zip_member(archive_path, zf, info)


def _zip_member(archive_path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> _Member:
    unix_mode = info.external_attr >> 16 if info.create_system == _ZIP_UNIX else 0
    fmt = stat.S_IFMT(unix_mode)
    name = info.filename
    if info.flag_bits & 0x1:
        return _Member(name, "other", 0, 0, "encrypted", None)

    def opener() -> IO[bytes]:
        return zf.open(info)

    if info.is_dir() or fmt == stat.S_IFDIR:
        return _Member(name if name.endswith("/") else name + "/", "dir", 0o755, 0, "", None)
    if fmt == stat.S_IFLNK:
        if info.file_size > 4096:
            return _Member(name, "other", 0, 0, "oversized symlink", None)
        try:
            target = zf.read(info).decode("utf-8")
        except _CORRUPT as exc:
            raise _corrupt(archive_path, exc, name) from exc
        return _Member(name, "symlink", 0o777, 0, target, None)
    if fmt in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK):
        return _Member(name, "device", unix_mode, 0, "", None)
    if fmt not in (0, stat.S_IFREG):
        return _Member(name, "other", unix_mode, 0, "", None)
    mode = unix_mode & 0o777 if unix_mode else 0o644
    return _Member(name, "file", mode, info.file_size, "", opener)


def _members(archive_path: Path) -> Iterator[_Member]:
    fmt = detect_format(archive_path)
    if fmt is ArchiveFormat.ZIP:
        return _zip_members(archive_path)
    return _tar_members(archive_path, fmt)


def iter_archive_members(archive_path: Path) -> Iterator[str]:
    """Member names in archive order; folders end with '/' for every format."""
    for member in _members(archive_path):
        yield member.name


# --- safe extraction --------------------------------------------------------------------


class _Extractor:
    def __init__(self, archive: Path, stage: Path, root: str, allow_sibling_symlinks: bool):
        self.archive = archive
        self.stage = stage  # the temp folder that will become dest_parent/root
        self.root = root
        self.allow_sibling_symlinks = allow_sibling_symlinks
        self.seen: dict[tuple[str, ...], str] = {}
        self.real_dirs: set[tuple[str, ...]] = {()}

    def refuse(self, member: str, why: str) -> ArchiveError:
        return ArchiveError(
            f"{self.archive}: refusing to unpack member {member!r}: {why}. "
            "The archive is unsafe or damaged; do not deploy it."
        )

    def parts(self, raw: str, member: str, what: str = "it") -> tuple[str, ...]:
        """Path parts below the layer root; refuses anything that could land elsewhere."""
        if "\0" in raw:
            raise self.refuse(member, f"{what} contains a NUL byte")
        if raw.startswith(("/", "\\")) or (len(raw) >= 2 and raw[1] == ":"):
            raise self.refuse(member, f"{what} has an absolute path")
        if os.name == "nt" and "\\" in raw:
            raise self.refuse(member, f"{what} contains a backslash")
        parts = [p for p in raw.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise self.refuse(member, f"{what} contains a '..' component")
        if not parts or parts[0] != self.root:
            raise self.refuse(
                member, f"{what} is not under the expected top-level folder {self.root + '/'!r}"
            )
        return tuple(parts[1:])

    def ensure_dir(self, parts: tuple[str, ...], member: str) -> Path:
        """Create (or check) a real folder at ``parts``, never following a symlink."""
        path = self.stage
        for depth in range(1, len(parts) + 1):
            prefix = parts[:depth]
            path = path / prefix[-1]
            if prefix in self.real_dirs:
                continue
            kind = self.seen.get(prefix)
            if kind is not None and kind != "dir":
                raise self.refuse(
                    member,
                    f"its path goes through the {kind} member {'/'.join((self.root, *prefix))!r}",
                )
            try:
                os.mkdir(path, 0o755)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    raise self.refuse(member, "its path goes through a non-folder") from None
            os.chmod(path, 0o755)
            self.real_dirs.add(prefix)
        return path

    def add(self, m: _Member) -> None:
        parts = self.parts(m.name, m.name)
        if parts in self.seen:
            raise self.refuse(m.name, "it appears more than once in the archive")
        if m.kind == "device":
            raise self.refuse(m.name, "it is a device file or fifo")
        if m.kind == "other":
            raise self.refuse(m.name, f"it has an unsupported member type {m.linkname}".strip())
        if not parts:
            if m.kind != "dir":
                raise self.refuse(m.name, "the top-level entry must be a folder")
            self.seen[parts] = "dir"
            return
        parent = self.ensure_dir(parts[:-1], m.name)
        target = parent / parts[-1]
        if m.kind == "dir":
            self.seen[parts] = "dir"
            self.ensure_dir(parts, m.name)
            return
        try:
            if m.kind == "file":
                self.write_file(m, target)
            elif m.kind == "symlink":
                self.check_symlink(m, parts)
                os.symlink(m.linkname, target)
            else:
                os.link(self.hardlink_source(m), target, follow_symlinks=False)
            self.seen[parts] = "symlink" if m.kind == "symlink" else "file"
        except FileExistsError:
            raise self.refuse(
                m.name, "it clashes with another member of the same name (on this file system)"
            ) from None

    def check_symlink(self, m: _Member, parts: tuple[str, ...]) -> None:
        target = m.linkname
        if not target or "\0" in target:
            raise self.refuse(m.name, "its symlink target is empty or invalid")
        if target.startswith(("/", "\\")) or (len(target) >= 2 and target[1] == ":"):
            raise self.refuse(
                m.name, f"its symlink target {target!r} is absolute and leaves the layer"
            )
        pieces = target.rstrip("/").split("/")
        ups = 0
        while ups < len(pieces) and pieces[ups] == "..":
            ups += 1
        rest = pieces[ups:]
        # Only "../../name/name" shapes: a '..' after a name could climb out through
        # another symlink even when the text looks like it stays inside.
        if any(p in ("", ".", "..") for p in rest) or (os.name == "nt" and "\\" in target):
            raise self.refuse(m.name, f"its symlink target {target!r} is not a plain relative path")
        limit = len(parts) - 1 + (1 if self.allow_sibling_symlinks else 0)
        if ups > limit:
            raise self.refuse(
                m.name, f"its symlink target {target!r} leaves the layer {self.root + '/'!r}"
            )

    def hardlink_source(self, m: _Member) -> Path:
        source = self.parts(m.linkname, m.name, f"its hard link target {m.linkname!r}")
        if self.seen.get(source) != "file" or not source:
            raise self.refuse(
                m.name,
                f"its hard link target {m.linkname!r} is not an earlier regular file in the layer",
            )
        return self.stage.joinpath(*source)

    def write_file(self, m: _Member, target: Path) -> None:
        assert m.open is not None
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        flags |= getattr(os, "O_BINARY", 0)
        mode = 0o755 if m.mode & 0o111 else 0o644
        fd = os.open(target, flags, 0o600)
        with os.fdopen(fd, "wb") as out:
            written = 0
            try:
                with m.open() as src:
                    while piece := src.read(_READ_SIZE):
                        out.write(piece)
                        written += len(piece)
            except _CORRUPT as exc:
                raise _corrupt(self.archive, exc, m.name) from exc
            if written != m.size:
                raise _corrupt(self.archive, EOFError(f"{written} of {m.size} bytes"), m.name)
        os.chmod(target, mode)


def _check_identity(archive: Path, size: int | None, sha256: str | None) -> None:
    try:
        actual_size = archive.stat().st_size
    except OSError as exc:
        raise ArchiveError(f"{archive}: cannot read the archive ({exc.strerror}).") from exc
    if size is not None and actual_size != size:
        raise ArchiveError(
            f"{archive}: size mismatch: expected {size} bytes (archive_size in the metadata), "
            f"found {actual_size}. The download is incomplete or the archive was replaced."
        )
    if sha256 is not None:
        digest = hashlib.sha256()
        with archive.open("rb") as f:
            while block := f.read(_READ_SIZE):
                digest.update(block)
        actual = digest.hexdigest()
        if actual != sha256.lower():
            raise ArchiveError(
                f"{archive}: sha256 mismatch: expected {sha256.lower()} (archive_hashes in the "
                f"metadata), found {actual}. The archive is damaged or was replaced."
            )


def extract_archive(
    archive_path: Path,
    dest_parent: Path,
    *,
    expected_root: str,
    expected_size: int | None = None,
    expected_sha256: str | None = None,
    replace: bool = False,
    allow_sibling_symlinks: bool = False,
) -> Path:
    """Safely unpack ``archive_path`` to ``dest_parent/expected_root`` and return that path.

    Size and sha256 are checked before anything is unpacked. Every member must live under
    ``expected_root/``; symlinks must stay inside the layer (or, with
    ``allow_sibling_symlinks``, inside ``dest_parent``, for links into lower layers).
    On any failure ``dest_parent`` is left exactly as it was.
    """
    _check_root_name(expected_root, "Expected archive root folder")
    dest = dest_parent / expected_root
    if (dest.exists() or dest.is_symlink()) and not replace:
        raise ArchiveError(
            f"{dest}: already exists; remove it or unpack {archive_path.name} with replace."
        )
    _check_identity(archive_path, expected_size, expected_sha256)
    created = _make_parents(dest_parent)
    scratch: Path | None = None
    try:
        scratch = Path(
            tempfile.mkdtemp(prefix=f".{expected_root}.", suffix=".unpack", dir=dest_parent)
        )
        stage = scratch / expected_root
        os.mkdir(stage, 0o755)
        extractor = _Extractor(archive_path, stage, expected_root, allow_sibling_symlinks)
        count = 0
        for member in _members(archive_path):
            extractor.add(member)
            count += 1
        if not count:
            raise ArchiveError(f"{archive_path}: the archive has no members; build it again.")
        os.chmod(stage, 0o755)
        replace_dir(stage, dest)
    except BaseException:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
            scratch = None
        for folder in reversed(created):
            _rmdir_quietly(folder)
        raise
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return dest


def _make_parents(folder: Path) -> list[Path]:
    """mkdir -p, returning the folders it created (outermost first) to undo on failure."""
    missing: list[Path] = []
    probe = folder
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    missing.reverse()
    for path in missing:
        path.mkdir(exist_ok=True)
    return missing


def _rmdir_quietly(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()
