#!/usr/bin/env python3
"""Run the reference tool (venvstacks 0.8.0 or 0.7.0) with runtimes from local archives, one per version.

venvstacks installs runtimes by downloading python-build-standalone from GitHub through
``venvstacks.stacks._pdm_python_install(target_path, request)``. This wrapper replaces only
that function: ``request`` (``cpython@3.12.1``) picks a local ``install_only`` archive (top
folder ``python/``) from VENVLAYERS_BENCH_RUNTIMES, a JSON object mapping full versions to
archive paths, e.g. ``{"3.12.1": "/x/cpython-3.12.1-...tar.gz", "3.11.7": "..."}``.
Everything else (uv pip compile, pip install, venv layering, archiving) runs unchanged.

/work/shared/peer/offline_venvstacks.py does the same with a single archive
(VENVSTACKS_OFFLINE_RUNTIME), which cannot serve a stack with two runtimes.

Usage: VENVLAYERS_BENCH_RUNTIMES='{...}' PEER_PYTHON peer_offline.py lock|build|publish ... SPEC
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tarfile
from pathlib import Path


def _archives() -> dict[str, str]:
    raw = os.environ.get("VENVLAYERS_BENCH_RUNTIMES")
    if not raw:
        sys.exit("set VENVLAYERS_BENCH_RUNTIMES to a JSON object {version: install_only archive}")
    archives: dict[str, str] = json.loads(raw)
    return archives


def _install_local_runtime(target_path: Path, request: str) -> Path:
    """Unpack the archive for ``request``'s version into ``target_path/<version>``."""
    version = request.rpartition("@")[2].partition("-")[0]
    archives = _archives()
    if version not in archives:
        sys.exit(f"no local runtime archive for {request!r}; have {sorted(archives)}")
    destination = Path(target_path) / version
    shutil.rmtree(destination, ignore_errors=True)
    destination.mkdir(parents=True)
    with tarfile.open(archives[version]) as archive:
        members = []
        for member in archive.getmembers():
            # install_only archives hold everything under "python/"; drop that folder
            member.name = member.name.partition("/")[2]
            if member.name:
                members.append(member)
        archive.extractall(destination, members=members, filter="tar")
    return destination


def main() -> None:
    _archives()  # fail before venvstacks starts when the mapping is missing
    import venvstacks.stacks
    from venvstacks.cli import main as venvstacks_main

    venvstacks.stacks._pdm_python_install = _install_local_runtime
    venvstacks_main()


if __name__ == "__main__":
    main()
