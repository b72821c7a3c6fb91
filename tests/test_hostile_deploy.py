"""Hostile layers given to `deploy` (issue 25, cases 5-7): deep trees never make a deploy
fail after its switch nor block the next one, a layer's config never writes outside the
layer, and unpacking is bounded.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rig.deploy_stack import Versions, archive, deploy, manifest_path, run_app, snapshot

from venvlayers.archive.extract import extract_archive
from venvlayers.core.errors import ArchiveError
from venvlayers.core.rmtree import remove_tree_quietly

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

RUNTIME = "cpython-3.12"

pytestmark = pytest.mark.slow


@pytest.fixture
def versions(deploy_versions: Versions) -> Versions:
    return deploy_versions


@pytest.fixture(autouse=True)
def _no_deep_leftovers(tmp_path: Path) -> Iterator[None]:
    """Remove what a test leaves, however deep: pytest's own cleanup of old temp folders
    uses shutil.rmtree, which a tree 1,200 deep crashes (in every later pytest session)."""
    yield
    for entry in tmp_path.iterdir():
        if not entry.is_mount():
            remove_tree_quietly(entry)


def state(target: Path) -> Path:
    return target / ".venvlayers"


def current_id(target: Path) -> str:
    return os.path.basename(os.readlink(state(target) / "current"))


def deployments(target: Path) -> set[str]:
    return {p.name for p in (state(target) / "deployments").iterdir()}


def rewrite_layer(
    source: Path,
    folder: Path,
    layer: str,
    *,
    edit: Callable[[str, bytes], bytes] = lambda name, data: data,
    files: dict[str, bytes] | None = None,
    links: dict[str, str] | None = None,
) -> Path:
    """A copy of the publish output ``source`` in ``folder`` whose ``layer`` archive has
    ``edit`` applied to its files and ``files``/``links`` (paths below the layer) added;
    its manifest names the new archive's size and sha256."""
    import hashlib
    import shutil

    shutil.copytree(source, folder, copy_function=os.link)
    path = archive(folder, layer)
    fresh = path.with_suffix(".new")
    with tarfile.open(path) as old, tarfile.open(fresh, "w:xz", preset=0) as out:
        for member in old.getmembers():
            if member.isfile():
                handle = old.extractfile(member)
                assert handle is not None
                data = edit(member.name, handle.read())
                member.size = len(data)
                out.addfile(member, io.BytesIO(data))
            else:
                out.addfile(member)
        for name, data in (files or {}).items():
            info = tarfile.TarInfo(f"{layer}/{name}")
            info.size, info.mode = len(data), 0o644
            out.addfile(info, io.BytesIO(data))
        for name, value in (links or {}).items():
            info = tarfile.TarInfo(f"{layer}/{name}")
            info.type, info.linkname = tarfile.SYMTYPE, value
            out.addfile(info)
    path.unlink()  # a hard link to the original: replace, never write through
    fresh.rename(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest = manifest_path(folder)
    data = json.loads(manifest.read_text())
    for entries in data["layers"].values():
        for entry in entries:
            if entry["install_target"] == layer:
                # a rewritten archive has no layer index (the old one describes the old one)
                entry.update(
                    archive_size=path.stat().st_size,
                    archive_hashes={"sha256": digest},
                    venvlayers_index=None,
                )
    manifest.unlink()
    manifest.write_text(json.dumps(data, indent=2))
    return folder


def deep_path(depth: int) -> str:
    return "d/" * depth + "leaf.txt"


def make_deep_folder(root: Path, depth: int) -> None:
    """``root/d/d/…`` ``depth`` levels down, a file and a link at each level (by descriptor:
    the path soon outgrows PATH_MAX)."""
    root.mkdir(parents=True)
    fd = os.open(root, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            os.close(os.open("f", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
            os.symlink("/etc/passwd", "l", dir_fd=fd)
            child = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)


# -- case 5: deep trees ---------------------------------------------------------------------


def test_a_deep_layer_deploys_updates_and_is_removed_without_a_failed_exit(
    versions: Versions, tmp_path: Path
) -> None:
    """A layer nested 1,200 deep: every deploy exits 0 and the deployment holding it is
    removed once nothing reaches it (shutil.rmtree raised RecursionError after the switch)."""
    target, cache = tmp_path / "target", tmp_path / "cache"
    deep = rewrite_layer(
        versions.v2, tmp_path / "v2-deep", "app-one", files={deep_path(1200): b"deep\n"}
    )
    args = ["--target", target, "--cache", cache, "--no-compile"]
    assert deploy("--from", versions.v1, *args) == 0
    assert deploy("--from", deep, *args) == 0
    holder = current_id(target)
    assert (target / "app-one" / deep_path(1200)).read_bytes() == b"deep\n"
    assert deploy("--from", versions.v1, *args) == 0
    assert deploy("--from", versions.v2, *args) == 0  # the deep deployment is unreachable now
    assert holder not in deployments(target)
    assert run_app(target, "app-one").startswith("one v2")


def test_leftover_deep_staging_never_blocks_a_later_deploy(
    versions: Versions, tmp_path: Path
) -> None:
    """A killed deploy left a staging folder nested 3,000 deep: the next deploy removes it."""
    target, cache = tmp_path / "target", tmp_path / "cache"
    args = ["--target", target, "--cache", cache, "--no-compile"]
    assert deploy("--from", versions.v1, *args) == 0
    make_deep_folder(state(target) / "deployments" / ".staging-killed", 3000)
    assert deploy("--from", versions.v2, *args) == 0
    assert not any(name.startswith(".") for name in deployments(target))
    assert run_app(target, "app-one").startswith("one v2")


def test_a_layer_too_deep_to_unpack_fails_cleanly_and_the_next_deploy_works(
    versions: Versions, tmp_path: Path
) -> None:
    target, cache = tmp_path / "target", tmp_path / "cache"
    args = ["--target", target, "--cache", cache, "--no-compile"]
    too_deep = rewrite_layer(
        versions.v2, tmp_path / "v2-too-deep", "app-one", files={deep_path(3000): b"x"}
    )
    assert deploy("--from", versions.v1, *args) == 0
    before = current_id(target)
    assert deploy("--from", too_deep, *args) == 2
    assert current_id(target) == before
    assert not any(name.startswith(".") for name in deployments(target))
    assert deploy("--from", versions.v2, *args) == 0
    assert run_app(target, "app-one").startswith("one v2")


# -- case 6: a layer config that writes into another layer ------------------------------------


def with_config(change: dict[str, str]) -> Callable[[str, bytes], bytes]:
    def edit(name: str, data: bytes) -> bytes:
        if name.endswith("share/venv/metadata/venvstacks_layer.json"):
            config = json.loads(data)
            config.update(change)
            return json.dumps(config).encode()
        return data

    return edit


@pytest.mark.parametrize("how", ["dotdot", "link"])
def test_a_layer_config_never_writes_into_the_live_runtime(
    versions: Versions, tmp_path: Path, how: str
) -> None:
    target, cache = tmp_path / "target", tmp_path / "cache"
    args = ["--target", target, "--cache", cache, "--no-compile"]
    if how == "dotdot":
        hostile = rewrite_layer(
            versions.v2,
            tmp_path / "v2-bad",
            "app-one",
            edit=with_config({"site_dir": "../cpython-3.12/lib"}),
        )
    else:  # a link inside the layer (allowed: it leads into a lower layer) as site_dir
        hostile = rewrite_layer(
            versions.v2,
            tmp_path / "v2-bad",
            "app-one",
            edit=with_config({"site_dir": "runtime-lib"}),
            links={"runtime-lib": f"../{RUNTIME}/lib"},
        )
    assert deploy("--from", versions.v1, *args) == 0
    live = target / RUNTIME
    before = snapshot(live)
    assert deploy("--from", hostile, *args) == 2
    assert snapshot(live) == before
    assert not (live / "lib" / "sitecustomize.py").exists()
    assert run_app(target, "app-one").startswith("one v1")


# -- case 7: unpacking is bounded -------------------------------------------------------------


class Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        count = min(len(buffer), self.left)
        buffer[:count] = bytes(count)
        self.left -= count
        return count


def zero_bomb(path: Path, sizes: list[int]) -> Path:
    """A tar.zst of ``layer/`` holding members of zeros of ``sizes`` (2 GiB -> ~70 KB)."""
    with zstd.ZstdFile(path, "w") as compressed, tarfile.open(fileobj=compressed, mode="w|") as tar:
        top = tarfile.TarInfo("layer")
        top.type, top.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(top)
        for number, size in enumerate(sizes):
            info = tarfile.TarInfo(f"layer/zeros-{number}")
            info.size, info.mode = size, 0o644
            tar.addfile(info, io.BufferedReader(Zeros(size), 1 << 20))
    return path


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 MiB tmpfs (needs root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.parametrize(
    "sizes", [[2 << 30], [256 << 20] * 8], ids=["one-2GiB-member", "eight-256MiB-members"]
)
def test_a_decompression_bomb_stops_at_the_bound(tmp_path: Path, sizes: list[int]) -> None:
    bomb = zero_bomb(tmp_path / "bomb.tar.zst", sizes)
    assert bomb.stat().st_size < 1 << 20
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(ArchiveError, match="decompression bomb"):
        extract_archive(bomb, dest, expected_root="layer")
    assert list(dest.iterdir()) == []  # the scratch folder is gone with what it held


def test_unpacking_never_fills_the_disk(tmp_path: Path, small_disk: Path) -> None:
    bomb = zero_bomb(tmp_path / "bomb.tar.zst", [200 << 20])  # within the ratio's floor
    with pytest.raises(ArchiveError, match="free some space"):
        extract_archive(bomb, small_disk, expected_root="layer")
    assert list(small_disk.iterdir()) == []
