"""core/memory: big freed blocks go back to the system (glibc's dynamic mmap threshold off).

A child process frees a 24 MiB block (which raises glibc's threshold to 24 MiB), then
allocates and frees 96 MiB of 8 MiB blocks on a thread, keeping one small object allocated
after them. With the dynamic threshold those blocks come from the thread's arena and stay
resident; with ``return_big_blocks`` they are mapped and unmapped. The first case is
measured too, so the test shows the difference rather than assume it.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

import venvlayers

pytestmark = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="the dynamic mmap threshold is glibc's"
)

PROBE = """
import sys, threading
if sys.argv[1] == "fixed":
    from venvlayers.core.memory import return_big_blocks
    return_big_blocks()
    return_big_blocks()  # idempotent

def rss_mib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024

pinned = []
def work():
    block = bytearray(24 << 20)
    del block
    blocks = [bytearray(8 << 20) for _ in range(12)]
    pinned.append(bytearray(4096))
    del blocks

before = rss_mib()
thread = threading.Thread(target=work)
thread.start()
thread.join()
print(rss_mib() - before)
"""


def _retained_mib(tmp_path: Path, mode: str) -> int:
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    src = Path(venvlayers.__file__).parent.parent
    done = subprocess.run(
        [sys.executable, "-S", str(probe), mode],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(src)},
    )
    return int(done.stdout)


def test_freed_big_blocks_leave_the_process(tmp_path: Path) -> None:
    assert _retained_mib(tmp_path, "dynamic") >= 64  # the heap keeps them by default
    assert _retained_mib(tmp_path, "fixed") < 16
