"""Physical limits the benchmark prints next to its table.

- publish: the uncompressed tar bytes of every layer divided by (one core's xz throughput,
  measured on a sample of that same tar data with venvlayers' filters, times the cores);
- deploy: the bytes the deploy wrote divided by this disk's measured write throughput, and
  the archive bytes it had to decompress divided by (one core's xz decode throughput x cores);
  a first deploy adds the CPU seconds of compiling every layer's bytecode (measured on a
  deployment made without it) divided by the cores.

Throughputs are CPU time of one thread (``time.thread_time``), so other work on a shared
machine slows them less than it slows wall-clock rows; the limits are therefore on the
optimistic side, as limits should be.
"""

from __future__ import annotations

import lzma
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from venvlayers.archive import tuning as _tuning

XZ_FILTERS: list[dict[str, int]] = _tuning.XZ_FILTERS
XZ_FILTERS_X86: list[dict[str, int]] = _tuning.XZ_FILTERS_X86

# Pieces as long as the writer's xz streams (``tuning.XZ_CHUNK``): xz's match finder works
# harder as its dictionary fills, so shorter pieces overstate the rate. On the small bench
# stack's CPython runtime (30.2 MB of tar, one core, x86 filters): 4 MiB pieces 8.2 CPU s,
# 16 MiB pieces 9.7, one stream 10.0; with 4 MiB pieces the limit was 15 % too optimistic.
SAMPLE_PIECE = _tuning.XZ_CHUNK
SAMPLE_PIECES = 4
TAR_SUFFIX = ".tar.xz"


def _filters() -> list[dict[str, int]]:
    return XZ_FILTERS_X86 if platform.machine() in ("x86_64", "AMD64") else XZ_FILTERS


def _decompressed(archive: Path) -> Iterator[bytes]:
    with lzma.open(archive, "rb") as stream:
        while block := stream.read(1 << 20):
            yield block


@dataclass
class TarData:
    """What is inside a publish output's tar archives."""

    tar_bytes: int
    archive_bytes: int
    sample: list[bytes]


def read_tar_data(folder: Path) -> TarData:
    """Uncompressed size of every tar.xz archive in ``folder`` and an evenly spread sample of it."""
    archives = sorted(p for p in folder.iterdir() if p.name.endswith(TAR_SUFFIX))
    total = sum(sum(len(b) for b in _decompressed(a)) for a in archives)
    stride = max(1, total // (SAMPLE_PIECE * SAMPLE_PIECES))
    sample: list[bytes] = []
    offset = 0
    for archive in archives:
        piece = bytearray()
        for block in _decompressed(archive):
            if offset % stride < len(block) or piece:
                piece += block
                if len(piece) >= SAMPLE_PIECE:
                    sample.append(bytes(piece[:SAMPLE_PIECE]))
                    piece.clear()
            offset += len(block)
        if piece and len(sample) < SAMPLE_PIECES:
            sample.append(bytes(piece))
    return TarData(total, sum(a.stat().st_size for a in archives), sample[:SAMPLE_PIECES])


@dataclass
class XzRates:
    """One core's xz throughput (uncompressed bytes per CPU second) and ratio on the sample."""

    encode: float
    decode: float
    ratio: float


def xz_rates(sample: list[bytes]) -> XzRates:
    filters = _filters()
    raw = sum(len(p) for p in sample)
    start = time.thread_time()
    packed = [lzma.compress(p, format=lzma.FORMAT_XZ, filters=filters) for p in sample]
    encode = time.thread_time() - start
    start = time.thread_time()
    for p in packed:
        lzma.decompress(p)
    decode = time.thread_time() - start
    return XzRates(
        encode=raw / max(encode, 1e-9),
        decode=raw / max(decode, 1e-9),
        ratio=sum(len(p) for p in packed) / max(raw, 1),
    )


def zstd_encode_rate(sample: list[bytes]) -> float:
    """One core's zstd throughput (uncompressed bytes per CPU second) on the sample with
    the tar.zst writer's level and window (``tuning``), one frame per piece."""
    from venvlayers.archive.formats import zstd

    options = {
        **_tuning.ZSTD_OPTIONS,
        zstd.CompressionParameter.window_log: _tuning.ZSTD_WINDOW_LOG_MAX,
        zstd.CompressionParameter.hash_log: _tuning.ZSTD_HASH_LOG,
        zstd.CompressionParameter.chain_log: _tuning.ZSTD_CHAIN_LOG,
    }
    raw = sum(len(p) for p in sample)
    start = time.thread_time()
    for piece in sample:
        zstd.compress(piece, options=options)
    return raw / max(time.thread_time() - start, 1e-9)


def disk_write_rate(folder: Path, total: int = 256 << 20) -> float:
    """Bytes per second writing ``total`` bytes in 1 MiB writes to a new file, then fsync."""
    folder.mkdir(parents=True, exist_ok=True)
    block = os.urandom(1 << 20)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".bench-disk-") as handle:
        start = time.perf_counter()
        for _ in range(total // len(block)):
            handle.write(block)
        handle.flush()
        os.fsync(handle.fileno())
        seconds = time.perf_counter() - start
    return total / seconds


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def compile_cpu_seconds(target: Path) -> float:
    """CPU seconds (user + system, one process at a time) of compiling the bytecode of every
    layer deployed at ``target`` (made with ``deploy --no-compile``), as a deploy would:
    each ``TARGET/<layer>/lib`` with compileall; the bytecode is written there."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for layer in sorted(p for p in target.iterdir() if not p.name.startswith(".")):
        lib = layer / "lib"
        if lib.is_dir():
            subprocess.run(
                [sys.executable, "-m", "compileall", "-q", "-j", "1", str(lib)],
                check=False,
                stdout=subprocess.DEVNULL,
            )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
