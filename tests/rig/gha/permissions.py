"""GitHub's check of a called workflow's job permissions against the caller's grant."""

from __future__ import annotations

from typing import Any

LEVELS = {"none": 0, "read": 1, "write": 2}
SCOPES = (
    "actions", "attestations", "checks", "contents", "deployments", "discussions", "id-token",
    "issues", "models", "packages", "pages", "pull-requests", "repository-projects",
    "security-events", "statuses",
)  # fmt: skip


def as_levels(permissions: Any) -> dict[str, int] | None:
    """Scope -> level; None means "not restricted" (no permissions key anywhere)."""
    if permissions is None:
        return None
    if permissions == "write-all":
        return dict.fromkeys(SCOPES, 2)
    if permissions == "read-all":
        return dict.fromkeys(SCOPES, 1)
    if permissions == {} or permissions == "":
        return {}
    if not isinstance(permissions, dict):
        raise ValueError(f"permissions: {permissions!r} is not a mapping")
    return {str(scope): LEVELS[str(level)] for scope, level in permissions.items()}


def excess(job_id: str, requested: Any, allowed: Any) -> str | None:
    """GitHub's error when ``requested`` asks for more than ``allowed`` grants, else None."""
    grant = as_levels(allowed)
    wants = as_levels(requested)
    if grant is None or wants is None:
        return None
    for scope, level in wants.items():
        if level > grant.get(scope, 0):
            names = {v: k for k, v in LEVELS.items()}
            return (
                f"The nested job '{job_id}' is requesting '{scope}: {names[level]}', "
                f"but is only allowed '{scope}: {names[grant.get(scope, 0)]}'."
            )
    return None
