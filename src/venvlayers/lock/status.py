"""Which locks are valid: lock file paths, reading locks, venvstacks' validity.

Pure reads. ``lock`` decides what to relock from these; ``show`` prints ``lock_status``.
Validity is venvstacks 0.8.0's (``hash_reasons``), so a lock either tool calls valid the
other does too; ``lower_drift`` adds the check that lower layers still pin what a lock
shares (venvstacks relocks every layer on ``lock`` instead).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from venvlayers.core.errors import LockError
from venvlayers.lock import lockfiles
from venvlayers.lock.hashes import LockInputs, lock_inputs, requirements_hash
from venvlayers.lock.lockfiles import LockedPackage, LockFormatError
from venvlayers.stack.graph import StackGraph

REQUIREMENTS_DIR = "requirements"


@dataclass(frozen=True)
class LockPaths:
    folder: Path
    pylock: Path
    meta: Path
    packages: Path
    inputs: Path


def lock_paths(graph: StackGraph, layer_name: str) -> LockPaths:
    folder = graph.spec.spec_dir / REQUIREMENTS_DIR / layer_name
    return LockPaths(
        folder=folder,
        pylock=folder / lockfiles.pylock_name(layer_name),
        meta=folder / lockfiles.meta_name(layer_name),
        packages=folder / lockfiles.summary_name(layer_name),
        inputs=folder / lockfiles.inputs_name(layer_name),
    )


def read_pylock_entries(path: Path) -> list[LockedPackage]:
    """Every package entry of a lock, those shared from lower layers included."""
    try:
        return lockfiles.read_packages(path.read_text(encoding="utf-8"), str(path))
    except FileNotFoundError:
        raise LockError(f"{path}: lock file not found; run `venvlayers lock`", path=path) from None
    except LockFormatError as exc:
        raise LockError(f"{exc}; run `venvlayers lock --reset-lock '*'`", path=path) from None


def read_pylock(path: Path) -> list[LockedPackage]:
    """The packages a layer installs itself (not those shared from lower layers)."""
    return [p for p in read_pylock_entries(path) if not p.shared]


def read_pylock_text(text: str) -> list[LockedPackage]:
    return [p for p in lockfiles.read_packages(text) if not p.shared]


def hash_reasons(
    meta: dict[str, Any], entries: Sequence[LockedPackage], inputs: LockInputs, versioned: bool
) -> list[str]:
    """Why venvstacks 0.8.0 would call this lock invalid (empty: valid)."""
    reasons = []
    if meta.get("lock_input_hash") != inputs.lock_input_hash:
        reasons.append("requirements changed")
    elif meta.get("requirements_hash") != requirements_hash(entries):
        reasons.append("lock file was edited after locking")
    if meta.get("other_inputs_hash") != inputs.other_inputs_hash:
        reasons.append("python version, platform targets or lower layers changed")
    if versioned and meta.get("version_inputs_hash") not in (
        inputs.version_inputs_hash,
        inputs.version_inputs_hash_lf,
    ):
        reasons.append("launch or support modules changed")
    return reasons


@dataclass(frozen=True)
class LayerLockStatus:
    name: str
    install_target: str
    valid: bool


def lock_status(graph: StackGraph) -> dict[str, LayerLockStatus]:
    """Each layer's lock as venvstacks 0.8.0 sees it: valid when its four hashes match and
    every lower layer's lock is valid; install target ``name@N`` for versioned layers
    (``name@???`` while not validly locked). Reads files only."""
    statuses: dict[str, LayerLockStatus] = {}
    for layer in graph:
        paths = lock_paths(graph, layer.name)
        valid = False
        lock_version = 1
        try:
            meta = json.loads(paths.meta.read_text(encoding="utf-8"))
            entries = lockfiles.read_packages(paths.pylock.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            meta = None
        if isinstance(meta, dict):
            inputs = lock_inputs(graph, layer)
            valid = not hash_reasons(meta, entries, inputs, layer.spec.versioned)
            lock_version = meta.get("lock_version", 1)
        valid = valid and all(statuses[d].valid for d in layer.dependencies)
        target = layer.name
        if layer.spec.versioned:
            target = f"{layer.name}@{lock_version if valid else '???'}"
        statuses[layer.name] = LayerLockStatus(layer.name, target, valid)
    return statuses


def lower_drift(entries: Sequence[LockedPackage], lower: Sequence[LockedPackage]) -> str:
    """What this lock shares that lower layers no longer pin, or installs that they now do."""
    pinned = {(p.name, p.version) for p in lower}
    everywhere = {p.key() for p in lower if not p.marker}
    for package in entries:
        if package.shared and (package.name, package.version) not in pinned:
            return f"{package.name} {package.version} is no longer pinned below"
        if not package.shared and not package.marker and package.key() in everywhere:
            return f"{package.name} {package.version} is now provided below"
    return ""
