"""Hostile GitHub API answers (issue 25, cases 8-9): URLs in an answer are followed only
on the API's own host, the token goes nowhere else, and only http(s) URLs are fetched.

The API is the local GitHub double; its answers are bent the way a hostile server (or a
GitHub Enterprise Server behind another host name) would send them.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rig.github_double import GitHubDouble, _Handler

from venvlayers.cli.commands import main
from venvlayers.core.errors import DeployError
from venvlayers.core.report import Reporter
from venvlayers.net.downloads import Download, Downloader

TOKEN = "ghs_HostileAnswers0123456789abcdefXYZ"
REPO = "octo-org/stacks"
MANIFEST = "venvstacks-linux_x86_64.json"


@pytest.fixture
def github(monkeypatch: pytest.MonkeyPatch) -> Iterator[GitHubDouble]:
    with GitHubDouble(token=TOKEN, repo=REPO) as double:
        monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
        monkeypatch.setenv("GITHUB_API_URL", double.api_url)
        monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
        yield double


def deploy_from_release(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capfd.readouterr()
    code = main(
        [
            "deploy",
            "--from",
            f"github:{REPO}@v1",
            "--target",
            str(tmp_path / "target"),
            "--cache",
            str(tmp_path / "cache"),
        ]
    )
    out = capfd.readouterr()
    return code, out.out + out.err


def elsewhere(url: str) -> str:
    """The same server under another host name (``localhost`` instead of 127.0.0.1)."""
    return url.replace("//127.0.0.1:", "//localhost:")


def test_a_next_page_on_another_host_is_a_clean_error(
    github: GitHubDouble,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    release = github.seed_release("v1")
    for number in range(101):  # two pages of 100
        github.seed_asset(release, f"asset-{number:03}.txt", b"x")
    original = _Handler._page

    def next_page_elsewhere(
        self: _Handler, rest: str, items: list[dict[str, Any]], query: dict[str, str]
    ) -> tuple[int, Any, dict[str, str]]:
        status, chunk, headers = original(self, rest, items, query)
        return status, chunk, {name: elsewhere(value) for name, value in headers.items()}

    monkeypatch.setattr(_Handler, "_page", next_page_elsewhere)
    code, text = deploy_from_release(tmp_path, capfd)
    assert code == 2, text
    assert "Traceback" not in text
    assert "another host" in text.splitlines()[-1]
    assert TOKEN not in text
    assert not [r for r in github.requests if r.headers.get("host", "").startswith("localhost")]


def test_an_asset_url_on_another_host_never_gets_the_token(
    github: GitHubDouble,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    release = github.seed_release("v1")
    github.seed_asset(release, MANIFEST, b'{"layers": {}}')
    original = github._asset_json

    def url_elsewhere(asset: Any) -> dict[str, Any]:
        answer = original(asset)
        return {**answer, "url": elsewhere(answer["url"])}

    monkeypatch.setattr(github, "_asset_json", url_elsewhere)
    code, text = deploy_from_release(tmp_path, capfd)
    assert code == 2, text
    assert "not on the API host" in text, text
    tokened = [
        r
        for r in github.requests
        if r.headers.get("host", "").startswith("localhost") and "authorization" in r.headers
    ]
    assert tokened == []


def test_a_file_url_asset_is_never_read(
    github: GitHubDouble,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    local = tmp_path / "local-manifest.json"
    local.write_text('{"layers": {}}')  # a readable manifest: an old reader would use it
    release = github.seed_release("v1")
    github.seed_asset(release, MANIFEST, b"not used")
    original = github._asset_json

    def file_url(asset: Any) -> dict[str, Any]:
        return {**original(asset), "url": local.as_uri()}

    monkeypatch.setattr(github, "_asset_json", file_url)
    code, text = deploy_from_release(tmp_path, capfd)
    assert code == 2, text
    assert "only https:// and http://" in text, text


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "data:,hello", "/etc/passwd"]
)
def test_downloads_fetch_http_urls_only(tmp_path: Path, url: str) -> None:
    downloader = Downloader(tmp_path / "cache", reporter=Reporter(io.StringIO()))
    item = Download(url, "0" * 64, None, "manifest")
    with pytest.raises(DeployError, match="only https:// and http://"):
        downloader.fetch_bytes(item)
    with pytest.raises(DeployError, match="only https:// and http://"):
        downloader.fetch(item)
