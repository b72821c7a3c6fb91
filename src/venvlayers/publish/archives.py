"""Publishing: one reproducible archive per built layer plus venvstacks-format metadata.

Each built layer is staged as its deployed view (``staging.py``, shared with export),
archived, and described by its metadata; unchanged archives are reused.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from venvlayers import __version__
from venvlayers.archive import ArchiveFormat, default_format_for, write_archive
from venvlayers.build.environments import (
    STAMP_DIR,
    BuildResult,
    build_dir_for,
)
from venvlayers.core.errors import PublishError
from venvlayers.core.fsutil import sha256_file, sha256_text
from venvlayers.core.platforms import Platform, host_platform
from venvlayers.core.report import Reporter
from venvlayers.formats.layout import MetadataSet
from venvlayers.formats.models import (
    ArchiveHashes,
    LayerMetadata,
    LockMetadata,
    PublishInfo,
    PublishStamp,
    read_model,
)
from venvlayers.lock.resolve import lock_paths
from venvlayers.publish.sbom import IN_LAYER, layer_sbom, sbom_path
from venvlayers.publish.staging import (
    check_built,
    layer_metadata,
    read_lock_metadata,
    stage_layer,
    write_stack_metadata,
)
from venvlayers.stack.graph import Layer, StackGraph


@dataclass
class PublishedLayer:
    metadata: LayerMetadata
    archive: Path


@dataclass
class PublishResult:
    platform: Platform
    metadata_dir: Path
    """The ``__venvstacks__`` folder."""
    manifest: Path
    layers: list[PublishedLayer]

    @property
    def archives(self) -> list[Path]:
        return [layer.archive for layer in self.layers]


def archive_mtime(lock: LockMetadata) -> int:
    """Archive member mtimes: SOURCE_DATE_EPOCH if set, else the lock time."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        return int(epoch)
    try:
        return int(datetime.fromisoformat(lock.locked_at.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


def publish_stack(
    graph: StackGraph,
    output_dir: Path,
    *,
    include: Sequence[str] = (),
    build_dir: Path | None = None,
    tag_outputs: bool = False,
    fmt: ArchiveFormat | None = None,
    reporter: Reporter,
    allow_missing: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> PublishResult:
    """Archive every selected layer built for this platform; write the metadata."""
    platform = host_platform()
    fmt = fmt or default_format_for(str(platform))
    root = build_dir_for(graph, build_dir)
    selection = graph.select(include, allow_missing=allow_missing)
    layers = [layer for layer in graph if layer.name in selection and layer.targets(platform)]
    output_dir = output_dir.absolute()
    if output_dir.exists() and not output_dir.is_dir():
        raise PublishError(f"{output_dir}: is not a folder; pass --output-dir a folder")
    meta = MetadataSet.for_output(output_dir, str(platform) if tag_outputs else None)
    legacy = MetadataSet.legacy(output_dir, str(platform))
    check_built(graph, layers, root)
    output_dir.mkdir(parents=True, exist_ok=True)
    stage_root = root / "_stage"

    def publish_one(layer: Layer) -> PublishedLayer:
        metadata = layer_metadata(graph, layer, platform)
        previous = _previous_metadata(layer.name, meta, legacy)
        # one stamp per output folder: publishing elsewhere must not invalidate this one
        folder_key = sha256_text(str(output_dir))[:12]
        stamp_path = root / STAMP_DIR / f"{layer.name}.publish-{folder_key}.json"
        key = _publish_key(root, layer, metadata, fmt, tag_outputs)
        pylock = lock_paths(graph, layer.name).pylock
        sbom = layer_sbom(layer, metadata, root / layer.name, pylock, platform)
        reused = _reuse_archive(stamp_path, key, previous, output_dir)
        if reused is not None:
            sbom.write(sbom_path(reused.archive))
            reporter.info(f"{layer.name}: {reused.archive.name} unchanged")
            return reused
        stage = stage_root / metadata.install_target
        stage_layer(graph, layer, root / layer.name, stage, platform)
        sbom.write(stage / IN_LAYER)  # a new file: never written through a hard link
        scratch = output_dir / f".{metadata.install_target}.partial{fmt_suffix(fmt)}"
        lock = read_lock_metadata(graph, layer.name)
        info = write_archive(
            stage,
            scratch,
            root_name=metadata.install_target,
            fmt=fmt,
            mtime=archive_mtime(lock),
            progress=(lambda done, total: progress(layer.name, done, total)) if progress else None,
            x86_code=platform.is_x86_64,
        )
        build_number = _archive_build(previous, metadata, info.sha256)
        if tag_outputs:
            build_number = _unused_build(
                output_dir, metadata, platform, fmt, build_number, info.sha256
            )
            base = f"{metadata.install_target}-{platform}-{build_number}"
        else:
            base = metadata.install_target  # venvstacks' untagged name: replaced in place
        archive = output_dir / f"{base}{fmt_suffix(fmt)}"
        os.replace(scratch, archive)
        sbom.write(sbom_path(archive))
        shutil.rmtree(stage, ignore_errors=True)
        metadata.archive_build = build_number
        metadata.archive_name = archive.name
        metadata.target_platform = str(platform)
        metadata.archive_size = info.size
        metadata.archive_hashes = ArchiveHashes(sha256=info.sha256)
        PublishStamp(key=key, archive=archive.name, mtime_ns=archive.stat().st_mtime_ns).write(
            stamp_path
        )
        reporter.info(f"{layer.name}: {archive.name} ({info.size / 1e6:.1f} MB)")
        return PublishedLayer(metadata, archive)

    # Compression dominates and each archive already compresses on every core; two layers
    # at a time keep the cores busy between archives without holding 4 sets of compressors
    # (~100 MiB each for xz) in memory.
    with ThreadPoolExecutor(max_workers=max(1, min(len(layers), 2))) as pool:
        published = list(pool.map(publish_one, layers))

    write_stack_metadata(
        meta, [(layer, item.metadata) for item, layer in zip(published, layers, strict=True)]
    )
    PublishInfo(
        tool_version=__version__,
        spec_hash="sha256:" + sha256_text(graph.path.read_text(encoding="utf-8")),
        platform=str(platform),
        layers=[layer.name for layer in graph if layer.targets(platform)],
    ).write(meta.publish_info)
    if legacy.manifest.is_file():
        # An earlier venvlayers' per-platform metadata: now stale (its archives may have been
        # replaced above), and merge would read it as a second output for this platform.
        shutil.rmtree(legacy.folder)
        reporter.info(f"removed {legacy.folder} (the metadata layout of earlier venvlayers)")
    return PublishResult(platform, meta.meta_root, meta.manifest, published)


def _previous_metadata(
    layer_name: str, meta: MetadataSet, legacy: MetadataSet
) -> LayerMetadata | None:
    """What the last publish into this folder (by venvstacks or venvlayers) wrote."""
    for candidate in (meta.env_metadata(layer_name), legacy.env_metadata(layer_name)):
        if candidate.is_file():
            return read_model(LayerMetadata, candidate, PublishError)
    return None


def _publish_key(
    root: Path, layer: Layer, metadata: LayerMetadata, fmt: ArchiveFormat, tag_outputs: bool
) -> str:
    """Everything an archive's bytes and name depend on: the build, metadata and options."""
    build_stamp = root / STAMP_DIR / f"{layer.name}.json"
    inputs = {
        "build": build_stamp.read_text(encoding="utf-8") if build_stamp.exists() else "",
        "metadata": metadata.dump(),
        "format": str(fmt),
        "tag_outputs": tag_outputs,
        "epoch": os.environ.get("SOURCE_DATE_EPOCH", ""),
    }
    return sha256_text(json.dumps(inputs, sort_keys=True))


def _reuse_archive(
    stamp_path: Path, key: str, previous: LayerMetadata | None, output_dir: Path
) -> PublishedLayer | None:
    """The archive of the last publish, when nothing it depends on changed (no-op publish)."""
    if previous is None or previous.archive_name is None or not stamp_path.exists():
        return None
    try:
        stamp = PublishStamp.model_validate_json(stamp_path.read_bytes())
        archive = output_dir / previous.archive_name
        unchanged = (
            stamp.key == key
            and stamp.archive == previous.archive_name
            and archive.stat().st_mtime_ns == stamp.mtime_ns
            and archive.stat().st_size == previous.archive_size
        )
    except (OSError, ValueError):
        return None
    return PublishedLayer(previous, archive) if unchanged else None


def fmt_suffix(fmt: ArchiveFormat) -> str:
    return "." + str(fmt)


def _archive_build(previous: LayerMetadata | None, current: LayerMetadata, sha256: str) -> int:
    """Continue from the previous metadata (whichever tool wrote it): same lock and same
    bytes keep the build number, other bytes take the next one; a new lock version (and
    so, for versioned layers, a new install target) restarts at 1, as venvstacks does."""
    if previous is None or previous.lock_version != current.lock_version:
        return 1
    last = previous.archive_build or 0
    same_bytes = previous.archive_hashes is not None and previous.archive_hashes.sha256 == sha256
    if same_bytes and last:
        return last
    return last + 1


def _unused_build(
    output_dir: Path,
    metadata: LayerMetadata,
    platform: Platform,
    fmt: ArchiveFormat,
    build: int,
    sha256: str,
) -> int:
    """The first build number from ``build`` on whose tagged name holds no other bytes:
    a published name is never reused for different contents (an archive left without
    metadata, by an interrupted run or another tool, keeps its name)."""
    while True:
        name = f"{metadata.install_target}-{platform}-{build}{fmt_suffix(fmt)}"
        existing = output_dir / name
        if not existing.exists() or sha256_file(existing) == sha256:
            return build
        build += 1


def check_archive(path: Path, metadata: LayerMetadata) -> None:
    size = path.stat().st_size
    if metadata.archive_size is not None and size != metadata.archive_size:
        raise PublishError(f"{path}: size {size} does not match metadata {metadata.archive_size}")
    if metadata.archive_hashes and sha256_file(path) != metadata.archive_hashes.sha256:
        raise PublishError(f"{path}: sha256 does not match its metadata")


__all__ = ["BuildResult", "PublishResult", "publish_stack", "stage_layer"]
