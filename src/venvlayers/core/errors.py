"""Errors a user can cause. The CLI prints them on one line and exits 2."""

from __future__ import annotations

import errno
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

    stderr: str = ""
    """uv's whole error output, for translations that need more than the summary."""


class ProcessError(VenvlayersError):
    """A tool or interpreter we started failed (the message says which, why and its exit code)."""


class StorageError(VenvlayersError):
    """The file system refused: a full disk, a read-only or missing folder, a name too long."""


# errno values a user (bad paths, permissions) or the machine (full disk, I/O) causes
_USER_OR_MACHINE_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.ENAMETOOLONG,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
    errno.ENOENT,
    errno.ELOOP,
    errno.EMFILE,
    errno.ENFILE,
    errno.EIO,
    errno.EFBIG,
    errno.ENOMEM,
    errno.EXDEV,
    errno.EBUSY,
    errno.ETXTBSY,
}
_HINTS = {
    errno.ENOSPC: "free some space (or point the build/output folder at a larger disk) and run again",
    errno.EDQUOT: "free some space (disk quota exceeded) and run again",
    errno.EROFS: "choose a writable folder",
    errno.EACCES: "check the permissions, or choose another folder",
    errno.EPERM: "check the permissions, or choose another folder",
    errno.ENAMETOOLONG: "use a shorter name or path",
    errno.ENOTDIR: "a part of this path is a file, not a folder; choose another path",
    errno.EEXIST: "a file of that name is in the way; remove it or choose another path",
    errno.EISDIR: "this is a folder, a file was expected",
}


def environment_error(exc: BaseException, doing: str | None = None) -> StorageError | None:
    """A one-line user error for ``exc`` when a user or the machine caused it, else None.

    Covers OSErrors with a user/machine errno (naming the path when the OS gave one),
    NUL characters in paths, text that is not UTF-8 and input nested beyond Python's
    recursion limit.
    """
    during = f" while {doing}" if doing else ""
    if isinstance(exc, OSError) and exc.errno in _USER_OR_MACHINE_ERRNOS:
        where = f"{_path_text(exc.filename)}: " if exc.filename else ""
        other = f" -> {_path_text(exc.filename2)}" if exc.filename2 else ""
        hint = _HINTS.get(exc.errno or 0)
        return StorageError(
            f"{where}{exc.strerror or exc}{other}{during}" + (f"; {hint}" if hint else ""),
            path=Path(exc.filename)
            if isinstance(exc.filename, str) and "\0" not in exc.filename
            else None,
        )
    if isinstance(exc, ValueError) and "null byte" in str(exc):
        return StorageError(f"a path contains a NUL character{during}; remove it")
    if isinstance(exc, UnicodeDecodeError):
        return StorageError(
            f"a file that must be UTF-8 text is not ({exc.reason} at byte {exc.start}){during}"
        )
    if isinstance(exc, RecursionError):
        return StorageError(f"the input is nested too deeply to read{during}")
    return None


def _path_text(name: object) -> str:
    text = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
    return text if len(text) <= 200 else text[:100] + "..." + text[-60:]
