"""Concurrent runs on one stack never interleave; crash debris is cleaned, never shipped.

Real processes (``python -m venvlayers``) racing on one real build folder and output
folder. Every run that exits 0 must have written a whole output: it deploys and its
app runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from rig.hello_stack import write_hello_stack
from rig.runtime import RuntimeMirror

from venvlayers.formats.assets import archive_name_problem

pytestmark = pytest.mark.slow

#: rounds of two concurrent publishes (alternately into two folders and into one)
PUBLISH_ROUNDS = 4
#: rounds of two concurrent `build --clean`
CLEAN_ROUNDS = 2


@dataclass
class Stack:
    folder: Path
    spec: Path

    @property
    def build(self) -> Path:
        return self.folder / "_build"


def venvlayers(*args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "venvlayers", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    out, err = process.communicate(timeout=900)
    return process.returncode, out + err


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, runtime_mirror_session: RuntimeMirror
) -> Iterator[Stack]:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in runtime_mirror_session.env.items():
            mp.setenv(key, value)
        folder = tmp_path_factory.mktemp("racing")
        spec = write_hello_stack(folder, "import sys\nprint('hello', *sys.argv[1:])\n")
        code, text = finish(venvlayers("build", "--lock-if-needed", spec))
        assert code == 0, text
        yield Stack(folder, spec)


def deploys_and_runs(out: Path, target: Path) -> None:
    code, text = finish(
        venvlayers(
            "deploy",
            "--from",
            out,
            "--target",
            target,
            "--run",
            "hello",
            "--",
            "from",
            out.name,
        )
    )
    assert code == 0, f"a publish that exited 0 wrote an output that does not deploy:\n{text}"
    assert f"hello from {out.name}" in text


def test_concurrent_publishes_each_write_a_whole_output(stack: Stack, tmp_path: Path) -> None:
    successes = 0
    for round_number in range(PUBLISH_ROUNDS):
        if round_number % 2:
            outs = [tmp_path / f"shared-{round_number}"] * 2
        else:
            outs = [tmp_path / f"a-{round_number}", tmp_path / f"b-{round_number}"]
        # no archive reuse: every publish compresses (and stages) every layer again
        for stamp in (stack.build / "_stamps").glob("*.publish-*.json"):
            stamp.unlink()
        runs = [
            venvlayers("publish", "--format", "tar.zst", "--output-dir", out, stack.spec)
            for out in outs
        ]
        results = [finish(run) for run in runs]
        for index, ((code, text), out) in enumerate(zip(results, outs, strict=True)):
            assert code in (0, 2), text  # never a crash
            if code == 0:
                successes += 1
                deploys_and_runs(out, tmp_path / f"deployed-{round_number}-{index}")
            else:
                assert len(text.strip().splitlines()) <= 4 and "Traceback" not in text
    assert successes == 2 * PUBLISH_ROUNDS  # the second run waits for the first


def test_concurrent_clean_builds_never_crash(stack: Stack) -> None:
    for _ in range(CLEAN_ROUNDS):
        runs = [venvlayers("build", "--lock-if-needed", "--clean", stack.spec) for _ in range(2)]
        for code, text in [finish(run) for run in runs]:
            assert code == 0, text
            assert "Traceback" not in text
    python = stack.build / "app-hello" / "bin" / "python"
    checked = subprocess.run(
        [str(python), "-m", "hello", "again"], capture_output=True, text=True, check=True
    )
    assert checked.stdout.strip() == "hello again"


def test_a_second_run_waits_with_a_message(stack: Stack) -> None:
    from venvlayers.core.runlock import run_lock

    held = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with run_lock(stack.build, what="the test"):
            held.set()
            release.wait(600)

    thread = threading.Thread(target=holder, daemon=True)
    thread.start()
    assert held.wait(60)
    waiting = venvlayers("build", "--lock-if-needed", stack.spec)
    try:
        assert waiting.stderr is not None
        first = waiting.stderr.readline()
        assert "waiting for another venvlayers run" in first, first
        assert f"pid {os.getpid()}" in first
    finally:
        release.set()
    code, text = finish(waiting)
    assert code == 0, text
    thread.join(60)


def test_crash_debris_is_cleaned_and_never_released(stack: Stack, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, text = finish(venvlayers("publish", "--output-dir", out, stack.spec))
    assert code == 0, text
    meta = next((out / "__venvstacks__").rglob("venvstacks*.json")).parent
    debris = [
        out / "..app-hello.partial.tar.xz.k2j4h5g6.tmp",  # a killed compression
        out / ".app-hello.partial.tar.xz",
        meta / ".venvstacks.json.ab12cd34.tmp",  # a killed metadata write
        stack.build / "_stage" / "app-hello" / "bin" / "python",  # killed staging
        stack.build / "_stamps" / ".app-hello.json.zz99yy88.tmp",
    ]
    for path in debris:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half-written")
    kept = out / ".user-notes"  # hidden files of the user's are not ours to remove
    kept.write_text("mine")

    # a release uploads only what the index names; a name starting with "." never is one
    assert all(
        archive_name_problem(path.name) for path in out.iterdir() if path.name.startswith(".")
    )
    code, text = finish(venvlayers("publish", "--output-dir", out, stack.spec))
    assert code == 0, text
    assert [path for path in debris if path.exists()] == []
    assert not (stack.build / "_stage").exists() or not any((stack.build / "_stage").iterdir())
    assert kept.read_text() == "mine"
    deploys_and_runs(out, tmp_path / "deployed")
