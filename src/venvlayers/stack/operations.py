"""Which operations a command runs on which layer: venvstacks 0.8.0's layer selection.

Each command chooses, for every layer that targets some platform, whether to lock it
(yes, only if its lock is not valid, or no), reset its lock, build it (yes, if needed or
no) and publish it. Without ``--include`` every layer gets the command's operations. With
``--include`` only the matching layers do; the layers they stand on (*dependencies*) may
be locked and built if needed (never published) unless ``--*-dependencies`` asks for more,
and the layers standing on them (*derived*) are left out unless ``--*-derived`` adds them;
locking a layer always relocks the layers above it. These are venvstacks' rules
(``BuildEnvironment.select_layers``), so a script behaves the same with either tool.

``--include-related`` is venvlayers' own selection: every operation on the matching
layers, everything above them and everything those stand on.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, replace

from venvlayers.core.errors import SpecError
from venvlayers.core.platforms import Platform
from venvlayers.stack.graph import StackGraph
from venvlayers.stack.spec import LayerKind

#: A tri-state choice: True (do it), None (only if needed), False (do not).
Choice = bool | None


@dataclass(frozen=True)
class LayerOperations:
    """What a command does to one layer (venvstacks' ``want_*`` flags)."""

    lock: Choice = False
    reset_lock: bool = False
    build: Choice = False
    publish: bool = False
    excluded: bool = False

    def labels(self) -> list[str]:
        """venvstacks' names for the selected operations, as ``--show`` lists them."""
        labels = ["reset-lock"] if self.reset_lock else []
        for name, state in (("lock", self.lock), ("build", self.build)):
            if state:
                labels.append(name)
            elif state is None:
                labels.append(f"{name}-if-needed")
        if self.publish:
            labels.append("publish")
        return labels


EXCLUDED = LayerOperations(excluded=True)


@dataclass(frozen=True)
class Plan:
    """The operations of one command, per layer (layers that target no platform are absent)."""

    layers: dict[str, LayerOperations]

    def _names(self, wanted: Callable[[LayerOperations], bool]) -> list[str]:
        return [name for name, ops in self.layers.items() if not ops.excluded and wanted(ops)]

    def shown(self) -> list[str]:
        """The layers ``--show`` lists (every layer not excluded)."""
        return self._names(lambda ops: True)

    def to_lock(self) -> list[str]:
        return self._names(lambda ops: ops.lock is not False)

    def to_relock(self) -> set[str]:
        """Layers relocked even when their lock is valid (``lock`` without ``--if-needed``)."""
        return set(self._names(lambda ops: ops.lock is True))

    def to_reset(self) -> set[str]:
        return set(self._names(lambda ops: ops.reset_lock))

    def to_build(self) -> list[str]:
        return self._names(lambda ops: ops.build is not False)

    def to_publish(self) -> list[str]:
        return self._names(lambda ops: ops.publish)


def match_layers(
    graph: StackGraph,
    patterns: Iterable[str],
    *,
    allow_missing: bool = False,
    option: str = "--include",
) -> tuple[set[str], list[str]]:
    """The layers (by layer name: ``app-x``, ``framework-y``, runtime names) that any
    fnmatch pattern matches, and the patterns matching none (an error unless
    ``allow_missing``, as in venvstacks). Layers that target no platform never match."""
    candidates = [layer.name for layer in graph if layer.platforms]
    matched: set[str] = set()
    unmatched: list[str] = []
    for pattern in patterns:
        hits = {name for name in candidates if fnmatch.fnmatch(name, pattern)}
        if not hits:
            unmatched.append(pattern)
        matched |= hits
    if unmatched and not allow_missing:
        raise SpecError(
            f"{graph.path}: {option} {', '.join(map(repr, unmatched))} matches no layer"
            f" (layers are: {', '.join(candidates)}); pass --allow-missing to allow that",
            path=graph.path,
        )
    return matched, unmatched


def _for_layer(
    graph: StackGraph, name: str, platform: Platform, lock: Choice, build: Choice, publish: bool
) -> LayerOperations:
    """venvstacks' ``select_operations`` on one layer: build and publish only what targets
    this platform (locking is cross-platform)."""
    here = graph[name].targets(platform)
    return LayerOperations(lock=lock, build=build and here, publish=publish and here)


def every_layer(
    graph: StackGraph,
    platform: Platform,
    *,
    lock: Choice,
    build: Choice,
    publish: bool,
) -> Plan:
    """The same operations on every layer (no ``--include``)."""
    return Plan(
        {
            layer.name: _for_layer(graph, layer.name, platform, lock, build, publish)
            for layer in graph
            if layer.platforms
        }
    )


@dataclass(frozen=True)
class Widening:
    """``--*-dependencies`` and ``--*-derived``: which related layers get which operations."""

    lock_dependencies: bool = False
    build_dependencies: bool = False
    publish_dependencies: bool = False
    build_derived: bool = False
    publish_derived: bool = False


def included_layers(
    graph: StackGraph,
    platform: Platform,
    included: Collection[str],
    *,
    lock: Choice,
    build: Choice,
    publish: bool,
    widening: Widening = Widening(),
    reset: Collection[str] = (),
) -> Plan:
    """venvstacks' ``select_layers``: the operations on the included layers, and on the
    layers they stand on or that stand on them as ``widening`` asks."""
    w = widening
    lock_deps, build_deps, publish_deps = (
        w.lock_dependencies,
        w.build_dependencies,
        w.publish_dependencies,
    )
    build_derived, publish_derived = w.build_derived, w.publish_derived
    # later stages skip what earlier ones skip
    if lock:
        lock_derived = True  # relocking a layer relocks everything above it
        if not lock_deps:
            build_deps = publish_deps = False
    else:
        lock_derived = lock_deps = False
    if build:
        if not build_deps:
            publish_deps = False
        if not build_derived:
            publish_derived = False
    else:
        build_derived = build_deps = False
    if not publish:
        publish_derived = publish_deps = False

    layers = {layer.name: layer for layer in graph if layer.platforms}
    plan: dict[str, LayerOperations] = {}
    for name in layers:
        if name in included:
            ops = _for_layer(graph, name, platform, lock, build, publish)
            plan[name] = replace(ops, reset_lock=name in reset)
        else:
            plan[name] = EXCLUDED
    check_derived = lock_derived or build_derived or publish_derived
    derived: set[str] = set()
    dependencies: set[str] = set()
    for name, layer in layers.items():
        if layer.kind is LayerKind.RUNTIME:
            continue
        direct = layer.dependencies  # the runtime and every framework below (C3)
        if name in included:
            dependencies.update(d for d in direct if d not in included)
        elif check_derived and any(d in included for d in direct):
            derived.add(name)
    conflicts = derived & dependencies
    if conflicts:
        cause = None
        if lock_derived != lock_deps:
            cause = "lock"
        elif build_derived != build_deps:
            cause = "build"
        elif publish_derived != publish_deps:
            cause = "publication"
        if cause is not None:
            raise SpecError(
                f"{graph.path}: conflicting {cause} instructions for {sorted(conflicts)}"
                " (each is both above and below an included layer); include them too, or"
                " pass both the --*-dependencies and --*-derived options",
                path=graph.path,
            )
    for name in derived:
        ops = _for_layer(graph, name, platform, lock_derived, build_derived, publish_derived)
        plan[name] = replace(ops, reset_lock=lock_derived and name in reset)
    for name in dependencies:
        ops = _for_layer(graph, name, platform, lock_deps or None, build_deps or None, publish_deps)
        plan[name] = replace(ops, reset_lock=lock_deps and name in reset)
    return Plan(plan)


def related_layers(
    graph: StackGraph,
    platform: Platform,
    included: Collection[str],
    *,
    lock: Choice,
    build: Choice,
    publish: bool,
    reset: Collection[str] = (),
) -> Plan:
    """venvlayers' ``--include-related``: the included layers, every layer above them and
    every layer those stand on, all with the command's operations."""
    wanted = set(included)
    for name in included:
        wanted.update(graph.dependents(name))
    for name in list(wanted):
        wanted.update(graph[name].dependencies)
    plan = every_layer(graph, platform, lock=lock, build=build, publish=publish)
    return Plan(
        {
            name: replace(ops, reset_lock=name in reset) if name in wanted else EXCLUDED
            for name, ops in plan.layers.items()
        }
    )
