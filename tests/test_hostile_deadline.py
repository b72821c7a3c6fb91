"""`release --deadline` bounds the whole command on the wall clock, stalls included.

The GitHub double stalls a request (reads it, then neither answers nor closes); the
command must give up with a one-line error naming the deadline instead of waiting for
a 60 s API timeout or a 300 s upload read timeout. Each run happens in a thread joined
with a generous bound, so a regression fails instead of hanging the suite.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from rig.github_double import Fault, GitHubDouble

from venvlayers.cli.commands import main

TOKEN = "ghs_DoubleSecret0123456789abcdefXYZ"
REPO = "octo-org/stacks"
TAG = "v9.9.9"
DEADLINE = 5
# far below the old behaviour (60 s per API call, 300 s per upload), far above the deadline
BOUND = DEADLINE + 25


@pytest.fixture
def double() -> Iterator[GitHubDouble]:
    with GitHubDouble(token=TOKEN, repo=REPO) as server:
        yield server


@pytest.fixture
def out(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    data = random.Random(7).randbytes(300_000)
    (folder / "app-x-linux_x86_64-1.tar.xz").write_bytes(data)
    # a merge output: the index naming the archive, and the platform's manifest
    entry = {
        "archive_name": "app-x-linux_x86_64-1.tar.xz",
        "archive_size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "metadata": "__venvstacks__/env_metadata/app-x-linux_x86_64.json",
    }
    layer = {
        "category": "applications",
        "install_target": "app-x",
        "lock_version": 1,
        "requirements_hash": "sha256:00",
        "locked_at": "2026-01-01T00:00:00+00:00",
        "platforms": {"linux_x86_64": entry},
    }
    index = {"platforms": ["linux_x86_64"], "layers": {"app-x": layer}}
    (folder / "venvstacks-index.json").write_text(json.dumps(index))
    (folder / "__venvstacks__").mkdir()
    (folder / "__venvstacks__" / "venvstacks-linux_x86_64.json").write_text('{"layers": {}}')
    return folder


def release_in_thread(
    double: GitHubDouble, out: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[bool, list[int]]:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_API_URL", double.api_url)
    codes: list[int] = []
    worker = threading.Thread(
        target=lambda: codes.append(
            main(["release", "--tag", TAG, "--repo", REPO, "--deadline", str(DEADLINE), str(out)])
        ),
        daemon=True,
    )
    worker.start()
    worker.join(BOUND)
    finished = not worker.is_alive()
    double.stop()  # releases a stalled handler either way
    return finished, codes


def test_stalled_api_call_honours_the_deadline(
    double: GitHubDouble,
    out: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    double.add_fault(Fault(kind="stall", method="GET", path=r"/repos/octo-org/stacks$", times=50))
    finished, codes = release_in_thread(double, out, monkeypatch)
    assert finished, f"release --deadline {DEADLINE} still running after {BOUND} s"
    err = capsys.readouterr().err
    assert codes == [2], err
    assert "deadline" in err and f"{DEADLINE} s" in err
    assert len(err.strip().splitlines()) <= 4 and "Traceback" not in err
    assert TOKEN not in err


def test_stalled_upload_honours_the_deadline(
    double: GitHubDouble,
    out: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # the whole body is read, then no answer: the client waits in its read
    double.add_fault(
        Fault(kind="stall", method="POST", path=r"/assets$", times=50, stall_after=10**9)
    )
    finished, codes = release_in_thread(double, out, monkeypatch)
    assert finished, f"release --deadline {DEADLINE} still running after {BOUND} s"
    err = capsys.readouterr().err
    assert codes == [2], err
    assert "deadline" in err and f"{DEADLINE} s" in err
    assert "Traceback" not in err and TOKEN not in err
