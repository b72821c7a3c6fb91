"""Compression settings (measured with bench/archive_bench.py; see the notes there).

Writers read them as ``tuning.NAME`` at call time, so a test can shrink a chunk size.
"""

from __future__ import annotations

import lzma

from venvlayers.archive.formats import zstd

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
# Cutting a stream into equal chunks instead (11 x 15.5 MiB for a 170 MiB layer, so the
# cores would finish together) cost +1.1 % size on the realistic bench's SciPy framework,
# for no measurable time: kept at fixed 16 MiB.
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
# Jobs of 16 MiB, each seeing the whole window of what precedes it (overlap_log 9): zstd's
# default job is four windows, so a layer under ~4 windows (a 28 MiB runtime) was one job
# on one core. On that runtime: 1.38 -> 0.80 s on 2 cores, +0.26 % size; on the realistic
# stack's 170 MiB framework: same size, +5 % time. Fixed values, so the bytes still do not
# depend on the worker count.
ZSTD_OPTIONS: dict[int, int] = {
    zstd.CompressionParameter.compression_level: 12,
    zstd.CompressionParameter.enable_long_distance_matching: 1,
    zstd.CompressionParameter.checksum_flag: 1,
    zstd.CompressionParameter.job_size: 16 << 20,
    zstd.CompressionParameter.overlap_log: 9,
}
ZSTD_WINDOW_LOG_MAX = 27
ZSTD_WINDOW_LOG_MIN = 20
ZSTD_FEED = 4 << 20
# zlib's default level, like zipfile's ZIP_DEFLATED. Files bigger than one chunk are
# deflated in chunks primed with the previous 32 KiB, so big files use every core too.
ZIP_LEVEL = 6
ZIP_CHUNK = 1 << 20
DEFLATE_WINDOW = 32 << 10
