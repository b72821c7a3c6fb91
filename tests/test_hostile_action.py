"""The action's own files and inputs, hostile or broken (issue 25, cases 10-11).

The entrypoint (entrypoint/main.py) runs as the action runs it: a process with INPUT_*
variables and the runner's files. Its own I/O failures are one ``::error`` line and exit 2,
never a traceback and never exit 1 (which tells the workflow "stale locks"); the
``merge-inputs`` words are folders, never options.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from rig.hello_stack import write_hello_stack
from test_merge import LINUX, make_publish_output

ROOT = Path(__file__).resolve().parent.parent
ENTRYPOINT = ROOT / "entrypoint" / "main.py"


def run_entrypoint(env: dict[str, str], cwd: Path) -> tuple[int, str, list[str]]:
    """(exit code, all output, the ``::error`` lines)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("INPUT_", "GITHUB_"))}
    done = subprocess.run(
        [sys.executable, str(ENTRYPOINT)],
        env={**base, "GITHUB_ACTIONS": "true", **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    text = done.stdout + done.stderr
    return done.returncode, text, [line for line in text.splitlines() if line.startswith("::error")]


@pytest.fixture
def runner_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "GITHUB_OUTPUT": tmp_path / "runner" / "output",
        "GITHUB_STEP_SUMMARY": tmp_path / "runner" / "summary.md",
        "RUNNER_TEMP": tmp_path / "runner" / "temp",
    }
    files["RUNNER_TEMP"].mkdir(parents=True)
    files["GITHUB_OUTPUT"].write_text("")
    files["GITHUB_STEP_SUMMARY"].write_text("")
    return files


def show_env(tmp_path: Path, files: dict[str, Path]) -> dict[str, str]:
    spec = write_hello_stack(tmp_path / "stack")
    return {
        "INPUT_COMMAND": "show",
        "INPUT_SPEC": str(spec),
        **{name: str(path) for name, path in files.items()},
    }


BROKEN = {
    "output-folder": ("GITHUB_OUTPUT", "folder"),
    "output-dev-full": ("GITHUB_OUTPUT", "/dev/full"),
    "output-missing-parent": ("GITHUB_OUTPUT", "missing-parent"),
    "summary-folder": ("GITHUB_STEP_SUMMARY", "folder"),
    "summary-dev-full": ("GITHUB_STEP_SUMMARY", "/dev/full"),
    "summary-missing-parent": ("GITHUB_STEP_SUMMARY", "missing-parent"),
    "runner-temp-a-file": ("RUNNER_TEMP", "file"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_the_actions_own_broken_files_are_one_error_and_exit_2(
    tmp_path: Path, runner_files: dict[str, Path], case: str
) -> None:
    variable, how = BROKEN[case]
    env = show_env(tmp_path, runner_files)
    broken = tmp_path / "broken"
    if how == "folder":
        broken.mkdir()
    elif how == "file":
        broken.write_text("a file, not a folder\n")
    elif how == "missing-parent":
        broken = tmp_path / "no-such-folder" / "file"
    else:
        broken = Path(how)
    env[variable] = str(broken)
    code, text, errors = run_entrypoint(env, tmp_path)
    assert code == 2, text
    assert "Traceback" not in text, text
    assert len(errors) == 1 and variable in errors[0], text


def test_a_summary_holding_other_bytes_is_appended_to(
    tmp_path: Path, runner_files: dict[str, Path]
) -> None:
    summary = runner_files["GITHUB_STEP_SUMMARY"]
    summary.write_bytes(b"an earlier step wrote \xff\xfe, not UTF-8\n")
    code, text, errors = run_entrypoint(show_env(tmp_path, runner_files), tmp_path)
    assert code == 0, text
    assert errors == [] and "Traceback" not in text
    data = summary.read_bytes()
    assert data.startswith(b"an earlier step wrote \xff\xfe") and b"venvlayers show" in data


def test_merge_inputs_are_folders_never_options(
    tmp_path: Path, runner_files: dict[str, Path]
) -> None:
    job = make_publish_output(tmp_path / "artifacts" / "stack-linux", LINUX)
    env = {
        "INPUT_COMMAND": "merge",
        "INPUT_MERGE_INPUTS": f"{job} --expect-platform={LINUX}",
        "INPUT_OUTPUT_DIR": str(tmp_path / "merged"),
        **{name: str(path) for name, path in runner_files.items()},
    }
    code, text, errors = run_entrypoint(env, tmp_path)
    assert code == 2, text
    assert len(errors) == 1, text
    assert f"input --expect-platform={LINUX} is not a folder" in errors[0], text
    assert not (tmp_path / "merged").exists()


@pytest.mark.parametrize("number", ["7 --repo evil/x", "-1", "\uff17", "#7"])
def test_pr_comment_is_a_number_never_options(
    tmp_path: Path, runner_files: dict[str, Path], number: str
) -> None:
    env = {**show_env(tmp_path, runner_files), "INPUT_COMMAND": "lock-diff", "INPUT_BASE": "main"}
    env["INPUT_PR_COMMENT"] = number
    code, text, errors = run_entrypoint(env, tmp_path)
    assert code == 2, text
    assert len(errors) == 1 and "input 'pr-comment'" in errors[0], text
