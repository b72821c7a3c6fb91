"""A newline in anything we print never starts a GitHub Actions workflow command line."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from rig.cli import Run

from venvlayers.core.errors import VenvlayersError
from venvlayers.core.report import GitHubReporter, Reporter

INJECTED = "rt\n::error title=Injected::pwned"
SPEC = """
[[runtimes]]
name = "{name}"
python_implementation = "cpython@3.12.1"
requirements = []
"""


def command_lines(text: str) -> list[str]:
    """Lines the Actions runner would read as workflow commands."""
    return [
        line
        for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        if line.lstrip().startswith("::") or "##[" in line
    ]


def test_injected_workflow_command_in_a_layer_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Callable[..., Run]
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.delenv("GITHUB_OUTPUT", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    spec = tmp_path / "venvstacks.toml"
    spec.write_text(SPEC.format(name=INJECTED.replace("\n", "\\n")))
    for command in (["show"], ["lock"], ["build"]):
        result = cli(*command, spec)
        assert result.code == 2, result.text
        injected = [line for line in command_lines(result.text) if "Injected" in line]
        # the one annotation we print is ours, with the name escaped inside it
        assert all(line.startswith("::error file=") for line in injected), result.text
        assert not any(line.startswith("::error title=Injected") for line in injected)


@pytest.mark.parametrize(
    "text",
    [
        INJECTED,
        "a\r::add-mask::x",
        "  ::warning::indented",
        "one\r\n::set-output name=x::y",
        "##[error]old syntax",
    ],
)
def test_reporters_never_print_a_command_they_did_not_build(text: str) -> None:
    stream = io.StringIO()
    github = GitHubReporter(stream)
    github.info(text)
    with github.group(f"group {text}"):
        github.info(f"inside {text}")
    github.warning(text)
    github.error(VenvlayersError(text))
    plain = Reporter(stream)
    plain.info(text)
    plain.warning(text)
    plain.error(VenvlayersError(text))
    ours = ("::group::", "::endgroup::", "::warning::", "::error::")
    assert [line for line in command_lines(stream.getvalue()) if not line.startswith(ours)] == []
