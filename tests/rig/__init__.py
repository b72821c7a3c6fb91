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
