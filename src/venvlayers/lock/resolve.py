"""Locking: one cross-platform PEP 751 lock per layer, in venvstacks 0.8.0's files.

Each layer is resolved by ``uv lock`` (universal, fresh on every relock) in a generated
project holding the layer's requirements, the spec's uv settings and, as constraints,
what every lower layer pins; the export is amended as venvstacks amends it (see
``lockfiles``): packages lower layers provide stay listed but are marked never to be
installed from this layer. Lock validity is venvstacks' own (the four hashes in
``.meta.json``), plus a check that the lower layers still pin what this lock shares.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from venvlayers.core.errors import LockError, StaleLockError, UvError
from venvlayers.core.fsutil import holds_text, write_text_atomic
from venvlayers.core.platforms import Platform, marker_environment, target_text, uncovered_platforms
from venvlayers.core.report import Reporter
from venvlayers.core.rmtree import remove_tree_quietly
from venvlayers.core.uv import run_uv, translate_lock_failure
from venvlayers.formats.models import LockMetadata, read_model
from venvlayers.lock import lockfiles
from venvlayers.lock.hashes import LockInputs, lock_inputs, lock_metadata
from venvlayers.lock.lockfiles import LockedPackage, LockFormatError
from venvlayers.lock.status import LockPaths, hash_reasons, lock_paths, lower_drift
from venvlayers.stack import uvsettings
from venvlayers.stack.graph import Layer, StackGraph, run_in_stack_order
from venvlayers.stack.layer_uv import (
    DEFAULT_INDEX,
    PROJECT_UV_KEYS,
    IndexOptions,
    exclude_newer,
    layer_uv_settings,
    uv_config_text,
)
from venvlayers.stack.spec import LayerKind


@dataclass
class LayerLockState:
    """What is known about one layer's lock during a lock run."""

    layer: Layer
    paths: LockPaths
    stale_reasons: list[str] = field(default_factory=list)
    entries: list[LockedPackage] = field(default_factory=list)
    """Every entry of this layer's lock (shared ones included)."""
    lower: tuple[LockedPackage, ...] = ()
    """What the lower layers pin (the constraints of this layer's resolution)."""
    providers: dict[str, str] = field(default_factory=dict)
    """Package name -> the lower layer whose lock pins it."""
    metadata: LockMetadata | None = None
    changed: bool = False
    writes: list[tuple[Path, str]] = field(default_factory=list)
    """Files of its new lock, written once every layer has locked (``lock_stack``)."""

    @property
    def stale(self) -> bool:
        return bool(self.stale_reasons)

    @property
    def own(self) -> list[LockedPackage]:
        return [p for p in self.entries if not p.shared]


@dataclass
class LockResult:
    layers: list[LayerLockState]

    @property
    def stale(self) -> list[LayerLockState]:
        return [state for state in self.layers if state.stale]

    @property
    def changed(self) -> list[str]:
        return [state.layer.name for state in self.layers if state.changed]


def _parse_time(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    # venvstacks reads a time without a zone as local time
    return parsed if parsed.tzinfo else parsed.astimezone()


def _lock_inputs(graph: StackGraph, layer: Layer, states: dict[str, LayerLockState]) -> LockInputs:
    # the runtime's lock first, then the frameworks' in C3 order (as venvstacks reads them)
    order = [layer.runtime, *layer.frameworks] if layer.kind is not LayerKind.RUNTIME else []
    lower = lockfiles.lower_constraints([states[name].own for name in order])
    return lock_inputs(graph, layer, lower, crlf_tolerant=True)


def lock_stack(
    graph: StackGraph,
    *,
    layers: Collection[str] | None = None,
    relock: Collection[str] = (),
    reset: Collection[str] = (),
    check: bool = False,
    build_dir: Path | None = None,
    reporter: Reporter,
    index: IndexOptions = DEFAULT_INDEX,
    clean: bool = False,
) -> LockResult:
    """Lock ``layers`` (default: all) in dependency order, relocking a layer only when its
    lock is not valid, unless it is in ``relock`` (re-resolved anyway: venvstacks' ``lock``)
    or ``reset``. The layers they stand on are read, and locked only when they have no lock.

    With ``check=True`` nothing is written; the result lists stale layers and why.
    """
    updatable = set(graph.layers) if layers is None else set(layers)
    wanted = set(updatable)
    for name in updatable:
        wanted.update(graph[name].dependencies)
    to_reset = set(reset)
    build_dir = build_dir or graph.spec.spec_dir / "_build"
    if clean and not check:
        for name in updatable:
            remove_tree_quietly(build_dir / "_lock" / name)
    cutoff = exclude_newer(graph)
    states: dict[str, LayerLockState] = {}

    def lock_layer(layer: Layer) -> LayerLockState:
        state = LayerLockState(layer=layer, paths=lock_paths(graph, layer.name))
        states[layer.name] = state
        for lower in layer.dependencies:
            if states[lower].stale and check:
                state.stale_reasons.append(f"lower layer {lower} is stale")
        inputs = _lock_inputs(graph, layer, states)
        state.lower = inputs.lower
        for lower in (
            (layer.runtime, *layer.frameworks) if layer.kind is not LayerKind.RUNTIME else ()
        ):
            for package in states[lower].own:
                state.providers.setdefault(package.name, lower)
        _assess(state, inputs, cutoff, force=layer.name in to_reset)
        if check:
            return state
        if not state.stale and layer.name in relock and layer.name in updatable:
            state.stale_reasons.append("relocked on request")
        if state.stale:
            # Layers below the selection are read, not rewritten; one with no lock at all
            # cannot be read, so it is locked (creating a lock rewrites nothing).
            if layer.name not in updatable and state.metadata is not None and state.entries:
                reporter.warning(
                    f"{layer.name}: lock is stale ({'; '.join(state.stale_reasons)}) but not selected; using it as is"
                )
            else:
                with reporter.group(f"lock {layer.name}"):
                    _relock(graph, state, inputs, build_dir, cutoff, reporter, index)
                state.stale_reasons = []
        return state

    # Layers that do not depend on each other lock concurrently (each is one uv process)
    selected = [layer for layer in graph if layer.name in wanted]
    run_in_stack_order(selected, lock_layer)
    # Only now, every layer locked: a lock that fails on one layer writes no lock file at
    # all (before, the layers locked before it kept their new locks, half a run)
    for layer in selected:
        for path, text in states[layer.name].writes:
            write_text_atomic(path, text)
    return LockResult([states[layer.name] for layer in selected])


def _assess(state: LayerLockState, inputs: LockInputs, cutoff: str | None, *, force: bool) -> None:
    """Fill ``state.stale_reasons`` (empty when the lock on disk is up to date).

    Valid as venvstacks 0.8.0 judges validity (same four hashes; the version inputs only
    for versioned layers), and the lower layers still pin what this lock shares.
    """
    paths = state.paths
    reasons = state.stale_reasons
    if force:
        reasons.append("--reset-lock")
    if paths.meta.exists():
        try:
            state.metadata = read_model(LockMetadata, paths.meta, LockError)
        except LockError:
            reasons.append("lock metadata cannot be read")
    if paths.pylock.exists():
        try:
            state.entries = lockfiles.read_packages(
                paths.pylock.read_text(encoding="utf-8"), str(paths.pylock)
            )
        except LockFormatError:
            reasons.append("lock file cannot be read")
            return
    if state.metadata is None or not paths.pylock.exists():
        if not reasons:
            reasons.append("no lock yet")
        return
    meta = state.metadata
    reasons += hash_reasons(meta.model_dump(), state.entries, inputs, state.layer.spec.versioned)
    drift = lower_drift(state.entries, inputs.lower)
    if drift:
        reasons.append(f"lower layers' locks changed ({drift})")
    if cutoff:
        locked, limit = _parse_time(meta.locked_at), _parse_time(cutoff)
        if locked and limit and locked > limit:
            reasons.append(f"locked at {meta.locked_at}, after exclude-newer {cutoff}")


#: What uv says when the interpreter to lock with cannot be found, run or downloaded.
_NO_INTERPRETER = (
    "No interpreter found",
    "Failed to inspect Python interpreter",
    "No download found",
    "Failed to install",
)


def _python_request(layer: Layer) -> str:
    """The interpreter uv locks with: the runtime's own implementation and version.

    A bare ``3.9.16`` would let uv take any CPython of that version, and never download a
    PyPy one: ``pypy@3.9.16`` finds (or installs) the runtime the layer is built on, as
    venvstacks locks with its installed runtime.
    """
    if layer.implementation == "PyPy":
        return f"pypy@{layer.py_version}"
    return layer.py_version


#: The user's say over which Pythons uv may use; when one is set, lock asks nothing else.
_PREFERENCE_VARIABLES = ("UV_PYTHON_PREFERENCE", "UV_MANAGED_PYTHON", "UV_NO_MANAGED_PYTHON")


def _lock_with_runtime(
    layer: Layer, config: list[str], workspace: Path, env: dict[str, str]
) -> None:
    """``uv lock`` with the interpreter of the layer's runtime.

    The layer is built on uv's managed runtime, so lock first asks for that one only
    (``only-managed``). With ``managed`` (uv's default here) and the runtime not installed
    yet, uv first queries every Python on PATH, each a process start (pyenv's shims
    ~0.1 s each): 0.53 s of a 1.0 s cold lock on this machine. Where the managed runtime
    cannot be installed (downloads off, offline, no mirror), the lock is run again letting
    uv look on PATH, as before (after uv's own retries, ~10 s, when a download fails). A
    preference the user set is used as it is.
    """
    command = ["lock", *config, "--python", _python_request(layer)]
    what = f"lock {layer.name}"
    if any(os.environ.get(name) for name in _PREFERENCE_VARIABLES):
        run_uv(command, cwd=workspace, env=env, what=what)
        return
    try:
        run_uv(
            command, cwd=workspace, env={**env, "UV_PYTHON_PREFERENCE": "only-managed"}, what=what
        )
    except UvError as exc:
        if _FOUND_INTERPRETER.search(exc.stderr):
            raise  # it got as far as resolving: the failure is the lock's own
        run_uv(command, cwd=workspace, env=env, what=what)


#: What uv prints once it has its interpreter, before resolving.
_FOUND_INTERPRETER = re.compile(r"^Using (CPython|PyPy|GraalPy) ", re.MULTILINE)


def _project_file(layer: Layer, inputs: LockInputs, settings: dict[str, Any]) -> str:
    import tomlkit

    major_minor = ".".join(layer.py_version.split(".")[:2])
    doc = tomlkit.document()
    doc["project"] = {
        "name": canonicalize_name(re.sub("[^a-zA-Z0-9._-]", "-", layer.name)),
        "version": "0",
        "dependencies": lockfiles.project_dependencies(inputs.requirements),
        "requires-python": f"=={major_minor}.*",
    }
    tool_uv: dict[str, Any] = {
        # Indexes go in both files: uv looks up the index a source names among the
        # project's own indexes, but resolves against those of the --config-file.
        **{k: v for k, v in settings.items() if k in PROJECT_UV_KEYS or k == "index"},
        "constraint-dependencies": [p.requirement() for p in inputs.lower],
    }
    doc["tool"] = {"uv": tool_uv}
    return tomlkit.dumps(doc)


def _marker_environments(layer: Layer) -> dict[str, dict[str, str]]:
    return {
        str(p): marker_environment(p, layer.py_version, layer.implementation)
        for p in layer.platforms
    }


def _empty_export(layer: Layer) -> str:
    """What ``uv export`` writes for a project without requirements (no uv run needed)."""
    major_minor = ".".join(layer.py_version.split(".")[:2])
    return f'lock-version = "1.0"\ncreated-by = "uv"\nrequires-python = "=={major_minor}.*"\npackages = []\n'


def _relock(
    graph: StackGraph,
    state: LayerLockState,
    inputs: LockInputs,
    build_dir: Path,
    cutoff: str | None,
    reporter: Reporter,
    index: IndexOptions = DEFAULT_INDEX,
) -> None:
    layer = state.layer
    if not layer.platforms:
        raise LockError(
            f"{graph.path}: layer {layer.name} targets no platform (its 'platforms' and those of the layers below have nothing in common)",
            path=graph.path,
            line=layer.spec.line,
        )
    settings = layer_uv_settings(graph, layer, index)
    if not inputs.requirements and not any(k in settings for k in PROJECT_UV_KEYS - {"sources"}):
        # Nothing to resolve (typical for runtimes): the export is known without running uv
        exported = _empty_export(layer)
    else:
        exported = _resolve(graph, state, inputs, settings, build_dir, reporter)
    lock_text, missing = lockfiles.amend_export(
        exported,
        layer_name=layer.name,
        environments=_marker_environments(layer),
        lower=inputs.lower,
        lock_folder=state.paths.folder,
        wheel_platforms=lambda names, platforms: uncovered_platforms(
            names,
            [Platform(p) for p in platforms],
            py_version=layer.py_version,
            glibc=layer.linux_target,
            macosx=layer.macosx_target,
            implementation=layer.implementation,
        ),
    )
    if missing:
        raise _missing_wheels_error(graph, layer, missing)
    _record_lock(state, inputs, lock_text, cutoff, reporter)


def _resolve(
    graph: StackGraph,
    state: LayerLockState,
    inputs: LockInputs,
    settings: dict[str, Any],
    build_dir: Path,
    reporter: Reporter,
) -> str:
    layer = state.layer
    workspace = build_dir / "_lock" / layer.name
    workspace.mkdir(parents=True, exist_ok=True)
    write_text_atomic(workspace / "pyproject.toml", _project_file(layer, inputs, settings))
    write_text_atomic(workspace / "uv.toml", uv_config_text(settings))
    config = ["--config-file", str(workspace / "uv.toml")]
    env = {"MACOSX_DEPLOYMENT_TARGET": "{}.{}".format(*layer.macosx_target)}
    reporter.info(f"{layer.name}: resolving for {', '.join(str(p) for p in layer.platforms)}")
    try:
        # Every relock resolves afresh: no old uv.lock, so no preferences. Not --upgrade,
        # which also implies --refresh: it would revalidate every cached index page and
        # re-query the interpreter on each lock, where the index's own cache lifetime
        # (PyPI: 10 minutes) is what `uv lock` and `uv pip compile` honour by default.
        (workspace / "uv.lock").unlink(missing_ok=True)
        _lock_with_runtime(layer, config, workspace, env)
    except UvError as exc:
        setting = uvsettings.setting_at(
            exc.stderr,
            {
                "uv.toml": (workspace / "uv.toml").read_text(encoding="utf-8"),
                "pyproject.toml": (workspace / "pyproject.toml").read_text(encoding="utf-8"),
            },
        )
        if setting is not None:
            source = graph.spec.uv_config_path or graph.path
            raise LockError(
                f"{source}: uv setting '{setting}' has an invalid value: "
                f"{uvsettings.parse_message(exc.stderr)}; see uv's settings reference"
                " (https://docs.astral.sh/uv/reference/settings/)",
                path=source,
            ) from None
        if any(sign in exc.stderr for sign in _NO_INTERPRETER):
            raise LockError(
                f"{graph.path}: cannot lock layer {layer.name}: uv found no Python"
                f" {_python_request(layer)} to lock with ({str(exc).split(': ', 1)[-1]}); install"
                " it, or point UV_PYTHON_DOWNLOADS_JSON_URL at a runtime mirror"
                " (`venvlayers runtime-mirror`)",
                path=graph.path,
                line=layer.spec.line,
            ) from None
        pins = [
            (p.name, p.version, state.providers.get(p.name, "a lower layer")) for p in state.lower
        ]
        raise translate_lock_failure(
            str(exc),
            spec_path=graph.path,
            layer=layer.name,
            line=layer.spec.line,
            platforms=layer.platforms,
            pins=pins,
        ) from None
    return run_uv(
        [
            "export",
            *config,
            "--format",
            "pylock.toml",
            "--frozen",
            "--no-header",
            "--no-emit-project",
            "--no-annotate",
        ],
        cwd=workspace,
        env=env,
        what=f"export the lock of {layer.name}",
    ).stdout


def _missing_wheels_error(
    graph: StackGraph, layer: Layer, missing: Sequence[lockfiles.MissingWheels]
) -> LockError:
    uncovered = {p for item in missing for p in item.platforms}
    keep = [str(p) for p in layer.platforms if str(p) not in uncovered]
    first = missing[0]
    where = ", ".join(
        target_text(Platform(p), glibc=layer.linux_target, macosx=layer.macosx_target)
        for p in first.platforms
    )
    fields = ["set the layer's 'platforms' to " + (f"{keep}" if keep else "other platforms")]
    if any(Platform(p).is_linux for p in uncovered):
        fields.append("raise 'linux_target'")
    if any(Platform(p).is_macos for p in uncovered):
        fields.append("raise 'macosx_target'")
    others = f" (and {len(missing) - 1} more package(s))" if len(missing) > 1 else ""
    return LockError(
        f"{graph.path}: layer {layer.name}: {first.package} {first.version} has no wheel for {where}{others};"
        f" {', '.join(fields[:-1]) + ' or ' if len(fields) > 1 else ''}{fields[-1]}"
        " (or pin versions that have wheels)",
        path=graph.path,
        line=layer.spec.line,
    )


def _record_lock(
    state: LayerLockState,
    inputs: LockInputs,
    lock_text: str,
    cutoff: str | None,
    reporter: Reporter,
) -> None:
    """The lock, its inputs, metadata and package summary, to be written (each only if
    changed) once every layer has locked.

    The metadata is kept while venvstacks would still call it valid; otherwise it is
    rewritten with ``lock_version`` one past the previous metadata's (versioned layers)
    and ``locked_at`` now, clamped to exclude-newer.
    """
    layer = state.layer
    paths = state.paths
    previous = state.metadata
    entries = lockfiles.read_packages(lock_text, str(paths.pylock))
    limit = _parse_time(cutoff) if cutoff else None
    still_valid = (
        previous is not None
        and not hash_reasons(previous.model_dump(), entries, inputs, layer.spec.versioned)
        and not (limit and (_parse_time(previous.locked_at) or limit) > limit)
    )
    if previous is not None and still_valid:
        meta = previous
    else:
        now = datetime.now(UTC)
        locked_at = min(now, limit) if limit else now
        lock_version = 1
        last = previous.lock_version if previous is not None else None
        if layer.spec.versioned and last is not None:
            lock_version = last + 1
        meta = lock_metadata(
            inputs,
            entries,
            lock_version=lock_version,
            locked_at=locked_at.astimezone(UTC).isoformat(),
        )
    state.writes = [
        (paths.pylock, lock_text),
        (paths.inputs, lockfiles.inputs_text(inputs.requirements)),
        (paths.meta, meta.text()),
        (paths.packages, lockfiles.summary_text(layer.name, entries)),
    ]
    changed = not all(holds_text(path, text) for path, text in state.writes)
    state.entries = entries
    state.metadata = meta
    state.changed = changed
    reporter.info(
        f"{layer.name}: {'updated' if changed else 'unchanged'} ({len(state.own)} packages)"
    )


def require_fresh_locks(result: LockResult) -> None:
    if result.stale:
        details = "; ".join(f"{s.layer.name} ({', '.join(s.stale_reasons)})" for s in result.stale)
        raise StaleLockError(f"stale locks: {details}; run `venvlayers lock` and commit the result")
