"""GitHub releases: create the release, upload archives and index, idempotently.

The only module that talks to GitHub. JSON calls go through PyGithub; the two blob
transfers (asset upload, asset download for hashing) use a plain ``requests`` session,
because PyGithub opens its upload connection to ``uploads.github.com`` without a
timeout and we want every transfer bounded.

Retries are ours alone (PyGithub's are switched off so the two do not multiply):
5xx answers, dropped connections and rate limits are retried with backoff, honouring
``Retry-After`` and ``X-RateLimit-Reset``, until ``deadline_seconds`` is spent.
Each retried step first looks at what the server now holds, so a request that
succeeded but lost its response, or an upload that died half-way and left an asset in
the "starter" state, is recognised instead of failing on a duplicate name.
"""

from __future__ import annotations

import email.utils
import hashlib
import http
import json
import os
import re
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import requests
from github import Auth, Github, GithubException
from github.GitRelease import GitRelease
from github.GitReleaseAsset import GitReleaseAsset
from github.Repository import Repository
from pydantic import BaseModel

from venvlayers import __version__
from venvlayers.deadline import Deadline, run_within
from venvlayers.errors import ReleaseError
from venvlayers.fsutil import sha256_file, write_text_atomic
from venvlayers.gha import Reporter

DEFAULT_API_URL = "https://api.github.com"
SHA256SUMS_NAME = "SHA256SUMS"
# GitHub: "each file included in a release must be under 2 GiB"
ASSET_SIZE_LIMIT = 2 * 1024**3
# per-socket-operation timeouts (connect, read); a stalled transfer fails and is retried
CONNECT_TIMEOUT = 30.0
READ_TIMEOUT = 300.0
API_TIMEOUT = 60
MAX_BACKOFF = 60.0
# A host that refuses connections or does not resolve is usually a wrong GITHUB_API_URL
# or no network, not a GitHub hiccup: a few quick retries (1 + 2 + 4 s), then a clear error
# instead of retrying until the deadline.
UNREACHABLE_ATTEMPTS = 4
API_VERSION = "2022-11-28"

# GitHub renames assets with other characters (``app@2-…`` becomes ``app.2-…``). We
# upload under that name ourselves, so the name-based idempotency check still holds.
_UNSAFE_ASSET_CHARS = re.compile(r"[^A-Za-z0-9._-]")


def github_asset_name(name: str) -> str:
    """The name GitHub gives an uploaded file (versioned layers' ``@`` becomes ``.``)."""
    return _UNSAFE_ASSET_CHARS.sub(".", name)


_REPO_NAME = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
# <install_target>-<platform>[-<archive_build>].<ext>, as written by publish
_LAYER_ARCHIVE = re.compile(
    r"(?P<layer>.+?)-(?P<platform>(?:linux|macosx|win)_[A-Za-z0-9_]+)(?:-\d+)?"
    r"\.(?:tar\.xz|tar\.zst|tar\.gz|tar\.bz2|zip)"
)

T = TypeVar("T")


class ReleaseResult(BaseModel):
    """What ``publish_release`` did: the release page and the fate of every asset."""

    html_url: str
    uploaded: list[str]
    skipped: list[str]
    replaced: list[str]


# ---------------------------------------------------------------------------
# SHA256SUMS


def write_sha256sums(directory: Path, names: list[str]) -> Path:
    """Write ``directory/SHA256SUMS`` for ``names`` (files in ``directory``).

    GNU ``sha256sum`` text format (``<hex>  <name>``), sorted by name, so
    ``sha256sum -c SHA256SUMS`` verifies a download folder. Written atomically and
    left untouched when already identical.
    """
    lines = []
    for name in sorted(set(names)):
        if name == SHA256SUMS_NAME:
            continue
        if "\n" in name or "\\" in name or "/" in name:
            raise ReleaseError(
                f"cannot list {name!r} in {SHA256SUMS_NAME}: asset names must be plain file names",
                path=directory,
            )
        path = directory / name
        if not path.is_file():
            raise ReleaseError(f"{path} does not exist; cannot list it in {SHA256SUMS_NAME}")
        lines.append(f"{sha256_file(path)}  {github_asset_name(name)}\n")
    target = directory / SHA256SUMS_NAME
    write_text_atomic(target, "".join(lines))
    return target


# ---------------------------------------------------------------------------
# Local assets: checked completely before the first request


@dataclass(frozen=True)
class _LocalAsset:
    path: Path
    name: str
    size: int
    sha256: str


def _describe_file(name: str) -> str:
    match = _LAYER_ARCHIVE.fullmatch(name)
    if match:
        return f"archive {name} of layer {match['layer']} ({match['platform']})"
    return name


def _check_local_assets(assets: list[Path]) -> list[tuple[Path, int]]:
    problems: list[str] = []
    seen: dict[str, Path] = {}
    checked: list[tuple[Path, int]] = []
    for path in assets:
        name = github_asset_name(path.name)
        if not path.is_file():
            problems.append(f"{path} does not exist or is not a file")
            continue
        if name.startswith(".") or name.endswith("."):
            problems.append(
                f"{path}: GitHub would rename asset {name!r}; names must not start or end with '.'"
            )
        if name in seen:
            problems.append(f"{path} and {seen[name]} would both be release asset {name}")
        seen[name] = path
        size = path.stat().st_size
        if size >= ASSET_SIZE_LIMIT:
            problems.append(
                f"{path}: {_describe_file(name)} is {size / 1024**3:.2f} GiB; GitHub release "
                f"assets must be under 2 GiB — move large packages into a separate framework "
                f"layer or use a smaller archive format (tar.zst/tar.xz)"
            )
        checked.append((path, size))
    if problems:
        raise ReleaseError("; ".join(problems), path=assets[0] if len(assets) == 1 else None)
    return checked


# ---------------------------------------------------------------------------
# HTTP failures and the retry policy


class _HttpFailure(Exception):
    """One failed exchange with GitHub; ``status`` is None when no answer came back."""

    def __init__(
        self,
        status: int | None,
        message: str,
        headers: Mapping[str, str] | None = None,
        codes: tuple[str, ...] = (),
        *,
        unreachable: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = {k.lower(): str(v) for k, v in (headers or {}).items()}
        self.codes = codes
        self.unreachable = unreachable  # no connection could be made at all

    def describe(self) -> str:
        if self.status is None:
            return self.message
        message = self.message
        if not message:  # e.g. an HTML error page from a proxy: name the status instead
            try:
                message = http.HTTPStatus(self.status).phrase
            except ValueError:
                message = ""
        return f"{self.status} {message}".rstrip()


def _message_and_codes(data: Any) -> tuple[str, tuple[str, ...]]:
    if not isinstance(data, dict):
        return "", ()
    message = str(data.get("message") or "")
    errors = data.get("errors")
    codes: list[str] = []
    if isinstance(errors, list):
        for error in errors:
            if isinstance(error, dict) and isinstance(error.get("code"), str):
                codes.append(error["code"])
            elif isinstance(error, str):
                codes.append(error)
    return message, tuple(codes)


def _translate(exc: BaseException) -> _HttpFailure:
    if isinstance(exc, _HttpFailure):
        return exc
    if isinstance(exc, GithubException):
        message, codes = _message_and_codes(exc.data)
        return _HttpFailure(exc.status, message or (exc.message or ""), exc.headers, codes)
    if isinstance(exc, requests.Timeout):
        return _HttpFailure(None, "request timed out")
    if isinstance(exc, requests.ConnectionError) and _is_unreachable(exc):
        return _HttpFailure(
            None, "cannot connect (refused, or the host name does not resolve)", unreachable=True
        )
    if isinstance(exc, requests.ConnectionError | requests.exceptions.ChunkedEncodingError):
        return _HttpFailure(None, "connection dropped before GitHub answered")
    if isinstance(exc, requests.RequestException):
        return _HttpFailure(None, f"request failed ({type(exc).__name__})")
    if isinstance(exc, json.JSONDecodeError):
        # a proxy or load balancer answering with a cut-off body
        return _HttpFailure(None, "GitHub sent a malformed JSON answer")
    raise TypeError(exc)  # pragma: no cover - callers only pass the types above


def _is_unreachable(exc: BaseException) -> bool:
    """True when no TCP connection was made: refused, or a DNS failure (not a drop mid-request)."""
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        # urllib3's NewConnectionError (NameResolutionError is one) sits in the args,
        # the `reason` or the cause chain of requests' ConnectionError, by version
        if type(current).__name__ in ("NewConnectionError", "NameResolutionError"):
            return True
        if isinstance(current, ConnectionRefusedError | socket.gaierror):
            return True
        linked = [getattr(current, "reason", None), current.__cause__, current.__context__]
        linked += list(current.args)
        pending += [item for item in linked if isinstance(item, BaseException)]
    return False


def _response_failure(response: requests.Response) -> _HttpFailure:
    try:
        data = response.json()
    except ValueError:
        data = {"message": response.reason or ""}
    message, codes = _message_and_codes(data)
    return _HttpFailure(response.status_code, message or response.reason, response.headers, codes)


def _retry_after(value: str, now: float) -> float | None:
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - now, 0.0)


def _retry_delay(failure: _HttpFailure, attempt: int, now: float) -> tuple[float, str] | None:
    """How long to wait before retrying ``failure`` (and why), or None if retrying is futile."""
    backoff = min(2.0 ** (attempt - 1), MAX_BACKOFF)
    headers = failure.headers
    if failure.unreachable and attempt >= UNREACHABLE_ATTEMPTS:
        return None
    if failure.status is None or failure.status >= 500:
        return backoff, "backoff"
    if failure.status in (403, 429):
        if "retry-after" in headers:
            delay = _retry_after(headers["retry-after"], now)
            if delay is not None:
                return delay, "Retry-After"
        if headers.get("x-ratelimit-remaining") == "0" and "x-ratelimit-reset" in headers:
            try:
                reset = float(headers["x-ratelimit-reset"])
            except ValueError:
                reset = now + MAX_BACKOFF
            # one second of slack for clock skew between us and GitHub
            return max(reset - now, 0.0) + 1.0, "rate limit reset"
        lowered = failure.message.lower()
        if failure.status == 429 or "secondary rate limit" in lowered:
            # GitHub's advice for secondary limits without headers: wait at least a minute
            return max(backoff, MAX_BACKOFF), "secondary rate limit"
    return None


class _Budget:
    """Total time allowed for all attempts, counting requested sleeps.

    An injected ``sleep`` may return at once (tests); the time it was asked to wait
    still counts, so the deadline means the same with a fake clock.
    """

    def __init__(self, seconds: float, sleep: Callable[[float], None]) -> None:
        self.seconds = seconds
        self._sleep = sleep
        self._start = time.monotonic()
        self._unslept = 0.0

    def elapsed(self) -> float:
        return time.monotonic() - self._start + self._unslept

    def remaining(self) -> float:
        return self.seconds - self.elapsed()

    def wait(self, delay: float) -> None:
        before = time.monotonic()
        self._sleep(delay)
        self._unslept += max(delay - (time.monotonic() - before), 0.0)


# ---------------------------------------------------------------------------
# Server-side view


@dataclass(frozen=True)
class _RemoteAsset:
    name: str
    state: str
    size: int
    digest: str | None
    url: str
    handle: GitReleaseAsset | None

    @staticmethod
    def from_pygithub(asset: GitReleaseAsset) -> _RemoteAsset:
        return _RemoteAsset(
            name=asset.name,
            state=asset.state,
            size=asset.size,
            digest=asset.digest,
            url=asset.url,
            handle=asset,
        )

    @staticmethod
    def from_json(data: dict[str, Any]) -> _RemoteAsset:
        return _RemoteAsset(
            name=str(data.get("name", "")),
            state=str(data.get("state", "")),
            size=int(data.get("size") or 0),
            digest=data.get("digest"),
            url=str(data.get("url", "")),
            handle=None,
        )

    def sha256_from_digest(self) -> str | None:
        if self.digest and self.digest.startswith("sha256:"):
            return self.digest.removeprefix("sha256:").lower()
        return None


@dataclass(frozen=True)
class _Release:
    handle: GitRelease
    html_url: str
    upload_url: str
    draft: bool


class _TokenAuth(requests.auth.AuthBase):
    """Sets the token header; a class (not a header) so ~/.netrc can never override it."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request


def _content_type(name: str) -> str:
    if name.endswith(".json"):
        return "application/json"
    if name == SHA256SUMS_NAME or name.endswith((".txt", ".md")):
        return "text/plain"
    if name.endswith(".zip"):
        return "application/zip"
    return "application/octet-stream"


_Action = Literal["upload", "retry-upload", "replace"]


class _Publisher:
    def __init__(
        self,
        *,
        repo: str,
        tag: str,
        token: str,
        api_url: str,
        reporter: Reporter,
        budget: _Budget,
        deadline_seconds: float,
    ) -> None:
        self.repo_name = repo
        self.api_url = api_url
        self.tag = tag
        self.token = token
        self.reporter = reporter
        self.budget = budget
        self.deadline_seconds = deadline_seconds
        # wall clock, stalls included: every socket timeout ends within the deadline
        self.deadline = Deadline(deadline_seconds)
        self.github = Github(
            auth=Auth.Token(token),
            base_url=api_url,
            timeout=int(self.deadline.timeout(API_TIMEOUT)),
            user_agent=f"venvlayers/{__version__}",
            per_page=100,
            # our retry loop owns retrying; PyGithub's would multiply with it
            retry=None,
            seconds_between_requests=None,
            seconds_between_writes=None,
        )
        self.session = requests.Session()
        self.session.auth = _TokenAuth(token)
        # requests' default adapter does not retry either; said explicitly
        self.session.mount("https://", requests.adapters.HTTPAdapter(max_retries=0))
        self.session.mount("http://", requests.adapters.HTTPAdapter(max_retries=0))
        self.session.headers.update(
            {
                "User-Agent": f"venvlayers/{__version__}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
            }
        )

    def close(self) -> None:
        self.session.close()
        self.github.close()

    def _timeouts(self) -> tuple[float, float]:
        """(connect, read) socket timeouts for the next transfer, within the deadline."""
        return self.deadline.timeout(CONNECT_TIMEOUT), self.deadline.timeout(READ_TIMEOUT)

    # -- error reporting -------------------------------------------------

    def _scrub(self, text: str) -> str:
        return text.replace(self.token, "***") if self.token else text

    def _refused(self, what: str, failure: _HttpFailure) -> ReleaseError:
        hint = ""
        if failure.status == 401:
            hint = " — the token was rejected; check GITHUB_TOKEN (expired or revoked?)"
        elif failure.status == 403:
            hint = (
                " — give the workflow `contents: write` permission "
                "(or use a token with write access to the repository)"
            )
        elif failure.status == 404:
            hint = (
                f" — check that {self.repo_name} exists and that the token can see it "
                "(and GITHUB_API_URL for GitHub Enterprise Server)"
            )
        elif failure.unreachable:
            hint = (
                f" — tried {self.api_url} (and its uploads host); check GITHUB_API_URL "
                "and that this machine can reach GitHub"
            )
        elif failure.status == 422 and failure.codes:
            hint = f" ({', '.join(failure.codes)})"
        if failure.unreachable:
            return ReleaseError(
                self._scrub(f"could not reach GitHub to {what}: {failure.describe()}{hint}")
            )
        return ReleaseError(self._scrub(f"GitHub refused to {what}: {failure.describe()}{hint}"))

    def retrying(self, what: str, action: Callable[[], T]) -> T:
        """Run ``action`` until it succeeds, fails for good, or the deadline is spent."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return action()
            except (
                GithubException,
                requests.RequestException,
                json.JSONDecodeError,
                _HttpFailure,
            ) as exc:
                failure = _translate(exc)
            plan = _retry_delay(failure, attempt, time.time())
            if plan is None:
                raise self._refused(what, failure) from None
            delay, reason = plan
            if delay > min(self.budget.remaining(), self.deadline.remaining()):
                waited = self.budget.elapsed()
                asks = f"; the next retry would wait {delay:.0f} s ({reason})"
                raise ReleaseError(
                    self._scrub(
                        f"gave up trying to {what} after {attempt} attempt(s) in {waited:.0f} s "
                        f"(deadline {self.deadline_seconds:g} s): last error "
                        f"{failure.describe()}{asks} — re-run later; assets already uploaded "
                        f"are kept and skipped"
                    )
                ) from None
            self.reporter.warning(
                self._scrub(f"could not {what} ({failure.describe()}); retrying in {delay:.0f} s")
            )
            self.budget.wait(delay)

    # -- release ---------------------------------------------------------

    def get_repository(self) -> Repository:
        return self.retrying(
            f"open repository {self.repo_name}", lambda: self.github.get_repo(self.repo_name)
        )

    def _find_release(self, repo: Repository) -> GitRelease | None:
        try:
            return repo.get_release(self.tag)
        except GithubException as exc:
            if exc.status != 404:
                raise
        # draft releases have no tag yet, so the by-tag lookup cannot see them
        for release in repo.get_releases():
            if release.tag_name == self.tag:
                return release
        return None

    @staticmethod
    def _snapshot(release: GitRelease) -> _Release:
        return _Release(release, release.html_url, release.upload_url, release.draft)

    def find_or_create_release(
        self, repo: Repository, *, draft: bool, name: str | None, body: str | None
    ) -> tuple[_Release, bool]:
        def action() -> tuple[_Release, bool]:
            # looking first on every attempt: a create whose answer was lost must not
            # be repeated (it would fail with "already_exists")
            found = self._find_release(repo)
            if found is not None:
                return self._snapshot(found), False
            try:
                created = repo.create_git_release(
                    tag=self.tag, name=name or self.tag, message=body or "", draft=draft
                )
            except GithubException as exc:
                if exc.status == 422 and "already_exists" in _translate(exc).codes:
                    # someone else created it between our lookup and our create
                    again = self._find_release(repo)
                    if again is not None:
                        return self._snapshot(again), False
                raise
            return self._snapshot(created), True

        return self.retrying(
            f"create release {self.tag} in {self.repo_name}",
            action,
        )

    # -- assets ----------------------------------------------------------

    def list_assets(self, release: _Release) -> dict[str, _RemoteAsset]:
        def action() -> dict[str, _RemoteAsset]:
            return {
                asset.name: _RemoteAsset.from_pygithub(asset)
                for asset in release.handle.get_assets()
            }

        return self.retrying(f"list the assets of release {self.tag}", action)

    def remote_sha256(self, asset: _RemoteAsset) -> str:
        known = asset.sha256_from_digest()
        if known is not None:
            return known

        # older GitHub Enterprise Server versions report no digest: download and hash
        def action() -> str:
            digest = hashlib.sha256()
            with self.session.get(
                asset.url,
                headers={"Accept": "application/octet-stream"},
                stream=True,
                timeout=self._timeouts(),
            ) as response:
                if response.status_code >= 400:
                    raise _response_failure(response)
                for chunk in response.iter_content(chunk_size=1 << 20):
                    digest.update(chunk)
            return digest.hexdigest()

        return self.retrying(f"download {asset.name} to check its hash", action)

    def delete(self, asset: _RemoteAsset) -> None:
        if asset.handle is None:  # pragma: no cover - only listed assets get deleted
            raise ReleaseError(f"internal: cannot delete {asset.name} without its API object")
        handle = asset.handle
        try:
            handle.delete_asset()
        except GithubException as exc:
            if exc.status != 404:  # already gone is what we wanted
                raise

    def _post_asset(self, release: _Release, local: _LocalAsset) -> _RemoteAsset:
        url = release.upload_url.split("{", 1)[0]
        headers = {"Content-Type": _content_type(local.name)}
        with local.path.open("rb") as body:
            # an empty file object would be sent chunked, which GitHub refuses
            data: Any = body if local.size else b""
            response = self.session.post(
                url,
                params={"name": local.name},
                data=data,
                headers=headers,
                timeout=self._timeouts(),
            )
        with response:
            if response.status_code >= 400:
                raise _response_failure(response)
            return _RemoteAsset.from_json(response.json())

    def put_asset(
        self,
        release: _Release,
        local: _LocalAsset,
        action: _Action,
        planned: _RemoteAsset | None,
    ) -> None:
        """Upload ``local``; every retry starts by looking at what the server holds."""
        attempts = 0

        def step() -> None:
            nonlocal attempts
            current = planned
            for _ in range(3):
                if attempts:
                    current = self._lookup(release, local.name)
                    if current is not None and current.state == "uploaded":
                        if self.remote_sha256(current) == local.sha256:
                            return  # an earlier attempt got through; its answer was lost
                        if action != "replace":
                            raise self._conflict([local.name])
                attempts += 1
                if current is not None:
                    self.delete(current)
                try:
                    uploaded = self._post_asset(release, local)
                except _HttpFailure as failure:
                    if failure.status == 422 and "already_exists" in failure.codes:
                        continue  # look again: a leftover asset holds the name
                    raise
                if uploaded.sha256_from_digest() not in (None, local.sha256):
                    raise ReleaseError(
                        f"GitHub stored {local.name} with {uploaded.digest}, but the file "
                        f"has sha256:{local.sha256}; the upload was corrupted — re-run"
                    )
                return
            raise ReleaseError(
                f"GitHub keeps reporting asset {local.name} as already present on release "
                f"{self.tag}, yet it cannot be found; remove it by hand and re-run"
            )

        self.retrying(f"upload {local.name} to release {self.tag}", step)

    def _lookup(self, release: _Release, name: str) -> _RemoteAsset | None:
        for asset in release.handle.get_assets():
            if asset.name == name:
                return _RemoteAsset.from_pygithub(asset)
        return None

    def _conflict(self, names: list[str]) -> ReleaseError:
        listed = ", ".join(names)
        return ReleaseError(
            f"release {self.tag} in {self.repo_name} already has {listed} with different "
            f"content; re-run with --replace to overwrite, or publish under a new tag"
        )


def publish_release(
    *,
    repo: str,
    tag: str,
    assets: list[Path],
    token: str,
    api_url: str | None = None,
    draft: bool = False,
    replace: bool = False,
    name: str | None = None,
    body: str | None = None,
    reporter: Reporter,
    deadline_seconds: float = 600,
    sleep: Callable[[float], None] = time.sleep,
) -> ReleaseResult:
    """Create release ``tag`` in ``repo`` if missing and make ``assets`` its assets.

    Idempotent: assets already present with the same sha256 are skipped; a leftover
    half-finished upload is deleted and redone; a same-name asset with other content
    fails unless ``replace``. ``api_url`` defaults to ``GITHUB_API_URL`` (GitHub
    Enterprise Server) and then to api.github.com. Every size and name problem is
    reported before the first request.
    """
    reporter.mask(token)
    if not token:
        raise ReleaseError("no GitHub token: set GITHUB_TOKEN (the workflow's token works)")
    if not _REPO_NAME.fullmatch(repo):
        raise ReleaseError(f"repository {repo!r} is not of the form owner/name")
    if not tag or tag != tag.strip():
        raise ReleaseError(f"release tag {tag!r} is empty or has surrounding spaces")
    checked = _check_local_assets(assets)
    locals_ = [
        _LocalAsset(path, github_asset_name(path.name), size, sha256_file(path))
        for path, size in checked
    ]
    base_url = (api_url or os.environ.get("GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/")

    publisher = _Publisher(
        repo=repo,
        tag=tag,
        token=token,
        api_url=base_url,
        reporter=reporter,
        budget=_Budget(deadline_seconds, sleep),
        deadline_seconds=deadline_seconds,
    )

    def run() -> ReleaseResult:
        try:
            with reporter.group(f"Release {tag} in {repo}"):
                return _publish(
                    publisher, locals_, draft=draft, replace=replace, name=name, body=body
                )
        finally:
            publisher.close()

    def too_late() -> ReleaseError:
        return ReleaseError(
            f"gave up on release {tag} in {repo}: not done within the deadline of "
            f"{deadline_seconds:g} s (GitHub stalled); re-run later: assets already uploaded "
            "are kept and skipped"
        )

    return run_within(deadline_seconds, run, too_late)


def _publish(
    publisher: _Publisher,
    locals_: list[_LocalAsset],
    *,
    draft: bool,
    replace: bool,
    name: str | None,
    body: str | None,
) -> ReleaseResult:
    reporter = publisher.reporter
    repository = publisher.get_repository()
    release, created = publisher.find_or_create_release(
        repository, draft=draft, name=name, body=body
    )
    state = "draft " if release.draft else ""
    reporter.info(f"{'created' if created else 'using existing'} {state}release {release.html_url}")
    if release.draft and not draft:
        reporter.warning(
            f"release {publisher.tag} exists as a draft and stays one; publish it on GitHub "
            "when its assets are complete"
        )
    existing = publisher.list_assets(release) if not created else {}

    # plan everything before changing anything, so a conflict leaves the release as it was
    plan: list[tuple[_LocalAsset, _Action | None, _RemoteAsset | None]] = []
    conflicts: list[str] = []
    for local in locals_:
        remote = existing.get(local.name)
        if remote is None:
            plan.append((local, "upload", None))
        elif remote.state != "uploaded":
            reporter.info(f"{local.name}: removing a half-finished upload (state {remote.state!r})")
            plan.append((local, "retry-upload", remote))
        elif remote.size == local.size and publisher.remote_sha256(remote) == local.sha256:
            plan.append((local, None, remote))
        elif replace:
            plan.append((local, "replace", remote))
        else:
            conflicts.append(local.name)
    if conflicts:
        raise publisher._conflict(conflicts)

    result = ReleaseResult(html_url=release.html_url, uploaded=[], skipped=[], replaced=[])
    for local, action, remote in plan:
        if action is None:
            reporter.info(f"{local.name}: already on the release with the same sha256, skipped")
            result.skipped.append(local.name)
            continue
        publisher.put_asset(release, local, action, remote)
        if action == "replace":
            reporter.info(f"{local.name}: replaced ({local.size} bytes)")
            result.replaced.append(local.name)
        else:
            reporter.info(f"{local.name}: uploaded ({local.size} bytes)")
            result.uploaded.append(local.name)
    return result


# ---------------------------------------------------------------------------
# The `release` command: a merge output folder -> a release


def release_assets(out: Path) -> list[str]:
    """Names of the files in ``out`` to publish: every visible regular file, sorted."""
    if not out.is_dir():
        raise ReleaseError(f"{out} is not a folder; pass the output folder of `venvlayers merge`")
    return sorted(
        entry.name
        for entry in out.iterdir()
        if entry.is_file() and not entry.name.startswith(".") and entry.name != SHA256SUMS_NAME
    )


def release_directory(
    out: Path,
    *,
    tag: str,
    reporter: Reporter,
    repo: str | None = None,
    token: str | None = None,
    api_url: str | None = None,
    draft: bool = False,
    replace: bool = False,
    name: str | None = None,
    body: str | None = None,
    deadline_seconds: float = 600,
    sleep: Callable[[float], None] = time.sleep,
    environ: Mapping[str, str] | None = None,
) -> ReleaseResult:
    """Publish the files of ``out`` plus a fresh SHA256SUMS (uploaded last).

    ``repo``, ``token`` and ``api_url`` default to GITHUB_REPOSITORY, GITHUB_TOKEN and
    GITHUB_API_URL.
    """
    env = os.environ if environ is None else environ
    token = token or env.get("GITHUB_TOKEN", "")
    if not token:
        raise ReleaseError("no GitHub token: set GITHUB_TOKEN (the workflow's token works)")
    repo = repo or env.get("GITHUB_REPOSITORY", "")
    if not repo:
        raise ReleaseError("no repository: pass --repo OWNER/NAME or set GITHUB_REPOSITORY")
    names = release_assets(out)
    if not names:
        raise ReleaseError(f"{out} holds no files to release; run `venvlayers merge` first")
    # size and name checks happen before SHA256SUMS is (re)written, too
    _check_local_assets([out / n for n in names])
    sums = write_sha256sums(out, names)
    return publish_release(
        repo=repo,
        tag=tag,
        assets=[*(out / n for n in names), sums],
        token=token,
        api_url=api_url or env.get("GITHUB_API_URL") or DEFAULT_API_URL,
        draft=draft,
        replace=replace,
        name=name,
        body=body,
        reporter=reporter,
        deadline_seconds=deadline_seconds,
        sleep=sleep,
    )
