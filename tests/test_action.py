"""The composite action (action.yml + entrypoint/main.py), run end to end in a user's job.

The workflow runner (tests/rig/gha) runs checkout, then ``uses: venvlayers/venvlayers@v1``
(this checkout) with the real setup-uv, cache and upload-artifact code under node 24,
against the doubles of ``rig.workflow_stage.Stage`` (git, results service, REST API, the
package index holding the builder's locked wheels). The builder is installed from this
checkout exactly as on GitHub; it runs on this test's interpreter.
"""

from __future__ import annotations

import json
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from rig import copy_source
from rig.action_job import ActionJob, ActionRun
from rig.caller_repo import add_greeting, lock_stack, write_stack
from rig.gha.envfiles import parse_env_file
from rig.gha.expressions import ExpressionError, condition, evaluate
from rig.gha_skips import require_runner
from rig.release_output import merged_output
from rig.runtime import RuntimeMirror
from rig.workflow_stage import Stage

from venvlayers.core.platforms import host_platform

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "basic"

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

runner = require_runner()


@pytest.fixture
def stage(tmp_path: Path) -> Iterator[Stage]:
    with Stage(tmp_path / "stage") as stage:
        yield stage


@pytest.fixture
def job(stage: Stage, tmp_path: Path) -> ActionJob:
    return ActionJob(stage, tmp_path / "repo")


def run_action(job: ActionJob, *, python: str = sys.executable, **inputs: str) -> ActionRun:
    given = {"cache": "false", **{k.replace("_", "-"): v for k, v in inputs.items()}}
    run = job.run(given, python=python)
    token = job.stage.services.token
    assert token not in run.log, "the token must never be printed"
    if not run.success:
        pytest.fail(f"action failed:\n{run.log}")
    return run


# --- the runner's expressions and files, as the action uses them ---------------------------


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
        ("contains(inputs.command, 'pub')", True),
    ],
)
def test_expressions(expression: str, expected: object) -> None:
    assert evaluate(expression, CONTEXT) == expected


def test_conditions_default_to_success() -> None:
    assert condition(None, CONTEXT, "success")
    assert not condition("inputs.command == 'publish'", CONTEXT, "failure")
    assert condition("${{ always() }}", CONTEXT, "failure")
    with pytest.raises(ExpressionError):
        evaluate("frobnicate(inputs.command)", CONTEXT)


def test_env_files_heredoc(tmp_path: Path) -> None:
    f = tmp_path / "output"
    f.write_text("a=1\nlist<<EOF_x\none\ntwo\nEOF_x\nb=x=y\n", encoding="utf-8")
    assert parse_env_file(f) == {"a": "1", "list": "one\ntwo", "b": "x=y"}


# --- the action -------------------------------------------------------------------------


@runner
def test_show(job: ActionJob) -> None:
    job.repository.mkdir()
    (job.repository / "stack.toml").write_text(TINY_SPEC, encoding="utf-8")
    (job.repository / "tiny.py").write_text("print('tiny')\n", encoding="utf-8")
    run = run_action(job, command="show", spec="stack.toml")
    assert run.outputs["platform"] == host_platform().value
    report = Path(run.outputs["report"]).name
    assert report == "venvlayers-show-report.md"
    assert "### venvlayers show: succeeded" in run.summary
    assert "app-tiny" in run.summary and "cpython-3.12" in run.summary
    assert run.outputs["stale"] == "" and run.outputs["archives"] == ""
    assert "venvlayers show stack.toml" in run.log
    # the real checkout ran, at the commit the workflow pins
    assert run.job.steps[0].commit == "3d3c42e5aac5ba805825da76410c181273ba90b1"


@runner
def test_input_errors_are_annotations(job: ActionJob) -> None:
    job.repository.mkdir()
    run = job.run({"command": "frobnicate", "cache": "false"})
    assert not run.success
    step = run.step("run")
    assert "::error::input 'command' is 'frobnicate'; use one of: lock-check" in step.log
    assert "Traceback" not in step.log
    assert any("input 'command' is 'frobnicate'" in e for e in run.job.errors())
    assert run.step("Upload this platform's archives, SBOMs and metadata").outcome == "skipped"


@runner
def test_spec_errors_fail_the_step_with_an_annotation(job: ActionJob) -> None:
    job.repository.mkdir()
    (job.repository / "venvstacks.toml").write_text("[[runtimes]]\nname = 1\n", encoding="utf-8")
    run = job.run({"command": "show", "cache": "false"})
    step = run.step("run")
    assert step.outcome == "failure"
    assert "::error file=venvstacks.toml" in step.log
    assert "Traceback" not in step.log
    assert "venvlayers show: failed (exit 2)" in run.summary


@runner
@pytest.mark.slow
def test_lock_check_on_the_example(job: ActionJob) -> None:
    copy_source(EXAMPLE, job.repository)
    run = run_action(job, command="lock-check")
    assert run.outputs["stale"] == "false"
    assert "venvlayers lock-check: succeeded" in run.summary


@runner
@pytest.mark.slow
def test_publish_uploads_one_artifact_with_the_prefix_and_the_sboms(
    tmp_path: Path, runtime_mirror: RuntimeMirror
) -> None:
    archive = runtime_mirror.archives[runtime_mirror.version]
    with Stage(tmp_path / "stage", archive) as stage:
        job = ActionJob(stage, tmp_path / "repo")
        add_greeting(stage.packages)
        lock_stack(write_stack(job.repository, stage.index.url))
        run = run_action(
            job,
            command="publish",
            output_dir="_publish",
            upload_artifact="true",
            artifact_prefix="stack-a",
            retention_days="5",
            python="3.12",  # the stage's runtime, downloaded by uv as on GitHub
        )
        platform = host_platform().value
        assert run.outputs["platform"] == platform
        archives = [Path(a) for a in json.loads(run.outputs["archives"])]
        assert len(archives) == 2 and all(platform in a.name for a in archives)
        metadata = Path(run.outputs["metadata-dir"])
        assert metadata.name == "__venvstacks__"
        for archive_path in archives:
            assert f"`{archive_path.name}`" in run.summary
        # one artifact per platform: archives, SBOMs and metadata, as in the output folder,
        # stored (compression-level 0: the archives are compressed already), kept 5 days
        assert stage.results.artifact_names() == [f"stack-a-{platform}"]
        with zipfile.ZipFile(stage.results.artifact_zip(f"stack-a-{platform}")) as zipped:
            members = zipped.infolist()
        tops = {m.filename.split("/")[0] for m in members}
        sboms = {a.name.replace(".tar.xz", ".cdx.json") for a in archives}
        indexes = {a.name.replace(".tar.xz", ".index.json.xz") for a in archives}
        assert tops == {"__venvstacks__", *(a.name for a in archives), *sboms, *indexes}
        assert f"__venvstacks__/venvstacks-{platform}.json" in {m.filename for m in members}
        assert {m.compress_type for m in members} == {zipfile.ZIP_STORED}
        assert stage.results.artifact(f"stack-a-{platform}").expires_at


@runner
@pytest.mark.slow
def test_lock_diff_reports_a_stale_layer(job: ActionJob) -> None:
    copy_source(EXAMPLE, job.repository)
    base = job.commit()
    spec = job.repository / "venvstacks.toml"
    spec.write_text(spec.read_text().replace('["idna"]', '["idna", "packaging"]'))
    run = job.run({"command": "lock-diff", "base": base, "cache": "false"})
    assert not run.success  # stale locks fail the step...
    assert run.outputs["stale"] == "true"  # ...and say so
    assert "hello" in run.summary
    assert run.summary.count("## Lock changes in") == 1  # the CLI's summary is not repeated


@runner
def test_release_inputs_reach_the_release(job: ActionJob) -> None:
    """release-name, prerelease, make-latest and notes-file become the release's own fields."""
    merged_output(job.repository / "_stack")
    (job.repository / "notes.md").write_text("Notes written by hand\n", encoding="utf-8")
    run = run_action(
        job,
        command="release",
        tag="v3.1.0",
        output_dir="_stack",
        release_name="Stacks 3.1",
        prerelease="true",
        make_latest="false",
        notes_file="notes.md",
    )
    made = job.stage.github.release_by_tag("v3.1.0")
    assert made is not None and not made.draft
    assert (made.name, made.body, made.prerelease, made.make_latest) == (
        "Stacks 3.1",
        "Notes written by hand\n",
        True,
        "false",
    )
    assert run.outputs["release-url"].endswith("/releases/tag/v3.1.0")
