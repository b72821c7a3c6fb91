"""Reproducible tar streams, compressed as chunked parallel xz or one multi-threaded zstd frame."""

from __future__ import annotations

import bisect
import functools
import lzma
import os
import tarfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from venvlayers.archive import tuning
from venvlayers.archive.formats import TAR_BLOCK, TAR_RECORD, zstd
from venvlayers.archive.scan import ArchiveJob, Entry, Ordered, member_name, read_pieces

# --- tar writing ------------------------------------------------------------------------


def _tar_header(name: str, entry: Entry, mtime: int) -> bytes:
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


def _produce_tar(job: ArchiveJob, out: _Chunker) -> None:
    for entry in job.entries:
        out.write(_tar_header(member_name(job.root_name, entry), entry, job.mtime))
        if entry.kind != "file":
            continue
        for piece in read_pieces(entry):
            out.write(piece, len(piece))
        if entry.size % TAR_BLOCK:
            out.write(b"\0" * (TAR_BLOCK - entry.size % TAR_BLOCK))
    # End-of-archive marker, then pad to a whole record like tarfile and GNU tar do.
    out.write(b"\0" * (2 * TAR_BLOCK))
    if out.total % TAR_RECORD:
        out.write(b"\0" * (TAR_RECORD - out.total % TAR_RECORD))
    out.close()


# Across every archive written at once (publish compresses layers concurrently), no more
# xz encoders (~94 MiB each) run than there are cores: more would only cost memory.
_XZ_ENCODERS = threading.BoundedSemaphore(min(os.cpu_count() or 1, tuning.XZ_MAX_THREADS))


_FEED = 1 << 20


@dataclass(frozen=True)
class _Part:
    """A run of the tar stream: literal bytes (headers, padding) or one file's content."""

    offset: int
    length: int
    data: bytes | None
    entry: Entry | None


def _tar_layout(job: ArchiveJob) -> tuple[list[_Part], int]:
    """Where every header, file and padding sits in the tar stream, and its total size.

    The tar stream is fully determined by the scanned entries, so each xz chunk can be
    read straight from the files by the worker compressing it: no chunk is ever held in
    memory, only the compressor's own state and its (compressed) output."""
    parts: list[_Part] = []
    offset = 0

    def literal(data: bytes) -> None:
        nonlocal offset
        parts.append(_Part(offset, len(data), data, None))
        offset += len(data)

    for entry in job.entries:
        literal(_tar_header(member_name(job.root_name, entry), entry, job.mtime))
        if entry.kind != "file":
            continue
        if entry.size:
            parts.append(_Part(offset, entry.size, None, entry))
            offset += entry.size
        if entry.size % TAR_BLOCK:
            literal(bytes(TAR_BLOCK - entry.size % TAR_BLOCK))
    # End-of-archive marker, then pad to a whole record like tarfile and GNU tar do.
    end = 2 * TAR_BLOCK
    end += -(offset + end) % TAR_RECORD
    literal(bytes(end))
    return parts, offset


def _xz_chunk(
    parts: list[_Part], starts: list[int], begin: int, end: int, filters: list[dict[str, int]]
) -> tuple[bytes, int]:
    """The tar stream's bytes ``begin:end``, read from the files, as one xz stream; and how
    many file bytes it holds (for progress)."""
    out = []
    content = 0
    with _XZ_ENCODERS:
        compressor = lzma.LZMACompressor(
            format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, filters=filters
        )
        # headers and small files gathered into ~1 MiB feeds: fewer, larger encoder calls
        feed = bytearray()
        index = max(bisect.bisect_right(starts, begin) - 1, 0)
        while index < len(parts) and parts[index].offset < end:
            part = parts[index]
            lo = max(begin - part.offset, 0)
            hi = min(end - part.offset, part.length)
            if part.entry is not None:
                content += hi - lo
                for piece in read_pieces(part.entry, lo, hi - lo):
                    feed += piece
                    if len(feed) >= _FEED:
                        out.append(compressor.compress(feed))
                        feed.clear()
            elif part.data is not None:
                feed += part.data[lo:hi]
            index += 1
        out.append(compressor.compress(feed))
        out.append(compressor.flush())
    return b"".join(out), content


def write_tar_xz(job: ArchiveJob, filters: list[dict[str, int]] = tuning.XZ_FILTERS) -> None:
    """Fixed-size chunks of the tar stream, each compressed as its own xz stream, in order.

    Same bytes as compressing the whole tar stream cut into ``XZ_CHUNK`` pieces; workers
    read their chunk's files themselves, so memory is the encoders plus a bounded number
    of compressed chunks waiting for their turn to be written."""
    out, progress = job.out, job.progress
    parts, total = _tar_layout(job)
    starts = [p.offset for p in parts]

    def sink(result: tuple[bytes, int]) -> None:
        out.write(result[0])
        progress.advance(result[1])

    threads = min(job.threads, tuning.XZ_MAX_THREADS)
    ordered: Ordered[tuple[bytes, int]] = Ordered(_xz_pool(threads), threads + 1, sink)
    try:
        for begin in range(0, total, tuning.XZ_CHUNK):
            end = min(begin + tuning.XZ_CHUNK, total)
            ordered.submit(functools.partial(_xz_chunk, parts, starts, begin, end, filters))
        ordered.drain()
    except BaseException:
        ordered.cancel()
        raise


_XZ_POOLS: dict[int, ThreadPoolExecutor] = {}
_XZ_POOLS_LOCK = threading.Lock()


def _xz_pool(threads: int) -> ThreadPoolExecutor:
    """One process-wide pool per thread count, shared by every archive written at once:
    the same few threads run every encoder, so the memory an encoder leaves in a thread's
    malloc arena is reused by the next one instead of piling up across layers."""
    with _XZ_POOLS_LOCK:
        pool = _XZ_POOLS.get(threads)
        if pool is None:
            pool = _XZ_POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="xz")
        return pool


def zstd_window_log(entries: list[Entry]) -> int:
    """The smallest window holding the whole tar stream (bounded), from the entries alone."""
    # The tar size, generously: content rounded up to blocks, a header block and a PAX
    # header per entry, the end-of-archive blocks. (Only paths over ~450 bytes need more;
    # a window a little short of the stream is still correct, just less effective.)
    tar_bytes = sum(-(-e.size // 512) * 512 + 3 * 512 for e in entries) + 1024
    needed = max(tar_bytes - 1, 1).bit_length()
    return max(tuning.ZSTD_WINDOW_LOG_MIN, min(tuning.ZSTD_WINDOW_LOG_MAX, needed))


def write_tar_zst(job: ArchiveJob) -> None:
    out, progress = job.out, job.progress
    # Always at least one worker: zstd's single-threaded mode writes different bytes.
    workers = min(job.threads, zstd.CompressionParameter.nb_workers.bounds()[1])
    options = {
        **tuning.ZSTD_OPTIONS,
        zstd.CompressionParameter.window_log: zstd_window_log(job.entries),
        zstd.CompressionParameter.nb_workers: workers,
    }
    compressor = zstd.ZstdCompressor(options=options)

    def emit(data: bytes, content: int) -> None:
        out.write(compressor.compress(data))
        progress.advance(content)

    _produce_tar(job, _Chunker(tuning.ZSTD_FEED, emit))
    out.write(compressor.flush())
