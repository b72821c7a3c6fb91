"""Command line: argument parsing only; each subcommand calls one stage function."""

from __future__ import annotations

import argparse
import json
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from venvlayers.cli.args import build_parser
from venvlayers.core.errors import VenvlayersError, environment_error
from venvlayers.core.fsutil import dumps_json
from venvlayers.core.report import OUTPUT_LOCK, Reporter, neutralize, write_line

# Each command imports what it uses when it runs: `deploy` (and `platform`) never load the
# spec, lock, build or publish code, nor pydantic (tests/test_structure.py)
if TYPE_CHECKING:
    from venvlayers.archive.formats import ArchiveFormat
    from venvlayers.build.check import CheckLevel
    from venvlayers.cli.pipeline import PublishRequest
    from venvlayers.publish.archives import PublishResult
    from venvlayers.stack.graph import StackGraph


@dataclass
class Outcome:
    """What a command produced: its exit code and, for commands with ``--json``, the document
    (given back whether or not ``--json`` printed it, for callers in process)."""

    code: int
    document: Any = None


Handler = Callable[[argparse.Namespace, Reporter], Outcome]


def _finish(args: argparse.Namespace, document: Any, code: int = 0) -> Outcome:
    """Print ``document`` on stdout when ``--json`` asked for it; hand it back either way."""
    if getattr(args, "json", False):
        sys.stdout.write(dumps_json(document))
    return Outcome(code, document)


def cmd_show(args: argparse.Namespace, reporter: Reporter) -> Outcome:
    from venvlayers.cli.selection import command_plan, spec_path
    from venvlayers.cli.show import render_json, render_tree, status_document
    from venvlayers.stack.graph import load_stack
    from venvlayers.stack.operations import Widening

    graph = load_stack(spec_path(args.spec))
    plan = None
    if args.include:  # venvstacks shows what `lock --lock-dependencies` would touch
        plan = command_plan(
            graph,
            args,
            reporter,
            lock=True,
            build=False,
            publish=False,
            widening=Widening(lock_dependencies=True),
        )
    document = status_document(graph, plan)
    # venvstacks' own text, not dumps_json (which keeps non-ASCII characters as they are)
    sys.stdout.write(render_json(document) if args.json else neutralize(render_tree(document)))
    return Outcome(0, document)


def cmd_lock(args: argparse.Namespace, reporter: Reporter) -> Outcome:
    from venvlayers.cli.pipeline import holding_stack
    from venvlayers.cli.selection import (
        command_plan,
        index_options,
        show_plan,
        spec_path,
        spec_relative,
    )
    from venvlayers.lock.resolve import lock_stack
    from venvlayers.stack.graph import load_stack

    graph = load_stack(spec_path(args.spec))
    build_dir = spec_relative(graph, args.build_dir)
    plan = command_plan(
        graph, args, reporter, lock=None if args.if_needed else True, build=False, publish=False
    )
    if args.check:  # changes nothing: no run lock needed
        result = lock_stack(
            graph, layers=plan.to_lock(), check=True, build_dir=build_dir, reporter=reporter
        )
        for state in result.stale:
            print(neutralize(f"{state.layer.name}: stale ({'; '.join(state.stale_reasons)})"))
        reporter.set_output("stale", "true" if result.stale else "false")
        if result.stale:
            reporter.info(
                f"{len(result.stale)} stale lock(s); run `venvlayers lock {args.spec}` and commit the result"
            )
            return Outcome(1)
        reporter.info("all locks are up to date")
        return Outcome(0)
    if show_plan(graph, args, plan):
        return Outcome(0)
    with holding_stack(graph, build_dir, reporter):
        result = lock_stack(
            graph,
            layers=plan.to_lock(),
            relock=plan.to_relock(),
            reset=plan.to_reset(),
            build_dir=build_dir,
            reporter=reporter,
            index=index_options(graph, args),
            clean=args.clean,
        )
    changed = result.changed
    reporter.info(
        f"locked {len(result.layers)} layer(s); changed: {', '.join(changed) if changed else 'none'}"
    )
    return Outcome(0)


def cmd_build(args: argparse.Namespace, reporter: Reporter) -> Outcome:
    from venvlayers.cli.pipeline import build_pipeline
    from venvlayers.cli.selection import (
        command_plan,
        index_options,
        show_plan,
        spec_path,
        spec_relative,
    )
    from venvlayers.stack.graph import load_stack

    lock = None if args.lock_if_needed or args.lock else False
    if args.locked and lock is None:
        raise VenvlayersError(
            "--locked (fail on a stale lock) and --lock-if-needed (relock it) contradict; pass one"
        )
    graph = load_stack(spec_path(args.spec))
    plan = command_plan(graph, args, reporter, lock=lock, build=args.build, publish=True)
    if show_plan(graph, args, plan):
        return Outcome(0)
    publish = _publish_request(args, graph) if args.publish else None
    result = build_pipeline(
        graph,
        plan,
        build_dir=spec_relative(graph, args.build_dir),
        clean=args.clean,
        reporter=reporter,
        publish=publish,
        check=_check_level(args),
        index=index_options(graph, args),
    )
    if result.publish is not None:
        return _published(args, reporter, result.publish)
    # venvstacks' build without --publish reports what a publish would do
    return _dry_run(args, graph, plan.to_publish())


def _check_level(args: argparse.Namespace) -> CheckLevel:
    from venvlayers.build.check import CheckLevel

    if args.no_check:
        return CheckLevel.NONE
    return CheckLevel.IMPORT if args.check_imports else CheckLevel.LOAD


def _dry_run(
    args: argparse.Namespace, graph: StackGraph, layers: list[str], *, export: bool = False
) -> Outcome:
    """venvstacks' report of what a publish (or export) would write, word for word."""
    from venvlayers.cli.selection import spec_relative
    from venvlayers.cli.show import render_json
    from venvlayers.publish.plan import export_request, publish_request

    output_dir = spec_relative(graph, args.output_dir)
    if export:
        document = export_request(graph, output_dir, layers=layers)
        lines = [
            "Environment export skipped, reporting local export request details:",
            render_json(document).rstrip("\n"),
            f"Environments will be exported to {output_dir}",
            "Environment export skipped (specify --publish to request local export)",
        ]
    else:
        document = publish_request(
            graph, output_dir, layers=layers, tag_outputs=args.tag_outputs, fmt=_format(args)
        )
        lines = [
            "Archive creation skipped, reporting publishing request details:",
            render_json(document).rstrip("\n"),
            f"Archives and metadata will be published to {output_dir}",
            "Archive creation skipped (specify --publish to request archive build)",
        ]
    if not args.quiet:
        sys.stdout.write(neutralize("\n".join(lines) + "\n"))
    return Outcome(0, document)


def cmd_release(args: argparse.Namespace, reporter: Reporter) -> Outcome:
    from venvlayers.release.create import ReleaseOptions, release_directory

    body = None
    if args.notes_file is not None:
        try:
            body = args.notes_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise VenvlayersError(
                f"{args.notes_file}: cannot read the release notes ({exc})"
            ) from None
    result = release_directory(
        args.out,
        tag=args.tag,
        repo=args.repo,
        replace=args.replace,
        options=ReleaseOptions(
            name=args.name,
            body=body,
            draft=args.draft,
            prerelease=args.prerelease,
            make_latest=args.make_latest,
        ),
        spec=args.spec,
        reporter=reporter,
        deadline_seconds=args.deadline,
    )
    reporter.set_output("release-url", result.html_url)
    document = {"url": result.html_url, **result.model_dump(exclude={"html_url"})}
    if not args.json:
        print(neutralize(result.html_url))
    reporter.info(
        f"uploaded {len(result.uploaded)}, already present {len(result.skipped)}, replaced {len(result.replaced)}"
    )
    return _finish(args, document)


def cmd_merge(args: argparse.Namespace, reporter: Reporter) -> Outcome:
    from venvlayers.cli.pipeline import holding_output
    from venvlayers.release.merge import merge_publish_outputs

    expected = [p for value in args.expect_platform for p in value.replace(",", " ").split()]
    with holding_output(args.output_dir, reporter, replaced=True):
        report = merge_publish_outputs(
            list(args.inputs),
            args.output_dir,
            reporter=reporter,
            expected_platforms=expected or None,
            report_path=args.report,
        )
    reporter.set_output("metadata-dir", str(args.output_dir))
    if args.report:
        reporter.set_output("report", str(args.report))
    reporter.info(
        f"merged {len(report.layers)} layer(s) for {', '.join(report.platforms)} into {args.output_dir}"
    )
    return Outcome(0)


def cmd_lock_diff(args: argparse.Namespace, reporter: Reporter) -> Outcome:
    from venvlayers.core.fsutil import write_text_atomic
    from venvlayers.lock.diff import failure_markdown, lock_diff

    comment = _pr_commenter(args, reporter)
    try:
        report = lock_diff(args.spec, args.base, reporter=reporter)
    except VenvlayersError as exc:
        if comment is not None:  # the comment must not keep an earlier push's verdict
            comment(failure_markdown(args.spec, args.base, exc.message))
        raise
    markdown = report.to_markdown()
    if args.report:
        write_text_atomic(args.report, markdown)
        reporter.set_output("report", str(args.report))
    reporter.summary(markdown)
    if comment is not None:
        comment(markdown)
    reporter.set_output("stale", "true" if report.stale else "false")
    code = 1 if report.stale else 0
    if args.json:
        return _finish(args, report.to_json(), code)
    sys.stdout.write(neutralize(markdown))
    return Outcome(code)


def _pr_commenter(args: argparse.Namespace, reporter: Reporter) -> Callable[[str], None] | None:
    """``--pr-comment N``: checked now (exit 2); posting later only warns when GitHub refuses
    (a fork's read-only token): the report is in the job summary either way."""
    if args.pr_comment is None:
        return None
    import os

    from venvlayers.net.github import api_url_from
    from venvlayers.net.pr_comment import CommentError, check_target, upsert_comment
    from venvlayers.net.retry import Budget

    number, token = args.pr_comment, os.environ.get("GITHUB_TOKEN", "")
    repo, api_url = args.repo or os.environ.get("GITHUB_REPOSITORY", ""), api_url_from()
    check_target(repo, number, token, api_url)

    def post(markdown: str) -> None:
        try:
            done = upsert_comment(
                repo=repo,
                number=number,
                markdown=markdown,
                token=token,
                api_url=api_url,
                reporter=reporter,
                budget=Budget(120),
            )
        except CommentError as exc:
            reporter.warning(f"pull request #{number}: no comment ({exc.message})")
            return
        done_what = "posted" if done.created else "updated"
        reporter.info(f"pull request #{number}: lock-diff comment {done_what}: {done.url}")

    return post


def cmd_runtime_mirror(args: argparse.Namespace, reporter: Reporter) -> Outcome:
    from venvlayers.build.runtime_mirror import entry_from_archive_name, write_downloads_json

    entries = [entry_from_archive_name(path, base_url=args.base_url) for path in args.archives]
    target = write_downloads_json(entries, args.output)
    reporter.info(
        f"{len(entries)} runtime(s) listed; build with UV_PYTHON_DOWNLOADS_JSON_URL={target.absolute().as_uri()}"
    )
    return Outcome(0)


def cmd_platform(args: argparse.Namespace, reporter: Reporter) -> Outcome:
    from venvlayers.core.platforms import host_platform

    print(host_platform().value)
    return Outcome(0)


def _format(args: argparse.Namespace) -> ArchiveFormat | None:
    from venvlayers.archive.formats import ArchiveFormat

    return ArchiveFormat(args.format) if args.format else None


def _publish_request(args: argparse.Namespace, graph: StackGraph) -> PublishRequest:
    from venvlayers.cli.pipeline import PublishRequest
    from venvlayers.cli.selection import spec_relative

    return PublishRequest(
        output_dir=spec_relative(graph, args.output_dir),
        tag_outputs=args.tag_outputs,
        fmt=_format(args),
        progress=_progress_printer() if sys.stderr.isatty() and not args.quiet else None,
        force=bool(getattr(args, "force", False) or getattr(args, "clean", False)),
        bytecode=bool(getattr(args, "bytecode", False)),
    )


def cmd_publish(args: argparse.Namespace, reporter: Reporter) -> Outcome:
    from venvlayers.cli.pipeline import publish_pipeline
    from venvlayers.cli.selection import command_plan, show_plan, spec_path, spec_relative
    from venvlayers.stack.graph import load_stack

    graph = load_stack(spec_path(args.spec))
    plan = command_plan(graph, args, reporter, lock=False, build=False, publish=True)
    if show_plan(graph, args, plan):
        return Outcome(0)
    if args.dry_run:
        return _dry_run(args, graph, plan.to_publish())
    result = publish_pipeline(
        graph,
        _publish_request(args, graph),
        layers=plan.to_publish(),
        build_dir=spec_relative(graph, args.build_dir),
        reporter=reporter,
    )
    return _published(args, reporter, result)


def _published(args: argparse.Namespace, reporter: Reporter, result: PublishResult) -> Outcome:
    archives = [str(path) for path in result.archives]
    reporter.set_output("platform", str(result.platform))
    reporter.set_output("metadata-dir", str(result.metadata_dir))
    reporter.set_output("archives", json.dumps(archives))
    reporter.info(
        f"published {len(archives)} archive(s) for {result.platform} to {result.metadata_dir.parent}"
    )
    document = {
        "platform": str(result.platform),
        "metadata_dir": str(result.metadata_dir),
        "manifest": str(result.manifest),
        "archives": archives,
    }
    return Outcome(0, document)


def _progress_printer() -> Callable[[str, int, int], None]:
    """Bytes done / total per layer: rewritten in place on a terminal; elsewhere (a CI
    log) one whole line per layer when it is done, so concurrent layers never mix."""
    terminal = sys.stderr.isatty()

    def show(layer: str, done: int, total: int) -> None:
        percent = 100 * done // total if total else 100
        text = f"{layer}: {done / 1e6:8.1f} / {total / 1e6:.1f} MB ({percent}%)"
        if terminal and done < total:
            with OUTPUT_LOCK:
                sys.stderr.write("\r" + text)
                sys.stderr.flush()
        elif done >= total:
            write_line(sys.stderr, ("\r" if terminal else "") + text)

    return show


def cmd_local_export(args: argparse.Namespace, reporter: Reporter) -> Outcome:
    from venvlayers.cli.pipeline import holding_output, holding_stack
    from venvlayers.cli.selection import command_plan, show_plan, spec_path, spec_relative
    from venvlayers.publish.export import export_stack
    from venvlayers.stack.graph import load_stack

    graph = load_stack(spec_path(args.spec))
    plan = command_plan(graph, args, reporter, lock=False, build=False, publish=True)
    if show_plan(graph, args, plan):
        return Outcome(0)
    if args.dry_run:
        return _dry_run(args, graph, plan.to_publish(), export=True)
    build_dir = spec_relative(graph, args.build_dir)
    output_dir = spec_relative(graph, args.output_dir)
    with holding_stack(graph, build_dir, reporter), holding_output(output_dir, reporter):
        result = export_stack(
            graph,
            output_dir,
            layers=plan.to_publish(),
            build_dir=build_dir,
            reporter=reporter,
            force=args.force,
        )
    reporter.info(f"exported {len(result.layers)} layer(s) to {output_dir}")
    return Outcome(0)


def cmd_deploy(args: argparse.Namespace, reporter: Reporter) -> Outcome:
    from venvlayers.deploy.deployment import deploy_stack, rollback, run_app
    from venvlayers.deploy.sources import open_source
    from venvlayers.net.downloads import Downloader, default_cache_dir

    if args.rollback:
        if args.source or args.layers or args.no_compile:
            raise VenvlayersError("deploy --rollback takes only --target (and --run)")
        result = rollback(args.target, reporter=reporter)
    else:
        cache = args.cache or default_cache_dir()
        downloader = Downloader(cache, reporter=reporter, deadline_seconds=args.deadline)
        if not args.source:
            raise VenvlayersError(
                "deploy needs --from SOURCE (a folder, an http(s):// URL or github:OWNER/REPO@TAG)"
            )
        source = open_source(args.source, downloader, reporter)
        result = deploy_stack(
            source,
            args.target,
            args.layers,
            downloader=downloader,
            reporter=reporter,
            compile_bytecode=not args.no_compile,
        )
        reporter.info(result.summary())
    reporter.set_output("deployment", result.deployment or "")
    return Outcome(run_app(result, args.run, args.app_arguments) if args.run else 0)


COMMANDS: dict[str, Handler] = {
    "show": cmd_show,
    "lock": cmd_lock,
    "build": cmd_build,
    "publish": cmd_publish,
    "local-export": cmd_local_export,
    "deploy": cmd_deploy,
    "release": cmd_release,
    "merge": cmd_merge,
    "lock-diff": cmd_lock_diff,
    "runtime-mirror": cmd_runtime_mirror,
    "platform": cmd_platform,
}


def main(argv: Sequence[str] | None = None) -> int:
    return run(argv).code


def run(argv: Sequence[str] | None = None) -> Outcome:
    """Parse ``argv`` and run its command; errors become exit codes, never exceptions."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after "--" belongs to the app run by `deploy --run`
    app_arguments: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, app_arguments = argv[:cut], argv[cut + 1 :]
    args = parser.parse_args(argv)
    args.app_arguments = app_arguments
    reporter = Reporter.from_env(quiet=args.quiet)
    handler = COMMANDS[args.command]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            outcome = handler(args, reporter)
        except VenvlayersError as exc:
            _flush_warnings(caught, reporter)
            reporter.error(exc)
            return Outcome(exc.exit_code)
        except KeyboardInterrupt:
            reporter.info("interrupted")
            return Outcome(130)
        except (OSError, ValueError, RecursionError) as exc:
            # a full disk, a path that is a file, a NUL in a name: the user's or the machine's
            error = environment_error(exc, f"running `venvlayers {args.command}`")
            if error is None:
                return _internal_error()
            _flush_warnings(caught, reporter)
            reporter.error(error)
            return Outcome(error.exit_code)
        except Exception:
            return _internal_error()
    _flush_warnings(caught, reporter)
    return outcome


def _internal_error() -> Outcome:
    """A traceback is a bug in venvlayers: show it, with its own exit status."""
    traceback.print_exc()
    print(
        "error: internal error in venvlayers (a bug); please report it with the traceback above",
        file=sys.stderr,
    )
    return Outcome(3)


def _flush_warnings(caught: list[warnings.WarningMessage], reporter: Reporter) -> None:
    for warning in caught:
        reporter.warning(str(warning.message))
