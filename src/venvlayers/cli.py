"""Command line: argument parsing only; each subcommand calls one stage function."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from venvlayers import __version__
from venvlayers.errors import VenvlayersError
from venvlayers.fsutil import dumps_json
from venvlayers.gha import Reporter
from venvlayers.graph import load_stack

Handler = Callable[[argparse.Namespace, Reporter], int]


def _add_include(parser: argparse.ArgumentParser) -> None:
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


def cmd_show(args: argparse.Namespace, reporter: Reporter) -> int:
    from venvlayers.show import render_json, render_tree

    graph = load_stack(args.spec)
    selection = graph.select(args.include, allow_missing=args.allow_missing)
    if args.json:
        sys.stdout.write(dumps_json(render_json(graph, selection)))
    else:
        sys.stdout.write(render_tree(graph, selection))
    return 0


def cmd_lock(args: argparse.Namespace, reporter: Reporter) -> int:
    from venvlayers.lock import lock_stack

    graph = load_stack(args.spec)
    result = lock_stack(
        graph,
        include=args.include,
        reset=args.reset_lock,
        check=args.check,
        build_dir=args.build_dir,
        reporter=reporter,
        allow_missing=args.allow_missing,
    )
    if args.check:
        for state in result.stale:
            print(f"{state.layer.name}: stale ({'; '.join(state.stale_reasons)})")
        reporter.set_output("stale", "true" if result.stale else "false")
        if result.stale:
            reporter.info(
                f"{len(result.stale)} stale lock(s); run `venvlayers lock {args.spec}` and commit the result"
            )
            return 1
        reporter.info("all locks are up to date")
        return 0
    changed = result.changed
    reporter.info(
        f"locked {len(result.layers)} layer(s); changed: {', '.join(changed) if changed else 'none'}"
    )
    return 0


def cmd_build(args: argparse.Namespace, reporter: Reporter) -> int:
    from venvlayers.build import build_stack
    from venvlayers.lock import lock_stack, require_fresh_locks

    graph = load_stack(args.spec)
    lock_args = dict(
        include=args.include,
        build_dir=args.build_dir,
        reporter=reporter,
        allow_missing=args.allow_missing,
    )
    if args.locked:
        require_fresh_locks(lock_stack(graph, check=True, **lock_args))
    else:
        lock_stack(graph, **lock_args)
    result = build_stack(
        graph,
        include=args.include,
        build_dir=args.build_dir,
        clean=args.clean,
        reporter=reporter,
        allow_missing=args.allow_missing,
    )
    reporter.info(
        f"built: {', '.join(result.built) or 'none'}; unchanged: {', '.join(result.unchanged) or 'none'}"
        + (f"; not for this platform: {', '.join(result.skipped)}" if result.skipped else "")
    )
    if args.publish:
        return cmd_publish(args, reporter)
    return 0


def cmd_platform(args: argparse.Namespace, reporter: Reporter) -> int:
    from venvlayers.platforms import host_platform

    print(host_platform().value)
    return 0


def _add_publish_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
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


def cmd_publish(args: argparse.Namespace, reporter: Reporter) -> int:
    raise NotImplementedError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="venvlayers",
        description="Layered Python environment stacks: lock, build, publish and deploy each layer on its own.",
    )
    parser.add_argument("--version", action="version", version=f"venvlayers {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors and results")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    show = commands.add_parser("show", help="show the layers of a stack and their sys.path order")
    _add_include(show)
    show.add_argument("--json", action="store_true", help="emit a JSON document instead of a tree")
    show.add_argument("spec", type=Path, help="the stack spec (venvstacks.toml)")
    show.set_defaults(handler=cmd_show)

    lock = commands.add_parser(
        "lock", help="lock every layer's requirements (one cross-platform pylock.toml each)"
    )
    _add_include(lock)
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
    lock.set_defaults(handler=cmd_lock)

    build = commands.add_parser(
        "build", help="build the layer environments for this platform (locking first if needed)"
    )
    _add_include(build)
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
    build.add_argument(
        "--publish", action="store_true", help="publish after building (needs --output-dir)"
    )
    _add_publish_options(build, required=False)
    build.add_argument("spec", type=Path)
    build.set_defaults(handler=cmd_build)

    plat = commands.add_parser("platform", help="print this machine's platform tag")
    plat.set_defaults(handler=cmd_platform)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    reporter = Reporter.from_env(quiet=args.quiet)
    handler: Handler = args.handler
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code = handler(args, reporter)
        except VenvlayersError as exc:
            _flush_warnings(caught, reporter)
            reporter.error(exc)
            return exc.exit_code
        except KeyboardInterrupt:
            reporter.info("interrupted")
            return 130
    _flush_warnings(caught, reporter)
    return code


def _flush_warnings(caught: list[warnings.WarningMessage], reporter: Reporter) -> None:
    for warning in caught:
        reporter.warning(str(warning.message))
