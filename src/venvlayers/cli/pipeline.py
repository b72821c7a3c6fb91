"""Chaining stages: lock then build (then publish), each stage still a function of its own.

The CLI parses arguments and calls one function here or one stage; stages never call each
other, so the order of a run is written down in one place.

Runs that write hold run locks (``runlock.py``) for the whole run: the stack's build
folder first (``holding_stack``), then an output folder (``holding_output``). Holding a
lock, a run first cleans what killed runs left there (``debris.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
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


@dataclass
class PipelineResult:
    build: BuildResult
    publish: PublishResult | None = None


def build_pipeline(
    graph: StackGraph,
    *,
    include: Sequence[str] = (),
    build_dir: Path | None = None,
    locked: bool = False,
    clean: bool = False,
    reporter: Reporter,
    allow_missing: bool = False,
    publish: PublishRequest | None = None,
    check: CheckLevel = CheckLevel.LOAD,
) -> PipelineResult:
    """Lock (``locked``: only check the locks are fresh), build (``check``: how hard to
    check each layer after building it), then publish if asked."""
    with holding_stack(graph, build_dir, reporter):
        return _build_pipeline(
            graph,
            include=include,
            build_dir=build_dir,
            locked=locked,
            clean=clean,
            reporter=reporter,
            allow_missing=allow_missing,
            publish=publish,
            check=check,
        )


def _build_pipeline(
    graph: StackGraph,
    *,
    include: Sequence[str],
    build_dir: Path | None,
    locked: bool,
    clean: bool,
    reporter: Reporter,
    allow_missing: bool,
    publish: PublishRequest | None,
    check: CheckLevel,
) -> PipelineResult:
    from venvlayers.build.environments import build_stack
    from venvlayers.lock.resolve import lock_stack, require_fresh_locks

    locks = lock_stack(
        graph,
        check=locked,  # --locked: only check that the locks are fresh
        include=include,
        build_dir=build_dir,
        reporter=reporter,
        allow_missing=allow_missing,
    )
    if locked:
        require_fresh_locks(locks)
    built = build_stack(
        graph,
        include=include,
        build_dir=build_dir,
        clean=clean,
        reporter=reporter,
        allow_missing=allow_missing,
        check=check,
    )
    reporter.info(
        f"built: {', '.join(built.built) or 'none'}; unchanged: {', '.join(built.unchanged) or 'none'}"
        + (f"; not for this platform: {', '.join(built.skipped)}" if built.skipped else "")
    )
    result = PipelineResult(built)
    if publish is not None:
        result.publish = publish_pipeline(
            graph,
            publish,
            include=include,
            build_dir=build_dir,
            reporter=reporter,
            allow_missing=allow_missing,
        )
    return result


def publish_pipeline(
    graph: StackGraph,
    request: PublishRequest,
    *,
    include: Sequence[str] = (),
    build_dir: Path | None = None,
    reporter: Reporter,
    allow_missing: bool = False,
) -> PublishResult:
    """Archive what is built for this platform, as ``request`` says."""
    from venvlayers.publish.archives import publish_stack

    with (
        holding_stack(graph, build_dir, reporter),
        holding_output(request.output_dir, reporter),
    ):
        return publish_stack(
            graph,
            request.output_dir,
            include=include,
            build_dir=build_dir,
            tag_outputs=request.tag_outputs,
            fmt=request.fmt,
            reporter=reporter,
            allow_missing=allow_missing,
            progress=request.progress,
        )
