"""Private indexes: credentials come only from uv's environment variables and are never written."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from rig.index import SimpleIndex
from rig.runtime import RuntimeMirror
from rig.wheels import Wheelhouse

from venvlayers.cli.commands import main

SECRET = "s3cr3t-pa55word-for-tests"

SPEC = """
[[runtimes]]
name = "cpython-3.12"
python_implementation = "cpython@3.12.1"
requirements = []
platforms = ["linux_x86_64"]

[[frameworks]]
name = "fw"
runtime = "cpython-3.12"
requirements = ["beta"]

[[tool.uv.index]]
name = "private"
url = "{url}"
default = true
"""


@pytest.mark.slow
def test_private_index_credentials_from_environment_only(
    tmp_path: Path,
    wheelhouse: Wheelhouse,
    runtime_mirror: RuntimeMirror,
    simple_index_factory: Callable[..., SimpleIndex],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    index = simple_index_factory(wheelhouse.path, username="builder", password=SECRET)
    spec = tmp_path / "venvstacks.toml"
    spec.write_text(SPEC.format(url=index.url))

    # without credentials the index refuses, and the error says so on one line
    assert main(["lock", str(spec)]) == 2
    assert "401" in capfd.readouterr().err

    monkeypatch.setenv("UV_INDEX_PRIVATE_USERNAME", "builder")
    monkeypatch.setenv("UV_INDEX_PRIVATE_PASSWORD", SECRET)
    assert main(["lock", str(spec)]) == 0
    assert main(["build", "--lock-if-needed", str(spec)]) == 0
    python = tmp_path / "_build" / "framework-fw" / "bin" / "python"
    result = subprocess.run(
        [str(python), "-c", "import beta, alpha; print('ok')"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "ok"

    output = capfd.readouterr()
    assert SECRET not in output.out + output.err
    for path in (tmp_path / "requirements").rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(), f"{path} holds the index password"
    for path in (tmp_path / "_build").rglob("*.toml"):
        assert SECRET not in path.read_text(), f"{path} holds the index password"
