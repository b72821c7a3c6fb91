"""Everything a workflow run talks to, started together on 127.0.0.1 (see tests/test_gha_*.py):

- ``git``: the git server; ``venvlayers/venvlayers`` holds a snapshot of this checkout (what
  ``job.workflow_sha`` names), the caller's repository is published by the test;
- ``results``: artifacts and caches (``ACTIONS_RESULTS_URL``);
- ``github``: the REST API double (releases, PR comments) at ``GITHUB_API_URL``;
- ``index``: the jobs' package index (``UV_INDEX_URL``): the builder's locked wheels plus
  whatever the test adds, every request counted;
- ``runtimes``: the CPython runtime archive and uv's downloads JSON over HTTP, counted;
- a tool cache holding uv, so setup-uv finds it without downloading.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from venvlayers.build.runtime_mirror import downloads_entry, write_downloads_json

from .builder_wheels import builder_wheelhouse
from .file_server import FileServer
from .gha.actions import ActionSources
from .gha.host import Event, Services
from .gha.model import RunRecord
from .gha.workflow import Call, WorkflowRunner
from .git_server import GitServer
from .github_double import GitHubDouble
from .index import SimpleIndex
from .results_service import ResultsService
from .tool_cache import provision_uv

ROOT = Path(__file__).resolve().parents[2]
VENVLAYERS = "venvlayers/venvlayers"
CALLER = "octo-org/stacks"
TOKEN = "ghs_workflowRunnerTokenNotASecret0001"


#: Every remote action that ran in this test session, as pinned (``owner/repo[/path]@ref``),
#: with the commits whose code ran; printed at the end of the session (conftest.py).
SESSION_ACTIONS: dict[str, set[str]] = {}


def remember_actions(run: RunRecord) -> None:
    for job in run.jobs:
        for step in job.steps:
            for item in step.walk():
                if item.commit and item.outcome != "skipped":
                    SESSION_ACTIONS.setdefault(item.uses, set()).add(item.commit)


def actions_summary() -> list[str]:
    """One line per pinned action: the commit that ran, and when it is not the pin."""
    lines = []
    for uses, commits in sorted(SESSION_ACTIONS.items()):
        ref = uses.partition("@")[2]
        ran = ", ".join(sorted(commits))
        moved = [c for c in commits if c != ref and len(ref) == 40]
        note = " (not the pinned commit: see shared/gha-actions/README.md)" if moved else ""
        lines.append(f"{uses} ran {ran}{note}")
    return lines


def checkout_files(root: Path = ROOT) -> list[str]:
    """This checkout's files as a commit would hold them (tracked and new, not ignored)."""
    done = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=root,
        capture_output=True,
        check=True,
    )
    return sorted(f for f in done.stdout.decode().split("\0") if f and (root / f).is_file())


class Stage:
    def __init__(
        self, root: Path, runtime_archive: Path | None = None, *, private_venvlayers: str = ""
    ) -> None:
        self.root = root
        self.runtime_archive = runtime_archive
        self.private_venvlayers = private_venvlayers  # a token: venvlayers is private then
        self.packages = root / "index"
        self.results = ResultsService(root / "results")
        self.git = GitServer(root / "git")
        self.github = GitHubDouble(token=TOKEN, repo=CALLER)
        self.index = SimpleIndex(self.packages, immutable_files=True)
        self.runtimes = FileServer(root / "runtimes")
        self.sources = ActionSources()
        self.venvlayers_sha = ""
        self.runs = 0

    def __enter__(self) -> Stage:
        self.packages.mkdir(parents=True, exist_ok=True)
        for wheel in builder_wheelhouse().glob("*.whl"):
            shutil.copy2(wheel, self.packages / wheel.name)
        (self.root / "runtimes").mkdir(parents=True, exist_ok=True)
        for server in (self.results, self.git, self.github, self.index, self.runtimes):
            server.__enter__()
        entries = []
        if self.runtime_archive is not None:  # without one, jobs name their Python by path
            served = self.root / "runtimes" / self.runtime_archive.name
            shutil.copy2(self.runtime_archive, served)
            version = self.runtime_archive.name.split("-")[1]
            url = f"{self.runtimes.url}{served.name}"
            entries.append(downloads_entry(served, version=version, url=url))
        write_downloads_json(entries, self.root / "runtimes" / "downloads.json")
        tokens = {self.private_venvlayers} if self.private_venvlayers else set()
        self.git.create(VENVLAYERS, private=bool(self.private_venvlayers), tokens=tokens)
        self.venvlayers_sha = self.git.publish(
            VENVLAYERS,
            ROOT,
            ["refs/heads/main", "refs/tags/v1"],
            "venvlayers",
            files=checkout_files(),
        )
        self.sources.register(VENVLAYERS, ROOT, self.venvlayers_sha)
        self.git.create(CALLER)
        tool_cache = self.root / "tool-cache"
        provision_uv(tool_cache)
        self.services = Services(
            server_url=self.git.url,
            api_url=self.github.api_url,
            results_url=self.results.url,
            tool_cache=tool_cache,
            token=TOKEN,
            machine_env={
                "UV_INDEX_URL": self.index.url,
                "UV_PYTHON_DOWNLOADS_JSON_URL": f"{self.runtimes.url}downloads.json",
                "UV_NO_PROGRESS": "1",
            },
        )
        return self

    def __exit__(self, *exc: object) -> None:
        for server in (self.runtimes, self.index, self.github, self.git, self.results):
            server.__exit__(None, None, None)

    def publish_caller(self, folder: Path, refs: list[str], parent: str = "") -> str:
        return self.git.publish(CALLER, folder, refs, "stack", parent=parent)

    def event(self, sha: str, **kwargs: object) -> Event:
        self.runs += 1
        return Event(repository=CALLER, sha=sha, run_id=self.runs, **kwargs)  # type: ignore[arg-type]

    def run(self, workflow: Path, event: Event, call: Call | None = None) -> RunRecord:
        """Run ``workflow``; what ran and what the doubles answered go to ``run-N/describe.txt``,
        the jobs' logs to ``run-N/log.txt``."""
        folder = self.root / f"run-{event.run_id}"
        record = WorkflowRunner(self.services, self.sources, folder).run(workflow, event, call=call)
        remember_actions(record)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "describe.txt").write_text(describe(record, self) + "\n", encoding="utf-8")
        (folder / "log.txt").write_text(record.log, encoding="utf-8")  # masked as shown
        return record


def describe(run: RunRecord, stage: Stage) -> str:
    """Which commit of each action ran, and which calls the doubles answered (for reports)."""
    lines = ["actions that ran (commit):"]
    lines += [
        f"  {action}: {', '.join(sorted(commits))}"
        for action, commits in sorted(run.actions_ran().items())
    ]
    counts: dict[str, int] = {}
    for call in stage.results.calls:
        name = f"{call.service}.{call.method} {call.status}"
        counts[name] = counts.get(name, 0) + 1
    lines.append("results service calls:")
    lines += [f"  {name}: {n}" for name, n in sorted(counts.items())]
    git_calls: dict[str, int] = {}
    for request in stage.git.requests:
        name = f"{request.repository} {request.service} {request.status}"
        git_calls[name] = git_calls.get(name, 0) + 1
    lines.append("git server requests:")
    lines += [f"  {name}: {n}" for name, n in sorted(git_calls.items())]
    api: dict[str, int] = {}
    for request in stage.github.requests:
        name = f"{request.method} {request.path.split('?')[0]}"
        name = re.sub(r"/\d+", "/N", name)
        api[name] = api.get(name, 0) + 1
    lines.append("REST API double requests:")
    lines += [f"  {name}: {n}" for name, n in sorted(api.items())]
    lines.append(
        f"index double requests: {len(stage.index.requests)}; runtime downloads: "
        f"{len([s for s in stage.runtimes.log if s.path.endswith('.tar.gz')])}"
    )
    return "\n".join(lines)
