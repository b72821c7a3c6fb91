"""Run locks: two venvlayers runs never work on one folder at the same time.

API (reused by build, publish, export, merge and deploy)::

    from venvlayers.core.runlock import run_lock

    with run_lock(folder, what="build folder of stack x", notify=reporter.info):
        ...  # this process alone writes in ``folder`` (and in what it owns)

- ``run_lock(folder, *, what, notify=None, wait=True)`` creates ``folder`` if needed
  and holds an exclusive OS lock on ``folder/.venvlayers.lock`` (``LOCK_NAME``) for the
  block: ``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows. The operating system
  drops the lock when the process ends, ``kill -9`` included, so a crashed run never
  leaves a stale lock behind; whatever it left half-done is debris the next holder
  cleans (``debris.py``).
- A second run waits: it tells ``notify`` once who holds the lock (the pid and command
  line the holder wrote into the lock file) and blocks until the holder is done. With
  ``wait=False`` it raises ``RunLockBusy`` (a ``VenvlayersError``: one line, exit 2)
  instead.
- ``run_lock_file(path, ...)`` is the same with the lock file named explicitly: for a
  folder that is replaced as a whole (merge output, deploy target), lock a file beside
  it, ``beside(folder)`` = ``<parent>/.<name>.venvlayers.lock``, since a lock file
  inside would be swapped away with the folder while held.
- Re-entrant within a thread (``build --publish`` takes the stack lock twice); other
  threads of the same process wait like other processes do.
- The lock file starts with a dot, so folder listings that skip hidden files (release
  assets, merge inputs) never see it. It is never deleted: removing a lock file that
  another run is waiting on would let a third run lock a new file beside them.

Lock order, to rule out deadlocks: a stack's build folder first, then an output folder
or deploy target.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO

from venvlayers.core.errors import VenvlayersError

LOCK_NAME = ".venvlayers.lock"
# Windows locks a byte range and refuses reads of it: lock a byte far past the holder
# line so waiting runs can still read who holds the lock.
_WINDOWS_LOCK_OFFSET = 1 << 30
_POLL_SECONDS = 0.1


class RunLockBusy(VenvlayersError):
    """Another run holds the lock and ``wait=False`` was asked for."""


class _Held:
    def __init__(self) -> None:
        self.guard = threading.RLock()
        self.depth = 0
        self.file: IO[bytes] | None = None


_registry: dict[str, _Held] = {}
_registry_guard = threading.Lock()


def _held_for(path: Path) -> _Held:
    key = os.path.normcase(str(path.absolute()))
    with _registry_guard:
        return _registry.setdefault(key, _Held())


def beside(folder: Path) -> Path:
    """The lock file for a folder that is replaced as a whole: a hidden sibling."""
    return folder.parent / f".{folder.name}{LOCK_NAME}"


def run_lock(
    folder: Path,
    *,
    what: str,
    notify: Callable[[str], None] | None = None,
    wait: bool = True,
) -> AbstractContextManager[None]:
    """Hold the run lock of ``folder`` for the block (see the module docstring)."""
    return run_lock_file(folder / LOCK_NAME, what=what, notify=notify, wait=wait)


@contextmanager
def run_lock_file(
    path: Path,
    *,
    what: str,
    notify: Callable[[str], None] | None = None,
    wait: bool = True,
) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if missing) for the block."""
    folder = path.parent
    held = _held_for(path)
    if not held.guard.acquire(blocking=False):
        if not wait:
            raise RunLockBusy(_busy(what, path, "another thread of this run"))
        held.guard.acquire()
    try:
        if held.depth == 0:
            held.file = _acquire(folder, path, what=what, notify=notify, wait=wait)
        held.depth += 1
        try:
            yield
        finally:
            held.depth -= 1
            if held.depth == 0 and held.file is not None:
                _release(held.file)
                held.file = None
    finally:
        held.guard.release()


def _busy(what: str, path: Path, holder: str) -> str:
    return (
        f"{path}: another venvlayers run ({holder}) is working on {what}; "
        "wait for it to finish, then run again"
    )


def _acquire(
    folder: Path, path: Path, *, what: str, notify: Callable[[str], None] | None, wait: bool
) -> IO[bytes]:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+b")  # noqa: SIM115 - held past this function
    except OSError as exc:
        raise VenvlayersError(
            f"{path}: cannot create the run lock for {what}: {exc.strerror}", path=path
        ) from None
    try:
        if not _try_lock(handle):
            holder = _holder(handle)
            if not wait:
                raise RunLockBusy(_busy(what, path, holder), path=path)
            if notify is not None:
                notify(f"waiting for another venvlayers run ({holder}) to finish with {what}")
            _lock_blocking(handle)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}: {' '.join(sys.argv)[:500]}\n".encode())
        handle.flush()
    except BaseException:
        handle.close()
        raise
    return handle


def _holder(handle: IO[bytes]) -> str:
    try:
        handle.seek(0)
        text = handle.read(600).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    first = text.splitlines()[0] if text else ""
    return "".join(c if c.isprintable() else "?" for c in first) or "pid unknown"


if sys.platform == "win32":
    import msvcrt

    def _try_lock(handle: IO[bytes]) -> bool:
        handle.seek(_WINDOWS_LOCK_OFFSET)
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _lock_blocking(handle: IO[bytes]) -> None:
        while not _try_lock(handle):
            time.sleep(_POLL_SECONDS)

    def _release(handle: IO[bytes]) -> None:
        try:
            handle.seek(_WINDOWS_LOCK_OFFSET)
            msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
        finally:
            handle.close()

else:
    import fcntl

    def _try_lock(handle: IO[bytes]) -> bool:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _lock_blocking(handle: IO[bytes]) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)

    def _release(handle: IO[bytes]) -> None:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        finally:
            handle.close()


__all__ = ["LOCK_NAME", "RunLockBusy", "beside", "run_lock", "run_lock_file"]
