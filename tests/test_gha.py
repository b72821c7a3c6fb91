"""GitHub Actions I/O: outputs, summaries, annotations, groups and masks, through the runner's files."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from venvlayers.core.errors import SpecError
from venvlayers.core.report import GitHubReporter, Reporter


@pytest.fixture
def runner_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    files = {name: tmp_path / name.lower() for name in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY")}
    for name, path in files.items():
        path.write_text("")
        monkeypatch.setenv(name, str(path))
    monkeypatch.setenv("GITHUB_WORKSPACE", str(tmp_path))
    return files


def parse_outputs(text: str) -> dict[str, str]:
    """Read GITHUB_OUTPUT the way the runner does (name=value and heredoc blocks)."""
    outputs: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if "<<" in line and "=" not in line.split("<<", 1)[0]:
            name, delimiter = line.split("<<", 1)
            block = []
            for inner in lines:
                if inner == delimiter:
                    break
                block.append(inner)
            outputs[name] = "\n".join(block)
        else:
            name, value = line.split("=", 1)
            outputs[name] = value
    return outputs


def test_outputs_including_multiline_values(runner_files: dict[str, Path]) -> None:
    reporter = GitHubReporter(io.StringIO())
    reporter.set_output("platform", "linux_x86_64")
    reporter.set_output("report", "line one\nline two\nghadelimiter_fake")
    outputs = parse_outputs(runner_files["GITHUB_OUTPUT"].read_text())
    assert outputs == {
        "platform": "linux_x86_64",
        "report": "line one\nline two\nghadelimiter_fake",
    }


def test_summary_appends_markdown(runner_files: dict[str, Path]) -> None:
    reporter = GitHubReporter(io.StringIO())
    reporter.summary("# one")
    reporter.summary("two\n")
    assert runner_files["GITHUB_STEP_SUMMARY"].read_text() == "# one\ntwo\n"


def test_error_annotation_points_at_workspace_relative_spec_line(
    runner_files: dict[str, Path], tmp_path: Path
) -> None:
    stream = io.StringIO()
    spec = tmp_path / "stacks" / "venvstacks.toml"
    GitHubReporter(stream).error(SpecError("bad: 50%, really\nsecond line", path=spec, line=7))
    assert (
        stream.getvalue()
        == "::error file=stacks/venvstacks.toml,line=7::bad: 50%25, really%0Asecond line\n"
    )


def test_groups_and_masks() -> None:
    stream = io.StringIO()
    reporter = GitHubReporter(stream)
    with reporter.group("lock framework-x"):
        reporter.info("resolving")
    reporter.mask("s3cret")
    assert (
        stream.getvalue()
        == "::group::lock framework-x\nresolving\n::endgroup::\n::add-mask::s3cret\n"
    )


def test_plain_reporter_writes_no_workflow_commands(runner_files: dict[str, Path]) -> None:
    stream = io.StringIO()
    reporter = Reporter(stream)
    reporter.set_output("x", "y")
    reporter.summary("z")
    reporter.mask("s3cret")
    reporter.error(SpecError("broken"))
    assert stream.getvalue() == "error: broken\n"
    assert runner_files["GITHUB_OUTPUT"].read_text() == ""


def test_concurrent_groups_are_written_whole() -> None:
    import threading

    stream = io.StringIO()
    reporter = GitHubReporter(stream)
    both_inside = threading.Barrier(2, timeout=10)

    def stage(name: str) -> None:
        with reporter.group(f"build {name}"):
            reporter.info(f"{name}: start")
            both_inside.wait()  # the other thread is inside its group now, too
            reporter.info(f"{name}: done")

    threads = [threading.Thread(target=stage, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    blocks = stream.getvalue().split("::endgroup::\n")
    assert sorted(blocks[:2]) == [
        "::group::build a\na: start\na: done\n",
        "::group::build b\nb: start\nb: done\n",
    ]
