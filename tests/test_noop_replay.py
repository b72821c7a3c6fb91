"""The no-op fast path (``cli/replay``): a repeated ``lock``/``build``/``publish`` with
nothing changed answers from its record without loading the stages, and every real change
(spec, lock, uv settings, environment, a missing or altered archive, a held run lock)
makes the command run in full again.

Commands run as users run them (``python -m venvlayers``, a process each), with
``-X importtime``, so a test sees whether the stages were loaded: a replay loads no
pydantic and nothing of ``venvlayers.stack``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from rig.index import SimpleIndex
from rig.runtime import RuntimeMirror

pytestmark = pytest.mark.slow

SPEC = """
[[runtimes]]
name = "cpython-3.12"
python_implementation = "cpython@3.12.1"
requirements = []

[[frameworks]]
name = "base"
runtime = "cpython-3.12"
requirements = ["beta"]

[[applications]]
name = "tool"
launch_module = "launch/tool.py"
frameworks = ["base"]
requirements = [{app_requirements}]

[[tool.uv.index]]
name = "local"
url = "{index}"
default = true
"""


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str  # without -X importtime's lines
    loaded: set[str]

    def lines(self) -> list[str]:
        """What the command printed on stderr (in any order: layers publish in parallel),
        without the lines VENVLAYERS_REPLAY_DEBUG adds."""
        return sorted(line for line in self.stderr.splitlines() if not line.startswith("replay:"))

    @property
    def replayed(self) -> bool:
        return not any(m == "pydantic" or m.startswith("venvlayers.stack") for m in self.loaded)


@dataclass
class Stack:
    folder: Path
    spec: Path
    out: Path
    env: dict[str, str]
    index: str

    def write_spec(self, app_requirements: str = '"epsilon"') -> None:
        self.spec.write_text(SPEC.format(index=self.index, app_requirements=app_requirements))

    def run(self, *args: str, env: dict[str, str] | None = None) -> Run:
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "venvlayers", *args],
            cwd=self.folder,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            check=False,
        )
        lines = done.stderr.splitlines(keepends=True)
        loaded = {line.split("|")[-1].strip() for line in lines if line.startswith("import time:")}
        stderr = "".join(line for line in lines if not line.startswith("import time:"))
        return Run(done.returncode, done.stdout, stderr, loaded)

    # the bench's no-op commands
    def lock(self, env: dict[str, str] | None = None) -> Run:
        return self.run("lock", "--if-needed", "venvstacks.toml", env=env)

    def build(self, env: dict[str, str] | None = None) -> Run:
        return self.run("build", "--locked", "venvstacks.toml", env=env)

    def publish(self, env: dict[str, str] | None = None) -> Run:
        return self.run("publish", "--output-dir", "out", "venvstacks.toml", env=env)

    def settle(self) -> None:
        """Runs every command until it is a recorded no-op again (a first run may still
        tidy, e.g. remove the staging folder a publish left: that run is not recorded)."""
        for command in (self.lock, self.build, self.publish):
            runs = [command()]
            while not runs[-1].replayed and len(runs) < 4:
                assert runs[-1].code == 0, runs[-1].stderr
                runs.append(command())
            last = runs[-1]
            assert last.code == 0 and last.replayed, "".join(r.stderr for r in runs)
            # what the full path prints now
            full = command(env={"VENVLAYERS_NO_REPLAY": "1"})
            assert full.code == 0 and not full.replayed
            assert (last.stdout, last.lines()) == (full.stdout, full.lines())


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    runtime_mirror_session: RuntimeMirror,
    local_index: SimpleIndex,
) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("noop-stack")
    (folder / "launch").mkdir()
    (folder / "launch" / "tool.py").write_text("import epsilon\nprint('tool')\n")
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    env |= runtime_mirror_session.env
    env["VENVLAYERS_CACHE_DIR"] = str(tmp_path_factory.mktemp("noop-cache"))
    env["VENVLAYERS_REPLAY_DEBUG"] = "1"  # a failing test says why a run was not replayed
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    stack = Stack(folder, folder / "venvstacks.toml", folder / "out", env, local_index.url)
    stack.write_spec()
    for args in (
        ["lock", "venvstacks.toml"],
        ["build", "--locked", "venvstacks.toml"],
        ["publish", "--output-dir", "out", "venvstacks.toml"],
    ):
        done = stack.run(*args)
        assert done.code == 0, done.stderr
    stack.settle()
    yield stack


def archive(stack: Stack, layer: str) -> Path:
    return stack.out / f"{layer}.tar.xz"


def test_a_noop_replays_without_loading_the_stages(stack: Stack) -> None:
    for command in (stack.lock, stack.build, stack.publish):
        done = command()
        assert done.code == 0 and done.replayed, done.stderr
        assert not {"tomlkit", "packaging", "venvlayers.lock", "venvlayers.build"} & done.loaded
    assert "app-tool: app-tool.tar.xz unchanged" in stack.publish().stderr
    # off by request: the same command runs in full
    assert not stack.publish(env={"VENVLAYERS_NO_REPLAY": "1"}).replayed


def test_a_spec_edit_relocks(stack: Stack) -> None:
    stack.write_spec('"epsilon", "gamma"')
    try:
        done = stack.lock()
        assert done.code == 0 and not done.replayed
        assert "changed: app-tool" in done.stderr
        # build --locked now sees a lock its build does not match: it builds again
        built = stack.build()
        assert built.code == 0 and not built.replayed
        assert "built: app-tool" in built.stderr
    finally:
        stack.write_spec()
        stack.settle()


def test_a_lock_edit_is_stale_for_build(stack: Stack) -> None:
    pylock = stack.folder / "requirements" / "app-tool" / "pylock.app-tool.toml"
    original = pylock.read_bytes()
    try:
        # a comment: the lock is still valid, but the command runs in full to say so
        pylock.write_bytes(original + b"# a comment\n")
        done = stack.build()
        assert done.code == 0 and not done.replayed
        # another version: stale, and build --locked refuses it
        edited = original.replace(
            b'name = "epsilon"\nversion = "1.0"', b'name = "epsilon"\nversion = "1.1"'
        )
        assert edited != original
        pylock.write_bytes(edited)
        done = stack.build()
        assert done.code == 1 and not done.replayed
    finally:
        pylock.write_bytes(original)
    stack.settle()


def test_new_uv_settings_beside_the_spec_run_in_full(stack: Stack) -> None:
    settings = stack.folder / "venvstacks.uv.toml"
    settings.write_text("# no settings yet\n")
    try:
        done = stack.lock()
        assert done.code == 0 and not done.replayed
    finally:
        settings.unlink()
    stack.settle()


def test_a_deleted_archive_is_published_again(stack: Stack) -> None:
    archive(stack, "app-tool").unlink()
    done = stack.publish()
    assert done.code == 0 and not done.replayed
    assert "app-tool.tar.xz unchanged" not in done.stderr
    assert archive(stack, "app-tool").is_file()
    # the run that did the work also recorded what the same command does next: a no-op
    again = stack.publish()
    assert again.code == 0 and again.replayed, again.stderr
    full = stack.publish(env={"VENVLAYERS_NO_REPLAY": "1"})
    assert again.stdout == full.stdout and again.lines() == full.lines()
    assert "app-tool: app-tool.tar.xz unchanged" in again.stderr
    stack.settle()


def test_a_publish_elsewhere_keeps_the_no_ops_here(stack: Stack, tmp_path: Path) -> None:
    # its stamps land beside ours in _build/_stamps: listed for debris, that is no change
    other = stack.run(
        "publish", "--format", "tar.zst", "--output-dir", str(tmp_path / "zst"), "venvstacks.toml"
    )
    assert other.code == 0 and not other.replayed, other.stderr
    for command in (stack.build, stack.publish):
        done = command()
        assert done.code == 0 and done.replayed, done.stderr


def test_the_second_pass_after_real_work_never_repeats_it(stack: Stack, tmp_path: Path) -> None:
    # `lock` without --if-needed resolves every layer again, every time: the silent pass
    # that looks for a no-op after it must stop before its first uv run
    calls = tmp_path / "uv-calls"
    uv = tmp_path / "uv"
    real = shutil.which("uv", path=os.path.dirname(sys.executable)) or "uv"
    uv.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexec {real} "$@"\n')
    uv.chmod(0o755)
    counted = {"VENVLAYERS_UV": str(uv)}
    done = stack.run("lock", "venvstacks.toml", env=counted)
    assert done.code == 0, done.stderr
    with_replay = len(calls.read_text().splitlines())
    calls.unlink()
    full = stack.run("lock", "venvstacks.toml", env={**counted, "VENVLAYERS_NO_REPLAY": "1"})
    assert full.code == 0, full.stderr
    assert with_replay == len(calls.read_text().splitlines()) > 0
    stack.settle()


def test_an_altered_archive_is_published_again(stack: Stack) -> None:
    path = archive(stack, "framework-base")
    metadata = stack.out / "__venvstacks__" / "env_metadata" / "framework-base.json"
    expected = json.loads(metadata.read_text())["archive_hashes"]["sha256"]
    size = path.stat().st_size
    path.write_bytes(b"\0" * size)  # same size, other bytes
    done = stack.publish()
    assert done.code == 0 and not done.replayed
    assert hashlib.sha256(path.read_bytes()).hexdigest() == expected
    stack.settle()


def test_another_environment_runs_in_full(stack: Stack) -> None:
    epoch = {"SOURCE_DATE_EPOCH": "1700000000"}
    done = stack.publish(env=epoch)
    assert done.code == 0 and not done.replayed
    assert "unchanged" not in done.stderr  # the archives' member times changed
    back = stack.publish()  # without it: the recorded no-op no longer holds
    assert back.code == 0 and not back.replayed
    assert "unchanged" not in back.stderr
    stack.settle()


def test_a_held_run_lock_waits_for_the_holder(stack: Stack) -> None:
    # another run may be changing what the record observed: no replay, the full run waits
    lock_file = stack.folder / "_build" / ".venvlayers.lock"
    with lock_file.open("a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        process = subprocess.Popen(
            [sys.executable, "-m", "venvlayers", "build", "--locked", "venvstacks.toml"],
            cwd=stack.folder,
            env={k: v for k, v in stack.env.items() if k != "VENVLAYERS_REPLAY_DEBUG"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stderr is not None
            first = process.stderr.readline()  # a replay's first line would be its output
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    rest = process.communicate(timeout=300)[1]
    assert first.startswith("waiting for another venvlayers run"), first
    assert process.returncode == 0, rest


def test_the_record_of_another_folder_is_not_used(stack: Stack, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(stack.folder, copy, symlinks=True)
    other = Stack(copy, copy / "venvstacks.toml", copy / "out", stack.env, stack.index)
    done = other.lock()
    assert done.code == 0 and not done.replayed


def test_a_damaged_record_runs_in_full(stack: Stack) -> None:
    records = sorted(Path(stack.env["VENVLAYERS_CACHE_DIR"], "noop").glob("*.json"))
    assert records
    for record in records:
        document = json.loads(record.read_text())
        document["output"] = [["elsewhere", 1]]
        record.write_text(json.dumps(document))
    done = stack.build()
    assert done.code == 0 and not done.replayed, done.stderr
    assert "elsewhere" not in done.stdout + done.stderr
    stack.settle()
