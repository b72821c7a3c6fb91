"""Drop-in for venvstacks 0.8.0, publish side (issue 11 part B), checked against venvstacks
itself (the ``peer`` fixture) on one spec: the metadata it publishes (paths and JSON, byte
for byte apart from archive sizes and hashes), archive_build continued across the two tools
in one output folder, and its published stacks deployed by ``venvlayers deploy``.

The spec is the layered test stack: a dotted runtime name, a framework DAG, a versioned app
(``@`` install target) with a support package, all from the local index.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rig.cli import make_stack
from rig.index import SimpleIndex
from rig.peer import Peer
from rig.runtime import RuntimeMirror

from venvlayers.cli.commands import main
from venvlayers.core.platforms import host_platform
from venvlayers.core.runlock import LOCK_NAME
from venvlayers.formats.assets import layer_index_name, sbom_name

pytestmark = [pytest.mark.slow, pytest.mark.network]

PLATFORM = str(host_platform())
OUR_OWN = f"venvlayers-publish-{PLATFORM}.json"  # merge's record; venvstacks ignores it


@dataclass
class Outputs:
    peer: Peer
    runtimes: dict[str, Path]
    stack: Path
    """venvstacks' stack folder (spec, modules and the locks it wrote)."""
    ours: Path
    """A copy of that folder, built by venvlayers from venvstacks' locks as they are."""
    work: Path

    def theirs(self, tagged: bool) -> Path:
        return self.work / ("theirs-tagged" if tagged else "theirs-plain")

    def mine(self, tagged: bool) -> Path:
        return self.work / ("ours-tagged" if tagged else "ours-plain")

    def peer_run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.peer.run(list(args), cwd=self.stack, runtimes=self.runtimes)


def vl(*args: str | Path) -> int:
    return main(["-q", *(str(a) for a in args)])


@pytest.fixture(scope="module")
def outputs(
    peer: Peer,
    runtime_mirror_session: RuntimeMirror,
    local_index: SimpleIndex,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Outputs]:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in runtime_mirror_session.env.items():
            mp.setenv(key, value)
        mp.delenv("SOURCE_DATE_EPOCH", raising=False)
        work = tmp_path_factory.mktemp("compat-publish")
        spec = make_stack(work / "stack", local_index.url)
        found = Outputs(peer, runtime_mirror_session.archives, spec.parent, work / "ours", work)
        found.peer_run(
            "build", "--lock", "--publish", "--tag-outputs", "--output-dir",
            str(found.theirs(True)), str(spec),
        )  # fmt: skip
        found.peer_run("publish", "--output-dir", str(found.theirs(False)), str(spec))
        shutil.copytree(found.stack, found.ours, ignore=shutil.ignore_patterns("_build"))
        ours_spec = found.ours / "venvstacks.toml"
        # venvstacks' locks are venvlayers' locks (issue 11 part A): no relocking
        assert vl("build", "--locked", ours_spec) == 0
        assert vl("publish", "--tag-outputs", "--output-dir", found.mine(True), ours_spec) == 0
        assert vl("publish", "--output-dir", found.mine(False), ours_spec) == 0
        yield found


def files_below(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def layer_files(out: Path) -> dict[str, dict[str, Any]]:
    """layer name -> its published metadata, from the manifest in ``out``."""
    manifests = list((out / "__venvstacks__").glob("venvstacks*.json"))
    assert len(manifests) == 1, manifests
    manifest = json.loads(manifests[0].read_text(encoding="utf-8"))
    return {m["layer_name"]: m for ms in manifest["layers"].values() for m in ms}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("tagged", [True, False], ids=["tag-outputs", "untagged"])
def test_published_metadata_is_venvstacks_own(outputs: Outputs, tagged: bool) -> None:
    theirs, mine = outputs.theirs(tagged), outputs.mine(tagged)
    tag = f"-{PLATFORM}" if tagged else ""
    expected = files_below(theirs)
    assert f"__venvstacks__/venvstacks{tag}.json" in expected
    assert f"__venvstacks__/env_metadata/app-one{tag}.json" in expected
    own = f"__venvstacks__/{OUR_OWN if tagged else 'venvlayers-publish.json'}"
    sboms = {sbom_name(m["archive_name"]) for m in layer_files(mine).values()}  # ours only
    indexes = {m["venvlayers_index"]["name"] for m in layer_files(mine).values()}
    assert indexes == {layer_index_name(m["archive_name"]) for m in layer_files(mine).values()}
    # beyond venvstacks' files: our publish record, SBOMs and layer indexes, and the run
    # lock a publish holds
    assert files_below(mine) == expected | {own, LOCK_NAME} | sboms | indexes
    # Archive bytes differ (another compressor), so their sizes and hashes do; nothing else
    sizes_and_hashes = [
        (f'"archive_size": {m["archive_size"]},', m["archive_hashes"]["sha256"], name)
        for name, m in layer_files(mine).items()
    ]
    theirs_by_layer = layer_files(theirs)
    for relative in sorted(p for p in expected if p.endswith(".json")):
        text = (mine / relative).read_text(encoding="utf-8")
        # our one addition, which venvstacks reads past (it loads metadata as plain JSON)
        text = re.sub(r',\n\s*"venvlayers_index": \{[^}]*\}', "", text)
        for size, digest, name in sizes_and_hashes:
            other = theirs_by_layer[name]
            text = text.replace(size, f'"archive_size": {other["archive_size"]},')
            text = text.replace(digest, other["archive_hashes"]["sha256"])
        assert text == (theirs / relative).read_text(encoding="utf-8"), relative


def test_local_export_metadata_is_venvstacks_own(outputs: Outputs, tmp_path: Path) -> None:
    theirs, mine = tmp_path / "theirs", tmp_path / "mine"
    outputs.peer_run(
        "local-export", "--output-dir", str(theirs), str(outputs.stack / "venvstacks.toml")
    )
    assert vl("local-export", "--output-dir", mine, outputs.ours / "venvstacks.toml") == 0
    meta_theirs, meta_mine = theirs / "__venvstacks__", mine / "__venvstacks__"
    expected = files_below(meta_theirs)
    assert "env_metadata/app-one.json" in expected
    assert files_below(meta_mine) == expected
    for relative in sorted(expected):
        assert (meta_mine / relative).read_bytes() == (meta_theirs / relative).read_bytes()


@pytest.mark.parametrize("tagged", [True, False], ids=["tag-outputs", "untagged"])
def test_venvstacks_output_deploys_and_its_apps_run(
    outputs: Outputs, tagged: bool, tmp_path: Path
) -> None:
    published, target = outputs.theirs(tagged), tmp_path / "deployed"
    # as venvstacks leaves it: links such as bin/python_ -> ../../cpython-3.12/bin/python
    app_two = published / layer_files(published)["app-two"]["archive_name"]
    with tarfile.open(app_two) as tar:
        links = {m.name: m.linkname for m in tar.getmembers() if m.issym()}
    assert links["app-two/bin/python_"] == "../../cpython-3.12/bin/python"
    # the output folder, or its __venvstacks__ folder
    source = published if tagged else published / "__venvstacks__"
    assert vl("deploy", "--from", source, "--target", target) == 0
    assert sorted(p.name for p in target.iterdir() if not p.name.startswith(".")) == sorted(
        m["install_target"] for m in layer_files(published).values()
    )
    one = subprocess.run(
        [target / "app-one@1/bin/python", "-m", "one"], capture_output=True, text=True, check=True
    )
    report = json.loads(one.stdout)
    assert report["answer"] == 42 and report["greeting"] == "hello from onehelp"
    assert report["files"]["beta"].startswith(f"{target}/framework-upper/")
    # its C extension loads, from its own layer (venvstacks' wrapper resolves links, so
    # the path may be the deployment's real folder behind TARGET/app-one@1)
    extuser = Path(report["files"]["extuser"])
    assert extuser.is_relative_to(target) and "/app-one@1/" in str(extuser)
    two = subprocess.run(
        [target / "app-two/bin/python", "-m", "two"], capture_output=True, text=True, check=True
    )
    assert json.loads(two.stdout)["alpha"] == "1.0.0"


def test_archive_build_continues_across_the_two_tools(outputs: Outputs, tmp_path: Path) -> None:
    """venvstacks publishes, then venvlayers into the same folder, then venvstacks again."""
    work = tmp_path / "out"
    shutil.copytree(outputs.theirs(True), work)
    before = layer_files(work)
    their_archives = {m["archive_name"]: sha256(work / m["archive_name"]) for m in before.values()}
    spec = outputs.ours / "venvstacks.toml"
    assert vl("publish", "--tag-outputs", "--output-dir", work, spec) == 0
    after = layer_files(work)
    for name, meta in after.items():
        old = before[name]
        assert meta["lock_version"] == old["lock_version"], name
        # other bytes (another compressor): the next build number, never a reused name
        assert meta["archive_build"] == old["archive_build"] + 1, name
        assert meta["archive_name"] == (
            f"{meta['install_target']}-{PLATFORM}-{meta['archive_build']}.tar.xz"
        )
        assert sha256(work / meta["archive_name"]) == meta["archive_hashes"]["sha256"], name
        env_file = work / "__venvstacks__" / "env_metadata" / f"{name}-{PLATFORM}.json"
        assert json.loads(env_file.read_text(encoding="utf-8")) == meta
    # venvstacks' own archives are untouched (its old metadata may still be downloaded)
    assert {n: sha256(work / n) for n in their_archives} == their_archives
    assert not (work / "__venvstacks__" / PLATFORM).exists()

    # venvstacks reads what venvlayers wrote as its own previous build
    outputs.peer_run(
        "publish",
        "--tag-outputs",
        "--output-dir",
        str(work),
        str(outputs.stack / "venvstacks.toml"),
    )
    again = layer_files(work)
    for name, meta in again.items():
        assert meta["archive_build"] >= after[name]["archive_build"], name
        assert sha256(work / meta["archive_name"]) == meta["archive_hashes"]["sha256"], name
        assert meta == after[name], f"venvstacks rebuilt {name} instead of reusing ours"


def test_untagged_publish_continues_from_venvstacks_metadata(
    outputs: Outputs, tmp_path: Path
) -> None:
    work = tmp_path / "out"
    shutil.copytree(outputs.theirs(False), work)
    before = layer_files(work)
    spec = outputs.ours / "venvstacks.toml"
    assert vl("publish", "--output-dir", work, spec) == 0
    assert not (work / "__venvstacks__" / PLATFORM).exists()
    after = layer_files(work)
    for name, meta in after.items():
        old = before[name]
        assert meta["lock_version"] == old["lock_version"], name
        assert meta["archive_build"] == old["archive_build"] + 1, name
        # the untagged name carries no build number: replaced, and described anew
        assert meta["archive_name"] == f"{meta['install_target']}.tar.xz"
        assert sha256(work / meta["archive_name"]) == meta["archive_hashes"]["sha256"], name
        env_file = work / "__venvstacks__" / "env_metadata" / f"{name}.json"
        assert json.loads(env_file.read_text(encoding="utf-8")) == meta


def test_merge_of_venvstacks_and_venvlayers_platform_outputs(
    outputs: Outputs, tmp_path: Path
) -> None:
    """Tagged outputs of both tools merge like any two platform jobs (names never collide)."""
    theirs = tmp_path / "artifacts" / "theirs"
    shutil.copytree(outputs.theirs(True), theirs)
    # venvstacks' output stands in for a second platform: rename it as that job would
    other = "linux_aarch64"
    for path in sorted(theirs.rglob("*")):
        if path.is_file() and PLATFORM in path.name:
            path = path.rename(path.with_name(path.name.replace(PLATFORM, other)))
        if path.suffix == ".json":
            path.write_text(path.read_text(encoding="utf-8").replace(PLATFORM, other))
    shutil.copytree(outputs.mine(True), tmp_path / "artifacts" / "ours")
    merged = tmp_path / "merged"
    assert vl("merge", tmp_path / "artifacts", "--output-dir", merged) == 0
    meta = merged / "__venvstacks__"
    for platform, source in ((PLATFORM, outputs.mine(True)), (other, theirs)):
        manifest = meta / f"venvstacks-{platform}.json"
        assert manifest.read_bytes() == (source / "__venvstacks__" / manifest.name).read_bytes()
    index = json.loads((merged / "venvstacks-index.json").read_text(encoding="utf-8"))
    assert index["layers"]["app-one"]["platforms"][other]["metadata"] == (
        f"__venvstacks__/env_metadata/app-one-{other}.json"
    )
    assert os.path.isfile(merged / index["layers"]["app-one"]["platforms"][other]["metadata"])
