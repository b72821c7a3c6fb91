"""The reference tool for the benchmark: venvstacks 0.8.0 (default) or 0.7.0, each in its own venv.

- 0.8.0 is the wheel in ``../shared/peer/`` (the package index only has its betas); the
  test rig's ``rig.peer.install_peer`` installs it once into a cached venv
  (``~/.cache/venvlayers-tests/peer-<wheel sha>``), shared with the tests.
- 0.7.0 comes from the package index, with the ``pdm<2.26`` and ``hishel<1.0`` pins its
  runtime installer needs, into ``~/.cache/venvlayers-bench/peer-0.7.0``
  (``VENVLAYERS_BENCH_PEER`` overrides the folder).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from rig.peer import install_peer, peer_available

PEER_VERSIONS = ("0.8.0", "0.7.0")
DEFAULT_PEER = "0.8.0"


def installed_version(python: Path) -> str | None:
    try:
        completed = subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; print(m.version('venvstacks'))"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return completed.stdout.strip()


def _uv() -> str:
    from uv import find_uv_bin

    return str(find_uv_bin())


def peer_python(version: str) -> Path:
    """The python of a venv with venvstacks ``version``, made on first use."""
    if version == "0.8.0":
        if not peer_available():
            sys.exit("no venvstacks 0.8.0 wheel in ../shared/peer/ (see its README)")
        return install_peer(_uv()).python
    if version != "0.7.0":
        raise ValueError(version)
    default = Path.home() / ".cache" / "venvlayers-bench" / "peer-0.7.0"
    venv = Path(os.environ.get("VENVLAYERS_BENCH_PEER", default))
    python = venv / "bin" / "python"
    if installed_version(python) == version:
        return python
    print(f"setting up venvstacks {version} in {venv}", file=sys.stderr)
    shutil.rmtree(venv, ignore_errors=True)
    uv = _uv()
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    subprocess.run(
        [
            uv,
            "pip",
            "install",
            "--quiet",
            "--python",
            str(python),
            f"venvstacks=={version}",
            "pdm<2.26",
            "hishel<1.0",
        ],
        check=True,
    )
    if installed_version(python) != version:
        sys.exit(f"venvstacks {version} did not install into {venv}")
    return python
