"""Reproducible tar streams, compressed as chunked parallel xz or one multi-threaded zstd frame."""

from __future__ import annotations

import bisect
import functools
import hashlib
import lzma
import os
import tarfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from venvlayers.archive import tuning
from venvlayers.archive.formats import TAR_BLOCK, TAR_RECORD, ArchiveFormat, zstd
from venvlayers.archive.scan import ArchiveJob, Entry, Ordered, member_name, read_pieces
from venvlayers.archive.units import Segment, cut_points

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


@dataclass(frozen=True)
class TarLayout:
    """Where a tar writer put things: its segments, each entry's content offset in the tar
    stream (same order as the job's entries), and the sha256 of every file it read whole
    inside one segment (by path below the root; a file cut by a segment end is not)."""

    segments: list[Segment]
    data_offsets: list[int]
    digests: dict[str, str]


def _tar_layout(job: ArchiveJob) -> tuple[list[_Part], int, list[tuple[int, int]]]:
    """Where every header, file and padding sits in the tar stream, its total size, and
    each entry's (header offset, content offset).

    The tar stream is fully determined by the scanned entries, so each segment can be
    read straight from the files by the worker compressing it: no segment is ever held in
    memory, only the compressor's own state and its (compressed) output."""
    parts: list[_Part] = []
    offsets: list[tuple[int, int]] = []
    offset = 0

    def literal(data: bytes) -> None:
        nonlocal offset
        parts.append(_Part(offset, len(data), data, None))
        offset += len(data)

    for entry in job.entries:
        head = offset
        literal(_tar_header(member_name(job.root_name, entry), entry, job.mtime))
        offsets.append((head, offset))
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
    return parts, offset, offsets


Compressor = lzma.LZMACompressor | zstd.ZstdCompressor


@dataclass(frozen=True)
class _Compressed:
    """One segment compressed: its pieces as the compressor gave them (not joined: a big
    zstd frame is tens of MiB, and joining would hold it twice), and how many file bytes
    it holds (for progress)."""

    pieces: list[bytes]
    content: int
    digests: dict[str, str]

    @property
    def size(self) -> int:
        return sum(len(piece) for piece in self.pieces)


def _compress_run(
    parts: list[_Part], starts: list[int], begin: int, end: int, make: Callable[[], Compressor]
) -> _Compressed:
    """The tar stream's bytes ``begin:end``, read from the files, as one xz stream or zstd
    frame; each file read whole is hashed on the way (the layer index needs its sha256:
    no second pass over the files)."""
    out: list[bytes] = []
    content = 0
    digests: dict[str, str] = {}
    compressor = make()
    # headers and small files gathered into ~1 MiB feeds: fewer, larger encoder calls
    feed = bytearray()
    index = max(bisect.bisect_right(starts, begin) - 1, 0)
    while index < len(parts) and parts[index].offset < end:
        part = parts[index]
        lo = max(begin - part.offset, 0)
        hi = min(end - part.offset, part.length)
        if part.entry is not None:
            content += hi - lo
            digest = hashlib.sha256() if hi - lo == part.length else None
            for piece in read_pieces(part.entry, lo, hi - lo):
                if digest is not None:
                    digest.update(piece)
                feed += piece
                if len(feed) >= _FEED:
                    out.append(compressor.compress(feed))
                    feed.clear()
            if digest is not None:
                digests[part.entry.rel] = digest.hexdigest()
        elif part.data is not None:
            feed += part.data[lo:hi]
        index += 1
    out.append(compressor.compress(feed))
    out.append(compressor.flush())
    return _Compressed([piece for piece in out if piece], content, digests)


def _xz_run(
    parts: list[_Part], starts: list[int], begin: int, end: int, filters: list[dict[str, int]]
) -> _Compressed:
    with _XZ_ENCODERS:
        return _compress_run(
            parts,
            starts,
            begin,
            end,
            lambda: lzma.LZMACompressor(
                format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, filters=filters
            ),
        )


_Run = Callable[[list[_Part], list[int], int, int], _Compressed]


def _write_segments(job: ArchiveJob, fmt: ArchiveFormat, run: _Run) -> TarLayout:
    """Compress the tar stream segment by segment (cut at unit starts, ``units.cut_points``)
    on the pool, writing them in order; where each landed."""
    out, progress = job.out, job.progress
    parts, total, offsets = _tar_layout(job)
    starts = [p.offset for p in parts]
    heads = [offsets[i][0] for i in job.unit_starts] if job.unit_starts else [0]
    cuts = cut_points(heads, total, fmt)
    bounds = list(zip(cuts, [*cuts[1:], total], strict=True))
    segments: list[Segment] = []
    digests: dict[str, str] = {}
    written = 0

    def sink(result: _Compressed) -> None:
        nonlocal written
        begin, end = bounds[len(segments)]
        size = result.size
        digests.update(result.digests)
        for piece in result.pieces:
            out.write(piece)
        result.pieces.clear()  # let the pieces go now, not when the queue moves on
        segments.append(Segment(begin, end, written, written + size))
        written += size
        progress.advance(result.content)

    threads = min(job.threads, tuning.XZ_MAX_THREADS)
    ordered: Ordered[_Compressed] = Ordered(_xz_pool(threads), threads + 1, sink)
    try:
        for begin, end in bounds:
            ordered.submit(functools.partial(run, parts, starts, begin, end))
        ordered.drain()
    except BaseException:
        ordered.cancel()
        raise
    return TarLayout(segments, [o[1] for o in offsets], digests)


def write_tar_xz(job: ArchiveJob, filters: list[dict[str, int]] = tuning.XZ_FILTERS) -> TarLayout:
    """The tar stream cut into segments, each compressed as its own xz stream, in order.

    Workers read their segment's files themselves, so memory is the encoders plus a
    bounded number of compressed segments waiting for their turn to be written."""
    return _write_segments(job, ArchiveFormat.TAR_XZ, functools.partial(_xz_run, filters=filters))


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


def zstd_window_log(size: int) -> int:
    """The smallest window holding ``size`` bytes of tar stream (bounded)."""
    needed = max(size - 1, 1).bit_length()
    return max(tuning.ZSTD_WINDOW_LOG_MIN, min(tuning.ZSTD_WINDOW_LOG_MAX, needed))


def zstd_frame_options(size: int, threads: int = 1) -> dict[int, int]:
    """The options of a frame of ``size`` bytes of tar stream: chosen by its size alone, so
    the bytes never depend on the cores (zstd's bytes do not depend on its worker count)."""
    param = zstd.CompressionParameter
    jobs = tuning.ZSTD_SMALL_JOBS
    if size > 2 * jobs[param.job_size]:
        jobs = tuning.ZSTD_BIG_JOBS
    elif size > jobs[param.job_size]:
        jobs = {**jobs, **tuning.ZSTD_TWO_JOBS}
    job = jobs[param.job_size]
    # match tables no bigger than the frame needs, as zstd sizes them itself for an input
    # of known size: a small frame does not clear tens of MiB of tables
    log = max(10, (size - 1).bit_length())
    workers = min(threads, param.nb_workers.bounds()[1])
    return {
        **tuning.ZSTD_OPTIONS,
        **jobs,
        param.window_log: zstd_window_log(size),
        param.hash_log: min(tuning.ZSTD_HASH_LOG, log + 1),
        param.chain_log: min(tuning.ZSTD_CHAIN_LOG, log),
        # at least one worker: zstd's single-threaded mode writes other bytes. Small frames
        # run side by side on the pool; a frame of several jobs uses zstd's own workers.
        param.nb_workers: max(1, workers if size > job else 1),
    }


def _zstd_run(
    parts: list[_Part], starts: list[int], begin: int, end: int, threads: int = 1
) -> _Compressed:
    options = zstd_frame_options(end - begin, threads)
    if options[zstd.CompressionParameter.nb_workers] == 1:
        return _compress_run(
            parts, starts, begin, end, lambda: zstd.ZstdCompressor(options=options)
        )
    # A frame on zstd's workers already uses every core, and each such compressor holds
    # its window and jobs (hundreds of MiB at a 128 MiB window): one at a time per
    # process, so publish's peak memory does not grow with the number of big frames
    # the pool could start together (measured: 738 MiB at 2 GB with two at once).
    with _BIG_ZSTD_FRAME:
        return _compress_run(
            parts, starts, begin, end, lambda: zstd.ZstdCompressor(options=options)
        )


_BIG_ZSTD_FRAME = threading.Lock()


def write_tar_zst(job: ArchiveJob) -> TarLayout:
    """The tar stream cut into segments, each its own zstd frame, compressed side by side."""
    return _write_segments(
        job, ArchiveFormat.TAR_ZST, functools.partial(_zstd_run, threads=job.threads)
    )
