"""Run a list of steps in a frame: ``run:`` scripts, composite actions and JavaScript actions
(their real code under node, with ``pre:``/``post:`` steps), as the GitHub runner does."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .actions import ActionNotFound, ResolvedAction
from .envfiles import mask, parse_env_file, read_commands, read_path_file
from .expressions import ExpressionError, condition, interpolate
from .job_state import Frame, JobState, PostStep
from .model import StepRecord

SHELLS = {
    "bash": ["bash", "--noprofile", "--norc", "-eo", "pipefail", "{0}"],
    "sh": ["sh", "-e", "{0}"],
    "python": ["python3", "{0}"],
}
DEFAULT_SHELL = ["bash", "-e", "{0}"]  # no shell: given and bash exists


def run_steps(frame: Frame, steps: list[dict[str, Any]]) -> list[StepRecord]:
    records = []
    for index, step in enumerate(steps):
        record = run_step(frame, step, f"__{index}")
        records.append(record)
        frame.steps[record.id] = {
            "outputs": record.outputs,
            "outcome": record.outcome,
            "conclusion": record.conclusion,
        }
        if record.conclusion == "failure":
            frame.status = "failure"
            if frame.action is None:
                frame.job.status = "failure"
    return records


def _name(step: Mapping[str, Any], frame: Frame) -> str:
    if "name" in step:
        try:
            return interpolate(step["name"], frame.scope())
        except ExpressionError:
            return str(step["name"])
    if "uses" in step:
        return f"Run {step['uses']}"
    return f"Run {str(step.get('run', '')).strip().splitlines()[0] if step.get('run') else '?'}"


def run_step(frame: Frame, step: Mapping[str, Any], default_id: str) -> StepRecord:
    step_id = str(step.get("id") or default_id)
    name = _name(step, frame)
    uses = str(step.get("uses", ""))
    try:
        if not condition(step.get("if"), frame.scope()):
            return StepRecord(step_id, name, "skipped", "skipped", uses=uses)
        env_context = frame.env_context()
        step_env = {
            key: interpolate(value, frame.scope(env_context))
            for key, value in (step.get("env") or {}).items()
        }
        env_context = {**env_context, **step_env}
        if "uses" in step:
            record = _uses_step(frame, step, step_id, name, env_context)
        else:
            record = _run_step(frame, step, step_id, name, env_context)
    except (ExpressionError, ActionNotFound, ValueError, OSError) as exc:
        message = f"::error::{name}: {exc}"
        frame.job.annotations.extend(read_commands(message).annotations)
        record = StepRecord(step_id, name, "failure", "failure", message + "\n", uses=uses)
    if record.outcome == "failure" and _continue_on_error(frame, step):
        record.conclusion = "success"
    return record


def _continue_on_error(frame: Frame, step: Mapping[str, Any]) -> bool:
    value = step.get("continue-on-error", False)
    if isinstance(value, str):
        return condition(value, frame.scope(), "success") if "${{" in value else value == "true"
    return bool(value)


def finish_process(
    job: JobState, files: dict[str, Path], code: int, output: str
) -> tuple[str, dict[str, str]]:
    """Apply a step's file commands and workflow commands; return its outcome and outputs."""
    commands = read_commands(output)
    job.masks.extend(commands.masks)
    job.annotations.extend(commands.annotations)
    job.added_env.update(parse_env_file(files["GITHUB_ENV"]))
    for entry in read_path_file(files["GITHUB_PATH"]):
        job.path_prefix.insert(0, entry)
    job.summary.append(files["GITHUB_STEP_SUMMARY"].read_text(encoding="utf-8"))
    return ("success" if code == 0 else "failure"), parse_env_file(files["GITHUB_OUTPUT"])


def _runner_env(
    frame: Frame, files: dict[str, Path], env_context: Mapping[str, str]
) -> dict[str, str]:
    env = frame.job.process_env(env_context)
    env.update({key: str(path) for key, path in files.items() if key != "GITHUB_STATE"})
    if frame.action is not None:
        env["GITHUB_ACTION_PATH"] = str(frame.action.directory)
        env["GITHUB_ACTION_REPOSITORY"] = frame.action.repository
        env["GITHUB_ACTION_REF"] = frame.action.ref
    return env


def _run_step(
    frame: Frame, step: Mapping[str, Any], step_id: str, name: str, env_context: dict[str, str]
) -> StepRecord:
    job = frame.job
    scope = frame.scope(env_context)
    shell = str(step.get("shell") or job.default_shell or "")
    if frame.action is not None and not shell:
        raise ValueError("a composite action's run: step needs shell:")
    template = SHELLS.get(shell, DEFAULT_SHELL if not shell else shell.split())
    if shell and shell not in SHELLS and "{0}" not in template:
        template = [*template, "{0}"]
    files = job.next_files(step_id)
    script = job.files / f"{job.counter:03d}-script"
    script.write_text(interpolate(step["run"], scope), encoding="utf-8")
    argv = [str(script) if part == "{0}" else part for part in template]
    directory = step.get("working-directory") or job.default_working_directory or "."
    cwd = job.workspace / interpolate(directory, scope)
    code, output = job.executor.run(
        argv, _runner_env(frame, files, env_context), cwd, _timeout(job, step)
    )
    outcome, outputs = finish_process(job, files, code, output)
    if code != 0:
        output += f"Error: Process completed with exit code {code}.\n"
    return StepRecord(step_id, name, outcome, outcome, mask(output, job.masks), outputs)


def _timeout(job: JobState, step: Mapping[str, Any]) -> float:
    minutes = step.get("timeout-minutes")
    return float(minutes) * 60 if isinstance(minutes, int | float) else job.step_timeout


def _uses_step(
    frame: Frame, step: Mapping[str, Any], step_id: str, name: str, env_context: dict[str, str]
) -> StepRecord:
    job = frame.job
    action = job.sources.resolve(str(step["uses"]), job.workspace)
    scope = frame.scope(env_context)
    given = {key: interpolate(value, scope) for key, value in (step.get("with") or {}).items()}
    if action.using == "composite":
        from .composite import run_composite

        return run_composite(frame, action, step_id, name, given, env_context)
    if action.using.startswith("node"):
        return run_node_action(frame, action, step_id, name, given, env_context)
    raise ValueError(
        f"{action.uses}: runs.using {action.using!r} is not supported by the test runner"
    )


def action_inputs(frame: Frame, action: ResolvedAction, given: Mapping[str, str]) -> dict[str, str]:
    """The inputs an action sees: given values, else its defaults (expressions evaluated)."""
    declared: dict[str, Any] = action.definition.get("inputs") or {}
    values: dict[str, str] = {}
    for key, value in given.items():
        if key not in declared:
            frame.job.annotations.extend(
                read_commands(f"::warning::Unexpected input '{key}' for {action.uses}").annotations
            )
        values[key] = value
    for key, spec in declared.items():
        if key in values:
            continue
        spec = spec or {}
        default = spec.get("default", "")
        values[key] = interpolate(default, frame.scope()) if default is not None else ""
        if spec.get("required") and values[key] == "" and "default" not in spec:
            frame.job.annotations.extend(
                read_commands(f"::warning::Input required and not supplied: {key}").annotations
            )
    return values


def run_node_action(
    frame: Frame,
    action: ResolvedAction,
    step_id: str,
    name: str,
    given: Mapping[str, str],
    env_context: dict[str, str],
) -> StepRecord:
    job = frame.job
    if job.node is None:
        raise ValueError(f"{action.uses} needs node 24, which is not installed")
    inputs = action_inputs(frame, action, given)
    runs = action.definition["runs"]
    state: dict[str, str] = {}
    logs: list[StepRecord] = []
    if runs.get("pre") and condition(runs.get("pre-if", "always()"), frame.scope()):
        pre = node_process(job, action, runs["pre"], inputs, env_context, state, frame)
        pre.phase, pre.name = "pre", f"Pre {name}"
        logs.append(pre)
    record = node_process(job, action, runs["main"], inputs, env_context, state, frame)
    record.id, record.name, record.children = step_id, name, logs
    if runs.get("post"):
        job.posts.append(
            PostStep(
                action,
                f"Post {name}",
                inputs,
                env_context,
                state,
                str(runs.get("post-if") or "always()"),
                step_id,
            )
        )
    return record


def node_process(
    job: JobState,
    action: ResolvedAction,
    script: str,
    inputs: Mapping[str, str],
    env_context: Mapping[str, str],
    state: dict[str, str],
    frame: Frame | None = None,
) -> StepRecord:
    files = job.next_files(action.uses)
    env = job.process_env(env_context)
    env.update({key: str(path) for key, path in files.items()})
    env.update(job.actions_env)
    env.update({f"STATE_{key}": value for key, value in state.items()})
    env.update({f"INPUT_{key.replace(' ', '_').upper()}": value for key, value in inputs.items()})
    env["GITHUB_ACTION_REPOSITORY"] = action.repository
    env["GITHUB_ACTION_REF"] = action.ref
    env.pop("GITHUB_ACTION_PATH", None)
    main = action.directory / script
    code, output = job.executor.run(
        [str(job.node), str(main)], env, job.workspace, job.step_timeout
    )
    state.update(parse_env_file(files["GITHUB_STATE"]))
    outcome, outputs = finish_process(job, files, code, output)
    return StepRecord(
        "",
        "",
        outcome,
        outcome,
        mask(output, job.masks),
        outputs,
        uses=action.uses,
        commit=action.commit,
    )


def run_posts(job: JobState) -> list[StepRecord]:
    """Post steps, last registered first, each under its ``post-if`` (default ``always()``)."""
    records = []
    for post in reversed(job.posts):
        if not condition(post.condition, Frame(job, {}, status=job.status).scope()):
            records.append(
                StepRecord(
                    post.step_id,
                    post.name,
                    "skipped",
                    "skipped",
                    phase="post",
                    uses=post.action.uses,
                )
            )
            continue
        record = node_process(
            job,
            post.action,
            post.action.definition["runs"]["post"],
            post.inputs,
            post.env,
            post.state,
        )
        record.id, record.name, record.phase = post.step_id, post.name, "post"
        records.append(record)
        if record.outcome == "failure":
            job.status = "failure"
    return records
