"""``lock-diff --pr-comment N``: one comment per pull request, found by its marker and edited,
against the REST API double (tests/rig/github_double.py) on 127.0.0.1.

The whole workflow (examples/workflows/pr-lock-check.yml run by the workflow runner) is
scenario (e) in test_gha_pull_request.py; here the client's rules, one at a time.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from rig.github_double import BOT_LOGIN, Fault, GitHubDouble
from test_lockdiff import _isolated_git, _spec  # noqa: F401  (an autouse fixture)
from test_lockdiff import repo as _lockdiff_repo  # noqa: F401  (a fixture)

from venvlayers.cli.commands import main
from venvlayers.core.report import Reporter
from venvlayers.net.pr_comment import (
    BODY_LIMIT,
    MARKER,
    CommentError,
    comment_body,
    upsert_comment,
)
from venvlayers.net.retry import Budget

TOKEN = "ghs_commentTokenThatMustNeverBePrinted"
REPO = "octo-org/stacks"


@pytest.fixture
def history(request: pytest.FixtureRequest) -> Path:
    """test_lockdiff's repository: a stack at tag v1, changed in the commit after it."""
    found: Path = request.getfixturevalue("_lockdiff_repo")
    return found


@pytest.fixture
def double() -> Iterator[GitHubDouble]:
    with GitHubDouble(token=TOKEN, repo=REPO) as double:
        yield double


def upsert(double: GitHubDouble, markdown: str, stream: io.StringIO | None = None) -> bool:
    return upsert_comment(
        repo=REPO,
        number=7,
        markdown=markdown,
        token=TOKEN,
        api_url=double.api_url,
        reporter=Reporter(stream or io.StringIO()),
        budget=Budget(30, sleep=lambda _: None),
    ).created


def test_posted_once_then_edited_and_left_alone_when_unchanged(double: GitHubDouble) -> None:
    assert upsert(double, "first report") is True
    assert upsert(double, "second report") is False
    assert upsert(double, "second report") is False  # same body: nothing sent
    [comment] = double.comments_on(7)
    assert (comment.body, comment.edits, comment.login) == (
        f"{MARKER}\nsecond report",
        1,
        BOT_LOGIN,
    )
    assert len(double.requests_matching("PATCH", r"/issues/comments/\d+$")) == 1


def test_only_its_own_comment_is_edited_even_far_down_the_list(double: GitHubDouble) -> None:
    person = double.seed_comment(7, f"{MARKER}\nquoted by a reviewer", login="octocat")
    bot_other = double.seed_comment(7, "another workflow's comment", login=BOT_LOGIN)
    for n in range(130):  # two pages of 100
        double.seed_comment(7, f"comment {n}")
    mine = double.seed_comment(7, f"{MARKER}\nan earlier run", login=BOT_LOGIN)
    assert upsert(double, "new report") is False
    by_id = {c.id: c for c in double.comments_on(7)}
    assert by_id[mine].body == f"{MARKER}\nnew report"
    assert by_id[person].edits == 0 and by_id[bot_other].edits == 0
    pages = double.requests_matching("GET", r"/issues/7/comments$")
    assert [r.query.get("page", "1") for r in pages] == ["1", "2"]


def test_the_workflows_token_writes_as_the_actions_bot(double: GitHubDouble) -> None:
    """/user answers a personal token with its login; the workflow's token gets 403 there."""
    double.seed_comment(7, f"{MARKER}\nold", login=BOT_LOGIN)
    assert upsert(double, "report") is False
    assert double.requests_matching("GET", r"/user$")[0].status == 403


def test_the_body_is_cut_to_githubs_limit() -> None:
    body = comment_body("x" * (BODY_LIMIT + 10))
    assert len(body) == BODY_LIMIT and body.startswith(MARKER)
    assert body.endswith("the whole report is in the job summary)\n")


def test_a_read_only_token_is_refused_with_the_permission_to_grant(double: GitHubDouble) -> None:
    double.add_fault(Fault(kind="status", status=403, method="POST", path=r"/comments$"))
    with pytest.raises(CommentError, match="pull-requests: write") as caught:
        upsert(double, "report")
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    ("repo", "number", "token", "api", "message"),
    [
        (REPO, 7, "", "https://api.github.com", "needs a token"),
        ("../etc", 7, TOKEN, "https://api.github.com", "not of the form owner/name"),
        ("a/..", 7, TOKEN, "https://api.github.com", "not of the form owner/name"),
        (REPO, 0, TOKEN, "https://api.github.com", "1 or more"),
        (REPO, 7, TOKEN, "file:///etc/passwd", "only https:// and http://"),
    ],
)
def test_what_cannot_work_is_refused_before_any_request(
    repo: str, number: int, token: str, api: str, message: str
) -> None:
    with pytest.raises(CommentError, match=message):
        upsert_comment(
            repo=repo,
            number=number,
            markdown="x",
            token=token,
            api_url=api,
            reporter=Reporter(io.StringIO()),
            budget=Budget(1),
        )


# -- the command line -----------------------------------------------------------------------


def lock_diff(
    history: Path, double: GitHubDouble, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    *extra: str, token: str = TOKEN,
) -> tuple[int, str]:  # fmt: skip
    monkeypatch.setenv("GITHUB_API_URL", double.api_url)
    monkeypatch.setenv("GITHUB_REPOSITORY", REPO)
    if token:
        monkeypatch.setenv("GITHUB_TOKEN", token)
    else:
        monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    code = main(["lock-diff", "--base", "v1", *extra, str(_spec(history))])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_the_cli_posts_the_report(
    history: Path, double: GitHubDouble, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    code, text = lock_diff(history, double, monkeypatch, capsys, "--pr-comment", "7")
    assert code == 0, text
    [comment] = double.comments_on(7)
    assert comment.body.startswith(MARKER + "\n## Lock changes in `stacks/basic/venvstacks.toml`")
    assert "| attrs | upgraded | 25.3.0 | 26.1.0 |" in comment.body
    assert "lock-diff comment posted" in text and TOKEN not in text


def test_the_cli_warns_when_github_refuses_and_keeps_the_diffs_exit_code(
    history: Path, double: GitHubDouble, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    double.add_fault(Fault(kind="status", status=403, method="POST", path=r"/comments$"))
    code, text = lock_diff(history, double, monkeypatch, capsys, "--pr-comment", "7")
    assert code == 0, text
    assert "pull request #7: no comment" in text and "pull-requests: write" in text
    assert double.comments_on(7) == [] and TOKEN not in text


def test_the_cli_without_a_token_is_one_error_before_anything(
    history: Path, double: GitHubDouble, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    code, text = lock_diff(history, double, monkeypatch, capsys, "--pr-comment", "7", token="")
    assert code == 2, text
    assert [line for line in text.splitlines() if line.startswith("error")] == [
        "error: --pr-comment needs a token: set GITHUB_TOKEN (the workflow's token, with "
        "pull-requests: write)"
    ]
    assert double.requests == []
