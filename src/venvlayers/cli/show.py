"""``venvlayers show``: venvstacks 0.8.0's stack summary, as a tree or as JSON.

Character for character what ``venvstacks show [--json]`` prints: the spec's absolute
path, then runtimes, frameworks and applications (each always listed), each layer with
its lower layers in sys.path order. A layer is ``*name`` when its lock is not valid (as
venvstacks judges it: see ``lock.lock_status``) and ``name -> name@N`` when versioned.
"""

from __future__ import annotations

import json
import os
import unicodedata
from pathlib import Path
from typing import Any

from venvlayers.lock.status import LayerLockStatus, lock_status
from venvlayers.stack.graph import StackGraph
from venvlayers.stack.operations import Plan
from venvlayers.stack.spec import LayerKind

_SECTIONS = (
    (LayerKind.RUNTIME, "Runtimes", "runtimes"),
    (LayerKind.FRAMEWORK, "Frameworks", "frameworks"),
    (LayerKind.APPLICATION, "Applications", "applications"),
)


def spec_name(graph: StackGraph) -> str:
    """The spec's path as venvstacks names it: absolute, normalised, links kept."""
    return str(Path(os.path.abspath(os.path.expanduser(graph.path))))


def status_document(
    graph: StackGraph,
    plan: Plan | None = None,
    *,
    report_ops: bool = False,
    include_deps: bool = True,
) -> dict[str, Any]:
    """venvstacks' stack status: the layers ``plan`` does not exclude (all without a plan),
    with their selected operations (``report_ops``: ``lock --show`` …) or their lower
    layers (``include_deps``: ``show``)."""
    statuses = lock_status(graph)
    shown = set(plan.shown()) if plan is not None else None
    document: dict[str, Any] = {"spec_name": spec_name(graph)}
    for kind, _, key in _SECTIONS:
        entries = []
        for layer in graph.of_kind(kind):
            if not layer.platforms or (shown is not None and layer.name not in shown):
                continue
            ops = plan.layers[layer.name].labels() if plan is not None and report_ops else None
            entry = _entry(statuses[layer.name], ops)
            if kind is not LayerKind.RUNTIME and include_deps:
                entry["dependencies"] = [_entry(statuses[d]) for d in layer.dependencies]
            entries.append(entry)
        document[key] = entries
    return document


def _entry(status: LayerLockStatus, operations: list[str] | None = None) -> dict[str, Any]:
    return {
        "name": status.name,
        "install_target": status.install_target,
        "has_valid_lock": status.valid,
        "selected_operations": operations,
    }


def render_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def _label(entry: dict[str, Any]) -> str:
    mark = "" if entry["has_valid_lock"] else "*"
    name, target = entry["name"], entry["install_target"]
    operations = entry.get("selected_operations")
    suffix = f" ({', '.join(operations)})" if operations else ""
    return mark + (name if name == target else f"{name} -> {target}") + suffix


def console_width() -> int:
    """The width venvstacks' console (rich) renders the tree in: ``COLUMNS`` when set,
    else the first of stdin, stdout and stderr that is a terminal, else 80."""
    width = 0
    for descriptor in (0, 1, 2):
        try:
            width = os.get_terminal_size(descriptor).columns
        except (OSError, ValueError):
            continue
        break
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit():
        width = int(columns)
    return width or 80


def _cells(char: str) -> int:
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def crop(line: str, width: int) -> str:
    """``line`` cut to ``width`` terminal cells (rich crops every tree line so)."""
    used = 0
    for index, char in enumerate(line):
        used += _cells(char)
        if used > width:
            return line[:index]
    return line


def render_tree(document: dict[str, Any], width: int | None = None) -> str:
    """The tree as venvstacks prints it: every line cropped to the console's width."""
    width = width or console_width()
    lines = [document["spec_name"]]
    for s_index, (_, title, key) in enumerate(_SECTIONS):
        last_section = s_index == len(_SECTIONS) - 1
        lines.append(("└── " if last_section else "├── ") + title)
        pad = "    " if last_section else "│   "
        entries = document[key]
        for l_index, entry in enumerate(entries):
            last_layer = l_index == len(entries) - 1
            lines.append(pad + ("└── " if last_layer else "├── ") + _label(entry))
            inner = pad + ("    " if last_layer else "│   ")
            deps = entry.get("dependencies", [])
            for d_index, dep in enumerate(deps):
                lines.append(inner + ("└── " if d_index == len(deps) - 1 else "├── ") + _label(dep))
    return "".join(crop(line, width) + "\n" for line in lines)
