"""The uv settings one layer is locked and built with: the spec's ``[tool.uv]`` (or
``venvstacks.uv.toml``) adjusted by the layer's ``priority_indexes`` and ``package_indexes``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from venvlayers.core.fsutil import write_text_atomic
from venvlayers.stack.graph import Layer, StackGraph


def exclude_newer(graph: StackGraph) -> str | None:
    value = os.environ.get("UV_EXCLUDE_NEWER") or graph.spec.uv_config.get("exclude-newer")
    return str(value) if value else None


# Settings venvlayers always decides itself; user values for these are ignored.
MANAGED_UV_SETTINGS = {"constraint-dependencies", "no-build", "package", "cache-keys"}


@dataclass(frozen=True)
class IndexOptions:
    """Where packages come from besides the spec's settings: venvstacks' ``--index`` /
    ``--no-index`` and ``--local-wheels DIR`` (absolute folders)."""

    query_index: bool = True
    local_wheels: tuple[Path, ...] = ()


DEFAULT_INDEX = IndexOptions()


def layer_uv_settings(
    graph: StackGraph, layer: Layer, index: IndexOptions = DEFAULT_INDEX
) -> dict[str, Any]:
    """The spec's uv settings adjusted for one layer (priority_indexes, package_indexes) and
    for ``index``: as venvstacks does, ``--no-index`` sets uv's ``no-index`` (the spec's
    indexes are ignored, ``find-links`` folders and uv's cache still serve) and each
    ``--local-wheels`` folder is appended to ``find-links`` as an absolute path (uv records
    it as the package's ``index`` in the lock, as it does for venvstacks)."""
    settings = {k: v for k, v in graph.spec.uv_config.items() if k not in MANAGED_UV_SETTINGS}
    if not index.query_index:
        settings["no-index"] = True
    if index.local_wheels:
        settings["find-links"] = [
            *settings.get("find-links", []),
            *(os.fspath(folder) for folder in index.local_wheels),
        ]
    indexes = [dict(index) for index in settings.get("index", [])]
    if layer.spec.priority_indexes:
        by_name = {index.get("name"): index for index in indexes}
        first = []
        for name in layer.spec.priority_indexes:
            promoted = dict(by_name[name])
            promoted.pop("explicit", None)
            first.append(promoted)
        indexes = first + [i for i in indexes if i.get("name") not in layer.spec.priority_indexes]
    if indexes:
        settings["index"] = indexes
    sources = dict(settings.get("sources", {}))
    for package, index_name in layer.package_indexes.items():
        sources[package] = {"index": index_name}
    if sources:
        settings["sources"] = sources
    return settings


# [tool.uv] keys uv reads as part of the project itself. Every other key is a resolver
# setting, which uv drops under --no-config unless it comes from an explicit --config-file.
PROJECT_UV_KEYS = {
    "sources",
    "override-dependencies",
    "build-constraint-dependencies",
    "dev-dependencies",
    "conflicts",
    "default-groups",
    "workspace",
    "managed",
    "environments",
    "required-environments",
}


def uv_config_text(settings: dict[str, Any]) -> str:
    """The ``uv.toml`` passed with --config-file: the resolver settings of the layer."""
    config = {k: v for k, v in settings.items() if k not in PROJECT_UV_KEYS}
    config["no-build"] = True
    import tomlkit  # only for writing TOML (reading uses tomllib): not on every start

    return tomlkit.dumps(config)


def write_layer_uv_config(
    graph: StackGraph, layer: Layer, path: Path, index: IndexOptions = DEFAULT_INDEX
) -> Path:
    """Write the layer's resolver settings as a uv.toml (for --config-file); returns ``path``."""
    write_text_atomic(path, uv_config_text(layer_uv_settings(graph, layer, index)))
    return path
