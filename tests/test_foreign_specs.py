"""What trying venvstacks users' own projects turned up, each reproduced on a stack of ours.

The stack has what those projects have and the other tests do not combine: a launch
module that is a package folder, support modules beside it and outside the spec's folder
(``../``), a versioned application, and no requirements (so it builds from the runtime
mirror alone).
"""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest
from rig.index import SimpleIndex
from rig.runtime import RuntimeMirror
from rig.wheels import build_wheel

from venvlayers.cli.commands import main
from venvlayers.core.platforms import Platform, host_platform, uv_python_platform

pytestmark = pytest.mark.slow

SPEC = """\
[[runtimes]]
name = "cpython-3.12"
python_implementation = "cpython@3.12.1"
requirements = []

[[applications]]
name = "client"
launch_module = "launch/client"
support_modules = ["../shared/blank.py", "support/helpers.py"]
runtime = "cpython-3.12"
requirements = ["plain"]
versioned = true

[[tool.uv.index]]
name = "local"
url = "{index}"
default = true
"""


def make_project(root: Path, index: SimpleIndex) -> Path:
    spec_dir = root / "project"
    (spec_dir / "launch" / "client").mkdir(parents=True)
    (spec_dir / "support").mkdir()
    (root / "shared").mkdir()
    (spec_dir / "launch" / "client" / "__init__.py").write_text("")
    (spec_dir / "launch" / "client" / "__main__.py").write_text(
        "import blank, helpers\nprint(helpers.ANSWER)\n"
    )
    (spec_dir / "support" / "helpers.py").write_text("ANSWER = 42\n")
    (root / "shared" / "blank.py").write_text("")
    spec = spec_dir / "venvstacks.toml"
    spec.write_text(SPEC.format(index=index.url))
    return spec


def test_published_layers_hold_no_uv_venv_markers(
    runtime_mirror: RuntimeMirror, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``uv venv`` writes ``.gitignore`` (``*``) and ``CACHEDIR.TAG`` into an environment,
    ``uv pip install`` a ``.lock``; venvstacks' archives have none of them, and a deployed
    layer marked as a cache folder is skipped by backup tools. Archives and local exports
    leave them out."""
    for name in ("SOURCE_DATE_EPOCH", "UV_EXCLUDE_NEWER"):
        monkeypatch.delenv(name, raising=False)
    build_wheel(tmp_path / "wheels", "plain", "1.0.0", modules={"plain.py": ""})
    markers = {".gitignore", ".lock", "CACHEDIR.TAG"}
    with SimpleIndex(tmp_path / "wheels") as index:
        spec = make_project(tmp_path, index)
        out = tmp_path / "out"
        assert (
            main(
                [
                    "-q",
                    "build",
                    "--lock-if-needed",
                    "--publish",
                    "--output-dir",
                    str(out),
                    str(spec),
                ]
            )
            == 0
        )
    built = {p.name for p in (spec.parent / "_build" / "app-client").iterdir()}
    assert markers <= built  # what uv wrote
    with tarfile.open(out / "app-client@1.tar.xz") as archive:
        names = set(archive.getnames())
    assert "app-client@1/lib/python3.12/site-packages/client/__main__.py" in names
    assert not {f"app-client@1/{m}" for m in markers} & names
    export = tmp_path / "export"
    assert main(["-q", "local-export", "--output-dir", str(export), str(spec)]) == 0
    assert not markers & {p.name for p in (export / "app-client@1").iterdir()}


GLIBC_SPEC = """\
[[runtimes]]
name = "cpython-3.12"
python_implementation = "cpython@3.12.1"
requirements = ["twoway"]

[[tool.uv.index]]
name = "local"
url = "{index}"
default = true
"""


def test_wheels_installed_are_those_for_the_targeted_glibc(
    runtime_mirror: RuntimeMirror, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A package with a ``manylinux_2_34`` wheel and a pure one (as debugpy has, which
    JupyterLab pulls in): the layer targets glibc 2.28 (the default), so the pure wheel is
    the one installed, as venvstacks installs it; the build machine's newer glibc would
    take the 2.34 wheel, whose binaries do not load where the layer is meant to run."""
    if host_platform() is not Platform.LINUX_X86_64:
        pytest.skip("the glibc-specific wheel is for x86_64 Linux")
    wheels = tmp_path / "wheels"
    for tag, kind in (("py3-none-manylinux_2_34_x86_64", "glibc-2.34"), ("py3-none-any", "any")):
        build_wheel(wheels, "twoway", "1.0.0", modules={"twoway.py": f"KIND = {kind!r}\n"}, tag=tag)
    monkeypatch.delenv("UV_EXCLUDE_NEWER", raising=False)
    with SimpleIndex(wheels) as index:
        spec = tmp_path / "stack" / "venvstacks.toml"
        spec.parent.mkdir()
        spec.write_text(GLIBC_SPEC.format(index=index.url))
        assert main(["-q", "build", "--lock-if-needed", str(spec)]) == 0
    python = spec.parent / "_build" / "cpython-3.12" / "bin" / "python3"
    kind = subprocess.run(
        [str(python), "-c", "import twoway; print(twoway.KIND)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert kind == "any"


def test_uv_python_platform_names_the_layers_oldest_target() -> None:
    assert uv_python_platform(Platform.LINUX_X86_64, glibc=(2, 28)) == "x86_64-manylinux_2_28"
    assert uv_python_platform(Platform.LINUX_AARCH64, glibc=(2, 34)) == "aarch64-manylinux_2_34"
    assert uv_python_platform(Platform.MACOSX_ARM64, glibc=(2, 28)) == "aarch64-apple-darwin"
    assert uv_python_platform(Platform.WIN_ARM64, glibc=(2, 28)) == "aarch64-pc-windows-msvc"
    assert uv_python_platform(Platform.WIN_AMD64, glibc=(2, 28)) == "x86_64-pc-windows-msvc"
