"""Updates that fetch only what changed inside a layer (issue 21), over a real HTTP server
on 127.0.0.1 that counts what it serves and can misbehave.

A layer is published twice (v1, v2) with real archives and layer indexes; v1 is unpacked
as the deployed version; the update plans the ranges (``deploy/delta``), fetches them
(``net/ranges``) and unpacks the new layer through ``archive/extract.extract_members``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import pytest
from rig.deploy_stack import Versions, deploy, run_app, snapshot
from rig.range_server import RangeServer
from test_layer_index import _dist, _noise, make_layer

from venvlayers.archive import units
from venvlayers.archive.extract import extract_archive, extract_members
from venvlayers.archive.formats import ArchiveFormat
from venvlayers.archive.write import write_archive
from venvlayers.core.errors import ArchiveError, DeployError
from venvlayers.core.report import Reporter
from venvlayers.deploy.delta import DeltaPlan, plan_delta
from venvlayers.deploy.sources import HttpSource
from venvlayers.formats.models import ArchiveHashes, LayerMetadata
from venvlayers.net.downloads import Downloader
from venvlayers.publish.layer_index import write_index

SITE = "lib/python3.12/site-packages"


def publish(src: Path, out: Path, build: int, fmt: ArchiveFormat) -> LayerMetadata:
    out.mkdir(parents=True, exist_ok=True)
    archive = out / f"layer-linux_x86_64-{build}.{fmt}"
    info = write_archive(src, archive, root_name="layer", fmt=fmt, mtime=1_700_000_000)
    return LayerMetadata(
        layer_name="framework-layer",
        install_target="layer",
        requirements_hash="sha256:x",
        lock_version=1,
        locked_at="2026-01-01T00:00:00Z",
        archive_build=build,
        archive_name=archive.name,
        archive_size=info.size,
        archive_hashes=ArchiveHashes(sha256=info.sha256),
        venvlayers_index=write_index(archive, "layer", info),
    )


def big_layer(root: Path) -> Path:
    make_layer(root)
    # a "compiled" distribution: a big binary-ish file and a few modules
    _dist(
        root,
        "compiled",
        "1.0",
        {
            "compiled/_core.so": _noise(7, 1_500_000),
            "compiled/__init__.py": b"from ._core import *\n",
            # a library the wheel vendors (auditwheel): tar.zst puts it in a shared unit
            "compiled.libs/libblas-1a2b3c4d.so": _noise(9, 60_000),
        },
    )
    for i in range(8):  # more distributions, so one is a small share of the layer
        _dist(root, f"dep{i}", "1.0", {f"dep{i}/__init__.py": _noise(100 + i, 150_000)})
    return root


def variant(base: Path, to: Path, case: str) -> Path:
    shutil.copytree(base, to, symlinks=True)
    site = to / SITE
    if case == "a":  # one small pure-Python dependency bumped
        shutil.rmtree(site / "small-1.0.dist-info")
        (site / "small.py").unlink()
        _dist(to, "small", "1.1", {"small.py": _noise(99, 3000) + b"1.1"})
    elif case in ("b", "d"):  # a compiled package bumped (d: its vendored library too)
        shutil.rmtree(site / "compiled-1.0.dist-info")
        shutil.rmtree(site / "compiled.libs")
        blas = "libblas-5e6f7a8b.so" if case == "d" else "libblas-1a2b3c4d.so"
        _dist(
            to,
            "compiled",
            "1.1",
            {
                "compiled/_core.so": _noise(8, 1_500_000),
                "compiled/__init__.py": b"# 1.1\n",
                f"compiled.libs/{blas}": _noise(9, 60_000) + (b"rebuilt" if case == "d" else b""),
            },
        )
    elif case == "c":  # only the layer's version
        meta = to / "share" / "venv" / "metadata" / "venvstacks_layer.json"
        meta.write_text('{"python": "bin/python", "build": 2}\n')
    return to


class Rig:
    def __init__(self, tmp: Path, fmt: ArchiveFormat, case: str) -> None:
        self.tmp = tmp
        self.v1_src = big_layer(tmp / "v1src")
        self.v2_src = variant(self.v1_src, tmp / "v2src", case)
        self.served = tmp / "served"
        self.v1 = publish(self.v1_src, self.served, 1, fmt)
        self.v2 = publish(self.v2_src, self.served, 2, fmt)
        self.deployed = extract_archive(
            self.served / (self.v1.archive_name or ""),
            tmp / "deployed",
            expected_root="layer",
            sibling_roots={"cpython"},
        )
        self.before = snapshot(self.deployed)
        self.log = io.StringIO()
        self.downloader = Downloader(
            tmp / "cache", reporter=Reporter(self.log), deadline_seconds=600
        )

    def plan(self, server: RangeServer, base: Path | None = None) -> DeltaPlan | None:
        source = HttpSource(server.url, self.downloader)
        item = self.v2
        ref = item.venvlayers_index
        assert ref is not None and item.archive_name is not None
        where = source.archive(item.archive_name, item)
        beside = source.beside(ref.name, ref.sha256)
        reporter = Reporter(self.log)
        return plan_delta(item, where, beside, base or self.deployed, self.downloader, reporter)

    def unpack(self, plan: DeltaPlan, into: str = "new") -> Path:
        return extract_members(
            plan.ranges,
            plan.members(),
            self.tmp / into,
            expected_root="layer",
            bound_size=self.v2.archive_size or 0,
            sibling_roots={"cpython"},
            reuse_from=self.deployed,
        )

    @property
    def partial(self) -> Path:
        return self.downloader.cache / "partial"

    def range_files(self) -> list[str]:
        return sorted(p.name for p in self.partial.glob("*.ranges"))


@pytest.mark.parametrize("case", ["a", "b", "c", "d"])
@pytest.mark.parametrize("fmt", [ArchiveFormat.TAR_XZ, ArchiveFormat.TAR_ZST])
def test_an_update_fetches_only_the_ranges_of_what_changed(
    tmp_path: Path, case: str, fmt: ArchiveFormat, monkeypatch: pytest.MonkeyPatch
) -> None:
    # zstd frames group units up to 2 MiB: scaled down with this small layer
    monkeypatch.setattr(units, "ZSTD_GROUP", 128 << 10)
    rig = Rig(tmp_path, fmt, case)
    with RangeServer(rig.served) as server:
        plan = rig.plan(server)
        assert plan is not None, rig.log.getvalue()
        new = rig.unpack(plan)
    assert snapshot(new) == snapshot(rig.v2_src)
    assert snapshot(rig.deployed) == rig.before  # the deployed version is only read
    whole = rig.v2.archive_size or 0
    fetched = server.bytes_sent(".tar.xz") + server.bytes_sent(".tar.zst")
    index = server.bytes_sent(".index.json.xz")
    ranges = [r for req in server.requests(str(fmt)) for r in req.ranges]
    print(
        f"\n{fmt} case ({case}): {len(ranges)} range(s) {ranges} in "
        f"{len(server.requests(str(fmt)))} request(s): {fetched} bytes + index {index} "
        f"bytes, whole archive {whole} bytes",
        file=sys.stderr,
    )
    assert all(r.status == 206 for r in server.requests(str(fmt)))
    assert fetched < whole / 2
    if case == "a" and fmt is ArchiveFormat.TAR_XZ:
        assert fetched < whole / 10
    # unchanged files are hard links to the deployed ones (with their bytecode)
    unchanged = new / SITE / "dep0" / "__init__.py"
    assert os.stat(unchanged).st_ino == os.stat(rig.deployed / SITE / "dep0" / "__init__.py").st_ino
    if fmt is ArchiveFormat.TAR_ZST and case in ("b", "d"):
        # the vendored library has a frame of its own: fetched only when it changed
        vendored = _range_of(rig.served, rig.v2, "compiled.libs/")
        assert (vendored in ranges) is (case == "d"), (vendored, ranges)


def _range_of(served: Path, item: LayerMetadata, prefix: str) -> tuple[int, int]:
    """The archive range holding the first file under ``SITE/prefix`` (the layer index)."""
    from venvlayers.formats.layer_index import load_index

    assert item.venvlayers_index is not None
    data = (served / item.venvlayers_index.name).read_bytes()
    index = load_index(data, item.venvlayers_index.sha256, item.venvlayers_index.name)
    found = next(e for e in index.entries if e.path.startswith(f"{SITE}/{prefix}"))
    assert found.range is not None
    return found.range


@pytest.mark.parametrize("mode", ["corrupt", "truncate"])
def test_a_damaged_range_is_refused_and_nothing_is_left(tmp_path: Path, mode: str) -> None:
    rig = Rig(tmp_path, ArchiveFormat.TAR_XZ, "b")
    with (
        RangeServer(rig.served, mode=mode) as server,
        pytest.raises((ArchiveError, DeployError)) as caught,
    ):
        plan = rig.plan(server)
        assert plan is not None
        rig.unpack(plan)
    print(f"\n{mode}: {caught.value}", file=sys.stderr)
    assert not (tmp_path / "new" / "layer").exists()
    assert snapshot(rig.deployed) == rig.before


def test_reordered_multipart_parts_are_placed_by_their_content_range(tmp_path: Path) -> None:
    rig = Rig(tmp_path, ArchiveFormat.TAR_XZ, "a")
    (rig.v2_src / SITE / "dep3" / "__init__.py").write_bytes(b"changed too\n")
    rig.v2 = publish(rig.v2_src, rig.served, 3, ArchiveFormat.TAR_XZ)
    with RangeServer(rig.served, mode="reorder") as server:
        plan = rig.plan(server)
        assert plan is not None
        asked = [r.ranges for r in server.requests(".tar.xz")]
        assert any(len(r) > 1 for r in asked), (asked, rig.log.getvalue())
        new = rig.unpack(plan)
    assert snapshot(new) == snapshot(rig.v2_src)


@pytest.mark.parametrize("mode", ["first-only"])
def test_a_server_sending_one_range_at_a_time_still_works(tmp_path: Path, mode: str) -> None:
    rig = Rig(tmp_path, ArchiveFormat.TAR_XZ, "a")
    (rig.v2_src / SITE / "dep3" / "__init__.py").write_bytes(b"changed too\n")
    rig.v2 = publish(rig.v2_src, rig.served, 3, ArchiveFormat.TAR_XZ)
    with RangeServer(rig.served, mode=mode) as server:
        plan = rig.plan(server)
        assert plan is not None
        new = rig.unpack(plan)
    assert snapshot(new) == snapshot(rig.v2_src)


def test_a_server_ignoring_range_means_the_whole_archive(tmp_path: Path) -> None:
    rig = Rig(tmp_path, ArchiveFormat.TAR_XZ, "a")
    with RangeServer(rig.served, mode="ignore") as server:
        assert rig.plan(server) is None
    assert "ignores Range" in rig.log.getvalue()


def test_a_tampered_index_is_refused(tmp_path: Path) -> None:
    rig = Rig(tmp_path, ArchiveFormat.TAR_XZ, "a")
    ref = rig.v2.venvlayers_index
    assert ref is not None
    index = rig.served / ref.name
    index.write_bytes(index.read_bytes()[:-1] + b"\0")
    with RangeServer(rig.served) as server, pytest.raises(DeployError, match="index was altered"):
        rig.plan(server)
    assert server.bytes_sent(".tar.xz") == 0
    assert snapshot(rig.deployed) == rig.before


def test_each_update_fetches_into_its_own_range_file_removed_when_discarded(
    tmp_path: Path,
) -> None:
    """Two deploys sharing a cache, over different deployed versions of the layer, need
    different ranges: neither may overwrite the other's (they once shared one file per
    archive, truncated by each), and each file goes when its deploy is done with it."""
    rig = Rig(tmp_path, ArchiveFormat.TAR_XZ, "a")
    edited = tmp_path / "deployed-elsewhere" / "layer"
    shutil.copytree(rig.deployed, edited, symlinks=True)
    victim = edited / SITE / "dep1" / "__init__.py"
    os.chmod(victim, 0o644)
    victim.write_bytes(b"edited on that target\n")
    with RangeServer(rig.served) as server:
        wider = rig.plan(server, base=edited)  # the edited file's range too
        narrower = rig.plan(server)
        assert wider is not None and narrower is not None
        assert f"{SITE}/dep1/__init__.py" not in wider.reused
        assert wider.ranges != narrower.ranges
        assert len(rig.range_files()) == 2
        assert snapshot(rig.unpack(wider, "new-wider")) == snapshot(rig.v2_src)
        assert snapshot(rig.unpack(narrower, "new-narrower")) == snapshot(rig.v2_src)
    wider.discard()
    assert rig.range_files() == [narrower.ranges.name]
    narrower.discard()
    narrower.discard()  # twice: nothing left to do
    assert rig.range_files() == []


def test_range_files_of_killed_runs_are_pruned_and_live_ones_kept(tmp_path: Path) -> None:
    import fcntl

    rig = Rig(tmp_path, ArchiveFormat.TAR_XZ, "a")
    rig.partial.mkdir(parents=True)
    old = rig.v1.archive_sha256
    # left by a killed run (nobody holds their lock), one named as earlier versions named them
    (rig.partial / f"{old}.ranges").write_bytes(b"stale")
    (rig.partial / f"{old}.k1ll3d_x.ranges").write_bytes(b"stale")
    # a whole archive's resumable download, and the ranges of a deploy still running
    (rig.partial / f"{old}.part").write_bytes(b"resume me")
    live = rig.partial / f"{old}.l1ve_run.ranges"
    live.write_bytes(b"in use")
    with live.open("rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # as the running deploy holds it
        with RangeServer(rig.served) as server:
            plan = rig.plan(server)
            assert plan is not None
            assert sorted(rig.range_files()) == sorted([live.name, plan.ranges.name])
            assert snapshot(rig.unpack(plan)) == snapshot(rig.v2_src)
        plan.discard()
    assert rig.range_files() == [live.name]
    assert (rig.partial / f"{old}.part").read_bytes() == b"resume me"
    assert live.read_bytes() == b"in use"


def test_a_whole_archive_download_prunes_range_files_killed_runs_left(tmp_path: Path) -> None:
    from venvlayers.net.downloads import Download

    rig = Rig(tmp_path, ArchiveFormat.TAR_XZ, "a")
    rig.partial.mkdir(parents=True)
    (rig.partial / f"{rig.v1.archive_sha256}.k1ll3d_x.ranges").write_bytes(b"stale")
    name = rig.v2.archive_name or ""
    with RangeServer(rig.served) as server:
        item = Download(server.url + name, rig.v2.archive_sha256, rig.v2.archive_size, name)
        (got,) = rig.downloader.fetch_all([item]).values()
    assert got.stat().st_size == rig.v2.archive_size
    assert rig.range_files() == []


def test_a_failed_range_fetch_leaves_no_range_file(tmp_path: Path) -> None:
    rig = Rig(tmp_path, ArchiveFormat.TAR_XZ, "a")
    archive = rig.served / (rig.v2.archive_name or "")
    kept = archive.rename(archive.with_name("away"))  # the index is there, not the archive
    with RangeServer(rig.served) as server, pytest.raises(DeployError, match="404"):
        rig.plan(server)
    assert rig.range_files() == []
    kept.rename(archive)
    with RangeServer(rig.served, mode="ignore") as server:
        assert rig.plan(server) is None
    assert rig.range_files() == []


def test_a_local_archive_read_in_place_is_never_removed(tmp_path: Path) -> None:
    from venvlayers.deploy.sources import FolderSource

    rig = Rig(tmp_path, ArchiveFormat.TAR_XZ, "a")
    source = FolderSource(rig.served)
    ref = rig.v2.venvlayers_index
    assert ref is not None and rig.v2.archive_name is not None
    plan = plan_delta(
        rig.v2,
        source.archive(rig.v2.archive_name, rig.v2),
        source.beside(ref.name, ref.sha256),
        rig.deployed,
        rig.downloader,
        Reporter(rig.log),
    )
    assert plan is not None and plan.ranges == rig.served / rig.v2.archive_name
    plan.discard()
    assert plan.ranges.is_file()


def test_a_changed_deployed_file_is_fetched_not_trusted(tmp_path: Path) -> None:
    rig = Rig(tmp_path, ArchiveFormat.TAR_XZ, "a")
    victim = rig.deployed / SITE / "dep1" / "__init__.py"
    os.chmod(victim, 0o644)
    victim.write_bytes(b"edited on the target\n" + victim.read_bytes()[21:])
    with RangeServer(rig.served) as server:
        plan = rig.plan(server)
        assert plan is not None and f"{SITE}/dep1/__init__.py" not in plan.reused
        new = rig.unpack(plan)
    digest = hashlib.sha256((new / SITE / "dep1" / "__init__.py").read_bytes()).hexdigest()
    assert (
        digest
        == hashlib.sha256((rig.v2_src / SITE / "dep1" / "__init__.py").read_bytes()).hexdigest()
    )


def _bytes_read_by_this_process() -> int:
    """What the kernel counts as read by this process's system calls (page cache too)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def _settled_rig(tmp_path: Path) -> Rig:
    """A rig whose deployed files last changed longer ago than the racy window
    (``KnownCopy.is_settled``), as a deployment being updated days later does."""
    rig = Rig(tmp_path, ArchiveFormat.TAR_XZ, "a")
    time.sleep(2.2)
    return rig


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="reads counted from /proc")
def test_unchanged_files_are_read_once_and_fresh_ones_checked_again(tmp_path: Path) -> None:
    settled = _settled_rig(tmp_path / "settled")
    fresh = Rig(tmp_path / "fresh", ArchiveFormat.TAR_XZ, "a")
    # changed "just now" however slow this machine is: mtimes an hour ahead (clock skew)
    ahead = time.time_ns() + 3600 * 10**9
    for path in fresh.deployed.rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.utime(path, ns=(ahead, ahead))
    read: dict[str, int] = {}
    for name, rig in (("settled", settled), ("fresh", fresh)):
        with RangeServer(rig.served) as server:
            plan = rig.plan(server)
        assert plan is not None and len(plan.reused) > 10
        known = [k for k in plan.reused.values() if k is not None]
        assert len(known) == (len(plan.reused) if name == "settled" else 0), name
        reused_bytes = sum(os.path.getsize(rig.deployed / p) for p in plan.reused)
        before = _bytes_read_by_this_process()
        new = rig.unpack(plan)
        read[name] = _bytes_read_by_this_process() - before
        assert snapshot(new) == snapshot(rig.v2_src)
        assert snapshot(rig.deployed) == rig.before
        dep0 = f"{SITE}/dep0/__init__.py"
        assert os.stat(new / dep0).st_ino == os.stat(rig.deployed / dep0).st_ino
        print(f"\n{name}: unpack read {read[name]} bytes, reused {reused_bytes}", file=sys.stderr)
        plan.discard()
        if name == "settled":  # hashed at planning, linked unread when staged
            assert read[name] < reused_bytes / 4, (read, reused_bytes)
        else:  # changed moments before it was hashed: read and checked again
            assert read[name] > reused_bytes, (read, reused_bytes)


@pytest.mark.parametrize("change", ["in-place", "replaced"])
def test_a_deployed_file_changed_after_planning_is_refused_not_linked(
    tmp_path: Path, change: str
) -> None:
    rig = _settled_rig(tmp_path)
    with RangeServer(rig.served) as server:
        plan = rig.plan(server)
    victim = rig.deployed / SITE / "dep1" / "__init__.py"
    assert plan is not None and plan.reused[f"{SITE}/dep1/__init__.py"] is not None
    data = victim.read_bytes()
    edited = b"X" + data[1:]  # the same size
    if change == "in-place":
        with open(victim, "r+b") as f:
            f.write(b"X")
    else:  # a new file renamed over the deployed one
        other = victim.with_name("edited.tmp")
        other.write_bytes(edited)
        os.chmod(other, os.stat(victim).st_mode & 0o777)
        os.replace(other, victim)
    with pytest.raises(ArchiveError, match="damaged"):
        rig.unpack(plan)
    plan.discard()
    assert not (tmp_path / "new" / "layer").exists()
    assert victim.read_bytes() == edited  # the deployed layer is only read


def test_a_folder_linked_out_of_the_deployed_layer_is_neither_read_nor_linked(
    tmp_path: Path,
) -> None:
    rig = _settled_rig(tmp_path)
    outside = tmp_path / "outside-dep2"
    shutil.copytree(rig.deployed / SITE / "dep2", outside)  # the very bytes the index names
    shutil.rmtree(rig.deployed / SITE / "dep2")
    os.symlink(outside, rig.deployed / SITE / "dep2")
    with RangeServer(rig.served) as server:
        plan = rig.plan(server)
        assert plan is not None and f"{SITE}/dep2/__init__.py" not in plan.reused
        assert f"{SITE}/dep3/__init__.py" in plan.reused
        new = rig.unpack(plan)
    assert snapshot(new) == snapshot(rig.v2_src)
    linked = os.stat(new / SITE / "dep2" / "__init__.py")
    assert linked.st_ino != os.stat(outside / "__init__.py").st_ino
    assert linked.st_nlink == 1


@pytest.mark.parametrize("path", ["../outside/secret.bin", "lib/../../outside/secret.bin"])
def test_an_index_path_leaving_the_layer_is_never_read(tmp_path: Path, path: str) -> None:
    """A hostile index naming a file outside the deployed layer: if the update hashed it,
    the ranges it then asked for would tell the server whether that file has a given
    sha256. The file is never opened, and the unpack refuses the name."""
    import dataclasses

    from venvlayers.formats.layer_index import IndexEntry, load_index
    from venvlayers.formats.models import LayerIndexRef

    rig = _settled_rig(tmp_path)
    secret = rig.deployed.parent / "outside" / "secret.bin"  # where the path leads
    secret.parent.mkdir()
    secret.write_bytes(b"a file outside the layer\n" * 100)
    ref = rig.v2.venvlayers_index
    assert ref is not None
    index = load_index((rig.served / ref.name).read_bytes(), ref.sha256, ref.name)
    # its "range" is the whole archive: fetched, it would be far more than the share
    digest = hashlib.sha256(secret.read_bytes()).hexdigest()
    size = secret.stat().st_size
    entry = IndexEntry(path, "file", 0o644, size, digest, range=(0, 1), skip=0)
    data = dataclasses.replace(index, entries=[*index.entries, entry]).to_bytes()
    (rig.served / ref.name).write_bytes(data)
    rig.v2.venvlayers_index = LayerIndexRef(name=ref.name, sha256=hashlib.sha256(data).hexdigest())
    before = os.stat(secret).st_atime_ns
    os.utime(secret, ns=(before - 10**9, os.stat(secret).st_mtime_ns))  # atime: was it read?
    with RangeServer(rig.served) as server:
        plan = rig.plan(server)
        assert plan is not None and path not in plan.reused
        with pytest.raises(ArchiveError):
            rig.unpack(plan)
    assert os.stat(secret).st_atime_ns == before - 10**9
    assert not (tmp_path / "new" / "layer").exists()


# --- through `venvlayers deploy`, on a real stack ----------------------------------------


def _framework_update(versions: Versions, served: Path) -> str:
    """``served/v1`` (v1 as published) and ``served/v3``: v1 with framework-base
    republished, alpha's ``__init__.py`` changed (what a patch release of a small
    pure-Python dependency does); returns the new archive's name."""
    from rig.deploy_stack import layer_metadata, manifest_path

    served.mkdir()
    shutil.copytree(versions.v1, served / "v1", copy_function=os.link)
    shutil.copytree(versions.v1, served / "v3", copy_function=os.link)
    meta = layer_metadata(versions.v1, "framework-base")
    work = served.parent / "repack"
    tree = extract_archive(
        versions.v1 / meta["archive_name"],
        work,
        expected_root="framework-base",
        sibling_roots={"cpython-3.12"},
    )
    (init,) = tree.glob(f"{SITE}/alpha/__init__.py")
    init.write_text(init.read_text().replace('__version__ = "', '__version__ = "delta-'))
    name = meta["archive_name"].replace("-1.tar.xz", "-2.tar.xz")
    info = write_archive(
        tree, served / "v3" / name, root_name="framework-base", fmt="tar.xz", mtime=1
    )
    ref = write_index(served / "v3" / name, "framework-base", info)
    assert ref is not None
    manifest = manifest_path(served / "v3")
    text = manifest.read_text()
    document = json.loads(text)
    for entries in document["layers"].values():
        for entry in entries:
            if entry["install_target"] == "framework-base":
                entry |= {
                    "archive_name": name,
                    "archive_size": info.size,
                    "archive_hashes": {"sha256": info.sha256},
                    "archive_build": 2,
                    "venvlayers_index": {"name": ref.name, "sha256": ref.sha256},
                }
    manifest.unlink()  # a hard link to v1's: write a new file
    manifest.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    return name


@pytest.mark.slow
def test_deploy_updates_a_framework_from_ranges_and_refuses_a_corrupt_one(
    deploy_versions: Versions, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    served = tmp_path / "served"
    name = _framework_update(deploy_versions, served)
    whole = (served / "v3" / name).stat().st_size
    target, cache = tmp_path / "target", tmp_path / "cache"
    with RangeServer(served) as server:
        assert deploy("--from", server.url + "v1", "--target", target, "--cache", cache) == 0
        assert run_app(target, "app-one").startswith("one v1 2.0.0")
        before = snapshot(target)

        # a server that corrupts ranges: exit 2, the running deployment untouched
        server.mode = "corrupt"
        server.log.clear()
        capsys.readouterr()
        assert deploy("--from", server.url + "v3", "--target", target, "--cache", cache) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and "corrupt" in err, err
        assert snapshot(target) == before
        assert run_app(target, "app-one").startswith("one v1 2.0.0")
        assert list((cache / "partial").glob("*.ranges")) == []  # removed with the failure

        server.mode = "normal"
        server.log.clear()
        assert deploy("--from", server.url + "v3", "--target", target, "--cache", cache) == 0
        err = capsys.readouterr().err
        assert list((cache / "partial").glob("*.ranges")) == []  # removed once committed
    archive_requests = server.requests(name)
    fetched = server.bytes_sent(name)
    print(
        f"\nframework-base update: {[r.ranges for r in archive_requests]}, {fetched} of "
        f"{whole} bytes + index {server.bytes_sent('.index.json.xz')} bytes",
        file=sys.stderr,
    )
    assert "changed ranges" in err, err
    assert archive_requests and all(r.status == 206 for r in archive_requests)
    assert fetched < whole / 2
    assert run_app(target, "app-one").startswith("one v1 delta-2.0.0")  # the new alpha
    assert deploy("--rollback", "--target", target) == 0
    assert run_app(target, "app-one").startswith("one v1 2.0.0")


@pytest.mark.slow
def test_deploy_from_a_folder_reads_only_the_changed_ranges_in_place(
    deploy_versions: Versions, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from venvlayers.formats.layer_index import load_index

    served = tmp_path / "served"
    name = _framework_update(deploy_versions, served)
    target = tmp_path / "target"
    assert deploy("--from", served / "v1", "--target", target) == 0
    before = snapshot(target)

    # the changed file's bytes damaged in the local archive (same size): refused, exit 2
    archive = served / "v3" / name
    good = archive.read_bytes()
    index_file = archive.with_name(name.removesuffix(".tar.xz") + ".index.json.xz")
    data = index_file.read_bytes()
    index = load_index(data, hashlib.sha256(data).hexdigest(), index_file.name)
    (changed,) = [e for e in index.entries if e.path.endswith("alpha/__init__.py")]
    assert changed.range is not None
    start, end = changed.range
    damaged = bytearray(good)
    for offset in range(start + 64, end - 64, 97):
        damaged[offset] ^= 0x55
    archive.unlink()
    archive.write_bytes(bytes(damaged))
    capsys.readouterr()
    assert deploy("--from", served / "v3", "--target", target) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "range(s)" in err, err
    assert snapshot(target) == before

    # intact: only the ranges holding what changed are decoded, and the app sees the change
    archive.unlink()
    archive.write_bytes(good)
    assert deploy("--from", served / "v3", "--target", target) == 0
    err = capsys.readouterr().err
    assert "changed ranges" in err and f"of {name}" in err, err
    share = re.search(r"reading \d+ range\(s\), (\d+) of (\d+) bytes", err)
    assert share is not None and int(share[1]) < int(share[2]) / 2, err
    assert run_app(target, "app-one").startswith("one v1 delta-2.0.0")
    assert deploy("--rollback", "--target", target) == 0
    assert run_app(target, "app-one").startswith("one v1 2.0.0")


@pytest.mark.slow
def test_ranges_left_by_a_deploy_killed_mid_fetch_are_removed_by_the_next(
    deploy_versions: Versions, tmp_path: Path
) -> None:
    import signal
    import subprocess

    served = tmp_path / "served"
    _framework_update(deploy_versions, served)
    target, cache = tmp_path / "target", tmp_path / "cache"
    partial = cache / "partial"
    with RangeServer(served) as server:
        assert deploy("--from", server.url + "v1", "--target", target, "--cache", cache) == 0
        before = snapshot(target)
        server.mode = "stall"  # range answers wait until the gate opens
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        command = [sys.executable, "-m", "venvlayers", "deploy", "--from", server.url + "v3"]
        running = subprocess.Popen(
            [*command, "--target", str(target), "--cache", str(cache)],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert server.stalled.wait(300), "the deploy never asked for its ranges"
            left = list(partial.glob("*.ranges"))
            assert len(left) == 1  # made and locked before the ranges were asked for
        finally:
            running.send_signal(signal.SIGKILL)
            running.wait()
            server.gate.set()
        assert list(partial.glob("*.ranges")) == left  # what kill -9 leaves
        assert snapshot(target) == before
        server.mode = "normal"
        assert deploy("--from", server.url + "v3", "--target", target, "--cache", cache) == 0
    assert list(partial.glob("*.ranges")) == []
    assert run_app(target, "app-one").startswith("one v1 delta-2.0.0")
