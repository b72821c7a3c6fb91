"""Drop-in with venvstacks 0.8.0, lock side: its locks are ours and ours are its.

A stack of our own uses every spec feature (dotted and ``@`` layer names, ``../`` launch
and support modules, versioned layers, a per-layer index, platform subsets with their own
targets, two runtimes, a framework diamond). venvstacks 0.8.0 itself (the ``peer``
fixture, run offline with the rig's runtimes) and venvlayers lock it in turn:

- its locks are up to date for ``venvlayers lock --check`` and ``build --locked`` builds them;
- our locks are valid for it: its ``show`` marks no layer, its ``build`` (which refuses
  to build an invalid lock) builds them and rewrites none of them;
- ``show`` and ``show --json`` print the same characters;
- both tools write the same files (the pylock header names the tool; ``locked_at`` is the
  lock's time, since the local index serves no upload times for ``exclude-newer``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rig import BUILD_OUTPUTS
from rig.cli import Run
from rig.index import SimpleIndex
from rig.peer import Peer
from rig.runtime import RuntimeMirror
from rig.wheels import build_wheel

from venvlayers.cli.commands import main

pytestmark = pytest.mark.network

LAYERS = [
    "cpython-3.12",
    "cpython3.11@lts",
    "framework-base.core",
    "framework-left",
    "framework-right",
    "framework-diamond",
    "app-hello.world",
    "app-old",
]

SPEC = """\
[[runtimes]]
name = "cpython-3.12"
python_implementation = "cpython@3.12.1"
requirements = []

[[runtimes]]
name = "cpython3.11@lts"
python_implementation = "cpython@3.11.7"
requirements = ["rtpkg"]
versioned = true

[[frameworks]]
name = "base.core"
runtime = "cpython-3.12"
requirements = ["alpha", "zdep"]

[[frameworks]]
name = "left"
frameworks = ["base.core"]
requirements = ["beta"]
versioned = true

[[frameworks]]
name = "right"
frameworks = ["base.core"]
requirements = ["gamma", "platpkg", "uni"]
platforms = ["linux_x86_64", "macosx_arm64", "win_amd64"]
linux_target = "glibc@2.17"
macosx_target = "11"

[[frameworks]]
name = "diamond"
frameworks = ["left", "right"]
requirements = ["delta"]
package_indexes = {{ delta = "extra" }}

[[applications]]
name = "hello.world"
launch_module = "../modules/hello.py"
support_modules = ["../modules/helper"]
frameworks = ["diamond"]
requirements = ["epsilon"]
versioned = true

[[applications]]
name = "old"
launch_module = "../modules/old.py"
runtime = "cpython3.11@lts"
requirements = ["alpha"]

[[tool.uv.index]]
name = "main"
url = "{main}"
default = true

[[tool.uv.index]]
name = "extra"
url = "{extra}"
explicit = true
"""


def _wheels(main: Path, extra: Path) -> None:
    def pure(name: str, version: str, requires: list[str] | None = None) -> None:
        build_wheel(
            main,
            name,
            version,
            modules={f"{name}/__init__.py": f"NAME = {name!r}\n"},
            requires=requires,
        )

    pure("alpha", "1.0.0")
    pure("zdep", "1.0.0")
    pure("beta", "1.0.0", ["alpha"])
    # markers: one dependency only on Windows, one everywhere else
    pure("gamma", "1.0.0", ["zdep ; sys_platform != 'win32'", "winonly ; sys_platform == 'win32'"])
    pure("winonly", "1.0.0")
    pure("epsilon", "1.0.0", ["beta"])
    pure("rtpkg", "1.0.0")
    pure("delta", "1.0.0")
    build_wheel(extra, "delta", "2.0.0", modules={"delta/__init__.py": "NAME = 'delta'\n"})
    # one wheel per targeted platform only: fine for the right framework's subset
    for tag in ("manylinux_2_17_x86_64", "macosx_11_0_arm64", "win_amd64"):
        build_wheel(
            main, "platpkg", "1.0.0", modules={"platpkg/__init__.py": ""}, tag=f"py3-none-{tag}"
        )
    # a universal2 wheel tagged 10.x serves macosx_arm64 too
    for tag in ("manylinux2014_x86_64", "macosx_10_15_universal2", "win_amd64"):
        build_wheel(main, "uni", "1.0.0", modules={"uni/__init__.py": ""}, tag=f"py3-none-{tag}")


def _modules(root: Path) -> None:
    modules = root / "modules"
    (modules / "helper").mkdir(parents=True)
    (modules / "helper" / "__init__.py").write_text("GREETING = 'hello'\n")
    (modules / "hello.py").write_text(
        "import json\nimport delta, epsilon\nfrom helper import GREETING\n\n"
        "if __name__ == '__main__':\n"
        "    print(json.dumps([GREETING, delta.NAME, epsilon.NAME]))\n"
    )
    (modules / "old.py").write_text(
        "import alpha, rtpkg\n\nif __name__ == '__main__':\n    print(alpha.NAME, rtpkg.NAME)\n"
    )


@pytest.fixture(scope="module")
def compat_env(
    tmp_path_factory: pytest.TempPathFactory, runtime_mirror_311_session: RuntimeMirror
) -> Iterator[dict[str, object]]:
    """The wheels on two local indexes and the runtimes; a fresh stack per test."""
    root = tmp_path_factory.mktemp("compat-wheels")
    _wheels(root / "main", root / "extra")
    with (
        SimpleIndex(root / "main") as main_index,
        SimpleIndex(root / "extra") as extra_index,
        pytest.MonkeyPatch.context() as mp,
    ):
        for key, value in runtime_mirror_311_session.env.items():
            mp.setenv(key, value)
        for name in ("GITHUB_ACTIONS", "GITHUB_OUTPUT", "UV_EXCLUDE_NEWER"):
            mp.delenv(name, raising=False)
        yield {
            "spec": SPEC.format(main=main_index.url, extra=extra_index.url),
            "runtimes": dict(runtime_mirror_311_session.archives),
        }


def make_stack(root: Path, spec_text: str) -> Path:
    _modules(root)
    spec = root / "spec" / "venvstacks.toml"
    spec.parent.mkdir(parents=True)
    spec.write_text(spec_text)
    return spec


def ours(*args: str | Path) -> Run:
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return Run(code, out.getvalue(), err.getvalue())


def lock_files(spec: Path) -> dict[str, bytes]:
    folder = spec.parent / "requirements"
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def comparable(files: dict[str, bytes]) -> dict[str, str]:
    """The lock files without what legitimately differs: the pylock header naming the
    tool, and ``locked_at`` (the lock's own time when no exclude-newer clamps it)."""
    result = {}
    for name, data in files.items():
        text = data.decode()
        if name.endswith(".toml"):
            text = "\n".join(text.split("\n")[3:])
        if name.endswith(".meta.json"):
            text = re.sub(r'"locked_at": "[^"]+"', '"locked_at": "*"', text)
        result[name] = text
    return result


def peer_show(peer: Peer, spec: Path, runtimes: dict[str, Path], *extra: str) -> str:
    return peer.run(["show", *extra, str(spec)], cwd=spec.parent, runtimes=runtimes).stdout


def test_their_locks_are_ours(peer: Peer, compat_env: dict[str, object], tmp_path: Path) -> None:
    runtimes: dict[str, Path] = compat_env["runtimes"]  # type: ignore[assignment]
    spec = make_stack(tmp_path, str(compat_env["spec"]))
    peer.run(["lock", str(spec)], cwd=spec.parent, runtimes=runtimes)
    theirs = lock_files(spec)
    assert sorted({name.split("/")[0] for name in theirs}) == sorted(LAYERS)
    assert "cpython3.11@lts/pylock.cpython3_11@lts.toml" in theirs
    assert "framework-base.core/pylock.framework-base_core.toml" in theirs

    check = ours("lock", "--check", spec)
    assert check.code == 0, check.text
    # show and show --json: character for character
    for extra in ((), ("--json",), ("--include", "framework-left")):
        run = ours("show", *extra, spec)
        assert run.code == 0, run.text
        assert run.out == peer_show(peer, spec, runtimes, *extra), extra
    assert "-> app-hello.world@1" in ours("show", spec).out

    build = ours("build", "--locked", spec)
    assert build.code == 0, build.text
    assert lock_files(spec) == theirs  # nothing relocked, nothing rewritten
    python = spec.parent / "_build" / "app-hello.world" / "bin" / "python"
    assert python.exists()


def test_our_locks_are_theirs(peer: Peer, compat_env: dict[str, object], tmp_path: Path) -> None:
    runtimes: dict[str, Path] = compat_env["runtimes"]  # type: ignore[assignment]
    spec = make_stack(tmp_path, str(compat_env["spec"]))
    run = ours("lock", spec)
    assert run.code == 0, run.text
    mine = lock_files(spec)

    shown = peer_show(peer, spec, runtimes)
    assert "*" not in shown, shown
    assert shown == ours("show", spec).out
    assert peer_show(peer, spec, runtimes, "--json") == ours("show", "--json", spec).out
    # venvstacks' build refuses layers without a valid lock: this builds without relocking
    built = peer.run(["build", str(spec)], cwd=spec.parent, runtimes=runtimes)
    assert "Locking" not in built.stderr + built.stdout
    assert lock_files(spec) == mine, "venvstacks rewrote lock files"
    assert (spec.parent / "_build" / "app-hello.world").is_dir()


def test_both_tools_write_the_same_lock_files(
    peer: Peer, compat_env: dict[str, object], tmp_path: Path
) -> None:
    runtimes: dict[str, Path] = compat_env["runtimes"]  # type: ignore[assignment]
    theirs_spec = make_stack(tmp_path / "theirs", str(compat_env["spec"]))
    ours_spec = make_stack(tmp_path / "ours", str(compat_env["spec"]))
    peer.run(["lock", str(theirs_spec)], cwd=theirs_spec.parent, runtimes=runtimes)
    assert ours("lock", ours_spec).code == 0
    theirs, mine = lock_files(theirs_spec), lock_files(ours_spec)
    assert sorted(theirs) == sorted(mine)
    assert comparable(theirs) == comparable(mine)
    header = mine["app-old/pylock.app-old.toml"].decode().split("\n")[:3]
    assert header[1] == "#     Auto-generated by venvlayers with the following command:"
    # the diamond's delta comes from its own index; the Windows-only dependency is
    # listed with its marker; what the framework below provides is marked shared
    diamond = theirs["framework-diamond/pylock.framework-diamond.toml"].decode()
    assert 'version = "2.0.0"' in diamond
    right = theirs["framework-right/pylock.framework-right.toml"].decode()
    assert "marker = \"sys_platform == 'win32'\"" in right
    assert "from_lower_layer" in right


def test_relocking_continues_their_lock_version(
    peer: Peer, compat_env: dict[str, object], tmp_path: Path
) -> None:
    """A versioned layer locked by venvstacks and relocked by us gets the next version."""
    runtimes: dict[str, Path] = compat_env["runtimes"]  # type: ignore[assignment]
    spec = make_stack(tmp_path, str(compat_env["spec"]))
    peer.run(["lock", str(spec)], cwd=spec.parent, runtimes=runtimes)
    hello = spec.parent / "requirements" / "app-hello.world" / "pylock.app-hello_world.meta.json"
    assert json.loads(hello.read_text())["lock_version"] == 1
    # a new launch module is a new version of a versioned app, whoever relocks it
    launch = tmp_path / "modules" / "hello.py"
    launch.write_text(launch.read_text() + "# changed\n")
    peer.run(["lock", str(spec)], cwd=spec.parent, runtimes=runtimes)
    assert json.loads(hello.read_text())["lock_version"] == 2
    launch.write_text(launch.read_text() + "# changed again\n")
    assert ours("lock", spec).code == 0
    assert json.loads(hello.read_text())["lock_version"] == 3
    assert "-> app-hello.world@3" in peer_show(peer, spec, runtimes)


@pytest.fixture
def pypi_env(runtime_mirror: RuntimeMirror) -> dict[str, Path]:
    return dict(runtime_mirror.archives)


@pytest.mark.slow
def test_same_bytes_from_pypi_at_the_same_exclude_newer(
    peer: Peer, pypi_env: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With exclude-newer, even ``locked_at`` agrees: only the header lines differ."""
    for name in ("GITHUB_ACTIONS", "UV_EXCLUDE_NEWER"):
        monkeypatch.delenv(name, raising=False)
    example = Path(__file__).parent.parent / "examples" / "basic"
    specs = []
    for side in ("theirs", "ours"):
        shutil.copytree(
            example, tmp_path / side, ignore=shutil.ignore_patterns("requirements", *BUILD_OUTPUTS)
        )
        spec = tmp_path / side / "venvstacks.toml"
        spec.write_text(spec.read_text() + '\n[tool.uv]\nexclude-newer = "2025-10-01T00:00:00Z"\n')
        specs.append(spec)
    peer.run(["lock", str(specs[0])], cwd=specs[0].parent, runtimes=pypi_env)
    assert ours("lock", specs[1]).code == 0
    theirs, mine = lock_files(specs[0]), lock_files(specs[1])
    assert sorted(theirs) == sorted(mine)
    for name in theirs:
        if name.endswith(".toml"):
            assert theirs[name].split(b"\n")[3:] == mine[name].split(b"\n")[3:], name
        else:
            assert theirs[name] == mine[name], name
    assert (
        b'"locked_at": "2025-10-01T00:00:00+00:00"' in mine["app-hello/pylock.app-hello.meta.json"]
    )


LONG_SPEC = """\
[[runtimes]]
name = "cpython-3.12-with-a-rather-long-runtime-layer-name-that-goes-on-and-on"
python_implementation = "cpython@3.12.1"
requirements = []
versioned = true

[[applications]]
name = "an-application-with-an-extremely-long-name-to-check-the-cropping"
launch_module = "app.py"
runtime = "cpython-3.12-with-a-rather-long-runtime-layer-name-that-goes-on-and-on"
requirements = []
versioned = true
"""


def test_show_crops_long_lines_as_venvstacks_does(
    peer: Peer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """venvstacks' tree is cut at the console's width (80 off a terminal, or COLUMNS)."""
    folder = tmp_path / "a folder with spaces and a long name to pass eighty columns"
    folder.mkdir()
    spec = folder / "venvstacks.toml"
    spec.write_text(LONG_SPEC)
    (folder / "app.py").write_text("")
    monkeypatch.delenv("COLUMNS", raising=False)
    for columns in (None, "50", "300"):
        if columns:
            monkeypatch.setenv("COLUMNS", columns)
        ours_run = subprocess.run(
            [sys.executable, "-m", "venvlayers", "show", str(spec)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=True,
        )
        theirs = peer_show(peer, spec, {})
        assert ours_run.stdout == theirs, columns
    assert "@???" in theirs  # COLUMNS=300: nothing cropped
    assert peer_show(peer, spec, {}, "--json") == ours("show", "--json", spec).out
