"""deploy as a transaction: a failure anywhere leaves the working deployment as it was."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from rig.deploy_stack import Versions, archive, deploy, manifest_path, run_app, snapshot

pytestmark = pytest.mark.slow


@pytest.fixture
def versions(deploy_versions: Versions) -> Versions:
    return deploy_versions


def edit_manifest(folder: Path, layer: str, **changes: object) -> None:
    path = manifest_path(folder)
    manifest = json.loads(path.read_text())
    for entries in manifest["layers"].values():
        for entry in entries:
            if entry["install_target"] == layer:
                entry.update(changes)
    path.write_text(json.dumps(manifest, indent=2))


def repack_without(folder: Path, layer: str, dropped: str) -> None:
    """Rewrite ``layer``'s archive without members ending in ``dropped``; fix its metadata."""
    path = archive(folder, layer)
    fresh = path.with_suffix(".new")
    with tarfile.open(path) as source, tarfile.open(fresh, "w:xz") as out:
        for member in source.getmembers():
            if member.name.endswith(dropped):
                continue
            out.addfile(member, source.extractfile(member) if member.isfile() else None)
    path.unlink()
    fresh.rename(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    # a hand-made archive has no layer index (the old one describes the old archive)
    edit_manifest(
        folder,
        layer,
        archive_size=path.stat().st_size,
        archive_hashes={"sha256": digest},
        venvlayers_index=None,
    )


@pytest.fixture
def deployed_v1(versions: Versions, tmp_path: Path) -> Path:
    target = tmp_path / "target"
    assert deploy("--from", versions.v1, "--target", target) == 0
    return target


def test_a_layer_failing_after_others_were_staged_changes_nothing(
    versions: Versions, deployed_v1: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # v2 changes app-one (valid); app-two's new archive has no layer config and fails
    # its postinstall after app-one was unpacked and linked
    broken = tmp_path / "broken"
    shutil.copytree(versions.v2, broken)
    repack_without(broken, "app-two", "share/venv/metadata/venvstacks_layer.json")
    before = snapshot(deployed_v1)
    capsys.readouterr()
    assert deploy("--from", broken, "--target", deployed_v1) == 2
    err = capsys.readouterr().err.strip()
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err
    assert "app-two" in errors[0] and "layer config" in errors[0]
    assert snapshot(deployed_v1) == before  # record, links and layers: all as they were
    assert run_app(deployed_v1, "app-one").startswith("one v1")
    # the record tells the truth, so a good deploy afterwards updates what changed
    assert deploy("--from", versions.v2, "--target", deployed_v1) == 0
    assert run_app(deployed_v1, "app-one").startswith("one v2")
    assert run_app(deployed_v1, "app-two").startswith("two v1")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("archive_name", "../outside.tar.xz", "outside the archives folder"),
        ("archive_name", "/etc/passwd.tar.xz", "outside the archives folder"),
        ("required_layers", ["framework-base", "framework-ghost"], "'framework-ghost'"),
        ("install_target", "../escaped", "not a plain folder name"),
    ],
)
def test_hostile_metadata_is_refused_before_anything_is_written(
    versions: Versions,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    field: str,
    value: object,
    message: str,
) -> None:
    hostile = tmp_path / "hostile"
    shutil.copytree(versions.v1, hostile)
    (tmp_path / "outside.tar.xz").write_bytes(archive(hostile, "app-one").read_bytes())
    edit_manifest(hostile, "app-one", **{field: value})
    target = tmp_path / "target"
    capsys.readouterr()
    assert deploy("--from", hostile, "--target", target) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not target.exists()
    assert not (tmp_path / "escaped").exists()


def test_debris_of_killed_deploys_is_cleaned(versions: Versions, deployed_v1: Path) -> None:
    staging = deployed_v1 / ".venvlayers" / "deployments" / ".staging-k1ll3d"
    (staging / "app-one").mkdir(parents=True)
    assert deploy("--from", versions.v2, "--target", deployed_v1) == 0
    assert not staging.exists()
    assert run_app(deployed_v1, "app-one").startswith("one v2")


def test_a_file_as_target_is_one_line(
    versions: Versions, capsys: pytest.CaptureFixture[str]
) -> None:
    assert deploy("--from", versions.v1, "--target", "/etc/passwd") == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --target /etc/passwd: exists and is not a folder"


def test_rollback_without_a_previous_deployment(
    deployed_v1: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert deploy("--rollback", "--target", deployed_v1) == 2
    assert "no previous deployment" in capsys.readouterr().err


def test_importing_deploy_does_not_load_the_github_client() -> None:
    code = (
        "import sys, venvlayers.deploy.deployment, venvlayers.deploy.sources, venvlayers.net.downloads\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('github', 'requests')\n"
        "    or m == 'venvlayers.net.github')\n"
        "print(loaded)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
