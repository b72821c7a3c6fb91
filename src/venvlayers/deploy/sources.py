"""Where a deploy reads from: a folder, an HTTP(S) base URL, or a GitHub release.

Each source answers two questions: the bytes of a small file (a manifest) at a path
relative to the source, and where an archive named in that manifest comes from (a local
file, or a ``Download``). ``find_manifest`` tries every layout a manifest may be in
(``assets.manifest_candidates``) and picks this machine's platform. ``select_layers``
checks the manifest like any untrusted input before anything is fetched.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, urlsplit

from venvlayers.core.errors import DeployError
from venvlayers.core.names import plain_name_problem
from venvlayers.core.report import Reporter
from venvlayers.formats.assets import (
    METADATA_DIR,
    archive_name_problem,
    github_asset_name,
    manifest_candidates,
)
from venvlayers.formats.records import LayerMetadata, RecordError, StackManifest
from venvlayers.net.downloads import Download, Downloader

CATEGORIES = ("runtimes", "frameworks", "applications")
_GITHUB = re.compile(r"github:(?P<repo>[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)@(?P<tag>[^\s@]+)")


@dataclass(frozen=True)
class ArchiveSource:
    """One archive: a file already on this machine, or something to download."""

    local: Path | None = None
    download: Download | None = None


class Source(Protocol):
    label: str

    def read(self, relative: str) -> bytes | None: ...

    def archive(self, name: str, meta: LayerMetadata) -> ArchiveSource: ...

    def beside(self, name: str, sha256: str) -> ArchiveSource | None:
        """A file published beside the archives (a layer index), if the source has it."""
        ...


class FolderSource:
    """A publish or merge output (or a release downloaded to a folder) on this machine."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.label = str(root)

    def read(self, relative: str) -> bytes | None:
        path = self.root / relative
        try:
            return path.read_bytes() if path.is_file() else None
        except OSError as exc:
            raise DeployError(f"{path}: cannot read ({exc.strerror})", path=path) from None

    def archive(self, name: str, meta: LayerMetadata) -> ArchiveSource:
        folders = [self.root]
        if self.root.name == METADATA_DIR:
            folders = [self.root.parent]  # --from out/__venvstacks__
        for folder in folders:
            for candidate in (name, github_asset_name(name)):
                if (folder / candidate).is_file():
                    return ArchiveSource(local=folder / candidate)
        where = folders[0]
        raise DeployError(
            f"{where / name}: archive of {meta.layer_name} not found; "
            "pass the folder that holds the archives",
            path=where / name,
        )

    def beside(self, name: str, sha256: str) -> ArchiveSource | None:
        folder = self.root.parent if self.root.name == METADATA_DIR else self.root
        for candidate in (name, github_asset_name(name)):
            if (folder / candidate).is_file():
                return ArchiveSource(local=folder / candidate)
        return None


class HttpSource:
    """A publish or merge output served over HTTP(S): ``<base>/<relative path>``."""

    def __init__(self, base: str, downloader: Downloader) -> None:
        self.base = base if base.endswith("/") else base + "/"
        self.downloader = downloader
        self.label = self.base

    def _url(self, relative: str) -> str:
        return self.base + quote(relative)

    def read(self, relative: str) -> bytes | None:
        item = Download(self._url(relative), "", None, relative)
        data = self.downloader.fetch_bytes(item, missing_ok=True)
        if data is not None:
            # a flat manifest: a mirror of release assets, named as GitHub names them
            self.flat = "/" not in relative
        return data

    flat = False

    def archive(self, name: str, meta: LayerMetadata) -> ArchiveSource:
        assert meta.archive_hashes is not None
        served = github_asset_name(name) if self.flat else name
        return ArchiveSource(
            download=Download(
                self._url(served), meta.archive_hashes.sha256, meta.archive_size, served
            )
        )

    def beside(self, name: str, sha256: str) -> ArchiveSource | None:
        served = github_asset_name(name) if self.flat else name
        return ArchiveSource(download=Download(self._url(served), sha256, None, served))


class GitHubSource:
    """The published release ``github:OWNER/REPO@TAG`` (GITHUB_TOKEN, GITHUB_API_URL)."""

    def __init__(
        self,
        repo: str,
        tag: str,
        downloader: Downloader,
        reporter: Reporter,
        env: Mapping[str, str],
    ) -> None:
        # only code that talks to GitHub loads the GitHub client
        from venvlayers.net.github import api_url_from, release_downloads
        from venvlayers.net.retry import Budget

        self.label = f"github:{repo}@{tag}"
        self.downloader = downloader
        token = env.get("GITHUB_TOKEN", "")
        downloader.secrets.append(token)
        self.assets = release_downloads(
            repo=repo,
            tag=tag,
            token=token,
            api_url=api_url_from(env),
            reporter=reporter,
            budget=Budget(downloader.budget.remaining()),
            error=DeployError,
        )

    def read(self, relative: str) -> bytes | None:
        asset = self.assets.get(relative)
        if asset is None:
            return None
        item = Download(asset.url, "", asset.size, asset.name, asset.api_headers)
        return self.downloader.fetch_bytes(item)

    def archive(self, name: str, meta: LayerMetadata) -> ArchiveSource:
        assert meta.archive_hashes is not None
        asset = self.assets.get(github_asset_name(name))
        if asset is None:
            raise DeployError(f"{self.label}: the release has no asset {github_asset_name(name)}")
        return ArchiveSource(
            download=Download(
                asset.url,
                meta.archive_hashes.sha256,
                meta.archive_size,
                asset.name,
                asset.api_headers,
            )
        )

    def beside(self, name: str, sha256: str) -> ArchiveSource | None:
        asset = self.assets.get(github_asset_name(name))
        if asset is None:
            return None
        return ArchiveSource(
            download=Download(asset.url, sha256, asset.size, asset.name, asset.api_headers)
        )


def open_source(
    text: str, downloader: Downloader, reporter: Reporter, env: Mapping[str, str] | None = None
) -> Source:
    """``github:OWNER/REPO@TAG``, an ``http(s)://`` base URL, or a folder."""
    env = os.environ if env is None else env
    if text.startswith("github:"):
        match = _GITHUB.fullmatch(text)
        if match is None:
            raise DeployError(f"--from {text!r}: write github:OWNER/REPO@TAG")
        return GitHubSource(match["repo"], match["tag"], downloader, reporter, env)
    if text.startswith(("http://", "https://")):
        if urlsplit(text).username is not None:
            raise DeployError(
                "--from: credentials in the URL would be shown in logs and records; serve the "
                "folder without them (or use github:OWNER/REPO@TAG with GITHUB_TOKEN)"
            )
        return HttpSource(text, downloader)
    folder = Path(text)
    if not folder.is_dir():
        raise DeployError(
            f"--from {text}: not a folder, an http(s):// URL or github:OWNER/REPO@TAG", path=folder
        )
    return FolderSource(folder)


def find_manifest(source: Source, platform: str) -> tuple[StackManifest, str]:
    """This platform's manifest in any layout the source may use, and where it was."""
    candidates = manifest_candidates(platform)
    for relative in candidates:
        data = source.read(relative)
        if data is None:
            continue
        try:
            manifest = StackManifest.from_json(data)
        except RecordError as exc:
            raise DeployError(
                f"{source.label}/{relative}: field '{exc.where}': {exc.msg}; publish again"
            ) from None
        platforms = {m.target_platform for m in _ordered(manifest) if m.target_platform}
        if platforms and platforms != {platform} and not relative.endswith(f"-{platform}.json"):
            continue  # venvstacks' untagged manifest of another platform
        return manifest, f"{source.label.rstrip('/')}/{relative}"
    raise DeployError(
        f"{source.label}: no stack manifest for {platform} here (looked for "
        f"{', '.join(candidates[:3])}); was the stack published for this platform?"
    )


def _ordered(manifest: StackManifest) -> list[LayerMetadata]:
    return [m for kind in CATEGORIES for m in manifest.layers.get(kind, [])]


def select_layers(
    manifest: StackManifest, wanted: Sequence[str], where: str, platform: str
) -> list[LayerMetadata]:
    """The layers to deploy (``wanted`` plus what they need), lowest first, all checked."""
    ordered = _ordered(manifest)
    if not ordered:
        raise DeployError(
            f"{where}: lists no layers for {platform}; nothing to deploy (was the stack published for this platform?)"
        )
    by_target: dict[str, LayerMetadata] = {}
    for item in ordered:
        _check_layer(item, where, platform)
        if item.install_target in by_target:
            raise DeployError(f"{where}: install target {item.install_target!r} appears twice")
        by_target[item.install_target] = item
    by_name = {m.layer_name: m for m in ordered}
    for item in ordered:  # every reference must name a layer of this manifest
        refs = [
            *(item.required_layers or []),
            *([item.runtime_layer] if item.runtime_layer else []),
        ]
        unknown = [r for r in refs if r not in by_target and r not in by_name]
        if unknown:
            raise DeployError(
                f"{where}: {item.layer_name} requires {', '.join(map(repr, unknown))}, "
                "which this manifest does not hold; publish the whole stack again"
            )
    if not wanted:
        return ordered
    needed: set[str] = set()
    for name in wanted:
        matches = [
            m
            for m in ordered
            if name in (m.install_target, m.layer_name)
            or m.layer_name in (f"app-{name}", f"framework-{name}")
        ]
        if not matches:
            known = ", ".join(m.layer_name for m in ordered)
            raise DeployError(f"{where}: no layer named {name!r} (layers: {known})")
        for match in matches:
            needed.add(match.install_target)
            for ref in [*(match.required_layers or []), match.runtime_layer]:
                if ref:
                    needed.add((by_target.get(ref) or by_name[ref]).install_target)
    return [m for m in ordered if m.install_target in needed]


def _check_layer(item: LayerMetadata, where: str, platform: str) -> None:
    target = item.install_target
    problem = plain_name_problem(target)
    if problem is not None:
        raise DeployError(
            f"{where}: install_target {target!r} of {item.layer_name!r} is not a plain folder"
            f" name ({problem}); refusing it"
        )
    if item.target_platform and item.target_platform != platform:
        raise DeployError(
            f"{where}: {item.layer_name} was built for {item.target_platform}; this machine is {platform}"
        )
    if not item.archive_name or not item.archive_hashes:
        raise DeployError(
            f"{where}: {item.layer_name} has no archive fields; deploy needs `venvlayers publish` output"
        )
    problem = archive_name_problem(item.archive_name)
    if problem:
        raise DeployError(
            f"{where}: archive_name {item.archive_name!r} of {item.layer_name} {problem}; refusing it"
        )
    if not re.fullmatch(r"[0-9a-f]{64}", item.archive_hashes.sha256):
        raise DeployError(f"{where}: archive_hashes.sha256 of {item.layer_name} is not a sha256")
