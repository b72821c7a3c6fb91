"""The benchmark's memory figures (``bench/measure.py``) are the measured command's own.

A command started straight from a large process reports at least that process's size
(Linux keeps the parent's high-water mark in a forked child's ``ru_maxrss``): these tests
make the test process large first, so they fail with that way of measuring.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import measure

MIB = 1024

# allocates N MiB and writes every page of it, so it is resident, then holds it a moment
ALLOCATE = (
    "import sys, time\n"
    "block = bytearray(int(sys.argv[1]) << 20)\n"
    "for i in range(0, len(block), 4096):\n"
    "    block[i] = 1\n"
    "time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 0)\n"
)


@pytest.fixture
def large_test_process() -> Iterator[bytearray]:
    """300 MiB resident in this process while the test measures its children."""
    block = bytearray(300 << 20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    yield block
    del block


def python(*args: str) -> list[str]:
    return [sys.executable, "-I", "-S", *args]


def test_a_child_that_allocates_200_mib_reports_about_that(
    tmp_path: Path, large_test_process: bytearray
) -> None:
    result = measure.measure(python("-c", ALLOCATE, "200"), result_dir=tmp_path)
    assert result.exit_code == 0
    assert 200 * MIB <= result.largest_kib <= 240 * MIB
    assert 200 * MIB <= result.peak_kib <= 240 * MIB


def test_a_small_child_reports_small_though_the_bench_process_is_large(
    tmp_path: Path, large_test_process: bytearray
) -> None:
    result = measure.measure(python("-c", "pass"), result_dir=tmp_path)
    assert result.exit_code == 0
    assert result.peak_kib < 40 * MIB, result


def test_a_tree_reports_the_sum_of_processes_alive_together(
    tmp_path: Path, large_test_process: bytearray
) -> None:
    # two children of 100 MiB each, alive at the same time (each holds its block 2 s so the
    # launcher's sampling sees both: a wait, not a timed assertion)
    script = (
        "import subprocess, sys\n"
        f"child = [sys.executable, '-I', '-S', '-c', {ALLOCATE!r}, '100', '2']\n"
        "running = [subprocess.Popen(child) for _ in range(2)]\n"
        "sys.exit(max(p.wait() for p in running))\n"
    )
    result = measure.measure(python("-c", script), result_dir=tmp_path)
    assert result.exit_code == 0
    assert 100 * MIB <= result.largest_kib <= 140 * MIB  # the largest process alone
    assert 200 * MIB <= result.tree_kib <= 280 * MIB  # the two together
    assert result.peak_kib == result.tree_kib


def test_the_exit_code_and_output_of_the_command_come_through(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    with log.open("w") as out:
        result = measure.measure(
            python("-c", "print('hello'); raise SystemExit(3)"), stdout=out, result_dir=tmp_path
        )
    assert result.exit_code == 3
    assert log.read_text().strip() == "hello"
    missing = measure.measure(["/no/such/program"], stdout=log.open("a"), result_dir=tmp_path)
    assert missing.exit_code == 127


def test_the_cpu_seconds_of_a_tree_count_its_children(tmp_path: Path) -> None:
    # a child that spins until it has used 0.3 CPU seconds (by its own clock): the tree's
    # user + system time is at least that, however busy the machine is
    spin = "import time\nwhile time.process_time() < 0.3:\n    pass\n"
    script = (
        "import subprocess, sys\n"
        f"sys.exit(subprocess.run([sys.executable, '-I', '-S', '-c', {spin!r}]).returncode)\n"
    )
    result = measure.measure(python("-c", script), result_dir=tmp_path)
    assert result.exit_code == 0
    assert result.cpu_seconds >= 0.3
