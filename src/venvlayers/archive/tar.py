"""Reproducible tar streams, compressed as chunked parallel xz or one multi-threaded zstd frame."""

from __future__ import annotations

import lzma
import os
import tarfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

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


def _xz_chunk(data: bytes, filters: list[dict[str, int]]) -> bytes:
    with _XZ_ENCODERS:
        return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, filters=filters)


def write_tar_xz(job: ArchiveJob, filters: list[dict[str, int]] = tuning.XZ_FILTERS) -> None:
    out, progress = job.out, job.progress

    def sink(result: tuple[bytes, int]) -> None:
        out.write(result[0])
        progress.advance(result[1])

    threads = min(job.threads, tuning.XZ_MAX_THREADS)
    with ThreadPoolExecutor(threads, thread_name_prefix="xz") as pool:
        ordered: Ordered[tuple[bytes, int]] = Ordered(pool, threads + 1, sink)

        def emit(data: bytes, content: int) -> None:
            ordered.submit(lambda: (_xz_chunk(data, filters), content))

        try:
            _produce_tar(job, _Chunker(tuning.XZ_CHUNK, emit))
            ordered.drain()
        except BaseException:
            ordered.cancel()
            raise


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
