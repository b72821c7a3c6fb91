"""The composite action (action.yml + entrypoint/main.py), run end to end by the local harness.

The harness (tests/rig/action_runner.py) runs the action's real `run:` steps with bash and
the runner's files; only `uses:` steps get local stand-ins (uv from this venv, artifacts
copied to a folder). The builder is installed from this checkout exactly as on GitHub.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rig import copy_source
from rig.action_runner import ActionRunner, ExpressionError, condition, evaluate, parse_env_file

from venvlayers.cli.args import build_parser

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "basic"
TOKEN = "ghs_harnessTokenThatMustNeverBePrinted"

TINY_SPEC = """\
[[runtimes]]
name = "cpython-3.12"
python_implementation = "cpython@3.12.1"
requirements = []

[[applications]]
name = "tiny"
launch_module = "tiny.py"
runtime = "cpython-3.12"
requirements = []
"""

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="the action's steps need bash")


def cli_has(command: str) -> bool:
    return command in build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]


def host_platform() -> str:
    done = subprocess.run(
        [sys.executable, "-m", "venvlayers", "platform"], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.fixture
def runner(tmp_path: Path) -> ActionRunner:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    # a persistent uv cache keeps re-installing the builder's locked dependencies quick
    cache = Path(
        os.environ.get("VENVLAYERS_TEST_CACHE", Path.home() / ".cache" / "venvlayers-tests")
    )
    env = {"UV_CACHE_DIR": str(cache / "action-uv-cache")}
    return ActionRunner(ROOT, workspace, tmp_path / "runner-temp", token=TOKEN, env=env)


def run_action(runner: ActionRunner, **inputs: str) -> tuple[dict[str, str], str, str]:
    # the builder runs on this interpreter: the test machine cannot download Pythons
    given = {
        "python-version": sys.executable,
        "cache": "false",  # test_action_cache.py covers caching
        **{k.replace("_", "-"): v for k, v in inputs.items()},
    }
    result = runner.run(given)
    assert TOKEN in result.masks, "the entrypoint must mask the token"
    for line in result.log.splitlines():
        assert TOKEN not in line or line == f"::add-mask::{TOKEN}", f"token leaked: {line!r}"
    if not result.success:
        pytest.fail(f"action failed:\n{result.log}")
    return result.outputs, result.summary, result.log


# --- the harness's expression subset ------------------------------------------------------


CONTEXT = {
    "inputs": {"command": "publish", "upload-artifact": "true", "empty": ""},
    "steps": {"run": {"outputs": {"artifact-name": "venvlayers-linux_x86_64"}}},
    "runner": {"os": "Linux"},
}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("inputs.command == 'publish' && inputs.upload-artifact == 'true'", True),
        ("inputs.command == 'PUBLISH'", True),  # strings compare case-insensitively
        ("inputs.command != 'publish' || runner.os == 'Linux'", True),
        ("steps.run.outputs.artifact-name != ''", True),
        ("steps.missing.outputs.x", None),
        ("inputs.empty || 'fallback'", "fallback"),
        ("inputs.command && 'yes'", "yes"),
        ("!(inputs.empty)", True),
        ("inputs['command'] == 'it''s'", False),
        ("null == ''", True),  # mixed types compare as numbers, like GitHub
    ],
)
def test_expressions(expression: str, expected: object) -> None:
    assert evaluate(expression, CONTEXT) == expected


def test_conditions_default_to_success() -> None:
    assert condition(None, CONTEXT, "success")
    assert not condition("inputs.command == 'publish'", CONTEXT, "failure")
    assert condition("${{ always() }}", CONTEXT, "failure")
    with pytest.raises(ExpressionError):
        evaluate("contains(inputs.command, 'pub')", CONTEXT)


def test_env_files_heredoc(tmp_path: Path) -> None:
    f = tmp_path / "output"
    f.write_text("a=1\nlist<<EOF_x\none\ntwo\nEOF_x\nb=x=y\n", encoding="utf-8")
    assert parse_env_file(f) == {"a": "1", "list": "one\ntwo", "b": "x=y"}


# --- the action -------------------------------------------------------------------------


def test_show(runner: ActionRunner) -> None:
    (runner.workspace / "stack.toml").write_text(TINY_SPEC, encoding="utf-8")
    (runner.workspace / "tiny.py").write_text("print('tiny')\n", encoding="utf-8")
    outputs, summary, log = run_action(runner, command="show", spec="stack.toml")
    assert outputs["platform"] == host_platform()
    report = Path(outputs["report"]).read_text(encoding="utf-8")
    assert "venvlayers show: succeeded" in report
    assert "app-tiny" in report and "cpython-3.12" in report
    assert report in summary
    assert outputs["stale"] == "" and outputs["archives"] == ""
    assert "venvlayers show stack.toml" in log


def test_input_errors_are_annotations(runner: ActionRunner) -> None:
    result = runner.run(
        {"command": "frobnicate", "python-version": sys.executable, "cache": "false"}
    )
    assert not result.success
    run = next(step for step in result.steps if step.id == "run")
    assert "::error::input 'command' is 'frobnicate'; use one of: lock-check" in run.log
    assert "Traceback" not in run.log
    upload = result.steps[-1]
    assert upload.outcome == "skipped"


def test_spec_errors_fail_the_step_with_an_annotation(runner: ActionRunner) -> None:
    (runner.workspace / "venvstacks.toml").write_text("[[runtimes]]\nname = 1\n", encoding="utf-8")
    result = runner.run({"command": "show", "python-version": sys.executable, "cache": "false"})
    run = next(step for step in result.steps if step.id == "run")
    assert run.outcome == "failure"
    assert "::error file=venvstacks.toml" in run.log
    assert "Traceback" not in run.log
    assert "venvlayers show: failed (exit 2)" in result.summary


@pytest.mark.slow
@pytest.mark.network
def test_lock_check_on_the_example(runner: ActionRunner, runtime_mirror: object) -> None:
    copy_source(EXAMPLE, runner.workspace, dirs_exist_ok=True)
    outputs, summary, _ = run_action(runner, command="lock-check")
    assert outputs["stale"] == "false"
    assert "venvlayers lock-check: succeeded" in summary


@pytest.mark.slow
@pytest.mark.network
def test_publish_the_example(runner: ActionRunner, runtime_mirror: object) -> None:
    if not cli_has("publish"):
        pytest.skip("`venvlayers publish` is not implemented on this branch yet")
    copy_source(EXAMPLE, runner.workspace, dirs_exist_ok=True)
    result = runner.run(
        {
            "command": "publish",
            "output-dir": "_publish",
            "upload-artifact": "true",
            "python-version": sys.executable,
            "cache": "false",
        }
    )
    assert result.success, result.log
    outputs, platform = result.outputs, host_platform()
    assert outputs["platform"] == platform
    archives = [Path(a) for a in json.loads(outputs["archives"])]
    assert len(archives) == 3 and all(a.is_file() for a in archives)
    assert all(platform in a.name for a in archives)  # --tag-outputs, so platforms can merge
    metadata = Path(outputs["metadata-dir"])
    assert (metadata / f"venvstacks-{platform}.json").is_file()  # venvstacks' tagged layout
    assert metadata.resolve() == (runner.workspace / "_publish" / "__venvstacks__").resolve()
    # one artifact per platform: archives, SBOMs + metadata, laid out as in the output folder
    artifact = result.artifacts / f"venvlayers-{platform}"
    sboms = [a.name.replace(".tar.xz", ".cdx.json") for a in archives]
    assert sorted(p.name for p in artifact.iterdir()) == sorted(
        ["__venvstacks__", *(a.name for a in archives), *sboms]
    )
    assert (artifact / "__venvstacks__" / f"venvstacks-{platform}.json").is_file()
    for archive in archives:
        assert f"`{archive.name}`" in result.summary
    if not cli_has("merge"):
        return  # merging is checked below once `venvlayers merge` lands
    # the build-stacks merge job: downloaded artifacts in, one stack out
    downloaded = runner.workspace / "_artifacts"
    shutil.copytree(result.artifacts, downloaded)
    outputs, summary, _ = run_action(
        runner, command="merge", merge_inputs="_artifacts/venvlayers-*", output_dir="_stack"
    )
    assert outputs["metadata-dir"] == "_stack"
    assert (runner.workspace / "_stack" / "venvstacks-index.json").is_file()
    assert Path(outputs["report"]).read_text(encoding="utf-8") in summary


def git(workspace: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=workspace,
        check=True,
        capture_output=True,
    )


@pytest.mark.slow
def test_lock_diff_reports_a_stale_layer(runner: ActionRunner) -> None:
    if not cli_has("lock-diff") or shutil.which("git") is None:
        pytest.skip("needs `venvlayers lock-diff` and git")
    copy_source(EXAMPLE, runner.workspace, dirs_exist_ok=True)
    git(runner.workspace, "init", "-q", "-b", "main")
    git(runner.workspace, "add", ".")
    git(runner.workspace, "commit", "-q", "-m", "base")
    spec = runner.workspace / "venvstacks.toml"
    spec.write_text(spec.read_text().replace('["idna"]', '["idna", "packaging"]'))
    result = runner.run(
        {"command": "lock-diff", "base": "main", "python-version": sys.executable, "cache": "false"}
    )
    assert not result.success  # stale locks fail the step...
    assert result.outputs["stale"] == "true"  # ...and say so
    report = Path(result.outputs["report"]).read_text(encoding="utf-8")
    assert "hello" in report
    assert result.summary.count(report.strip()) == 1  # the CLI's summary is not repeated


def test_release_inputs_reach_the_release(tmp_path: Path) -> None:
    """release-name, prerelease, make-latest and notes-file become the release's own fields."""
    from rig.github_double import GitHubDouble
    from rig.release_output import merged_output

    workspace = tmp_path / "workspace"
    merged_output(workspace / "_stack")
    (workspace / "notes.md").write_text("Notes written by hand\n", encoding="utf-8")
    cache = Path(
        os.environ.get("VENVLAYERS_TEST_CACHE", Path.home() / ".cache" / "venvlayers-tests")
    )
    with GitHubDouble(token=TOKEN, repo="octo-org/stacks") as double:
        runner = ActionRunner(
            ROOT,
            workspace,
            tmp_path / "runner-temp",
            token=TOKEN,
            env={
                "UV_CACHE_DIR": str(cache / "action-uv-cache"),
                "GITHUB_API_URL": double.api_url,
                "GITHUB_REPOSITORY": "octo-org/stacks",
            },
        )
        outputs, _, _ = run_action(
            runner,
            command="release",
            tag="v3.1.0",
            output_dir="_stack",
            release_name="Stacks 3.1",
            prerelease="true",
            make_latest="false",
            notes_file="notes.md",
        )
        made = double.release_by_tag("v3.1.0")
    assert made is not None and not made.draft
    assert (made.name, made.body, made.prerelease, made.make_latest) == (
        "Stacks 3.1",
        "Notes written by hand\n",
        True,
        "false",
    )
    assert outputs["release-url"].endswith("/releases/tag/v3.1.0")
