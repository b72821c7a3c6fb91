"""The composite action in a user's own job, run by the workflow runner with the real
setup-uv, cache and checkout code (scenario f of issue 24): the steps after it see the job
as the user left it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from rig.caller_repo import add_greeting, add_newer_hatchling, lock_stack, write_stack
from rig.gha_skips import require_runner
from rig.runtime import RuntimeMirror
from rig.workflow_stage import Stage

pytestmark = [pytest.mark.slow, require_runner()]

USER_JOB = """\
name: User job
on: push
permissions: {}
jobs:
  build:
    runs-on: ubuntu-latest
    permissions:
      contents: read
    steps:
      - uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1
        with:
          persist-credentials: false
      - name: The user's own uv
        run: |
          mkdir -p "$RUNNER_TEMP/users-uv"
          printf '#!/bin/sh\\necho "uv 0.0.1 (the user s own)"\\n' > "$RUNNER_TEMP/users-uv/uv"
          chmod +x "$RUNNER_TEMP/users-uv/uv"
          echo "$RUNNER_TEMP/users-uv" >> "$GITHUB_PATH"
      - uses: venvlayers/venvlayers@v1
        with:
          command: lock-check
      - name: uv after the action
        id: after
        run: |
          echo "version=$(uv --version)" >> "$GITHUB_OUTPUT"
          echo "python-install-dir=${UV_PYTHON_INSTALL_DIR-(unset)}" >> "$GITHUB_OUTPUT"
          echo "path=$PATH" >> "$GITHUB_OUTPUT"
"""


@pytest.fixture
def stage(tmp_path: Path, runtime_mirror: RuntimeMirror) -> Iterator[Stage]:
    with Stage(tmp_path / "stage", runtime_mirror.archives[runtime_mirror.version]) as stage:
        yield stage


def test_the_action_leaves_the_users_uv_and_variables_alone(stage: Stage, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    add_greeting(stage.packages)
    add_newer_hatchling(stage.packages)
    lock_stack(write_stack(repo, stage.index.url))
    workflow = repo / ".github" / "workflows" / "user.yml"
    workflow.parent.mkdir(parents=True)
    workflow.write_text(USER_JOB, encoding="utf-8")
    sha = stage.publish_caller(repo, ["refs/heads/main"])
    run = stage.run(workflow, stage.event(sha))
    job = run.job("build")
    assert job.result == "success", job.log
    after = job.step("after").outputs
    assert after["version"] == "uv 0.0.1 (the user s own)", job.log
    # no trace of the action's uv, nor of setup-uv's Python folder, in what follows
    assert str(stage.services.tool_cache) not in after["path"], after["path"]
    assert after["python-install-dir"] in ("(unset)", ""), after
    assert "uv-python-dir" not in after["path"]
    # the builder was built with the locked backend: the newer, unlocked one never fetched
    assert not [p for p in stage.index.requests if "hatchling-99.0" in p], stage.index.requests
