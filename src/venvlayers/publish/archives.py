"""Publishing: one reproducible archive per built layer plus venvstacks-format metadata.

Each built layer is staged as its deployed view (``staging``, shared with export),
archived, and described by its metadata; unchanged archives are reused.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from venvlayers import __version__
from venvlayers.archive.formats import ArchiveFormat, ArchiveInfo, default_format_for
from venvlayers.archive.write import write_archive
from venvlayers.build.layout import BuildFolder, LayerLayout
from venvlayers.core.errors import PublishError
from venvlayers.core.fsutil import sha256_file, sha256_text
from venvlayers.core.platforms import Platform, host_platform
from venvlayers.core.report import Reporter
from venvlayers.core.rmtree import remove_tree_quietly
from venvlayers.formats.assets import layer_index_name
from venvlayers.formats.layout import MetadataSet
from venvlayers.formats.models import (
    ArchiveHashes,
    LayerMetadata,
    LockMetadata,
    PublishInfo,
    PublishStamp,
    read_model,
)
from venvlayers.formats.sbom import sbom_path
from venvlayers.lock.status import lock_paths
from venvlayers.publish.bytecode import compile_staged_layer
from venvlayers.publish.layer_index import write_index
from venvlayers.publish.sbom import IN_LAYER, layer_sbom
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
    layers: Collection[str] | None = None,
    build_dir: Path | None = None,
    tag_outputs: bool = False,
    fmt: ArchiveFormat | None = None,
    reporter: Reporter,
    progress: Callable[[str, int, int], None] | None = None,
    force: bool = False,
    bytecode: bool = False,
) -> PublishResult:
    """Archive every selected layer built for this platform; write the metadata.

    An archive whose inputs did not change since the last publish into the folder is
    kept, unless ``force``. ``bytecode``: compile each layer's bytecode into its archive
    (``publish/bytecode``)."""
    platform = host_platform()
    folder = BuildFolder.of(graph, build_dir)
    selected = [
        layer
        for layer in graph
        if (layers is None or layer.name in layers) and layer.targets(platform)
    ]
    output_dir = output_dir.absolute()
    if output_dir.exists() and not output_dir.is_dir():
        raise PublishError(f"{output_dir}: is not a folder; pass --output-dir a folder")
    check_built(graph, selected, folder.root)
    publisher = _LayerPublisher(
        graph=graph,
        platform=platform,
        fmt=fmt or default_format_for(str(platform)),
        folder=folder,
        output_dir=output_dir,
        meta=MetadataSet.for_output(output_dir, str(platform) if tag_outputs else None),
        reporter=reporter,
        progress=progress,
        force=force,
        bytecode=bytecode,
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    # Compression dominates and each archive already compresses on every core; two layers
    # at a time keep the cores busy between archives without holding 4 sets of compressors
    # (~100 MiB each for xz) in memory.
    with ThreadPoolExecutor(max_workers=max(1, min(len(selected), 2))) as pool:
        published = list(pool.map(publisher.publish, selected))
    if folder.stage.is_dir():  # scratch space emptied layer by layer: not left to tidy
        with contextlib.suppress(OSError):
            folder.stage.rmdir()
    meta = publisher.meta
    write_stack_metadata(
        meta, [(layer, item.metadata) for item, layer in zip(published, selected, strict=True)]
    )
    PublishInfo(
        tool_version=__version__,
        spec_hash="sha256:" + sha256_text(graph.path.read_text(encoding="utf-8")),
        platform=str(platform),
        layers=[layer.name for layer in graph if layer.targets(platform)],
    ).write(meta.publish_info)
    return PublishResult(platform, meta.meta_root, meta.manifest, published)


@dataclass(frozen=True)
class _LayerPublisher:
    """Publishes one layer at a time into one output folder (called from several threads)."""

    graph: StackGraph
    platform: Platform
    fmt: ArchiveFormat
    folder: BuildFolder
    output_dir: Path
    meta: MetadataSet
    reporter: Reporter
    progress: Callable[[str, int, int], None] | None
    force: bool = False
    bytecode: bool = False

    def publish(self, layer: Layer) -> PublishedLayer:
        metadata = layer_metadata(self.graph, layer, self.platform)
        previous = self._previous_metadata(layer.name)
        # one stamp per output folder: publishing elsewhere must not invalidate this one
        stamp_path = self.folder.publish_stamp(layer.name, sha256_text(str(self.output_dir))[:12])
        key = self._publish_key(layer, metadata)
        pylock = lock_paths(self.graph, layer.name).pylock
        sbom = layer_sbom(layer, metadata, self.folder.layer(layer.name), pylock, self.platform)
        reused = None if self.force else _reuse_archive(stamp_path, key, previous, self.output_dir)
        if reused is not None:
            sbom.write(sbom_path(reused.archive))
            self.reporter.info(f"{layer.name}: {reused.archive.name} unchanged")
            return reused
        stage = self.folder.stage / metadata.install_target
        stage_layer(self.graph, layer, self.folder.layer(layer.name), stage, self.platform)
        sbom.write(stage / IN_LAYER)  # a new file: never written through a hard link
        if self.bytecode:
            layout = LayerLayout(self.platform, layer.py_version, layer.implementation)
            runtime = self.folder.layer(layer.runtime)
            compile_staged_layer(stage, metadata.install_target, runtime, layout)
        archive, info = self._archive(layer, metadata, stage, previous)
        # the staged copy goes while the index is written (a runtime's ~1,000 links: on a
        # busy disk a tenth of a second waiting for the journal); gone before we return
        removing = threading.Thread(target=remove_tree_quietly, args=(stage,), daemon=True)
        removing.start()
        try:
            sbom.write(sbom_path(archive))
            metadata.archive_name = archive.name
            metadata.target_platform = str(self.platform)
            metadata.archive_size = info.size
            metadata.archive_hashes = ArchiveHashes(sha256=info.sha256)
            metadata.venvlayers_index = write_index(archive, metadata.install_target, info)
            PublishStamp(key=key, archive=archive.name, mtime_ns=archive.stat().st_mtime_ns).write(
                stamp_path
            )
        finally:
            removing.join()
        self.reporter.info(f"{layer.name}: {archive.name} ({info.size / 1e6:.1f} MB)")
        return PublishedLayer(metadata, archive)

    def _archive(
        self, layer: Layer, metadata: LayerMetadata, stage: Path, previous: LayerMetadata | None
    ) -> tuple[Path, ArchiveInfo]:
        """Archive ``stage`` under a scratch name, then rename it to its published name
        (which takes the build number: ``metadata.archive_build`` is set here)."""
        suffix = fmt_suffix(self.fmt)
        scratch = self.output_dir / f".{metadata.install_target}.partial{suffix}"
        progress = self.progress
        info = write_archive(
            stage,
            scratch,
            root_name=metadata.install_target,
            fmt=self.fmt,
            mtime=archive_mtime(read_lock_metadata(self.graph, layer.name)),
            progress=(lambda done, total: progress(layer.name, done, total)) if progress else None,
            x86_code=self.platform.is_x86_64,
        )
        build_number = _archive_build(previous, metadata, info.sha256)
        if self.meta.tagged:
            build_number = _unused_build(
                self.output_dir, metadata, self.platform, self.fmt, build_number, info.sha256
            )
            base = f"{metadata.install_target}-{self.platform}-{build_number}"
        else:
            base = metadata.install_target  # venvstacks' untagged name: replaced in place
        archive = self.output_dir / f"{base}{suffix}"
        os.replace(scratch, archive)
        metadata.archive_build = build_number
        return archive, info

    def _previous_metadata(self, layer_name: str) -> LayerMetadata | None:
        """What the last publish into this folder (by venvstacks or venvlayers) wrote."""
        candidate = self.meta.env_metadata(layer_name)
        return read_model(LayerMetadata, candidate, PublishError) if candidate.is_file() else None

    def _publish_key(self, layer: Layer, metadata: LayerMetadata) -> str:
        """Everything an archive's bytes and name depend on: the build, metadata and options."""
        build_stamp = self.folder.build_stamp(layer.name)
        inputs = {
            "build": build_stamp.read_text(encoding="utf-8") if build_stamp.exists() else "",
            "metadata": metadata.dump(),
            "format": str(self.fmt),
            "layout": "units-1",  # members unit by unit, with a layer index (archive/units)
            "tag_outputs": self.meta.tagged,
            "epoch": os.environ.get("SOURCE_DATE_EPOCH", ""),
        }
        if self.bytecode:  # absent otherwise: stamps of earlier publishes stay valid
            inputs["bytecode"] = "unchecked-hash"
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
            and (
                previous.venvlayers_index is None
                or (output_dir / layer_index_name(previous.archive_name)).is_file()
            )
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
