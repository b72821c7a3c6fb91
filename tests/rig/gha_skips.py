"""One clear skip line when the workflow runner cannot run here (node 24, the actions' code)."""

from __future__ import annotations

import shutil

import pytest

from .gha.actions import shared_actions_root
from .gha.node import missing_node_reason, node_binary
from .runtime import host_x86_64_linux


def runner_missing() -> str:
    if not host_x86_64_linux():
        return "the workflow runner maps runners to an x86_64 Linux host"
    if shutil.which("git") is None or shutil.which("bash") is None:
        return "the workflow runner needs git and bash"
    if not (shared_actions_root() / "actions" / "checkout").is_dir():
        return f"the actions' code is not in {shared_actions_root()} (see its README.md)"
    if node_binary() is None:
        return missing_node_reason()
    return ""


def require_runner() -> pytest.MarkDecorator:
    reason = runner_missing()
    return pytest.mark.skipif(bool(reason), reason=reason)
