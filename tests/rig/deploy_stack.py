"""A small stack published twice (v1, then v2 with only app ``one`` changed), for deploy tests.

Layers: runtime ``cpython-3.12``, framework ``base`` (package ``beta``, which pulls
``alpha``), apps ``one`` and ``two`` over it. ``v1`` and ``v2`` are copies of the publish
output folder after each publish; v2 differs from v1 only in app-one's archive (and the
metadata naming it). Built once per test session, whichever module asks first.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SPEC = """
[[runtimes]]
name = "cpython-3.12"
python_implementation = "cpython@3.12.1"
requirements = []

[[frameworks]]
name = "base"
runtime = "cpython-3.12"
requirements = ["beta"]

[[applications]]
name = "one"
launch_module = "launch/one.py"
frameworks = ["base"]
requirements = []

[[applications]]
name = "two"
launch_module = "launch/two.py"
frameworks = ["base"]
requirements = []

[[tool.uv.index]]
name = "local"
url = "{index}"
default = true
"""

APP = """\
import sys
import alpha, beta
print("{name} {version}", alpha.__version__, *sys.argv[1:])
"""


@dataclass(frozen=True)
class Versions:
    spec: Path
    v1: Path
    v2: Path

    @property
    def v1_source(self) -> Path:
        return self.v1.parent / "v1-source"


_built: dict[str, Versions] = {}


def published_versions(root: Path, index_url: str) -> Versions:
    """Build and publish v1 and v2 under ``root`` (once per session)."""
    if "versions" in _built:
        return _built["versions"]
    from venvlayers.cli.commands import main

    stack = root / "stack"
    (stack / "launch").mkdir(parents=True)
    for name in ("one", "two"):
        (stack / "launch" / f"{name}.py").write_text(APP.format(name=name, version="v1"))
    spec = stack / "venvstacks.toml"
    spec.write_text(SPEC.format(index=index_url))
    out = stack / "out"

    def publish(copy: Path) -> None:
        assert main(["-q", "build", "--lock-if-needed", str(spec)]) == 0
        assert main(["-q", "publish", "--tag-outputs", "--output-dir", str(out), str(spec)]) == 0
        shutil.copytree(out, copy)

    publish(root / "v1")
    # the stack's sources at v1 (spec, locks, launch modules), for lock-diff against v1
    shutil.copytree(stack, root / "v1-source", ignore=shutil.ignore_patterns("_build", "out"))
    (stack / "launch" / "one.py").write_text(APP.format(name="one", version="v2"))
    publish(root / "v2")
    _built["versions"] = Versions(spec, root / "v1", root / "v2")
    return _built["versions"]


def manifest_path(folder: Path) -> Path:
    """This platform's manifest in a publish output (whichever layout publish wrote)."""
    from venvlayers.core.platforms import host_platform
    from venvlayers.formats.assets import manifest_candidates

    for candidate in manifest_candidates(str(host_platform())):
        if (folder / candidate).is_file():
            return folder / candidate
    raise AssertionError(f"no manifest in {folder}")


def layer_metadata(folder: Path, layer: str) -> dict[str, Any]:
    manifest = json.loads(manifest_path(folder).read_text())
    for entries in manifest["layers"].values():
        for entry in entries:
            if entry["install_target"] == layer:
                return dict(entry)
    raise AssertionError(f"no layer {layer} in {folder}")


def archive(folder: Path, layer: str) -> Path:
    """The archive of ``layer`` (install target) in a publish output, as its manifest says."""
    return folder / layer_metadata(folder, layer)["archive_name"]


def deploy(*args: str | Path) -> int:
    """``venvlayers deploy ARGS…`` in process; its exit status."""
    from venvlayers.cli.commands import main

    return main(["deploy", *map(str, args)])


def run_app(target: Path, app: str) -> str:
    """What a deployed app (``app-one``) prints, run as users do: ``<app>/bin/python -m``."""
    python = target / app / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", app.removeprefix("app-")], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under ``folder``: links by their value, files by their sha256."""
    found = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink():
            found[key] = "-> " + os.readlink(path)
        elif path.is_file():
            found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            found[key] = "dir"
    return found
