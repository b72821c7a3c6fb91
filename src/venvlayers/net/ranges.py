"""Byte ranges of one remote file, fetched with HTTP ``Range`` requests.

Ranges closer than ``GAP`` are joined; up to ``PER_REQUEST`` go in one request
(``multipart/byteranges`` answers are parsed by their ``Content-Range`` headers, in
whatever order the parts come). A server that answers a multi-range request with fewer
parts is asked again for the rest, one range at a time if it must. A server that ignores
``Range`` (200, the whole file) raises ``RangesUnsupported``: the caller fetches the whole
file instead. Redirects are followed as for whole downloads (GitHub release assets
redirect to storage that serves ranges); retries, the deadline and the byte counters are
the ``Downloader``'s. Nothing here checks content: the caller checks every file it
decodes from these bytes against its sha256.
"""

from __future__ import annotations

import re
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from venvlayers.net.downloads import Download, Downloader, failure_of, network_errors, request_for
from venvlayers.net.retry import HttpFailure
from venvlayers.net.urls import scheme_problem

GAP = 32 << 10
"""Ranges closer than this are fetched as one (a request costs more than a few KiB)."""
PER_REQUEST = 24
_CONTENT_RANGE = re.compile(rb"bytes (\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)
_LINE = 8192


class RangesUnsupported(Exception):
    """The server answered a range request with the whole file."""


@dataclass
class RangeStats:
    ranges: int = 0
    requests: int = 0
    bytes: int = 0


def coalesce(ranges: list[tuple[int, int]], gap: int = GAP) -> list[tuple[int, int]]:
    """Sorted ``[start, end)`` ranges, overlapping or close ones joined."""
    joined: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if joined and start - joined[-1][1] <= gap:
            joined[-1] = (joined[-1][0], max(end, joined[-1][1]))
        else:
            joined.append((start, end))
    return joined


def _missing(wanted: list[tuple[int, int]], have: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of ``wanted`` that ``have`` does not cover."""
    covered = coalesce(have, 0)
    left: list[tuple[int, int]] = []
    for start, end in wanted:
        position = start
        for a, b in covered:
            if b <= position or a >= end:
                continue
            if a > position:
                left.append((position, a))
            position = max(position, b)
        if position < end:
            left.append((position, end))
    return left


class _Body:
    """Reads a response, counting bytes, within the deadline."""

    def __init__(self, response: IO[bytes], downloader: Downloader, stats: RangeStats):
        self.response = response
        self.downloader = downloader
        self.stats = stats

    def _count(self, data: bytes) -> bytes:
        self.stats.bytes += len(data)
        self.downloader.counters.add_bytes(len(data))
        return data

    def line(self) -> bytes:
        return self._count(self.response.readline(_LINE))

    def exactly(self, size: int, progress: Callable[[int], None] | None) -> bytes:
        out = bytearray()
        while len(out) < size:
            if self.downloader.budget.remaining() <= 0:
                raise TimeoutError("the deadline passed")
            piece = self._count(self.response.read(min(size - len(out), 1 << 16)))
            if not piece:
                raise ConnectionError("connection closed early")
            out += piece
            if progress is not None:
                progress(len(piece))
        return bytes(out)


def _parse_range(value: bytes, size: int) -> tuple[int, int]:
    match = _CONTENT_RANGE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"unreadable Content-Range {value[:80]!r}")
    start, last = int(match[1]), int(match[2])
    if start > last or last >= size:
        raise ValueError(f"Content-Range {value[:80]!r} outside the file")
    return start, last + 1


def _multipart(
    body: _Body,
    boundary: bytes,
    size: int,
    sink: Callable[[int, bytes], None],
    progress: Callable[[int], None] | None,
) -> list[tuple[int, int]]:
    got: list[tuple[int, int]] = []
    line = body.line()
    while line:
        marker = line.strip()
        if marker == b"--" + boundary + b"--":
            break
        if marker != b"--" + boundary:
            line = body.line()
            continue
        span = None
        while (header := body.line().strip()) != b"":
            name, _, value = header.partition(b":")
            if name.strip().lower() == b"content-range":
                span = _parse_range(value, size)
        if span is None:
            raise ValueError("a part without Content-Range")
        sink(span[0], body.exactly(span[1] - span[0], progress))
        got.append(span)
        line = body.line()
    return got


def fetch_ranges(
    downloader: Downloader,
    download: Download,
    size: int,
    ranges: list[tuple[int, int]],
    sink: Callable[[int, bytes], None],
    progress: Callable[[int], None] | None = None,
) -> RangeStats:
    """Fetch every ``[start, end)`` of ``ranges`` from ``download`` (a file of ``size``
    bytes), handing each piece to ``sink(offset, data)``."""
    if problem := scheme_problem(download.url):
        raise downloader.error(f"{download.label}: its URL {problem}")
    stats = RangeStats()
    todo = coalesce(ranges)
    stats.ranges = len(todo)
    per_request = PER_REQUEST
    attempt = 0
    while todo:
        batch = todo[:per_request]
        header = "bytes=" + ",".join(f"{a}-{b - 1}" for a, b in batch)
        got: list[tuple[int, int]] = []
        failure: HttpFailure | None = None
        try:
            stats.requests += 1
            got = _one_request(downloader, download, header, size, sink, progress, stats)
        except urllib.error.HTTPError as exc:
            failure = failure_of(exc)
        except ValueError as exc:
            failure = HttpFailure(None, f"bad range answer ({exc})")
        except network_errors() as exc:
            failure = failure_of(exc)
        left = _missing(batch, got)
        progressed = left != batch
        if failure is None and not progressed:
            if per_request > 1:
                per_request = 1  # fewer or other parts than asked for: one range at a time
            else:
                failure = HttpFailure(None, "the server did not send the range asked for")
        todo = coalesce(left + todo[len(batch) :], 0)
        if failure is not None:
            attempt = 1 if progressed else attempt + 1
            downloader.retry_or_fail(download, failure, attempt)
        else:
            attempt = 0
    return stats


def _one_request(
    downloader: Downloader,
    download: Download,
    header: str,
    size: int,
    sink: Callable[[int, bytes], None],
    progress: Callable[[int], None] | None,
    stats: RangeStats,
) -> list[tuple[int, int]]:
    with downloader.open(request_for(download, header)) as response:
        if response.status == 200:
            raise RangesUnsupported(download.label)
        if response.status != 206:
            raise ValueError(f"HTTP {response.status} to a range request")
        body = _Body(response, downloader, stats)
        kind = response.headers.get("Content-Type", "")
        match = re.search(r'boundary="?([^";]+)"?', kind)
        if kind.lower().startswith("multipart/byteranges") and match:
            return _multipart(body, match[1].encode(), size, sink, progress)
        span = _parse_range(response.headers.get("Content-Range", "").encode(), size)
        sink(span[0], body.exactly(span[1] - span[0], progress))
        return [span]
