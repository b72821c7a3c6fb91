"""The command line's grammar: every command, option and help text (``commands`` runs them)."""

from __future__ import annotations

import argparse
from pathlib import Path

from venvlayers import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="venvlayers",
        description="Layered Python environment stacks: lock, build, publish and deploy each layer on its own.",
    )
    parser.add_argument("--version", action="version", version=f"venvlayers {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors and results")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    show = commands.add_parser("show", help="show the layers of a stack and their sys.path order")
    add_include(show)
    show.add_argument("--json", action="store_true", help="emit a JSON document instead of a tree")
    show.add_argument("spec", type=Path, help="the stack spec (venvstacks.toml)")

    lock = commands.add_parser(
        "lock", help="lock every layer's requirements (one cross-platform pylock.toml each)"
    )
    add_include(lock)
    lock.add_argument(
        "--reset-lock",
        action="append",
        default=[],
        metavar="PATTERN",
        help="relock matching layers from scratch (forget previous pins); repeatable",
    )
    lock.add_argument(
        "--check",
        action="store_true",
        help="change nothing; exit 1 and list the layers whose locks are stale",
    )
    lock.add_argument(
        "--build-dir",
        type=Path,
        default=None,
        help="working folder (default: _build beside the spec)",
    )
    lock.add_argument("spec", type=Path)

    build = commands.add_parser(
        "build", help="build the layer environments for this platform (locking first if needed)"
    )
    add_include(build)
    build.add_argument(
        "--build-dir",
        type=Path,
        default=None,
        help="build folder (default: _build beside the spec)",
    )
    build.add_argument(
        "--clean", action="store_true", help="rebuild every selected layer from scratch"
    )
    build.add_argument(
        "--locked",
        action="store_true",
        help="fail (exit 1) instead of locking when a lock is stale",
    )
    checks = build.add_mutually_exclusive_group()
    checks.add_argument(
        "--no-check",
        action="store_true",
        help="skip the check after building each layer",
    )
    checks.add_argument(
        "--check-imports",
        action="store_true",
        help="import every shipped package after building (slower: runs their import-time code)",
    )
    build.add_argument(
        "--publish", action="store_true", help="publish after building (needs --output-dir)"
    )
    add_publish_options(build, required=False)
    build.add_argument("spec", type=Path)

    publish = commands.add_parser(
        "publish", help="archive the built layers of this platform, with venvstacks metadata"
    )
    add_include(publish)
    publish.add_argument("--build-dir", type=Path, default=None)
    add_publish_options(publish, required=True)
    publish.add_argument(
        "--json",
        action="store_true",
        help="print the platform, metadata folder and archives as JSON",
    )
    publish.add_argument("spec", type=Path)

    export = commands.add_parser(
        "local-export", help="copy the built layers as they would be deployed, relinked in place"
    )
    add_include(export)
    export.add_argument("--build-dir", type=Path, default=None)
    export.add_argument("--output-dir", type=Path, required=True)
    export.add_argument("spec", type=Path)

    deploy = commands.add_parser(
        "deploy",
        help="install published layers from a folder, URL or GitHub release (and run an app)",
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
    add(
        "--deadline",
        type=positive_seconds,
        default=3600,
        metavar="SECONDS",
        help="downloads (3600)",
    )
    add("--run", metavar="APP", help="after deploying, run this app with the arguments after --")
    add("layers", nargs="*", metavar="APP|LAYER", help="what to deploy, with what it needs (all)")

    release = commands.add_parser(
        "release",
        help="draft a GitHub release, upload what deployers need, check digests, publish (idempotent)",
    )
    release.add_argument(
        "--tag", required=True, help="release tag, e.g. v1.2.0 (created if missing)"
    )
    release.add_argument("--repo", default=None, help="owner/name (default: GITHUB_REPOSITORY)")
    release.add_argument("--name", default=None, help="release title (default: the tag)")
    rel = release.add_argument
    rel("--draft", action="store_true", help="upload and check, but leave it a draft")
    rel("--prerelease", action="store_true", help="mark it as a prerelease")
    rel("--make-latest", choices=["true", "false", "legacy"], default="true", help="(true)")
    rel("--notes-file", type=Path, metavar="FILE", help="notes (default: changes since last)")
    rel("--spec", type=Path, help="the stack spec, for lock-diff notes against the last release")
    release.add_argument(
        "--replace", action="store_true", help="replace same-name assets whose content differs"
    )
    release.add_argument(
        "--deadline",
        type=positive_seconds,
        default=600,
        metavar="SECONDS",
        help="give up after this long in all, retries and stalled transfers included (default 600)",
    )
    release.add_argument("--json", action="store_true")
    release.add_argument("out", type=Path, help="the merge output folder")

    merge = commands.add_parser(
        "merge", help="merge per-platform publish outputs into one index; check consistency"
    )
    merge.add_argument(
        "inputs", nargs="+", type=Path, metavar="DIR", help="publish outputs (downloaded artifacts)"
    )
    merge.add_argument("--output-dir", type=Path, required=True)
    merge.add_argument(
        "--report", type=Path, default=None, help="also write the markdown report here"
    )
    merge.add_argument(
        "--expect-platform",
        action="append",
        default=[],
        metavar="PLATFORM",
        help="a platform that must be present (repeatable or comma-separated)",
    )

    diff = commands.add_parser(
        "lock-diff", help="what a change does to the locks, per layer, as markdown"
    )
    diff.add_argument(
        "--base", required=True, help="git ref (e.g. origin/main) or a folder with the older spec"
    )
    diff.add_argument(
        "--report", type=Path, default=None, help="also write the markdown report here"
    )
    diff.add_argument("--json", action="store_true")
    diff.add_argument("spec", type=Path)

    mirror = commands.add_parser(
        "runtime-mirror",
        help="list python-build-standalone archives as a uv downloads JSON (air-gapped builds)",
    )
    mirror.add_argument(
        "archives", nargs="+", type=Path, metavar="ARCHIVE", help="install_only archives"
    )
    mirror.add_argument("--output", type=Path, required=True, help="the downloads JSON to write")
    mirror.add_argument(
        "--base-url", default=None, help="where clients fetch the archives (default: file:// paths)"
    )

    commands.add_parser("platform", help="print this machine's platform tag")
    return parser


def add_include(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="PATTERN",
        help="only layers matching this fnmatch pattern (plus what they depend on and what depends on them); repeatable",
    )
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="an --include pattern matching nothing is not an error",
    )


def add_publish_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "--output-dir", type=Path, required=required, help="where archives and metadata go"
    )
    parser.add_argument(
        "--tag-outputs",
        action="store_true",
        help="name archives <install_target>-<platform>-<archive_build> (as venvstacks does)",
    )
    parser.add_argument(
        "--format",
        choices=["tar.xz", "tar.zst", "zip"],
        default=None,
        help="archive format (default: zip on Windows, tar.xz elsewhere)",
    )


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    return value
