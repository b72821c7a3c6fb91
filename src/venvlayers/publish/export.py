"""Local export: the published view of each layer, copied (not archived) and relinked in place."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from venvlayers.build.layout import BuildFolder
from venvlayers.core.errors import PublishError
from venvlayers.core.fsutil import replace_dir
from venvlayers.core.platforms import Platform, host_platform
from venvlayers.core.process import run_postinstall
from venvlayers.core.report import Reporter
from venvlayers.formats.layout import MetadataSet
from venvlayers.formats.models import LayerMetadata
from venvlayers.publish.plan import export_unchanged
from venvlayers.publish.staging import (
    check_built,
    layer_metadata,
    stage_layer,
    write_stack_metadata,
)
from venvlayers.stack.graph import Layer, StackGraph


@dataclass
class ExportResult:
    platform: Platform
    metadata_dir: Path
    layers: dict[str, Path]


def export_stack(
    graph: StackGraph,
    output_dir: Path,
    *,
    layers: Collection[str] | None = None,
    build_dir: Path | None = None,
    reporter: Reporter,
    force: bool = False,
) -> ExportResult:
    """Export ``layers`` (default: all) built for this platform; a layer whose last export
    into the folder has the same metadata is kept, unless ``force`` (venvstacks' rule)."""
    platform = host_platform()
    root = BuildFolder.of(graph, build_dir).root
    output_dir = output_dir.absolute()
    selected = [
        layer
        for layer in graph
        if (layers is None or layer.name in layers) and layer.targets(platform)
    ]
    check_built(graph, selected, root)
    exported: dict[str, Path] = {}
    described: list[tuple[Layer, LayerMetadata]] = []
    for layer in selected:  # stack order: lower layers are in place before postinstall above
        metadata = layer_metadata(graph, layer, platform)
        target = output_dir / metadata.install_target
        if not force and export_unchanged(output_dir, metadata):
            described.append((layer, metadata))
            exported[layer.name] = target
            reporter.info(f"{layer.name}: {target} unchanged")
            continue
        staging = output_dir / f".{metadata.install_target}.partial"
        stage_layer(graph, layer, root / layer.name, staging, platform, copy=True)
        replace_dir(staging, target)
        run_postinstall(target, error=PublishError, base_missing_ok=True)
        described.append((layer, metadata))
        exported[layer.name] = target
        reporter.info(f"{layer.name}: exported to {target}")
    # venvstacks' local-export layout: never platform-tagged
    meta = MetadataSet.for_output(output_dir, None)
    write_stack_metadata(meta, described)
    return ExportResult(platform, meta.meta_root, exported)


__all__ = ["ExportResult", "export_stack"]
