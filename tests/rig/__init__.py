"""Offline test rig: relocatable runtimes, generated wheels, a local simple index.

Fixtures live in tests/conftest.py; the building blocks are importable for tests that need
more control: ``rig.runtime`` (runtime archives + uv downloads JSON), ``rig.wheels``
(``build_wheel``, ``make_wheelhouse``) and ``rig.index`` (``SimpleIndex``).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

#: Variables a developer's shell or CI could leak into uv or pip; tests and the benchmark
#: must see none of them (the index, python and config they name are the rig's to choose).
LEAKY_ENV = (
    "VIRTUAL_ENV",
    "UV_INDEX",
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_FIND_LINKS",
    "UV_PYTHON",
    "UV_OFFLINE",
    "UV_NO_CACHE",
    "UV_CONFIG_FILE",
    "UV_PROJECT_ENVIRONMENT",
    "UV_PYTHON_INSTALL_MIRROR",
    "UV_PYTHON_DOWNLOADS",
    "UV_EXCLUDE_NEWER",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_FIND_LINKS",
    "PIP_NO_INDEX",
    "PYTHONPATH",
)


def uv_executable() -> str:
    """The uv binary installed with the project (the one venvlayers itself runs)."""
    from uv import find_uv_bin

    return str(find_uv_bin())


def run_uv(
    args: Sequence[str | Path],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run uv with ``os.environ`` updated by ``env``; output captured as text.

    On failure (with ``check``) the assertion message carries uv's stderr, so a failing
    test shows why uv refused.
    """
    full_env = {**os.environ, **(env or {})}
    result = subprocess.run(
        [uv_executable(), *map(str, args)],
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"uv {' '.join(map(str, args))} failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result


#: What a run leaves in a stack's folder (build folders, outputs, bytecode): never part of a
#: source copy, so a test starts from the committed stack whatever ran in the tree before.
BUILD_OUTPUTS = ("_build", "_out", "_artifacts", "_export", "__pycache__", ".venvlayers.lock")


def copy_source(source: Path, destination: Path, **options: object) -> Path:
    """``shutil.copytree`` of a stack's source: its build outputs left out."""
    import shutil

    ignore = shutil.ignore_patterns(*BUILD_OUTPUTS)
    return Path(shutil.copytree(source, destination, ignore=ignore, **options))  # type: ignore[arg-type]
