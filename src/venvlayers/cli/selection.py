"""From venvstacks' options to what a command does: paths, package sources, the plan.

venvstacks resolves ``--build-dir``, ``--output-dir`` and ``--local-wheels`` relative to
the spec's folder (``~`` expanded, ``..`` removed without following links); so does
venvlayers. ``--show``, ``--show-only`` and ``--json`` print the plan as venvstacks does.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from venvlayers.core.errors import SpecError
from venvlayers.core.platforms import host_platform
from venvlayers.core.report import Reporter, neutralize
from venvlayers.stack.graph import StackGraph
from venvlayers.stack.layer_uv import IndexOptions
from venvlayers.stack.operations import (
    Choice,
    Plan,
    Widening,
    every_layer,
    included_layers,
    match_layers,
    related_layers,
)


def spec_path(text: str) -> Path:
    """The spec as venvstacks names it: absolute, ``~`` expanded, links kept."""
    return Path(os.path.abspath(os.path.expanduser(text)))


def spec_relative(graph: StackGraph, text: str) -> Path:
    """A folder option as venvstacks reads it: relative to the spec's folder."""
    path = Path(os.path.expanduser(text))
    if not path.is_absolute():
        path = graph.spec.spec_dir / path
    return Path(os.path.normpath(path))


def index_options(graph: StackGraph, args: argparse.Namespace) -> IndexOptions:
    wheels = tuple(spec_relative(graph, folder) for folder in args.local_wheels or ())
    for folder in wheels:
        if not folder.is_dir():
            raise SpecError(
                f"--local-wheels {folder}: no such folder; pass a folder of wheels"
                " (relative to the spec's folder)",
                path=graph.path,
            )
    return IndexOptions(query_index=args.index, local_wheels=wheels)


def _widening(args: argparse.Namespace) -> Widening:
    def flag(name: str) -> bool:
        return bool(getattr(args, name, False))

    lock_deps, build_deps = flag("lock_dependencies"), flag("build_dependencies")
    publish_deps = flag("publish_dependencies")
    both = getattr(args, "include_dependencies", None)
    if both is not None:  # overrides the per-operation options, as in venvstacks
        lock_deps = build_deps = publish_deps = both
    return Widening(
        lock_dependencies=lock_deps,
        build_dependencies=build_deps,
        publish_dependencies=publish_deps,
        build_derived=flag("build_derived"),
        publish_derived=flag("publish_derived"),
    )


def command_plan(
    graph: StackGraph,
    args: argparse.Namespace,
    reporter: Reporter,
    *,
    lock: Choice,
    build: Choice,
    publish: bool,
    widening: Widening | None = None,
) -> Plan:
    """The operations of this command on each layer, from ``--include``, ``--reset-lock``
    and the ``--*-dependencies`` / ``--*-derived`` options (venvstacks' meaning)."""
    platform = host_platform()
    include: list[str] = args.include
    reset_patterns: list[str] = getattr(args, "reset_lock", [])
    if not include and not reset_patterns:
        return every_layer(graph, platform, lock=lock, build=build, publish=publish)
    if include:
        included, unmatched = match_layers(graph, include, allow_missing=args.allow_missing)
        if unmatched:
            reporter.warning(f"--include {', '.join(map(repr, unmatched))} matches no layer")
    else:
        included = {layer.name for layer in graph if layer.platforms}
    reset: set[str] = set()
    if reset_patterns:
        reset, unmatched = match_layers(
            graph, reset_patterns, allow_missing=args.allow_missing, option="--reset-lock"
        )
        if unmatched:
            reporter.warning(f"--reset-lock {', '.join(map(repr, unmatched))} matches no layer")
    if getattr(args, "include_related", False):
        return related_layers(
            graph, platform, included, lock=lock, build=build, publish=publish, reset=reset
        )
    return included_layers(
        graph,
        platform,
        included,
        lock=lock,
        build=build,
        publish=publish,
        widening=widening or _widening(args),
        reset=reset,
    )


def show_plan(graph: StackGraph, args: argparse.Namespace, plan: Plan) -> bool:
    """``--show``/``--show-only``/``--json``: print the plan as venvstacks does. True when
    the command should stop there (``--show-only``, or ``--json`` without ``--show``)."""
    from venvlayers.cli.show import render_json, render_tree, status_document

    if not (args.show or args.show_only or args.json):
        return False
    if not args.quiet:
        document = status_document(graph, plan, report_ops=True, include_deps=False)
        text = render_json(document) if args.json else neutralize(render_tree(document))
        sys.stdout.write(text)
    return bool(args.show_only or (args.json and not args.show))
