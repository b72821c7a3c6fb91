"""The source tree as sorted entries, and what every writer shares (progress, ordered jobs)."""

from __future__ import annotations

import os
import stat
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Generic, Literal, TypeVar

from venvlayers.archive.formats import READ_SIZE, ExcludeCallback, ProgressCallback
from venvlayers.core.errors import ArchiveError

# --- scanning the source tree -----------------------------------------------------------

Kind = Literal["dir", "file", "symlink"]


@dataclass(frozen=True)
class Entry:
    rel: str  # posix path below the source folder; "" is the folder itself
    kind: Kind
    path: Path
    mode: int  # normalized permission bits
    size: int  # regular files only
    target: str  # symlinks only


def check_root_name(root_name: str, what: str) -> None:
    bad = (
        not root_name
        or root_name in (".", "..")
        or any(c in root_name for c in "/\\\0")
        or (len(root_name) >= 2 and root_name[1] == ":")
    )
    if bad:
        raise ArchiveError(f"{what} {root_name!r} must be a single folder name (no '/', '..').")


def _normalized_mode(kind: Kind, st_mode: int) -> int:
    if kind == "dir":
        return 0o755
    if kind == "symlink":
        return 0o777
    return 0o755 if st_mode & 0o111 else 0o644


def _utf8_name(path: Path, rel: str) -> None:
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        raise ArchiveError(
            f"{path}: the file name is not valid UTF-8; rename it before archiving."
        ) from None


def scan_tree(source_dir: Path, exclude: ExcludeCallback | None) -> list[Entry]:
    """Every folder, file and symlink below ``source_dir``, sorted by posix path."""
    entries = [Entry("", "dir", source_dir, 0o755, 0, "")]
    pending = [(source_dir, "")]
    while pending:
        folder, rel_folder = pending.pop()
        try:
            with os.scandir(folder) as it:
                children = list(it)
        except OSError as exc:
            raise ArchiveError(f"{folder}: cannot list the folder ({exc.strerror}).") from exc
        for child in children:
            rel = f"{rel_folder}/{child.name}" if rel_folder else child.name
            path = Path(child.path)
            _utf8_name(path, rel)
            if exclude is not None and exclude(PurePosixPath(rel)):
                continue
            st = child.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                entries.append(Entry(rel, "dir", path, 0o755, 0, ""))
                pending.append((path, rel))
            elif stat.S_ISREG(st.st_mode):
                # Hard links are simply stored again as regular files.
                mode = _normalized_mode("file", st.st_mode)
                entries.append(Entry(rel, "file", path, mode, st.st_size, ""))
            elif stat.S_ISLNK(st.st_mode):
                target = os.readlink(path)
                _utf8_name(path, target)
                if target.startswith("/") or os.path.isabs(target):
                    # Extraction refuses absolute links, so fail now rather than at deploy.
                    raise ArchiveError(
                        f"{path}: symlink to the absolute path {target!r}; make it relative "
                        "to its folder (or exclude it) so the layer can be relocated."
                    )
                entries.append(Entry(rel, "symlink", path, 0o777, 0, target))
            else:
                raise ArchiveError(
                    f"{path}: cannot archive a {_special_kind(st.st_mode)}; a layer may "
                    "only hold folders, regular files and symlinks. Remove it or exclude it."
                )
    entries.sort(key=lambda e: e.rel)
    return entries


def _special_kind(st_mode: int) -> str:
    if stat.S_ISSOCK(st_mode):
        return "socket"
    if stat.S_ISFIFO(st_mode):
        return "fifo"
    if stat.S_ISCHR(st_mode) or stat.S_ISBLK(st_mode):
        return "device file"
    return "special file"


def member_name(root_name: str, entry: Entry) -> str:
    return f"{root_name}/{entry.rel}" if entry.rel else root_name


def read_pieces(entry: Entry, start: int = 0, length: int | None = None) -> Iterator[bytes]:
    """The file's bytes from ``start``; ArchiveError if it shrank while being archived."""
    remaining = entry.size - start if length is None else length
    try:
        with entry.path.open("rb") as f:
            if start:
                f.seek(start)
            while remaining > 0:
                piece = f.read(min(READ_SIZE, remaining))
                if not piece:
                    raise ArchiveError(
                        f"{entry.path}: the file changed size while it was being archived; "
                        "make sure nothing writes to the layer, then retry."
                    )
                remaining -= len(piece)
                yield piece
    except OSError as exc:
        raise ArchiveError(f"{entry.path}: cannot read the file ({exc.strerror}).") from exc


class Progress:
    """Calls the callback about once per percent of content bytes (not once per file)."""

    def __init__(self, callback: ProgressCallback | None, total: int) -> None:
        self.callback = callback
        self.total = total
        self.done = 0
        self.step = max(total // 100, 1 << 20)
        self.next_report = self.step
        if callback is not None:
            callback(0, total)

    def advance(self, nbytes: int) -> None:
        self.done += nbytes
        if self.callback is not None and self.done >= self.next_report:
            self.next_report = self.done + self.step
            self.callback(min(self.done, self.total), self.total)

    def finish(self) -> None:
        if self.callback is not None:
            self.callback(self.total, self.total)


@dataclass(frozen=True)
class ArchiveJob:
    """What every format writer gets: the sorted entries, where and how to write them."""

    entries: list[Entry]
    root_name: str
    mtime: int
    out: IO[bytes]
    threads: int
    progress: Progress
    unit_starts: tuple[int, ...] = ()
    """Indexes of the entries that start a unit (``units.plan_units``); tar writers start
    a new xz stream or zstd frame there."""


# --- ordered parallel pipeline ----------------------------------------------------------


T = TypeVar("T")


class Ordered(Generic[T]):
    """Runs jobs on a pool, hands results back in submission order, bounded look-ahead."""

    def __init__(self, pool: ThreadPoolExecutor, window: int, sink: Callable[[T], None]):
        self.pool = pool
        self.window = window
        self.sink = sink
        self.queue: deque[Future[T]] = deque()

    def submit(self, job: Callable[[], T]) -> None:
        self.queue.append(self.pool.submit(job))
        self._trim()

    def put_ready(self, value: T) -> None:
        done: Future[T] = Future()
        done.set_result(value)
        self.queue.append(done)
        self._trim()

    def _trim(self) -> None:
        while len(self.queue) > self.window:
            self.sink(self.queue.popleft().result())

    def drain(self) -> None:
        while self.queue:
            self.sink(self.queue.popleft().result())

    def cancel(self) -> None:
        for future in self.queue:
            future.cancel()
        self.queue.clear()


def thread_count(threads: int | None) -> int:
    if threads is None:
        return os.cpu_count() or 1
    return max(1, threads)
