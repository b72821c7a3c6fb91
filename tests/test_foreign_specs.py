"""What trying venvstacks users' own projects turned up, each reproduced on a stack of ours.

The stack has what those projects have and the other tests do not combine: a launch
module that is a package folder, support modules beside it and outside the spec's folder
(``../``), a versioned application, and no requirements (so it builds from the runtime
mirror alone).
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from rig.runtime import RuntimeMirror

from venvlayers.cli import main

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
requirements = []
versioned = true
"""


def make_project(root: Path) -> Path:
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
    spec.write_text(SPEC)
    return spec


def test_published_layers_hold_no_uv_venv_markers(
    runtime_mirror: RuntimeMirror, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``uv venv`` writes ``.gitignore`` (``*``) and ``CACHEDIR.TAG`` into an environment;
    venvstacks' archives have neither, and a deployed layer marked as a cache folder is
    skipped by backup tools. Archives and local exports leave them out."""
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    spec = make_project(tmp_path)
    out = tmp_path / "out"
    assert main(["-q", "build", "--publish", "--output-dir", str(out), str(spec)]) == 0
    assert (spec.parent / "_build" / "app-client" / "CACHEDIR.TAG").exists()  # uv wrote it
    with tarfile.open(out / "app-client@1.tar.xz") as archive:
        names = set(archive.getnames())
    assert "app-client@1/lib/python3.12/site-packages/client/__main__.py" in names
    assert not {"app-client@1/.gitignore", "app-client@1/CACHEDIR.TAG"} & names
    export = tmp_path / "export"
    assert main(["-q", "local-export", "--output-dir", str(export), str(spec)]) == 0
    assert not (export / "app-client" / "CACHEDIR.TAG").exists()
    assert not (export / "app-client" / ".gitignore").exists()
