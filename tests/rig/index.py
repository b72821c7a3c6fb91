"""A real PEP 503 simple index on 127.0.0.1 serving a folder of wheels and sdists.

    with SimpleIndex(wheelhouse.path) as index:
        run(["uv", "pip", "install", "--index-url", index.url, "alpha"])
        assert index.requests  # every path uv asked for, in order

With ``username``/``password`` every request needs HTTP basic auth (401 otherwise). The
folder is re-read on each request, so a test may add or remove files while it runs.
"""

from __future__ import annotations

import base64
import html
import re
import tarfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from email.parser import HeaderParser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import TracebackType
from urllib.parse import quote, unquote, urlsplit

from venvlayers.core.fsutil import sha256_file

from .local_server import LocalHTTPServer
from .wheels import normalize

_DIST_SUFFIXES = (".whl", ".tar.gz", ".zip")


def project_of(filename: str) -> str | None:
    """Normalized project name of a wheel or sdist file name, or None for other files."""
    if filename.endswith(".whl"):
        return normalize(filename.split("-")[0])
    for suffix in (".tar.gz", ".zip"):
        if filename.endswith(suffix):
            stem = filename[: -len(suffix)]
            if "-" in stem:
                return normalize(stem.rsplit("-", 1)[0])
    return None


def _core_metadata(path: Path) -> str | None:
    """METADATA of a wheel / PKG-INFO of an sdist, if it can be read."""
    try:
        if path.name.endswith(".whl"):
            with zipfile.ZipFile(path) as zf:
                for name in zf.namelist():
                    if re.fullmatch(r"[^/]+\.dist-info/METADATA", name):
                        return zf.read(name).decode("utf-8")
        elif path.name.endswith(".tar.gz"):
            with tarfile.open(path) as tar:
                for member in tar.getmembers():
                    if member.name.count("/") == 1 and member.name.endswith("/PKG-INFO"):
                        extracted = tar.extractfile(member)
                        if extracted is not None:
                            return extracted.read().decode("utf-8")
    except (OSError, zipfile.BadZipFile, tarfile.TarError, UnicodeDecodeError):
        return None
    return None


@dataclass(frozen=True)
class Request:
    """One request the index answered."""

    method: str
    path: str
    status: int
    at: float = field(default_factory=time.monotonic)  # when it was answered


@dataclass(frozen=True)
class _FileInfo:
    path: Path
    sha256: str
    requires_python: str | None


class _Catalog:
    """Distribution files in a folder, with hashes cached by (size, mtime)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._cache: dict[tuple[str, int, int], _FileInfo] = {}
        self._lock = threading.Lock()

    def _info(self, path: Path) -> _FileInfo:
        stat = path.stat()
        key = (path.name, stat.st_size, stat.st_mtime_ns)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        metadata = _core_metadata(path)
        requires_python = None
        if metadata is not None:
            requires_python = HeaderParser().parsestr(metadata).get("Requires-Python")
        info = _FileInfo(path, sha256_file(path), requires_python)
        with self._lock:
            self._cache[key] = info
        return info

    def projects(self) -> dict[str, list[_FileInfo]]:
        found: dict[str, list[_FileInfo]] = {}
        for path in sorted(self.folder.iterdir()):
            project = project_of(path.name) if path.is_file() else None
            if project is not None:
                found.setdefault(project, []).append(self._info(path))
        return found


def _page(title: str, links: list[str]) -> bytes:
    body = "\n".join(f"    {link}<br/>" for link in links)
    text = (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        '    <meta name="pypi:repository-version" content="1.0">\n'
        f"    <title>{html.escape(title)}</title>\n  </head>\n  <body>\n"
        f"{body}\n  </body>\n</html>\n"
    )
    return text.encode("utf-8")


class SimpleIndex:
    """Threaded HTTP server for ``folder`` as a PEP 503 simple index (see module doc)."""

    def __init__(
        self,
        folder: Path,
        *,
        username: str | None = None,
        password: str | None = None,
        immutable_files: bool = False,
    ) -> None:
        self.folder = folder
        # PyPI's files answer "Cache-Control: max-age=365000000, immutable, public": uv then
        # reuses a cached wheel without asking again (the default double makes it revalidate)
        self.immutable_files = immutable_files
        self.username = username
        self.password = password
        self.requests: list[str] = []  # request paths, in arrival order
        self.unauthorized: list[str] = []  # paths refused with 401
        self.log: list[Request] = []  # method, path and status of every request
        self._catalog = _Catalog(folder)
        self._log_lock = threading.Lock()
        self._http: LocalHTTPServer | None = None

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> SimpleIndex:
        self._http = LocalHTTPServer(_make_handler(self))
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.stop()
            self._http = None

    def __enter__(self) -> SimpleIndex:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses ---------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._http is None:
            raise RuntimeError("SimpleIndex is not running; use it as a context manager")
        return self._http.port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The index URL for uv/pip: ``http://127.0.0.1:<port>/simple``."""
        return f"{self.base_url}/simple"

    @property
    def url_with_credentials(self) -> str:
        """``url`` with ``user:password@`` embedded (for auth tests)."""
        if self.username is None:
            return self.url
        user = quote(self.username, safe="")
        password = quote(self.password or "", safe="")
        return f"http://{user}:{password}@127.0.0.1:{self.port}/simple"

    def clear_log(self) -> None:
        with self._log_lock:
            self.requests.clear()
            self.unauthorized.clear()
            self.log.clear()

    # -- request handling (called from server threads) ---------------------------------
    def _record(self, method: str, path: str, status: int) -> None:
        with self._log_lock:
            self.requests.append(path)
            self.log.append(Request(method, path, status))
            if status == HTTPStatus.UNAUTHORIZED:
                self.unauthorized.append(path)

    def _authorized(self, header: str | None) -> bool:
        if self.username is None:
            return True
        if not header or not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:], validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return False
        user, _, password = decoded.partition(":")
        return user == self.username and password == (self.password or "")

    def _route(self, path: str) -> tuple[HTTPStatus, str, bytes | Path, str | None]:
        """(status, content type, body bytes or file to send, redirect location)."""
        parts = [unquote(p) for p in path.split("/") if p]
        projects = self._catalog.projects()
        if parts == ["simple"]:
            links = [f'<a href="{quote(name)}/">{html.escape(name)}</a>' for name in projects]
            return HTTPStatus.OK, "text/html", _page("Simple index", links), None
        if len(parts) == 2 and parts[0] == "simple":
            wanted = normalize(parts[1])
            if wanted != parts[1]:
                return HTTPStatus.MOVED_PERMANENTLY, "text/plain", b"", f"/simple/{wanted}/"
            if wanted not in projects:
                return HTTPStatus.NOT_FOUND, "text/plain", b"no such project\n", None
            links = []
            for info in projects[wanted]:
                attrs = f'href="../../files/{quote(info.path.name)}#sha256={info.sha256}"'
                if info.requires_python:
                    attrs += f' data-requires-python="{html.escape(info.requires_python)}"'
                links.append(f"<a {attrs}>{html.escape(info.path.name)}</a>")
            return HTTPStatus.OK, "text/html", _page(f"Links for {wanted}", links), None
        if len(parts) == 2 and parts[0] == "files" and parts[1].endswith(_DIST_SUFFIXES):
            candidate = self.folder / parts[1]
            if "/" not in parts[1] and candidate.is_file():
                return HTTPStatus.OK, "application/octet-stream", candidate, None
        return HTTPStatus.NOT_FOUND, "text/plain", b"not found\n", None


def _make_handler(index: SimpleIndex) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep pytest output clean; the index keeps its own request log

        def _respond(self, send_body: bool) -> None:
            path = urlsplit(self.path).path
            if not index._authorized(self.headers.get("Authorization")):
                index._record(self.command, path, HTTPStatus.UNAUTHORIZED)
                self.send_response(HTTPStatus.UNAUTHORIZED)
                self.send_header("WWW-Authenticate", 'Basic realm="venvlayers-test-index"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status, content_type, body, location = index._route(path)
            data = body.read_bytes() if isinstance(body, Path) else body
            index._record(self.command, path, status)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            if location is not None:
                self.send_header("Location", location)
            if index.immutable_files and path.startswith("/files/") and status == HTTPStatus.OK:
                self.send_header("Cache-Control", "max-age=365000000, immutable, public")
            self.end_headers()
            if send_body:
                self.wfile.write(data)

        def do_GET(self) -> None:
            self._respond(send_body=True)

        def do_HEAD(self) -> None:
            self._respond(send_body=False)

    return Handler
