"""A static file server on 127.0.0.1 that answers ``Range`` requests the way storage
servers do (one range: 206 with Content-Range; several: ``multipart/byteranges``), counts
every request and byte, and can misbehave on purpose: corrupt a range, cut a response
short, send the parts in reverse order, ignore ``Range`` (200, the whole file), or hold
range answers until the test lets them go (``stall``: ``stalled`` is set when one waits,
``gate`` releases them). Ranges are read from the file as asked, never the whole file
(the benchmark serves archives of GBs)."""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .local_server import LocalHTTPServer

BOUNDARY = "venvlayers-test-boundary"


@dataclass(frozen=True)
class Request:
    path: str
    ranges: list[tuple[int, int]]  # [start, end) asked for; empty: the whole file
    status: int
    sent: int


@dataclass
class RangeServer:
    root: Path
    mode: str = "normal"
    """normal | corrupt | truncate | reorder | ignore | first-only | stall"""
    log: list[Request] = field(default_factory=list)
    stalled: threading.Event = field(default_factory=threading.Event)
    gate: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _http: LocalHTTPServer | None = None

    def __enter__(self) -> RangeServer:
        owner = self

        class Handler(_Handler):
            server_state = owner

        self._http = LocalHTTPServer(Handler)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._http is not None
        self._http.stop()

    @property
    def url(self) -> str:
        assert self._http is not None
        return f"http://127.0.0.1:{self._http.port}/"

    def bytes_sent(self, suffix: str = "") -> int:
        return sum(r.sent for r in self.log if r.path.endswith(suffix))

    def requests(self, suffix: str = "") -> list[Request]:
        return [r for r in self.log if r.path.endswith(suffix)]

    def record(self, request: Request) -> None:
        with self._lock:
            self.log.append(request)


def _parse(header: str, size: int) -> list[tuple[int, int]] | None:
    if not header.startswith("bytes="):
        return None
    found = []
    for spec in header[6:].split(","):
        match = re.fullmatch(r"\s*(\d+)-(\d*)\s*", spec)
        if match is None:
            return None
        start = int(match[1])
        end = int(match[2]) + 1 if match[2] else size
        found.append((start, min(end, size)))
    return found


class _Handler(BaseHTTPRequestHandler):
    server_state: RangeServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read the log."""

    def do_GET(self) -> None:
        state = self.server_state
        path = unquote(urlsplit(self.path).path)
        file = (state.root / path.lstrip("/")).resolve()
        if not file.is_relative_to(state.root.resolve()) or not file.is_file():
            self._send(404, {}, b"not found", path, [])
            return
        size = file.stat().st_size
        ranges = _parse(self.headers.get("Range", ""), size)
        if not ranges or state.mode == "ignore":
            self._send(200, {}, file.read_bytes(), path, ranges or [])
            return
        if state.mode == "stall":
            state.stalled.set()
            state.gate.wait()
        if state.mode == "first-only":
            ranges = ranges[:1]
        pieces = []
        with file.open("rb") as f:
            for a, b in ranges:
                f.seek(a)
                pieces.append(bytearray(f.read(b - a)))
        if state.mode == "corrupt":
            for piece in pieces:
                piece[len(piece) // 2] ^= 0x55
        if len(ranges) == 1:
            (a, b) = ranges[0]
            headers = {"Content-Range": f"bytes {a}-{b - 1}/{size}"}
            self._send(206, headers, bytes(pieces[0]), path, ranges)
            return
        order = list(range(len(ranges)))
        if state.mode == "reorder":
            order.reverse()
        body = bytearray()
        for i in order:
            a, b = ranges[i]
            body += (
                f"\r\n--{BOUNDARY}\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Range: bytes {a}-{b - 1}/{size}\r\n\r\n"
            ).encode()
            body += pieces[i]
        body += f"\r\n--{BOUNDARY}--\r\n".encode()
        headers = {"Content-Type": f"multipart/byteranges; boundary={BOUNDARY}"}
        self._send(206, headers, bytes(body), path, ranges)

    def _send(
        self,
        status: int,
        headers: dict[str, str],
        body: bytes,
        path: str,
        ranges: list[tuple[int, int]],
    ) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        sent = body
        if self.server_state.mode == "truncate" and status == 206:
            sent = body[: len(body) // 2]
        # logged before the body goes out: the client may act on it before this thread runs on
        self.server_state.record(Request(path, ranges, status, len(sent)))
        self.wfile.write(sent)
        self.wfile.flush()
        if len(sent) < len(body):
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
