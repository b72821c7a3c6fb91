"""Composite actions: their steps run in a frame of their own (inputs, steps, status), their
file commands act on the whole job, and their outputs are evaluated at the end."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .actions import ResolvedAction
from .expressions import interpolate
from .job_state import Frame
from .model import StepRecord
from .steps import action_inputs, run_steps


def run_composite(
    frame: Frame,
    action: ResolvedAction,
    step_id: str,
    name: str,
    given: Mapping[str, str],
    env_context: dict[str, str],
) -> StepRecord:
    inner = Frame(frame.job, {}, env=dict(env_context), action=action)
    inner.inputs = action_inputs(inner, action, given)
    steps: list[dict[str, Any]] = action.definition["runs"].get("steps") or []
    children = run_steps(inner, steps)
    outputs = {
        key: interpolate((spec or {}).get("value", ""), inner.scope())
        for key, spec in (action.definition.get("outputs") or {}).items()
    }
    outcome = "failure" if inner.status == "failure" else "success"
    return StepRecord(
        step_id,
        name,
        outcome,
        outcome,
        "",
        outputs,
        uses=action.uses,
        commit=action.commit,
        children=children,
    )
