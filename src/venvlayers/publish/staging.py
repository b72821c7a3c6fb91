"""What publish and export share: a built layer staged as its deployed view, and its metadata.

A built layer is *staged* under its install target name: a hard-linked copy of the build
folder without build-time files (``pyvenv.cfg``, the generated ``sitecustomize.py``, uv's
``.gitignore``/``.lock``/``CACHEDIR.TAG``, bytecode caches), with its layer config, python links and
wrapper rewritten for the deployed folder names. ``publish.py`` archives the staged view,
``export.py`` copies it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from venvlayers.build.layout import LayerLayout, layer_config
from venvlayers.build.python_wrapper import install_python_wrapper
from venvlayers.core.errors import PublishError
from venvlayers.core.fsutil import link_or_copy
from venvlayers.core.platforms import Platform
from venvlayers.core.rmtree import remove_tree
from venvlayers.formats.layout import MetadataSet
from venvlayers.formats.models import (
    LayerMetadata,
    LockMetadata,
    StackManifest,
    SupportModule,
    read_model,
)
from venvlayers.layer_scripts import postinstall
from venvlayers.lock.hashes import module_hash
from venvlayers.lock.status import lock_paths
from venvlayers.stack.graph import Layer, StackGraph
from venvlayers.stack.spec import LayerKind, module_name

LAYER_CATEGORY = {
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
        # venvstacks publishes every unversioned layer as lock version 1
        "lock_version": lock.lock_version if layer.spec.versioned else 1,
        "locked_at": published_time(lock.locked_at),
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
    if len(relative.parts) == 1 and (relative.name.startswith(".") or relative.name == CACHE_TAG):
        return True
    return relative.as_posix() in ("pyvenv.cfg", f"{layout.site_dir()}/sitecustomize.py")


#: ``uv venv`` adds a ``.gitignore`` of ``*`` and this tag at the top of an environment
#: (``uv pip install`` a ``.lock``); a cache tag makes backup tools skip a deployed layer.
#: venvstacks' layers have none of them (``python -m venv``; top-level hidden files are
#: left out of its archives), so they stay out of ours too.
CACHE_TAG = "CACHEDIR.TAG"


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
    layout = LayerLayout(platform, layer.py_version, layer.implementation)
    if stage_path.exists() or stage_path.is_symlink():
        remove_tree(stage_path)

    def ignore(folder: str, names: list[str]) -> set[str]:
        relative_folder = Path(folder).relative_to(build_path)
        return {name for name in names if _is_build_only(relative_folder / name, layer, layout)}

    try:
        shutil.copytree(
            build_path,
            stage_path,
            symlinks=True,
            ignore=ignore,
            copy_function=shutil.copy2 if copy else link_or_copy,
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


def published_time(locked_at: str) -> str:
    """A lock time as venvstacks publishes it: ISO 8601 in UTC with a ``+00:00`` offset,
    microseconds only when non-zero (``2025-01-02T03:04:05+00:00``)."""
    try:
        parsed = datetime.fromisoformat(locked_at)
    except ValueError:
        return locked_at
    if parsed.tzinfo is None:  # venvstacks reads a naive time as local time
        parsed = parsed.astimezone()
    return parsed.astimezone(UTC).isoformat()


def check_built(graph: StackGraph, layers: Iterable[Layer], root: Path) -> None:
    """Every layer to stage must have been built in ``root``."""
    for layer in layers:
        if not (root / layer.name / postinstall.LAYER_CONFIG).exists():
            raise PublishError(
                f"{graph.path}: layer {layer.name} is not built in {root}; run `venvlayers build` first"
            )


def write_stack_metadata(meta: MetadataSet, layers: Iterable[tuple[Layer, LayerMetadata]]) -> None:
    """``env_metadata/<layer>[-<platform>].json`` for each layer, then the manifest."""
    manifest: dict[str, list[LayerMetadata]] = {
        category: [] for category in LAYER_CATEGORY.values()
    }
    for layer, metadata in layers:
        manifest[LAYER_CATEGORY[layer.kind]].append(metadata)
        metadata.write(meta.env_metadata(layer.name))
    StackManifest(layers=manifest).write(meta.manifest)
