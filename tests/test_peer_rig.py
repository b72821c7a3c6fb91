"""The reference-tool rig itself: the cached venv holds venvstacks 0.8.0 and runs offline."""

import subprocess

import pytest
from rig.peer import Peer


@pytest.mark.network
def test_peer_is_venvstacks_080(peer: Peer, tmp_path) -> None:
    version = subprocess.run(
        [str(peer.python), "-c", "import importlib.metadata as m; print(m.version('venvstacks'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert version == "0.8.0"
    assert "local-export" in peer.run(["--help"], cwd=tmp_path, runtimes={}).stdout
