"""build-stacks.yml run whole, as GitHub runs it: the real actions' code (checkout, setup-uv,
cache, upload/download-artifact) under node 24 against local doubles of git, the results
service (artifacts, caches), the REST API, the package index and the runtime downloads.

Scenario (a): one runner. Lock check, publish, merge and, for a tag, the release, which
``venvlayers deploy --from github:`` then installs and runs.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from rig.caller_repo import add_greeting, lock_stack, write_caller_workflow, write_stack
from rig.gha.model import RunRecord
from rig.gha.workflow import Call
from rig.gha_skips import require_runner
from rig.runtime import RuntimeMirror
from rig.workflow_stage import TOKEN, VENVLAYERS, Stage, describe

pytestmark = [pytest.mark.slow, require_runner()]


@pytest.fixture
def stage(tmp_path: Path, runtime_mirror: RuntimeMirror) -> Iterator[Stage]:
    with Stage(tmp_path / "stage", runtime_mirror.archives[runtime_mirror.version]) as stage:
        yield stage


def caller(stage: Stage, folder: Path, runners: str = '["ubuntu-24.04"]', extra: str = "") -> Path:
    add_greeting(stage.packages)
    spec = write_stack(folder, stage.index.url)
    lock_stack(spec)
    return write_caller_workflow(folder, stage.venvlayers_sha, runners, extra)


def report(run: RunRecord) -> str:
    return run.log + "\n".join(f"{j.name}: {j.result} {j.errors()}" for j in run.jobs)


def test_one_runner_publishes_merges_and_releases(stage: Stage, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    workflow = caller(stage, repo)
    sha = stage.publish_caller(repo, ["refs/heads/main", "refs/tags/v1.0.0"])
    run = stage.run(workflow, stage.event(sha, ref="refs/tags/v1.0.0"))
    results = {job.id: job.result for job in run.jobs}
    assert results == {
        "stacks/lock-check": "success",
        "stacks/publish": "success",
        "stacks/merge": "success",
        "stacks/release": "success",
        "stacks/attest": "skipped",
        "stacks/attest-sboms": "skipped",
    }, report(run)
    # the per-runner table (publish_status.py found the one status artifact in _status/)
    assert '| `"ubuntu-24.04"` | `linux_x86_64` | success |' in run.job("merge").summary
    # the real actions ran, at the commits shared/gha-actions holds
    ran = run.actions_ran()
    assert set(ran) >= {
        "actions/checkout", "astral-sh/setup-uv", "actions/cache/restore",
        "actions/upload-artifact", "actions/download-artifact",
    }, ran  # fmt: skip
    print(describe(run, stage))
    for method in ("CreateArtifact", "FinalizeArtifact", "ListArtifacts", "GetSignedArtifactURL"):
        assert stage.results.count("ArtifactService", method) > 0, method
    for method in ("GetCacheEntryDownloadURL",):  # a tag run only reads the cache
        assert stage.results.count("CacheService", method) > 0, method
    release = stage.github.release_by_tag("v1.0.0")
    assert release is not None and not release.draft
    assert run.outputs["release-url"].endswith("/releases/tag/v1.0.0")
    # what a target machine does with the release
    target = tmp_path / "target"
    env = {"GITHUB_API_URL": stage.github.api_url, "GITHUB_TOKEN": TOKEN}
    done = subprocess.run(
        ["venvlayers", "deploy", "--from", "github:octo-org/stacks@v1.0.0", "--target", str(target),
         "--run", "hello"],
        capture_output=True, text=True, env={**__import__("os").environ, **env}, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "hello from greeting" in done.stdout


def test_two_runners_of_one_platform_fail_the_merge_by_name(stage: Stage, tmp_path: Path) -> None:
    """(b) Two matrix entries land on this host: the same platform twice must be refused."""
    repo = tmp_path / "repo"
    workflow = caller(stage, repo, runners='["ubuntu-24.04", "ubuntu-latest"]')
    sha = stage.publish_caller(repo, ["refs/heads/main"])
    run = stage.run(workflow, stage.event(sha))
    assert [j.result for j in run.all("publish")] == ["success", "success"], report(run)
    merge = run.job("merge")
    assert merge.result == "failure", report(run)
    errors = " ".join(merge.errors())
    assert "published twice" in errors and "linux_x86_64" in errors, report(run)
    assert run.job("release").result == "skipped"


def test_a_failed_publish_job_is_named_with_its_platform(stage: Stage, tmp_path: Path) -> None:
    """(c) One publish job fails: merge says which runner and which platform."""
    repo = tmp_path / "repo"
    workflow = caller(stage, repo)
    # the index now serves other bytes under the locked file name: the locked hash refuses
    # them when publish installs the layer (the lock check reads no package)
    add_greeting(stage.packages, words="tampered")
    sha = stage.publish_caller(repo, ["refs/heads/main"])
    run = stage.run(workflow, stage.event(sha))
    assert run.job("lock-check").result == "success", report(run)
    assert run.job("publish").result == "failure", report(run)
    merge = run.job("merge")
    assert merge.result == "failure", report(run)
    assert (
        'publish failed on runner "ubuntu-24.04" (platform linux_x86_64): failure' in merge.errors()
    ), report(run)
    assert '| `"ubuntu-24.04"` | `linux_x86_64` | failure |' in merge.summary


def test_a_second_run_restores_the_caches_and_downloads_nothing_again(
    stage: Stage, tmp_path: Path
) -> None:
    """(d) The same commit twice on a branch: the second publish job finds everything cached."""
    repo = tmp_path / "repo"
    workflow = caller(stage, repo)
    sha = stage.publish_caller(repo, ["refs/heads/main"])
    first = stage.run(workflow, stage.event(sha))
    assert first.result == "success", report(first)
    publish = first.job("publish")
    assert publish.step("Save the uv cache and runtimes").outcome == "success", report(first)
    second = stage.run(workflow, stage.event(sha))
    assert second.result == "success", report(second)
    publish = second.job("publish")
    restore = publish.step("Restore the uv cache and runtimes")
    assert restore.outputs["cache-hit"] == "true", report(second)
    wheels = [
        r.path for r in stage.index.log
        if r.method == "GET" and r.path.endswith(".whl") and publish.during(r.at)
    ]  # fmt: skip
    runtimes = [
        s for s in stage.runtimes.log if s.path.endswith(".tar.gz") and publish.during(s.at)
    ]
    assert (wheels, runtimes) == ([], []), report(second)


def test_a_private_copy_of_venvlayers_is_checked_out_with_its_token(
    tmp_path: Path, runtime_mirror: RuntimeMirror
) -> None:
    """The caller's GITHUB_TOKEN cannot read a private venvlayers copy: venvlayers-token can."""
    pat = "github_pat_readsTheVenvlayersCopyOnly"
    archive = runtime_mirror.archives[runtime_mirror.version]
    with Stage(tmp_path / "stage", archive, private_venvlayers=pat) as stage:
        repo = tmp_path / "repo"
        secrets = "    secrets:\n      venvlayers-token: ${{ secrets.VENVLAYERS_PAT }}\n"
        workflow = caller(stage, repo, extra=secrets)
        sha = stage.publish_caller(repo, ["refs/heads/main"])
        run = stage.run(workflow, stage.event(sha), call=Call(secrets={"VENVLAYERS_PAT": pat}))
        assert run.result == "success", report(run)
        assert pat not in run.log  # masked like every secret
        refused = [r for r in stage.git.requests if r.repository == VENVLAYERS and r.status == 404]
        assert refused == [], refused
