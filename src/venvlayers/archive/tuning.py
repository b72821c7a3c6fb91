"""Compression settings (measured with bench/archive_bench.py; see the notes there).

Writers read them as ``tuning.NAME`` at call time, so a test can shrink a chunk size.
"""

from __future__ import annotations

import lzma

from venvlayers.archive.formats import zstd

# The reference tool writes tarfile "w:xz": xz preset 6 with a CRC64 check.
XZ_PRESET = 6
XZ_FILTERS: list[dict[str, int]] = [{"id": lzma.FILTER_LZMA2, "preset": XZ_PRESET}]
# x86-64 layers are mostly machine code: the x86 branch filter and a shorter match length
# make them smaller and faster to compress (-1.4 % size, -13 % CPU on the realistic bench
# stack). Every xz decoder reads it. The arm64 filter is missing from older decoders and
# from Python's lzma, so other platforms keep plain preset 6.
XZ_FILTERS_X86: list[dict[str, int]] = [
    {"id": lzma.FILTER_X86},
    {"id": lzma.FILTER_LZMA2, "preset": XZ_PRESET, "nice_len": 32},
]
# Each unit (``units``) its own xz stream, cut every 16 MiB, compressed on its own core:
# ~1 % larger than one stream, and the bytes do not depend on the thread count.
XZ_CHUNK = 16 << 20
# Each preset-6 encoder needs ~94 MiB: the thread count is capped for memory.
XZ_MAX_THREADS = 16
# Level 10 (lazy2), no long-distance matching. On the bench stacks' frames (a CPython
# runtime, NumPy, SciPy, scikit-learn) against level 12 with long-distance matching: 0.1 %
# more bytes on the runtime, 0.6-0.9 % fewer on the others, 35-45 % less CPU. Frames
# start at units, so what repeats across distributions is out of reach anyway; inside a
# window the regular match finder already looks, and long-distance matching only took
# matches from it (level 12 without it: 0.3 % fewer bytes than level 10, for 50 % more
# CPU; levels 16+, the optimal parsers: 4-7 % fewer for 4-6x the CPU). Fixed values: the
# bytes do not depend on the worker count. zstd makes a job at least as big as the overlap
# it sees (the data before it). A frame of up to 32 MiB (a runtime's 29 MB) is cut into
# jobs of 16 MiB seeing the 8 MiB before them, so it still uses two cores: on a runtime the
# longer job takes 0.8 CPU s instead of 1.1-1.4 for one job (the whole window overlap),
# 1.45 CPU s in all, +0.14 % bytes (a 16 MiB overlap: +0.09 %, but 1.5-1.8 CPU s and a
# 0.9-1.0 s job); with min_match 4 such a frame is 0.19 % smaller again (-0.06 % against
# one job) for 5-10 % more CPU. A bigger frame, whose jobs keep every core busy anyway, is
# cut into jobs of the largest window seeing the whole window before them (a 16 MiB overlap
# there: the realistic framework +2 %, OpenBLAS builds 25 MB long side by side). Memory:
# SciPy's 119 MB frame on two workers peaks at 201 MiB (level 12 with long-distance
# matching in 16 MiB jobs: 162 MiB); the 6 GB bench layer's whole publish peaks at 399
# MiB (368 before), bounded by these settings, not the layer's size. A 16 MiB window in
# 16 MiB jobs: 313 MiB there, but SciPy's frames 4 % bigger (36.3 -> 37.8 MB).
ZSTD_OPTIONS: dict[int, int] = {
    zstd.CompressionParameter.compression_level: 10,
    zstd.CompressionParameter.checksum_flag: 1,
}
ZSTD_SMALL_JOBS: dict[int, int] = {
    zstd.CompressionParameter.job_size: 16 << 20,
    zstd.CompressionParameter.overlap_log: 7,
}
ZSTD_TWO_JOBS: dict[int, int] = {zstd.CompressionParameter.min_match: 4}
ZSTD_BIG_JOBS: dict[int, int] = {
    zstd.CompressionParameter.job_size: 32 << 20,
    zstd.CompressionParameter.overlap_log: 9,
}
# Level 10's match tables; a small frame gets smaller ones (``tar.zstd_frame_options``).
ZSTD_HASH_LOG = 22
ZSTD_CHAIN_LOG = 21
ZSTD_WINDOW_LOG_MAX = 25
ZSTD_WINDOW_LOG_MIN = 20
ZSTD_FEED = 4 << 20
# tar.zst is one frame per unit group (``units``); a bigger unit is cut into frames of the
# largest window (a runtime's files in one frame, as before units), a big frame compressed
# by zstd's workers, small ones side by side.
ZSTD_SPLIT = 128 << 20
# zlib's default level, like zipfile's ZIP_DEFLATED. Files bigger than one chunk are
# deflated in chunks primed with the previous 32 KiB, so big files use every core too.
ZIP_LEVEL = 6
ZIP_CHUNK = 1 << 20
DEFLATE_WINDOW = 32 << 10
