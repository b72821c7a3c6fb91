"""The wheels the action installs the builder from (its locked dependencies and the locked
build backend), downloaded once per machine and served by a ``SimpleIndex``: the jobs' index.

Jobs run like fresh runners (empty uv cache) but with ``UV_INDEX_URL`` set to this index, as a
company mirror would be, so installs need no PyPI and every request is counted. Built with
``pip download --require-hashes`` from ``uv export`` of this checkout for CPython 3.12 and the
test interpreter's version on manylinux x86_64; kept under ``~/.cache/venvlayers-tests/builder-wheels/<hash>/``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import uv_executable

ROOT = Path(__file__).resolve().parents[2]
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "linux_x86_64",
)


def _cache_root() -> Path:
    override = os.environ.get("VENVLAYERS_TEST_CACHE")
    return (
        Path(override) if override else Path.home() / ".cache" / "venvlayers-tests"
    ) / "builder-wheels"


def export_requirements(project: Path = ROOT) -> str:
    """What the action installs: ``uv export`` of the builder with the build group."""
    done = subprocess.run(
        [uv_executable(), "export", "--quiet", "--project", str(project), "--frozen", "--no-dev",
         "--group", "build", "--no-emit-project"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout


def builder_wheelhouse(project: Path = ROOT) -> Path:
    """A folder of every wheel the builder's locked requirements name (downloaded once)."""
    requirements = export_requirements(project)
    # The action's default Python (3.12) and this test interpreter (the builder's Python
    # when a test passes sys.executable): `uv sync` on a fresh machine may pick either
    versions = sorted({"3.12", f"{sys.version_info.major}.{sys.version_info.minor}"})
    key = hashlib.sha256("\n".join([requirements, *versions]).encode()).hexdigest()[:16]
    final = _cache_root() / key
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=final.parent))
    try:
        (building / "requirements.txt").write_text(requirements, encoding="utf-8")
        platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
        pip = [uv_executable(), "tool", "run", "--from", "pip", "pip"]
        for version in versions:
            subprocess.run(
                [*pip, "download", "--quiet", "--no-deps", "--only-binary=:all:",
                 "--require-hashes", "--python-version", version, "--implementation", "cp",
                 *platforms, "-r", str(building / "requirements.txt"), "-d", str(building)],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
        os.rename(building, final)
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"pip download of the builder's wheels failed:\n{exc.stderr}") from None
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return final
