"""The state of one job while its steps run: environment, files, masks, post steps.

A ``Frame`` is where steps run: the job itself, or a composite action inside it (its own
``inputs``, ``steps`` context, status and ``github.action_path``).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .actions import ActionSources, ResolvedAction
from .envfiles import Annotation
from .expressions import Scope


class Executor(Protocol):
    """Runs a step's process: on this host, or inside a job's container."""

    def run(
        self, argv: list[str], env: Mapping[str, str], cwd: Path, timeout: float
    ) -> tuple[int, str]: ...


def run_captured(
    command: list[str],
    timeout: float,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[int, str]:
    """Run a step's process with its output captured (stderr into stdout), as the runner
    logs it; a step that outlives ``timeout`` is stopped with exit 124."""
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.output if isinstance(exc.output, str) else ""
        return 124, out + f"\n[the test runner stopped the step after {timeout:.0f} s]\n"
    return done.returncode, done.stdout


class HostExecutor:
    def run(
        self, argv: list[str], env: Mapping[str, str], cwd: Path, timeout: float
    ) -> tuple[int, str]:
        return run_captured(argv, timeout, env=env, cwd=cwd)


@dataclass
class PostStep:
    action: ResolvedAction
    name: str
    inputs: dict[str, str]
    env: dict[str, str]
    state: dict[str, str]
    condition: str
    step_id: str


@dataclass
class JobState:
    workspace: Path
    temp: Path
    files: Path  # the file-command files of each step
    machine_env: dict[str, str]  # what every process of the runner sees
    actions_env: dict[str, str]  # ACTIONS_* for actions only (never run: steps)
    contexts: dict[str, Any]  # github, runner, job, strategy, matrix, needs, inputs, secrets, vars
    sources: ActionSources
    node: Path | None
    executor: Executor = field(default_factory=HostExecutor)
    defaults_env: dict[str, str] = field(default_factory=dict)  # workflow + job env: (evaluated)
    added_env: dict[str, str] = field(default_factory=dict)  # from GITHUB_ENV
    path_prefix: list[str] = field(default_factory=list)  # from GITHUB_PATH, newest first
    masks: list[str] = field(default_factory=list)
    annotations: list[Annotation] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    posts: list[PostStep] = field(default_factory=list)
    status: str = "success"
    step_timeout: float = 1200.0
    counter: int = 0
    default_shell: str = ""
    default_working_directory: str = ""

    def next_files(self, step_id: str) -> dict[str, Path]:
        self.counter += 1
        stem = f"{self.counter:03d}"
        names = {
            "GITHUB_OUTPUT": "output",
            "GITHUB_ENV": "env",
            "GITHUB_PATH": "path",
            "GITHUB_STEP_SUMMARY": "summary",
            "GITHUB_STATE": "state",
        }
        files = {key: self.files / f"{stem}-{suffix}" for key, suffix in names.items()}
        for path in files.values():
            path.write_text("", encoding="utf-8")
        return files

    def process_env(self, env_context: Mapping[str, str]) -> dict[str, str]:
        """The environment of a step's process: the machine's, then the env: context, PATH."""
        env = {**self.machine_env, **env_context}
        base_path = env.get("PATH", self.machine_env.get("PATH", os.defpath))
        env["PATH"] = os.pathsep.join([*self.path_prefix, base_path])
        return env


@dataclass
class Frame:
    """Where steps run: the job, or a composite action's own scope."""

    job: JobState
    inputs: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)  # a composite's caller step env:
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    status: str = "success"
    action: ResolvedAction | None = None

    def env_context(self, step_env: Mapping[str, str] | None = None) -> dict[str, str]:
        job = self.job
        return {**job.defaults_env, **job.added_env, **self.env, **(step_env or {})}

    def scope(self, env_context: Mapping[str, str] | None = None) -> Scope:
        job = self.job
        github = dict(job.contexts["github"])
        if self.action is not None:
            github["action_path"] = str(self.action.directory)
            github["action_repository"] = self.action.repository
            github["action_ref"] = self.action.ref
        contexts = {
            **job.contexts,
            "github": github,
            "inputs": self.inputs,
            "steps": self.steps,
            "env": dict(env_context if env_context is not None else self.env_context()),
            "job": {**job.contexts.get("job", {}), "status": job.status},
        }
        return Scope(contexts, self.status, job.workspace)
