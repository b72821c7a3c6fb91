"""A git server on 127.0.0.1 (git http-backend behind a small HTTP server), as actions/checkout
fetches from GitHub: ``{server}/{owner}/{repo}`` with the token as basic auth
(``x-access-token:<token>``, which checkout sends as an extra header).

Public repositories answer anyone; a private one answers only requests carrying one of its
tokens, and 404 otherwise (GitHub hides private repositories). Repositories are made from
folders (``publish``): each call commits the folder's files (fixed author and dates, so the
same files give the same commit) and moves the given refs to that commit. ``requests``
records each request's repository, service and whether it was authorized.

Serve it as ``http://github.localhost:PORT``: curl (so git) resolves ``*.localhost`` to
loopback, and @actions/artifact treats ``*.localhost`` servers as GitHub.com, not GHES.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .local_server import LocalHTTPServer

GIT_ENV = {
    "GIT_AUTHOR_NAME": "venvlayers tests",
    "GIT_AUTHOR_EMAIL": "tests@example.invalid",
    "GIT_COMMITTER_NAME": "venvlayers tests",
    "GIT_COMMITTER_EMAIL": "tests@example.invalid",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(*args: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run(
        ["git", *map(str, args)],
        cwd=cwd,
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(map(str, args))}: {done.stderr.strip()}")
    return done.stdout.strip()


@dataclass(frozen=True)
class GitRequest:
    repository: str
    service: str
    authorized: bool
    status: int


@dataclass
class Repository:
    name: str  # owner/repo
    bare: Path
    private: bool = False
    tokens: set[str] = field(default_factory=set)


class GitServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.repositories: dict[str, Repository] = {}
        self.requests: list[GitRequest] = []
        self._server: LocalHTTPServer | None = None
        self._lock = threading.Lock()

    def start(self) -> GitServer:
        owner = self

        class Handler(_Handler):
            server_double = owner

        self._server = LocalHTTPServer(Handler)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> GitServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://github.localhost:{self._server.port}"

    def create(
        self, name: str, *, private: bool = False, tokens: set[str] | None = None
    ) -> Repository:
        bare = self.root / name
        if not bare.exists():
            bare.mkdir(parents=True)
            git("init", "--quiet", "--bare", "-b", "main", bare)
            git("config", "uploadpack.allowAnySHA1InWant", "true", cwd=bare)
            git("config", "http.receivepack", "false", cwd=bare)
        repo = Repository(name, bare, private, set(tokens or ()))
        self.repositories[name.lower()] = repo
        return repo

    def publish(
        self,
        name: str,
        folder: Path,
        refs: list[str],
        message: str = "snapshot",
        files: list[str] | None = None,
        parent: str = "",
    ) -> str:
        """Commit ``folder`` (or only ``files`` of it) and point ``refs`` at it; the commit id."""
        repo = self.repositories[name.lower()]
        with tempfile.TemporaryDirectory(prefix="git-snapshot-") as tmp:
            work = Path(tmp)
            git("init", "--quiet", "-b", "main", work)
            listed = files if files is not None else [
                str(p.relative_to(folder)) for p in sorted(folder.rglob("*"))
                if p.is_file() and ".git" not in p.relative_to(folder).parts
            ]  # fmt: skip
            for rel in listed:
                target = work / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(folder / rel, target)
            git("add", "--all", cwd=work)
            if parent:
                git("fetch", "--quiet", repo.bare, parent, cwd=work)
                tree = git("write-tree", cwd=work)
                commit = git("commit-tree", tree, "-p", parent, "-m", message, cwd=work)
            else:
                git("commit", "--quiet", "--allow-empty", "-m", message, cwd=work)
                commit = git("rev-parse", "HEAD", cwd=work)
            git("push", "--quiet", "--force", repo.bare, f"{commit}:refs/heads/_incoming", cwd=work)
        for ref in refs:
            git("update-ref", ref, commit, cwd=repo.bare)
        git("update-ref", "-d", "refs/heads/_incoming", cwd=repo.bare)
        return commit

    def allowed(self, repo: Repository, authorization: str) -> bool:
        if not repo.private:
            return True
        if not authorization.lower().startswith("basic "):
            return False
        try:
            user_pass = base64.b64decode(authorization.split(" ", 1)[1]).decode()
        except ValueError:
            return False
        return user_pass.partition(":")[2] in repo.tokens


class _Handler(BaseHTTPRequestHandler):
    server_double: GitServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _serve(self) -> None:
        double = self.server_double
        split = urlsplit(self.path)
        parts = split.path.lstrip("/").split("/")
        name = "/".join(parts[:2]).removesuffix(".git")
        repo = double.repositories.get(name.lower())
        body = self._read_body()
        service = parts[-1] if len(parts) > 2 else ""
        authorization = self.headers.get("Authorization", "")
        if repo is None or not double.allowed(repo, authorization):
            double.requests.append(GitRequest(name, service, False, 404))
            self._answer(404, b"Repository not found.\n", {"Content-Type": "text/plain"})
            return
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "GIT_PROJECT_ROOT": str(double.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": "/" + "/".join([repo.name, *parts[2:]]),
            "QUERY_STRING": split.query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
        }
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        done = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, check=False
        )
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = done.stdout.partition(b"\n\n")
        status, headers = 200, {}
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers[key.strip()] = value.strip()
        double.requests.append(GitRequest(repo.name, service, bool(authorization), status))
        self._answer(status, payload, headers)

    do_GET = _serve
    do_POST = _serve
