"""GitHub releases: draft, upload every asset, check every digest, then publish.

A release is created as a draft and published only once every asset is on it with the
right sha256, so repositories with immutable releases accept it (they refuse uploads to
a published release) and nobody ever downloads a half-uploaded release. Re-runs are
idempotent: assets already present with the same sha256 are skipped, a leftover
half-finished upload is deleted and redone, a same-name asset with other content fails
unless ``replace``. All GitHub traffic goes through ``venvlayers.net.github``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from venvlayers.core.errors import ReleaseError
from venvlayers.core.fsutil import sha256_file, write_text_atomic
from venvlayers.core.report import Reporter
from venvlayers.formats.assets import SHA256SUMS_NAME, describe_file, github_asset_name
from venvlayers.net.deadline import run_within
from venvlayers.net.github import GitHubClient, RemoteAsset, RemoteRelease, api_url_from
from venvlayers.net.retry import Budget, HttpFailure
from venvlayers.release.files import release_files

# GitHub: "each file included in a release must be under 2 GiB"
ASSET_SIZE_LIMIT = 2 * 1024**3
MAKE_LATEST = ("true", "false", "legacy")

_REPO_NAME = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")


class ReleaseResult(BaseModel):
    """What ``upload_release`` did: the release page and the fate of every asset."""

    html_url: str
    uploaded: list[str]
    skipped: list[str]
    replaced: list[str]
    published: bool = False
    """True when this run turned the draft into a published release."""


@dataclass(frozen=True)
class ReleaseOptions:
    """How the release is presented (the options of softprops/action-gh-release)."""

    name: str | None = None
    body: str | None = None
    draft: bool = False
    """Leave the release a draft (upload and check only)."""
    prerelease: bool = False
    make_latest: str = "true"


# ---------------------------------------------------------------------------
# SHA256SUMS


def write_sha256sums(directory: Path, names: list[str]) -> Path:
    """Write ``directory/SHA256SUMS`` for ``names`` (files in ``directory``).

    GNU ``sha256sum`` text format (``<hex>  <name>``), sorted by name, so
    ``sha256sum -c SHA256SUMS`` verifies a download folder. Written atomically and
    left untouched when already identical.
    """
    return write_sha256sums_for(directory, {name: directory / name for name in names})


def write_sha256sums_for(directory: Path, files: Mapping[str, Path]) -> Path:
    """``directory/SHA256SUMS`` listing each file of ``files`` under its asset name."""
    lines = []
    for name in sorted(files, key=github_asset_name):
        if name == SHA256SUMS_NAME:
            continue
        if "\n" in name or "\\" in name or "/" in name:
            raise ReleaseError(
                f"cannot list {name!r} in {SHA256SUMS_NAME}: asset names must be plain file names",
                path=directory,
            )
        path = files[name]
        if not path.is_file():
            raise ReleaseError(f"{path} does not exist; cannot list it in {SHA256SUMS_NAME}")
        lines.append(f"{sha256_file(path)}  {github_asset_name(name)}\n")
    target = directory / SHA256SUMS_NAME
    write_text_atomic(target, "".join(lines))
    return target


# ---------------------------------------------------------------------------
# Local assets: checked completely before the first request


@dataclass(frozen=True)
class LocalAsset:
    path: Path
    name: str
    size: int
    sha256: str


def check_local_assets(assets: list[tuple[Path, str]]) -> list[tuple[Path, str, int]]:
    """(path, asset name) pairs -> (path, GitHub's name, size); every problem at once."""
    problems: list[str] = []
    seen: dict[str, Path] = {}
    checked: list[tuple[Path, str, int]] = []
    for path, wanted in assets:
        name = github_asset_name(wanted)
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
                f"{path}: {describe_file(name)} is {size / 1024**3:.2f} GiB; GitHub release "
                f"assets must be under 2 GiB — move large packages into a separate framework "
                f"layer or use a smaller archive format (tar.zst/tar.xz)"
            )
        checked.append((path, name, size))
    if problems:
        raise ReleaseError("; ".join(problems), path=assets[0][0] if len(assets) == 1 else None)
    return checked


_Action = Literal["upload", "retry-upload", "replace"]


class _Uploader:
    """The upload steps of one release, each retried by the client."""

    def __init__(self, client: GitHubClient, tag: str) -> None:
        self.client = client
        self.tag = tag

    def conflict(self, names: list[str]) -> ReleaseError:
        listed = ", ".join(names)
        return ReleaseError(
            f"release {self.tag} in {self.client.repo_name} already has {listed} with different "
            f"content; re-run with --replace to overwrite, or release under a new tag"
        )

    def put_asset(
        self,
        release: RemoteRelease,
        local: LocalAsset,
        action: _Action,
        planned: RemoteAsset | None,
    ) -> None:
        """Upload ``local``; every retry starts by looking at what the server holds."""
        client = self.client
        attempts = 0

        def step() -> None:
            nonlocal attempts
            current = planned
            for _ in range(3):
                if attempts:
                    current = client.lookup(release, local.name)
                    if current is not None and current.state == "uploaded":
                        if client.remote_sha256(current) == local.sha256:
                            return  # an earlier attempt got through; its answer was lost
                        if action != "replace":
                            raise self.conflict([local.name])
                attempts += 1
                if current is not None:
                    client.delete(current)
                try:
                    uploaded = client.post_asset(release, local.name, local.path, local.size)
                except HttpFailure as failure:
                    if failure.status == 422 and "already_exists" in failure.codes:
                        continue  # look again: a leftover asset holds the name
                    if failure.status == 422 and not release.draft:
                        raise ReleaseError(
                            f"GitHub refused to upload {local.name} to the published release "
                            f"{self.tag} ({failure.describe()}); with immutable releases a "
                            "published release cannot change — release under a new tag"
                        ) from None
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

        client.retrying(f"upload {local.name} to release {self.tag}", step)


def upload_release(
    *,
    repo: str,
    tag: str,
    assets: list[Path] | list[tuple[Path, str]],
    token: str,
    api_url: str | None = None,
    replace: bool = False,
    options: ReleaseOptions | None = None,
    reporter: Reporter,
    deadline_seconds: float = 600,
    sleep: Callable[[float], None] = time.sleep,
    notes: Callable[[GitHubClient], str] | None = None,
) -> ReleaseResult:
    """Draft release ``tag`` in ``repo``, upload ``assets``, check them all, publish.

    ``assets`` are paths (uploaded under their file name) or (path, asset name) pairs.
    ``api_url`` defaults to ``GITHUB_API_URL`` (GitHub Enterprise Server) and then to
    api.github.com. Every size and name problem is reported before the first request.
    ``notes`` makes the release notes when ``options.body`` is None (given the client, to
    find the previous release).
    """
    options = options or ReleaseOptions()
    reporter.mask(token)
    if not token:
        raise ReleaseError("no GitHub token: set GITHUB_TOKEN (the workflow's token works)")
    if not _REPO_NAME.fullmatch(repo):
        raise ReleaseError(f"repository {repo!r} is not of the form owner/name")
    if not tag or tag != tag.strip():
        raise ReleaseError(f"release tag {tag!r} is empty or has surrounding spaces")
    if options.make_latest not in MAKE_LATEST:
        raise ReleaseError(f"make-latest {options.make_latest!r}: use true, false or legacy")
    pairs = [item if isinstance(item, tuple) else (item, item.name) for item in assets]
    local_assets = [
        LocalAsset(path, name, size, sha256_file(path))
        for path, name, size in check_local_assets(pairs)
    ]
    client = GitHubClient(
        repo=repo,
        token=token,
        api_url=api_url_from(explicit=api_url),
        reporter=reporter,
        budget=Budget(deadline_seconds, sleep),
        error=ReleaseError,
    )

    def run() -> ReleaseResult:
        try:
            with reporter.group(f"Release {tag} in {repo}"):
                return _release(
                    client, tag, local_assets, replace=replace, options=options, notes=notes
                )
        finally:
            client.close()

    def too_late() -> ReleaseError:
        return ReleaseError(
            f"gave up on release {tag} in {repo}: not done within the deadline of "
            f"{deadline_seconds:g} s (GitHub stalled); re-run later: assets already uploaded "
            "are kept and skipped"
        )

    return run_within(deadline_seconds, run, too_late)


def _release(
    client: GitHubClient,
    tag: str,
    assets: list[LocalAsset],
    *,
    replace: bool,
    options: ReleaseOptions,
    notes: Callable[[GitHubClient], str] | None,
) -> ReleaseResult:
    """Open (or create) the draft, plan, upload, verify, then publish: each phase can be
    interrupted and the next run carries on from what GitHub holds."""
    uploader = _Uploader(client, tag)
    release, created, body = _open_release(client, tag, options, notes)
    existing = client.list_assets(release) if not created else {}
    plan = _plan_uploads(client, uploader, release, assets, existing, replace=replace)
    result = _upload(client.reporter, uploader, release, plan)
    changed = result.uploaded or result.replaced
    _verify(client, uploader, release, assets, client.list_assets(release) if changed else existing)
    if release.draft and not options.draft:
        published = client.publish_draft(
            release,
            name=options.name or release.name or tag,
            body=body if body is not None else release.body,
            prerelease=options.prerelease,
            make_latest=options.make_latest,
        )
        client.reporter.info(f"published release {published.html_url}")
        result.html_url = published.html_url
        result.published = True
    return result


def _open_release(
    client: GitHubClient,
    tag: str,
    options: ReleaseOptions,
    notes: Callable[[GitHubClient], str] | None,
) -> tuple[RemoteRelease, bool, str | None]:
    """The release of ``tag`` (a new draft unless one exists), whether it was created, and
    the notes to publish it with (made only for a new release)."""
    existing_release = client.find_release(tag)
    body = options.body
    if body is None and existing_release is None and notes is not None:
        body = notes(client)
    if existing_release is not None:
        release, created = existing_release, False
    else:
        release, created = client.find_or_create_draft(
            tag, name=options.name or tag, body=body or "", prerelease=options.prerelease
        )
    state = "draft " if release.draft else ""
    client.reporter.info(
        f"{'created' if created else 'using existing'} {state}release {release.html_url}"
    )
    return release, created, body


@dataclass(frozen=True)
class _Planned:
    local: LocalAsset
    action: _Action | None
    """None: already on the release with the same bytes."""
    remote: RemoteAsset | None


def _plan_uploads(
    client: GitHubClient,
    uploader: _Uploader,
    release: RemoteRelease,
    assets: list[LocalAsset],
    existing: dict[str, RemoteAsset],
    *,
    replace: bool,
) -> list[_Planned]:
    """What each asset needs, decided before anything changes: a conflict leaves the
    release as it was."""
    plan: list[_Planned] = []
    conflicts: list[str] = []
    for local in assets:
        remote = existing.get(local.name)
        if remote is None:
            plan.append(_Planned(local, "upload", None))
        elif remote.state != "uploaded":
            client.reporter.info(
                f"{local.name}: removing a half-finished upload (state {remote.state!r})"
            )
            plan.append(_Planned(local, "retry-upload", remote))
        elif remote.size == local.size and client.remote_sha256(remote) == local.sha256:
            plan.append(_Planned(local, None, remote))
        elif replace:
            plan.append(_Planned(local, "replace", remote))
        else:
            conflicts.append(local.name)
    if conflicts and not release.draft:
        raise ReleaseError(
            f"release {uploader.tag} is already published with other {', '.join(conflicts)}; "
            "release under a new tag (--replace works only where releases are not immutable)"
        )
    if conflicts:
        raise uploader.conflict(conflicts)
    if not release.draft and any(item.action is not None for item in plan):
        client.reporter.warning(
            f"release {uploader.tag} is already published; uploading to it (repositories "
            "with immutable releases refuse this)"
        )
    return plan


def _upload(
    reporter: Reporter, uploader: _Uploader, release: RemoteRelease, plan: list[_Planned]
) -> ReleaseResult:
    result = ReleaseResult(html_url=release.html_url, uploaded=[], skipped=[], replaced=[])
    for item in plan:
        name = item.local.name
        if item.action is None:
            reporter.info(f"{name}: already on the release with the same sha256, skipped")
            result.skipped.append(name)
            continue
        uploader.put_asset(release, item.local, item.action, item.remote)
        if item.action == "replace":
            reporter.info(f"{name}: replaced ({item.local.size} bytes)")
            result.replaced.append(name)
        else:
            reporter.info(f"{name}: uploaded ({item.local.size} bytes)")
            result.uploaded.append(name)
    return result


def _verify(
    client: GitHubClient,
    uploader: _Uploader,
    release: RemoteRelease,
    assets: list[LocalAsset],
    remote: dict[str, RemoteAsset],
) -> None:
    """Every asset is on the release, complete, with our sha256; a draft holds nothing else."""
    problems = []
    for local in assets:
        asset = remote.get(local.name)
        if asset is None or asset.state != "uploaded":
            problems.append(f"{local.name} is missing")
        elif asset.size != local.size or client.remote_sha256(asset) != local.sha256:
            problems.append(f"{local.name} has other content ({asset.digest})")
    if problems:
        raise ReleaseError(
            f"release {uploader.tag} was not published: {'; '.join(problems)} — re-run"
        )
    ours = {local.name for local in assets}
    for name, asset in sorted(remote.items()):
        if name in ours:
            continue
        if release.draft:
            client.reporter.info(f"{name}: not part of this release, removed from the draft")
            _delete(client, uploader.tag, asset)
        else:
            client.reporter.warning(f"{name}: on release {uploader.tag} but not part of it")


def _delete(client: GitHubClient, tag: str, asset: RemoteAsset) -> None:
    client.retrying(f"delete {asset.name} from release {tag}", lambda: client.delete(asset))


# ---------------------------------------------------------------------------
# The `release` command: a merge output folder -> a release


def release_directory(
    out: Path,
    *,
    tag: str,
    reporter: Reporter,
    repo: str | None = None,
    token: str | None = None,
    api_url: str | None = None,
    replace: bool = False,
    options: ReleaseOptions | None = None,
    spec: Path | None = None,
    deadline_seconds: float = 600,
    sleep: Callable[[float], None] = time.sleep,
    environ: Mapping[str, str] | None = None,
) -> ReleaseResult:
    """Release what a deployer needs from the merge output ``out``, plus a fresh SHA256SUMS.

    ``repo``, ``token`` and ``api_url`` default to GITHUB_REPOSITORY, GITHUB_TOKEN and
    GITHUB_API_URL. Without notes, the notes are the lock changes since the previous
    release (``spec`` given) or a list of the layers.
    """
    env = os.environ if environ is None else environ
    token = token or env.get("GITHUB_TOKEN", "")
    if not token:
        raise ReleaseError("no GitHub token: set GITHUB_TOKEN (the workflow's token works)")
    repo = repo or env.get("GITHUB_REPOSITORY", "")
    if not repo:
        raise ReleaseError("no repository: pass --repo OWNER/NAME or set GITHUB_REPOSITORY")
    files = release_files(out, reporter)
    # size and name checks happen before SHA256SUMS is (re)written, too
    check_local_assets([(path, name) for name, path in files.items()])
    sums = write_sha256sums_for(out, files)
    from venvlayers.release.notes import default_notes

    return upload_release(
        repo=repo,
        tag=tag,
        assets=[*((path, name) for name, path in files.items()), (sums, SHA256SUMS_NAME)],
        token=token,
        api_url=api_url or env.get("GITHUB_API_URL") or None,
        replace=replace,
        options=options,
        reporter=reporter,
        deadline_seconds=deadline_seconds,
        sleep=sleep,
        notes=lambda client: default_notes(client, tag, out, spec, reporter),
    )
