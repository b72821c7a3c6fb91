"""Reproducible archives, runtime included: two clean builds in different folders publish
the same bytes, and nothing published names the folder it was built in.

python-build-standalone runtimes are built with the prefix ``/install``, which uv rewrites
in ``_sysconfigdata_*.py`` to the folder it installs into. The rig's runtime is a local
CPython repackaged; here it is given PBS's ``/install`` prefix so uv patches it exactly
as it patches a real python-build-standalone runtime.
"""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

import pytest
from rig import copy_source
from rig.runtime import RuntimeMirror

from venvlayers.build.runtime import install_runtime
from venvlayers.build.runtime_mirror import downloads_entry, write_downloads_json
from venvlayers.cli.commands import main

EXAMPLE = Path(__file__).parent.parent / "examples" / "basic"


def pbs_style_runtime(source: Path, dest: Path) -> Path:
    """``source`` with its build prefix replaced by ``/install`` in every text file."""
    archive = dest / source.name
    with tarfile.open(source) as original:
        prefix = _build_prefix(original)
        with tarfile.open(archive, "w:gz") as rewritten:
            for member in original.getmembers():
                data = original.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
                if data is not None and prefix.encode() in data and b"\0" not in data:
                    data = data.replace(prefix.encode(), b"/install")
                    member.size = len(data)
                rewritten.addfile(member, io.BytesIO(data) if data is not None else None)
    return archive


def _build_prefix(archive: tarfile.TarFile) -> str:
    for member in archive.getmembers():
        if "/_sysconfigdata_" in member.name and member.name.endswith(".py"):
            text = archive.extractfile(member).read().decode()  # type: ignore[union-attr]
            return text.split("'prefix': '", 1)[1].split("'", 1)[0]
    raise AssertionError("no _sysconfigdata in the runtime archive")


@pytest.fixture
def pbs_mirror(
    runtime_mirror: RuntimeMirror, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    folder = tmp_path / "pbs"
    folder.mkdir()
    archive = pbs_style_runtime(runtime_mirror.archives["3.12.1"], folder)
    downloads = write_downloads_json(
        [downloads_entry(archive, version="3.12.1")], folder / "downloads.json"
    )
    monkeypatch.setenv("UV_PYTHON_DOWNLOADS_JSON_URL", downloads.resolve().as_uri())
    for name in ("GITHUB_ACTIONS", "GITHUB_OUTPUT", "UV_EXCLUDE_NEWER", "SOURCE_DATE_EPOCH"):
        monkeypatch.delenv(name, raising=False)
    return archive


def published_files(out: Path) -> dict[str, bytes]:
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@pytest.mark.network
@pytest.mark.slow
def test_two_clean_builds_publish_identical_archives(pbs_mirror: Path, tmp_path: Path) -> None:
    outputs = []
    for side in ("first", "second-build-folder"):
        stack = tmp_path / side / "stack"
        copy_source(EXAMPLE, stack)
        spec = stack / "venvstacks.toml"
        out = tmp_path / side / "out"
        assert main(["-q", "build", "--locked", str(spec)]) == 0
        assert main(["-q", "publish", "--tag-outputs", "--output-dir", str(out), str(spec)]) == 0
        sysconfig = next(
            (stack / "_build" / "cpython-3.12").glob("lib/python3.12/_sysconfigdata_*.py")
        )
        text = sysconfig.read_text()
        # uv rewrites the file (its own quoting); the prefix is PBS's again
        assert re.search(r"""["']prefix["']: ["']/install["']""", text), text[-400:]
        assert ".runtime-" not in text and str(stack) not in text
        outputs.append((stack, out))

    (_, first_out), (_, second_out) = outputs
    first, second = published_files(first_out), published_files(second_out)
    archives = [name for name in first if name.endswith((".tar.xz", ".tar.zst", ".zip"))]
    assert len(archives) == 3 and any(name.startswith("cpython-3.12") for name in archives)
    assert sorted(first) == sorted(second)
    for name in archives:
        assert first[name] == second[name], f"{name} differs between the two builds"

    # no archive member and no published file names a build folder
    for stack, out in outputs:
        needles = [str(stack).encode(), str(stack.parent).encode(), b".runtime-"]
        for name, data in published_files(out).items():
            assert not any(n in data for n in needles), name
        for name in archives:
            with tarfile.open(out / name) as archive:
                for member in archive.getmembers():
                    if member.isfile():
                        content = archive.extractfile(member).read()  # type: ignore[union-attr]
                        found = [n for n in needles if n in content]
                        assert not found, f"{name}: {member.name} holds {found}"
                    assert not any(n.decode() in member.linkname for n in needles), member.name


@pytest.mark.network
def test_installed_runtime_holds_what_its_archive_holds(
    runtime_mirror: RuntimeMirror, tmp_path: Path
) -> None:
    """No file uv adds on install (its PEP 668 ``EXTERNALLY-MANAGED``, saying the Python "is
    managed by uv") reaches the runtime layer: venvstacks ships the archive's files only."""
    archive = runtime_mirror.archives["3.12.1"]
    with tarfile.open(archive) as original:
        shipped = {
            m.name.partition("/")[2] for m in original.getmembers() if m.isfile() or m.issym()
        }
    target = tmp_path / "cpython-3.12"
    install_runtime("cpython@3.12.1", target, layer_name="cpython-3.12")
    installed = {
        p.relative_to(target).as_posix()
        for p in target.rglob("*")
        if (p.is_file() or p.is_symlink()) and "__pycache__" not in p.parts
    }
    assert not any(name.endswith("EXTERNALLY-MANAGED") for name in installed)
    assert installed - shipped == set()
