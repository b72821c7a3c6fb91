"""One comment on a pull request, posted once and edited on every later run (lock-diff).

The comment starts with a hidden marker (``MARKER``). A run lists the pull request's
comments, takes the oldest one that starts with the marker and was written by the token's
own account (``github-actions[bot]`` for a workflow's token, which may not read ``/user``),
and edits it; only when there is none does it post one. Other bots' and people's comments
are never edited, whatever they contain.

REST calls only (``/repos/{repo}/issues/{n}/comments``, ``/repos/{repo}/issues/comments/{id}``),
through ``net.github.GitHubClient``'s session and retries; the token comes from the caller
(``GITHUB_TOKEN``), is sent only to the API origin (``net.urls``: next pages included) and
is never printed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from venvlayers.core.errors import VenvlayersError
from venvlayers.core.report import Reporter
from venvlayers.net.github import GitHubClient, response_failure
from venvlayers.net.retry import Budget, HttpFailure
from venvlayers.net.urls import scheme_problem

MARKER = "<!-- venvlayers:lock-diff -->"
WORKFLOW_BOT = "github-actions[bot]"
#: GitHub refuses comment bodies over 65536 characters
BODY_LIMIT = 65536
TRUNCATED = "\n\n… (cut here: the whole report is in the job summary)\n"
_REPO = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_NEXT = re.compile(r'<([^>]*)>\s*;\s*rel="next"')


class CommentError(VenvlayersError):
    """The pull request comment could not be read or written."""


@dataclass(frozen=True)
class CommentResult:
    url: str  # the comment's web address
    created: bool  # False: an earlier comment was edited


def comment_body(markdown: str) -> str:
    """The marker, then ``markdown`` (already escaped), cut to GitHub's limit."""
    body = f"{MARKER}\n{markdown}"
    if len(body) > BODY_LIMIT:
        body = body[: BODY_LIMIT - len(TRUNCATED)] + TRUNCATED
    return body


class _CommentClient(GitHubClient):
    def refused(self, what: str, failure: HttpFailure) -> VenvlayersError:
        if failure.status == 403:
            return self.error(
                self.scrub(
                    f"GitHub refused to {what}: {failure.describe()} — the job needs "
                    "`permissions: pull-requests: write` (pull requests from forks get a "
                    "read-only token)"
                )
            )
        return super().refused(what, failure)


def check_target(repo: str, number: int, token: str, api_url: str) -> None:
    """Refuse (exit 2) what cannot work before any work is done."""
    if not token:
        raise CommentError(
            "--pr-comment needs a token: set GITHUB_TOKEN (the workflow's token, with "
            "pull-requests: write)"
        )
    if not _REPO.fullmatch(repo) or any(part in (".", "..") for part in repo.split("/")):
        raise CommentError(
            f"repository {repo[:100]!r} is not of the form owner/name: pass --repo or set "
            "GITHUB_REPOSITORY"
        )
    if number < 1:
        raise CommentError(f"--pr-comment {number}: a pull request number is 1 or more")
    if problem := scheme_problem(api_url):
        raise CommentError(f"GITHUB_API_URL {api_url[:200]!r} {problem}")


def upsert_comment(
    *,
    repo: str,
    number: int,
    markdown: str,
    token: str,
    api_url: str,
    reporter: Reporter,
    budget: Budget,
) -> CommentResult:
    """Edit this tool's comment on pull request ``number`` of ``repo``, or post it."""
    check_target(repo, number, token, api_url)
    reporter.mask(token)
    client = _CommentClient(
        repo=repo,
        token=token,
        api_url=api_url,
        reporter=reporter,
        budget=budget,
        error=CommentError,
    )
    try:
        return _upsert(client, number, comment_body(markdown))
    finally:
        client.close()


def _upsert(client: GitHubClient, number: int, body: str) -> CommentResult:
    author = client.retrying("find the token's account", lambda: _author(client))
    base = f"{client.api_url}/repos/{client.repo_name}/issues"

    def action() -> CommentResult:
        # listed again on every attempt: a post whose answer was lost is found, not repeated
        ours = [
            c
            for c in _comments(client, f"{base}/{number}/comments?per_page=100")
            if str(c.get("body") or "").startswith(MARKER)
            and str((c.get("user") or {}).get("login") or "") == author
        ]
        if ours:
            oldest = min(ours, key=lambda c: int(c.get("id") or 0))
            if oldest.get("body") == body:
                return CommentResult(str(oldest.get("html_url") or ""), created=False)
            edited = _send(client, "PATCH", f"{base}/comments/{int(oldest['id'])}", body)
            return CommentResult(str(edited.get("html_url") or ""), created=False)
        posted = _send(client, "POST", f"{base}/{number}/comments", body)
        return CommentResult(str(posted.get("html_url") or ""), created=True)

    return client.retrying(f"comment on pull request #{number} of {client.repo_name}", action)


def _author(client: GitHubClient) -> str:
    """The token's login; a workflow's token may not ask (403): it is the Actions bot."""
    with client.session.get(f"{client.api_url}/user", timeout=client.timeouts()) as response:
        if response.status_code in (403, 404):
            return WORKFLOW_BOT
        if response.status_code >= 400:
            raise response_failure(response)
        data = response.json()
    login = data.get("login") if isinstance(data, dict) else None
    return str(login) if login else WORKFLOW_BOT


def _comments(client: GitHubClient, url: str) -> list[dict[str, Any]]:
    """Every comment, following ``Link: rel="next"`` on the API origin only."""
    found: list[dict[str, Any]] = []
    pages = 0
    next_url: str | None = url
    while next_url is not None:
        pages += 1
        if pages > 100:  # 10,000 comments: an answer that never ends
            raise CommentError(f"{client.repo_name}: more than 100 pages of comments")
        with client.session.get(
            client.checked_url(next_url, "next page"), timeout=client.timeouts()
        ) as response:
            if response.status_code >= 400:
                raise response_failure(response)
            page = response.json()
            link = response.headers.get("Link", "")
        if not isinstance(page, list):
            raise HttpFailure(None, "GitHub sent something other than a list of comments")
        found.extend(c for c in page if isinstance(c, dict))
        match = _NEXT.search(link)
        next_url = match.group(1) if match else None
    return found


def _send(client: GitHubClient, method: str, url: str, body: str) -> dict[str, Any]:
    with client.session.request(
        method, url, json={"body": body}, timeout=client.timeouts()
    ) as response:
        if response.status_code >= 400:
            raise response_failure(response)
        data = response.json()
    if not isinstance(data, dict):
        raise HttpFailure(None, "GitHub sent something other than a comment")
    return data


__all__ = [
    "MARKER",
    "CommentError",
    "CommentResult",
    "check_target",
    "comment_body",
    "upsert_comment",
]
