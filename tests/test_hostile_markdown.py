"""Hostile names in what we post as markdown (issue 25, cases 12-13): PR comments (lock
diffs), merge reports, release notes and step summaries never render a value as markup.

A value is safe when, outside code spans, it leaves no HTML tag, no ``@mention``, no link
and no extra table cell; the checks below read the markdown the way GitHub's renderer
splits it (code spans by backtick runs, table cells by unescaped ``|``).
"""

from __future__ import annotations

import re

import pytest

from venvlayers.core import markdown as md
from venvlayers.formats.models import IndexArchive, IndexLayer, StackIndex
from venvlayers.lock.diff import ChangeKind, LayerDiff, LockDiffReport, PackageChange
from venvlayers.lock.lockfiles import LockFormatError, read_packages
from venvlayers.release.merge_report import MergeReport, Problem, ProblemKind
from venvlayers.release.notes import layer_table

HOSTILE = [
    "<img src=https://evil.example/x.png>",
    "@octocat",
    "[x](javascript:alert(1))",
    "a|b",
    "tick`tick",
    "``double``",
    "`",
    "line\nbreak",
    "<script>x</script>",
    "*bold* _it_ ~~s~~",
]


def outside_code(line: str) -> str:
    """``line`` with its code spans removed (CommonMark: a run of n backticks up to the
    next run of exactly n)."""
    out, i = [], 0
    while i < len(line):
        if line[i] == "\\" and i + 1 < len(line):
            out.append(line[i : i + 2])
            i += 2
            continue
        if line[i] == "`":
            run = re.match(r"`+", line[i:])
            assert run is not None
            n = len(run.group())
            close = re.compile(rf"(?<!`)`{{{n}}}(?!`)")
            found = close.search(line, i + n)
            if found:
                i = found.end()
                continue
            out.append(run.group())
            i += n
            continue
        out.append(line[i])
        i += 1
    return "".join(out)


def unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def assert_inert(markdown: str) -> None:
    for line in markdown.splitlines():
        bare = outside_code(line)
        bare = re.sub(r"\\.", "", bare)  # backslash escapes are literal characters
        assert "<" not in bare.replace("<https://", ""), line
        assert not re.search(r"(?:^|\W)@\w", bare), line
        assert "](" not in bare, line


def assert_table_rows(markdown: str, columns: int) -> None:
    rows = [line for line in markdown.splitlines() if line.startswith("|")]
    assert rows
    for row in rows:
        assert unescaped_pipes(row) == columns + 1, row


@pytest.mark.parametrize("value", HOSTILE)
def test_code_spans_and_text_keep_every_value_literal(value: str) -> None:
    row = f"| {md.code(value)} | {md.text(value)} |"
    assert "\n" not in row
    assert_inert(row)
    assert_table_rows(row, 2)


# -- case 12: package names in the lock-diff table --------------------------------------


PYLOCK = """
lock-version = "1.0"
created-by = "uv"

[[packages]]
name = {name}
version = "1.0"
"""


@pytest.mark.parametrize("name", [*HOSTILE[:5], "name with space", "-dash", "dot."])
def test_a_lock_naming_a_hostile_package_is_refused_when_read(name: str) -> None:
    text = PYLOCK.format(name=_toml_string(name))
    with pytest.raises(LockFormatError, match="not a valid project name"):
        read_packages(text, "pylock.app.toml")


@pytest.mark.parametrize("name", ["numpy", "typing_extensions", "zope.interface", "A-1", "x"])
def test_project_names_are_read(name: str) -> None:
    [package] = read_packages(PYLOCK.format(name=_toml_string(name)), "pylock.app.toml")
    assert package.name == name


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def test_the_lock_diff_comment_shows_hostile_names_inertly() -> None:
    changes = [PackageChange(name, ChangeKind.UPGRADED, ("1.0",), ("2.0",)) for name in HOSTILE]
    report = LockDiffReport(
        spec_label="venvstacks.toml",
        base="origin/main`@octocat",
        layers=[LayerDiff("app-`<img src=x>`|@octocat", None, None, True, changes)],
        stale_layers={"x|@octocat": ["lock `<b>` changed"]},
    )
    markdown = report.to_markdown()
    assert_inert(markdown)
    assert_table_rows(markdown, 4)


# -- case 13: layer and platform names in release notes and merge reports ----------------


def _index(layer: str, platform: str) -> StackIndex:
    archive = IndexArchive(
        archive_name="a.tar.xz", archive_size=1, sha256="0" * 64, metadata="m.json"
    )
    entry = IndexLayer(
        category="applications",
        install_target=layer,
        lock_version=1,
        requirements_hash="sha256:0",
        locked_at="2026-01-01T00:00:00Z",
        platforms={platform: archive},
    )
    return StackIndex(platforms=[platform], layers={layer: entry})


@pytest.mark.parametrize("value", HOSTILE)
def test_release_notes_show_hostile_layer_and_platform_names_as_code(value: str) -> None:
    index = _index(f"app-{value}", f"linux_{value}")
    markdown = layer_table(index, f"v1{value}", index)
    assert_inert(markdown)
    assert_table_rows(markdown, 3)


@pytest.mark.parametrize("value", HOSTILE)
def test_merge_reports_show_hostile_values_inertly(value: str) -> None:
    report = MergeReport(
        platforms=[f"linux_{value}"],
        layers=[f"app-{value}"],
        problems=[
            Problem(ProblemKind.UNREADABLE, f"bad {value}", layer=value, platform=value),
        ],
    )
    markdown = report.to_markdown()
    assert_inert(markdown)
    assert_table_rows(markdown, 2)
