"""``venvlayers show``: the stack as a tree (like the reference tool) or as stable JSON."""

from __future__ import annotations

from typing import Any

from venvlayers.graph import Selection, StackGraph
from venvlayers.spec import LayerKind

_SECTIONS = (
    (LayerKind.RUNTIME, "Runtimes", "runtimes"),
    (LayerKind.FRAMEWORK, "Frameworks", "frameworks"),
    (LayerKind.APPLICATION, "Applications", "applications"),
)


def render_tree(graph: StackGraph, selection: Selection) -> str:
    """Runtimes, frameworks, applications; each layer with its dependencies in sys.path order."""
    lines = [str(graph.path)]
    sections = [
        (title, [layer for layer in graph.of_kind(kind) if layer.name in selection])
        for kind, title, _ in _SECTIONS
    ]
    sections = [(title, layers) for title, layers in sections if layers]
    for s_index, (title, layers) in enumerate(sections):
        last_section = s_index == len(sections) - 1
        lines.append(("└── " if last_section else "├── ") + title)
        pad = "    " if last_section else "│   "
        for l_index, layer in enumerate(layers):
            last_layer = l_index == len(layers) - 1
            lines.append(pad + ("└── " if last_layer else "├── ") + _mark(layer.name, selection))
            inner = pad + ("    " if last_layer else "│   ")
            deps = layer.dependencies
            for d_index, dep in enumerate(deps):
                lines.append(
                    inner + ("└── " if d_index == len(deps) - 1 else "├── ") + _mark(dep, selection)
                )
    return "\n".join(lines) + "\n"


def _mark(name: str, selection: Selection) -> str:
    return ("*" if name in selection else "") + name


def render_json(graph: StackGraph, selection: Selection) -> dict[str, Any]:
    document: dict[str, Any] = {"spec": str(graph.path)}
    for kind, _, key in _SECTIONS:
        document[key] = [
            {
                "name": layer.name,
                "spec_name": layer.spec.name,
                "python_implementation": layer.python_implementation,
                "platforms": [str(p) for p in layer.platforms],
                "selected": layer.name in selection.matched,
                "dependencies": list(layer.dependencies),
            }
            for layer in graph.of_kind(kind)
            if layer.name in selection
        ]
    return document
