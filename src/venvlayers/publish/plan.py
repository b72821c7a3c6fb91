"""What a publish or local export would write, without writing it (``--dry-run``).

venvstacks 0.8.0's publishing request: per layer category, each layer's metadata as it
would be published, with the archive build number and name it would get. The number
follows venvstacks' rule: it stays when the metadata and archive of the last publish into
the folder are unchanged, and moves on otherwise (restarting with a new lock version).
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

from venvlayers.archive.formats import ArchiveFormat, default_format_for
from venvlayers.core.errors import PublishError
from venvlayers.core.platforms import Platform, host_platform
from venvlayers.formats.layout import MetadataSet
from venvlayers.formats.models import LayerMetadata, read_model
from venvlayers.publish.staging import LAYER_CATEGORY, layer_metadata
from venvlayers.stack.graph import StackGraph

#: The fields venvstacks compares with the last publish to decide on a new archive build.
_BUILD_INPUTS = (
    "archive_build",
    "archive_name",
    "install_target",
    "layer_name",
    "lock_version",
    "locked_at",
    "requirements_hash",
    "target_platform",
)


def _empty() -> dict[str, list[dict[str, Any]]]:
    return {category: [] for category in LAYER_CATEGORY.values()}


def publish_request(
    graph: StackGraph,
    output_dir: Path,
    *,
    layers: Collection[str] | None = None,
    tag_outputs: bool = False,
    fmt: ArchiveFormat | None = None,
) -> dict[str, Any]:
    """venvstacks' ``StackPublishingRequest`` for a publish into ``output_dir``."""
    platform = host_platform()
    suffix = "." + str(fmt or default_format_for(str(platform)))
    meta = MetadataSet.for_output(output_dir, str(platform) if tag_outputs else None)
    document = _empty()
    for layer in graph:
        if (layers is not None and layer.name not in layers) or not layer.targets(platform):
            continue
        metadata = layer_metadata(graph, layer, platform)
        previous = _previous(meta.env_metadata(layer.name))
        build = 0
        if previous is not None and previous.lock_version == metadata.lock_version:
            build = previous.archive_build or 0
        metadata.archive_build = build
        metadata.archive_name = _archive_name(metadata, platform, tag_outputs, build, suffix)
        metadata.target_platform = str(platform)
        fields = metadata.dump()
        if _needs_archive(output_dir, fields, previous):
            metadata.archive_build = build + 1
            metadata.archive_name = _archive_name(
                metadata, platform, tag_outputs, build + 1, suffix
            )
        document[LAYER_CATEGORY[layer.kind]].append(metadata.dump())
    return {"layers": document}


def export_request(
    graph: StackGraph, output_dir: Path, *, layers: Collection[str] | None = None
) -> dict[str, Any]:
    """venvstacks' ``StackExportRequest`` for a local export into ``output_dir``."""
    platform = host_platform()
    document = _empty()
    for layer in graph:
        if (layers is not None and layer.name not in layers) or not layer.targets(platform):
            continue
        metadata = layer_metadata(graph, layer, platform)
        document[LAYER_CATEGORY[layer.kind]].append(metadata.dump())
    return {"layers": document}


def export_unchanged(output_dir: Path, metadata: LayerMetadata) -> bool:
    """venvstacks' rule for skipping an export: the folder is there and the metadata of
    the last export into it says the same."""
    previous = _previous(MetadataSet.for_output(output_dir, None).env_metadata(metadata.layer_name))
    return (
        previous is not None
        and (output_dir / metadata.install_target).is_dir()
        and previous.dump() == metadata.dump()
    )


def _archive_name(
    metadata: LayerMetadata, platform: Platform, tagged: bool, build: int, suffix: str
) -> str:
    base = metadata.install_target
    return f"{base}-{platform}-{build}{suffix}" if tagged else f"{base}{suffix}"


def _previous(path: Path) -> LayerMetadata | None:
    return read_model(LayerMetadata, path, PublishError) if path.is_file() else None


def _needs_archive(
    output_dir: Path, fields: dict[str, Any], previous: LayerMetadata | None
) -> bool:
    if previous is None or not (output_dir / str(fields["archive_name"])).exists():
        return True
    last = previous.dump()
    return any(fields.get(key) != last.get(key) for key in _BUILD_INPUTS)
