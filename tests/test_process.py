"""The one process runner: a failed process becomes a one-line VenvlayersError."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from venvlayers.core.errors import BuildError, ProcessError
from venvlayers.core.process import run_process

FAIL = "import sys; print('progress'); print('Traceback...', file=sys.stderr); sys.exit('ValueError: bad wheel')"


def test_failure_names_purpose_exit_code_and_last_stderr_line() -> None:
    with pytest.raises(BuildError) as caught:
        run_process([sys.executable, "-c", FAIL], what="layer x: import check", error=BuildError)
    assert str(caught.value) == "layer x: import check failed (exit 1): ValueError: bad wheel"


def test_unchecked_failure_is_returned() -> None:
    result = run_process([sys.executable, "-c", FAIL], what="probe", check=False)
    assert not result.ok and result.returncode == 1
    assert result.stdout == "progress\n"
    assert result.summary() == "ValueError: bad wheel"


def test_stdout_line_when_stderr_is_empty(tmp_path: Path) -> None:
    script = "import sys; print('first'); print('the real reason'); sys.exit(4)"
    with pytest.raises(ProcessError, match=r"^probe failed \(exit 4\): the real reason$"):
        run_process([sys.executable, "-c", script], what="probe", cwd=tmp_path)


def test_missing_program_is_a_user_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-tool"
    with pytest.raises(ProcessError, match="not installed or not on PATH"):
        run_process([missing], what="list files", check=False)


def test_environment_and_folder_are_passed(tmp_path: Path) -> None:
    script = "import os; print(os.getcwd()); print(os.environ['PROBE'])"
    result = run_process(
        [sys.executable, "-c", script], what="probe", cwd=tmp_path, env={"PROBE": "yes"}
    )
    assert result.stdout.splitlines() == [str(tmp_path.resolve()), "yes"]
