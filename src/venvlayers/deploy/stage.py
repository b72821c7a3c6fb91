"""Filling a staged deployment folder: each layer linked, copied or unpacked, then linked
for its final place and compiled.

A deployment folder holds one entry per layer (``deployments/<id>/<install_target>``),
made the cheapest way that stays correct:

- **directory link**: a layer whose archive is unchanged and whose lower layers (runtime,
  frameworks) are all unchanged too becomes one symlink ``../<home>/<install_target>``,
  ``<home>`` being the deployment that physically holds the layer (one hop: a link is
  never made to another link). The layer's own relative links (venvstacks' ``bin/python``
  -> ``../../<runtime>/bin/python``) then resolve inside ``<home>``, whose lower layers
  are the same archives, and its configuration names ``TARGET/<layer>`` paths, which lead
  into the current deployment.
- **hard-linked copy**: an unchanged layer over a changed (or copied) lower layer needs a
  folder of its own in the new deployment (its relative links must reach the new lower layer); its files
  are hard links to the old ones (nothing writes through them).
- **unpacked**: a changed layer. Files identical to the current deployment's version of
  the same layer are hard-linked from it with their bytecode (``extract_archive``'s
  ``reuse_from``), so the compile pass compiles only what is new.

Layers are made side by side (the largest archive first), then linked for their final place (venvlayers' own
``postinstall.link_layer``, in process: with bytecode left to ``compile_layers`` it only
writes configuration files), then compiled in one pass over every core.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from venvlayers.archive.extract import extract_archive, extract_members
from venvlayers.archive.read import KnownCopy
from venvlayers.core.errors import DeployError
from venvlayers.core.fsutil import link_or_copy
from venvlayers.deploy.bytecode import compile_layers
from venvlayers.formats.records import LayerMetadata
from venvlayers.layer_scripts import postinstall

if TYPE_CHECKING:  # deploy/delta loads only when a layer is updated from ranges
    from venvlayers.deploy.delta import DeltaPlan


@dataclass(frozen=True)
class StagePlan:
    """What a new deployment needs, layer by layer (``layers`` lowest first)."""

    layers: list[LayerMetadata]
    changed: list[LayerMetadata]
    """Layers to unpack."""
    archives: dict[str, Path]
    """sha256 -> verified archive of every changed layer"""
    current: Path | None
    """The current deployment's folder (``deployments/<id>``), if any."""
    target: Path
    compile_bytecode: bool = True
    deltas: dict[str, DeltaPlan] = field(default_factory=dict)
    """sha256 -> a changed layer made from its deployed version plus fetched ranges"""
    verified: dict[str, KnownCopy] = field(default_factory=dict)
    """sha256 -> the copy of a local archive that was hashed (not hashed again if unchanged)"""


def lower_layers(item: LayerMetadata, selected: Sequence[LayerMetadata]) -> set[str]:
    """The deployed folders a layer's links may lead into: its runtime and frameworks."""
    by_name = {i.layer_name: i.install_target for i in selected}
    lower = {by_name.get(r, r) for r in item.required_layers or []}
    if item.runtime_layer and item.runtime_layer != item.layer_name:
        lower.add(by_name.get(item.runtime_layer, item.runtime_layer))
    return lower


def home_link(current: Path, install_target: str) -> str | None:
    """``../<id>/<install_target>``: where the current deployment's layer physically lives
    (None: not a folder there, or a link this module did not make)."""
    entry = current / install_target
    if not entry.is_symlink():
        return f"../{current.name}/{install_target}" if entry.is_dir() else None
    value = os.readlink(entry)
    pieces = value.split("/")
    plain = len(pieces) == 3 and pieces[1] not in ("", ".", "..") and not pieces[1].startswith(".")
    if not plain or pieces[0] != ".." or pieces[2] != install_target or "\\" in value:
        return None
    home = current.parent / pieces[1] / install_target
    return value if home.is_dir() and not home.is_symlink() else None


def stage_layers(staging: Path, plan: StagePlan, say: Callable[[str], None]) -> None:
    """Fill ``staging`` (a new folder in ``deployments``) with every layer of ``plan``."""
    changed = {i.install_target for i in plan.changed}
    moved = set(changed)  # layers that are not where the current deployment has them
    jobs: list[tuple[int, Callable[[], object]]] = []  # (bytes to unpack, job)
    for item in plan.layers:  # lowest first
        name = item.install_target
        home = home_link(plan.current, name) if plan.current is not None else None
        if name in changed or home is None:
            jobs.append((item.archive_size or 0, _unpack_job(staging, plan, item, say)))
        elif not lower_layers(item, plan.layers) & moved:
            os.symlink(home, staging / name, target_is_directory=True)
        else:
            moved.add(name)
            jobs.append((0, _copy_job(staging / home, staging / name)))
    if jobs:
        # largest archive first: the big framework starts at once, the small layers fill
        # the other threads around it (lowest first, it waited for a runtime)
        jobs.sort(key=lambda job: -job[0])  # stable: equal sizes keep their order
        with ThreadPoolExecutor(min(len(jobs), os.cpu_count() or 1)) as pool:
            for future in [pool.submit(job) for _, job in jobs]:
                future.result()
    todo = [i for i in plan.layers if i.install_target in changed]
    deployed = {staging / i.install_target: plan.target / i.install_target for i in todo}
    for layer, final in deployed.items():  # lowest first: a layer's base Python is below it
        link_for(layer, final)
    if plan.compile_bytecode:
        compile_layers(list(deployed), deployed)


def _unpack_job(
    staging: Path, plan: StagePlan, item: LayerMetadata, say: Callable[[str], None]
) -> Callable[[], None]:
    name = item.install_target
    earlier = plan.current / name if plan.current is not None else None

    def unpack() -> None:
        delta = plan.deltas.get(item.archive_sha256)
        if delta is not None:
            say(f"{name}: updating from {delta.index.archive_name}'s changed ranges")
            extract_members(
                delta.ranges,
                delta.members(),
                staging,
                expected_root=name,
                bound_size=item.archive_size or 0,
                sibling_roots=lower_layers(item, plan.layers),
                reuse_from=earlier if earlier is not None and earlier.is_dir() else None,
            )
            return
        say(f"{name}: unpacking {item.archive_name}")
        extract_archive(
            plan.archives[item.archive_sha256],
            staging,
            expected_root=name,
            expected_size=item.archive_size,
            expected_sha256=item.archive_sha256,
            verified=plan.verified.get(item.archive_sha256),
            # venvstacks' layers link bin/python_ to ../../<runtime>/bin/python
            sibling_roots=lower_layers(item, plan.layers),
            # the deployed version of this layer, at the same TARGET/<install_target>
            reuse_from=earlier if earlier is not None and earlier.is_dir() else None,
        )

    return unpack


def _copy_job(source: Path, destination: Path) -> Callable[[], object]:
    """A hard-linked copy of an unchanged layer (no data copied; nothing writes in place;
    links are copied as links, so ``link_or_copy`` only sees regular files)."""
    return lambda: shutil.copytree(source, destination, symlinks=True, copy_function=link_or_copy)


def link_for(layer: Path, deployed: Path) -> None:
    """Link the staged ``layer`` for its final place ``deployed`` (pyvenv.cfg,
    sitecustomize.py, the venv's python links; written as new files, never through a
    hard link). Its base Python must be the staged runtime beside it."""
    if not (layer / postinstall.LAYER_CONFIG).is_file():
        raise DeployError(
            f"{deployed.name}: the archive has no layer config ({postinstall.LAYER_CONFIG}); "
            "it is not a deployable layer — publish it again; the target was left as it was"
        )
    try:
        config = postinstall.load_config(layer)
        base = postinstall.resolve(layer, config["base_python"])
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise DeployError(
            f"{deployed.name}: unreadable layer config ({type(exc).__name__}: {exc}); the "
            "target was left as it was"
        ) from None
    if not base.exists():
        raise DeployError(
            f"{deployed.name}: its base Python {base.name} is not in the deployment "
            "(deploy the runtime layer with it); the target was left as it was"
        )
    try:
        postinstall.link_layer(layer, compile_files=False, deployed_path=deployed)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise DeployError(
            f"{deployed.name}: cannot link the layer for {deployed} ({type(exc).__name__}: "
            f"{exc}); the target was left as it was"
        ) from None
