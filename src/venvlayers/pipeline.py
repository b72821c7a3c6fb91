"""Chaining stages: lock then build (then publish), each stage still a function of its own.

The CLI parses arguments and calls one function here or one stage; stages never call each
other, so the order of a run is written down in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from venvlayers.archive import ArchiveFormat
from venvlayers.build import BuildResult, build_stack
from venvlayers.gha import Reporter
from venvlayers.graph import StackGraph
from venvlayers.lock import lock_stack, require_fresh_locks
from venvlayers.publish import PublishResult, publish_stack


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
    check: bool = True,
) -> PipelineResult:
    """Lock (``locked``: only check the locks are fresh), build (``check``: with the import
    check after each layer), then publish if asked."""
    if locked:
        require_fresh_locks(
            lock_stack(
                graph,
                check=True,
                include=include,
                build_dir=build_dir,
                reporter=reporter,
                allow_missing=allow_missing,
            )
        )
    else:
        lock_stack(
            graph,
            include=include,
            build_dir=build_dir,
            reporter=reporter,
            allow_missing=allow_missing,
        )
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
