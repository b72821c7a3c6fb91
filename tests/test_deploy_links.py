"""Fast deploys: unchanged layers by one directory link, changed layers reusing identical
files and their bytecode, --no-compile, kills at any moment, the target lock waiting."""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from rig.deploy_stack import Versions, archive, deploy, manifest_path, run_app, snapshot

pytestmark = pytest.mark.slow

UNCHANGED = ("cpython-3.12", "framework-base", "app-two")


@pytest.fixture
def versions(deploy_versions: Versions) -> Versions:
    return deploy_versions


def state(target: Path) -> Path:
    return target / ".venvlayers"


def current_id(target: Path) -> str:
    return os.path.basename(os.readlink(state(target) / "current"))


def deployment_ids(target: Path) -> set[str]:
    return {p.name for p in (state(target) / "deployments").iterdir()}


def files(folder: Path) -> dict[str, os.stat_result]:
    """Every regular file under ``folder`` (a link to a folder is entered at the top)."""
    found = {}
    for root, _dirs, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            st = os.lstat(path)
            if not os.path.islink(path):
                found[os.path.relpath(path, folder)] = st
    return found


def pycs(folder: Path) -> list[str]:
    return [p for p in files(folder) if p.endswith(".pyc")]


def repack(
    folder: Path, layer: str, edit: Callable[[str, bytes], bytes], extra: dict[str, bytes]
) -> None:
    """Rewrite ``layer``'s archive in a publish output with ``edit(name, data)`` applied to
    each file and ``extra`` files added (paths below the layer); fix its metadata."""
    path = archive(folder, layer)
    fresh = path.with_suffix(".new")
    with tarfile.open(path) as source, tarfile.open(fresh, "w:xz", preset=0) as out:
        for member in source.getmembers():
            if member.isfile():
                handle = source.extractfile(member)
                assert handle is not None
                data = edit(member.name, handle.read())
                member.size = len(data)
                out.addfile(member, io.BytesIO(data))
            else:
                out.addfile(member)
        for name, data in extra.items():
            info = tarfile.TarInfo(f"{layer}/{name}")
            info.size, info.mode = len(data), 0o644
            out.addfile(info, io.BytesIO(data))
    path.unlink()
    fresh.rename(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest = manifest_path(folder)
    data = json.loads(manifest.read_text())
    for entries in data["layers"].values():
        for entry in entries:
            if entry["install_target"] == layer:
                # a repacked archive has no layer index (the old one describes the old one)
                entry.update(
                    archive_size=path.stat().st_size,
                    archive_hashes={"sha256": digest},
                    venvlayers_index=None,
                )
    manifest.unlink()  # copies share the original's inode
    manifest.write_text(json.dumps(data, indent=2))


def copy_version(source: Path, destination: Path) -> Path:
    shutil.copytree(source, destination, copy_function=os.link)
    return destination


def site_packages(target: Path, layer: str) -> Path:
    [found] = (target / layer / "lib").glob("python3*/site-packages")
    return found


def test_an_app_only_update_links_unchanged_layers_and_collects_what_nothing_reaches(
    versions: Versions, tmp_path: Path
) -> None:
    target = tmp_path / "target"
    assert deploy("--from", versions.v1, "--target", target) == 0
    first = current_id(target)
    before = {layer: files(target / layer) for layer in UNCHANGED}

    assert deploy("--from", versions.v2, "--target", target) == 0
    second = current_id(target)
    entries = state(target) / "deployments" / second
    for layer in UNCHANGED:
        # one link, straight into the deployment that holds the layer
        assert os.readlink(entries / layer) == f"../{first}/{layer}"
        after = files(target / layer)
        assert after.keys() == before[layer].keys()
        for path, st in after.items():  # not one new inode, not one more hard link
            assert (st.st_ino, st.st_nlink) == (
                before[layer][path].st_ino,
                before[layer][path].st_nlink,
            )
    assert not (entries / "app-one").is_symlink()
    assert run_app(target, "app-one").startswith("one v2")
    assert run_app(target, "app-two").startswith("two v1")

    assert deploy("--rollback", "--target", target) == 0
    assert current_id(target) == first
    assert run_app(target, "app-one").startswith("one v1")
    assert deploy("--rollback", "--target", target) == 0
    assert run_app(target, "app-one").startswith("one v2")

    # v1 again, then v2 again: the links always lead to the first deployment
    assert deploy("--from", versions.v1, "--target", target) == 0
    third = current_id(target)
    assert deployment_ids(target) == {first, second, third}
    assert os.readlink(state(target) / "deployments" / third / "app-two") == f"../{first}/app-two"
    assert deploy("--from", versions.v2, "--target", target) == 0
    fourth = current_id(target)
    # current (fourth) and previous (third) reach the first through their links; the
    # second is reached by neither
    assert deployment_ids(target) == {first, third, fourth}
    assert run_app(target, "app-one").startswith("one v2")
    assert deploy("--rollback", "--target", target) == 0
    assert run_app(target, "app-one").startswith("one v1")
    assert run_app(target, "app-two").startswith("two v1")


def test_a_changed_layer_reuses_identical_files_and_their_bytecode(
    versions: Versions, tmp_path: Path
) -> None:
    """The framework changes (one module edited, one added): its other files and their
    bytecode stay the very same inodes; the apps over it get folders of their own."""
    changed = copy_version(versions.v1, tmp_path / "v1-framework")
    edited = "alpha/__init__.py"

    def edit(name: str, data: bytes) -> bytes:
        return data + b"EDITED = True\n" if name.endswith(edited) else data

    with tarfile.open(archive(changed, "framework-base")) as layer:
        [beta] = [m for m in layer.getnames() if m.endswith("site-packages/beta/__init__.py")]
    prefix = beta.removeprefix("framework-base/").removesuffix("/beta/__init__.py")
    repack(changed, "framework-base", edit, {f"{prefix}/extra_mod.py": b"EXTRA = 1\n"})

    target = tmp_path / "target"
    assert deploy("--from", versions.v1, "--target", target) == 0
    site = site_packages(target, "framework-base")
    before = files(site)
    previous = snapshot(state(target) / "deployments" / current_id(target))
    assert any(p.startswith("beta/__pycache__/") for p in before)

    assert deploy("--from", changed, "--target", target) == 0
    site = site_packages(target, "framework-base")
    after = files(site)
    kept = [p for p in before if p.startswith("beta/")]
    assert kept and all(after[p].st_ino == before[p].st_ino for p in kept)  # .py and .pyc
    assert after[edited].st_ino != before[edited].st_ino
    [old_pyc] = [p for p in before if p.startswith("alpha/__pycache__/__init__.")]
    assert after[old_pyc].st_ino != before[old_pyc].st_ino  # compiled again
    assert any(p.startswith("__pycache__/extra_mod.") for p in after)  # and only new code
    for layer in ("app-one", "app-two"):  # the framework below changed: real folders
        assert not (state(target) / "current" / layer).is_symlink()
    out = subprocess.run(
        [
            target / "app-one" / "bin" / "python",
            "-c",
            "import alpha, extra_mod; print(alpha.EDITED, extra_mod.EXTRA)",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.split() == ["True", "1"]
    assert run_app(target, "app-one").startswith("one v1")
    # nothing wrote through a link into the previous deployment
    first = os.path.basename(os.readlink(state(target) / "previous"))
    assert snapshot(state(target) / "deployments" / first) == previous
    assert deploy("--rollback", "--target", target) == 0
    assert run_app(target, "app-two").startswith("two v1")


def test_a_runtime_only_change_keeps_every_app_running(versions: Versions, tmp_path: Path) -> None:
    changed = copy_version(versions.v1, tmp_path / "v1-runtime")
    repack(changed, "cpython-3.12", lambda _name, data: data, {"NOTICE.txt": b"changed\n"})
    target = tmp_path / "target"
    assert deploy("--from", versions.v1, "--target", target) == 0
    assert deploy("--from", changed, "--target", target) == 0
    assert (target / "cpython-3.12" / "NOTICE.txt").is_file()
    for layer in ("framework-base", "app-one", "app-two"):
        assert not (state(target) / "current" / layer).is_symlink()
        # its link to the base Python leads into the new runtime
        python = target / layer / "bin" / "python"
        assert Path(os.path.realpath(python)).is_relative_to(
            os.path.realpath(state(target) / "current" / "cpython-3.12")
        )
    assert run_app(target, "app-one").startswith("one v1")
    assert run_app(target, "app-two").startswith("two v1")
    runtime_changed = current_id(target)
    repack(changed, "app-one", lambda _name, data: data, {"NOTICE.txt": b"app\n"})
    assert deploy("--from", changed, "--target", target) == 0  # and an app on top
    for layer in ("cpython-3.12", "framework-base", "app-two"):
        link = os.readlink(state(target) / "current" / layer)
        assert link == f"../{runtime_changed}/{layer}"
    assert (target / "app-one" / "NOTICE.txt").is_file()
    assert run_app(target, "app-one").startswith("one v1")
    assert run_app(target, "app-two").startswith("two v1")


def test_no_compile_leaves_bytecode_to_python(
    versions: Versions, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "target"
    assert deploy("--no-compile", "--from", versions.v1, "--target", target) == 0
    assert pycs(state(target) / "deployments") == []
    assert run_app(target, "app-one").startswith("one v1")
    capsys.readouterr()
    assert deploy("--rollback", "--no-compile", "--target", target) == 2
    assert "takes only --target" in capsys.readouterr().err


def test_a_deploy_killed_at_any_moment_is_repaired_by_the_next(
    versions: Versions, tmp_path: Path
) -> None:
    target = tmp_path / "target"
    assert deploy("--from", versions.v1, "--target", target) == 0
    draw = random.Random(15)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    for round_ in range(6):
        version = (versions.v2, versions.v1)[round_ % 2]
        command = [
            sys.executable,
            "-m",
            "venvlayers",
            "deploy",
            "--from",
            version,
            "--target",
            target,
        ]
        running = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
        time.sleep(draw.uniform(0.1, 1.5))  # somewhere in imports, unpacking, linking, switching
        running.send_signal(signal.SIGKILL)
        running.wait()
        assert run_app(target, "app-two").startswith("two v1")  # always one whole deployment
        assert deploy("--from", version, "--target", target) == 0
        expected = "v2" if version == versions.v2 else "v1"
        assert run_app(target, "app-one").startswith(f"one {expected}")
        hidden = [
            p.name for p in (state(target) / "deployments").iterdir() if p.name.startswith(".")
        ]
        assert hidden == []
        # pruned to current, previous and the deployment each links its unchanged layers into
        # (two homes when a kill left previous linking elsewhere: seen once in a fresh-clone run)
        assert len(deployment_ids(target)) <= 4
        assert (state(target) / "current" / "framework-base").is_symlink()


def test_a_deploy_into_a_busy_target_waits_for_it(versions: Versions, tmp_path: Path) -> None:
    target = tmp_path / "target"
    assert deploy("--from", versions.v1, "--target", target) == 0
    before = snapshot(target)
    with (state(target) / "lock").open("a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # as a running deploy holds it
        waiting = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "venvlayers",
                "deploy",
                "--from",
                versions.v2,
                "--target",
                target,
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        assert waiting.stderr is not None
        for line in waiting.stderr:
            if "waiting for another venvlayers run" in line:
                break
        assert waiting.poll() is None
        assert snapshot(target) == before
    rest = waiting.stderr.read()
    assert waiting.wait() == 0, rest
    assert run_app(target, "app-one").startswith("one v2")
