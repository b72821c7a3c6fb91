"""A venvstacks 0.8.0 user's command lines, unchanged, with venvlayers.

Every option of venvstacks' ``show``, ``lock``, ``build``, ``publish`` and ``local-export``
(65, ``--no-X`` spellings included) is tried on one real stack, locked and built once for
the module, side by side with venvstacks 0.8.0 itself: what each option selects
(``--show-only`` and ``--json`` print the plan) and what the comparable outputs say
(``show``, ``publish --dry-run``, ``local-export --dry-run``) are compared character for
character. What an option *does* is tested here too, with venvlayers alone where the
reference would only repeat it (``tests/test_compat_local_wheels.py``: local wheels and
offline builds, both tools).
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from rig.cli import Run, make_stack
from rig.index import SimpleIndex
from rig.peer import Peer
from rig.runtime import RuntimeMirror

from venvlayers.cli.args import build_parser
from venvlayers.cli.commands import main

pytestmark = pytest.mark.network

WIDTH = "200"  # the console width both tools render the tree in


def ours(*args: str | Path) -> Run:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return Run(code, out.getvalue(), err.getvalue())


@dataclass
class Built:
    spec: Path
    runtimes: dict[str, Path]


@pytest.fixture(scope="module")
def built(
    tmp_path_factory: pytest.TempPathFactory,
    runtime_mirror_session: RuntimeMirror,
    local_index: SimpleIndex,
) -> Iterator[Built]:
    """The layered test stack (a versioned app, a framework chain and a side branch),
    locked and built once by venvlayers."""
    root = tmp_path_factory.mktemp("compat-cli")
    spec = make_stack(root / "stack", local_index.url)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in runtime_mirror_session.env.items():
            mp.setenv(key, value)
        for name in ("GITHUB_ACTIONS", "GITHUB_OUTPUT", "UV_EXCLUDE_NEWER", "SOURCE_DATE_EPOCH"):
            mp.delenv(name, raising=False)
        mp.setenv("COLUMNS", WIDTH)
        run = ours("-q", "build", "--lock-if-needed", spec)
        assert run.code == 0, run.text
        yield Built(spec, dict(runtime_mirror_session.archives))


# -- what each option selects, side by side ----------------------------------------------

#: (command, options): each is run with venvstacks and venvlayers; options ending the plan
#: early (--show-only, --json without --show, --dry-run) keep both from changing anything.
PLAN_CASES: list[tuple[str, tuple[str, ...]]] = [
    # show: --build-dir, --include, --allow-missing, --json (and its --no- form)
    ("show", ()),
    ("show", ("--build-dir", "elsewhere")),
    ("show", ("--include", "framework-upper")),
    ("show", ("--include", "app-*", "--include", "nothing*", "--allow-missing")),
    ("show", ("--json",)),
    ("show", ("--no-json", "--no-allow-missing")),
    # lock: 12 options
    ("lock", ("--show-only",)),
    ("lock", ("--json",)),
    ("lock", ("--show", "--show-only")),
    ("lock", ("--show-only", "--no-show", "--no-json")),
    ("lock", ("--if-needed", "--show-only")),
    ("lock", ("--no-if-needed", "--show-only")),
    ("lock", ("--build-dir", "elsewhere", "--clean", "--no-clean", "--show-only")),
    ("lock", ("--no-index", "--local-wheels", "launch", "--show-only")),
    ("lock", ("--index", "--show-only")),
    ("lock", ("--include", "framework-upper", "--show-only")),
    ("lock", ("--include", "framework-upper", "--lock-dependencies", "--show-only")),
    ("lock", ("--include", "framework-base", "--no-lock-dependencies", "--json")),
    ("lock", ("--reset-lock", "framework-*", "--show-only")),
    ("lock", ("--include", "app-two", "--reset-lock", "app-*", "--show-only")),
    ("lock", ("--include", "app-*", "--include", "zzz", "--allow-missing", "--show-only")),
    ("lock", ("--if-needed", "--include", "framework-side", "--show-only")),
    # build: 22 options
    ("build", ("--show-only",)),
    ("build", ("--json",)),
    ("build", ("--lock-if-needed", "--show-only")),
    ("build", ("--lock", "--show-only")),
    ("build", ("--no-lock", "--no-lock-if-needed", "--show-only")),
    ("build", ("--no-build", "--show-only")),
    ("build", ("--build", "--publish", "--tag-outputs", "--show-only")),
    ("build", ("--no-publish", "--no-tag-outputs", "--clean", "--no-clean", "--show-only")),
    ("build", ("--build-dir", "b", "--output-dir", "o", "--show-only")),
    ("build", ("--index", "--no-index", "--local-wheels", "launch", "--show-only")),
    ("build", ("--include", "app-one", "--show-only")),
    ("build", ("--include", "framework-upper", "--show-only")),
    ("build", ("--include", "framework-upper", "--build-derived", "--show-only")),
    ("build", ("--include", "framework-upper", "--publish-derived", "--show-only")),
    ("build", ("--include", "framework-upper", "--build-derived", "--publish-derived", "--json")),
    ("build", ("--include", "app-one", "--build-dependencies", "--show-only")),
    ("build", ("--include", "app-one", "--publish-dependencies", "--show-only")),
    (
        "build",
        ("--include", "app-one", "--build-dependencies", "--publish-dependencies", "--show-only"),
    ),
    ("build", ("--include", "app-one", "--lock-dependencies", "--show-only")),
    ("build", ("--include", "app-one", "--lock-if-needed", "--lock-dependencies", "--show-only")),
    ("build", ("--include", "app-one", "--include-dependencies", "--show-only")),
    ("build", ("--include", "app-one", "--include-dependencies", "--lock", "--show-only")),
    (
        "build",
        (
            "--include",
            "app-one",
            "--no-include-dependencies",
            "--build-dependencies",
            "--show-only",
        ),
    ),
    (
        "build",
        ("--include", "framework-*", "--build-derived", "--build-dependencies", "--show-only"),
    ),
    ("build", ("--include", "app-*", "--include", "zzz", "--allow-missing", "--show-only")),
    ("build", ("--reset-lock", "app-one", "--lock-if-needed", "--show-only")),
    ("build", ("--include", "app-two", "--reset-lock", "*", "--lock", "--show-only")),
    (
        "build",
        ("--no-build-derived", "--no-publish-derived", "--no-build-dependencies", "--show-only"),
    ),
    # publish: 12 options
    ("publish", ("--show-only",)),
    ("publish", ("--json",)),
    ("publish", ("--show", "--show-only", "--force", "--no-force")),
    ("publish", ("--include", "framework-upper", "--show-only")),
    ("publish", ("--include", "framework-upper", "--publish-dependencies", "--show-only")),
    ("publish", ("--include", "framework-upper", "--publish-derived", "--show-only")),
    ("publish", ("--include", "app-*", "--include", "zzz", "--allow-missing", "--json")),
    ("publish", ("--dry-run",)),
    ("publish", ("--dry-run", "--tag-outputs")),
    ("publish", ("--dry-run", "--no-tag-outputs", "--output-dir", "../out dir")),
    ("publish", ("--dry-run", "--build-dir", "_build", "--include", "app-one")),
    ("publish", ("--dry-run", "--include", "app-one", "--publish-dependencies")),
    (
        "publish",
        (
            "--no-dry-run",
            "--no-show",
            "--no-publish-derived",
            "--no-publish-dependencies",
            "--show-only",
        ),
    ),
    # local-export: 11 options
    ("local-export", ("--show-only",)),
    ("local-export", ("--json",)),
    ("local-export", ("--show", "--show-only", "--force", "--no-force")),
    ("local-export", ("--include", "app-two", "--publish-dependencies", "--show-only")),
    ("local-export", ("--include", "framework-base", "--publish-derived", "--show-only")),
    ("local-export", ("--include", "app-*", "--include", "zzz", "--allow-missing", "--json")),
    ("local-export", ("--dry-run",)),
    ("local-export", ("--dry-run", "--output-dir", "elsewhere", "--build-dir", "_build")),
    ("local-export", ("--dry-run", "--include", "framework-upper", "--publish-derived")),
]


def _case_id(case: tuple[str, tuple[str, ...]]) -> str:
    return " ".join((case[0], *case[1])) or case[0]


@pytest.fixture(scope="module")
def reference(peer: Peer, built: Built) -> dict[str, dict[str, object]]:
    """venvstacks' answers to every case, in one process."""
    calls = [[command, *options, str(built.spec)] for command, options in PLAN_CASES]
    results = peer.run_many(
        calls, cwd=built.spec.parent, runtimes=built.runtimes, env={"COLUMNS": WIDTH}
    )
    return {_case_id(case): result for case, result in zip(PLAN_CASES, results, strict=True)}


@pytest.mark.parametrize("case", PLAN_CASES, ids=_case_id)
def test_same_plan_and_output_as_venvstacks(
    case: tuple[str, tuple[str, ...]],
    built: Built,
    reference: dict[str, dict[str, object]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", WIDTH)
    before = _tree(built.spec.parent)
    theirs = reference[_case_id(case)]
    command, options = case
    run = ours(command, *options, built.spec)
    assert theirs["code"] == 0, theirs
    assert run.code == 0, run.text
    assert run.out == theirs["out"]
    assert run.out.strip(), "the case prints nothing: it would compare nothing"
    assert _tree(built.spec.parent) == before, "a plan-only run changed the stack's folder"


def _tree(folder: Path) -> dict[str, int]:
    return {
        p.relative_to(folder).as_posix(): p.stat().st_mtime_ns
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and ".venvlayers.lock" not in p.name
    }


def test_every_venvstacks_option_is_in_our_help(peer: Peer, built: Built) -> None:
    """Each command's ``--help`` lists every option venvstacks' lists, and each parses."""
    commands = ["show", "lock", "build", "publish", "local-export"]
    helps = peer.run_many(
        [[c, "--help"] for c in commands],
        cwd=built.spec.parent,
        runtimes=built.runtimes,
        env={"COLUMNS": WIDTH},
    )
    parser = build_parser()
    counted = 0
    for command, theirs in zip(commands, helps, strict=True):
        options = set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", str(theirs["out"]))) - {"--help"}
        assert options, theirs
        counted += len({o.replace("--no-", "--", 1) for o in options})
        with contextlib.redirect_stdout(io.StringIO()) as text, pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
        ours_help = text.getvalue()
        for option in sorted(options):
            assert re.search(rf"(?<![\w-]){option}(?![\w-])", ours_help), (command, option)
    # 61 option names; with --no-index, --no-build, --no-include-dependencies and
    # --no-lock as spelled in issue 20's count, 65
    assert counted == 61


@pytest.mark.parametrize(
    "args",
    [
        ["build", "--lock-if", "S"],  # a prefix of --lock-if-needed
        ["build", "--tag", "S"],  # of --tag-outputs
        ["lock", "--show-o", "S"],  # of --show-only
        ["publish", "--dry", "S"],
        ["local-export", "--out", "x", "S"],
        ["merge", "in", "--output-dir", "x", "--rep", "r"],  # venvlayers' own commands too
        ["--vers", "platform"],
    ],
)
def test_abbreviations_are_refused(args: list[str]) -> None:
    with contextlib.redirect_stderr(io.StringIO()) as err, pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(args)
    assert exit_.value.code == 2
    abbreviated = [a for a in args if a.startswith("--")][-1]
    assert f"unrecognized arguments: {abbreviated}" in err.getvalue()


# -- what the options do -----------------------------------------------------------------


@pytest.fixture
def stack(built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the built stack (locks and build folder) this test may change."""
    from rig import copy_source

    copy_source(built.spec.parent, tmp_path / "stack")
    shutil.copytree(built.spec.parent / "_build", tmp_path / "stack" / "_build", symlinks=True)
    monkeypatch.setenv("COLUMNS", WIDTH)
    return tmp_path / "stack" / "venvstacks.toml"


def _edit(spec: Path, old: str, new: str) -> None:
    text = spec.read_text()
    assert old in text
    spec.write_text(text.replace(old, new))


def test_build_uses_the_locks_unless_asked_to_lock(stack: Path) -> None:
    """venvstacks' ``build`` never locks: a stale lock fails (exit 1); ``--lock-if-needed``
    (or its old name ``--lock``) relocks it first."""
    _edit(stack, 'requirements = ["epsilon"]', 'requirements = ["epsilon", "gamma"]')
    stale = ours("build", stack)
    assert stale.code == 1, stale.text
    assert "app-two" in stale.err and "venvlayers lock" in stale.err
    relocked = ours("build", "--lock", "--include", "app-two", stack)
    assert relocked.code == 0, relocked.text
    assert (
        "gamma" in (stack.parent / "requirements" / "app-two" / "packages-app-two.txt").read_text()
    )
    assert "built: app-two;" in relocked.err  # only the included layer (its lower ones: if needed)


def test_lock_relocks_every_layer_unless_if_needed(stack: Path) -> None:
    run = ours("lock", "--if-needed", stack)
    assert run.code == 0 and "changed: none" in run.err
    assert "resolving" not in run.err
    run = ours("lock", "--include", "framework-side", stack)
    assert run.code == 0, run.text
    # the included layer and the one above it are re-resolved (to the same locks)
    assert re.findall(r"^(\S+): resolving", run.err, re.M) == ["framework-side", "app-two"]
    assert "changed: none" in run.err


def test_default_output_folders_are_beside_the_spec(stack: Path, tmp_path: Path) -> None:
    """``--output-dir`` defaults to ``_artifacts`` (publish) and ``_export`` (local-export),
    relative to the spec's folder, wherever the command runs."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with contextlib.chdir(elsewhere):
        assert ours("-q", "publish", "--include", "app-two", stack).code == 0
        run = ours(
            "-q", "local-export", "--include", "app-two", "--output-dir", "../exported", stack
        )
        assert run.code == 0, run.text
    assert (stack.parent / "_artifacts" / "app-two.tar.xz").is_file()
    assert (stack.parent / "_artifacts" / "__venvstacks__" / "venvstacks.json").is_file()
    assert (tmp_path / "exported" / "app-two" / "share" / "venv" / "metadata").is_dir()
    assert not list(elsewhere.iterdir())
    run = ours("-q", "local-export", "--include", "framework-side", stack)
    assert run.code == 0, run.text
    assert (stack.parent / "_export" / "framework-side").is_dir()


def test_publish_force_and_dry_run(stack: Path) -> None:
    out = stack.parent / "out"
    assert ours("-q", "publish", "--output-dir", out, "--include", "app-two", stack).code == 0
    archive = out / "app-two.tar.xz"
    first = archive.stat()
    dry = ours("publish", "--dry-run", "--output-dir", out, "--include", "app-two", stack)
    assert dry.code == 0 and '"archive_build": 1' in dry.out
    assert archive.stat().st_mtime_ns == first.st_mtime_ns
    again = ours("-q", "publish", "--output-dir", out, "--include", "app-two", stack)
    assert again.code == 0 and archive.stat().st_ino == first.st_ino  # kept as it was
    forced = ours("-q", "publish", "--force", "--output-dir", out, "--include", "app-two", stack)
    assert forced.code == 0
    # archived again; reproducible, so the same bytes keep their build number
    assert archive.stat().st_ino != first.st_ino
    assert (
        '"archive_build": 1'
        in (out / "__venvstacks__" / "env_metadata" / "app-two.json").read_text()
    )
    # local-export keeps an unchanged layer unless --force
    export = stack.parent / "exp"
    assert (
        ours("-q", "local-export", "--output-dir", export, "--include", "app-two", stack).code == 0
    )
    marker = export / "app-two" / "marker"
    marker.write_text("left alone")
    assert (
        ours("-q", "local-export", "--output-dir", export, "--include", "app-two", stack).code == 0
    )
    assert marker.exists()
    assert (
        ours(
            "-q", "local-export", "--force", "--output-dir", export, "--include", "app-two", stack
        ).code
        == 0
    )
    assert not marker.exists()
