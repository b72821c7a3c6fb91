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
from venvlayers.stack.graph import load_stack

if TYPE_CHECKING:
    from venvlayers.build.check import CheckLevel
    from venvlayers.cli.pipeline import PublishRequest
    from venvlayers.publish.archives import PublishResult


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
    from venvlayers.cli.show import render_json, render_tree, status_document

    graph = load_stack(args.spec)
    selection = graph.select(args.include, allow_missing=args.allow_missing)
    document = status_document(graph, sorted(selection.matched) if args.include else None)
    # venvstacks' own text, not dumps_json (which keeps non-ASCII characters as they are)
    sys.stdout.write(render_json(document) if args.json else neutralize(render_tree(document)))
    return Outcome(0, document)


def cmd_lock(args: argparse.Namespace, reporter: Reporter) -> Outcome:
    from venvlayers.cli.pipeline import holding_stack
    from venvlayers.lock.resolve import lock_stack

    graph = load_stack(args.spec)
    if args.check:  # changes nothing: no lock needed
        result = lock_stack(
            graph,
            include=args.include,
            check=True,
            build_dir=args.build_dir,
            reporter=reporter,
            allow_missing=args.allow_missing,
        )
    else:
        with holding_stack(graph, args.build_dir, reporter):
            result = lock_stack(
                graph,
                include=args.include,
                reset=args.reset_lock,
                build_dir=args.build_dir,
                reporter=reporter,
                allow_missing=args.allow_missing,
            )
    if args.check:
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
    changed = result.changed
    reporter.info(
        f"locked {len(result.layers)} layer(s); changed: {', '.join(changed) if changed else 'none'}"
    )
    return Outcome(0)


def cmd_build(args: argparse.Namespace, reporter: Reporter) -> Outcome:
    from venvlayers.cli.pipeline import build_pipeline

    publish = _publish_request(args) if args.publish else None
    result = build_pipeline(
        load_stack(args.spec),
        include=args.include,
        build_dir=args.build_dir,
        locked=args.locked,
        clean=args.clean,
        reporter=reporter,
        allow_missing=args.allow_missing,
        publish=publish,
        check=_check_level(args),
    )
    if result.publish is not None:
        return _published(args, reporter, result.publish)
    return Outcome(0)


def _check_level(args: argparse.Namespace) -> CheckLevel:
    from venvlayers.build.check import CheckLevel

    if args.no_check:
        return CheckLevel.NONE
    return CheckLevel.IMPORT if args.check_imports else CheckLevel.LOAD


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
    from venvlayers.lock.diff import lock_diff

    report = lock_diff(args.spec, args.base, reporter=reporter)
    markdown = report.to_markdown()
    if args.report:
        write_text_atomic(args.report, markdown)
        reporter.set_output("report", str(args.report))
    reporter.summary(markdown)
    reporter.set_output("stale", "true" if report.stale else "false")
    code = 1 if report.stale else 0
    if args.json:
        return _finish(args, report.to_json(), code)
    sys.stdout.write(neutralize(markdown))
    return Outcome(code)


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


def _publish_request(args: argparse.Namespace) -> PublishRequest:
    from venvlayers.archive.formats import ArchiveFormat
    from venvlayers.cli.pipeline import PublishRequest

    if args.output_dir is None:
        raise VenvlayersError("publishing needs --output-dir DIR")
    return PublishRequest(
        output_dir=args.output_dir,
        tag_outputs=args.tag_outputs,
        fmt=ArchiveFormat(args.format) if args.format else None,
        progress=_progress_printer() if sys.stderr.isatty() and not args.quiet else None,
    )


def cmd_publish(args: argparse.Namespace, reporter: Reporter) -> Outcome:
    from venvlayers.cli.pipeline import publish_pipeline

    result = publish_pipeline(
        load_stack(args.spec),
        _publish_request(args),
        include=args.include,
        build_dir=args.build_dir,
        reporter=reporter,
        allow_missing=args.allow_missing,
    )
    return _published(args, reporter, result)


def _published(args: argparse.Namespace, reporter: Reporter, result: PublishResult) -> Outcome:
    archives = [str(path) for path in result.archives]
    reporter.set_output("platform", str(result.platform))
    reporter.set_output("metadata-dir", str(result.metadata_dir))
    reporter.set_output("archives", json.dumps(archives))
    if not getattr(args, "json", False):
        reporter.info(
            f"published {len(archives)} archive(s) for {result.platform} to {args.output_dir}"
        )
    document = {
        "platform": str(result.platform),
        "metadata_dir": str(result.metadata_dir),
        "manifest": str(result.manifest),
        "archives": archives,
    }
    return _finish(args, document)


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
    from venvlayers.publish.export import export_stack

    graph = load_stack(args.spec)
    with (
        holding_stack(graph, args.build_dir, reporter),
        holding_output(args.output_dir, reporter),
    ):
        result = export_stack(
            graph,
            args.output_dir,
            include=args.include,
            build_dir=args.build_dir,
            reporter=reporter,
            allow_missing=args.allow_missing,
        )
    reporter.info(f"exported {len(result.layers)} layer(s) to {args.output_dir}")
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
