"""PyPy runtimes (``python_implementation = "pypy@X.Y.Z"``, X.Y.Z the Python version).

What can be tested without a PyPy build (none can be made on this machine: see the README's
compatibility table): the spec is read as venvstacks reads it, locks are resolved for PyPy's
marker environment (``platform_python_implementation == 'PyPy'``, ``implementation_name ==
'pypy'``) and checked for wheels by platform tag only, as venvstacks does, giving the same
lock files as venvstacks 0.8.0 (run with a CPython archive standing in for the runtime it
would download: locking resolves universally, the interpreter only starts uv), and the
layer layout uses PyPy's ``lib/pypy3.Y/site-packages``. Building needs the runtime: without
one in the mirror the build stops with uv's one-line error.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rig.index import SimpleIndex
from rig.peer import Peer
from rig.runtime import RuntimeMirror
from rig.wheels import build_wheel
from test_compat_lock import comparable, lock_files, ours

from venvlayers.build.layout import LayerLayout
from venvlayers.core.platforms import Platform
from venvlayers.stack.graph import load_stack

SPEC = """\
[[runtimes]]
name = "pypy-3.12"
python_implementation = "pypy@3.12.1"
requirements = []

[[frameworks]]
name = "fw"
runtime = "pypy-3.12"
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
            tag=f"pp312-pypy312_pp73-{tag}",
        )
    return folder


def make(folder: Path, index_url: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "app.py").write_text("import beta\n")
    spec = folder / "venvstacks.toml"
    spec.write_text(SPEC.format(index=index_url))
    return spec


def test_spec_and_layout(tmp_path: Path) -> None:
    graph = load_stack(make(tmp_path / "stack", "http://127.0.0.1:9/simple"))
    runtime = graph["pypy-3.12"]
    assert runtime.py_version == "3.12.1" and runtime.implementation == "PyPy"
    assert graph["app-app"].implementation == "PyPy"
    layout = LayerLayout(Platform("linux_x86_64"), "3.12.1", "PyPy")
    assert layout.site_dir() == "lib/pypy3.12/site-packages"
    spec = tmp_path / "stack" / "venvstacks.toml"
    spec.write_text(spec.read_text().replace("pypy@3.12.1", "PyPy@3.12.1"))
    run = ours("show", spec)
    assert run.code == 2 and 'must look like "cpython@X.Y.Z" or "pypy@X.Y.Z"' in run.err


@pytest.mark.network
def test_same_pypy_locks_as_venvstacks(
    peer: Peer,
    wheels: Path,
    tmp_path: Path,
    runtime_mirror: RuntimeMirror,
    simple_index_factory: object,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    index: SimpleIndex = simple_index_factory(wheels)  # type: ignore[operator]
    monkeypatch.delenv("UV_EXCLUDE_NEWER", raising=False)
    theirs, mine = make(tmp_path / "a", index.url), make(tmp_path / "b", index.url)
    runtimes = dict(runtime_mirror.archives)  # CPython 3.12.1 stands in for venvstacks' download
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
    } == {"pypy@3.12.1"}


def test_building_without_a_pypy_runtime_is_one_clear_error(
    wheels: Path, tmp_path: Path, runtime_mirror: RuntimeMirror, simple_index_factory: object
) -> None:
    index: SimpleIndex = simple_index_factory(wheels)  # type: ignore[operator]
    spec = make(tmp_path / "stack", index.url)
    run = ours("build", "--lock-if-needed", spec)
    assert run.code == 2, run.text
    assert "Traceback" not in run.err
    assert "pypy-3.12.1" in run.err and "UV_PYTHON_DOWNLOADS_JSON_URL" in run.err
