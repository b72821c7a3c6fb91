"""The reference tool, venvstacks 0.8.0, installed for side-by-side tests.

Its wheel sits in ``../shared/peer/`` (the package index has only its betas, which differ);
its dependencies come from PyPI, so tests using it are ``network``-marked. The virtual
environment is cached across test sessions under ``~/.cache/venvlayers-tests/peer-<key>/``
(override the root with VENVLAYERS_TEST_CACHE), keyed by the wheel's sha256.

``Peer.run(args, cwd, runtimes)`` runs it offline: its runtime download is replaced by a
local python-build-standalone style archive per Python version (``bench/peer_offline.py``
does the replacing; it handles several runtimes, unlike ``offline_venvstacks.py``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rig import LEAKY_ENV

REPO = Path(__file__).resolve().parents[2]


def _shared_peer() -> Path:
    """``shared/peer`` beside the repository (or beside a folder holding it, as for git
    worktrees under ``wt/``); VENVLAYERS_PEER_DIR overrides."""
    override = os.environ.get("VENVLAYERS_PEER_DIR")
    if override:
        return Path(override)
    for folder in REPO.parents:
        if (folder / "shared" / "peer").is_dir():
            return folder / "shared" / "peer"
    return REPO.parent / "shared" / "peer"


SHARED_PEER = _shared_peer()
PEER_WHEEL = SHARED_PEER / "venvstacks-0.8.0-py3-none-any.whl"
PEER_RUNNER = REPO / "bench" / "peer_offline.py"


def _cache_root() -> Path:
    override = os.environ.get("VENVLAYERS_TEST_CACHE")
    return Path(override) if override else Path.home() / ".cache" / "venvlayers-tests"


@dataclass(frozen=True)
class Peer:
    """venvstacks 0.8.0 in its own virtual environment."""

    python: Path

    def run(
        self,
        args: Sequence[str],
        *,
        cwd: Path,
        runtimes: Mapping[str, Path],
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``venvstacks ARGS`` offline; ``runtimes`` maps full versions to archives."""
        run_env = {k: v for k, v in os.environ.items() if k not in LEAKY_ENV}
        run_env["VENVLAYERS_BENCH_RUNTIMES"] = json.dumps({k: str(v) for k, v in runtimes.items()})
        run_env.update(env or {})
        result = subprocess.run(
            [str(self.python), str(PEER_RUNNER), *args],
            cwd=cwd,
            env=run_env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"venvstacks {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            )
        return result

    def run_many(
        self,
        calls: Sequence[Sequence[str]],
        *,
        cwd: Path,
        runtimes: Mapping[str, Path],
        env: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """Run ``venvstacks ARGS`` for each argument list in one process (``rig.peer_batch``):
        a ``{code, out, err}`` per call."""
        run_env = {k: v for k, v in os.environ.items() if k not in LEAKY_ENV}
        run_env["VENVLAYERS_BENCH_RUNTIMES"] = json.dumps({k: str(v) for k, v in runtimes.items()})
        run_env.update(env or {})
        result = subprocess.run(
            [str(self.python), str(Path(__file__).with_name("peer_batch.py")), str(PEER_RUNNER)],
            cwd=cwd,
            env=run_env,
            input=json.dumps([list(c) for c in calls]),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(f"venvstacks batch failed: {result.stderr[-4000:]}")
        results: list[dict[str, Any]] = json.loads(result.stdout)
        return results


def peer_available() -> bool:
    return PEER_WHEEL.is_file()


def install_peer(uv: str | None = None) -> Peer:
    """Install (or reuse) venvstacks 0.8.0 in a cached virtual environment.

    A venv records absolute paths, so it is made where it lives, under a file lock that
    keeps concurrent test sessions from building it twice; ``.complete`` marks it whole.
    """
    digest = hashlib.sha256(PEER_WHEEL.read_bytes()).hexdigest()[:16]
    root = _cache_root()
    venv = root / f"peer-{digest}"
    python = venv / "bin" / "python"
    done = venv / ".complete"
    if done.exists():
        return Peer(python)
    root.mkdir(parents=True, exist_ok=True)
    uv = uv or shutil.which("uv") or "uv"
    with open(root / f".peer-{digest}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return Peer(python)
        shutil.rmtree(venv, ignore_errors=True)
        for cmd in (
            [uv, "venv", "--quiet", "--python", sys.executable, str(venv)],
            [uv, "pip", "install", "--quiet", "--python", str(python), str(PEER_WHEEL)],
        ):
            subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL)
        done.touch()
    return Peer(python)
