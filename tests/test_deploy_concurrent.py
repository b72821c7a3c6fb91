"""Deploys running at the same time: one target never interleaves, one cache fetches once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rig.deploy_stack import Versions, archive, run_app
from rig.file_server import FileServer

pytestmark = pytest.mark.slow


@pytest.fixture
def versions(deploy_versions: Versions) -> Versions:
    return deploy_versions


def start(*args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "venvlayers", "deploy", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_deploys_into_one_target_never_interleave(versions: Versions, tmp_path: Path) -> None:
    target = tmp_path / "target"
    first = start("--from", versions.v1, "--target", target)
    second = start("--from", versions.v2, "--target", target)
    results = [(p.wait(), p.communicate()) for p in (first, second)]
    # the later one waits for the earlier (test_deploy_links shows it waiting) and then
    # deploys its own version
    assert [code for code, _ in results] == [0, 0], results
    # whichever finished last, the target is one whole deployment that tells the truth
    # about itself
    record = json.loads((target / ".venvlayers" / "current" / "deployment.json").read_text())
    layers = ("cpython-3.12", "framework-base", "app-one", "app-two")
    deployed = {layer["archive_name"] for layer in record["layers"]}
    sets = {v: {archive(getattr(versions, v), n).name for n in layers} for v in ("v1", "v2")}
    [expected] = [v for v, names in sets.items() if names == deployed]
    assert run_app(target, "app-one").startswith(f"one {expected}")
    assert [
        p.name for p in (target / ".venvlayers" / "deployments").iterdir() if p.name.startswith(".")
    ] == []


def test_two_deploys_sharing_a_cache_fetch_each_archive_once(
    versions: Versions, tmp_path: Path
) -> None:
    served = tmp_path / "served"
    shutil.copytree(versions.v1, served / "v1", copy_function=os.link)
    cache = tmp_path / "cache"
    with FileServer(served) as server:
        runs = [
            start("--from", server.url + "v1", "--target", tmp_path / f"t{i}", "--cache", cache)
            for i in (1, 2)
        ]
        outcomes = [(p.wait(), p.communicate()[1]) for p in runs]
        assert [code for code, _ in outcomes] == [0, 0], outcomes
        fetched = sorted(Path(s.path).name for s in server.fetched(".tar.xz"))
    names = sorted(
        archive(versions.v1, n).name
        for n in ("cpython-3.12", "framework-base", "app-one", "app-two")
    )
    assert fetched == names  # each once, though two runs wanted every one at the same time
    for i in (1, 2):
        assert run_app(tmp_path / f"t{i}", "app-two").startswith("two v1")
