"""Reading a multi-stream ``.xz`` file on every core: streams decoded side by side, in order.

Our tar.xz archives are the tar stream cut into fixed-size chunks, each its own xz stream
(see ``tar.write_tar_xz``). Every xz stream ends with a footer pointing back at its index,
and the index gives the stream's size, so the streams can be found from the end of the
file without decoding anything. ``open_xz`` then reads the file once, front to back
(hashing it on the way when asked), and hands each stream to a worker thread; the reader
returns their output in file order with a bounded number of streams in flight.

A file with one stream (an archive from the reference tool, ``xz`` or ``tarfile``), or
one whose layout cannot be read this way, is decoded with ``lzma`` as usual.
"""

from __future__ import annotations

import lzma
import os
import struct
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from queue import SimpleQueue
from typing import IO, Protocol, cast

_HEADER_MAGIC = b"\xfd7zXZ\x00"
_FOOTER_MAGIC = b"YZ"
_HEADER = _FOOTER = 12
# A stream bigger than this (uncompressed, by its index) is decoded by the plain reader:
# workers hold a whole stream's output in memory. Ours are 16 MiB.
MAX_PARALLEL_STREAM = 64 << 20


class Digest(Protocol):
    def update(self, data: bytes, /) -> None: ...


@dataclass(frozen=True)
class Stream:
    offset: int  # in the file, padding before the next stream included in length
    length: int
    uncompressed: int


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    for i in range(9):
        if pos >= len(data):
            raise ValueError("index ends inside a number")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        del i
    raise ValueError("index number too long")


def _stream_before(f: IO[bytes], end: int) -> Stream:
    """The stream whose footer ends at ``end`` (stream padding already skipped)."""
    if end < _HEADER + _FOOTER:
        raise ValueError("too short for an xz stream")
    f.seek(end - _FOOTER)
    footer = f.read(_FOOTER)
    if (
        footer[10:] != _FOOTER_MAGIC
        or zlib.crc32(footer[4:10]) != struct.unpack("<I", footer[:4])[0]
    ):
        raise ValueError("no xz stream footer")
    index_size = (struct.unpack("<I", footer[4:8])[0] + 1) * 4
    index_start = end - _FOOTER - index_size
    if index_start < _HEADER:
        raise ValueError("index before the stream header")
    f.seek(index_start)
    index = f.read(index_size)
    if index[:1] != b"\0" or zlib.crc32(index[:-4]) != struct.unpack("<I", index[-4:])[0]:
        raise ValueError("bad xz index")
    count, pos = _varint(index, 1)
    blocks = uncompressed = 0
    for _ in range(count):
        unpadded, pos = _varint(index, pos)
        size, pos = _varint(index, pos)
        blocks += (unpadded + 3) & ~3
        uncompressed += size
    start = index_start - blocks - _HEADER
    if start < 0:
        raise ValueError("blocks before the start of the file")
    f.seek(start)
    if f.read(6) != _HEADER_MAGIC:
        raise ValueError("no xz stream header where the index says")
    return Stream(start, end - start, uncompressed)


def find_streams(f: IO[bytes], size: int) -> list[Stream]:
    """Every xz stream of the file, first to last; ValueError if the layout is not plain."""
    streams: list[Stream] = []
    end = size
    while end > 0:
        f.seek(max(end - 4096, 0))
        tail = f.read(end - max(end - 4096, 0))
        padding = len(tail) - len(tail.rstrip(b"\0"))
        padding -= padding % 4  # stream padding comes in 4-byte units
        stream = _stream_before(f, end - padding)
        streams.append(Stream(stream.offset, end - stream.offset, stream.uncompressed))
        end = stream.offset
    streams.reverse()
    return streams


_PIECE = 1 << 20  # a worker hands its stream's output on in pieces of this size
_END = b""


def _decode(data: bytes, expected: int, out: SimpleQueue[bytes | BaseException]) -> None:
    """Decode one stream into ``out`` piece by piece (the reader starts on the first piece
    while the rest is decoded), then ``_END``; a damaged stream puts its error."""
    try:
        decoder = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        total = 0
        piece = decoder.decompress(data, max_length=_PIECE)
        del data
        while piece:
            total += len(piece)
            if total > expected:
                break
            out.put(piece)
            if decoder.eof:
                break
            piece = decoder.decompress(b"", max_length=_PIECE)
        if total != expected or not decoder.eof:
            raise lzma.LZMAError("an xz stream does not match its index")
        out.put(_END)
    except BaseException as exc:  # handed to the reader, which raises it
        out.put(exc)


class ParallelXzReader:
    """File-like ``read(size)`` over the streams, decoded ``threads`` at a time."""

    def __init__(self, f: IO[bytes], streams: list[Stream], threads: int, digest: Digest | None):
        self._file = f
        self._streams = iter(streams)
        self._digest = digest
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="unxz")
        self._pending: deque[SimpleQueue[bytes | BaseException]] = deque()
        self._window = threads + 1
        self._buffer = memoryview(b"")
        self._fill()

    def _fill(self) -> None:
        while len(self._pending) < self._window:
            stream = next(self._streams, None)
            if stream is None:
                return
            self._file.seek(stream.offset)
            data = self._file.read(stream.length)
            if len(data) != stream.length:
                raise lzma.LZMAError("the file ends inside a stream")
            if self._digest is not None:
                self._digest.update(data)
            out: SimpleQueue[bytes | BaseException] = SimpleQueue()
            self._pool.submit(_decode, data, stream.uncompressed, out)
            self._pending.append(out)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(1 << 20), b""))
        while not self._buffer:
            if not self._pending:
                return b""
            piece = self._pending[0].get()
            if isinstance(piece, BaseException):
                raise piece
            if piece is _END or not piece:
                self._pending.popleft()
                self._fill()
                continue
            self._buffer = memoryview(piece)
        piece = bytes(self._buffer[:size])
        self._buffer = self._buffer[size:]
        return piece

    def close(self) -> None:
        # Workers still running finish decoding in-memory data into queues nobody reads,
        # then exit; not waited for. A reader left unclosed inside a generator is closed by
        # the garbage collector, in whichever thread it runs, and a join there deadlocked:
        # inside a new thread's start (threading's shutdown-locks lock held), which the
        # starting thread then waited for forever (seen in CI, test_archive's zip writer).
        self._pending.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._file.close()

    def __enter__(self) -> ParallelXzReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HashingFile:
    """Reads ``f`` front to back, hashing what it returns; closing it closes ``f``."""

    def __init__(self, f: IO[bytes], digest: Digest):
        self._file = f
        self._digest = digest

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        self._digest.update(data)
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._file.close()


class Owning:
    """A decompressing reader that also closes the file it reads from."""

    def __init__(self, reader: IO[bytes] | lzma.LZMAFile, source: IO[bytes]):
        self._reader = reader
        self._source = source

    def read(self, size: int = -1) -> bytes:
        return self._reader.read(size)

    def close(self) -> None:
        try:
            self._reader.close()
        finally:
            self._source.close()

    def __enter__(self) -> Owning:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_xz(path: Path, *, threads: int | None = None, digest: Digest | None = None) -> IO[bytes]:
    """The decompressed content of ``path``; ``digest`` (a hashlib object) gets the file's
    bytes as they are read (complete once the content has been read to its end)."""
    threads = threads or os.cpu_count() or 1
    f = path.open("rb")
    try:
        size = os.fstat(f.fileno()).st_size
        streams = find_streams(f, size)
        if (
            len(streams) < 2
            or threads < 2
            or any(s.uncompressed > MAX_PARALLEL_STREAM for s in streams)
        ):
            raise ValueError("nothing to gain")
        if streams[0].offset != 0:
            raise ValueError("bytes before the first stream")
        return cast(IO[bytes], ParallelXzReader(f, streams, threads, digest))
    except (ValueError, OSError, struct.error):
        f.seek(0)
    source = f if digest is None else cast(IO[bytes], HashingFile(f, digest))
    return cast(IO[bytes], Owning(lzma.LZMAFile(source, "rb"), source))
