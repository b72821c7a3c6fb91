"""A reproducible ZIP64 writer that deflates files in parallel (big files in chunks)."""

from __future__ import annotations

import stat
import struct
import time
import zipfile
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO

from venvlayers.archive import tuning
from venvlayers.archive.formats import ZIP_UNIX
from venvlayers.archive.scan import ArchiveJob, Entry, Ordered, member_name, read_pieces
from venvlayers.core.errors import ArchiveError

# --- zip writing ------------------------------------------------------------------------

_ZIP64_LIMIT = 0xFFFFFFFF


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


def _deflate_chunk(entry: Entry, start: int, length: int, last: bool) -> tuple[bytes, bytes]:
    """(raw, deflated) for one chunk; raw is returned so the writer can keep the CRC."""
    prime = min(start, tuning.DEFLATE_WINDOW)
    data = b"".join(read_pieces(entry, start - prime, prime + length))
    if len(data) != prime + length:
        raise ArchiveError(f"{entry.path}: the file changed size while it was being archived.")
    if prime:
        comp = zlib.compressobj(
            tuning.ZIP_LEVEL, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY, zdict=data[:prime]
        )
    else:
        comp = zlib.compressobj(tuning.ZIP_LEVEL, zlib.DEFLATED, -15)
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
                    (ZIP_UNIX << 8) | version,
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
                    (ZIP_UNIX << 8) | 45,
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
_ZipResult = tuple[Entry, int, bytes, bytes, bool]


def write_zip(job: ArchiveJob) -> None:
    root_name, threads, progress = job.root_name, job.threads, job.progress
    writer = _ZipWriter(job.out, job.mtime)

    def sink(result: _ZipResult) -> None:
        entry, start, raw, deflated, last = result
        name = member_name(root_name, entry)
        if entry.kind == "dir":
            writer.add_small(name + "/", ((stat.S_IFDIR | 0o755) << 16) | 0x10, b"")
            return
        if entry.kind == "symlink":
            writer.add_small(name, (stat.S_IFLNK | 0o777) << 16, raw)
            return
        if start == 0:
            mode = stat.S_IFREG | entry.mode
            writer.begin(
                member_name(root_name, entry), mode << 16, zipfile.ZIP_DEFLATED, entry.size
            )
        writer.data(raw, deflated)
        progress.advance(len(raw))
        if last:
            writer.end()

    def deflate(entry: Entry, start: int, length: int, last: bool) -> Callable[[], _ZipResult]:
        def run() -> _ZipResult:
            raw, deflated = _deflate_chunk(entry, start, length, last)
            return entry, start, raw, deflated, last

        return run

    with ThreadPoolExecutor(threads, thread_name_prefix="zip") as pool:
        # Chunks are small, so a deeper look-ahead keeps every worker busy.
        ordered: Ordered[_ZipResult] = Ordered(pool, 4 * threads + 4, sink)
        try:
            for entry in job.entries:
                if entry.kind == "file":
                    starts = range(0, max(entry.size, 1), tuning.ZIP_CHUNK)
                    for i, start in enumerate(starts):
                        length = min(tuning.ZIP_CHUNK, entry.size - start)
                        ordered.submit(deflate(entry, start, length, i == len(starts) - 1))
                    continue
                # Folders and symlinks need no work; they just keep their place in line.
                ordered.put_ready((entry, 0, entry.target.encode("utf-8"), b"", True))
            ordered.drain()
        except BaseException:
            ordered.cancel()
            raise
    writer.finish()
