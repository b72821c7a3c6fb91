"""From a real stack to a running app through a GitHub release: merge → release → deploy."""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from rig.deploy_stack import Versions
from rig.github_double import GitHubDouble
from rig.index import SimpleIndex

from venvlayers.cli.commands import main
from venvlayers.core.report import Reporter
from venvlayers.release.create import release_directory

pytestmark = pytest.mark.slow

TOKEN = "ghs_DeploySecret0123456789abcdefXYZ"
REPO = "octo-org/stacks"


@pytest.fixture
def versions(deploy_versions: Versions) -> Versions:
    return deploy_versions


@pytest.fixture(scope="module")
def github(
    deploy_versions: Versions, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GitHubDouble]:
    """A private repository with immutable releases holding releases v1 and v2 of the stack."""
    with (
        GitHubDouble(token=TOKEN, repo=REPO, immutable=True, private=True) as double,
        pytest.MonkeyPatch.context() as mp,
    ):
        mp.setenv("GITHUB_TOKEN", TOKEN)
        mp.setenv("GITHUB_REPOSITORY", REPO)
        mp.setenv("GITHUB_API_URL", double.api_url)
        for tag in ("v1", "v2"):
            merged = tmp_path_factory.mktemp(f"merged-{tag}") / "out"
            source = getattr(deploy_versions, tag)
            assert main(["-q", "merge", str(source), "--output-dir", str(merged)]) == 0
            assert main(["-q", "release", "--tag", tag, str(merged)]) == 0
        yield double


def test_deploy_from_a_private_release_runs_the_app_and_never_shows_the_token(
    github: GitHubDouble,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    for tag in ("v1", "v2"):
        release = github.release_by_tag(tag)
        assert release is not None and not release.draft
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_API_URL", github.api_url)
    target, cache = tmp_path / "target", tmp_path / "cache"
    capfd.readouterr()
    before = len(github.requests)
    args = ["deploy", "--target", str(target), "--cache", str(cache)]
    code = main([*args, "--from", f"github:{REPO}@v1", "--run", "one", "--", "hello"])
    assert code == 0
    first = capfd.readouterr()
    assert "one v1" in first.out and "hello" in first.out

    storage_before = len(github.requests_matching("GET", r"^/storage/"))
    assert main([*args, "--from", f"github:{REPO}@v2", "--run", "one"]) == 0
    second = capfd.readouterr()
    assert "one v2" in second.out
    fetched = github.requests_matching("GET", r"^/storage/")[storage_before:]
    assert [r.path.rsplit("/", 1)[1] for r in fetched if "tar.xz" in r.path] == [
        "app-one-linux_x86_64-2.tar.xz"
    ]
    # the token went to the API host only, never to the storage host a download redirects to
    ours = [r for r in github.requests[before:] if r.path.startswith("/storage/")]
    assert ours and all("authorization" not in r.headers for r in ours)
    for text in (first.out, first.err, second.out, second.err):
        assert TOKEN not in text

    assert main(["deploy", "--rollback", "--target", str(target), "--run", "one"]) == 0
    assert "one v1" in capfd.readouterr().out


def test_a_private_release_needs_the_token(
    github: GitHubDouble,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.setenv("GITHUB_API_URL", github.api_url)
    target = tmp_path / "target"
    capsys.readouterr()
    assert main(["deploy", "--from", f"github:{REPO}@v1", "--target", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "GITHUB_TOKEN" in err
    assert not target.exists()

    monkeypatch.setenv("GITHUB_TOKEN", "ghs_WrongToken999")
    assert main(["deploy", "--from", f"github:{REPO}@v1", "--target", str(target)]) == 2
    err = capsys.readouterr().err
    assert "401" in err and "ghs_WrongToken999" not in err


def test_default_release_notes_are_the_lock_changes_since_the_previous_release(
    versions: Versions, tmp_path: Path, local_index: SimpleIndex
) -> None:
    """A repository whose tag v1 holds the v1 sources; releasing v2 with --spec."""
    repo = tmp_path / "repo"
    shutil.copytree(versions.v1_source, repo)

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)

    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "v1")
    git("tag", "v1")
    stack = versions.spec.parent
    for sub in ("requirements", "launch"):
        shutil.rmtree(repo / sub)
        shutil.copytree(stack / sub, repo / sub)
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "v2")
    merged = tmp_path / "merged"
    assert main(["-q", "merge", str(versions.v2), "--output-dir", str(merged)]) == 0
    with GitHubDouble(token=TOKEN, repo=REPO) as double:
        v1 = double.seed_release("v1")
        merged_v1 = tmp_path / "merged-v1"
        assert main(["-q", "merge", str(versions.v1), "--output-dir", str(merged_v1)]) == 0
        data = (merged_v1 / "venvstacks-index.json").read_bytes()
        double.seed_asset(v1, "venvstacks-index.json", data)
        env = {"GITHUB_TOKEN": TOKEN, "GITHUB_REPOSITORY": REPO, "GITHUB_API_URL": double.api_url}
        release_directory(
            merged,
            tag="v2",
            reporter=Reporter(io.StringIO()),
            environ=env,
            spec=repo / "venvstacks.toml",
        )
        made = double.release_by_tag("v2")
    assert made is not None and not made.draft
    assert made.body.startswith("## Changes since v1")
    assert "| `app-one` | 1 | " in made.body and "(changed)" in made.body
    assert "1 archive(s) new or changed" in made.body  # only app-one's
    assert "## Lock changes in `venvstacks.toml` against `v1`" in made.body
    assert f"venvlayers deploy --from github:{REPO}@v2" in made.body
