"""Bytecode (issue 23): `publish --bytecode` puts reproducible unchecked-hash pycs into the
archives, and deploying them compiles nothing; the default deploy compiles only what has
no valid bytecode yet."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from rig.deploy_stack import Versions, deploy, run_app

from venvlayers.cli.commands import main
from venvlayers.deploy.bytecode import compile_layers

pytestmark = pytest.mark.slow

LAYERS = ["cpython-3.12", "framework-base", "app-one", "app-two"]
UNCHECKED_HASH = 0b01


@pytest.fixture
def versions(deploy_versions: Versions) -> Versions:
    return deploy_versions


@pytest.fixture
def stack(versions: Versions, tmp_path: Path) -> Path:
    """A copy of the built v2 stack (hard links: publish never writes through them)."""
    source = versions.spec.parent
    copy = tmp_path / "stack"
    shutil.copytree(
        source,
        copy,
        symlinks=True,
        ignore=shutil.ignore_patterns("out"),
        copy_function=os.link,
    )
    return copy / "venvstacks.toml"


def pyc_members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile() and m.name.endswith(".pyc")
        }


def pyc_flags(data: bytes) -> int:
    return int(struct.unpack("<L", data[4:8])[0])


def pycs(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every pyc under ``folder`` (links not followed): inode, mtime and bytes."""
    found = {}
    for root, _dirs, names in os.walk(folder):
        for name in names:
            if name.endswith(".pyc"):
                path = Path(root, name)
                st = path.lstat()
                found[str(path.relative_to(folder))] = (
                    st.st_ino,
                    st.st_mtime_ns,
                    path.read_bytes(),
                )
    return found


def test_publish_bytecode_is_reproducible_and_deploying_it_compiles_nothing(
    stack: Path, tmp_path: Path
) -> None:
    outs = [tmp_path / "out-1", tmp_path / "out-2"]
    for out in outs:
        assert main(["-q", "publish", "--bytecode", "--output-dir", str(out), str(stack)]) == 0
    plain = tmp_path / "plain"
    assert main(["-q", "publish", "--output-dir", str(plain), str(stack)]) == 0
    archives = sorted(p.name for p in outs[0].glob("*.tar.xz"))
    assert len(archives) == len(LAYERS)
    # the same bytes on every publish (pycs included)
    for name in archives:
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    in_archives: dict[str, bytes] = {}
    for name in archives:
        members = pyc_members(outs[0] / name)
        assert members, f"{name} holds no bytecode"
        assert not pyc_members(plain / name)  # the default publishes sources only
        assert {pyc_flags(data) for data in members.values()} == {UNCHECKED_HASH}
        in_archives.update(members)
    app = pyc_members(outs[0] / "app-one.tar.xz")
    assert any(n.endswith("/__pycache__/one.cpython-312.pyc") for n in app), sorted(app)

    target = tmp_path / "target"
    assert deploy("--from", outs[0], "--target", target) == 0
    deployed = pycs(target / ".venvlayers" / "current")
    # the archives' pycs, as they were: the deploy's compile pass wrote only the bytecode
    # of what the deploy itself wrote (each venv layer's sitecustomize.py)
    written = {key: data for key, (_, _, data) in deployed.items() if key not in in_archives}
    assert {
        key: data for key, (_, _, data) in deployed.items() if key in in_archives
    } == in_archives
    assert sorted(written) == [
        f"{layer}/lib/python3.12/site-packages/__pycache__/sitecustomize.cpython-312.pyc"
        for layer in sorted(LAYERS[1:])
    ]
    assert run_app(target, "app-one").startswith("one v2")
    # starting the apps writes no bytecode either (a read-only target starts as fast)
    assert pycs(target / ".venvlayers" / "current") == deployed


def test_toggling_bytecode_republishes_and_the_stamp_keeps_no_op_publishes_no_op(
    stack: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    publish = ["-q", "publish", "--output-dir", str(out), str(stack)]
    assert main(publish) == 0
    plain = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar.xz")}
    assert main([*publish[:2], "--bytecode", *publish[2:]]) == 0
    compiled = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar.xz")}
    assert all(compiled[name] != plain[name] for name in plain)
    assert main([*publish[:2], "--bytecode", *publish[2:]]) == 0  # nothing changed: kept
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar.xz")} == compiled


def test_the_compile_pass_skips_files_whose_bytecode_is_valid(
    versions: Versions, tmp_path: Path
) -> None:
    """The default deploy compiles (timestamp pycs); a second pass over the same layers
    finds every file up to date and writes nothing."""
    target = tmp_path / "target"
    assert deploy("--from", versions.v1, "--target", target) == 0
    current = target / ".venvlayers" / "current"
    before = pycs(current)
    assert before and {pyc_flags(data) for _, _, data in before.values()} == {0}
    layers = [Path(os.path.realpath(current / name)) for name in LAYERS]
    compile_layers(layers)
    assert pycs(current) == before


def test_the_compiler_runs_without_site_and_writes_no_bytecode_of_its_own(tmp_path: Path) -> None:
    """`compile_bytecode.py` is run by path as `python -S -B`: a folder of sources gets
    its pycs, and a second run (all up to date) changes none."""
    from venvlayers.layer_scripts import compile_bytecode

    lib = tmp_path / "lib"
    (lib / "pkg").mkdir(parents=True)
    (lib / "pkg" / "__init__.py").write_text("VALUE = {'a', 'b'}\n")
    (lib / "broken.py").write_text("def (:\n")  # kept without bytecode, as compileall does
    command = [sys.executable, "-S", "-B", compile_bytecode.__file__, str(lib), "/opt/x/lib"]
    subprocess.run(command, check=True)
    first = pycs(lib)
    assert list(first) == [f"pkg/__pycache__/__init__.{sys.implementation.cache_tag}.pyc"]
    subprocess.run(command, check=True)
    assert pycs(lib) == first


def test_an_app_only_update_leaves_every_module_of_the_app_compiled(
    versions: Versions, tmp_path: Path
) -> None:
    """The update's few new files are compiled (in this process when it writes what the
    runtime would: same cache tag and magic as the runtime's deployed bytecode, else by the
    runtime): each has a pyc the runtime accepts as up to date."""
    from venvlayers.layer_scripts import compile_bytecode

    target = tmp_path / "target"
    assert deploy("--from", versions.v1, "--target", target) == 0
    assert deploy("--from", versions.v2, "--target", target) == 0
    app = target / "app-one"
    sources = [p for p in (app / "lib").rglob("*.py") if "__pycache__" not in p.parts]
    assert any(p.name == "one.py" for p in sources)
    # asked of the runtime itself (its cache tag and magic number), not of this
    # interpreter, which may be another Python version
    runtime = target / "cpython-3.12" / "bin" / "python3.12"
    check = subprocess.run(
        [str(runtime), "-S", "-B", "-c", _STALE, compile_bytecode.__file__, *map(str, sources)],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, f"not up to date for the runtime: {check.stdout}{check.stderr}"
    assert run_app(target, "app-one").startswith("one v2")


#: Run by a layer's Python: the sources (argv[2:]) without an up-to-date pyc of that Python.
_STALE = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("compile_bytecode", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
stale = [path for path in sys.argv[2:] if not module.up_to_date(path)]
print(*stale, sep="\\n")
sys.exit(1 if stale else 0)
"""


def test_bytecode_of_another_python_is_checked_without_starting_it(tmp_path: Path) -> None:
    """The compile pass reads a runtime's cache tag and magic number from its deployed
    ``os`` pyc, and checks pycs against them in process: a runtime of another Python
    version whose bytecode is all valid is never started."""
    from venvlayers.deploy.bytecode import runtime_bytecode
    from venvlayers.layer_scripts import compile_bytecode

    magic = b"\x99\x0d\x0d\x0a"
    lib = tmp_path / "rt" / "lib" / "python3.99"
    (lib / "__pycache__").mkdir(parents=True)
    python = tmp_path / "rt" / "bin" / "python3.99"
    python.parent.mkdir()
    assert runtime_bytecode(python) is None  # no bytecode deployed: it compiles its own
    (lib / "os.py").write_text("X = 1\n")
    (lib / "__pycache__" / "os.cpython-399.opt-1.pyc").write_bytes(b"\0\0\0\0" + bytes(12))
    (lib / "__pycache__" / "os.cpython-399.pyc").write_bytes(
        magic + struct.pack("<L", UNCHECKED_HASH) + bytes(8)
    )
    assert runtime_bytecode(python) == ("cpython-399", magic)
    source = str(lib / "os.py")
    assert compile_bytecode.up_to_date(source, "cpython-399", magic)
    assert not compile_bytecode.up_to_date(source, "cpython-399", b"\x98\x0d\x0d\x0a")
    assert not compile_bytecode.up_to_date(source, "cpython-398", magic)
    assert not compile_bytecode.up_to_date(source)  # not this Python's bytecode
