"""Removing a folder tree without recursion, however deep it is.

``shutil.rmtree`` recurses once per folder level (Python 3.12): a tree nested deeper than
the recursion limit (an archive member 1,200 folders down) raises ``RecursionError``,
which is not an ``OSError``, so ``ignore_errors=True`` lets it through; and a tree deeper
than ``PATH_MAX`` cannot be reached by path at all. Every cleanup (deploy's tidy, crash
debris, staging and scratch folders) goes through ``remove_tree`` instead: it walks with
an explicit stack, from one open folder to the next (``dir_fd``), so neither the depth
nor the length of the paths matters, and it never follows a link.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
_FD_BASED = (
    os.open in os.supports_dir_fd
    and os.unlink in os.supports_dir_fd
    and os.rmdir in os.supports_dir_fd
    and os.scandir in os.supports_fd
)


def remove_tree(path: Path | str) -> None:
    """Remove ``path`` (a folder tree, a file or a link: never what a link points at).

    Nothing there is not an error. Raises ``OSError`` when something cannot be removed
    (what could be removed is gone).
    """
    path = os.fspath(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return
    if _FD_BASED:
        _remove_by_fd(path, st)
    else:  # pragma: no cover - Windows: no dir_fd; paths there are long-path aware
        _remove_by_path(path)


def remove_tree_quietly(path: Path | str) -> bool:
    """``remove_tree``, any failure ignored (debris that stays is never published).

    True when nothing is left at ``path``.
    """
    with contextlib.suppress(OSError):
        remove_tree(path)
    return not os.path.lexists(path)


def _remove_by_fd(path: str, top: os.stat_result) -> None:
    """Depth first: each stack entry is a folder's name in its parent and the subfolders
    still to visit in it; only the folder being emptied is open, and ``..`` leads back up
    (checked against the device and inode seen on the way down)."""
    fd = os.open(path, _DIR_FLAGS)
    if not _same(os.fstat(fd), top):
        os.close(fd)
        raise OSError(f"{path}: replaced while it was being removed")
    # (name in the parent, (st_dev, st_ino) of the parent, subfolders left to enter)
    stack: list[tuple[str, tuple[int, int], list[str]]] = []
    pending = _empty_files(fd)
    try:
        while True:
            if pending:
                name = pending.pop()
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    continue
                except OSError:
                    # not a folder any more (replaced meanwhile): remove whatever it is
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(name, dir_fd=fd)
                    continue
                parent = os.fstat(fd)
                stack.append((name, (parent.st_dev, parent.st_ino), pending))
                os.close(fd)
                fd = child
                pending = _empty_files(fd)
                continue
            if not stack:
                break
            name, (dev, ino), pending = stack.pop()
            parent_fd = os.open("..", _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = parent_fd
            seen = os.fstat(fd)
            if (seen.st_dev, seen.st_ino) != (dev, ino):
                raise OSError(f"{path}: a folder in it was moved while it was being removed")
            os.rmdir(name, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(path)


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _empty_files(fd: int) -> list[str]:
    """Unlink every non-folder in the open folder ``fd``; return its subfolders' names."""
    folders: list[str] = []
    with os.scandir(fd) as entries:
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if is_dir:
                folders.append(entry.name)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.name, dir_fd=fd)
    return folders


def _remove_by_path(path: str) -> None:  # pragma: no cover - Windows
    """The same walk by full paths (Windows: no ``dir_fd``)."""
    stack: list[tuple[str, list[str]]] = [(path, _empty_files_at(path))]
    while stack:
        folder, pending = stack[-1]
        if pending:
            child = os.path.join(folder, pending.pop())
            stack.append((child, _empty_files_at(child)))
            continue
        stack.pop()
        os.rmdir(folder)


def _empty_files_at(folder: str) -> list[str]:  # pragma: no cover - Windows
    folders: list[str] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False) and not getattr(entry, "is_junction", bool)():
                folders.append(entry.name)
                continue
            try:
                os.unlink(entry.path)
            except PermissionError:
                os.chmod(entry.path, stat.S_IWRITE)  # read-only files refuse deletion there
                os.unlink(entry.path)
            except FileNotFoundError:
                pass
    return folders


__all__ = ["remove_tree", "remove_tree_quietly"]
