"""The action's cache and artifact inputs, run end to end by the local harness.

The harness's actions/cache stand-ins keep entries in the runner's temp folder between runs
(exact key, then restore-keys prefixes), so these tests see what GitHub would: the key the
action computes from platform and lock hashes, what it restores, and when it writes.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from rig import copy_source
from rig.action_runner import ActionResult, ActionRunner, StepLog
from rig.runtime import RuntimeMirror

from venvlayers.core.platforms import host_platform

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "basic"
KEY = re.compile(
    r"venvlayers-cache-v1-(Linux|macOS|Windows)-(X64|ARM64)-uv0\.13\.9-show-[0-9a-f]{32}"
)

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="the action's steps need bash")


@pytest.fixture
def runner(tmp_path: Path) -> ActionRunner:
    workspace = tmp_path / "workspace"
    copy_source(EXAMPLE, workspace)
    env = {
        # a cache of its own, so what the action saves is what this run downloaded
        "UV_CACHE_DIR": str(tmp_path / "uv-cache"),
        "UV_PYTHON_CACHE_DIR": str(tmp_path / "uv-python-cache"),
        "GITHUB_EVENT_NAME": "push",
        "GITHUB_REF_TYPE": "branch",
    }
    return ActionRunner(ROOT, workspace, tmp_path / "runner-temp", env=env)


def show(runner: ActionRunner, **inputs: str) -> ActionResult:
    result = runner.run({"command": "show", "python-version": sys.executable, **inputs})
    assert result.success, result.log
    return result


def step(result: ActionResult, name: str) -> StepLog:
    return next(s for s in result.steps if s.name == name)


def saved(runner: ActionRunner) -> list[str]:
    store = runner.temp / "actions-cache"
    return sorted(p.name for p in store.iterdir()) if store.is_dir() else []


RESTORE = "Restore the uv cache and runtimes"
SAVE = "Save the uv cache and runtimes"


@pytest.mark.slow
@pytest.mark.network
def test_cache_is_keyed_by_platform_and_locks(runner: ActionRunner) -> None:
    first = show(runner)
    key = step(first, "Cache key").outputs["key"]
    assert KEY.fullmatch(key), key
    assert step(first, RESTORE).outputs["cache-hit"] == "false"
    assert step(first, SAVE).outcome == "success" and saved(runner) == [key]
    # what was saved is uv's cache of this run: the builder's locked wheels
    entry = runner.temp / "actions-cache" / key
    assert any(entry.glob("0/**/pydantic*"))

    again = show(runner)  # same locks, same key: restored, nothing written
    assert step(again, "Cache key").outputs["key"] == key
    assert step(again, RESTORE).outputs["cache-hit"] == "true"
    assert step(again, SAVE).outcome == "skipped"

    spec = runner.workspace / "venvstacks.toml"
    spec.write_text(spec.read_text() + "\n# a comment changes no lock\n")
    assert step(show(runner), "Cache key").outputs["key"] == key

    lock = runner.workspace / "requirements" / "app-hello" / "pylock.app-hello.toml"
    lock.write_text(lock.read_text().replace('version = "3.20"', 'version = "3.21"'))
    changed = show(runner)
    new_key = step(changed, "Cache key").outputs["key"]
    assert new_key != key and new_key.rsplit("-", 1)[0] == key.rsplit("-", 1)[0]
    # a new lock starts from the newest cache of this platform
    assert step(changed, RESTORE).outputs["cache-matched-key"] == key
    assert step(changed, RESTORE).outputs["cache-hit"] == "false"
    assert saved(runner) == sorted([key, new_key])


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.parametrize(
    ("event", "ref_type"),
    [("push", "tag"), ("release", "tag"), ("pull_request_target", "branch")],
)
def test_untrusted_and_release_runs_never_write_the_cache(
    runner: ActionRunner, event: str, ref_type: str
) -> None:
    runner.extra_env.update(GITHUB_EVENT_NAME=event, GITHUB_REF_TYPE=ref_type)
    result = show(runner)
    assert step(result, "Cache key").outputs["save"] == "false"
    assert step(result, RESTORE).outcome == "success"  # reading is fine
    assert step(result, "Trim the uv cache").outcome == "skipped"
    assert step(result, SAVE).outcome == "skipped"
    assert saved(runner) == []


@pytest.mark.slow
def test_cache_false_turns_every_cache_step_off(tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    copy_source(EXAMPLE, workspace)
    cache = Path.home() / ".cache" / "venvlayers-tests" / "action-uv-cache"
    runner = ActionRunner(ROOT, workspace, tmp_path / "temp", env={"UV_CACHE_DIR": str(cache)})
    result = show(runner, cache="false")
    names = ("Cache key", RESTORE, "Trim the uv cache", SAVE)
    assert [step(result, n).outcome for n in names] == ["skipped"] * 4
    assert saved(runner) == []


@pytest.mark.slow
@pytest.mark.network
def test_publish_artifact_has_the_prefix_and_the_sboms(
    tmp_path: Path, runtime_mirror: RuntimeMirror
) -> None:
    workspace = tmp_path / "workspace"
    copy_source(EXAMPLE, workspace)
    cache = Path.home() / ".cache" / "venvlayers-tests" / "action-uv-cache"
    runner = ActionRunner(ROOT, workspace, tmp_path / "temp", env={"UV_CACHE_DIR": str(cache)})
    result = runner.run(
        {
            "command": "publish",
            "output-dir": "_publish",
            "upload-artifact": "true",
            "artifact-prefix": "stack-a",
            "retention-days": "5",
            "cache": "false",
            "python-version": sys.executable,
        }
    )
    assert result.success, result.log
    platform = str(host_platform())
    (artifact,) = result.artifacts.iterdir()
    assert artifact.name == f"stack-a-{platform}"
    archives = [Path(a).name for a in json.loads(result.outputs["archives"])]
    sboms = [a.replace(".tar.xz", ".cdx.json") for a in archives]
    assert sorted(p.name for p in artifact.iterdir()) == sorted(
        ["__venvstacks__", *archives, *sboms]
    )
    upload = step(result, "Upload this platform's archives, SBOMs and metadata")
    assert "'retention-days': '5', 'compression-level': '0'" in upload.log
