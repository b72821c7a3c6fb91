"""HTTP downloads: the only module that fetches over HTTP (the GitHub API client aside).

Archives go into a content-addressed cache (``<cache>/sha256/<hex>``), so an archive
shared by several stacks, apps or targets is fetched once. A download is written to
``<cache>/partial/<hex>.part`` and resumed with an HTTP ``Range`` request after a dropped
connection or an interrupted run; dropped connections, timeouts and 5xx/429 answers are
retried with backoff within a wall-clock deadline; size and sha256 are checked before a
file enters the cache (ranges of an update go to ``net/scratch`` files there, which
every fetch prunes when a killed run left them). Headers given as ``api_headers`` (a token) go to the first host only,
never to the host a redirect leads to.

Every use of a cached archive touches it; after a deploy, archives nobody used for
``UNUSED_ARCHIVE_DAYS`` are removed (``prune_unused_archives``): a target whose 2 GB framework
is replaced every week would otherwise keep every version it ever downloaded, while the
deployed layers, not these files, are what its updates and rollbacks use.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TextIO

from venvlayers import __version__
from venvlayers.core.errors import DeployError
from venvlayers.core.fsutil import sha256_file as file_sha256
from venvlayers.core.report import Reporter
from venvlayers.net.retry import Budget, HttpFailure, retry_delay
from venvlayers.net.scratch import prune
from venvlayers.net.urls import scheme_problem

# urllib.request (with http.client, ssl, email) loads when something is fetched: a deploy
# from a folder never needs it
if TYPE_CHECKING:
    import http.client
    import urllib.request

CHUNK = 1 << 16
STALL_TIMEOUT = 60.0
"""Seconds without a byte before a connection counts as stalled (and is retried)."""
MAX_ATTEMPTS_WITHOUT_PROGRESS = 6
MAX_SMALL_FILE = 64 * 1024 * 1024
UNUSED_ARCHIVE_DAYS = 14
"""Cached archives not used for this many days are removed after a deploy."""
_CACHE_ENTRY = re.compile(r"[0-9a-f]{64}")


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The user's cache folder for venvlayers downloads (XDG / macOS / Windows)."""
    env = os.environ if environ is None else environ
    if env.get("VENVLAYERS_CACHE_DIR"):
        return Path(env["VENVLAYERS_CACHE_DIR"])
    if sys.platform == "win32":
        base = Path(env.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return base / "venvlayers" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "venvlayers"
    base = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "venvlayers"


@dataclass(frozen=True)
class Download:
    """One file to fetch: where from, and what it must be."""

    url: str
    sha256: str
    size: int | None
    label: str
    """What to call it in messages (an archive name, never the URL with credentials)."""
    api_headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Counters:
    """What the downloads of one run cost (for the summary and the benchmark)."""

    fetched: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    bytes_downloaded: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_bytes(self, count: int) -> None:
        with self._lock:
            self.bytes_downloaded += count


class _Progress:
    """One line rewritten in place on a terminal: bytes done of the total, all downloads."""

    def __init__(self, stream: TextIO | None, total: int, count: int) -> None:
        self.stream = stream
        self.total = total
        self.count = count
        self.done = 0
        self._lock = threading.Lock()
        self._shown = 0.0

    def add(self, amount: int) -> None:
        with self._lock:
            self.done += amount
            now = time.monotonic()
            if self.stream is None or now - self._shown < 0.2:
                return
            self._shown = now
            self._show()

    def _show(self) -> None:
        assert self.stream is not None
        percent = 100 * self.done // self.total if self.total else 100
        self.stream.write(
            f"\rdownloading {self.count} archive(s): {self.done / 1e6:8.1f} / "
            f"{self.total / 1e6:.1f} MB ({percent}%)"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.stream is not None:
            with self._lock:
                self._show()
                self.stream.write("\n")
                self.stream.flush()


def _opener() -> urllib.request.OpenerDirector:
    """An opener for http(s) only: urllib's default one also reads ``file://`` (local disk),
    ``ftp://`` and ``data:`` URLs, which no answer may make us read."""
    import urllib.error
    import urllib.request
    from typing import IO

    class _NoRedirectAuth(urllib.request.HTTPRedirectHandler):
        """Follow redirects, dropping the caller's unredirected headers (the token) on the
        way, and only to http(s) URLs."""

        def redirect_request(
            self,
            req: urllib.request.Request,
            fp: IO[bytes],
            code: int,
            msg: str,
            headers: http.client.HTTPMessage,
            newurl: str,
        ) -> urllib.request.Request | None:
            if scheme_problem(newurl):
                raise urllib.error.HTTPError(
                    req.full_url, code, f"redirect to a non-http(s) URL refused: {msg}", headers, fp
                )
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.UnknownHandler(),
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        _NoRedirectAuth(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def request_for(download: Download, range_header: str) -> urllib.request.Request:
    """A GET of ``download`` with this ``Range`` header (``net/ranges``)."""
    request = _request(download, 0)
    request.add_header("Range", range_header)
    return request


def _request(download: Download, start: int) -> urllib.request.Request:
    import urllib.request

    request = urllib.request.Request(
        download.url, headers={"User-Agent": f"venvlayers/{__version__}"}
    )
    for name, value in download.api_headers.items():
        # unredirected: urllib never copies these onto the request a redirect makes
        request.add_unredirected_header(name, value)
    if start:
        request.add_header("Range", f"bytes={start}-")
    return request


def _failure(exc: BaseException) -> HttpFailure:
    import socket
    import urllib.error

    if isinstance(exc, urllib.error.HTTPError):
        return HttpFailure(exc.code, str(exc.reason or ""), dict(exc.headers or {}))
    if isinstance(exc, urllib.error.URLError) and isinstance(
        exc.reason, ConnectionRefusedError | socket.gaierror
    ):
        return HttpFailure(
            None, "cannot connect (refused, or the host name does not resolve)", unreachable=True
        )
    if isinstance(exc, TimeoutError | socket.timeout):
        return HttpFailure(None, f"no data for {STALL_TIMEOUT:g} s")
    return HttpFailure(None, f"connection dropped ({type(exc).__name__})")


def _network_errors() -> tuple[type[BaseException], ...]:
    import http.client
    import urllib.error

    return (urllib.error.URLError, OSError, http.client.HTTPException)


network_errors = _network_errors
failure_of = _failure


class Downloader:
    """Fetches into ``cache`` within one deadline; safe to use from several threads."""

    def __init__(
        self,
        cache: Path,
        *,
        reporter: Reporter,
        deadline_seconds: float = 3600,
        sleep: Callable[[float], None] = time.sleep,
        error: type[DeployError] = DeployError,
        secrets: Sequence[str] = (),
    ) -> None:
        self.cache = cache
        self.reporter = reporter
        self.budget = Budget(deadline_seconds, sleep)
        self.error = error
        self.counters = Counters()
        self.secrets = [s for s in secrets if s]
        self._http: urllib.request.OpenerDirector | None = None

    @property
    def _opener(self) -> urllib.request.OpenerDirector:
        """The http(s) opener, made on first use."""
        if self._http is None:
            self._http = _opener()
        return self._http

    def _scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def cached(self, sha256: str, size: int | None) -> Path | None:
        path = self.cache / "sha256" / sha256
        try:
            if size is None or path.stat().st_size == size:
                return path
        except OSError:
            pass
        return None

    # -- small files (manifests) -------------------------------------------

    def _check_url(self, download: Download) -> None:
        if problem := scheme_problem(download.url):
            raise self.error(self._scrub(f"{download.label}: its URL {problem}"))

    def fetch_bytes(self, download: Download, *, missing_ok: bool = False) -> bytes | None:
        """A small file, with retries; None for a 404 when ``missing_ok``."""
        self._check_url(download)
        network_errors = _network_errors()
        attempt = 0
        while True:
            attempt += 1
            try:
                with self._opener.open(_request(download, 0), timeout=STALL_TIMEOUT) as response:
                    data: bytes = response.read(MAX_SMALL_FILE + 1)
                if len(data) > MAX_SMALL_FILE:
                    raise self.error(
                        f"{download.label}: over {MAX_SMALL_FILE} bytes; not a manifest"
                    )
                return data
            except network_errors as exc:
                failure = _failure(exc)
            if failure.status == 404 and missing_ok:
                return None
            self._wait_or_fail(download, failure, attempt)

    def open(self, request: urllib.request.Request) -> http.client.HTTPResponse:
        """Send ``request`` with this downloader's opener (http(s) only, redirects followed
        without the caller's token); the stall timeout bounded by the deadline."""
        timeout = max(min(STALL_TIMEOUT, self.budget.remaining()), 1.0)
        response: http.client.HTTPResponse = self._opener.open(request, timeout=timeout)
        return response

    def retry_or_fail(self, download: Download, failure: HttpFailure, attempt: int) -> None:
        """Wait before attempt ``attempt + 1`` (within the deadline), or raise the error."""
        self._wait_or_fail(download, failure, attempt)

    def _wait_or_fail(self, download: Download, failure: HttpFailure, attempt: int) -> None:
        plan = retry_delay(failure, attempt, time.time())
        if plan is None or attempt >= MAX_ATTEMPTS_WITHOUT_PROGRESS:
            raise self.error(self._scrub(self._refusal(download, failure)))
        delay, reason = plan
        if delay > self.budget.remaining():
            raise self.error(
                self._scrub(
                    f"gave up downloading {download.label} after {attempt} attempt(s) "
                    f"(deadline {self.budget.seconds:g} s): {failure.describe()} — re-run to "
                    "resume where it stopped"
                )
            )
        self.reporter.warning(
            self._scrub(
                f"{download.label}: {failure.describe()}; retrying in {delay:.0f} s ({reason})"
            )
        )
        self.budget.wait(delay)

    def _refusal(self, download: Download, failure: HttpFailure) -> str:
        hint = ""
        if failure.status in (401, 403, 404):
            hint = " — check the source (and GITHUB_TOKEN for a private repository)"
        return f"could not download {download.label}: {failure.describe()}{hint}"

    # -- archives --------------------------------------------------------------

    def fetch(self, download: Download, progress: Callable[[int], None] | None = None) -> Path:
        """The cached file for ``download``, fetched (or resumed) first when missing."""
        self._check_url(download)
        hit = self.cached(download.sha256, download.size)
        if hit is not None:
            _touch(hit)  # in use: not pruned (before the check, which takes a while)
            if file_sha256(hit) == download.sha256:
                self.counters.cached.append(download.label)
                if progress is not None and download.size:
                    progress(download.size)
                return hit
            self.reporter.warning(
                f"{hit}: damaged cache entry for {download.label}; fetching again"
            )
            hit.unlink(missing_ok=True)
        partial_dir = self.cache / "partial"
        partial_dir.mkdir(parents=True, exist_ok=True)
        part = partial_dir / f"{download.sha256}.part"
        with _locked_append(part) as handle:
            hit = self.cached(download.sha256, download.size)  # another run just finished it
            if hit is not None:
                self.counters.cached.append(download.label)
                return hit
            self._fill(download, handle, progress)
            handle.flush()
            self._check(download, part)
            final = self.cache / "sha256" / download.sha256
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(part, final)
        self.counters.fetched.append(download.label)
        return final

    def _fill(
        self, download: Download, handle: BinaryIO, progress: Callable[[int], None] | None
    ) -> None:
        from urllib.error import HTTPError

        network_errors = _network_errors()
        attempt = 0
        have = handle.seek(0, os.SEEK_END)
        if download.size is not None and have > download.size:
            handle.truncate(0)
            have = 0
        if progress is not None and have:
            progress(have)
        while download.size is None or have < download.size:
            attempt += 1
            before = have
            try:
                timeout = max(min(STALL_TIMEOUT, self.budget.remaining()), 1.0)
                with self._opener.open(_request(download, have), timeout=timeout) as response:
                    if have and response.status != 206:  # the server ignored the range
                        handle.truncate(0)
                        handle.seek(0)
                        if progress is not None:
                            progress(-have)
                        have = before = 0
                    while chunk := response.read(CHUNK):
                        if self.budget.remaining() <= 0:
                            raise self.error(
                                f"gave up downloading {download.label} at {have} bytes: the "
                                f"deadline ({self.budget.seconds:g} s) passed — re-run to resume "
                                "where it stopped"
                            )
                        handle.write(chunk)
                        have += len(chunk)
                        self.counters.add_bytes(len(chunk))
                        if progress is not None:
                            progress(len(chunk))
                if download.size is None or have >= download.size:
                    return
                failure = HttpFailure(None, "connection closed early")
            except HTTPError as exc:
                if exc.code == 416 and have:  # nothing left past what we hold: start over
                    handle.truncate(0)
                    handle.seek(0)
                    have = 0
                    continue
                failure = _failure(exc)
            except network_errors as exc:
                failure = _failure(exc)
            if have > before:
                attempt = 1  # progress was made: a fresh series of attempts
            self._wait_or_fail(download, failure, attempt)

    def _check(self, download: Download, part: Path) -> None:
        size = part.stat().st_size
        if download.size is not None and size != download.size:
            part.unlink(missing_ok=True)
            raise self.error(
                f"{download.label}: downloaded {size} bytes, the metadata says {download.size}; "
                "refusing it"
            )
        digest = file_sha256(part)
        if digest != download.sha256:
            part.unlink(missing_ok=True)
            raise self.error(
                f"{download.label}: sha256 {digest} does not match the metadata "
                f"({download.sha256}); the download is corrupt or was altered — refusing to unpack"
            )

    def fetch_all(self, downloads: Sequence[Download], *, workers: int = 4) -> dict[str, Path]:
        """Fetch in parallel (a progress line on a terminal); sha256 -> cached file."""
        unique = list({d.sha256: d for d in downloads}.values())
        if not unique:
            return {}
        prune(self.cache / "partial")  # range files killed deploys left (net/scratch)
        total = sum(d.size or 0 for d in unique)
        terminal = sys.stderr if sys.stderr.isatty() and not self.reporter.quiet else None
        progress = _Progress(terminal, total, len(unique))
        for item in unique:
            if self.cached(item.sha256, item.size) is None:
                self.reporter.info(f"{item.label}: downloading")
        try:
            with ThreadPoolExecutor(max_workers=max(1, min(workers, len(unique)))) as pool:
                paths = list(pool.map(lambda d: self.fetch(d, progress.add), unique))
        finally:
            if terminal is not None:
                progress.close()
        return {d.sha256: path for d, path in zip(unique, paths, strict=True)}


def _touch(path: Path) -> None:
    with contextlib.suppress(OSError):  # a read-only cache is still a cache
        os.utime(path)


def prune_unused_archives(
    cache: Path,
    keep: Collection[str],
    *,
    days: float = UNUSED_ARCHIVE_DAYS,
    now: float | None = None,
) -> tuple[int, int]:
    """Remove the archives in ``<cache>/sha256/`` whose sha256 is not in ``keep`` and that
    nobody used (their mtime: fetched, or touched on a hit) for ``days``; (files, bytes)
    removed. Only entries named by a sha256 are considered; a link is removed, never
    followed, and a ``sha256`` that is itself a link is left alone."""
    folder = cache / "sha256"
    cutoff = (time.time() if now is None else now) - days * 86400
    removed = freed = 0
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):  # a link: not ours to empty
            return 0, 0
        names = sorted(os.listdir(folder))
    except OSError:
        return 0, 0
    for name in names:
        if not _CACHE_ENTRY.fullmatch(name) or name in keep:
            continue
        path = folder / name
        try:
            st = os.lstat(path)
            if st.st_mtime >= cutoff or not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                continue
            path.unlink()
        except OSError:
            continue  # removed meanwhile, or not ours to remove
        removed += 1
        freed += st.st_size if stat.S_ISREG(st.st_mode) else 0
    return removed, freed


@contextlib.contextmanager
def _locked_append(path: Path) -> Iterator[BinaryIO]:
    """``path`` opened for appending, locked against other runs filling the same file."""
    with path.open("a+b") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: one run per cache at a time is the user's to keep
            yield handle
            return
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield handle
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
