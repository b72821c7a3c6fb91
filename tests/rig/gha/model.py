"""What a run produced: per job its result, steps, outputs, annotations and log."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .envfiles import Annotation


@dataclass
class StepRecord:
    id: str
    name: str
    outcome: str  # success, failure, cancelled or skipped
    conclusion: str  # the outcome after continue-on-error
    log: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    phase: str = "main"  # pre, main or post
    uses: str = ""
    commit: str = ""  # for remote actions: the commit whose code ran
    children: list[StepRecord] = field(default_factory=list)  # a composite action's steps

    def walk(self) -> list[StepRecord]:
        return [self, *(s for child in self.children for s in child.walk())]


@dataclass
class JobRecord:
    id: str  # the job's key (``stacks/publish`` inside a called workflow)
    name: str  # as shown by GitHub, matrix values filled in
    result: str  # success, failure, cancelled or skipped
    matrix: dict[str, Any] = field(default_factory=dict)
    runner: Any = None  # the runs-on value
    steps: list[StepRecord] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    annotations: list[Annotation] = field(default_factory=list)
    summary: str = ""
    workspace: str = ""
    reason: str = ""  # why a job failed before its steps (runs-on, permissions...)
    started: float = 0.0  # time.monotonic() when its first step started
    finished: float = 0.0

    def during(self, moment: float) -> bool:
        return self.started <= moment <= self.finished

    @property
    def log(self) -> str:
        lines = [f"## job {self.name} ({self.result}) {self.reason}".rstrip() + "\n"]
        for step in self.steps:
            for item in step.walk():
                lines.append(f"--- {item.phase} {item.name} ({item.outcome})\n{item.log}")
        return "".join(lines)

    def step(self, name: str) -> StepRecord:
        """The first step (composite children included) whose name or id is ``name``."""
        for step in self.steps:
            for item in step.walk():
                if name in (item.name, item.id):
                    return item
        raise KeyError(f"job {self.name} has no step {name!r}: {[s.name for s in self.steps]}")

    def errors(self) -> list[str]:
        return [a.message for a in self.annotations if a.level == "error"]


@dataclass
class RunRecord:
    jobs: list[JobRecord] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def result(self) -> str:
        results = {job.result for job in self.jobs}
        if "failure" in results:
            return "failure"
        return "cancelled" if "cancelled" in results else "success"

    @property
    def log(self) -> str:
        return "".join(job.log for job in self.jobs)

    def job(self, key: str) -> JobRecord:
        """The only job whose id (or id's last part) is ``key``."""
        matches = self.all(key)
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} jobs match {key!r}: {[j.id for j in self.jobs]}")
        return matches[0]

    def all(self, key: str) -> list[JobRecord]:
        return [j for j in self.jobs if key in (j.id, j.id.rsplit("/", 1)[-1])]

    def actions_ran(self) -> dict[str, set[str]]:
        """Remote action -> the commits whose code ran (pre, main and post steps)."""
        ran: dict[str, set[str]] = {}
        for job in self.jobs:
            for step in job.steps:
                for item in step.walk():
                    if item.commit and item.outcome != "skipped":
                        ran.setdefault(item.uses.split("@")[0], set()).add(item.commit)
        return ran
