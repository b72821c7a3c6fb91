"""The GitHub client: the only module that imports PyGithub or talks to the GitHub API.

JSON calls go through PyGithub; the blob transfers (asset upload, asset download for
hashing) use a plain ``requests`` session, because PyGithub opens its upload connection
without a timeout and we want every transfer bounded. Loaded only by code that talks to
GitHub: ``release``, and ``deploy`` for ``github:`` sources.

Retries are ours alone (PyGithub's are switched off so the two do not multiply):
5xx answers, dropped connections and rate limits are retried with backoff, honouring
``Retry-After`` and ``X-RateLimit-Reset``, until the budget is spent.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from github import Auth, Github, GithubException
from github.GitRelease import GitRelease
from github.GitReleaseAsset import GitReleaseAsset
from github.Repository import Repository

from venvlayers import __version__
from venvlayers.core.errors import VenvlayersError
from venvlayers.core.report import Reporter
from venvlayers.formats.assets import SHA256SUMS_NAME
from venvlayers.net.deadline import Deadline
from venvlayers.net.retry import Budget, HttpFailure, retry_delay
from venvlayers.net.urls import api_url_problem

DEFAULT_API_URL = "https://api.github.com"
# per-socket-operation timeouts (connect, read); a stalled transfer fails and is retried
CONNECT_TIMEOUT = 30.0
READ_TIMEOUT = 300.0
API_TIMEOUT = 60
API_VERSION = "2022-11-28"

T = TypeVar("T")


def api_url_from(environ: Mapping[str, str] | None = None, explicit: str | None = None) -> str:
    """``explicit``, else ``GITHUB_API_URL`` (GitHub Enterprise Server), else api.github.com."""
    env = os.environ if environ is None else environ
    return (explicit or env.get("GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/")


# ---------------------------------------------------------------------------
# Translating client exceptions


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


def translate(exc: BaseException) -> HttpFailure:
    if isinstance(exc, HttpFailure):
        return exc
    if isinstance(exc, GithubException):
        message, codes = _message_and_codes(exc.data)
        return HttpFailure(exc.status, message or (exc.message or ""), exc.headers, codes)
    if isinstance(exc, requests.Timeout):
        return HttpFailure(None, "request timed out")
    if isinstance(exc, requests.ConnectionError) and _is_unreachable(exc):
        return HttpFailure(
            None, "cannot connect (refused, or the host name does not resolve)", unreachable=True
        )
    if isinstance(exc, requests.ConnectionError | requests.exceptions.ChunkedEncodingError):
        return HttpFailure(None, "connection dropped before GitHub answered")
    if isinstance(exc, requests.RequestException):
        return HttpFailure(None, f"request failed ({type(exc).__name__})")
    if isinstance(exc, json.JSONDecodeError):
        # a proxy or load balancer answering with a cut-off body
        return HttpFailure(None, "GitHub sent a malformed JSON answer")
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


def response_failure(response: requests.Response) -> HttpFailure:
    try:
        data = response.json()
    except ValueError:
        data = {"message": response.reason or ""}
    message, codes = _message_and_codes(data)
    return HttpFailure(response.status_code, message or response.reason, response.headers, codes)


def _refused_url(exc: AssertionError) -> bool:
    """PyGithub refuses (with an assert) to follow a URL off its API host, such as a
    ``Link: rel="next"`` page elsewhere: that is a bad answer, not a bug of ours."""
    frame = exc.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    return frame is not None and frame.tb_frame.f_code.co_name.endswith("assertUrlAllowed")


# ---------------------------------------------------------------------------
# Server-side view


@dataclass(frozen=True)
class RemoteAsset:
    name: str
    state: str
    size: int
    digest: str | None
    url: str
    handle: GitReleaseAsset | None

    @staticmethod
    def from_pygithub(asset: GitReleaseAsset) -> RemoteAsset:
        return RemoteAsset(
            name=asset.name,
            state=asset.state,
            size=asset.size,
            digest=asset.digest,
            url=asset.url,
            handle=asset,
        )

    @staticmethod
    def from_json(data: dict[str, Any]) -> RemoteAsset:
        return RemoteAsset(
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
class RemoteRelease:
    handle: GitRelease
    html_url: str
    upload_url: str
    draft: bool
    tag: str
    name: str
    body: str
    prerelease: bool

    @staticmethod
    def of(release: GitRelease) -> RemoteRelease:
        return RemoteRelease(
            release,
            release.html_url,
            release.upload_url,
            release.draft,
            release.tag_name,
            release.name or "",
            release.body or "",
            release.prerelease,
        )


class _TokenAuth(requests.auth.AuthBase):
    """Sets the token header; a class (not a header) so ~/.netrc can never override it."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request


def content_type(name: str) -> str:
    if name.endswith(".json"):
        return "application/json"
    if name == SHA256SUMS_NAME or name.endswith((".txt", ".md")):
        return "text/plain"
    if name.endswith(".zip"):
        return "application/zip"
    return "application/octet-stream"


class GitHubClient:
    """One repository on one GitHub (or GHES) host, every call retried within ``budget``."""

    def __init__(
        self,
        *,
        repo: str,
        token: str,
        api_url: str,
        reporter: Reporter,
        budget: Budget,
        error: type[VenvlayersError],
    ) -> None:
        self.repo_name = repo
        self.api_url = api_url
        self.token = token
        self.reporter = reporter
        self.budget = budget
        self.error = error
        # wall clock, stalls included: every socket timeout ends within the deadline
        self.deadline = Deadline(budget.seconds)
        self.github = Github(
            auth=Auth.Token(token) if token else None,
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
        if token:
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
        self._repository: Repository | None = None

    def timeouts(self) -> tuple[float, float]:
        """(connect, read) socket timeouts for the next transfer, within the deadline."""
        return self.deadline.timeout(CONNECT_TIMEOUT), self.deadline.timeout(READ_TIMEOUT)

    def close(self) -> None:
        self.session.close()
        self.github.close()

    # -- error reporting -------------------------------------------------

    def scrub(self, text: str) -> str:
        return text.replace(self.token, "***") if self.token else text

    def refused(self, what: str, failure: HttpFailure) -> VenvlayersError:
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
                "(GITHUB_TOKEN for private repositories, GITHUB_API_URL for GitHub "
                "Enterprise Server)"
            )
        elif failure.unreachable:
            hint = (
                f" — tried {self.api_url} (and its uploads host); check GITHUB_API_URL "
                "and that this machine can reach GitHub"
            )
        elif failure.status == 422 and failure.codes:
            hint = f" ({', '.join(failure.codes)})"
        if failure.unreachable:
            return self.error(
                self.scrub(f"could not reach GitHub to {what}: {failure.describe()}{hint}")
            )
        return self.error(self.scrub(f"GitHub refused to {what}: {failure.describe()}{hint}"))

    def retrying(self, what: str, action: Callable[[], T]) -> T:
        """Run ``action`` until it succeeds, fails for good, or the budget is spent."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return action()
            except (
                GithubException,
                requests.RequestException,
                json.JSONDecodeError,
                HttpFailure,
            ) as exc:
                failure = translate(exc)
            except AssertionError as exc:
                if not _refused_url(exc):
                    raise
                raise self.error(
                    self.scrub(
                        f"could not {what}: GitHub's answer leads to another host ({exc}); "
                        f"refusing to follow it — check GITHUB_API_URL ({self.api_url})"
                    )
                ) from None
            plan = retry_delay(failure, attempt, time.time())
            if plan is None:
                raise self.refused(what, failure) from None
            delay, reason = plan
            if delay > min(self.budget.remaining(), self.deadline.remaining()):
                waited = self.budget.elapsed()
                asks = f"; the next retry would wait {delay:.0f} s ({reason})"
                raise self.error(
                    self.scrub(
                        f"gave up trying to {what} after {attempt} attempt(s) in {waited:.0f} s "
                        f"(deadline {self.budget.seconds:g} s): last error "
                        f"{failure.describe()}{asks} — re-run later; assets already uploaded "
                        f"are kept and skipped"
                    )
                ) from None
            self.reporter.warning(
                self.scrub(f"could not {what} ({failure.describe()}); retrying in {delay:.0f} s")
            )
            self.budget.wait(delay)

    # -- releases --------------------------------------------------------

    def repository(self) -> Repository:
        if self._repository is None:
            name = self.repo_name
            self._repository = self.retrying(
                f"open repository {name}", lambda: self.github.get_repo(name)
            )
        return self._repository

    def _find(self, tag: str) -> GitRelease | None:
        repo = self.repository()
        try:
            return repo.get_release(tag)
        except GithubException as exc:
            if exc.status != 404:
                raise
        # draft releases have no tag yet, so the by-tag lookup cannot see them
        for release in repo.get_releases():
            if release.tag_name == tag:
                return release
        return None

    def find_release(self, tag: str) -> RemoteRelease | None:
        def action() -> RemoteRelease | None:
            found = self._find(tag)
            return RemoteRelease.of(found) if found is not None else None

        return self.retrying(f"look up release {tag} in {self.repo_name}", action)

    def previous_release(self, tag: str) -> str | None:
        """Tag of the newest published release other than ``tag`` (drafts and prereleases aside)."""

        def action() -> str | None:
            for release in self.repository().get_releases():
                if release.tag_name != tag and not release.draft and not release.prerelease:
                    return str(release.tag_name)
            return None

        return self.retrying(f"list the releases of {self.repo_name}", action)

    def find_or_create_draft(
        self, tag: str, *, name: str, body: str, prerelease: bool
    ) -> tuple[RemoteRelease, bool]:
        """The release ``tag`` if it exists (draft or not), else a new draft."""

        def action() -> tuple[RemoteRelease, bool]:
            # looking first on every attempt: a create whose answer was lost must not
            # be repeated (it would fail with "already_exists")
            found = self._find(tag)
            if found is not None:
                return RemoteRelease.of(found), False
            try:
                created = self.repository().create_git_release(
                    tag=tag, name=name, message=body, draft=True, prerelease=prerelease
                )
            except GithubException as exc:
                if exc.status == 422 and "already_exists" in translate(exc).codes:
                    # someone else created it between our lookup and our create
                    again = self._find(tag)
                    if again is not None:
                        return RemoteRelease.of(again), False
                raise
            return RemoteRelease.of(created), True

        return self.retrying(f"create release {tag} in {self.repo_name}", action)

    def publish_draft(
        self, release: RemoteRelease, *, name: str, body: str, prerelease: bool, make_latest: str
    ) -> RemoteRelease:
        """Turn the draft into a published release (idempotent: re-reads it on every attempt)."""

        def action() -> RemoteRelease:
            current = self._find(release.tag)
            if current is None:
                raise self.error(
                    f"release {release.tag} in {self.repo_name} disappeared before it could be "
                    "published; re-run"
                )
            if not current.draft:
                return RemoteRelease.of(current)
            updated = current.update_release(
                name=name,
                message=body,
                draft=False,
                prerelease=prerelease,
                make_latest=make_latest,
            )
            return RemoteRelease.of(updated)

        return self.retrying(f"publish release {release.tag} in {self.repo_name}", action)

    # -- assets ----------------------------------------------------------

    def list_assets(self, release: RemoteRelease) -> dict[str, RemoteAsset]:
        def action() -> dict[str, RemoteAsset]:
            return {
                asset.name: RemoteAsset.from_pygithub(asset)
                for asset in release.handle.get_assets()
            }

        return self.retrying(f"list the assets of release {release.tag}", action)

    def lookup(self, release: RemoteRelease, name: str) -> RemoteAsset | None:
        for asset in release.handle.get_assets():
            if asset.name == name:
                return RemoteAsset.from_pygithub(asset)
        return None

    def checked_url(self, url: str, what: str, *, upload: bool = False) -> str:
        """``url`` from an answer, when the token may go there (``net.urls``)."""
        if problem := api_url_problem(url, self.api_url, upload=upload):
            raise self.error(self.scrub(f"GitHub's {what} URL {url[:200]!r} {problem}"))
        return url

    def remote_sha256(self, asset: RemoteAsset) -> str:
        known = asset.sha256_from_digest()
        if known is not None:
            return known
        url = self.checked_url(asset.url, f"asset {asset.name}")

        # older GitHub Enterprise Server versions report no digest: download and hash
        def action() -> str:
            digest = hashlib.sha256()
            with self.session.get(
                url,
                headers={"Accept": "application/octet-stream"},
                stream=True,
                timeout=self.timeouts(),
            ) as response:
                if response.status_code >= 400:
                    raise response_failure(response)
                for chunk in response.iter_content(chunk_size=1 << 20):
                    digest.update(chunk)
            return digest.hexdigest()

        return self.retrying(f"download {asset.name} to check its hash", action)

    def read_asset(self, tag: str, name: str, limit: int = 64 * 1024 * 1024) -> bytes | None:
        """The bytes of a small asset of release ``tag`` (None when it has no such asset)."""
        release = self.find_release(tag)
        asset = self.list_assets(release).get(name) if release is not None else None
        if asset is None or asset.size > limit:
            return None
        url = self.checked_url(asset.url, f"asset {name}")

        def action() -> bytes:
            with self.session.get(
                url,
                headers={"Accept": "application/octet-stream"},
                timeout=self.timeouts(),
            ) as response:
                if response.status_code >= 400:
                    raise response_failure(response)
                return bytes(response.content)

        return self.retrying(f"download {name} of release {tag}", action)

    def delete(self, asset: RemoteAsset) -> None:
        if asset.handle is None:  # pragma: no cover - only listed assets get deleted
            raise self.error(f"internal: cannot delete {asset.name} without its API object")
        try:
            asset.handle.delete_asset()
        except GithubException as exc:
            if exc.status != 404:  # already gone is what we wanted
                raise

    def post_asset(self, release: RemoteRelease, name: str, path: Any, size: int) -> RemoteAsset:
        """One upload attempt of the file at ``path`` as asset ``name`` (raises HttpFailure)."""
        url = self.checked_url(release.upload_url.split("{", 1)[0], "upload", upload=True)
        headers = {"Content-Type": content_type(name)}
        with path.open("rb") as body:
            # an empty file object would be sent chunked, which GitHub refuses
            data: Any = body if size else b""
            response = self.session.post(
                url,
                params={"name": name},
                data=data,
                headers=headers,
                timeout=self.timeouts(),
            )
        with response:
            if response.status_code >= 400:
                raise response_failure(response)
            return RemoteAsset.from_json(response.json())


# ---------------------------------------------------------------------------
# Reading a release (deploy)


@dataclass(frozen=True)
class AssetDownload:
    """Where to fetch one release asset, and the headers only the API host may see."""

    name: str
    url: str
    size: int
    sha256: str | None
    api_headers: dict[str, str]


def release_downloads(
    *,
    repo: str,
    tag: str,
    token: str,
    api_url: str,
    reporter: Reporter,
    budget: Budget,
    error: type[VenvlayersError],
) -> dict[str, AssetDownload]:
    """The uploaded assets of the published release ``tag`` of ``repo``, by name.

    Downloads use the API's asset URL (private repositories work with a token); GitHub
    answers with a redirect to its storage host, which must not see the token.
    """
    reporter.mask(token)
    client = GitHubClient(
        repo=repo, token=token, api_url=api_url, reporter=reporter, budget=budget, error=error
    )
    try:
        release = client.find_release(tag)
        if release is None or release.draft:
            raise error(
                f"github:{repo}@{tag}: no published release with this tag — check the tag "
                "(and GITHUB_TOKEN for a private repository, GITHUB_API_URL for GitHub "
                "Enterprise Server)"
            )
        assets = {
            name: a for name, a in client.list_assets(release).items() if a.state == "uploaded"
        }
        urls = {name: client.checked_url(a.url, f"asset {name}") for name, a in assets.items()}
    finally:
        client.close()
    headers = {"Accept": "application/octet-stream", "X-GitHub-Api-Version": API_VERSION}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return {
        name: AssetDownload(name, urls[name], asset.size, asset.sha256_from_digest(), headers)
        for name, asset in assets.items()
    }
