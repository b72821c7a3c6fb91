"""One job on a fresh runner: its own workspace, temp, home and token, steps, post steps,
outputs; a ``container:`` job runs them in its image (container.py). The workflow runner
decides whether and how often (matrix) it runs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .actions import ActionSources
from .container import ContainerError, ContainerExecutor
from .expressions import ExpressionError, Scope, interpolate
from .host import Event, Services
from .job_state import Executor, Frame, HostExecutor, JobState
from .model import JobRecord
from .steps import run_posts, run_steps


@dataclass
class JobSpec:
    """A job ready to run: its definition and the contexts its expressions see."""

    id: str
    name: str
    definition: dict[str, Any]
    contexts: dict[str, Any]  # inputs, secrets, needs, matrix, strategy, vars, job
    workflow_env: dict[str, Any]
    event: Event
    runner: Any


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:60] or "job"


class JobRunner:
    def __init__(
        self, services: Services, sources: ActionSources, node: Path | None, root: Path
    ) -> None:
        self.services = services
        self.sources = sources
        self.node = node
        self.root = root
        self.count = 0

    def run(self, spec: JobSpec) -> JobRecord:
        self.count += 1
        # every job's runner has the same paths (as GitHub's /home/runner/work/...), fresh:
        # cache versions hash the cached paths, so they must not differ from job to job
        # (shared by every run under the same parent folder, as one runner machine image)
        base = self.root.parent / "runner"
        if base.exists():
            shutil.rmtree(base)
        repo_name = spec.event.repository.split("/")[-1]
        workspace = base / "work" / repo_name / repo_name
        temp, home, files = base / "temp", base / "home", base / "files"
        for folder in (workspace, temp, home, files, self.services.tool_cache):
            folder.mkdir(parents=True, exist_ok=True)
        event_path = temp / "event.json"
        event_path.write_text(json.dumps(spec.event.payload), encoding="utf-8")
        machine_env = self.services.job_env(home, temp)
        machine_env.update(spec.event.github_env())
        machine_env.update(
            GITHUB_WORKSPACE=str(workspace),
            GITHUB_EVENT_PATH=str(event_path),
            GITHUB_JOB=spec.id.rsplit("/", 1)[-1],
            GITHUB_WORKFLOW=str(spec.contexts.get("workflow_name", "")),
        )
        record = JobRecord(
            spec.id, spec.name, "success", dict(spec.contexts.get("matrix") or {}), spec.runner
        )
        try:
            executor = self._executor(spec, base, machine_env)
        except (ContainerError, ExpressionError, subprocess.TimeoutExpired) as exc:
            record.result, record.reason = "failure", f"container: {exc}"
            return record
        try:
            return self._run(spec, record, base, workspace, temp, files, machine_env, executor)
        finally:
            if isinstance(executor, ContainerExecutor):
                executor.close()

    def _executor(self, spec: JobSpec, base: Path, machine_env: dict[str, str]) -> Executor:
        """This host, or the job's container (its PATH replaces the runner's)."""
        container = spec.definition.get("container")
        if not container:
            return HostExecutor()
        definition = {"image": container} if isinstance(container, str) else dict(container)
        unsupported = sorted(set(definition) - {"image", "env"})
        if unsupported:
            raise ContainerError(f"the test runner does not support container {unsupported}")
        scope = Scope({**spec.contexts, "github": spec.event.github_context(machine_env, "")})
        image = interpolate(definition["image"], scope)
        if self.services.containers is None:
            raise ContainerError(f"no container engine here to run {image!r}")
        mounts = [base, self.services.tool_cache, self.sources.shared_root]
        mounts += [folder for folder, _ in self.sources.repositories.values()]
        if self.node is not None:  # GitHub mounts its own node into the container too
            mounts += [self.node.parent, self.node.resolve().parent]
        executor = self.services.containers.open(image, mounts)
        machine_env["PATH"] = executor.path
        for key, value in (definition.get("env") or {}).items():
            machine_env[str(key)] = interpolate(value, scope)
        return executor

    def _run(
        self,
        spec: JobSpec,
        record: JobRecord,
        base: Path,
        workspace: Path,
        temp: Path,
        files: Path,
        machine_env: dict[str, str],
        executor: Executor,
    ) -> JobRecord:
        github = spec.event.github_context(machine_env, self.services.token)
        github["job"] = machine_env["GITHUB_JOB"]
        github["workflow"] = machine_env["GITHUB_WORKFLOW"]
        contexts = {key: value for key, value in spec.contexts.items() if key != "workflow_name"}
        contexts["github"] = github
        contexts["runner"] = {
            "os": "Linux", "arch": "X64", "name": machine_env["RUNNER_NAME"],
            "temp": str(temp), "tool_cache": str(self.services.tool_cache),
            "environment": "github-hosted", "debug": "",
        }  # fmt: skip
        state = JobState(
            workspace=workspace,
            temp=temp,
            files=files,
            machine_env=machine_env,
            actions_env=self.services.actions_env(spec.event.run_backend_id, str(uuid.uuid4())),
            contexts=contexts,
            sources=self.sources,
            node=self.node,
            executor=executor,
        )
        state.masks.append(self.services.token)
        state.masks.extend(str(v) for v in (contexts.get("secrets") or {}).values() if v)
        defaults = (spec.definition.get("defaults") or {}).get("run") or {}
        state.default_shell = str(defaults.get("shell", ""))
        state.default_working_directory = str(defaults.get("working-directory", ""))
        frame = Frame(state, contexts.get("inputs") or {})
        record.workspace = str(workspace)
        try:
            for env_source in (spec.workflow_env, spec.definition.get("env") or {}):
                for key, value in env_source.items():
                    state.defaults_env[key] = interpolate(value, frame.scope())
        except ExpressionError as exc:
            record.result, record.reason = "failure", f"env: {exc}"
            return record
        record.started = time.monotonic()
        record.steps = run_steps(frame, list(spec.definition.get("steps") or []))
        record.steps.extend(run_posts(state))
        record.finished = time.monotonic()
        record.result = state.status
        for key, value in (spec.definition.get("outputs") or {}).items():
            try:
                record.outputs[key] = interpolate(value, frame.scope())
            except ExpressionError as exc:
                record.outputs[key] = ""
                record.reason += f" output {key}: {exc}"
        record.annotations = state.annotations
        record.summary = "".join(state.summary)
        kept = self.root / f"{self.count:02d}-{_slug(spec.name)}"
        kept.parent.mkdir(parents=True, exist_ok=True)
        base.rename(kept)  # for the test to look at; the next job starts afresh
        record.workspace = str(kept / workspace.relative_to(base))
        return record
