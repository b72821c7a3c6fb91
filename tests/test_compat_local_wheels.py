"""``--local-wheels DIR`` and ``--index/--no-index``, as venvstacks 0.8.0 has them.

A layer needs ``localpkg``, whose wheel exists only in a folder beside the stacks (wheels
built earlier in a CI run, or private ones); its dependency ``alpha`` is on the index.
venvstacks passes each folder to uv as ``find-links`` (absolute) and records what uv
exports: the wheel's ``path`` relative to the lock file and its ``index`` as the folder's
``file://`` URL (so, as with venvstacks, a lock made from local wheels names the folder it
was made from). ``--no-index`` sets uv's ``no-index``: only the folders and uv's cache.

Both tools lock the same stack in two folders at the same depth, sharing the wheels folder:
they write the same lock files; each builds the other's lock; a fully offline lock and
build (a dead index, ``--no-index``) works with venvlayers.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from rig.index import SimpleIndex
from rig.peer import Peer
from rig.runtime import RuntimeMirror
from rig.wheels import build_wheel
from test_compat_lock import comparable, lock_files, ours

pytestmark = pytest.mark.network

SPEC = """\
[[runtimes]]
name = "cpython-3.12"
python_implementation = "cpython@3.12.1"
requirements = []

[[applications]]
name = "hello"
launch_module = "hello.py"
runtime = "cpython-3.12"
requirements = ["localpkg"]
platforms = ["linux_x86_64"]

[[tool.uv.index]]
name = "main"
url = "{index}"
default = true
"""

HELLO = "import alpha, localpkg\nprint('hello', localpkg.NAME, alpha.NAME)\n"


@pytest.fixture
def sources(tmp_path: Path) -> tuple[Path, Path]:
    """(the local wheels folder, the index folder)."""
    wheels, served = tmp_path / "wheels", tmp_path / "served"
    module = {"localpkg/__init__.py": "NAME = 'localpkg'\n"}
    build_wheel(wheels, "localpkg", "1.0.0", modules=module, requires=["alpha"])
    build_wheel(served, "alpha", "1.0.0", modules={"alpha/__init__.py": "NAME = 'alpha'\n"})
    return wheels, served


def make(folder: Path, index_url: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "hello.py").write_text(HELLO)
    spec = folder / "venvstacks.toml"
    spec.write_text(SPEC.format(index=index_url))
    return spec


def run_app(spec: Path) -> str:
    python = spec.parent / "_build" / "app-hello" / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "hello"], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.strip()


def test_same_lock_files_from_local_wheels_and_each_builds_the_others(
    peer: Peer,
    sources: tuple[Path, Path],
    tmp_path: Path,
    runtime_mirror: RuntimeMirror,
    simple_index_factory: object,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wheels, served = sources
    index: SimpleIndex = simple_index_factory(served)  # type: ignore[operator]
    for name in ("GITHUB_ACTIONS", "UV_EXCLUDE_NEWER"):
        monkeypatch.delenv(name, raising=False)
    theirs, mine = (
        make(tmp_path / "a" / "stack", index.url),
        make(tmp_path / "b" / "stack", index.url),
    )
    runtimes = dict(runtime_mirror.archives)
    peer.run(
        ["lock", "--local-wheels", "../../wheels", str(theirs)], cwd=tmp_path, runtimes=runtimes
    )
    run = ours("lock", "--local-wheels", "../../wheels", mine)
    assert run.code == 0, run.text
    their_files, my_files = lock_files(theirs), lock_files(mine)
    assert comparable(their_files) == comparable(my_files)
    pylock = my_files["app-hello/pylock.app-hello.toml"].decode()
    # the local wheel by its path from the lock's folder, its index the folder's URL
    assert 'path = "../../../../wheels/localpkg-1.0.0-py3-none-any.whl"' in pylock
    assert f'index = "{wheels.as_uri()}"' in pylock
    assert re.search(r'url = "http://127\.0\.0\.1:\d+/.*alpha-1\.0\.0-py3-none-any\.whl"', pylock)

    # each tool builds the other's lock, without relocking it
    assert ours("lock", "--check", theirs).code == 0
    build = ours("build", "--locked", theirs)
    assert build.code == 0, build.text
    assert run_app(theirs) == "hello localpkg alpha"
    built = peer.run(["build", str(mine)], cwd=tmp_path, runtimes=runtimes)
    assert "Locking" not in built.stdout + built.stderr
    assert lock_files(mine) == my_files
    assert run_app(mine) == "hello localpkg alpha"


def test_without_the_folder_the_wheel_is_not_found(
    sources: tuple[Path, Path],
    tmp_path: Path,
    runtime_mirror: RuntimeMirror,
    simple_index_factory: object,
) -> None:
    _, served = sources
    index: SimpleIndex = simple_index_factory(served)  # type: ignore[operator]
    spec = make(tmp_path / "stack", index.url)
    run = ours("lock", spec)
    assert run.code == 2
    assert "localpkg" in run.err
    missing = ours("lock", "--local-wheels", "no-such-folder", spec)
    assert missing.code == 2 and "--local-wheels" in missing.err and "no such folder" in missing.err


def test_fully_offline_lock_and_build(
    sources: tuple[Path, Path], tmp_path: Path, runtime_mirror: RuntimeMirror
) -> None:
    """No index reachable (the spec's is a closed port), runtimes from the offline mirror:
    ``--no-index`` locks and builds from the local folders alone."""
    wheels, served = sources
    spec = make(tmp_path / "stack", "http://127.0.0.1:9/simple")
    # the index cannot be reached: without --no-index, locking fails
    assert ours("lock", "--local-wheels", wheels, "--local-wheels", served, spec).code == 2
    run = ours(
        "build",
        "--lock-if-needed",
        "--no-index",
        "--local-wheels",
        wheels,
        "--local-wheels",
        served,
        spec,
    )
    assert run.code == 0, run.text
    pylock = (spec.parent / "requirements" / "app-hello" / "pylock.app-hello.toml").read_text()
    assert "127.0.0.1:9" not in pylock and "http" not in pylock
    assert 'path = "../../../served/alpha-1.0.0-py3-none-any.whl"' in pylock
    assert run_app(spec) == "hello localpkg alpha"
    # a clean rebuild, offline again, from the lock alone
    rebuilt = ours("build", "--clean", "--no-index", spec)
    assert rebuilt.code == 0, rebuilt.text
    assert run_app(spec) == "hello localpkg alpha"
    # and published: the SBOM names each local wheel (locked by `path`, with no URL)
    published = ours("publish", spec)
    assert published.code == 0, published.text
    sbom = (spec.parent / "_artifacts" / "app-hello.cdx.json").read_text()
    assert "pkg:pypi/alpha@1.0.0" in sbom
