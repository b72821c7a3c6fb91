"""venvlayers' action (this checkout's action.yml) as the step of a user's one-job workflow,
run by the workflow runner (tests/rig/gha) with the real checkout, setup-uv, cache and
upload-artifact code against the doubles of a ``workflow_stage.Stage``.

The test fills a folder (the user's repository); each ``run`` commits it to the stage's
git server, writes the workflow, and runs checkout + ``uses: venvlayers/venvlayers@v1`` with
the given inputs on a fresh runner. The builder runs on this test's interpreter unless the
inputs name another ``python-version``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from .gha.model import JobRecord, StepRecord
from .workflow_stage import Stage

WORKFLOW = """\
name: Action
on: push
permissions: {{}}
jobs:
  action:
    runs-on: ubuntu-latest
    permissions:
      contents: write
    steps:
      - uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1
        with:
          fetch-depth: 0
          persist-credentials: false
      - id: action
        uses: venvlayers/venvlayers@v1
        with: {inputs}
"""


@dataclass
class ActionRun:
    """One run of the action: the job, and the action step's view of it."""

    job: JobRecord

    @property
    def action(self) -> StepRecord:
        return self.job.step("action")

    @property
    def outputs(self) -> dict[str, str]:
        return self.action.outputs

    @property
    def success(self) -> bool:
        return self.job.result == "success"

    @property
    def summary(self) -> str:
        return self.job.summary

    @property
    def log(self) -> str:
        return self.job.log

    def step(self, name: str) -> StepRecord:
        """One of the action's own steps (by name or id)."""
        return self.job.step(name)

    @property
    def workspace(self) -> Path:
        return Path(self.job.workspace)


class ActionJob:
    def __init__(self, stage: Stage, repository: Path) -> None:
        self.stage = stage
        self.repository = repository
        self.parent = ""

    def commit(self, refs: tuple[str, ...] = ("refs/heads/main",)) -> str:
        """Commit the repository folder as it is now (on top of the last commit)."""
        self.parent = self.stage.publish_caller(self.repository, list(refs), self.parent)
        return self.parent

    def run(
        self,
        inputs: dict[str, str],
        *,
        event: str = "push",
        ref: str = "refs/heads/main",
        python: str | None = sys.executable,
    ) -> ActionRun:
        given = {**({"python-version": python} if python else {}), **inputs}
        workflow = self.repository / ".github" / "workflows" / "action.yml"
        workflow.parent.mkdir(parents=True, exist_ok=True)
        workflow.write_text(WORKFLOW.format(inputs=json.dumps(given)), encoding="utf-8")
        sha = self.commit((ref,) if ref.startswith("refs/tags/") else ("refs/heads/main",))
        record = self.stage.run(workflow, self.stage.event(sha, name=event, ref=ref))
        return ActionRun(record.job("action"))
