"""Scenario (e) of issue 24: the lock check of a pull request, as GitHub runs it.

examples/workflows/pr-lock-check.yml runs on ``pull_request`` events with the real
checkout, setup-uv and cache code; the action's lock-diff posts its report as one comment
on the pull request (the REST API double), found again by its hidden marker and edited on
the next push. Someone else's comment carrying the same marker is never touched, and a lock
naming a hostile package shows up in the comment as inert text.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from rig.caller_repo import add_greeting, lock_stack, write_stack
from rig.gha.host import Event
from rig.gha.model import RunRecord
from rig.gha_skips import require_runner
from rig.github_double import BOT_LOGIN, CommentState
from rig.runtime import RuntimeMirror
from rig.wheels import build_wheel
from rig.workflow_stage import ROOT, Stage, describe

pytestmark = [pytest.mark.slow, require_runner()]

EXAMPLE = ROOT / "examples" / "workflows" / "pr-lock-check.yml"
MARKER = "<!-- venvlayers:lock-diff -->"
PR = 7
HOSTILE = "greeting<img src=x onerror=alert(1)>@octocat"


@pytest.fixture
def stage(tmp_path: Path, runtime_mirror: RuntimeMirror) -> Iterator[Stage]:
    with Stage(tmp_path / "stage", runtime_mirror.archives[runtime_mirror.version]) as stage:
        yield stage


def greeting(stage: Stage, version: str) -> None:
    build_wheel(
        stage.packages, "greeting", version, modules={"greeting/__init__.py": "WORDS = 'hi'\n"}
    )


def pull_request(stage: Stage, sha: str, base: str) -> Event:
    payload = {
        "action": "synchronize",
        "number": PR,
        "pull_request": {
            "number": PR,
            "base": {"ref": "main", "sha": base},
            "head": {"ref": "bump-greeting", "sha": sha},
        },
    }
    return stage.event(sha, name="pull_request", ref=f"refs/pull/{PR}/merge", payload=payload)


def push(stage: Stage, repo: Path, base: str) -> RunRecord:
    """The pull request's next commit (on top of ``base``), and the workflow run it starts."""
    sha = stage.publish_caller(repo, [f"refs/pull/{PR}/head", f"refs/pull/{PR}/merge"], base)
    run = stage.run(
        repo / ".github" / "workflows" / "lock-check.yml", pull_request(stage, sha, base)
    )
    print(describe(run, stage))
    return run


def ours(stage: Stage) -> list[CommentState]:
    return [c for c in stage.github.comments_on(PR) if c.login == BOT_LOGIN]


def test_the_lock_diff_comment_is_posted_once_and_edited_on_each_push(
    stage: Stage, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    add_greeting(stage.packages)
    spec = write_stack(repo, stage.index.url)
    lock_stack(spec)
    (repo / ".github" / "workflows").mkdir(parents=True)
    shutil.copy2(EXAMPLE, repo / ".github" / "workflows" / "lock-check.yml")
    base = stage.publish_caller(repo, ["refs/heads/main"])
    # a reviewer quoting the marker: the workflow must never edit someone else's comment
    theirs = stage.github.seed_comment(PR, f"{MARKER}\nI copied your marker", login="octocat")

    greeting(stage, "1.1")
    lock_stack(spec)
    first = push(stage, repo, base)
    job = first.job("lock-diff")
    assert job.result == "success", job.log
    [posted] = ours(stage)
    assert posted.body.startswith(MARKER + "\n"), posted.body
    assert "| greeting | upgraded | 1.0 | 1.1 |" in posted.body, posted.body
    assert posted.edits == 0
    assert "lock-diff comment posted" in job.log, job.log
    assert stage.services.token not in job.log

    greeting(stage, "1.2")
    lock_stack(spec)
    second = push(stage, repo, base)
    assert second.job("lock-diff").result == "success", second.log
    [edited] = ours(stage)
    assert edited.id == posted.id and edited.edits == 1
    assert "| greeting | upgraded | 1.0 | 1.2 |" in edited.body, edited.body
    assert "1.1" not in edited.body
    [other] = [c for c in stage.github.comments_on(PR) if c.id == theirs]
    assert (other.body, other.edits) == (f"{MARKER}\nI copied your marker", 0)
    posts = stage.github.requests_matching("POST", rf"/issues/{PR}/comments$")
    patches = stage.github.requests_matching("PATCH", r"/issues/comments/\d+$")
    assert (len(posts), len(patches)) == (1, 1)
    assert all(r.headers.get("authorization") == "Bearer ***" for r in posts + patches)

    # a push whose lock names a hostile package: lock-diff refuses the lock (the step
    # fails), and the comment says so instead of keeping the last verdict, inertly
    lock = repo / "requirements" / "app-hello" / "pylock.app-hello.toml"
    lock.write_text(
        lock.read_text(encoding="utf-8").replace('name = "greeting"', f'name = "{HOSTILE}"'),
        encoding="utf-8",
    )
    third = push(stage, repo, base)
    job = third.job("lock-diff")
    assert job.result == "failure", job.log
    [failed] = ours(stage)
    assert failed.id == posted.id and failed.edits == 2
    assert "**lock-diff failed**" in failed.body, failed.body
    assert "\\<img src=x onerror=alert(1)\\>" in failed.body, failed.body
    assert re.search(r"(?<!\\)<img", failed.body) is None, failed.body  # no raw tag
    assert "@octocat" not in failed.body and "@\u200boctocat" in failed.body
    assert len(stage.github.comments_on(PR)) == 2
