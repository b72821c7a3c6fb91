"""Run one command and measure its own wall time and peak memory.

Linux carries a parent's resident high-water mark into a forked child: the kernel copies
the parent's page tables (or shares them, for ``vfork``), and at ``exec`` the old memory's
high-water mark is kept in the process's ``ru_maxrss``. A command started straight from a
large benchmark process therefore reports at least that process's size. So every measured
command is started by a launcher, ``bench/launcher.py`` run as a fresh small interpreter
(``python -I -S launcher.py RESULT -- COMMAND...``), which forks and execs the command and
writes to RESULT (JSON):

- ``largest_kib``: ``ru_maxrss`` of the command from ``os.wait4``: the peak resident set of
  the largest single process in its tree (the kernel keeps the largest of every descendant
  the command waited for), exact, with the launcher's own ~10 MiB as its floor;
- ``tree_kib``: the largest sum, over the command's live process tree, of each process's
  proportional set size (``Pss`` of ``/proc/PID/smaps_rollup``: shared pages split between
  the processes sharing them), sampled every 50 ms while the tree has more than
  one process (a single process is covered exactly by ``largest_kib``);
- ``seconds``: wall time from the fork to the command's exit (the launcher's own start-up
  is not in it);
- ``exit_code``, and ``timed_out`` when ``--timeout SECONDS`` passed first (the command
  runs in its own process group, killed whole then).

``peak_kib`` (what the benchmark's tables show) is the larger of the two. The launcher
imports only ``os``, ``sys``, ``json``, ``time`` and ``select``, so it stays small; the tests in
``tests/test_bench_measure.py`` check both figures against children of known size.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

LAUNCHER = Path(__file__).resolve().with_name("launcher.py")


@dataclass(frozen=True)
class Measured:
    seconds: float
    largest_kib: int
    tree_kib: int
    exit_code: int
    timed_out: bool = False
    cpu_seconds: float = 0.0
    """user + system CPU of the command and every descendant it waited for (``wait4``)"""

    @property
    def peak_kib(self) -> int:
        return max(self.largest_kib, self.tree_kib)


def measure(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdout: int | object | None = None,
    result_dir: Path | None = None,
    timeout: float | None = None,
) -> Measured:
    """Run ``command`` through the launcher (output to ``stdout``, a file object or
    ``subprocess.DEVNULL``; stderr goes with it); return what the launcher measured.
    After ``timeout`` seconds the command's process group is killed (``timed_out``)."""
    folder = result_dir or Path(os.environ.get("TMPDIR", "/tmp"))
    folder.mkdir(parents=True, exist_ok=True)
    result = folder / f".measure-{os.getpid()}-{time.monotonic_ns()}.json"
    try:
        completed = subprocess.run(
            [
                sys.executable,
                "-I",
                "-S",
                str(LAUNCHER),
                str(result),
                *(["--timeout", str(timeout)] if timeout else []),
                "--",
                *command,
            ],
            env=None if env is None else dict(env),
            cwd=cwd,
            stdout=stdout,  # type: ignore[arg-type]
            stderr=subprocess.STDOUT if stdout is not None else None,
            check=False,
        )
        if not result.is_file():
            raise RuntimeError(f"the launcher failed (exit {completed.returncode}): {command}")
        data = json.loads(result.read_text(encoding="utf-8"))
    finally:
        result.unlink(missing_ok=True)
    return Measured(
        seconds=data["seconds"],
        largest_kib=data["largest_kib"],
        tree_kib=data["tree_kib"],
        exit_code=data["exit_code"],
        timed_out=data.get("timed_out", False),
        cpu_seconds=data.get("cpu_seconds", 0.0),
    )
