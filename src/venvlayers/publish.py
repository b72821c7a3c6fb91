"""Publishing: one reproducible archive per built layer plus venvstacks-format metadata.

A built layer is first *staged* under its install target name: a hard-linked copy of the
build folder without build-time files (``pyvenv.cfg``, the generated ``sitecustomize.py``,
bytecode caches), with its layer config, python links and wrapper rewritten for the
deployed folder names. ``export.py`` copies the same staged view instead of archiving it.
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

from venvlayers import __version__, postinstall
from venvlayers.archive import ArchiveFormat, default_format_for, write_archive
from venvlayers.build import (
    STAMP_DIR,
    BuildResult,
    LayerLayout,
    build_dir_for,
    install_python_wrapper,
    layer_config,
)
from venvlayers.errors import PublishError
from venvlayers.fsutil import sha256_file, sha256_text, write_json_atomic
from venvlayers.gha import Reporter
from venvlayers.graph import Layer, StackGraph
from venvlayers.lock import lock_paths, module_hash
from venvlayers.models import (
    ArchiveHashes,
    LayerMetadata,
    LockMetadata,
    PublishInfo,
    StackManifest,
    SupportModule,
    read_model,
)
from venvlayers.platforms import Platform, host_platform
from venvlayers.spec import LayerKind, module_name

METADATA_DIR = "__venvstacks__"
PUBLISH_INFO_NAME = "venvlayers-publish.json"
_CATEGORY = {
    LayerKind.RUNTIME: "runtimes",
    LayerKind.FRAMEWORK: "frameworks",
    LayerKind.APPLICATION: "applications",
}


def install_target(graph: StackGraph, layer_name: str) -> str:
    """``name`` or, for ``versioned = true`` layers, ``name@lock_version``."""
    layer = graph[layer_name]
    if not layer.spec.versioned:
        return layer.name
    return f"{layer.name}@{read_lock_metadata(graph, layer_name).lock_version}"


def read_lock_metadata(graph: StackGraph, layer_name: str) -> LockMetadata:
    meta = lock_paths(graph, layer_name).meta
    if not meta.exists():
        raise PublishError(
            f"{graph.path}: layer {layer_name} has no lock; run `venvlayers lock`", path=graph.path
        )
    return read_model(LockMetadata, meta, PublishError)


def layer_metadata(graph: StackGraph, layer: Layer, platform: Platform) -> LayerMetadata:
    """The venvstacks published/exported metadata for ``layer`` (archive fields unset)."""
    lock = read_lock_metadata(graph, layer.name)
    runtime = graph[layer.runtime]
    fields: dict[str, object] = {
        "layer_name": layer.name,
        "install_target": install_target(graph, layer.name),
        "requirements_hash": lock.requirements_hash,
        "lock_version": lock.lock_version,
        "locked_at": lock.locked_at,
        "runtime_layer": install_target(graph, runtime.name),
        "python_implementation": runtime.python_implementation,
        # Windows venvs copy the base interpreter, so they follow runtime maintenance releases
        "bound_to_implementation": layer.kind is LayerKind.RUNTIME or platform.is_windows,
    }
    if layer.kind is not LayerKind.RUNTIME:
        fields["required_layers"] = [install_target(graph, fw) for fw in layer.frameworks]
    spec = layer.spec
    if spec.launch_module:
        base = graph.spec.spec_dir
        fields["app_launch_module"] = module_name(spec.launch_module)
        fields["app_launch_module_hash"] = module_hash(base / spec.launch_module)
        if spec.support_modules:
            fields["app_support_modules"] = [
                SupportModule(name=module_name(m), hash=module_hash(base / m))
                for m in spec.support_modules
            ]
    return LayerMetadata.model_validate(fields)


def _is_build_only(relative: Path, layer: Layer, layout: LayerLayout) -> bool:
    """Files that only make sense in the build folder (postinstall recreates them)."""
    if "__pycache__" in relative.parts or relative.suffix == ".pyc":
        return True
    if layer.kind is LayerKind.RUNTIME:
        return False
    return relative.as_posix() in ("pyvenv.cfg", f"{layout.site_dir()}/sitecustomize.py")


def stage_layer(
    graph: StackGraph,
    layer: Layer,
    build_path: Path,
    stage_path: Path,
    platform: Platform,
    *,
    copy: bool = False,
) -> None:
    """A deployable view of a built layer at ``stage_path`` (hard links unless ``copy``)."""
    layout = LayerLayout(platform, layer.py_version)
    if stage_path.exists() or stage_path.is_symlink():
        shutil.rmtree(stage_path)

    def ignore(folder: str, names: list[str]) -> set[str]:
        relative_folder = Path(folder).relative_to(build_path)
        return {name for name in names if _is_build_only(relative_folder / name, layer, layout)}

    try:
        shutil.copytree(
            build_path,
            stage_path,
            symlinks=True,
            ignore=ignore,
            copy_function=shutil.copy2 if copy else _link_or_copy,
        )
    except (OSError, shutil.Error) as exc:
        raise PublishError(f"cannot stage {layer.name} from {build_path}: {exc}") from None
    # Rewrite what names sibling folders: deployed folders are install targets
    present = {
        dep
        for dep in layer.dependencies
        if (build_path.parent / dep / "share/venv/dynlib").is_dir()
    }
    config = layer_config(
        graph, layer, layout, lambda name: install_target(graph, name), present_dynlibs=present
    )
    config_path = stage_path / postinstall.LAYER_CONFIG
    config_path.unlink(missing_ok=True)  # never write through a hard link into the build
    config.write(config_path)
    if layer.kind is not LayerKind.RUNTIME and not platform.is_windows:
        bin_dir = stage_path / "bin"
        runtime_python = layout.python(LayerKind.RUNTIME)
        real = bin_dir / Path(runtime_python).name
        # The link to the runtime's interpreter would leave the layer (and deploy refuses
        # such links); postinstall recreates it next to the deployed runtime.
        real.unlink(missing_ok=True)
        install_python_wrapper(stage_path, layout, config.dynlib_dirs)


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


@dataclass
class PublishedLayer:
    metadata: LayerMetadata
    archive: Path


@dataclass
class PublishResult:
    platform: Platform
    metadata_dir: Path
    layers: list[PublishedLayer]

    @property
    def archives(self) -> list[Path]:
        return [layer.archive for layer in self.layers]


def metadata_dir(output_dir: Path, platform: Platform) -> Path:
    return output_dir / METADATA_DIR / str(platform)


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
    meta_dir = metadata_dir(output_dir, platform)
    env_dir = meta_dir / "env_metadata"
    for layer in layers:
        if not (root / layer.name / postinstall.LAYER_CONFIG).exists():
            raise PublishError(
                f"{graph.path}: layer {layer.name} is not built in {root}; run `venvlayers build` first"
            )
    output_dir.mkdir(parents=True, exist_ok=True)
    stage_root = root / "_stage"

    def publish_one(layer: Layer) -> PublishedLayer:
        metadata = layer_metadata(graph, layer, platform)
        previous_path = env_dir / f"{layer.name}.json"
        previous = (
            read_model(LayerMetadata, previous_path, PublishError)
            if previous_path.exists()
            else None
        )
        # one stamp per output folder: publishing elsewhere must not invalidate this one
        folder_key = sha256_text(str(output_dir))[:12]
        stamp_path = root / STAMP_DIR / f"{layer.name}.publish-{folder_key}.json"
        key = _publish_key(root, layer, metadata, fmt, tag_outputs)
        reused = _reuse_archive(stamp_path, key, previous, output_dir)
        if reused is not None:
            reporter.info(f"{layer.name}: {reused.archive.name} unchanged")
            return reused
        stage = stage_root / metadata.install_target
        stage_layer(graph, layer, root / layer.name, stage, platform)
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
        build_number = _archive_build(previous, metadata, info.sha256, output_dir)
        base = (
            f"{metadata.install_target}-{platform}-{build_number}"
            if tag_outputs
            else metadata.install_target
        )
        archive = output_dir / f"{base}{fmt_suffix(fmt)}"
        os.replace(scratch, archive)
        shutil.rmtree(stage, ignore_errors=True)
        metadata.archive_build = build_number
        metadata.archive_name = archive.name
        metadata.target_platform = str(platform)
        metadata.archive_size = info.size
        metadata.archive_hashes = ArchiveHashes(sha256=info.sha256)
        write_json_atomic(
            stamp_path,
            {"key": key, "archive": archive.name, "mtime_ns": archive.stat().st_mtime_ns},
        )
        reporter.info(f"{layer.name}: {archive.name} ({info.size / 1e6:.1f} MB)")
        return PublishedLayer(metadata, archive)

    # Compression dominates and each archive already compresses on every core; two layers
    # at a time keep the cores busy between archives without holding 4 sets of compressors
    # (~100 MiB each for xz) in memory.
    with ThreadPoolExecutor(max_workers=max(1, min(len(layers), 2))) as pool:
        published = list(pool.map(publish_one, layers))

    manifest: dict[str, list[LayerMetadata]] = {
        "runtimes": [],
        "frameworks": [],
        "applications": [],
    }
    for item, layer in zip(published, layers, strict=True):
        manifest[_CATEGORY[layer.kind]].append(item.metadata)
        item.metadata.write(env_dir / f"{layer.name}.json")
    StackManifest(layers=manifest).write(meta_dir / "venvstacks.json")
    PublishInfo(
        tool_version=__version__,
        spec_hash="sha256:" + sha256_text(graph.path.read_text(encoding="utf-8")),
        platform=str(platform),
        layers=[layer.name for layer in graph if layer.targets(platform)],
    ).write(meta_dir / PUBLISH_INFO_NAME)
    return PublishResult(platform, meta_dir, published)


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
        stamp = json.loads(stamp_path.read_text(encoding="utf-8"))
        archive = output_dir / previous.archive_name
        unchanged = (
            stamp.get("key") == key
            and stamp.get("archive") == previous.archive_name
            and archive.stat().st_mtime_ns == stamp.get("mtime_ns")
            and archive.stat().st_size == previous.archive_size
        )
    except (OSError, ValueError):
        return None
    return PublishedLayer(previous, archive) if unchanged else None


def fmt_suffix(fmt: ArchiveFormat) -> str:
    return "." + str(fmt)


def _archive_build(
    previous: LayerMetadata | None, current: LayerMetadata, sha256: str, output_dir: Path
) -> int:
    """Same lock and same bytes keep the build number; a new lock version restarts at 1."""
    if previous is None or previous.lock_version != current.lock_version:
        return 1
    last = previous.archive_build or 0
    same_bytes = previous.archive_hashes is not None and previous.archive_hashes.sha256 == sha256
    if same_bytes and last:
        return last
    return last + 1


def check_archive(path: Path, metadata: LayerMetadata) -> None:
    size = path.stat().st_size
    if metadata.archive_size is not None and size != metadata.archive_size:
        raise PublishError(f"{path}: size {size} does not match metadata {metadata.archive_size}")
    if metadata.archive_hashes and sha256_file(path) != metadata.archive_hashes.sha256:
        raise PublishError(f"{path}: sha256 does not match its metadata")


__all__ = ["BuildResult", "PublishResult", "publish_stack", "stage_layer"]
