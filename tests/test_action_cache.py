"""The action's cache, run end to end: the real actions/cache code against the results
service double, each run on a fresh runner (tests/rig/action_job.py).

So these tests see what GitHub would: the key the action computes from platform and lock
hashes, what the cache service is asked for, what it restores, and when it writes.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from rig import copy_source
from rig.action_job import ActionJob, ActionRun
from rig.gha_skips import require_runner
from rig.workflow_stage import Stage

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "basic"
KEY = re.compile(r"venvlayers-cache-v1-Linux-X64-uv0\.13\.9-show-[0-9a-f]{32}")
RESTORE = "Restore the uv cache and runtimes"
SAVE = "Save the uv cache and runtimes"

pytestmark = [pytest.mark.slow, require_runner()]


@pytest.fixture
def job(tmp_path: Path) -> Iterator[ActionJob]:
    with Stage(tmp_path / "stage") as stage:
        action = ActionJob(stage, tmp_path / "repo")
        copy_source(EXAMPLE, action.repository)
        yield action


def show(
    job: ActionJob, event: str = "push", ref: str = "refs/heads/main", **inputs: str
) -> ActionRun:
    run = job.run({"command": "show", **inputs}, event=event, ref=ref)
    assert run.success, run.log
    return run


def members(job: ActionJob, key: str) -> str:
    """The paths in the cache entry ``key`` (tar, zstd or gzip: tar finds out)."""
    blob = job.stage.results.cache_blob(key)
    return subprocess.run(
        ["tar", "-tf", str(blob)], capture_output=True, text=True, check=True
    ).stdout


def test_cache_is_keyed_by_platform_and_locks(job: ActionJob) -> None:
    first = show(job)
    key = first.step("Cache key").outputs["key"]
    assert KEY.fullmatch(key), key
    assert first.step(RESTORE).outputs.get("cache-hit", "") != "true"  # unset on a miss
    assert first.step(SAVE).outcome == "success" and job.stage.results.cache_keys() == [key]
    # what was saved is uv's cache of this run: the builder's locked wheels
    assert "pydantic" in members(job, key)

    again = show(job)  # same locks, same key: restored, nothing written
    assert again.step("Cache key").outputs["key"] == key
    assert again.step(RESTORE).outputs["cache-hit"] == "true"
    assert again.step(SAVE).outcome == "skipped"

    spec = job.repository / "venvstacks.toml"
    spec.write_text(spec.read_text() + "\n# a comment changes no lock\n")
    assert show(job).step("Cache key").outputs["key"] == key

    lock = job.repository / "requirements" / "app-hello" / "pylock.app-hello.toml"
    lock.write_text(lock.read_text().replace('version = "3.20"', 'version = "3.21"'))
    changed = show(job)
    new_key = changed.step("Cache key").outputs["key"]
    assert new_key != key and new_key.rsplit("-", 1)[0] == key.rsplit("-", 1)[0]
    # a new lock starts from the newest cache of this platform
    assert changed.step(RESTORE).outputs["cache-matched-key"] == key
    assert changed.step(RESTORE).outputs["cache-hit"] == "false"  # a restore key's entry
    assert job.stage.results.cache_keys() == [key, new_key]


@pytest.mark.parametrize(
    ("event", "ref"),
    [
        ("push", "refs/tags/v1.0.0"),
        ("release", "refs/tags/v1.0.0"),
        ("pull_request_target", "refs/heads/main"),
    ],
)
def test_untrusted_and_release_runs_never_write_the_cache(
    job: ActionJob, event: str, ref: str
) -> None:
    result = show(job, event=event, ref=ref)
    assert result.step("Cache key").outputs["save"] == "false"
    assert result.step(RESTORE).outcome == "success"  # reading is fine
    assert job.stage.results.count("CacheService", "GetCacheEntryDownloadURL") == 1
    assert result.step("Trim the uv cache").outcome == "skipped"
    assert result.step(SAVE).outcome == "skipped"
    assert job.stage.results.cache_keys() == []
    assert job.stage.results.count("CacheService", "CreateCacheEntry") == 0


def test_cache_false_turns_every_cache_step_off(job: ActionJob) -> None:
    result = show(job, cache="false")
    names = ("Cache key", RESTORE, "Trim the uv cache", SAVE)
    assert [result.step(n).outcome for n in names] == ["skipped"] * 4
    assert [c for c in job.stage.results.calls if c.service == "CacheService"] == []
