"""Run a workflow file the way GitHub does, one job after another on this host.

Jobs run in ``needs`` order; a job's ``if:`` sees ``needs.<job>.result``/``outputs`` and the
status functions (``success()`` = every needed job succeeded). ``strategy.matrix`` makes one
job per combination (``fail-fast`` cancels the rest after a failure; ``max-parallel`` and
``concurrency`` do not matter when jobs run one at a time). A job with ``uses:`` calls a
reusable workflow (``workflow_call`` inputs with their types and defaults, ``secrets``, the
caller's ``permissions`` as a ceiling GitHub checks before any job starts, ``outputs``).
``runs-on`` must name labels this host answers (``host.runs_here``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .actions import ActionNotFound, ActionSources, load_yaml
from .expressions import ExpressionError, Scope, condition, interpolate, value_of
from .host import Event, Services, runs_here
from .job_runner import JobRunner, JobSpec
from .matrix import expand
from .model import JobRecord, RunRecord
from .node import node_binary
from .permissions import excess


@dataclass
class Call:
    """A workflow as called: its inputs, secrets, the grant, and where it comes from."""

    inputs: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    permissions: Any = None  # the caller's grant (None: unrestricted)
    repository: str = ""  # job.workflow_repository
    sha: str = ""  # job.workflow_sha
    prefix: str = ""  # caller job id, for nested job ids
    name_prefix: str = ""


def order(jobs: dict[str, Any]) -> list[str]:
    done: list[str] = []
    pending = list(jobs)
    while pending:
        for job_id in pending:
            needs = _needs(jobs[job_id])
            missing = [n for n in needs if n not in jobs]
            if missing:
                raise ValueError(f"job {job_id} needs unknown job(s) {missing}")
            if all(n in done for n in needs):
                done.append(job_id)
                pending.remove(job_id)
                break
        else:
            raise ValueError(f"jobs {pending} depend on each other in a cycle")
    return done


def _needs(job: dict[str, Any]) -> list[str]:
    needs = job.get("needs") or []
    return [needs] if isinstance(needs, str) else list(needs)


def aggregate(results: list[str]) -> str:
    for result in ("failure", "cancelled", "success"):
        if result in results:
            return result
    return "skipped"


class WorkflowRunner:
    def __init__(
        self, services: Services, sources: ActionSources, root: Path, node: Path | None = None
    ) -> None:
        self.services = services
        self.sources = sources
        self.jobs = JobRunner(services, sources, node or node_binary(), root)
        self.root = root

    def run(
        self,
        workflow: Path,
        event: Event,
        *,
        call: Call | None = None,
        variables: dict[str, str] | None = None,
    ) -> RunRecord:
        record = RunRecord()
        self._run_workflow(workflow, event, call or Call(), variables or {}, record)
        return record

    def _run_workflow(
        self, path: Path, event: Event, call: Call, variables: dict[str, str], record: RunRecord
    ) -> dict[str, str]:
        document = load_yaml(path)
        jobs: dict[str, Any] = document["jobs"]
        name = str(document.get("name") or path.name)
        inputs = self._inputs(document, call)
        for job_id, job in jobs.items():
            error = excess(
                job_id, job.get("permissions", document.get("permissions")), call.permissions
            )
            if error and "uses" not in job:
                record.jobs.append(
                    JobRecord(
                        call.prefix + job_id, call.name_prefix + job_id, "failure", reason=error
                    )
                )
                return {}
        results: dict[str, dict[str, Any]] = {}
        for job_id in order(jobs):
            job = jobs[job_id]
            needs = {n: results[n] for n in _needs(job)}
            contexts = {
                "inputs": inputs,
                "secrets": {"GITHUB_TOKEN": self.services.token, **call.secrets},
                "vars": variables,
                "needs": needs,
                "workflow_name": name,
                "job": {"workflow_repository": call.repository or event.repository,
                        "workflow_sha": call.sha or event.sha},
            }  # fmt: skip
            results[job_id] = self._job(
                path, job_id, job, contexts, document, event, call, variables, record
            )
        outputs = {}
        on = document.get("on") or {}
        declared = ((on.get("workflow_call") or {}) if isinstance(on, dict) else {}).get(
            "outputs"
        ) or {}
        scope = Scope({"jobs": results, "inputs": inputs, "github": {}, "vars": variables})
        for key, spec in declared.items():
            outputs[key] = interpolate((spec or {}).get("value", ""), scope)
        record.outputs.update(outputs)
        return outputs

    def _inputs(self, document: dict[str, Any], call: Call) -> dict[str, Any]:
        on = document.get("on") or {}
        declared = ((on.get("workflow_call") or {}) if isinstance(on, dict) else {}).get(
            "inputs"
        ) or {}
        inputs: dict[str, Any] = {}
        for key, spec in declared.items():
            spec = spec or {}
            value = call.inputs.get(key, spec.get("default"))
            kind = spec.get("type", "string")
            if value is None:
                value = {"boolean": False, "number": 0.0}.get(kind, "")
            elif kind == "boolean" and isinstance(value, str):
                value = value.lower() == "true"
            elif kind == "number":
                value = float(value)
            inputs[key] = value
        unknown = set(call.inputs) - set(declared)
        if unknown:
            raise ValueError(f"inputs not declared by the workflow: {sorted(unknown)}")
        return inputs

    def _job(
        self,
        path: Path,
        job_id: str,
        job: dict[str, Any],
        contexts: dict[str, Any],
        document: dict[str, Any],
        event: Event,
        call: Call,
        variables: dict[str, str],
        record: RunRecord,
    ) -> dict[str, Any]:
        needs = contexts["needs"]
        results = [n["result"] for n in needs.values()]
        status = (
            "success"
            if all(r == "success" for r in results)
            else "failure"
            if "failure" in results
            else "skipped"
        )
        github = event.github_context(event.github_env(), self.services.token)
        scope = Scope({**contexts, "github": github}, status)
        full_id, display = call.prefix + job_id, call.name_prefix + job_id
        try:
            runs = condition(job.get("if"), scope)
        except ExpressionError as exc:
            record.jobs.append(JobRecord(full_id, display, "failure", reason=f"if: {exc}"))
            return {"result": "failure", "outputs": {}}
        if not runs:
            record.jobs.append(JobRecord(full_id, display, "skipped"))
            return {"result": "skipped", "outputs": {}}
        if "uses" in job:
            return self._call(path, job_id, job, scope, document, event, call, variables, record)
        strategy = job.get("strategy") or {}
        try:
            combos = (
                expand(value_of(strategy.get("matrix"), scope)) if "matrix" in strategy else [{}]
            )
        except (ExpressionError, ValueError) as exc:
            record.jobs.append(JobRecord(full_id, display, "failure", reason=f"strategy: {exc}"))
            return {"result": "failure", "outputs": {}}
        fail_fast = strategy.get("fail-fast", True) not in (False, "false")
        outcomes: list[str] = []
        outputs: dict[str, str] = {}
        for index, combo in enumerate(combos):
            job_contexts = {
                **contexts,
                "matrix": combo,
                "strategy": {"fail-fast": fail_fast, "job-index": float(index),
                             "job-total": float(len(combos)), "max-parallel": float(len(combos))},
            }  # fmt: skip
            inner = Scope({**job_contexts, "github": github}, status)
            label = value_of(job.get("runs-on"), inner)
            shown = job.get("name")
            title = (
                interpolate(shown, inner)
                if shown
                else (
                    f"{job_id} ({', '.join(str(v) for v in combo.values())})" if combo else job_id
                )
            )
            title = call.name_prefix + title
            if fail_fast and "failure" in outcomes:
                record.jobs.append(JobRecord(full_id, title, "cancelled", combo, label))
                outcomes.append("cancelled")
                continue
            if not runs_here(label):
                reason = f"no runner of this host answers runs-on {label!r}"
                record.jobs.append(
                    JobRecord(full_id, title, "failure", combo, label, reason=reason)
                )
                outcomes.append("failure")
                continue
            spec = JobSpec(
                full_id, title, job, job_contexts, document.get("env") or {}, event, label
            )
            done = self.jobs.run(spec)
            record.jobs.append(done)
            outcomes.append(done.result)
            outputs.update({k: v for k, v in done.outputs.items() if v or k not in outputs})
        return {"result": aggregate(outcomes), "outputs": outputs}

    def _call(
        self,
        path: Path,
        job_id: str,
        job: dict[str, Any],
        scope: Scope,
        document: dict[str, Any],
        event: Event,
        call: Call,
        variables: dict[str, str],
        record: RunRecord,
    ) -> dict[str, Any]:
        uses = str(job["uses"])
        try:
            called, repository, sha = self._called_workflow(uses, path)
        except ActionNotFound as exc:
            record.jobs.append(JobRecord(call.prefix + job_id, job_id, "failure", reason=str(exc)))
            return {"result": "failure", "outputs": {}}
        given = {k: value_of(v, scope) for k, v in (job.get("with") or {}).items()}
        secrets_spec = job.get("secrets")
        caller_secrets = {k: v for k, v in scope.contexts["secrets"].items() if k != "GITHUB_TOKEN"}
        if secrets_spec == "inherit":
            secrets = caller_secrets
        else:
            secrets = {k: str(value_of(v, scope)) for k, v in (secrets_spec or {}).items()}
        grant = job.get("permissions", document.get("permissions", call.permissions))
        inner = Call(
            inputs=given,
            secrets=secrets,
            permissions=grant,
            repository=repository or call.repository or event.repository,
            sha=sha or call.sha or event.sha,
            prefix=f"{call.prefix}{job_id}/",
            name_prefix=f"{call.name_prefix}{job.get('name') or job_id} / ",
        )
        before = len(record.jobs)
        outputs = self._run_workflow(called, event, inner, variables, record)
        result = aggregate([j.result for j in record.jobs[before:]])
        return {"result": result, "outputs": outputs}

    def _called_workflow(self, uses: str, caller: Path) -> tuple[Path, str, str]:
        if uses.startswith("./"):
            # relative to the caller's repository root (the folder holding .github/)
            root = caller.parent.parent.parent
            return root / uses, "", ""
        name, _, ref = uses.partition("@")
        parts = name.split("/")
        repository, sub = "/".join(parts[:2]), "/".join(parts[2:])
        registered = self.sources.repositories.get(repository.lower())
        if registered is None:
            raise ActionNotFound(f"reusable workflow {uses}: {repository} is not registered")
        folder, commit = registered
        return folder / sub, repository, commit or ref
