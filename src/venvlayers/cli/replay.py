"""The no-op fast path: a ``lock``, ``build`` or ``publish`` that would change nothing
answers from a record of the same command's last run, without loading the stages.

A run of those commands, started as users start them (``venvlayers`` or ``python -m
venvlayers``; never in process), is *recorded*: an audit hook (``sys.addaudithook``) and
wrappers of ``os.stat``/``os.lstat`` note every file it reads, every path it stats and
every folder it lists, and its stdout and stderr are teed. When the run

- exits 0,
- wrote, renamed, removed or created nothing (a run lock file aside, and ``mkdir`` of a
  folder that was there), and
- started no process and opened no connection,

what it observed is stored, once it is done, as the record of that command: each file
read by its sha256, each path stat-ed by its kind (and, for a file, its size, mtime,
inode), each folder listed by its names and their kinds (a folder listed only to find
debris, ``core/debris.SCANNING``, by its dot names and subfolders), and what the run
printed. The record is named by a hash of the command's key: its arguments, working
folder, the whole environment (but ``OLDPWD``, ``SHLVL`` and ``_``), whether stdout/stderr are terminals,
the operating system, the Python, and venvlayers itself (its version and the size and
mtime of each of its files).

The next run with the same key *replays* the record when every observation still holds
and no run lock it took is held by another run: it prints what the recorded run printed
and exits 0. The stages are deterministic functions of what they observe, so the full
run would have taken the same path and printed the same lines. Anything else (a spec
edit, a lock edit, a new file beside the spec, a changed or missing archive, another
environment variable, another venvlayers) misses, and the command runs in full.

Files of the Python and of venvlayers itself are left out of the observations (the key
covers them). ``VENVLAYERS_NO_REPLAY=1`` turns recording and replay off;
``VENVLAYERS_REPLAY_DEBUG=1`` says on stderr why a run was not replayed or recorded. The records live
in ``<cache>/noop/`` (``VENVLAYERS_CACHE_DIR`` or the user's cache folder); records not
used for 14 days are removed when a new one is written. On Windows nothing is recorded.

This module imports only the standard library (``tests/test_structure.py``): a replay
loads nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from venvlayers import __version__

COMMANDS = frozenset({"lock", "build", "publish"})
FORMAT = 3
LOCK_NAME = ".venvlayers.lock"  # core/runlock.LOCK_NAME (and beside()'s suffix)
IGNORED_ENV = frozenset({"OLDPWD", "SHLVL", "_", "VENVLAYERS_REPLAY_DEBUG"})
KEEP_SECONDS = 14 * 24 * 3600
# audit events that change files or reach outside the process: a run with one is not a no-op
MUTATING = frozenset(
    {
        "os.rename",
        "os.replace",
        "os.remove",
        "os.unlink",
        "os.rmdir",
        "shutil.rmtree",
        "shutil.move",
        "shutil.copyfile",
        "shutil.copytree",
        "os.chmod",
        "os.chown",
        "os.utime",
        "os.link",
        "os.symlink",
        "os.truncate",
        "os.setxattr",
        "os.removexattr",
        "os.chflags",
        "os.lchflags",
        "os.exec",
        "os.fork",
        "os.forkpty",
        "os.posix_spawn",
        "os.spawn",
        "os.startfile",
        "os.system",
        "os.kill",
        "os.killpg",
        "subprocess.Popen",
        "socket.connect",
        "socket.getaddrinfo",
        "socket.sendto",
        "urllib.Request",
        "tempfile.mkstemp",
        "tempfile.mkdtemp",
    }
)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_TOOL_ROOT = Path(__file__).resolve().parent.parent

Observation = Any  # JSON: a digest, a stat tuple, a listing, or None (absent)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line's entry: replay a recorded no-op, or run (and maybe record)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS or not _enabled():
        return _run(argv)
    try:
        record_path = _record_path(argv)
        if _replay(record_path):
            return 0
    except (OSError, ValueError):  # no cache folder, an unreadable record: run in full
        return _run(argv)
    recorder = _Recorder(record_path)
    code = recorder.run(argv)
    if code == 0 and recorder.impure:
        # it did real work: what would the same command do now? A silent second pass,
        # stopped at its first change or process (so it never does the work twice),
        # records the no-op the next run can replay
        _Recorder(record_path, verify=True).run(argv)
    return code


def _run(argv: list[str]) -> int:
    from venvlayers.cli.commands import main as commands_main

    return commands_main(argv)


def _enabled() -> bool:
    return os.name == "posix" and os.environ.get("VENVLAYERS_NO_REPLAY", "") in ("", "0")


def cache_dir() -> Path:
    """``net/downloads.default_cache_dir`` on POSIX (kept here: a replay imports nothing)."""
    if os.environ.get("VENVLAYERS_CACHE_DIR"):
        return Path(os.environ["VENVLAYERS_CACHE_DIR"])
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "venvlayers"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "venvlayers"


def _record_path(argv: Sequence[str]) -> Path:
    key = {
        "format": FORMAT,
        "argv": list(argv),
        "cwd": os.getcwd(),
        "env": sorted((k, v) for k, v in os.environ.items() if k not in IGNORED_ENV),
        "tty": [_isatty(sys.stdout), _isatty(sys.stderr)],
        "os": [os.uname().sysname, os.uname().release, os.uname().machine, os.getuid()],
        "python": [sys.version, sys.executable, sys.prefix, sys.base_prefix, sys.path],
        "tool": [__version__, str(_TOOL_ROOT), _tree_digest(_TOOL_ROOT), _site_packages()],
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return cache_dir() / "noop" / f"{digest[:40]}.json"


def _isatty(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):
        return False


def _tree_digest(root: Path) -> str:
    """Every file of venvlayers by path, size and mtime: an edited install is another tool."""
    digest = hashlib.sha256()
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.name == "__pycache__":
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    info = entry.stat(follow_symlinks=False)
                    digest.update(f"{entry.path}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _site_packages() -> list[list[str]]:
    """What is installed beside venvlayers (pydantic, tomlkit, packaging, uv ...)."""
    listed = []
    for entry in sys.path:
        if entry.endswith("-packages") and os.path.isdir(entry):
            listed.append([entry, *sorted(os.listdir(entry))])
    return listed


# -- observations --------------------------------------------------------------------------


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "link"
    return "other"


def _observe_stat(path: str, follow: bool) -> Observation:
    try:
        info = os.stat(path) if follow else os.lstat(path)
    except (OSError, ValueError):
        return None
    kind = _kind(info.st_mode)
    if kind == "file":  # the same check publish's own stamp makes of an archive
        return [kind, info.st_size, info.st_mtime_ns, info.st_ino]
    if kind == "link":
        return [kind, os.readlink(path)]
    return [kind]  # a folder's mtime changes with every file made in it: its listing counts


def _observe_read(path: str) -> Observation:
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except IsADirectoryError:
        return ["dir"]
    except (OSError, ValueError):
        return None


def _observe_listing(path: str) -> Observation:
    try:
        with os.scandir(path) as entries:
            return sorted(
                [e.name, "dir" if e.is_dir() else "link" if e.is_symlink() else "file"]
                for e in entries
            )
    except (OSError, ValueError):
        return None


def _observe_debris_scan(path: str) -> Observation:
    """A listing made only to find debris (``core/debris``): its dot names and subfolders."""
    try:
        with os.scandir(path) as entries:
            return sorted(
                [e.name, "dir" if e.is_dir() else "link" if e.is_symlink() else "file"]
                for e in entries
                if e.name.startswith(".") or e.is_dir()
            )
    except (OSError, ValueError):
        return None


OBSERVERS: dict[str, Callable[[str], Observation]] = {
    "read": _observe_read,
    "stat": lambda p: _observe_stat(p, True),
    "lstat": lambda p: _observe_stat(p, False),
    "list": _observe_listing,
    "debris": _observe_debris_scan,
}


def _still_true(record: dict[str, Any]) -> bool:
    for kind, observer in OBSERVERS.items():
        for path, seen in record[kind].items():
            if observer(path) != seen:
                return _debug(f"{kind} {path} changed: running in full")
    for path in record["locks"]:
        if _lock_busy(path):
            return _debug(f"{path} is held by another run: running in full")
    return True


def _debug(message: str) -> bool:
    """``VENVLAYERS_REPLAY_DEBUG=1``: why a command was not replayed or recorded."""
    if os.environ.get("VENVLAYERS_REPLAY_DEBUG", "") not in ("", "0"):
        print(f"replay: {message}", file=sys.stderr)
    return False


def _lock_busy(path: str) -> bool:
    """Whether another run holds this run lock (it may be changing what was observed)."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False  # no lock file: nobody holds it
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the shared lock
    return False


def _well_formed(record: Any) -> bool:
    """Whether ``record`` has the shape ``_save`` writes (a damaged one is never replayed)."""
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        return False
    for kind in OBSERVERS:
        seen = record.get(kind)
        if not isinstance(seen, dict) or not all(isinstance(p, str) for p in seen):
            return False
    locks, output = record.get("locks"), record.get("output")
    return (
        isinstance(locks, list)
        and all(isinstance(p, str) for p in locks)
        and isinstance(output, list)
        and all(
            isinstance(item, list)
            and len(item) == 2
            and item[0] in ("stdout", "stderr")
            and isinstance(item[1], str)
            for item in output
        )
    )


def _replay(record_path: Path) -> bool:
    try:
        record = json.loads(record_path.read_bytes())
    except FileNotFoundError:
        return _debug(f"no record {record_path.name}: running in full")
    if not _well_formed(record):
        return _debug(
            f"record {record_path.name} is not one this venvlayers wrote: running in full"
        )
    if not _still_true(record):
        return False
    streams = {"stdout": sys.stdout, "stderr": sys.stderr}
    for name, text in record["output"]:
        streams[name].write(text)
    sys.stdout.flush()
    sys.stderr.flush()
    return True


# -- recording -----------------------------------------------------------------------------


class _Tee:
    """A text stream that also keeps what was written, in order with the other stream."""

    def __init__(self, stream: TextIO, name: str, log: list[list[str]], echo: bool) -> None:
        self._stream, self._name, self._log, self._echo = stream, name, log, echo

    def write(self, text: str) -> int:
        self._log.append([self._name, text])
        return self._stream.write(text) if self._echo else len(text)

    def flush(self) -> None:
        if self._echo:
            self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _NotANoop(Exception):
    """Raised by the audit hook of a verifying pass at its first change: the pass stops."""


class _Recorder:
    """One traced run. ``verify``: a silent second pass after a run that did real work,
    stopped (``_NotANoop``, an internal error to the command) before its first change."""

    def __init__(self, record_path: Path, *, verify: bool = False) -> None:
        self.record_path = record_path
        self.verify = verify
        self.paths: dict[str, set[str]] = {kind: set() for kind in OBSERVERS}
        self.locks: set[str] = set()
        self.output: list[list[str]] = []
        self.impure = ""  # why this run is not a no-op (empty: it is one, so far)
        self.active = False
        roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, str(_TOOL_ROOT)}
        roots |= {str(Path(root).resolve()) for root in roots}
        roots |= {os.path.dirname(sys.executable), str(record_path.parent)}
        self.ignored = tuple(os.path.join(root, "") for root in roots)

    def run(self, argv: list[str]) -> int:
        from venvlayers.cli import commands  # before tracing: its imports are the tool's

        saved = sys.stdout, sys.stderr, os.stat, os.lstat
        sys.addaudithook(self._audit)
        sys.stdout = _Tee(sys.stdout, "stdout", self.output, not self.verify)
        sys.stderr = _Tee(sys.stderr, "stderr", self.output, not self.verify)
        wrapped = self._wrap(os.stat, "stat"), self._wrap(os.lstat, "lstat")
        _declare(saved[2:], wrapped, add=True)
        os.stat, os.lstat = wrapped
        self.active = True
        try:
            code = commands.main(argv)
        finally:
            self.active = False
            sys.stdout, sys.stderr, os.stat, os.lstat = saved
            _declare(saved[2:], wrapped, add=False)
        if code == 0 and not self.impure:
            self._save()
        elif not (self.impure and not self.verify):  # a full run's work is no news
            _debug(f"not recorded: {self.impure or f'exit {code}'}")
        return code

    def _wanted(self, path: Any) -> str | None:
        if isinstance(path, int) or path is None:
            return None  # a descriptor: what it was opened from was noted then
        try:
            text = os.path.abspath(os.fsdecode(path))
        except (TypeError, ValueError):
            return None
        if text == "/dev/null" or text.startswith(self.ignored) or text.endswith(LOCK_NAME):
            return None  # a run lock is noted only when opened (it holds a pid, not data)
        return text

    def _wrap(self, function: Callable[..., Any], kind: str) -> Callable[..., Any]:
        def traced(path: Any, *args: Any, **kwargs: Any) -> Any:
            if self.active and (kwargs.get("dir_fd") is not None or isinstance(path, int)):
                self._changes(f"{kind} of a descriptor")  # not a path to note
            elif self.active:
                wanted = self._wanted(path)
                if wanted is not None:
                    follow = kwargs.get("follow_symlinks", True)
                    self.paths[kind if follow else "lstat"].add(wanted)
            return function(path, *args, **kwargs)

        return traced

    def _audit(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active:
            return
        if event == "open":
            self._opened(args)
        elif event in ("os.listdir", "os.scandir"):
            if args and isinstance(args[0], int):
                self._changes("listed a descriptor")
                return
            path = self._wanted(args[0] if args else ".")
            if path is not None:
                debris = sys.modules.get("venvlayers.core.debris")
                scan = debris is not None and path in getattr(debris, "SCANNING", ())
                self.paths["debris" if scan else "list"].add(path)
        elif event == "os.mkdir":
            path = self._wanted(args[0])
            if path is not None and not os.path.isdir(path):
                self._changes(f"made {path}")
        elif event in MUTATING:
            self._changes(event)

    def _changes(self, what: str) -> None:
        """The run changes something (or starts a process): not a no-op."""
        self.impure = self.impure or what
        if self.verify:
            raise _NotANoop(what)

    def _opened(self, args: tuple[Any, ...]) -> None:
        path, mode, flags = [*args, None, None, 0][:3]
        if isinstance(path, (str, bytes, os.PathLike)) and os.fsdecode(path).endswith(LOCK_NAME):
            self.locks.add(os.path.abspath(os.fsdecode(path)))  # taken, never a change
            return
        wanted = self._wanted(path)
        if wanted is None:
            return
        writes = bool(flags & _WRITE_FLAGS) if isinstance(flags, int) else False
        if isinstance(mode, str):
            writes = writes or any(c in mode for c in "wax+")
        if writes:
            self._changes(f"wrote {wanted}")
        else:
            self.paths["read"].add(wanted)

    def _save(self) -> None:
        record: dict[str, Any] = {"format": FORMAT, "output": self.output}
        for kind, observer in OBSERVERS.items():
            record[kind] = {path: observer(path) for path in sorted(self.paths[kind])}
        record["locks"] = sorted(self.locks)
        folder = self.record_path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            scratch = folder / f".{self.record_path.name}.{os.getpid()}"
            scratch.write_text(json.dumps(record, sort_keys=True), encoding="utf-8")
            os.replace(scratch, self.record_path)
            _prune(folder)
        except OSError:
            pass  # no record: the next run is a full one, as without this module


def _declare(
    originals: tuple[Callable[..., Any], ...], wrappers: tuple[Callable[..., Any], ...], add: bool
) -> None:
    """A wrapper takes what its original takes: ``shutil`` asks ``os.supports_*`` (copying
    a tree's links uses ``stat`` only when it is listed in ``supports_follow_symlinks``)."""
    for support in (os.supports_dir_fd, os.supports_fd, os.supports_follow_symlinks):
        for original, wrapper in zip(originals, wrappers, strict=True):
            if original in support:
                if add:
                    support.add(wrapper)
                else:
                    support.discard(wrapper)


def _prune(folder: Path) -> None:
    cutoff = time.time() - KEEP_SECONDS
    with os.scandir(folder) as entries:
        for entry in entries:
            try:
                if entry.stat().st_atime < cutoff and entry.stat().st_mtime < cutoff:
                    os.remove(entry.path)
            except OSError:
                continue
