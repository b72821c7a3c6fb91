"""Locking: one cross-platform PEP 751 ``pylock.<layer>.toml`` per layer, locked together.

Each layer is resolved by ``uv lock`` in a generated project whose ``[tool.uv]`` holds the
layer's target environments (wheels required for each), the spec's uv settings, and the
exact versions locked by every lower layer as constraints. The exported lock omits the
packages lower layers provide: at run time they are imported from below.
"""

from __future__ import annotations

import json
import os
import shutil
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomlkit
from packaging.markers import Marker
from packaging.utils import canonicalize_name

from venvlayers.errors import LockError, StaleLockError, UvError
from venvlayers.fsutil import sha256_source, sha256_text, write_text_atomic
from venvlayers.gha import Reporter
from venvlayers.graph import Layer, StackGraph, run_in_stack_order
from venvlayers.models import LockMetadata, read_model
from venvlayers.platforms import (
    MARKERS,
    accepted_tags,
    marker_environment,
    target_text,
    wheel_platform_tags,
    wheel_tags,
)
from venvlayers.spec import LayerKind, module_name
from venvlayers.uv import run_uv, translate_lock_failure

REQUIREMENTS_DIR = "requirements"
# Settings venvlayers always decides itself; user values for these are ignored.
_MANAGED_UV_SETTINGS = {
    "environments",
    "required-environments",
    "constraint-dependencies",
    "no-build",
    "package",
    "cache-keys",
}


@dataclass(frozen=True)
class LockPaths:
    folder: Path
    pylock: Path
    meta: Path
    packages: Path


def lock_paths(graph: StackGraph, layer_name: str) -> LockPaths:
    folder = graph.spec.spec_dir / REQUIREMENTS_DIR / layer_name
    return LockPaths(
        folder=folder,
        pylock=folder / f"pylock.{layer_name}.toml",
        meta=folder / f"pylock.{layer_name}.meta.json",
        packages=folder / f"packages-{layer_name}.txt",
    )


@dataclass(frozen=True)
class LockedPackage:
    name: str
    version: str
    marker: str | None = None
    wheels: tuple[str, ...] = ()

    def constraint(self) -> str:
        return f"{self.name}=={self.version}" + (f" ; {self.marker}" if self.marker else "")


def read_pylock(path: Path) -> list[LockedPackage]:
    try:
        return read_pylock_text(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LockError(f"{path}: lock file not found; run `venvlayers lock`", path=path) from None
    except (tomllib.TOMLDecodeError, KeyError) as exc:
        raise LockError(
            f"{path}: corrupt lock file ({exc}); run `venvlayers lock --reset-lock '*'`", path=path
        ) from None


@dataclass
class LayerLockState:
    """What is known about one layer's lock during a lock run."""

    layer: Layer
    paths: LockPaths
    stale_reasons: list[str] = field(default_factory=list)
    packages: list[LockedPackage] = field(default_factory=list)  # this layer's own lock
    # name -> (every locked entry of it, e.g. one per platform marker; the providing layer)
    provided: dict[str, tuple[tuple[LockedPackage, ...], str]] = field(default_factory=dict)
    metadata: LockMetadata | None = None
    changed: bool = False

    @property
    def stale(self) -> bool:
        return bool(self.stale_reasons)


@dataclass
class LockResult:
    layers: list[LayerLockState]

    @property
    def stale(self) -> list[LayerLockState]:
        return [state for state in self.layers if state.stale]

    @property
    def changed(self) -> list[str]:
        return [state.layer.name for state in self.layers if state.changed]


def _hash(data: Any) -> str:
    return "sha256:" + sha256_text(json.dumps(data, sort_keys=True, separators=(",", ":")))


def exclude_newer(graph: StackGraph) -> str | None:
    value = os.environ.get("UV_EXCLUDE_NEWER") or graph.spec.uv_config.get("exclude-newer")
    return str(value) if value else None


def _parse_time(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def layer_uv_settings(graph: StackGraph, layer: Layer) -> dict[str, Any]:
    """The spec's uv settings adjusted for one layer (priority_indexes, package_indexes)."""
    settings = {k: v for k, v in graph.spec.uv_config.items() if k not in _MANAGED_UV_SETTINGS}
    indexes = [dict(index) for index in settings.get("index", [])]
    if layer.spec.priority_indexes:
        by_name = {index.get("name"): index for index in indexes}
        first = []
        for name in layer.spec.priority_indexes:
            promoted = dict(by_name[name])
            promoted.pop("explicit", None)
            first.append(promoted)
        indexes = first + [i for i in indexes if i.get("name") not in layer.spec.priority_indexes]
    if indexes:
        settings["index"] = indexes
    sources = dict(settings.get("sources", {}))
    for package, index_name in layer.package_indexes.items():
        sources[package] = {"index": index_name}
    if sources:
        settings["sources"] = sources
    return settings


def _other_inputs(graph: StackGraph, layer: Layer) -> dict[str, Any]:
    return {
        "python": layer.python_implementation,
        "platforms": [str(p) for p in layer.platforms],
        "linux_target": list(layer.linux_target),
        "macosx_target": list(layer.macosx_target),
        "uv": layer_uv_settings(graph, layer),
    }


def _version_inputs(graph: StackGraph, layer: Layer) -> dict[str, Any]:
    spec = layer.spec
    if spec.kind is not LayerKind.APPLICATION or spec.launch_module is None:
        return {}
    base = graph.spec.spec_dir
    return {
        "launch_module": module_name(spec.launch_module),
        "launch_module_hash": module_hash(base / spec.launch_module),
        "support_modules": {module_name(m): module_hash(base / m) for m in spec.support_modules},
    }


def module_hash(path: Path) -> str:
    """Content hash of a module file or package folder (names + bytes, no caches)."""
    if path.is_file():
        return "sha256:" + sha256_source(path)
    entries = []
    for item in sorted(path.rglob("*")):
        relative = item.relative_to(path)
        if item.is_file() and not any(
            part == "__pycache__" or part.startswith(".git") for part in relative.parts
        ):
            entries.append([relative.as_posix(), sha256_source(item)])
    return _hash(entries)


def lock_stack(
    graph: StackGraph,
    *,
    include: Sequence[str] = (),
    reset: Sequence[str] = (),
    check: bool = False,
    build_dir: Path | None = None,
    reporter: Reporter,
    allow_missing: bool = False,
) -> LockResult:
    """Lock the selected layers in dependency order, relocking only what needs it.

    With ``check=True`` nothing is written; the result lists stale layers and why.
    """
    selection = graph.select(include, allow_missing=allow_missing)
    to_reset = set(graph.select(reset).matched) if reset else set()
    # Matched layers and everything above them may be relocked; layers below are only read
    updatable = set(selection.matched)
    for name in selection.matched:
        updatable.update(graph.dependents(name))
    build_dir = build_dir or graph.spec.spec_dir / "_build"
    cutoff = exclude_newer(graph)
    states: dict[str, LayerLockState] = {}

    def lock_layer(layer: Layer) -> LayerLockState:
        state = LayerLockState(layer=layer, paths=lock_paths(graph, layer.name))
        states[layer.name] = state
        for lower in layer.dependencies:
            lower_state = states[lower]
            for name, provided in lower_state.provided.items():
                state.provided.setdefault(name, provided)
            if lower_state.stale and check:
                state.stale_reasons.append(f"lower layer {lower} is stale")
        inputs = _lock_inputs(graph, layer, state)
        _assess(state, inputs, cutoff, force=layer.name in to_reset)
        if state.stale and not check:
            # Layers below the selection are read, not rewritten; one with no lock at all
            # cannot be read, so it is locked (creating a lock rewrites nothing).
            if layer.name not in updatable and state.metadata is not None:
                reporter.warning(
                    f"{layer.name}: lock is stale ({'; '.join(state.stale_reasons)}) but not selected; using it as is"
                )
            else:
                with reporter.group(f"lock {layer.name}"):
                    _relock(
                        graph,
                        state,
                        inputs,
                        build_dir,
                        cutoff,
                        reporter,
                        reset=layer.name in to_reset,
                    )
                state.stale_reasons = []
        if not state.stale or not check:
            if not state.packages and state.paths.pylock.exists():
                state.packages = read_pylock(state.paths.pylock)
            own: dict[str, list[LockedPackage]] = {}
            for package in state.packages:
                own.setdefault(package.name, []).append(package)
            for name, entries in own.items():
                # the lowest layer in sys.path order that provides a name wins, with all its entries
                state.provided.setdefault(name, (tuple(entries), layer.name))
        return state

    # Layers that do not depend on each other lock concurrently (each is one uv process)
    selected = [layer for layer in graph if layer.name in selection]
    run_in_stack_order(selected, lock_layer)
    return LockResult([states[layer.name] for layer in selected])


@dataclass(frozen=True)
class LockInputs:
    requirements: tuple[str, ...]
    constraints: tuple[str, ...]
    omitted: tuple[str, ...]
    other: dict[str, Any]
    version: dict[str, Any]

    def input_hash(self) -> str:
        return _hash({"requirements": self.requirements, "constraints": self.constraints})


def _lock_inputs(graph: StackGraph, layer: Layer, state: LayerLockState) -> LockInputs:
    names = sorted(state.provided)
    return LockInputs(
        requirements=tuple(layer.spec.requirements),
        constraints=tuple(pkg.constraint() for name in names for pkg in state.provided[name][0]),
        omitted=tuple(names),
        other=_other_inputs(graph, layer),
        version=_version_inputs(graph, layer),
    )


def _assess(state: LayerLockState, inputs: LockInputs, cutoff: str | None, *, force: bool) -> None:
    """Fill ``state.stale_reasons`` (empty when the lock on disk is up to date)."""
    paths = state.paths
    reasons = state.stale_reasons
    if paths.meta.exists():
        state.metadata = read_model(LockMetadata, paths.meta, LockError)
    if force:
        reasons.append("--reset-lock")
    if state.metadata is None or not paths.pylock.exists():
        reasons.append("no lock yet")
        return
    meta = state.metadata
    if meta.requirements_hash != "sha256:" + sha256_source(paths.pylock):
        reasons.append("lock file was edited after locking")
    if meta.lock_input_hash != inputs.input_hash():
        reasons.append("requirements or lower layers' locks changed")
    if meta.other_inputs_hash != _hash(inputs.other):
        reasons.append("python version, platforms or index settings changed")
    if meta.version_inputs_hash != _hash(inputs.version):
        reasons.append("launch or support modules changed")
    if cutoff:
        locked, limit = _parse_time(meta.locked_at), _parse_time(cutoff)
        if locked and limit and locked > limit:
            reasons.append(f"locked at {meta.locked_at}, after exclude-newer {cutoff}")


# [tool.uv] keys uv reads as part of the project itself. Every other key is a resolver
# setting, which uv drops under --no-config unless it comes from an explicit --config-file.
_PROJECT_UV_KEYS = {
    "sources",
    "override-dependencies",
    "build-constraint-dependencies",
    "dev-dependencies",
    "conflicts",
    "default-groups",
    "workspace",
    "managed",
}


def _config_file(settings: dict[str, Any]) -> str:
    """The ``uv.toml`` passed with --config-file: the resolver settings of the layer."""
    config = {k: v for k, v in settings.items() if k not in _PROJECT_UV_KEYS}
    config["no-build"] = True
    return tomlkit.dumps(config)


def write_layer_uv_config(graph: StackGraph, layer: Layer, path: Path) -> Path:
    """Write the layer's resolver settings as a uv.toml (for --config-file); returns ``path``."""
    write_text_atomic(path, _config_file(layer_uv_settings(graph, layer)))
    return path


def _project_file(layer: Layer, inputs: LockInputs, settings: dict[str, Any]) -> str:
    environments = [MARKERS[p].marker() for p in layer.platforms]
    major_minor = ".".join(layer.py_version.split(".")[:2])
    doc = tomlkit.document()
    doc["project"] = {
        "name": f"venvlayers-lock-{layer.name}".lower().replace("@", "-"),
        "version": "0",
        "requires-python": f"=={major_minor}.*",
        "dependencies": list(inputs.requirements),
    }
    tool_uv: dict[str, Any] = {
        "package": False,
        "environments": environments,
        "required-environments": environments,
        # Indexes go in both files: uv looks up the index a source names among the
        # project's own indexes, but resolves against those of the --config-file.
        **{k: v for k, v in settings.items() if k in _PROJECT_UV_KEYS or k == "index"},
    }
    if inputs.constraints:
        tool_uv["constraint-dependencies"] = list(inputs.constraints)
    doc["tool"] = {"uv": tool_uv}
    return tomlkit.dumps(doc)


def _relock(
    graph: StackGraph,
    state: LayerLockState,
    inputs: LockInputs,
    build_dir: Path,
    cutoff: str | None,
    reporter: Reporter,
    *,
    reset: bool,
) -> None:
    layer = state.layer
    if not layer.platforms:
        raise LockError(
            f"{graph.path}: layer {layer.name} targets no platform (its 'platforms' and those of the layers below have nothing in common)",
            path=graph.path,
            line=layer.spec.line,
        )
    workspace = build_dir / "_lock" / layer.name
    if reset and workspace.exists():
        shutil.rmtree(workspace)
    if not inputs.requirements:
        # Nothing to resolve (typical for runtimes): the lock is known without running uv
        _record_lock(state, inputs, empty_pylock(layer), cutoff, [], reporter)
        return
    workspace.mkdir(parents=True, exist_ok=True)
    settings = layer_uv_settings(graph, layer)
    write_text_atomic(workspace / "pyproject.toml", _project_file(layer, inputs, settings))
    write_text_atomic(workspace / "uv.toml", _config_file(settings))
    config = ["--config-file", str(workspace / "uv.toml")]
    env = {"MACOSX_DEPLOYMENT_TARGET": "{}.{}".format(*layer.macosx_target)}
    reporter.info(f"{layer.name}: resolving for {', '.join(str(p) for p in layer.platforms)}")
    try:
        run_uv(
            ["lock", *config, "--python", layer.py_version],
            cwd=workspace,
            env=env,
            what=f"lock {layer.name}",
        )
    except UvError as exc:
        pins = [
            (pkg.name, pkg.version, provider)
            for entries, provider in state.provided.values()
            for pkg in entries
        ]
        raise translate_lock_failure(
            str(exc),
            spec_path=graph.path,
            layer=state.layer.name,
            line=state.layer.spec.line,
            platforms=state.layer.platforms,
            pins=pins,
        ) from None
    omit: list[str] = []
    for name in inputs.omitted:
        omit += ["--no-emit-package", name]
    exported = run_uv(
        ["export", *config, "--format", "pylock.toml", "--frozen", "--no-header", *omit],
        cwd=workspace,
        env=env,
        what=f"export the lock of {layer.name}",
    ).stdout
    lock_text = _normalize_pylock(exported)
    _check_wheels(graph, layer, tomllib.loads(lock_text))
    resolved = _resolved_names(workspace / "uv.lock")
    shared = [
        pkg
        for name, (entries, _) in state.provided.items()
        if canonicalize_name(name) in resolved
        for pkg in entries
    ]
    _record_lock(state, inputs, lock_text, cutoff, shared, reporter)


def empty_pylock(layer: Layer) -> str:
    """The lock of a layer with no requirements, byte for byte as ``uv export`` writes it."""
    environments = ", ".join(
        f"\"platform_machine == '{MARKERS[p].platform_machine}' and sys_platform == '{MARKERS[p].sys_platform}'\""
        for p in layer.platforms
    )
    major_minor = ".".join(layer.py_version.split(".")[:2])
    return (
        'lock-version = "1.0"\ncreated-by = "uv"\n'
        f"environments = [{environments}]\n"
        f'requires-python = "=={major_minor}.*"\npackages = []\n'
    )


def _record_lock(
    state: LayerLockState,
    inputs: LockInputs,
    lock_text: str,
    cutoff: str | None,
    shared: list[LockedPackage],
    reporter: Reporter,
) -> None:
    """Write the lock, its metadata and package summary (each only if changed)."""
    layer = state.layer
    paths = state.paths
    previous = state.metadata
    content_hash = "sha256:" + sha256_text(lock_text)
    content_changed = previous is None or previous.requirements_hash != content_hash
    version_changed = previous is not None and previous.version_inputs_hash != _hash(inputs.version)
    lock_version = 1
    if layer.spec.versioned and previous is not None:
        lock_version = previous.lock_version + (1 if content_changed or version_changed else 0)
    if content_changed or previous is None:
        locked_at = (
            _format_time(cutoff) if cutoff else datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        )
    else:
        locked_at = previous.locked_at
    meta = LockMetadata(
        requirements_hash=content_hash,
        lock_input_hash=inputs.input_hash(),
        other_inputs_hash=_hash(inputs.other),
        version_inputs_hash=_hash(inputs.version),
        lock_version=lock_version,
        locked_at=locked_at,
    )
    changed = write_text_atomic(paths.pylock, lock_text)
    changed = meta.write(paths.meta) or changed
    packages = read_pylock_text(lock_text)
    changed = (
        write_text_atomic(
            paths.packages, _packages_summary(layer, packages + shared, state.provided)
        )
        or changed
    )
    state.packages = packages
    state.metadata = meta
    state.changed = changed
    reporter.info(
        f"{layer.name}: {'updated' if changed else 'unchanged'} ({len(packages)} packages)"
    )


def read_pylock_text(text: str) -> list[LockedPackage]:
    """The packages of a PEP 751 lock (wheel file names from ``name`` or the URL's end)."""
    data = tomllib.loads(text)
    return [
        LockedPackage(
            str(p["name"]),
            str(p.get("version", "")),
            p.get("marker"),
            tuple(
                str(w.get("name") or str(w.get("url", "")).rsplit("/", 1)[-1])
                for w in p.get("wheels", [])
            ),
        )
        for p in data.get("packages", [])
    ]


def _resolved_names(uv_lock: Path) -> set[str]:
    """Every package name in a uv.lock resolution (lower layers' ones included)."""
    data = tomllib.loads(uv_lock.read_text(encoding="utf-8"))
    return {canonicalize_name(str(p["name"])) for p in data.get("package", [])}


def _format_time(value: str) -> str:
    parsed = _parse_time(value)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if parsed else value


def _normalize_pylock(text: str) -> str:
    """Drop uv's generated-by comment lines so the lock depends only on its content."""
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    return "\n".join(lines).strip() + "\n"


def _packages_summary(
    layer: Layer,
    packages: list[LockedPackage],
    provided: dict[str, tuple[tuple[LockedPackage, ...], str]],
) -> str:
    lines = [f"# Packages of {layer.name}; 'from X' marks packages a lower layer provides"]
    for package in sorted(packages, key=lambda p: p.name):
        marker = f" ; {package.marker}" if package.marker else ""
        origin = provided.get(package.name)
        suffix = f"  # from {origin[1]}" if origin else ""
        lines.append(f"{package.name}=={package.version}{marker}{suffix}")
    return "\n".join(lines) + "\n"


def _check_wheels(graph: StackGraph, layer: Layer, lock: dict[str, Any]) -> None:
    """Every locked package must have a wheel installable on every target platform."""
    py_nodot = "".join(layer.py_version.split(".")[:2])
    for platform in layer.platforms:
        plat_tags = wheel_platform_tags(
            platform, glibc=layer.linux_target, macosx=layer.macosx_target
        )
        environment = marker_environment(platform, layer.py_version)
        accepted = accepted_tags(py_nodot, plat_tags)
        for package in lock.get("packages", []):
            marker = package.get("marker")
            if marker and not Marker(marker).evaluate(environment):
                continue
            wheels = [
                str(w.get("url", w.get("name", ""))).rsplit("/", 1)[-1]
                for w in package.get("wheels", [])
            ]
            if any(wheel_tags(w) & accepted for w in wheels):
                continue
            target = target_text(platform, glibc=layer.linux_target, macosx=layer.macosx_target)
            raise LockError(
                f"{graph.path}: layer {layer.name}: {package['name']} {package.get('version', '')} has no wheel for {target};"
                f" remove {platform} from the layer's 'platforms'"
                + (
                    " or raise 'linux_target'"
                    if platform.is_linux
                    else " or raise 'macosx_target'"
                    if platform.is_macos
                    else ""
                )
                + " (or pin a version that has one)",
                path=graph.path,
                line=layer.spec.line,
            )


def require_fresh_locks(result: LockResult) -> None:
    if result.stale:
        details = "; ".join(f"{s.layer.name} ({', '.join(s.stale_reasons)})" for s in result.stale)
        raise StaleLockError(f"stale locks: {details}; run `venvlayers lock` and commit the result")
