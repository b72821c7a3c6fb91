"""PyPy runtimes (``python_implementation = "pypy@X.Y.Z"``, X.Y.Z the Python version).

The runtime is a real PyPy: Debian's pypy3 packages laid out as a PyPy release archive
(``rig/pypy_runtime.py``; no PyPy download is reachable here) and listed for uv by the
product's own ``venvlayers runtime-mirror``. Locks are resolved for PyPy's marker
environment (``platform_python_implementation == 'PyPy'``) and checked for wheels by platform
tag only, giving venvstacks 0.8.0's lock files; the layers are built, published, deployed
and run on that PyPy, by either tool, and each tool deploys what the other published.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from rig.index import SimpleIndex
from rig.peer import Peer
from rig.pypy_runtime import debian_pypy_archive
from rig.runtime import RuntimeMirror
from rig.wheels import build_wheel
from test_compat_lock import comparable, lock_files, ours

from venvlayers.build.layout import LayerLayout
from venvlayers.core.platforms import Platform
from venvlayers.stack.graph import load_stack

SPEC = """\
[[runtimes]]
name = "pypy"
python_implementation = "pypy@{version}"
requirements = []

[[frameworks]]
name = "fw"
runtime = "pypy"
requirements = ["alpha"]

[[applications]]
name = "app"
launch_module = "app.py"
frameworks = ["fw"]
requirements = ["beta"]

[[tool.uv.index]]
name = "main"
url = "{index}"
default = true
"""


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    folder = tmp_path / "wheels"
    # only PyPy needs "onpypy"; only CPython "oncpython"
    requires = [
        "onpypy ; platform_python_implementation == 'PyPy'",
        "oncpython ; implementation_name == 'cpython'",
    ]
    build_wheel(folder, "alpha", "1.0.0", modules={"alpha/__init__.py": ""}, requires=requires)
    build_wheel(folder, "onpypy", "1.0.0", modules={"onpypy/__init__.py": ""})
    build_wheel(folder, "oncpython", "1.0.0", modules={"oncpython/__init__.py": ""})
    build_wheel(folder, "beta", "1.0.0", modules={"beta/__init__.py": ""}, requires=["alpha"])
    # a PyPy-only binary wheel per platform: wheels are checked by platform tag
    for tag in (
        "manylinux_2_17_x86_64",
        "manylinux_2_17_aarch64",
        "macosx_11_0_arm64",
        "macosx_11_0_x86_64",
        "win_amd64",
        "win_arm64",
    ):
        build_wheel(
            folder,
            "onpypy",
            "1.0.0",
            modules={"onpypy/__init__.py": ""},
            tag=f"pp39-pypy39_pp73-{tag}",
        )
    return folder


@dataclass(frozen=True)
class PyPyMirror:
    archive: Path
    version: str  # the Python version it implements
    downloads_json: Path


@pytest.fixture(scope="session")
def pypy_mirror_session(tmp_path_factory: pytest.TempPathFactory) -> PyPyMirror:
    made = debian_pypy_archive()
    if isinstance(made, str):
        pytest.skip(f"no PyPy runtime: {made}")
    folder = tmp_path_factory.mktemp("pypy-mirror")
    run = ours("runtime-mirror", made, "--output", folder / "downloads.json")
    assert run.code == 0, run.text
    (entry,) = json.loads((folder / "downloads.json").read_text()).values()
    assert entry["name"] == "pypy"
    version = "{major}.{minor}.{patch}".format(**entry)
    return PyPyMirror(made, version, folder / "downloads.json")


@pytest.fixture
def pypy_mirror(
    pypy_mirror_session: PyPyMirror, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PyPyMirror]:
    monkeypatch.setenv("UV_PYTHON_DOWNLOADS_JSON_URL", pypy_mirror_session.downloads_json.as_uri())
    yield pypy_mirror_session


def make(folder: Path, index_url: str, version: str = "3.9.16") -> Path:
    folder.mkdir(parents=True)
    (folder / "app.py").write_text(
        "import sys, alpha, beta, onpypy\nprint('running on', sys.implementation.name)\n"
    )
    spec = folder / "venvstacks.toml"
    spec.write_text(SPEC.format(index=index_url, version=version))
    return spec


def test_spec_and_layout(tmp_path: Path) -> None:
    graph = load_stack(make(tmp_path / "stack", "http://127.0.0.1:9/simple"))
    runtime = graph["pypy"]
    assert runtime.py_version == "3.9.16" and runtime.implementation == "PyPy"
    assert graph["app-app"].implementation == "PyPy"
    layout = LayerLayout(Platform("linux_x86_64"), "3.9.16", "PyPy")
    assert layout.site_dir() == "lib/pypy3.9/site-packages"
    spec = tmp_path / "stack" / "venvstacks.toml"
    spec.write_text(spec.read_text().replace("pypy@3.9.16", "PyPy@3.9.16"))
    run = ours("show", spec)
    assert run.code == 2 and 'must look like "cpython@X.Y.Z" or "pypy@X.Y.Z"' in run.err


@pytest.mark.network
def test_same_pypy_locks_as_venvstacks(
    peer: Peer,
    wheels: Path,
    tmp_path: Path,
    pypy_mirror: PyPyMirror,
    simple_index_factory: object,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    index: SimpleIndex = simple_index_factory(wheels)  # type: ignore[operator]
    monkeypatch.delenv("UV_EXCLUDE_NEWER", raising=False)
    version = pypy_mirror.version
    theirs = make(tmp_path / "a", index.url, version)
    mine = make(tmp_path / "b", index.url, version)
    runtimes = {version: pypy_mirror.archive}
    peer.run(["lock", str(theirs)], cwd=tmp_path, runtimes=runtimes)
    run = ours("lock", mine)
    assert run.code == 0, run.text
    their_files, my_files = lock_files(theirs), lock_files(mine)
    assert comparable(their_files) == comparable(my_files)
    framework = my_files["framework-fw/packages-framework-fw.txt"].decode()
    assert "onpypy==1.0.0" in framework and "oncpython" not in framework
    assert ours("lock", "--check", theirs).code == 0
    shown = peer.run(["show", "--json", str(mine)], cwd=tmp_path, runtimes=runtimes).stdout
    assert ours("show", "--json", mine).out == shown
    # published metadata names the implementation as the spec does (dry run: nothing built)
    dry = ours("publish", "--dry-run", mine)
    assert dry.code == 0, dry.text
    document = json.loads(dry.out.split("\n", 1)[1].rsplit("\nArchives", 1)[0])
    assert {
        layer["python_implementation"] for group in document["layers"].values() for layer in group
    } == {f"pypy@{version}"}


@pytest.mark.network
def test_pypy_stack_builds_publishes_deploys_and_runs(
    wheels: Path,
    tmp_path: Path,
    pypy_mirror: PyPyMirror,
    simple_index_factory: object,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """venvstacks 0.8.0 cannot build this runtime (see the README's PyPy row): its
    portability pass deletes every file of the runtime's bin/ whose name does not start with
    "python", which in PyPy's release layout is the interpreter itself (pypy3.Y) and
    libpypy3.Y-c.so."""
    index: SimpleIndex = simple_index_factory(wheels)  # type: ignore[operator]
    monkeypatch.delenv("UV_EXCLUDE_NEWER", raising=False)
    spec = make(tmp_path / "stack", index.url, pypy_mirror.version)
    run = ours("build", "--lock-if-needed", "--publish", spec)
    assert run.code == 0, run.text
    site = spec.parent / "_build" / "framework-fw" / "lib" / "pypy3.9" / "site-packages"
    assert (site / "onpypy").is_dir() and not (site / "oncpython").exists()
    target = tmp_path / "deployed"
    deployed = ours(
        "deploy", "--from", spec.parent / "_artifacts", "--target", target, "--run", "app-app"
    )
    assert deployed.code == 0, deployed.text  # --run started the app (its output is the test's)
    # the deployed app's interpreter is the PyPy runtime layer, found through its lower layers
    python = target / "app-app" / "bin" / "python"
    implementation = subprocess.run(
        [str(python), "-c", "import sys, beta, onpypy; print(sys.implementation.name)"],
        capture_output=True,
        text=True,
    )
    assert implementation.stdout.strip() == "pypy", implementation.stderr


def test_building_without_a_pypy_runtime_is_one_clear_error(
    wheels: Path, tmp_path: Path, runtime_mirror: RuntimeMirror, simple_index_factory: object
) -> None:
    index: SimpleIndex = simple_index_factory(wheels)  # type: ignore[operator]
    spec = make(tmp_path / "stack", index.url, "3.12.1")
    run = ours("build", "--lock-if-needed", spec)
    assert run.code == 2, run.text
    assert "Traceback" not in run.err
    assert "uv found no Python pypy@3.12.1 to lock with" in run.err, run.err
    assert "UV_PYTHON_DOWNLOADS_JSON_URL" in run.err


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("pypy3.9-v7.3.11-linux64.tar.bz2", "repack it as pypy3.9-v7.3.11-linux64.tar.gz"),
        ("pypy3.9-v7.3.11-win64.zip", "cannot be mirrored for uv"),
        ("pypy3.9-7.3.11-linux64.tar.gz", "not named like a PyPy release archive"),
    ],
)
def test_runtime_mirror_refuses_pypy_archives_uv_cannot_install(
    tmp_path: Path, name: str, says: str
) -> None:
    archive = tmp_path / name
    archive.write_bytes(b"not an archive")
    run = ours("runtime-mirror", archive, "--output", tmp_path / "downloads.json")
    assert run.code == 2 and says in run.err, run.text
    assert "Traceback" not in run.err and not (tmp_path / "downloads.json").exists()
