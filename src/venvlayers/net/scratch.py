"""Scratch files of one run in the download cache: ``<cache>/partial/<stem>.<random>.ranges``,
the byte ranges a deploy fetched to update one layer (``deploy/delta``).

Such a file is useful only to the run that fetched it (a deploy over another deployed
version needs other ranges; the cache's reusable content is ``sha256/``), so:

- every run makes its own file, never shared, and holds an exclusive OS lock on it
  (``fcntl.flock``) from its creation until it is removed;
- the run removes it when it is done with it (``Scratch.close``: the layer staged and the
  deployment switched, or the deploy failed);
- a file nobody holds the lock of was left by a killed run (the OS drops a process's
  locks when it ends, ``kill -9`` included), and ``prune`` removes it; every new scratch
  file and every whole-archive fetch (``net/downloads``) prunes first, so leftovers last
  only until the next deploy that downloads into the same cache. A file
  another run holds is never touched, so deploys into several targets can share a cache.

Windows has no ``flock``: there a file open in another run cannot be deleted, so pruning
skips it; only this run's own files are removed while open.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

SUFFIX = ".ranges"

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]


def _try_lock(fd: int) -> bool:
    """An exclusive lock on ``fd``'s file without waiting (True: now held)."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _still_named(fd: int, path: Path) -> bool:
    """``path`` still names the file open as ``fd`` (no one removed or replaced it)."""
    try:
        named = os.stat(path)
    except OSError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


class Scratch:
    """One run's scratch file, locked while this object is open."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def close(self) -> None:
        """Remove the file (still holding its lock), then let the lock go. Idempotent."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        if fcntl is None:  # Windows deletes no open file: close it first
            os.close(fd)
            self.path.unlink(missing_ok=True)
            return
        try:
            if _still_named(fd, self.path):
                self.path.unlink(missing_ok=True)
        finally:
            os.close(fd)

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def prune(folder: Path) -> list[Path]:
    """Remove the scratch files in ``folder`` no live run holds; returns them."""
    removed: list[Path] = []
    try:
        candidates = sorted(folder.glob("*" + SUFFIX))
    except OSError:
        return removed
    for path in candidates:
        if fcntl is None:  # Windows: a file open in a live run cannot be deleted
            try:
                path.unlink()
                removed.append(path)
            except OSError:
                pass
            continue
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue  # gone already, or not a plain file of ours
        try:
            if _try_lock(fd) and _still_named(fd, path):
                path.unlink()
                removed.append(path)
        except OSError:
            pass  # removed meanwhile
        finally:
            os.close(fd)
    return removed


def new_scratch(folder: Path, stem: str, size: int) -> Scratch:
    """A new scratch file ``<stem>.<random>.ranges`` of ``size`` bytes (sparse) in
    ``folder``, locked; stale ones in ``folder`` are pruned first."""
    folder.mkdir(parents=True, exist_ok=True)
    prune(folder)
    while True:
        fd, name = tempfile.mkstemp(prefix=stem + ".", suffix=SUFFIX, dir=folder)
        path = Path(name)
        # another run's prune may have taken and removed it before this lock: then the
        # name no longer leads to this file, and a new one is made
        if _try_lock(fd) and _still_named(fd, path):
            break
        os.close(fd)
    try:
        os.ftruncate(fd, size)
    except BaseException:
        Scratch(path, fd).close()
        raise
    return Scratch(path, fd)
