"""Deploys running at the same time: one target never interleaves, one cache fetches once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rig.deploy_stack import Versions, archive, published_versions
from rig.file_server import FileServer
from rig.index import SimpleIndex
from rig.runtime import RuntimeMirror

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def versions(
    tmp_path_factory: pytest.TempPathFactory,
    runtime_mirror_session: RuntimeMirror,
    local_index: SimpleIndex,
) -> Iterator[Versions]:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in runtime_mirror_session.env.items():
            mp.setenv(key, value)
        mp.delenv("SOURCE_DATE_EPOCH", raising=False)
        yield published_versions(tmp_path_factory.mktemp("deploy-stack"), local_index.url)


def start(*args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "venvlayers", "deploy", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def app_output(target: Path, app: str) -> str:
    python = target / app / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", app.removeprefix("app-")], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_two_deploys_into_one_target_never_interleave(versions: Versions, tmp_path: Path) -> None:
    target = tmp_path / "target"
    first = start("--from", versions.v1, "--target", target)
    second = start("--from", versions.v2, "--target", target)
    results = [(p.wait(), p.communicate()) for p in (first, second)]
    codes = [code for code, _ in results]
    assert all(code in (0, 2) for code in codes) and 0 in codes
    for code, (_, err) in results:
        if code == 2:  # the loser says why, in one line, and changed nothing
            assert "another deploy into this folder is running" in err
            assert "Traceback" not in err
    # whatever won, the target is one whole deployment that tells the truth about itself
    record = json.loads((target / ".venvlayers" / "current" / "deployment.json").read_text())
    layers = ("cpython-3.12", "framework-base", "app-one", "app-two")
    deployed = {layer["archive_name"] for layer in record["layers"]}
    sets = {v: {archive(getattr(versions, v), n).name for n in layers} for v in ("v1", "v2")}
    [expected] = [v for v, names in sets.items() if names == deployed]
    assert app_output(target, "app-one").startswith(f"one {expected}")
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
        assert app_output(tmp_path / f"t{i}", "app-two").startswith("two v1")
