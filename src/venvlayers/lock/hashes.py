"""The four hashes venvstacks 0.8.0 records in a lock's ``.meta.json``, computed once here.

- ``requirements_hash``: the lock's packages, their index and wheel hashes (edits after
  locking show up here);
- ``lock_input_hash``: the layer's declared requirements;
- ``other_inputs_hash``: Python X.Y, the Linux/macOS targets, the lower layers' names;
- ``version_inputs_hash``: layer name, ``versioned``, and the launch/support modules' hashes
  (``module_hash``, also published as ``app_launch_module_hash``).

``lock_inputs`` gathers what one layer's lock is checked against; ``lock_metadata`` is what
a fresh lock records. Each is venvstacks' exact byte recipe: a lock either tool writes, the
other reads as valid.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from venvlayers.core.errors import ProcessError
from venvlayers.core.fsutil import sha256_file, sha256_source
from venvlayers.core.process import run_process
from venvlayers.formats.models import LockMetadata
from venvlayers.lock.lockfiles import LockedPackage, declared_requirements, requirement_lines
from venvlayers.stack.graph import Layer, StackGraph
from venvlayers.stack.spec import LayerKind

DEFAULT_LINUX_TARGET = "glibc@2.28"
DEFAULT_MACOSX_TARGET = "13.0"


def hash_strings(items: Iterable[str]) -> str:
    """sha256 over the items' UTF-8 bytes, concatenated with no separator."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(item.encode())
    return f"sha256:{digest.hexdigest()}"


def requirements_hash(packages: Sequence[LockedPackage]) -> str:
    """Over ``name==version[ ; marker] from <index>`` and ``<wheel>:<algorithm>:<hash>``, sorted."""
    items = []
    for package in packages:
        items.append(f"{package.requirement()} from {package.index or 'unspecified index'}")
        for wheel in package.wheels:
            items += [f"{wheel.name}:{algorithm}:{value}" for algorithm, value in wheel.hashes]
    return hash_strings(sorted(items))


def lock_input_hash(requirements: Sequence[str]) -> str:
    return hash_strings(requirement_lines(declared_requirements(requirements)))


def other_inputs_hash(graph: StackGraph, layer: Layer) -> str:
    """Python X.Y, the targets (the spec's text; only for platforms the layer targets), then
    the runtime's layer name and the frameworks' spec names in C3 order."""
    spec = layer.spec
    items = [f"py_version={'.'.join(layer.py_version.split('.')[:2])}"]
    if any(p.is_linux for p in layer.platforms):
        items.append(f"linux_target={spec.linux_target_text or DEFAULT_LINUX_TARGET}")
    if any(p.is_macos for p in layer.platforms):
        items.append(f"macosx_target={spec.macosx_target_text or default_macosx_target()}")
    lower: list[str] = []
    if layer.kind is not LayerKind.RUNTIME:
        lower = [layer.runtime, *(graph[name].spec.name for name in layer.frameworks)]
    return hash_strings([*items, *lower])


def default_macosx_target() -> str:
    return os.environ.get("MACOSX_DEPLOYMENT_TARGET") or DEFAULT_MACOSX_TARGET


def version_inputs_hash(graph: StackGraph, layer: Layer, *, lf: bool = False) -> str:
    """``lf``: the modules' CRLF read as LF (to recognise a lock made before a Windows
    checkout converted line endings; venvstacks itself does not)."""
    spec = layer.spec
    hashes: list[str] = []
    if spec.kind is LayerKind.APPLICATION and spec.launch_module is not None:
        base = graph.spec.spec_dir
        hashes = [module_hash(base / m, lf=lf) for m in (spec.launch_module, *spec.support_modules)]
    return hash_strings([f"env_name={layer.name}", f"is_versioned_layer={spec.versioned}", *hashes])


# -- launch and support modules --------------------------------------------------------


def module_hash(path: Path, *, lf: bool = False) -> str:
    """A launch/support module's hash as published in ``app_launch_module_hash``.

    A file: sha256 of its name then of ``sha256:<hex of its bytes>``. A folder:
    ``sha256/`` then the sha256 over every folder's name and each file's name and
    ``sha256:<hex>``, walked top-down in name order. Inside a git work tree the files git
    ignores and ``.git*`` entries are left out, and a folder outside the work tree hashes
    as empty; elsewhere ``__pycache__`` is left out.
    """
    if path.is_file():
        digest = hashlib.sha256()
        digest.update(path.name.encode())
        digest.update(_file_digest(path, lf=lf).encode())
        return f"sha256:{digest.hexdigest()}"
    repo = git_root(Path.cwd() / path.parent)
    ignored = git_ignored(path) if repo is not None and path.is_dir() else set()
    digest = hashlib.sha256()
    for folder, files in _walk_module(path, ignored, repo):
        digest.update(folder.name.encode())
        for name in files:
            digest.update(name.encode())
            digest.update(_file_digest(folder / name, lf=lf).encode())
    return f"sha256/{digest.hexdigest()}"


def _file_digest(path: Path, *, lf: bool) -> str:
    return "sha256:" + (sha256_source(path) if lf else sha256_file(path))


def git_root(start: Path) -> Path | None:
    """The nearest folder at or above ``start`` holding a ``.git`` folder (not a file)."""
    for folder in (start, *start.parents):
        if (folder / ".git").is_dir():
            return folder
    return None


def git_ignored(source: Path) -> set[Path]:
    """Files git ignores under ``source`` (empty when not in a git work tree)."""
    command = ["git", "ls-files", "--others", "--ignored", "--exclude-standard", "--directory"]
    try:
        completed = run_process(
            [*command, "-z", "."], what="list git-ignored files", cwd=source, check=False
        )
    except ProcessError:  # no git on this machine
        return set()
    if not completed.ok:
        return set()
    return {(source / entry).resolve() for entry in completed.stdout.split("\0") if entry}


def _walk_module(
    top: Path, ignored: set[Path], repo: Path | None
) -> Iterator[tuple[Path, list[str]]]:
    def skipped(folder: Path, name: str) -> bool:
        if repo is None:
            return name == "__pycache__"
        return name.startswith(".git") or (folder / name).resolve() in ignored

    if repo is not None:
        absolute = Path.cwd() / top
        if not absolute.resolve().is_relative_to(repo.resolve()) or skipped(
            absolute.parent, absolute.name
        ):
            return
    elif top.name == "__pycache__":
        return
    for folder_text, subdirs, files in os.walk(top):
        folder = Path(folder_text)
        subdirs[:] = sorted(d for d in subdirs if not skipped(folder, d))
        yield folder, sorted(f for f in files if not skipped(folder, f))


# -- what a lock is checked against, and what it records --------------------------------


@dataclass(frozen=True)
class LockInputs:
    requirements: tuple[str, ...]
    lower: tuple[LockedPackage, ...]
    """What the lower layers pin (the constraints of this layer's resolution)."""
    lock_input_hash: str
    other_inputs_hash: str
    version_inputs_hash: str
    version_inputs_hash_lf: str
    """The same with the modules' CRLF read as LF: a lock made on Linux stays valid in a
    Windows checkout (git autocrlf) for ``lock --check`` (venvstacks itself is stricter)."""


def lock_inputs(
    graph: StackGraph,
    layer: Layer,
    lower: Sequence[LockedPackage] = (),
    *,
    crlf_tolerant: bool = False,
) -> LockInputs:
    """``crlf_tolerant``: also accept module hashes taken before a Windows checkout turned
    LF into CRLF (what ``lock`` and ``lock --check`` do; ``show`` is venvstacks' strict view)."""
    version_hash = version_inputs_hash(graph, layer)
    tolerant = crlf_tolerant and layer.spec.versioned and layer.spec.launch_module is not None
    return LockInputs(
        requirements=tuple(layer.spec.requirements),
        lower=tuple(lower),
        lock_input_hash=lock_input_hash(layer.spec.requirements),
        other_inputs_hash=other_inputs_hash(graph, layer),
        version_inputs_hash=version_hash,
        version_inputs_hash_lf=version_inputs_hash(graph, layer, lf=True)
        if tolerant
        else version_hash,
    )


def lock_metadata(
    inputs: LockInputs, packages: Sequence[LockedPackage], *, lock_version: int, locked_at: str
) -> LockMetadata:
    """What venvstacks (and venvlayers) records for a lock of ``packages`` made from ``inputs``."""
    return LockMetadata(
        requirements_hash=requirements_hash(packages),
        lock_input_hash=inputs.lock_input_hash,
        other_inputs_hash=inputs.other_inputs_hash,
        version_inputs_hash=inputs.version_inputs_hash,
        lock_version=lock_version,
        locked_at=locked_at,
    )
