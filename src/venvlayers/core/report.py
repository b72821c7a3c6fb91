"""Reporting: plain text locally, log groups/annotations/outputs/summaries under GitHub Actions.

Stage functions never print; they call a ``Reporter``. ``Reporter.from_env()`` picks the
GitHub flavour when ``GITHUB_ACTIONS=true``.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from venvlayers.core.errors import StorageError, VenvlayersError

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x85\u2028\u2029]")


def neutralize(text: str) -> str:
    """``text`` with no line able to act as a GitHub Actions workflow command.

    The runner reads a log line as a command when, after leading whitespace, it starts
    with ``::`` (or holds ``##[``). Every line of text we print that we did not build as a
    command ourselves goes through here, so a newline in a layer name, a file name or a
    server's answer can never start an ``::error`` or ``::add-mask`` line.
    """
    lines = _LINE_BREAK.split(text)
    safe = []
    for line in lines:
        stripped = line.lstrip()
        if stripped.startswith("::"):
            line = line[: len(line) - len(stripped)] + ": :" + stripped[2:]
        safe.append(line.replace("##[", "## ["))
    return "\n".join(safe)


def one_line(text: str) -> str:
    """``text`` on one line: line breaks and other control characters shown escaped."""
    flat = _LINE_BREAK.sub(lambda _: "\\n", text).replace("\t", " ")
    return neutralize(_CONTROL.sub(lambda m: repr(m.group())[1:-1], flat))


def _escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(value: str) -> str:
    return _escape_data(value).replace(":", "%3A").replace(",", "%2C")


OUTPUT_LOCK = threading.Lock()


def write_line(stream: TextIO, text: str) -> None:
    """Write ``text`` and its newline in one write, never between another thread's two:
    layers lock, build and compress concurrently, and a CI log (``… 2>&1 | cat``) must
    never show two status lines joined."""
    with OUTPUT_LOCK:
        stream.write(text if text.endswith("\n") else text + "\n")
        stream.flush()


class Reporter:
    """Plain-text progress and results on stderr (results that are data go to stdout)."""

    def __init__(self, stream: TextIO | None = None, *, quiet: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet

    @staticmethod
    def from_env(*, quiet: bool = False) -> Reporter:
        if os.environ.get("GITHUB_ACTIONS") == "true":
            return GitHubReporter(quiet=quiet)
        return Reporter(quiet=quiet)

    def info(self, message: str) -> None:
        if not self.quiet:
            write_line(self.stream, neutralize(message))

    def warning(self, message: str, *, path: Path | None = None, line: int | None = None) -> None:
        where = f"{path}:{line}: " if path and line else f"{path}: " if path else ""
        write_line(self.stream, f"warning: {one_line(where + message)}")

    def error(self, error: VenvlayersError) -> None:
        write_line(self.stream, f"error: {one_line(error.message)}")

    @contextmanager
    def group(self, title: str) -> Iterator[None]:
        self.info(title)
        yield

    def mask(self, secret: str) -> None:
        """Plain text has no log masking; callers must never print secrets anyway."""

    def set_output(self, name: str, value: str) -> None:
        """Step outputs exist only under GitHub Actions."""

    def summary(self, markdown: str) -> None:
        """Step summaries exist only under GitHub Actions."""


class GitHubReporter(Reporter):
    """Workflow commands on stdout, outputs and summaries through the runner's files."""

    def __init__(self, stream: TextIO | None = None, *, quiet: bool = False) -> None:
        super().__init__(stream if stream is not None else sys.stdout, quiet=quiet)
        # Layers lock and build concurrently: each thread's group is collected and
        # written whole, so log groups never interleave.
        self._local = threading.local()

    def _emit(self, line: str) -> None:
        buffer: list[str] | None = getattr(self._local, "buffer", None)
        if buffer is not None:
            buffer.append(line)
            return
        write_line(self.stream, line)

    def info(self, message: str) -> None:
        if not self.quiet:
            self._emit(neutralize(message))

    def _command(self, name: str, message: str, **props: str | int | None) -> None:
        rendered = ",".join(
            f"{key}={_escape_property(str(value))}" for key, value in props.items() if value
        )
        sep = " " if rendered else ""
        self._emit(f"::{name}{sep}{rendered}::{_escape_data(message)}")

    def warning(self, message: str, *, path: Path | None = None, line: int | None = None) -> None:
        self._command("warning", message, file=_workspace_relative(path), line=line)

    def error(self, error: VenvlayersError) -> None:
        self._command("error", error.message, file=_workspace_relative(error.path), line=error.line)

    @contextmanager
    def group(self, title: str) -> Iterator[None]:
        if getattr(self._local, "buffer", None) is not None:
            yield  # GitHub groups do not nest: the inner one joins the outer
            return
        self._local.buffer = []
        try:
            yield
        finally:
            lines, self._local.buffer = self._local.buffer, None
            write_line(
                self.stream, "\n".join([f"::group::{_escape_data(title)}", *lines, "::endgroup::"])
            )

    def mask(self, secret: str) -> None:
        # Never buffered: the runner must know a secret before anything could print it
        if secret:
            for line in secret.splitlines():
                if line.strip():
                    write_line(self.stream, f"::add-mask::{line}")

    def set_output(self, name: str, value: str) -> None:
        append_env_file("GITHUB_OUTPUT", name, value)

    def summary(self, markdown: str) -> None:
        text = markdown if markdown.endswith("\n") else markdown + "\n"
        _append("GITHUB_STEP_SUMMARY", text)


def _workspace_relative(path: Path | None) -> str | None:
    """Annotations need repository-relative paths to attach to the right file."""
    if path is None:
        return None
    workspace = os.environ.get("GITHUB_WORKSPACE")
    if workspace:
        try:
            return Path(path).resolve().relative_to(Path(workspace).resolve()).as_posix()
        except ValueError:
            pass
    return Path(path).as_posix()


def append_env_file(variable: str, name: str, value: str) -> None:
    """Append ``name=value`` to the runner file named by ``variable`` (GITHUB_OUTPUT/GITHUB_ENV).

    Multi-line values use a random heredoc delimiter so content cannot end the block early.
    """
    if "\n" in value or "\r" in value:
        import uuid

        delimiter = f"ghadelimiter_{uuid.uuid4().hex}"
        _append(variable, f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
    else:
        _append(variable, f"{name}={value}\n")


def _append(variable: str, text: str) -> None:
    """Append ``text`` to the runner's file named by ``variable`` (nothing when unset).

    The runner's files are the environment's: a folder, a full disk or a missing parent is
    a ``StorageError`` naming the variable (exit 2), never a traceback."""
    target = os.environ.get(variable)
    if not target:
        return
    try:
        with open(target, "a", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise StorageError(
            f"{variable} ({target}): cannot append to it ({exc.strerror or exc}); the runner's"
            " file must be a writable file",
            path=target,
        ) from None
