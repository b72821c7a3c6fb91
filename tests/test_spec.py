"""Spec validation: every rule has an invalid spec in tests/specs/ with its exact message."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from venvlayers.cli.commands import main
from venvlayers.core.platforms import Platform
from venvlayers.stack.graph import load_stack

SPECS = Path(__file__).parent / "specs"
CORPUS = sorted(SPECS.glob("*.toml"))


def expected_fragment(spec: Path) -> str:
    first = spec.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), f"{spec} lacks its '# expect:' line"
    return first.removeprefix("# expect: ")


def test_corpus_covers_every_rule() -> None:
    assert len(CORPUS) >= 30


@pytest.mark.parametrize("spec", CORPUS, ids=[p.stem for p in CORPUS])
def test_invalid_spec_gives_one_line_error(spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["show", str(spec)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    error_lines = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1, captured.err
    assert expected_fragment(spec) in error_lines[0]
    assert str(spec) in error_lines[0]  # the message names the file
    assert "Traceback" not in captured.err


def test_error_becomes_annotation_with_spec_line(tmp_path: Path) -> None:
    spec = SPECS / "unknown_platform.toml"
    env = {"GITHUB_ACTIONS": "true", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "venvlayers", "show", str(spec)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 2
    # the platforms line is line 6 of the file (after the expect comment)
    assert f"::error file={spec.as_posix()},line=6::" in result.stdout


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "app.py").write_text("print('hi')\n")
    spec = tmp_path / "venvstacks.toml"
    spec.write_text(text)
    return spec


def test_deprecated_fields_warn_but_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write(
        tmp_path,
        """
[[runtimes]]
name = "rt"
fully_versioned_name = "cpython@3.12.1"
build_requirements = ["x"]
requirements = []
""",
    )
    assert main(["show", "--json", str(spec)]) == 0
    captured = capsys.readouterr()
    assert (
        "field 'fully_versioned_name' is deprecated; rename it to 'python_implementation'"
        in captured.err
    )
    assert "field 'build_requirements' is deprecated and has no effect" in captured.err
    assert json.loads(captured.out)["runtimes"][0]["name"] == "rt"
    assert load_stack(spec)["rt"].python_implementation == "cpython@3.12.1"


def test_platforms_narrow_upwards_and_names(tmp_path: Path) -> None:
    spec = write(
        tmp_path,
        """
[[runtimes]]
name = "cpython-3.12"
python_implementation = "cpython@3.12.1"
requirements = []
platforms = ["linux_x86_64", "win_amd64", "macosx_arm64"]

[[frameworks]]
name = "fw"
runtime = "cpython-3.12"
requirements = ["alpha"]
platforms = ["linux_x86_64", "win_amd64"]
versioned = true
linux_target = "glibc@2.34"

[[applications]]
name = "tool"
frameworks = ["fw"]
launch_module = "app.py"
requirements = []
""",
    )
    graph = load_stack(spec)
    assert graph["framework-fw"].platforms == (Platform.LINUX_X86_64, Platform.WIN_AMD64)
    assert graph["app-tool"].platforms == (Platform.LINUX_X86_64, Platform.WIN_AMD64)
    assert graph["app-tool"].linux_target == (2, 34)  # inherited from below
    assert graph["cpython-3.12"].linux_target == (2, 28)
    assert graph["framework-fw"].spec.versioned
    assert graph["app-tool"].py_version == "3.12.1"


def test_uv_config_inline_wins_over_sibling_file(tmp_path: Path) -> None:
    (tmp_path / "venvstacks.uv.toml").write_text(
        '[[index]]\nname = "sibling"\nurl = "http://x/simple"\n'
    )
    spec = write(
        tmp_path,
        """
[[runtimes]]
name = "rt"
python_implementation = "cpython@3.12.1"
requirements = []
priority_indexes = ["sibling"]
""",
    )
    assert load_stack(spec).spec.uv_config_path == tmp_path / "venvstacks.uv.toml"
    spec.write_text(
        spec.read_text() + '\n[[tool.uv.index]]\nname = "inline"\nurl = "http://y/simple"\n'
    )
    assert main(["show", str(spec)]) == 2  # 'sibling' is no longer configured


def test_index_overrides_accept_intended_conflict(tmp_path: Path) -> None:
    conflict = (SPECS / "inconsistent_indexes.toml").read_text()
    fixed = conflict.replace(
        'frameworks = ["a", "b"]', 'frameworks = ["a", "b"]\nindex_overrides = {cpu = "cuda"}'
    )
    spec = tmp_path / "venvstacks.toml"
    spec.write_text(fixed)
    graph = load_stack(spec)
    assert graph["framework-c"].package_indexes == {"torch": "cuda"}
