"""The command line's grammar: every command, option and help text (``commands`` runs them).

``show``, ``lock``, ``build``, ``publish`` and ``local-export`` accept every option of
venvstacks 0.8.0's commands of the same name, with its meaning and default (each boolean
also as ``--no-X``, as venvstacks' command line has it), so a script switches tools by
changing the program name. Options only venvlayers has say so in their help. No parser
accepts an abbreviated option.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from venvlayers import __version__

Commands = Any  # argparse's _SubParsersAction (a private class)
SPEC_RELATIVE = "relative to the spec's folder"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="venvlayers",
        description="Layered Python environment stacks: lock, build, publish and deploy each layer on its own.",
        allow_abbrev=False,
    )
    parser.add_argument("-V", "--version", action="version", version=f"venvlayers {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors and results")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="accepted for venvstacks' scripts (venvlayers' progress lines are always shown)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in (
        _show,
        _lock,
        _build,
        _publish,
        _local_export,
        _deploy,
        _release,
        _merge,
        _lock_diff,
        _runtime_mirror,
        _platform,
    ):
        add_command(commands)
    return parser


def _command(commands: Commands, name: str, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=help_text, description=help_text, allow_abbrev=False
    )
    return parser


def _flag(
    parser: argparse.ArgumentParser, name: str, help_text: str, default: bool = False
) -> None:
    """A venvstacks boolean: ``--name`` and ``--no-name``."""
    parser.add_argument(
        f"--{name}",
        action=argparse.BooleanOptionalAction,
        default=default,
        help=help_text + (f" (default: --{name})" if default else ""),
    )


# -- options several commands share ------------------------------------------------------


def _spec(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="the stack spec (venvstacks.toml)")


def _build_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--build-dir",
        default="_build",
        metavar="DIR",
        help=f"build folder, {SPEC_RELATIVE} (default: _build)",
    )


def _output_dir(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--output-dir",
        default=default,
        metavar="DIR",
        help=f"where archives (or exported layers) and metadata go, {SPEC_RELATIVE} (default: {default})",
    )


def _selection(
    parser: argparse.ArgumentParser,
    *,
    dependencies: tuple[str, ...] = (),
    derived: tuple[str, ...] = (),
    reset_lock: bool = False,
    related: bool = True,
    include_help: str = "only the layers whose name matches this fnmatch pattern (repeatable);"
    " the layers they stand on are locked and built if needed, never published, and the layers"
    " above them are left out, unless the options below say otherwise (default: every layer)",
) -> None:
    parser.add_argument(
        "--include", action="append", default=[], metavar="PATTERN", help=include_help
    )
    if reset_lock:
        parser.add_argument(
            "--reset-lock",
            action="append",
            default=[],
            metavar="PATTERN",
            help="relock the matching layers from scratch, if they are locked at all (repeatable)",
        )
    _flag(parser, "allow-missing", "a pattern matching no layer is a warning, not an error")
    for operation in dependencies:
        _flag(
            parser,
            f"{operation}-dependencies",
            f"also {operation} the layers the included ones stand on",
        )
    if "lock" in dependencies and "build" in dependencies:
        parser.add_argument(
            "--include-dependencies",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="sets every --*-dependencies option at once",
        )
    for operation in derived:
        _flag(
            parser,
            f"{operation}-derived",
            f"also {operation} the layers standing on the included ones",
        )
    if related:
        parser.add_argument(
            "--include-related",
            action="store_true",
            help="venvlayers: every operation on the included layers, every layer above them"
            " and every layer those stand on",
        )


def _show_options(parser: argparse.ArgumentParser) -> None:
    _flag(parser, "show", "print the layers and the operations selected for each, then run")
    _flag(
        parser,
        "show-only",
        "print the layers and the operations selected for each; do nothing else",
    )
    _flag(parser, "json", "print that as JSON (without --show: and do nothing else)")


def _index_options(parser: argparse.ArgumentParser) -> None:
    _flag(
        parser,
        "index",
        "use the package indexes; --no-index: only --local-wheels folders, the spec's find-links"
        " and uv's cache",
        default=True,
    )
    parser.add_argument(
        "--local-wheels",
        action="append",
        default=None,
        metavar="DIR",
        help=f"a folder of wheels to lock and build from, {SPEC_RELATIVE} (repeatable)",
    )


def _archive_options(parser: argparse.ArgumentParser) -> None:
    _flag(
        parser,
        "tag-outputs",
        "name archives <install_target>-<platform>-<archive_build> and tag the metadata files"
        " with the platform",
    )
    parser.add_argument(
        "--format",
        choices=["tar.xz", "tar.zst", "zip"],
        default=None,
        help="venvlayers: archive format (default: zip on Windows, tar.xz elsewhere)",
    )
    parser.add_argument(
        "--bytecode",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="venvlayers: compile each layer's bytecode into its archive (unchecked-hash"
        " pycs, reproducible; larger archives, and deploy compiles nothing) (default:"
        " --no-bytecode: deploy compiles)",
    )


def _publish_behaviour(parser: argparse.ArgumentParser, what: str) -> None:
    _flag(parser, "force", f"{what} even when nothing changed since the last time")
    _flag(parser, "dry-run", f"print what would be {what}ed (as JSON); write nothing")


def _checks(parser: argparse.ArgumentParser) -> None:
    checks = parser.add_mutually_exclusive_group()
    checks.add_argument(
        "--no-check",
        action="store_true",
        help="venvlayers: skip the check after building each layer",
    )
    checks.add_argument(
        "--check-imports",
        action="store_true",
        help="venvlayers: import every shipped package after building (slower: runs their"
        " import-time code)",
    )


# -- venvstacks' commands ----------------------------------------------------------------


def _show(commands: Commands) -> None:
    show = _command(commands, "show", "show the layers of a stack and their sys.path order")
    _spec(show)
    _build_dir(show)
    _selection(
        show,
        related=False,
        include_help="only the layers whose name matches this fnmatch pattern (repeatable),"
        " the layers above them and the layers they stand on (default: every layer)",
    )
    _flag(show, "json", "print a JSON document instead of a tree")


def _lock(commands: Commands) -> None:
    lock = _command(
        commands, "lock", "lock every layer's requirements (one cross-platform pylock.toml each)"
    )
    _spec(lock)
    _build_dir(lock)
    _flag(lock, "clean", "remove the lock work folders first")
    _flag(lock, "if-needed", "relock only the layers whose lock is not valid")
    _index_options(lock)
    _selection(lock, dependencies=("lock",), reset_lock=True)
    _show_options(lock)
    lock.add_argument(
        "--check",
        action="store_true",
        help="venvlayers: change nothing; exit 1 and list the layers whose locks are stale",
    )


def _build(commands: Commands) -> None:
    build = _command(
        commands, "build", "build the layer environments for this platform (lock and publish too)"
    )
    _spec(build)
    _build_dir(build)
    _output_dir(build, "_artifacts")
    _flag(build, "clean", "rebuild (and with --publish, re-archive) every selected layer")
    _flag(build, "lock-if-needed", "first relock the layers whose lock is not valid")
    _flag(build, "lock", "the older name of --lock-if-needed")
    _flag(build, "build", "build the layer environments", default=True)
    _flag(build, "publish", "archive the built layers (else: print what would be published)")
    _index_options(build)
    _archive_options(build)
    _selection(
        build,
        dependencies=("lock", "build", "publish"),
        derived=("build", "publish"),
        reset_lock=True,
    )
    _show_options(build)
    build.add_argument(
        "--locked",
        action="store_true",
        help="venvlayers: exit 1 if any lock is stale (the default without --lock-if-needed;"
        " with it: an error)",
    )
    _checks(build)


def _publish(commands: Commands) -> None:
    publish = _command(
        commands, "publish", "archive the built layers of this platform, with venvstacks metadata"
    )
    _spec(publish)
    _build_dir(publish)
    _output_dir(publish, "_artifacts")
    _publish_behaviour(publish, "publish")
    _archive_options(publish)
    _selection(publish, dependencies=("publish",), derived=("publish",))
    _show_options(publish)


def _local_export(commands: Commands) -> None:
    export = _command(
        commands,
        "local-export",
        "copy the built layers as they would be deployed, relinked in place",
    )
    _spec(export)
    _build_dir(export)
    _output_dir(export, "_export")
    _publish_behaviour(export, "export")
    _selection(export, dependencies=("publish",), derived=("publish",))
    _show_options(export)


# -- venvlayers' own commands ------------------------------------------------------------


def _deploy(commands: Commands) -> None:
    deploy = _command(
        commands,
        "deploy",
        "install published layers from a folder, URL or GitHub release (and run an app)",
    )
    add = deploy.add_argument
    add("--from", dest="source", metavar="SOURCE", help="folder, http(s):// URL or github:O/R@TAG")
    add("--target", type=Path, required=True, help="folder to deploy into")
    add("--cache", type=Path, metavar="DIR", help="download cache (default: user cache folder)")
    add("--rollback", action="store_true", help="make the previous deployment current again")
    add(
        "--no-compile",
        action="store_true",
        help="do not precompile the unpacked layers' bytecode (Python writes it at first "
        "import where the target is writable)",
    )
    _deadline(deploy, 3600, "downloads")
    add("--run", metavar="APP", help="after deploying, run this app with the arguments after --")
    add("layers", nargs="*", metavar="APP|LAYER", help="what to deploy, with what it needs (all)")


def _release(commands: Commands) -> None:
    release = _command(
        commands,
        "release",
        "draft a GitHub release, upload what deployers need, check digests, publish (idempotent)",
    )
    add = release.add_argument
    add("--tag", required=True, help="release tag, e.g. v1.2.0 (created if missing)")
    add("--repo", default=None, help="owner/name (default: GITHUB_REPOSITORY)")
    add("--name", default=None, help="release title (default: the tag)")
    add("--draft", action="store_true", help="upload and check, but leave it a draft")
    add("--prerelease", action="store_true", help="mark it as a prerelease")
    add("--make-latest", choices=["true", "false", "legacy"], default="true", help="(true)")
    add("--notes-file", type=Path, metavar="FILE", help="notes (default: changes since last)")
    add("--spec", type=Path, help="the stack spec, for lock-diff notes against the last release")
    add("--replace", action="store_true", help="replace same-name assets whose content differs")
    _deadline(release, 600, "all of it, retries and stalled transfers included")
    add("--json", action="store_true", help="print the result as JSON")
    add("out", type=Path, help="the merge output folder")


def _merge(commands: Commands) -> None:
    merge = _command(
        commands, "merge", "merge per-platform publish outputs into one index; check consistency"
    )
    add = merge.add_argument
    add(
        "inputs", nargs="+", type=Path, metavar="DIR", help="publish outputs (downloaded artifacts)"
    )
    add(
        "--output-dir", type=Path, required=True, metavar="DIR", help="where the merged output goes"
    )
    add("--report", type=Path, default=None, help="also write the markdown report here")
    add(
        "--expect-platform",
        action="append",
        default=[],
        metavar="PLATFORM",
        help="a platform that must be present (repeatable or comma-separated)",
    )


def _lock_diff(commands: Commands) -> None:
    diff = _command(
        commands, "lock-diff", "what a change does to the locks, per layer, as markdown"
    )
    add = diff.add_argument
    add("--base", required=True, help="git ref (e.g. origin/main) or a folder with the older spec")
    add("--report", type=Path, default=None, help="also write the markdown report here")
    add(
        "--pr-comment",
        type=int,
        default=None,
        metavar="N",
        help="also show the report in one comment on pull request N, edited on each run "
        "(GITHUB_TOKEN with pull-requests: write; GITHUB_API_URL)",
    )
    add("--repo", default=None, help="owner/name for --pr-comment (default: GITHUB_REPOSITORY)")
    add("--json", action="store_true", help="print the result as JSON")
    add("spec", type=Path, help="the stack spec (venvstacks.toml)")


def _runtime_mirror(commands: Commands) -> None:
    mirror = _command(
        commands,
        "runtime-mirror",
        "list python-build-standalone archives as a uv downloads JSON (air-gapped builds)",
    )
    add = mirror.add_argument
    add("archives", nargs="+", type=Path, metavar="ARCHIVE", help="install_only archives")
    add("--output", type=Path, required=True, help="the downloads JSON to write")
    add(
        "--base-url", default=None, help="where clients fetch the archives (default: file:// paths)"
    )


def _platform(commands: Commands) -> None:
    _command(commands, "platform", "print this machine's platform tag")


def _deadline(parser: argparse.ArgumentParser, default: int, what: str) -> None:
    parser.add_argument(
        "--deadline",
        type=positive_seconds,
        default=default,
        metavar="SECONDS",
        help=f"give up after this long: {what} (default {default})",
    )


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    return value
