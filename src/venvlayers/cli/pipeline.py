"""Chaining stages: lock then build (then publish), each stage still a function of its own.

The CLI parses arguments and calls one function here or one stage; stages never call each
other, so the order of a run is written down in one place.

Runs that write hold run locks (``runlock.py``) for the whole run: the stack's build
folder first (``holding_stack``), then an output folder (``holding_output``). Holding a
lock, a run first cleans what killed runs left there (``debris.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from venvlayers.build.check import CheckLevel
from venvlayers.core.debris import (
    clean_build_folder,
    clean_output_folder,
    clean_replaced_folder,
    clean_requirements,
)
from venvlayers.core.report import Reporter
from venvlayers.core.runlock import beside, run_lock, run_lock_file
from venvlayers.stack.graph import StackGraph
from venvlayers.stack.layer_uv import DEFAULT_INDEX, IndexOptions
from venvlayers.stack.operations import Plan

if TYPE_CHECKING:
    # imported where used: a command loads only its own stages (each import is startup time)
    from venvlayers.archive.formats import ArchiveFormat
    from venvlayers.build.environments import BuildResult
    from venvlayers.publish.archives import PublishResult


@contextmanager
def holding_stack(graph: StackGraph, build_dir: Path | None, reporter: Reporter) -> Iterator[None]:
    """One run at a time per stack build folder; earlier runs' debris is cleaned first."""
    from venvlayers.build.layout import BuildFolder

    folder = BuildFolder.of(graph, build_dir).root
    with run_lock(folder, what=f"the build folder {folder}", notify=reporter.info):
        clean_build_folder(folder)
        clean_requirements(graph.spec.spec_dir)
        yield


@contextmanager
def holding_output(folder: Path, reporter: Reporter, *, replaced: bool = False) -> Iterator[None]:
    """One run at a time per output folder; earlier runs' debris is cleaned first.

    A folder ``replaced`` as a whole (merge output) is locked through a file beside it."""
    folder = folder.absolute()
    what = f"the output folder {folder}"
    if replaced:
        with run_lock_file(beside(folder), what=what, notify=reporter.info):
            clean_replaced_folder(folder)
            yield
        return
    with run_lock(folder, what=what, notify=reporter.info):
        clean_output_folder(folder)
        yield


@dataclass(frozen=True)
class PublishRequest:
    """Where and how to publish: the options of ``venvlayers publish``."""

    output_dir: Path
    tag_outputs: bool = False
    fmt: ArchiveFormat | None = None
    progress: Callable[[str, int, int], None] | None = None
    force: bool = False
    bytecode: bool = False


@dataclass
class PipelineResult:
    build: BuildResult | None = None
    publish: PublishResult | None = None


def build_pipeline(
    graph: StackGraph,
    plan: Plan,
    *,
    build_dir: Path | None = None,
    clean: bool = False,
    reporter: Reporter,
    publish: PublishRequest | None = None,
    check: CheckLevel = CheckLevel.LOAD,
    index: IndexOptions = DEFAULT_INDEX,
) -> PipelineResult:
    """Lock what ``plan`` locks, check that every layer it builds has a valid lock (else
    exit 1), build (``check``: how hard to check each layer afterwards), then publish what
    it publishes if asked."""
    with holding_stack(graph, build_dir, reporter):
        return _build_pipeline(
            graph,
            plan,
            build_dir=build_dir,
            clean=clean,
            reporter=reporter,
            publish=publish,
            check=check,
            index=index,
        )


def _build_pipeline(
    graph: StackGraph,
    plan: Plan,
    *,
    build_dir: Path | None,
    clean: bool,
    reporter: Reporter,
    publish: PublishRequest | None,
    check: CheckLevel,
    index: IndexOptions,
) -> PipelineResult:
    from venvlayers.build.environments import build_stack
    from venvlayers.lock.resolve import lock_stack, require_fresh_locks

    if plan.to_lock():
        lock_stack(
            graph,
            layers=plan.to_lock(),
            relock=plan.to_relock(),
            reset=plan.to_reset(),
            build_dir=build_dir,
            reporter=reporter,
            index=index,
        )
    result = PipelineResult()
    to_build = plan.to_build()
    if to_build:
        # venvstacks builds only from valid locks: a stale one fails (exit 1)
        require_fresh_locks(
            lock_stack(graph, layers=to_build, check=True, build_dir=build_dir, reporter=reporter)
        )
        built = build_stack(
            graph,
            layers=to_build,
            build_dir=build_dir,
            clean=clean,
            reporter=reporter,
            check=check,
            index=index,
        )
        reporter.info(
            f"built: {', '.join(built.built) or 'none'}; unchanged: {', '.join(built.unchanged) or 'none'}"
            + (f"; not for this platform: {', '.join(built.skipped)}" if built.skipped else "")
        )
        result.build = built
    if publish is not None:
        result.publish = publish_pipeline(
            graph, publish, layers=plan.to_publish(), build_dir=build_dir, reporter=reporter
        )
    return result


def publish_pipeline(
    graph: StackGraph,
    request: PublishRequest,
    *,
    layers: Collection[str] | None = None,
    build_dir: Path | None = None,
    reporter: Reporter,
) -> PublishResult:
    """Archive ``layers`` (default: all) as built for this platform, as ``request`` says."""
    from venvlayers.publish.archives import publish_stack

    with (
        holding_stack(graph, build_dir, reporter),
        holding_output(request.output_dir, reporter),
    ):
        return publish_stack(
            graph,
            request.output_dir,
            layers=layers,
            build_dir=build_dir,
            tag_outputs=request.tag_outputs,
            fmt=request.fmt,
            reporter=reporter,
            progress=request.progress,
            force=request.force,
            bytecode=request.bytecode,
        )
