"""What the user or the machine does wrong is a one-line error (exit 2), never a traceback.

A path that is a file, a deploy target that is a system file, a full disk; and the
files we write get the modes the umask says, like any other tool's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from rig.hello_stack import write_hello_stack
from rig.runtime import RuntimeMirror

pytestmark = pytest.mark.slow


@dataclass
class Stack:
    folder: Path
    spec: Path
    out: Path


def venvlayers(*args: str | Path, umask: int = 0o022) -> tuple[int, str]:
    completed = subprocess.run(
        [sys.executable, "-m", "venvlayers", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=lambda: os.umask(umask),
    )
    return completed.returncode, completed.stdout + completed.stderr


def assert_one_line_error(code: int, text: str, *words: str) -> None:
    assert code == 2, text
    assert "Traceback" not in text
    lines = text.strip().splitlines()
    assert len(lines) <= 4 and lines[-1].startswith("error: "), text
    for word in words:
        assert word in lines[-1], lines[-1]


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, runtime_mirror_session: RuntimeMirror
) -> Iterator[Stack]:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in runtime_mirror_session.env.items():
            mp.setenv(key, value)
        folder = tmp_path_factory.mktemp("errors")
        spec = write_hello_stack(folder)
        out = folder / "out"
        code, text = venvlayers(
            "-q", "build", "--lock-if-needed", "--publish", "--output-dir", out, spec
        )
        assert code == 0, text
        yield Stack(folder, spec, out)


def test_output_dir_under_a_file(stack: Stack, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for output in (blocker / "out", blocker):
        code, text = venvlayers("-q", "publish", "--output-dir", output, stack.spec)
        assert_one_line_error(code, text, str(blocker))
    assert blocker.read_text() == "not a folder"


def test_deploy_target_that_is_a_system_file(stack: Stack) -> None:
    before = Path("/etc/passwd").read_bytes()
    code, text = venvlayers(
        "-q",
        "deploy",
        "--from",
        stack.out,
        "--target",
        "/etc/passwd",
    )
    assert_one_line_error(code, text, "/etc/passwd")
    assert Path("/etc/passwd").read_bytes() == before


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (needs root); the runtime's archive does not fit."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_full_disk_is_a_one_line_error_and_leaves_no_debris(
    stack: Stack, small_disk: Path, tmp_path: Path
) -> None:
    out = small_disk / "out"
    code, text = venvlayers("-q", "publish", "--format", "tar.zst", "--output-dir", out, stack.spec)
    assert_one_line_error(code, text, "No space left on device", str(out))
    leftovers = [p.name for p in out.iterdir() if ".partial" in p.name or p.suffix == ".tmp"]
    assert leftovers == []
    # the next run (elsewhere) cleans the staging the failed one left, and works
    code, text = venvlayers("-q", "publish", "--output-dir", tmp_path / "roomy", stack.spec)
    assert code == 0, text
    stage = stack.folder / "_build" / "_stage"
    assert not stage.exists() or not any(stage.iterdir())


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_written_files_follow_the_umask(
    stack: Stack, tmp_path: Path, umask: int, mode: int
) -> None:
    out = tmp_path / "out"
    meta = stack.folder / "requirements" / "app-hello" / "pylock.app-hello.meta.json"
    meta.unlink()  # written again by the next lock
    code, text = venvlayers(
        "-q", "build", "--lock-if-needed", "--publish", "--output-dir", out, stack.spec, umask=umask
    )
    assert code == 0, text
    written = [meta, *sorted((out / "__venvstacks__").rglob("*.json"))]
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in written} == {
        p.name: oct(mode) for p in written
    }
