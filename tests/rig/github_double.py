"""A double of the GitHub REST API (releases, pull request comments): a real threaded HTTP
server on 127.0.0.1.

It speaks the subset PyGithub and ``venvlayers.release.create`` use, with GitHub's JSON shapes
and status codes, laid out like GitHub Enterprise Server (API at ``/api/v3``, uploads
at ``/api/uploads``) so that clients must honour ``GITHUB_API_URL`` and the
``upload_url`` of the release JSON. A fault plan makes chosen requests fail the way
GitHub does (5xx, rate limits, connections dropped mid-upload), and every request is
recorded (the token value is never stored) for tests to inspect.

Like GitHub: drafts are published with ``PATCH /releases/{id}``; a repository with
``immutable=True`` refuses uploads to (and asset deletions from) a published release;
pull request comments are listed, posted and edited (only by their author; the token
writes as ``github-actions[bot]``, which may not read ``/user``); a ``private=True``
repository answers 404 to requests without the token, a public one serves reads without it; ``GET /releases/assets/{id}`` with ``Accept:
application/octet-stream`` redirects to a storage path (``/storage/...``, no token needed,
HTTP ranges honoured) the way GitHub redirects to its storage host.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, urlsplit

from .local_server import LocalHTTPServer

API_PREFIX = "/api/v3"
#: who the workflow's token writes as (GITHUB_TOKEN is an installation token of GitHub Actions)
BOT_LOGIN = "github-actions[bot]"
UPLOADS_PREFIX = "/api/uploads"
DOCS = "https://docs.github.com/rest"

FaultKind = Literal["status", "rate_limit", "retry_after", "drop", "stall"]


@dataclass
class Fault:
    """Make one request fail.

    Selected either by ``request_number`` (1-based, counting every request the server
    sees) or as the ``nth`` request matching ``method`` and ``path`` (a regex searched
    in the path without query, e.g. ``r"/releases/\\d+/assets$"``).

    kinds: ``status`` answers ``status`` (default 502); ``rate_limit`` answers 403 with
    ``X-RateLimit-Remaining: 0`` and a reset ``reset_in`` seconds ahead; ``retry_after``
    answers ``status`` (default 429) with ``Retry-After: retry_after``; ``drop`` reads
    part of an upload body, leaves the asset in state "starter" like GitHub does, and
    resets the connection without answering. With ``after=True`` a ``status`` fault
    lets the request take effect first (a lost response). ``times`` repeats the fault
    on that many consecutive matches (from the ``nth``); ``message`` overrides the
    error message of ``status`` faults. ``stall`` reads at most ``stall_after`` bytes of
    the request body, then neither reads nor answers for ``stall_seconds`` (or until the
    double stops), like a GitHub edge that hangs: uploads block the client's send,
    API calls its read.
    """

    kind: FaultKind = "status"
    method: str | None = None
    path: str | None = None
    nth: int = 1
    request_number: int | None = None
    status: int | None = None
    retry_after: int = 7
    reset_in: int = 30
    after: bool = False
    times: int = 1
    message: str | None = None
    stall_seconds: float = 3600.0
    stall_after: int = 0
    seen: int = 0
    fired: int = 0


@dataclass(frozen=True)
class RecordedRequest:
    number: int
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names; Authorization keeps only its scheme
    body_size: int
    status: int | None  # None when the connection was dropped
    fault: str | None


@dataclass
class AssetState:
    id: int
    release_id: int
    name: str
    label: str
    content_type: str
    state: str
    data: bytes
    digest: str | None
    created_at: str


@dataclass
class ReleaseState:
    id: int
    tag_name: str
    name: str
    body: str
    draft: bool
    created_at: str
    untagged: str
    asset_ids: list[int] = field(default_factory=list)
    prerelease: bool = False
    make_latest: str | None = None
    published_at: str | None = None


@dataclass
class CommentState:
    """An issue (pull request) comment; ``edits`` counts PATCHes of its body."""

    id: int
    issue: int
    body: str
    login: str
    created_at: str
    updated_at: str
    edits: int = 0


class _Answer(Exception):
    """Raised by route handlers to answer with an error status."""

    def __init__(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.data = data
        self.headers = headers or {}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _not_found() -> _Answer:
    return _Answer(404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"})


class GitHubDouble:
    """The server plus its state. Use as a context manager or call start()/stop()."""

    def __init__(
        self,
        *,
        token: str,
        repo: str = "octo-org/stacks",
        immutable: bool = False,
        private: bool = False,
    ) -> None:
        self.token = token
        self.immutable = immutable
        self.private = private
        self.owner, self.repo = repo.split("/")
        self._lock = threading.Lock()
        self._ids = itertools.count(1001)
        self._numbers = itertools.count(1)
        self.releases: dict[int, ReleaseState] = {}
        self.comments: dict[int, CommentState] = {}
        self.assets: dict[int, AssetState] = {}
        self.faults: list[Fault] = []
        self._requests: list[RecordedRequest] = []
        self._http: LocalHTTPServer | None = None
        self._stopping = threading.Event()
        self.port = 0

    # -- lifecycle -------------------------------------------------------

    def start(self) -> GitHubDouble:
        double = self

        class Handler(_Handler):
            owner = double

        self._http = LocalHTTPServer(Handler)
        self.port = self._http.port
        return self

    def stop(self) -> None:
        self._stopping.set()  # stalled handlers give up
        if self._http is not None:
            self._http.stop()
            self._http = None

    def __enter__(self) -> GitHubDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return self.base_url + API_PREFIX

    @property
    def uploads_url(self) -> str:
        return self.base_url + UPLOADS_PREFIX

    @property
    def repo_path(self) -> str:
        return f"/repos/{self.owner}/{self.repo}"

    # -- test-facing API ---------------------------------------------------

    def add_fault(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_matching(self, method: str, path_regex: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method and re.search(path_regex, r.path)]

    def seed_release(self, tag: str, *, draft: bool = False, name: str | None = None) -> int:
        with self._lock:
            return self._create_release(tag, name or tag, "", draft).id

    def seed_asset(
        self,
        release_id: int,
        name: str,
        data: bytes,
        *,
        state: str = "uploaded",
        digest: str | Literal["auto"] | None = "auto",
    ) -> int:
        """Put an asset on a release directly. ``digest="auto"`` computes the right one;
        None mimics servers (or half-finished uploads) that report no digest."""
        with self._lock:
            asset = self._new_asset(release_id, name, "", "application/octet-stream")
            asset.state = state
            asset.data = data
            if digest == "auto":
                digest = (
                    f"sha256:{hashlib.sha256(data).hexdigest()}" if state == "uploaded" else None
                )
            asset.digest = digest
            return asset.id

    def seed_comment(self, issue: int, body: str, login: str = "octocat") -> int:
        """A comment someone else wrote (a person, another bot) on pull request ``issue``."""
        with self._lock:
            return self._create_comment(issue, body, login).id

    def comments_on(self, issue: int) -> list[CommentState]:
        with self._lock:
            return [replace(c) for c in sorted(self.comments.values(), key=lambda c: c.id)
                    if c.issue == issue]  # fmt: skip

    def release_by_tag(self, tag: str) -> ReleaseState | None:
        with self._lock:
            for release in self.releases.values():
                if release.tag_name == tag:
                    return replace(release, asset_ids=list(release.asset_ids))
        return None

    def assets_of(self, tag: str) -> list[AssetState]:
        with self._lock:
            for release in self.releases.values():
                if release.tag_name == tag:
                    return [replace(self.assets[i]) for i in release.asset_ids]
        return []

    # -- state changes (lock held) -------------------------------------------

    def _create_release(self, tag: str, name: str, body: str, draft: bool) -> ReleaseState:
        release_id = next(self._ids)
        release = ReleaseState(
            id=release_id,
            tag_name=tag,
            name=name,
            body=body,
            draft=draft,
            created_at=_now(),
            untagged=f"untagged-{hashlib.sha1(str(release_id).encode()).hexdigest()[:20]}",
        )
        if not draft:
            release.published_at = release.created_at
        self.releases[release_id] = release
        return release

    def _create_comment(self, issue: int, body: str, login: str) -> CommentState:
        now = _now()
        comment = CommentState(next(self._ids), issue, body, login, now, now)
        self.comments[comment.id] = comment
        return comment

    def _comment_json(self, comment: CommentState) -> dict[str, Any]:
        web = f"{self.base_url}/{self.owner}/{self.repo}/pull/{comment.issue}"
        user = self._user_json() if comment.login == BOT_LOGIN else {
            "login": comment.login, "id": 583231, "type": "User",
        }  # fmt: skip
        return {
            "id": comment.id,
            "node_id": f"IC_double{comment.id}",
            "url": f"{self.api_url}{self.repo_path}/issues/comments/{comment.id}",
            "html_url": f"{web}#issuecomment-{comment.id}",
            "issue_url": f"{self.api_url}{self.repo_path}/issues/{comment.issue}",
            "body": comment.body,
            "user": user,
            "created_at": comment.created_at,
            "updated_at": comment.updated_at,
            "author_association": "NONE" if comment.login == BOT_LOGIN else "CONTRIBUTOR",
        }

    def _new_asset(self, release_id: int, name: str, label: str, content_type: str) -> AssetState:
        asset = AssetState(
            id=next(self._ids),
            release_id=release_id,
            name=name,
            label=label,
            content_type=content_type,
            state="starter",
            data=b"",
            digest=None,
            created_at=_now(),
        )
        self.assets[asset.id] = asset
        self.releases[release_id].asset_ids.append(asset.id)
        return asset

    # -- JSON shapes -----------------------------------------------------------

    def _user_json(self) -> dict[str, Any]:
        return {
            "login": BOT_LOGIN,
            "id": 41898282,
            "node_id": "MDM6Qm90NDE4OTgyODI=",
            "type": "Bot",
            "url": f"{self.api_url}/users/github-actions%5Bbot%5D",
            "html_url": f"{self.base_url}/apps/github-actions",
            "site_admin": False,
        }

    def _repo_json(self) -> dict[str, Any]:
        full = f"{self.owner}/{self.repo}"
        return {
            "id": 4242,
            "node_id": "R_kgDOdouble",
            "name": self.repo,
            "full_name": full,
            "private": self.private,
            "owner": {"login": self.owner, "id": 99, "type": "Organization"},
            "html_url": f"{self.base_url}/{full}",
            "url": f"{self.api_url}{self.repo_path}",
            "releases_url": f"{self.api_url}{self.repo_path}/releases{{/id}}",
            "default_branch": "main",
            "permissions": {"admin": False, "push": True, "pull": True},
        }

    def _asset_json(self, asset: AssetState) -> dict[str, Any]:
        release = self.releases[asset.release_id]
        tag = release.untagged if release.draft else release.tag_name
        return {
            "url": f"{self.api_url}{self.repo_path}/releases/assets/{asset.id}",
            "browser_download_url": (
                f"{self.base_url}/{self.owner}/{self.repo}/releases/download/"
                f"{quote(tag)}/{quote(asset.name)}"
            ),
            "id": asset.id,
            "node_id": f"RA_double{asset.id}",
            "name": asset.name,
            "label": asset.label,
            "state": asset.state,
            "content_type": asset.content_type,
            "size": len(asset.data),
            "digest": asset.digest,
            "download_count": 0,
            "created_at": asset.created_at,
            "updated_at": asset.created_at,
            "uploader": self._user_json(),
        }

    def _release_json(self, release: ReleaseState) -> dict[str, Any]:
        api = f"{self.api_url}{self.repo_path}/releases/{release.id}"
        shown_tag = release.untagged if release.draft else quote(release.tag_name)
        return {
            "url": api,
            "assets_url": f"{api}/assets",
            "upload_url": (
                f"{self.uploads_url}{self.repo_path}/releases/{release.id}/assets{{?name,label}}"
            ),
            "html_url": f"{self.base_url}/{self.owner}/{self.repo}/releases/tag/{shown_tag}",
            "id": release.id,
            "node_id": f"RE_double{release.id}",
            "author": self._user_json(),
            "tag_name": release.tag_name,
            "target_commitish": "main",
            "name": release.name,
            "body": release.body,
            "draft": release.draft,
            "prerelease": release.prerelease,
            "immutable": self.immutable and not release.draft,
            "created_at": release.created_at,
            "published_at": release.published_at,
            "assets": [self._asset_json(self.assets[i]) for i in release.asset_ids],
            "tarball_url": f"{self.api_url}{self.repo_path}/tarball/{quote(release.tag_name)}",
            "zipball_url": f"{self.api_url}{self.repo_path}/zipball/{quote(release.tag_name)}",
        }

    # -- fault plan --------------------------------------------------------------

    def _take_fault(self, number: int, method: str, path: str) -> Fault | None:
        with self._lock:
            chosen = None
            for fault in self.faults:
                if fault.fired >= fault.times:
                    continue
                if fault.request_number is not None:
                    hit = fault.request_number <= number < fault.request_number + fault.times
                else:
                    if fault.method is not None and fault.method != method:
                        continue
                    if fault.path is not None and not re.search(fault.path, path):
                        continue
                    fault.seen += 1
                    hit = fault.nth <= fault.seen < fault.nth + fault.times
                if hit and chosen is None:
                    fault.fired += 1
                    chosen = fault
            return chosen

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)


def _fault_answer(fault: Fault) -> _Answer:
    if fault.kind == "rate_limit":
        reset = int(time.time()) + fault.reset_in
        return _Answer(
            fault.status or 403,
            {
                "message": "API rate limit exceeded for installation ID 1.",
                "documentation_url": f"{DOCS}/overview/rate-limits-for-the-rest-api",
            },
            {
                "X-RateLimit-Limit": "5000",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Used": "5000",
                "X-RateLimit-Reset": str(reset),
                "X-RateLimit-Resource": "core",
            },
        )
    if fault.kind == "retry_after":
        return _Answer(
            fault.status or 429,
            {
                "message": "You have exceeded a secondary rate limit. Please wait a few "
                "minutes before you try again.",
                "documentation_url": DOCS,
            },
            {"Retry-After": str(fault.retry_after)},
        )
    status = fault.status or 502
    default = "Server Error" if status >= 500 else "Forbidden"
    return _Answer(status, {"message": fault.message or default, "documentation_url": DOCS})


class _Handler(BaseHTTPRequestHandler):
    owner: GitHubDouble
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes; without this, Nagle's algorithm and
        # the client's delayed ACK add ~40 ms to every answer
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read the request record instead."""

    # BaseHTTPRequestHandler dispatches on do_<VERB>
    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    # -- plumbing ----------------------------------------------------------------

    def _serve(self) -> None:
        double = self.owner
        number = next(double._numbers)
        parts = urlsplit(self.path)
        path = parts.path
        query = dict(parse_qsl(parts.query))
        headers = {k.lower(): v for k, v in self.headers.items()}
        if "authorization" in headers:
            headers["authorization"] = headers["authorization"].split(" ", 1)[0] + " ***"
        self._body_read = 0
        fault = double._take_fault(number, self.command, path)

        def record(status: int | None) -> None:
            double._record(
                RecordedRequest(
                    number=number,
                    method=self.command,
                    path=path,
                    query=query,
                    headers=headers,
                    body_size=self._body_read,
                    status=status,
                    fault=fault.kind if fault else None,
                )
            )

        if fault is not None and fault.kind == "stall":
            self._read_body(limit=fault.stall_after)
            record(None)
            double._stopping.wait(fault.stall_seconds)
            self.close_connection = True
            return
        if fault is not None and fault.kind == "drop":
            self._drop_mid_upload(path, query)
            record(None)  # the connection is reset only after this handler returns
            return
        if fault is not None and not fault.after:
            self._drain()
            answer = _fault_answer(fault)
            record(answer.status)
            self._send(answer.status, answer.data, answer.headers)
            return
        try:
            if not path.startswith("/storage/"):
                self._check_auth()
            status, data, extra = self._route(path, query)
        except _Answer as refusal:
            self._drain()
            status, data, extra = refusal.status, refusal.data, refusal.headers
        if fault is not None:  # after=True: the request took effect, its answer is lost
            lost = _fault_answer(fault)
            status, data, extra = lost.status, lost.data, lost.headers
        # Recorded before answering: once the client has its answer, a test reading
        # `requests` must already see this request.
        record(status)
        if self.command == "HEAD":
            self._send_bytes(status, b"", extra, length=len(data) if isinstance(data, bytes) else 0)
        elif isinstance(data, bytes):
            self._send_bytes(status, data, extra)
        else:
            self._send(status, data, extra)

    def _check_auth(self) -> None:
        value = self.headers.get("Authorization", "")
        if not value and self.command == "GET":
            if self.owner.private:  # GitHub hides private repositories from strangers
                raise _not_found()
            return
        scheme, _, token = value.partition(" ")
        if scheme.lower() not in ("token", "bearer") or token != self.owner.token:
            raise _Answer(401, {"message": "Bad credentials", "documentation_url": DOCS})

    def _content_length(self) -> int:
        try:
            return int(self.headers.get("Content-Length", "0"))
        except ValueError:
            return 0

    def _read_body(self, limit: int | None = None) -> bytes:
        length = self._content_length() - self._body_read
        if limit is not None:
            length = min(length, limit)
        chunks = []
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            length -= len(chunk)
            self._body_read += len(chunk)
        return b"".join(chunks)

    def _drain(self) -> None:
        self._read_body()

    def _send(self, status: int, data: Any, extra: dict[str, str] | None = None) -> None:
        body = b"" if status == 204 else json.dumps(data).encode()
        self._send_bytes(
            status, body, {"Content-Type": "application/json; charset=utf-8"} | (extra or {})
        )

    def _send_bytes(
        self,
        status: int,
        body: bytes,
        extra: dict[str, str] | None = None,
        *,
        length: int | None = None,
    ) -> None:
        self.send_response(status)
        headers = {
            "Content-Type": "application/octet-stream",
            "X-GitHub-Media-Type": "github.v3; format=json",
            "X-RateLimit-Limit": "5000",
            "X-RateLimit-Remaining": "4999",
            "X-RateLimit-Used": "1",
            "X-RateLimit-Reset": str(int(time.time()) + 3600),
            "X-RateLimit-Resource": "core",
        } | (extra or {})
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _drop_mid_upload(self, path: str, query: dict[str, str]) -> None:
        """Like a proxy timing out mid-upload: GitHub keeps a "starter" asset behind."""
        double = self.owner
        match = re.fullmatch(rf"{UPLOADS_PREFIX}{double.repo_path}/releases/(\d+)/assets", path)
        if match and query.get("name"):
            with double._lock:
                release_id = int(match.group(1))
                if release_id in double.releases:
                    asset = double._new_asset(
                        release_id,
                        query["name"],
                        query.get("label", ""),
                        self.headers.get("Content-Type", "application/octet-stream"),
                    )
                    asset.state = "starter"
        partial = self._read_body(limit=max(self._content_length() // 2, 1))
        if match and query.get("name"):
            with double._lock:
                for asset in double.assets.values():
                    if asset.name == query["name"] and asset.state == "starter":
                        asset.data = partial
        # linger 0: closing sends a reset, so the client sees the connection drop
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True

    # -- routes --------------------------------------------------------------------

    def _route(self, path: str, query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        double = self.owner
        method = self.command
        if match := re.fullmatch(r"/storage/(\d+)/[^/]+", path):
            return self._storage(int(match.group(1)))
        if path.startswith(UPLOADS_PREFIX + "/"):
            rest = path.removeprefix(UPLOADS_PREFIX)
            match = re.fullmatch(rf"{double.repo_path}/releases/(\d+)/assets", rest)
            if method == "POST" and match:
                return self._upload(int(match.group(1)), query)
            raise _not_found()
        if not path.startswith(API_PREFIX + "/"):
            raise _not_found()
        rest = path.removeprefix(API_PREFIX)
        repo = double.repo_path
        if rest == repo and method == "GET":
            return 200, double._repo_json(), {}
        if rest == f"{repo}/releases":
            if method == "POST":
                return self._create_release()
            if method == "GET":
                with double._lock:
                    items = [
                        double._release_json(r)
                        for r in sorted(double.releases.values(), key=lambda r: -r.id)
                    ]
                return self._page(rest, items, query)
        if match := re.fullmatch(rf"{repo}/releases/tags/(.+)", rest):
            tag = match.group(1)
            with double._lock:
                for release in double.releases.values():
                    # drafts have no tag yet: GitHub does not find them by tag
                    if release.tag_name == tag and not release.draft and method == "GET":
                        return 200, double._release_json(release), {}
            raise _not_found()
        if match := re.fullmatch(rf"{repo}/releases/(\d+)", rest):
            if method == "PATCH":
                return self._update_release(int(match.group(1)))
            with double._lock:
                by_id = double.releases.get(int(match.group(1)))
                if by_id is not None and method == "GET":
                    return 200, double._release_json(by_id), {}
            raise _not_found()
        if match := re.fullmatch(rf"{repo}/releases/(\d+)/assets", rest):
            with double._lock:
                owning = double.releases.get(int(match.group(1)))
                if owning is None or method != "GET":
                    raise _not_found()
                items = [double._asset_json(double.assets[i]) for i in owning.asset_ids]
            return self._page(rest, items, query)
        if match := re.fullmatch(rf"{repo}/releases/assets/(\d+)", rest):
            return self._asset(int(match.group(1)))
        if rest == "/user" and method == "GET":
            # an installation token (the workflow's GITHUB_TOKEN) may not read /user
            raise _Answer(403, {"message": "Resource not accessible by integration",
                                "documentation_url": DOCS, "status": "403"})  # fmt: skip
        if match := re.fullmatch(rf"{repo}/issues/(\d+)/comments", rest):
            return self._issue_comments(int(match.group(1)), query)
        if match := re.fullmatch(rf"{repo}/issues/comments/(\d+)", rest):
            return self._comment(int(match.group(1)))
        raise _not_found()

    def _issue_comments(self, issue: int, query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        """GET lists (oldest first, paged), POST adds one as the token's account (the bot)."""
        double = self.owner
        if self.command == "GET":
            with double._lock:
                items = [
                    double._comment_json(c)
                    for c in sorted(double.comments.values(), key=lambda c: c.id)
                    if c.issue == issue
                ]
            return self._page(f"{double.repo_path}/issues/{issue}/comments", items, query)
        if self.command != "POST":
            raise _not_found()
        body = self._comment_payload()
        with double._lock:
            comment = double._create_comment(issue, body, BOT_LOGIN)
            data = double._comment_json(comment)
        return 201, data, {"Location": data["url"]}

    def _comment(self, comment_id: int) -> tuple[int, Any, dict[str, str]]:
        """GET one, or PATCH its body: only its author may (403 otherwise, as GitHub)."""
        double = self.owner
        with double._lock:
            comment = double.comments.get(comment_id)
        if comment is None:
            raise _not_found()
        if self.command == "GET":
            with double._lock:
                return 200, double._comment_json(comment), {}
        if self.command != "PATCH":
            raise _not_found()
        body = self._comment_payload()
        with double._lock:
            if comment.login != BOT_LOGIN:
                raise _Answer(403, {"message": "Resource not accessible by integration"})
            comment.body, comment.updated_at = body, _now()
            comment.edits += 1
            return 200, double._comment_json(comment), {}

    def _comment_payload(self) -> str:
        try:
            payload = json.loads(self._read_body() or b"{}")
        except ValueError:
            raise _Answer(400, {"message": "Problems parsing JSON"}) from None
        body = payload.get("body") if isinstance(payload, dict) else None
        if not isinstance(body, str) or not body:
            raise _Answer(422, {"message": "Validation Failed",
                                "errors": [{"resource": "IssueComment", "code": "missing_field",
                                            "field": "body"}]})  # fmt: skip
        if len(body) > 65536:
            raise _Answer(422, {"message": "Validation Failed",
                                "errors": [{"resource": "IssueComment", "code": "custom",
                                            "field": "body",
                                            "message": "body is too long (maximum is 65536 "
                                                       "characters)"}]})  # fmt: skip
        return body

    def _page(
        self, rest: str, items: list[dict[str, Any]], query: dict[str, str]
    ) -> tuple[int, Any, dict[str, str]]:
        per_page = min(max(int(query.get("per_page", "30")), 1), 100)
        page = max(int(query.get("page", "1")), 1)
        last = max((len(items) + per_page - 1) // per_page, 1)
        chunk = items[(page - 1) * per_page : page * per_page]
        base = f"{self.owner.api_url}{rest}"
        links = []

        def link(n: int, rel: str) -> str:
            return f'<{base}?per_page={per_page}&page={n}>; rel="{rel}"'

        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        if page > 1:
            links += [link(1, "first"), link(page - 1, "prev")]
        return 200, chunk, ({"Link": ", ".join(links)} if links else {})

    def _create_release(self) -> tuple[int, Any, dict[str, str]]:
        double = self.owner
        try:
            payload = json.loads(self._read_body() or b"{}")
        except ValueError:
            raise _Answer(400, {"message": "Problems parsing JSON"}) from None
        tag = payload.get("tag_name")
        if not isinstance(tag, str) or not tag:
            raise _Answer(
                422,
                {
                    "message": "Validation Failed",
                    "errors": [
                        {"resource": "Release", "code": "missing_field", "field": "tag_name"}
                    ],
                },
            )
        with double._lock:
            if any(r.tag_name == tag for r in double.releases.values()):
                raise _Answer(
                    422,
                    {
                        "message": "Validation Failed",
                        "errors": [
                            {"resource": "Release", "code": "already_exists", "field": "tag_name"}
                        ],
                        "documentation_url": DOCS,
                    },
                )
            release = double._create_release(
                tag,
                payload.get("name") or tag,
                payload.get("body") or "",
                bool(payload.get("draft")),
            )
            release.prerelease = bool(payload.get("prerelease"))
            release.make_latest = payload.get("make_latest")
            data = double._release_json(release)
        return 201, data, {"Location": data["url"]}

    def _upload(self, release_id: int, query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        double = self.owner
        name = query.get("name", "")
        if "Content-Length" not in self.headers:
            raise _Answer(411, {"message": "Content-Length required"})
        with double._lock:
            if release_id not in double.releases:
                raise _not_found()
            if not name:
                raise _Answer(
                    422,
                    {
                        "message": "Validation Failed",
                        "errors": [{"code": "missing_field", "field": "name"}],
                    },
                )
            release = double.releases[release_id]
            if double.immutable and not release.draft:
                raise _Answer(
                    422,
                    {
                        "message": "Cannot upload assets to an immutable release.",
                        "documentation_url": DOCS,
                    },
                )
            if any(double.assets[i].name == name for i in release.asset_ids):
                raise _Answer(
                    422,
                    {
                        "message": "Validation Failed",
                        "request_id": "DOUBLE:0001",
                        "documentation_url": DOCS,
                        "errors": [
                            {"resource": "ReleaseAsset", "code": "already_exists", "field": "name"}
                        ],
                    },
                )
            # GitHub creates the asset when the upload starts and marks it uploaded at the end
            asset = double._new_asset(
                release_id,
                name,
                query.get("label", ""),
                self.headers.get("Content-Type", "application/octet-stream"),
            )
        data = self._read_body()
        with double._lock:
            asset.data = data
            asset.state = "uploaded"
            asset.digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
            return 201, double._asset_json(asset), {}

    def _asset(self, asset_id: int) -> tuple[int, Any, dict[str, str]]:
        double = self.owner
        with double._lock:
            asset = double.assets.get(asset_id)
            if asset is None:
                raise _not_found()
            if self.command == "DELETE":
                if double.immutable and not double.releases[asset.release_id].draft:
                    raise _Answer(
                        422,
                        {"message": "Cannot delete assets of an immutable release."},
                    )
                del double.assets[asset_id]
                double.releases[asset.release_id].asset_ids.remove(asset_id)
                return 204, None, {}
            if self.command != "GET":
                raise _not_found()
            if "application/octet-stream" in self.headers.get("Accept", ""):
                # GitHub answers with a redirect to a signed URL on its storage host
                location = f"{double.base_url}/storage/{asset.id}/{quote(asset.name)}"
                return 302, b"", {"Location": location}
            return 200, double._asset_json(asset), {}

    def _storage(self, asset_id: int) -> tuple[int, Any, dict[str, str]]:
        """The storage host: the asset's bytes, honouring a single ``Range: bytes=N-``."""
        double = self.owner
        with double._lock:
            asset = double.assets.get(asset_id)
            data = asset.data if asset is not None and asset.state == "uploaded" else None
        if data is None:
            raise _not_found()
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if match is None:
            return 200, data, {"Accept-Ranges": "bytes"}
        start = int(match.group(1))
        if start >= len(data):
            return 416, b"", {"Content-Range": f"bytes */{len(data)}"}
        extra = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
        return 206, data[start:], extra

    def _update_release(self, release_id: int) -> tuple[int, Any, dict[str, str]]:
        double = self.owner
        try:
            payload = json.loads(self._read_body() or b"{}")
        except ValueError:
            raise _Answer(400, {"message": "Problems parsing JSON"}) from None
        with double._lock:
            release = double.releases.get(release_id)
            if release is None:
                raise _not_found()
            if double.immutable and not release.draft:
                changes = {k for k in payload if k not in ("name", "body", "make_latest")}
                if any(payload.get(k) != getattr(release, k, None) for k in changes - {"tag_name"}):
                    raise _Answer(422, {"message": "Cannot modify an immutable release."})
            for key in ("name", "body", "prerelease", "make_latest"):
                if key in payload:
                    setattr(release, key, payload[key])
            if payload.get("draft") is False and release.draft:
                release.draft = False
                release.published_at = _now()
            return 200, double._release_json(release), {}
