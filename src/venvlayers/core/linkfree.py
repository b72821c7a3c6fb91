"""Reading files of a deployed tree without following a link out of it.

A deployed layer's files are read (updates hash them, hard-link them into the next
deployment); a symlinked folder planted inside it must not lead those reads elsewhere.
Each folder is checked once per tree (``os.path.realpath`` costs a system call per path
component: per file, it was a fifth of a multi-GB update's planning), and the file itself
is opened with ``O_NOFOLLOW``. Paths come from layer indexes, which a hostile server
writes: a part that is not one plain name (``..``, ``.``, empty) never resolves.
"""

from __future__ import annotations

import os
import stat
from typing import IO

_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


class LinkFreeTree:
    """Files below ``root`` reached through real folders only."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.path.realpath(root)
        # parts -> the folder's path, None if a link (or nothing) is on the way; a race
        # between threads fills an entry twice with the same answer
        self._folders: dict[tuple[str, ...], str | None] = {(): self.root}

    def folder(self, parts: tuple[str, ...]) -> str | None:
        """The real folder at ``parts`` below the root (None: a link or nothing there, or
        ``parts`` is not a plain path below the root)."""
        if not all(_plain(part) for part in parts):  # "..", "", "a/b": could leave the tree
            return None
        known = len(parts)
        while parts[:known] not in self._folders:  # the deepest folder known (a loop:
            known -= 1  # layers nest thousands deep)
        path = self._folders[parts[:known]]
        for depth in range(known + 1, len(parts) + 1):
            if path is not None:
                path = os.path.join(path, parts[depth - 1])
                try:
                    if not stat.S_ISDIR(os.lstat(path).st_mode):
                        path = None
                except OSError:
                    path = None
            self._folders[parts[:depth]] = path
        return path

    def open_file(self, parts: tuple[str, ...]) -> IO[bytes] | None:
        """The regular file at ``parts``, open for reading (None: a link on the way, not a
        regular file, or nothing there)."""
        folder = self.folder(parts[:-1])
        if folder is None or not parts or not _plain(parts[-1]):
            return None
        try:
            fd = os.open(os.path.join(folder, parts[-1]), _READ_FLAGS)
        except OSError:
            return None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        return os.fdopen(fd, "rb")


def _plain(name: str) -> bool:
    """A name of one entry in a folder: never its parent or itself, never two levels."""
    return (
        name not in ("", ".", "..")
        and "/" not in name
        and "\0" not in name
        and (os.sep == "/" or ("\\" not in name and ":" not in name))
    )
