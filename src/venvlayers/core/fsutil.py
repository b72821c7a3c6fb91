"""Atomic, deterministic file writing: never leave a half-written output behind."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from venvlayers.core.errors import StorageError, environment_error
from venvlayers.core.rmtree import remove_tree, remove_tree_quietly


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: The process umask, read once at import (setting it is the only way to read it)
UMASK = _read_umask()


def file_mode(executable: bool = False) -> int:
    """The mode any other tool would give a new file: 0666 (0777) minus the umask."""
    return (0o777 if executable else 0o666) & ~UMASK


def dumps_json(data: Any, *, ascii_only: bool = False) -> str:
    """JSON the way every venvlayers file is written: sorted, indented, trailing newline.

    ``ascii_only`` escapes non-ASCII text as venvstacks does in the files it also writes.
    """
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=ascii_only) + "\n"


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temp path beside ``target``; rename it over ``target`` only on success.

    The file gets the mode the umask gives new files (mkstemp's would be 0600). A full
    disk, a read-only folder and the like become a ``StorageError`` naming ``target``, and
    so does a ``target`` that is not a regular file (``regular_file_target``).
    """
    regular_file_target(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, file_mode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise _storage_error(exc, target) from None
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.filename not in (None, str(tmp), str(target)):
            raise  # about another file: the caller knows which
        raise _storage_error(exc, target) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _storage_error(exc: OSError, target: Path) -> Exception:
    if exc.filename is None:
        exc.filename = str(target)
    return environment_error(exc) or exc


_NOT_REGULAR = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISLNK, "a link"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
    (stat.S_ISFIFO, "a pipe"),
    (stat.S_ISSOCK, "a socket"),
)


def regular_file_target(target: Path) -> os.stat_result | None:
    """``target``'s status when it is a regular file, None when nothing is there.

    Anything else is a ``StorageError`` naming it: writers replace regular files only, so
    ``--report /dev/stdout`` never replaces the system's link, ``/dev/zero`` is never read
    and a folder is never swapped for a file.
    """
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _storage_error(exc, target) from None
    for test, kind in _NOT_REGULAR:
        if test(st.st_mode):
            raise StorageError(
                f"{target}: is {kind}, not a regular file; write to a file path instead",
                path=target,
            )
    return st


def holds_text(target: Path, text: str) -> bool:
    """Whether ``target`` is a regular file holding exactly ``text`` (UTF-8)."""
    data = text.encode("utf-8")
    existing = regular_file_target(target)
    try:
        return (
            existing is not None and existing.st_size == len(data) and target.read_bytes() == data
        )
    except OSError:
        return False


def write_text_atomic(target: Path, text: str) -> bool:
    """Write ``text`` to ``target`` unless it already holds exactly that. True if written.

    Leaving identical files alone keeps their mtime, so "nothing changed" is visible.
    """
    if holds_text(target, text):
        return False
    with atomic_path(target) as tmp:
        tmp.write_bytes(text.encode("utf-8"))
    return True


def write_json_atomic(target: Path, data: Any, *, ascii_only: bool = False) -> bool:
    return write_text_atomic(target, dumps_json(data, ascii_only=ascii_only))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_source(path: Path) -> str:
    """sha256 of a text file with CRLF read as LF: a Windows checkout (git autocrlf) of a
    lock or a launch module must hash like the Linux one it was made on."""
    return hashlib.sha256(path.read_bytes().replace(b"\r\n", b"\n")).hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def replace_dir(staging: Path, target: Path) -> None:
    """Move a fully prepared ``staging`` folder into place at ``target``."""
    if target.exists() or target.is_symlink():
        old = target.with_name(f".{target.name}.old")
        if old.exists():
            remove_tree(old)
        os.replace(target, old)
        os.replace(staging, target)
        remove_tree_quietly(old)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, target)


def link_or_copy(source: str | Path, destination: str | Path) -> None:
    """Hard-link ``source`` (free for gigabyte archives on one file system), else copy it."""
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)
