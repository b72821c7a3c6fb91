"""deploy --from a folder or an HTTP server: downloads counted, updates, rollback, the cache."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rig.deploy_stack import Versions, archive, deploy, layer_metadata, run_app, snapshot
from rig.file_server import Cut, FileServer

pytestmark = pytest.mark.slow

LAYERS = ["cpython-3.12", "framework-base", "app-one", "app-two"]


@pytest.fixture
def versions(deploy_versions: Versions) -> Versions:
    return deploy_versions


@pytest.fixture
def server(versions: Versions, tmp_path: Path) -> Iterator[FileServer]:
    root = tmp_path / "served"
    root.mkdir()
    for name in ("v1", "v2"):
        shutil.copytree(getattr(versions, name), root / name, copy_function=os.link)
    with FileServer(root) as running:
        yield running


def test_update_fetches_only_the_changed_app_and_rollback_restores_it(
    server: FileServer, versions: Versions, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target, cache = tmp_path / "target", tmp_path / "cache"
    assert deploy("--from", server.url + "v1", "--target", target, "--cache", cache) == 0
    first = {Path(s.path).name: s.sent for s in server.fetched(".tar.xz")}
    # each archive exactly once, whole
    assert first == {
        archive(versions.v1, layer).name: archive(versions.v1, layer).stat().st_size
        for layer in LAYERS
    }
    assert run_app(target, "app-one").startswith("one v1")
    assert run_app(target, "app-two").startswith("two v1")
    out = capsys.readouterr().err
    print(f"first deploy: {sum(first.values())} bytes in {len(first)} archives", file=sys.stderr)
    assert "downloaded 4 archive(s)" in out

    server.clear()
    assert deploy("--from", server.url + "v2", "--target", target, "--cache", cache) == 0
    update = {Path(s.path).name: s.sent for s in server.fetched(".tar.xz")}
    changed = archive(versions.v2, "app-one")
    assert update == {changed.name: changed.stat().st_size}
    assert run_app(target, "app-one").startswith("one v2")
    assert run_app(target, "app-two").startswith("two v1")
    # the active layers are at TARGET/<install_target>, as venvstacks' layout expects
    assert sorted(p.name for p in target.iterdir() if not p.name.startswith(".")) == sorted(LAYERS)

    assert deploy("--rollback", "--target", target) == 0
    assert run_app(target, "app-one").startswith("one v1")
    assert deploy("--rollback", "--target", target) == 0  # and forward again
    assert run_app(target, "app-one").startswith("one v2")

    server.clear()
    assert deploy("--from", server.url + "v2", "--target", target, "--cache", cache) == 0
    assert server.fetched(".tar.xz") == []  # nothing changed: nothing fetched


def test_two_apps_sharing_a_framework_fetch_it_once_through_the_cache(
    server: FileServer, versions: Versions, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    for app in ("one", "two"):
        target = tmp_path / f"target-{app}"
        assert deploy("--from", server.url + "v1", "--target", target, "--cache", cache, app) == 0
        assert run_app(target, f"app-{app}").startswith(f"{app} v1")
        # only what the app needs is deployed
        other = "two" if app == "one" else "one"
        assert not (target / f"app-{other}").exists()
    fetched = sorted(Path(s.path).name for s in server.fetched(".tar.xz"))
    assert fetched == sorted(archive(versions.v1, layer).name for layer in LAYERS)


def test_a_cut_download_resumes_where_it_stopped(
    server: FileServer, versions: Versions, tmp_path: Path
) -> None:
    framework = archive(versions.v1, "framework-base")
    size = framework.stat().st_size
    server.cuts.append(Cut(framework.name, after=size // 2))
    target = tmp_path / "target"
    assert deploy("--from", server.url + "v1", "--target", target, "--cache", tmp_path / "c") == 0
    requests = [s for s in server.log if s.path.endswith(framework.name)]
    assert [(s.start, s.status, s.sent) for s in requests] == [
        (0, 200, size // 2),
        (size // 2, 206, size - size // 2),
    ]
    print(f"resumed download: {sum(s.sent for s in requests)} bytes for a {size}-byte archive")
    assert run_app(target, "app-one").startswith("one v1")


def test_an_interrupted_run_resumes_from_the_partial_file(
    server: FileServer, versions: Versions, tmp_path: Path
) -> None:
    framework = archive(versions.v1, "framework-base")
    size = framework.stat().st_size
    cache = tmp_path / "cache"
    partial = cache / "partial"
    partial.mkdir(parents=True)
    digest = layer_metadata(versions.v1, "framework-base")["archive_hashes"]["sha256"]
    (partial / f"{digest}.part").write_bytes(framework.read_bytes()[:1000])
    assert deploy("--from", server.url + "v1", "--target", tmp_path / "t", "--cache", cache) == 0
    [served] = [s for s in server.log if s.path.endswith(framework.name)]
    assert (served.start, served.sent) == (1000, size - 1000)


def test_a_corrupted_archive_is_refused_and_the_target_untouched(
    server: FileServer, versions: Versions, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target, cache = tmp_path / "target", tmp_path / "cache"
    assert deploy("--from", server.url + "v1", "--target", target, "--cache", cache) == 0
    bad = server.root / "bad"
    shutil.copytree(versions.v2, bad)
    victim = archive(bad, "app-one")
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    victim.write_bytes(bytes(data))
    before = snapshot(target)
    capsys.readouterr()
    assert deploy("--from", server.url + "bad", "--target", target, "--cache", cache) == 2
    err = capsys.readouterr().err
    assert "sha256" in err and victim.name in err and "Traceback" not in err
    assert snapshot(target) == before
    assert run_app(target, "app-one").startswith("one v1")
    assert list((cache / "partial").iterdir()) == []  # the bad bytes are not kept


def test_a_local_deploy_and_update_load_no_pydantic_and_no_spec_lock_build_or_http_code(
    versions: Versions, tmp_path: Path
) -> None:
    """`venvlayers deploy --from FOLDER` (first, then an app-only update) in a fresh
    interpreter loads only what it uses: no pydantic, tomlkit, packaging or HTTP client,
    nothing from stack, lock, build, publish or release (issue 23: an update as fast as
    plain tar)."""
    target = tmp_path / "target"
    code = (
        "import sys\n"
        "from venvlayers.cli.commands import main\n"
        "codes = [main(['-q', 'deploy', '--from', source, '--target', sys.argv[1]])\n"
        "         for source in sys.argv[2:]]\n"
        "heavy = ('pydantic', 'pydantic_core', 'tomlkit', 'tomllib', 'requests', 'github',\n"
        "         'packaging', 'ssl', 'http', 'email')\n"
        "stages = ('stack', 'lock', 'build', 'publish', 'release')\n"
        "print(codes, sorted(m for m in sys.modules if m.split('.')[0] in heavy\n"
        "    or (m.startswith('venvlayers.') and m.split('.')[1] in stages)\n"
        "    or m in ('venvlayers.formats.models', 'urllib.request')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(target), str(versions.v1), str(versions.v2)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "[0, 0] []", done.stderr
    assert run_app(target, "app-one").startswith("one v2")


def test_a_settled_local_archive_is_hashed_once_and_a_fresh_copy_while_unpacked(
    versions: Versions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deploy hashes a local archive before it takes the target's lock (a damaged one is
    refused with the target untouched: test_publish); unpacking the very copy it hashed
    does not hash it again. A copy changed within 2 s before that hash may have changed
    unseen (mtime and ctime ticks): it is hashed again while unpacked."""
    from venvlayers.archive import extract

    hashed: list[int] = []
    real_update = extract._Sha256.update

    def counting(self: extract._Sha256, data: bytes, /) -> None:
        hashed.append(len(data))
        real_update(self, data)

    monkeypatch.setattr(extract._Sha256, "update", counting)
    tars = [p for p in versions.v1.iterdir() if p.name.endswith((".tar.xz", ".tar.zst"))]
    assert tars
    newest = max(max(p.stat().st_mtime, p.stat().st_ctime) for p in tars)
    time.sleep(max(0.0, newest + 2.2 - time.time()))  # settled, whatever ran before
    assert deploy("--no-compile", "--from", versions.v1, "--target", tmp_path / "a") == 0
    assert sum(hashed) == 0
    assert run_app(tmp_path / "a", "app-one").startswith("one v1")

    fresh = tmp_path / "fresh"
    shutil.copytree(versions.v1, fresh)  # new files: changed just now
    assert deploy("--no-compile", "--from", fresh, "--target", tmp_path / "b") == 0
    assert sum(hashed) == sum(p.stat().st_size for p in tars)


def test_cached_archives_unused_for_weeks_are_removed_after_a_deploy(
    server: FileServer, versions: Versions, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    entries = cache / "sha256"
    first = tmp_path / "first"
    assert deploy("--from", server.url + "v1", "--target", first, "--cache", cache) == 0
    v1 = {p.name for p in entries.iterdir()}
    assert len(v1) == len(LAYERS)
    weeks_ago = time.time() - 15 * 86400

    def age(path: Path, when: float = weeks_ago) -> Path:
        os.utime(path, (when, when), follow_symlinks=False)
        return path

    for name in v1:
        age(entries / name)
    stale = entries / ("a" * 64)
    stale.write_bytes(b"an archive of a stack deployed long ago\n")
    age(stale)
    recent = entries / ("b" * 64)
    recent.write_bytes(b"fetched yesterday\n")
    age(recent, time.time() - 86400)
    notes = entries / "notes.txt"
    notes.write_text("not an entry of ours\n")
    age(notes)
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"never followed\n")
    link = entries / ("c" * 64)
    os.symlink(outside, link)
    age(link)
    capsys.readouterr()

    # another target from the same cache: every archive a hit, used, so kept (and touched)
    server.clear()
    assert (
        deploy("--from", server.url + "v1", "--target", tmp_path / "second", "--cache", cache) == 0
    )
    assert server.fetched(".tar.xz") == []
    assert all(time.time() - (entries / n).stat().st_mtime < 3600 for n in v1)
    assert not stale.exists() and not link.is_symlink()
    assert outside.read_bytes() == b"never followed\n"
    assert recent.exists() and notes.exists()
    assert "removed 2 cached archive(s) unused for 14 days" in capsys.readouterr().err

    # weeks later, an update: the replaced app's old archive goes; the stack's others stay
    for name in v1:
        age(entries / name)
    assert deploy("--from", server.url + "v2", "--target", first, "--cache", cache) == 0
    replaced = hashlib.sha256(archive(versions.v1, "app-one").read_bytes()).hexdigest()
    assert replaced in v1 and not (entries / replaced).exists()
    assert all((entries / n).exists() for n in v1 - {replaced})
    assert run_app(first, "app-one").startswith("one v2")
    assert run_app(tmp_path / "second", "app-one").startswith("one v1")  # its layers are its own


def test_a_cache_folder_linked_elsewhere_is_not_pruned(tmp_path: Path) -> None:
    from venvlayers.net.downloads import prune_unused_archives

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    old = elsewhere / ("a" * 64)
    old.write_bytes(b"someone else's file\n")
    os.utime(old, (0, 0))
    (tmp_path / "cache").mkdir()
    os.symlink(elsewhere, tmp_path / "cache" / "sha256")
    assert prune_unused_archives(tmp_path / "cache", set()) == (0, 0)
    assert old.exists()
    real = tmp_path / "real"  # the same entry in a real folder is pruned
    (real / "sha256").mkdir(parents=True)
    shutil.copy2(old, real / "sha256" / old.name)
    assert prune_unused_archives(real, set()) == (1, old.stat().st_size)


def test_a_deploy_from_a_folder_leaves_the_download_cache_alone(
    versions: Versions, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    stale = cache / "sha256" / ("a" * 64)
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old\n")
    os.utime(stale, (0, 0))
    assert deploy("--from", versions.v1, "--target", tmp_path / "t", "--cache", cache) == 0
    assert stale.exists()
