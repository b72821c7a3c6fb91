"""Errors a user can cause. The CLI prints them on one line and exits 2."""

from __future__ import annotations

from pathlib import Path


class VenvlayersError(Exception):
    """A problem with the user's input or environment, never a bug in venvlayers.

    ``path`` and ``line`` locate the cause (a spec line becomes a GitHub annotation).
    """

    exit_code = 2

    def __init__(self, message: str, *, path: Path | str | None = None, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.path = Path(path) if path is not None else None
        self.line = line

    def __str__(self) -> str:
        return self.message


class SpecError(VenvlayersError):
    """The stack spec is invalid."""


class LockError(VenvlayersError):
    """Locking failed (conflict, missing wheel, resolver failure)."""


class StaleLockError(LockError):
    """A lock is missing or out of date where an up-to-date lock is required (exit 1: a check failed)."""

    exit_code = 1


class BuildError(VenvlayersError):
    """Building a layer environment failed."""


class ArchiveError(VenvlayersError):
    """An archive is unsafe, corrupt or does not match its metadata."""


class PublishError(VenvlayersError):
    """Publishing or exporting failed."""


class DeployError(VenvlayersError):
    """Deploying published layers failed."""


class MergeError(VenvlayersError):
    """Per-platform publish outputs are inconsistent."""


class ReleaseError(VenvlayersError):
    """GitHub refused or kept failing a release operation."""


class UvError(VenvlayersError):
    """uv failed in a way we could not translate into a more specific error."""


class ProcessError(VenvlayersError):
    """A tool or interpreter we started failed (the message says which, why and its exit code)."""
