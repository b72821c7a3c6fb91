"""Compile the Python files of layer folders with the runtime they run on (run by path).

    python -S -B compile_bytecode.py [--unchecked-hash] FOLDER DEPLOYED [FOLDER DEPLOYED ...]

Run by a layer's base runtime (a runtime writes the bytecode of its own Python version),
standard library only. Walks each FOLDER as ``compileall.compile_dir`` does (every ``*.py``
in sorted order; ``__pycache__`` and links to folders skipped) and writes
``__pycache__/<stem>.<tag>.pyc`` beside each file, naming the source as it will be found
(DEPLOYED plus the path below FOLDER) in the bytecode.

- Default (deploy): timestamp pycs, as a layer's own ``postinstall.py`` writes them. A
  file whose pyc is already valid is skipped before any worker starts: a timestamp pyc of
  this source's mtime, or a hash-based pyc of this Python's magic number (the ones
  ``publish --bytecode`` puts in an archive). A pass over unchanged layers starts no pool.
- ``--unchecked-hash`` (``publish --bytecode``): pycs Python loads without reading the
  source (PEP 552), the same bytes on every run: the files are compiled in fixed chunks,
  each in a fresh interpreter with ``PYTHONHASHSEED=0`` (marshal's output depends on what
  the interpreter compiled before, and on the hash seed through set constants), so neither
  the order of the work nor the number of cores changes a byte.
"""

from __future__ import annotations

import importlib.util
import os
import struct
import sys

#: Files per fresh interpreter in --unchecked-hash mode (fixed: the chunks decide the bytes).
CHUNK = 200
_HASH_BASED = 0b01


def files_to_compile(pairs: list[str]) -> list[tuple[str, str]]:
    """(source, name recorded in its bytecode) of every ``*.py`` under each folder."""
    jobs: list[tuple[str, str]] = []
    for folder, deployed in zip(pairs[::2], pairs[1::2], strict=True):
        for root, dirs, names in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            recorded = os.path.normpath(os.path.join(deployed, os.path.relpath(root, folder)))
            jobs += [
                (os.path.join(root, n), os.path.join(recorded, n))
                for n in sorted(names)
                if n.endswith(".py")
            ]
    return jobs


def up_to_date(path: str, cache_tag: str | None = None, magic: bytes | None = None) -> bool:
    """A valid pyc is there already: compileall's own timestamp test (magic, flags 0,
    source mtime), or any hash-based pyc of this Python (reused files brought their
    bytecode; a bytecode archive brought its own). ``cache_tag`` and ``magic``: those of
    another Python (default: this one's), asked without starting it."""
    try:
        mtime = int(os.stat(path).st_mtime)
        if cache_tag is None:
            cached = importlib.util.cache_from_source(path)
        else:
            folder, name = os.path.split(path)
            cached = os.path.join(folder, "__pycache__", f"{name[:-3]}.{cache_tag}.pyc")
        with open(cached, "rb") as pyc:
            head = pyc.read(12)
    except (OSError, ValueError, NotImplementedError):
        return False
    if len(head) < 12 or head[:4] != (magic or importlib.util.MAGIC_NUMBER):
        return False
    (flags,) = struct.unpack("<L", head[4:8])
    if flags & _HASH_BASED:
        return True
    return flags == 0 and head[8:12] == struct.pack("<L", mtime & 0xFFFFFFFF)


#: The process that started this one (set by it): on Linux this one is killed when that
#: one dies, so a deploy killed with ``kill -9`` leaves no compiler writing into the
#: staging folder the next deploy removes.
PARENT_PID = "VENVLAYERS_PARENT_PID"


def die_with_parent(parent: int) -> None:
    """Linux: be killed (SIGKILL) when ``parent`` dies; exit now if it is gone already."""
    if not parent or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before we asked
        os._exit(1)


def compile_one(job: tuple[str, str]) -> bool:
    """What ``compileall.compile_file(source, ddir=dirname(recorded), quiet=2)`` writes
    (the same ``py_compile`` call), without importing compileall and its pathlib: an
    app-only update's compiler compiles a file or two, and its imports were most of it."""
    import py_compile

    source, recorded = job
    try:
        py_compile.compile(source, dfile=recorded, doraise=True)
    except (py_compile.PyCompileError, SyntaxError, UnicodeError, OSError):
        return False  # as compileall: no bytecode for a file this Python cannot compile
    return True


def compile_timestamped(jobs: list[tuple[str, str]]) -> None:
    workers = min(len(jobs) // 64 + 1, os.cpu_count() or 1)
    if workers <= 1:
        for job in jobs:
            compile_one(job)
        return
    from concurrent.futures import ProcessPoolExecutor

    # a worker starts as a copy (or a re-run) of this script
    with ProcessPoolExecutor(workers, initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
        for _ in pool.map(compile_one, jobs, chunksize=32):
            pass


def compile_unchecked(jobs: list[tuple[str, str]]) -> None:
    """Each chunk in a fresh ``-S -B`` interpreter with a fixed hash seed (see above)."""
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    chunks = [jobs[i : i + CHUNK] for i in range(0, len(jobs), CHUNK)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONHASHSEED"] = "0"
    env[PARENT_PID] = str(os.getpid())

    def run(chunk: list[tuple[str, str]]) -> None:
        listing = "".join(f"{source}\0{recorded}\0" for source, recorded in chunk)
        subprocess.run(
            [sys.executable, "-S", "-B", os.path.abspath(__file__), "--chunk"],
            input=listing.encode("utf-8", "surrogateescape"),
            env=env,
            check=True,
        )

    with ThreadPoolExecutor(max(1, min(len(chunks), os.cpu_count() or 1))) as pool:
        for _ in pool.map(run, chunks):
            pass


def compile_chunk(data: bytes) -> None:
    """The worker of ``compile_unchecked``: NUL-separated (source, recorded name) pairs."""
    import py_compile

    fields = data.decode("utf-8", "surrogateescape").split("\0")[:-1]
    for source, recorded in zip(fields[::2], fields[1::2], strict=True):
        try:
            py_compile.compile(
                source,
                dfile=recorded,
                doraise=True,
                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
            )
        except (py_compile.PyCompileError, OSError, ValueError):
            continue  # as compileall: a file this Python cannot compile keeps no bytecode


def main(argv: list[str]) -> int:
    die_with_parent(int(os.environ.get(PARENT_PID) or 0))
    if argv[:1] == ["--chunk"]:
        compile_chunk(sys.stdin.buffer.read())
        return 0
    unchecked = argv[:1] == ["--unchecked-hash"]
    pairs = argv[1:] if unchecked else argv
    jobs = files_to_compile(pairs)
    if unchecked:
        compile_unchecked(jobs)
    else:
        compile_timestamped([job for job in jobs if not up_to_date(job[0])])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
