"""This machine as a GitHub runner: which labels it answers, its variables, the services.

``Services`` names the doubles every job talks to (git, REST API, results service with
artifacts and caches) and the runner's tool cache; ``runtime_token`` makes the JWT whose
``scp`` claim carries the run's and job's backend ids, as @actions/artifact reads them.
"""

from __future__ import annotations

import base64
import json
import os
import platform
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .container import ContainerEngine

#: Labels of GitHub-hosted Linux x64 runners and of a self-hosted one like this machine.
LINUX_LABELS = ("ubuntu-latest", "ubuntu-24.04", "ubuntu-22.04", "self-hosted", "linux", "x64")

#: A fresh runner's PATH: system folders only (no test venv, no uv).
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def runs_here(label: Any) -> bool:
    """Whether ``runs-on`` (a label or a list of labels, all required) maps to this host."""
    labels = label if isinstance(label, list) else [label]
    if not labels or sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return False
    return all(str(item).lower() in LINUX_LABELS for item in labels)


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def runtime_token(run_backend_id: str, job_backend_id: str) -> str:
    """An unsigned JWT like ACTIONS_RUNTIME_TOKEN: the results scope names run and job."""
    claims = {
        "scp": f"Actions.GenericRead:00000000 Actions.Results:{run_backend_id}:{job_backend_id}",
        "iss": "venvlayers-test-runner",
    }
    return f"{_b64({'typ': 'JWT', 'alg': 'none'})}.{_b64(claims)}.c2ln"


@dataclass
class Services:
    """The doubles a run talks to (all on 127.0.0.1) and what each runner machine has."""

    server_url: str  # git over HTTP: http://github.localhost:PORT
    api_url: str  # the REST API double
    results_url: str  # artifacts + caches (twirp) and their blob storage
    tool_cache: Path  # RUNNER_TOOL_CACHE
    token: str = "ghs_workflowRunnerTokenNotASecret0001"
    machine_env: dict[str, str] = field(default_factory=dict)  # e.g. UV_INDEX_URL of a mirror
    containers: ContainerEngine | None = None  # runs container jobs (container.py)

    def job_env(self, home: Path, temp: Path) -> dict[str, str]:
        env = {
            "PATH": SYSTEM_PATH,
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "RUNNER_OS": "Linux",
            "RUNNER_ARCH": "X64",
            "RUNNER_NAME": "venvlayers-test-runner",
            "RUNNER_ENVIRONMENT": "github-hosted",
            "RUNNER_TEMP": str(temp),
            "RUNNER_TOOL_CACHE": str(self.tool_cache),
            "GITHUB_SERVER_URL": self.server_url,
            "GITHUB_API_URL": self.api_url,
            "GITHUB_GRAPHQL_URL": self.api_url.removesuffix("/v3") + "/graphql",
        }
        for key in ("TZ", "SOURCE_DATE_EPOCH"):
            if key in os.environ:
                env[key] = os.environ[key]
        env.update(self.machine_env)
        return env

    def actions_env(self, run_backend_id: str, job_backend_id: str) -> dict[str, str]:
        return {
            "ACTIONS_RUNTIME_TOKEN": runtime_token(run_backend_id, job_backend_id),
            "ACTIONS_RUNTIME_URL": self.results_url,
            "ACTIONS_RESULTS_URL": self.results_url,
            "ACTIONS_CACHE_URL": self.results_url,
            "ACTIONS_CACHE_SERVICE_V2": "True",
        }


@dataclass
class Event:
    """What triggered the run: the github.* context of the caller."""

    repository: str  # owner/repo
    sha: str
    name: str = "push"
    ref: str = "refs/heads/main"
    payload: dict[str, Any] = field(default_factory=dict)
    actor: str = "octocat"
    run_id: int = 1
    run_attempt: int = 1
    run_backend_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def ref_name(self) -> str:
        for prefix in ("refs/heads/", "refs/tags/"):
            if self.ref.startswith(prefix):
                return self.ref.removeprefix(prefix)
        return self.ref.removeprefix("refs/")

    @property
    def ref_type(self) -> str:
        return "tag" if self.ref.startswith("refs/tags/") else "branch"

    def github_env(self) -> dict[str, str]:
        pr = self.payload.get("pull_request") or {}
        return {
            "GITHUB_REPOSITORY": self.repository,
            "GITHUB_REPOSITORY_OWNER": self.repository.split("/")[0],
            "GITHUB_SHA": self.sha,
            "GITHUB_REF": self.ref,
            "GITHUB_REF_NAME": self.ref_name,
            "GITHUB_REF_TYPE": self.ref_type,
            "GITHUB_EVENT_NAME": self.name,
            "GITHUB_ACTOR": self.actor,
            "GITHUB_RUN_ID": str(self.run_id),
            "GITHUB_RUN_NUMBER": str(self.run_id),
            "GITHUB_RUN_ATTEMPT": str(self.run_attempt),
            "GITHUB_HEAD_REF": str((pr.get("head") or {}).get("ref", "")),
            "GITHUB_BASE_REF": str((pr.get("base") or {}).get("ref", "")),
        }

    def github_context(self, env: Mapping[str, str], token: str) -> dict[str, Any]:
        context: dict[str, Any] = {
            key.removeprefix("GITHUB_").lower(): value
            for key, value in env.items()
            if key.startswith("GITHUB_")
        }
        context.update(
            event=self.payload,
            token=token,
            run_id=str(self.run_id),
            run_number=str(self.run_id),
        )
        return context
