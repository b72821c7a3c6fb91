"""The launcher of ``bench/measure.py`` (see there): ``python -I -S launcher.py RESULT -- COMMAND...``

Forks and execs COMMAND from this small interpreter, so the command's ``ru_maxrss`` starts
from this process's ~10 MiB and not from the benchmark's size; samples the summed ``Pss``
of the command's process tree while it has more than one process; writes the wall time,
both peaks, the CPU seconds and the exit code to RESULT as JSON. Standard library only
(``os``, ``sys``, ``json``, ``time``, ``select``), nothing else imported, so it stays small.
"""

import json
import os
import select
import sys
import time

POLL_SECONDS = 0.05


def _parents() -> dict[int, list[int]]:
    """Every process's children, from ``/proc/PID/stat`` (the kernel here has no
    ``/proc/PID/task/TID/children``)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name is in parentheses and may hold spaces: ppid follows the last ')'
        fields = stat[stat.rfind(b")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(name))
    return children


def _tree(root: int) -> list[int]:
    children = _parents()
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _launch(result: str, command: list[str], timeout: float | None) -> int:
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the command: a copy of this small interpreter, replaced at once
        try:
            if timeout is not None:
                os.setpgid(0, 0)  # its own group, so a timeout stops its whole tree
            os.execvp(command[0], command)
        except OSError as exc:
            sys.stderr.write(f"measure: cannot run {command[0]}: {exc}\n")
        os._exit(127)
    tree_kib = 0
    timed_out = False
    # wait on a pidfd between samples: the wall time ends when the command does, not at the
    # next 50 ms tick (that tick was a third of a 0.15 s deploy)
    exited = os.pidfd_open(pid) if hasattr(os, "pidfd_open") else None
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if timeout is not None and not timed_out and time.perf_counter() - start > timeout:
            timed_out = True
            try:  # noqa: SIM105 (contextlib would grow the launcher)
                os.killpg(pid, 9)
            except OSError:
                pass
        tree = _tree(pid)
        if len(tree) > 1:
            tree_kib = max(tree_kib, sum(_pss_kib(p) for p in tree))
        if exited is None:
            time.sleep(POLL_SECONDS)
        else:
            select.select([exited], [], [], POLL_SECONDS)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    data = {
        "seconds": seconds,
        "largest_kib": int(usage.ru_maxrss),
        "tree_kib": tree_kib,
        "exit_code": code,
        "timed_out": timed_out,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
    }
    with open(result, "w", encoding="utf-8") as f:
        json.dump(data, f)
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    limit = None
    if len(args) > 2 and args[1] == "--timeout":
        limit = float(args[2])
        del args[1:3]
    if len(args) < 3 or args[1] != "--":
        sys.stderr.write("usage: launcher.py RESULT [--timeout SECONDS] -- COMMAND...\n")
        sys.exit(2)
    sys.exit(_launch(args[0], args[2:], limit))
