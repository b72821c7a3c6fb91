"""A plain static file server on 127.0.0.1 that counts what it sends.

Serves a folder (``GET``/``HEAD``, single ``Range: bytes=N-`` requests answered with 206),
records every request (path, range start, status, body bytes sent), and can cut a
response after some bytes (closing the connection, as a dropped download) or require a
bearer token. Tests read ``log`` to count downloads and bytes.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .local_server import LocalHTTPServer


@dataclass(frozen=True)
class Served:
    path: str
    start: int
    status: int
    sent: int
    authorized: bool
    at: float = field(default_factory=time.monotonic)  # when it was answered


@dataclass
class Cut:
    """Close the connection after ``after`` body bytes of the next ``times`` GETs of ``name``."""

    name: str
    after: int
    times: int = 1


class FileServer:
    def __init__(self, root: Path, *, token: str | None = None) -> None:
        self.root = root
        self.token = token
        self.cuts: list[Cut] = []
        self._log: list[Served] = []
        self._lock = threading.Lock()
        self._http: LocalHTTPServer | None = None

    def __enter__(self) -> FileServer:
        server = self

        class Handler(_Handler):
            owner = server

        self._http = LocalHTTPServer(Handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._http is not None:
            self._http.stop()

    @property
    def url(self) -> str:
        assert self._http is not None
        return f"http://127.0.0.1:{self._http.port}/"

    @property
    def log(self) -> list[Served]:
        with self._lock:
            return list(self._log)

    def clear(self) -> None:
        with self._lock:
            self._log.clear()

    def fetched(self, suffix: str = "") -> list[Served]:
        """Successful archive (or other) GETs whose path ends with ``suffix``."""
        return [s for s in self.log if s.status in (200, 206) and s.path.endswith(suffix)]

    def bytes_sent(self, suffix: str = "") -> int:
        return sum(s.sent for s in self.log if s.path.endswith(suffix))

    def _take_cut(self, name: str) -> Cut | None:
        with self._lock:
            for cut in self.cuts:
                if cut.name == name and cut.times > 0:
                    cut.times -= 1
                    return cut
        return None

    def _record(self, served: Served) -> None:
        with self._lock:
            self._log.append(served)


class _Handler(BaseHTTPRequestHandler):
    owner: FileServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read the log instead."""

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, *, body: bool) -> None:
        server = self.owner
        path = unquote(urlsplit(self.path).path)
        relative = path.lstrip("/")
        authorized = self.headers.get("Authorization") == f"Bearer {server.token}"
        if server.token is not None and not authorized:
            self._answer(path, 0, 404, b"not found", authorized)
            return
        file = (server.root / relative).resolve()
        if not file.is_relative_to(server.root.resolve()) or not file.is_file():
            self._answer(path, 0, 404, b"not found", authorized)
            return
        data = file.read_bytes()
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if match:
            start = int(match.group(1))
            if start >= len(data):
                self._answer(path, start, 416, b"", authorized)
                return
        status = 206 if match else 200
        chunk = data[start:]
        self.send_response(status)
        self.send_header("Content-Length", str(len(chunk)))
        self.send_header("Accept-Ranges", "bytes")
        if match:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if not body:
            server._record(Served(path, start, status, 0, authorized))
            return
        cut = server._take_cut(Path(relative).name)
        if cut is not None:
            self.wfile.write(chunk[: cut.after])
            self.wfile.flush()
            server._record(Served(path, start, status, min(cut.after, len(chunk)), authorized))
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(chunk)
        server._record(Served(path, start, status, len(chunk), authorized))

    def _answer(self, path: str, start: int, status: int, data: bytes, authorized: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(data)
        self.owner._record(Served(path, start, status, len(data), authorized))
