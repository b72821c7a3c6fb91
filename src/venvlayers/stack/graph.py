"""The layer DAG: references, cycles, C3 sys.path order, platform narrowing, selection."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from packaging.utils import canonicalize_name

from venvlayers.core.errors import SpecError
from venvlayers.core.platforms import ALL_PLATFORMS, DEFAULT_GLIBC, DEFAULT_MACOSX, Platform
from venvlayers.stack.spec import LayerKind, LayerSpec, StackSpec
from venvlayers.stack.spec_file import load_stack_spec


@dataclass(frozen=True)
class Layer:
    """A layer with everything derived from its place in the stack."""

    spec: LayerSpec
    runtime: str
    """layer_name of the runtime this layer runs on (itself for a runtime)."""
    frameworks: tuple[str, ...]
    """layer_names of every framework below, in C3 (sys.path priority) order."""
    platforms: tuple[Platform, ...]
    linux_target: tuple[int, int]
    macosx_target: tuple[int, int]
    package_indexes: dict[str, str] = field(default_factory=dict)
    python_implementation: str = ""

    @property
    def name(self) -> str:
        return self.spec.layer_name

    @property
    def kind(self) -> LayerKind:
        return self.spec.kind

    @property
    def py_version(self) -> str:
        return self.python_implementation.partition("@")[2]

    @property
    def implementation(self) -> str:
        """``platform_python_implementation`` of the layer's runtime: CPython or PyPy."""
        return "PyPy" if self.python_implementation.startswith("pypy@") else "CPython"

    @property
    def dependencies(self) -> tuple[str, ...]:
        """Lower layers in sys.path order: frameworks (C3), then the runtime."""
        if self.kind is LayerKind.RUNTIME:
            return ()
        return (*self.frameworks, self.runtime)

    def targets(self, platform: Platform) -> bool:
        return platform in self.platforms


@dataclass(frozen=True)
class Selection:
    """Layers an operation covers: those matched by --include plus their relatives."""

    names: tuple[str, ...]
    matched: frozenset[str]

    def __contains__(self, name: object) -> bool:
        return name in self.names


class StackGraph:
    def __init__(self, spec: StackSpec, layers: dict[str, Layer]):
        self.spec = spec
        self.layers = layers

    @property
    def path(self) -> Path:
        return self.spec.path

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers.values())

    def __getitem__(self, name: str) -> Layer:
        return self.layers[name]

    def of_kind(self, kind: LayerKind) -> list[Layer]:
        return [layer for layer in self if layer.kind is kind]

    def dependents(self, name: str) -> list[str]:
        """Every layer that has ``name`` below it (directly or not), in stack order."""
        return [layer.name for layer in self if name in layer.dependencies]

    def select(self, patterns: Sequence[str] = (), *, allow_missing: bool = False) -> Selection:
        """Layers matching any fnmatch pattern (by layer name or spec name), with relatives."""
        if not patterns:
            return Selection(tuple(self.layers), frozenset(self.layers))
        matched: set[str] = set()
        for pattern in patterns:
            hits = {
                layer.name
                for layer in self
                if fnmatch.fnmatchcase(layer.name, pattern)
                or fnmatch.fnmatchcase(layer.spec.name, pattern)
            }
            if not hits and not allow_missing:
                names = ", ".join(self.layers)
                raise SpecError(
                    f"{self.path}: --include {pattern!r} matches no layer; layers are: {names}",
                    path=self.path,
                )
            matched |= hits
        wanted = set(matched)
        for name in matched:
            wanted.update(self.dependents(name))
        # Everything a wanted layer stands on must be present too (read, if not rewritten)
        for name in list(wanted):
            wanted.update(self.layers[name].dependencies)
        return Selection(tuple(n for n in self.layers if n in wanted), frozenset(matched))


def load_stack(path: Path | str) -> StackGraph:
    """Load, validate and link a stack spec; raises SpecError naming file, layer and field."""
    return build_graph(load_stack_spec(path))


def _fail(spec: StackSpec, layer: LayerSpec, field: str | None, message: str) -> SpecError:
    field_part = f" field '{field}'" if field else ""
    return SpecError(
        f"{spec.path}: {layer.kind.value} layer '{layer.name}'{field_part}: {message}",
        path=spec.path,
        line=layer.line,
    )


def build_graph(spec: StackSpec) -> StackGraph:
    runtimes = {lay.name: lay for lay in spec.layers if lay.kind is LayerKind.RUNTIME}
    frameworks = {lay.name: lay for lay in spec.layers if lay.kind is LayerKind.FRAMEWORK}
    _check_cycles(spec, frameworks)

    resolved: dict[str, Layer] = {}
    declared_frameworks: set[str] = set()
    for layer in spec.layers:
        if layer.kind is LayerKind.RUNTIME:
            resolved[layer.layer_name] = Layer(
                spec=layer,
                runtime=layer.layer_name,
                frameworks=(),
                platforms=_narrow(spec, layer, []),
                linux_target=layer.linux_target or DEFAULT_GLIBC,
                macosx_target=layer.macosx_target or DEFAULT_MACOSX,
                package_indexes=dict(layer.package_indexes),
                python_implementation=layer.python_implementation or "",
            )
            continue
        if layer.runtime is not None:
            if layer.runtime not in runtimes:
                known = ", ".join(runtimes) or "none defined"
                raise _fail(
                    spec, layer, "runtime", f"unknown runtime '{layer.runtime}' (runtimes: {known})"
                )
            below = [resolved[layer.runtime]]
            runtime_name = layer.runtime
            linearized: tuple[str, ...] = ()
        else:
            assert layer.frameworks is not None
            for name in layer.frameworks:
                if name in frameworks and name not in declared_frameworks:
                    raise _fail(
                        spec,
                        layer,
                        "frameworks",
                        f"framework '{name}' is declared later in the spec; declare layers after the layers they depend on",
                    )
                if name not in frameworks:
                    known = ", ".join(frameworks) or "none defined"
                    raise _fail(
                        spec,
                        layer,
                        "frameworks",
                        f"unknown framework '{name}' (frameworks: {known})",
                    )
            direct = [resolved["framework-" + name] for name in layer.frameworks]
            runtime_names = {fw.runtime for fw in direct}
            if len(runtime_names) > 1:
                detail = ", ".join(f"'{fw.spec.name}' runs on '{fw.runtime}'" for fw in direct)
                raise _fail(
                    spec,
                    layer,
                    "frameworks",
                    f"frameworks are built on different runtimes ({detail}); a layer needs one runtime",
                )
            runtime_name = direct[0].runtime
            linearized = _linearize(spec, layer, direct, resolved)
            below = [resolved[name] for name in linearized] + [resolved[runtime_name]]
        package_indexes = _inherit_indexes(spec, layer, below)
        runtime_layer = resolved[runtime_name]
        resolved[layer.layer_name] = Layer(
            spec=layer,
            runtime=runtime_name,
            frameworks=linearized,
            platforms=_narrow(spec, layer, below),
            linux_target=max(
                [layer.linux_target or DEFAULT_GLIBC] + [b.linux_target for b in below]
            ),
            macosx_target=max(
                [layer.macosx_target or DEFAULT_MACOSX] + [b.macosx_target for b in below]
            ),
            package_indexes=package_indexes,
            python_implementation=runtime_layer.python_implementation,
        )
        if layer.kind is LayerKind.FRAMEWORK:
            declared_frameworks.add(layer.name)
    return StackGraph(spec, resolved)


def _narrow(spec: StackSpec, layer: LayerSpec, below: Iterable[Layer]) -> tuple[Platform, ...]:
    """A layer targets what it declares (default: every platform all lower layers target).

    Declaring a platform some lower layer does not target is an error, as in venvstacks.
    """
    allowed = set(ALL_PLATFORMS)
    for lower in below:
        allowed &= set(lower.platforms)
    if layer.platforms is None:
        return tuple(p for p in ALL_PLATFORMS if p in allowed)
    unsupported = [p.value for p in ALL_PLATFORMS if p in layer.platforms and p not in allowed]
    if unsupported:
        raise _fail(
            spec,
            layer,
            "platforms",
            f"{', '.join(unsupported)} not targeted by the layers below"
            f" (they target: {', '.join(p.value for p in ALL_PLATFORMS if p in allowed) or 'none'});"
            " remove it or add it to the lower layers' 'platforms'",
        )
    return tuple(p for p in ALL_PLATFORMS if p in layer.platforms)


def _check_cycles(spec: StackSpec, frameworks: dict[str, LayerSpec]) -> None:
    """Report a framework dependency cycle as a cycle (before forward references)."""
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for dep in frameworks[name].frameworks or ():
            if dep not in frameworks:
                continue
            if state.get(dep) == 1:
                cycle = [*trail[trail.index(dep) :], dep] if dep in trail else [name, dep]
                raise _fail(
                    spec,
                    frameworks[name],
                    "frameworks",
                    f"dependency cycle {' -> '.join(cycle)}; frameworks must form a DAG",
                )
            if state.get(dep) is None:
                visit(dep, [*trail, dep])
        state[name] = 2

    for name in frameworks:
        if state.get(name) is None:
            visit(name, [name])


def _linearize(
    spec: StackSpec, layer: LayerSpec, direct: list[Layer], resolved: dict[str, Layer]
) -> tuple[str, ...]:
    """C3 merge of the direct frameworks' own linearizations (the layer itself excluded)."""
    sequences = [[fw.name, *fw.frameworks] for fw in direct]
    sequences.append([fw.name for fw in direct])
    result: list[str] = []
    while any(sequences):
        sequences = [seq for seq in sequences if seq]
        for seq in sequences:
            candidate = seq[0]
            if not any(candidate in other[1:] for other in sequences):
                break
        else:
            heads = [seq[0] for seq in sequences]
            raise _fail(
                spec,
                layer,
                "frameworks",
                f"C3 linearization conflict: cannot order {', '.join(dict.fromkeys(heads))} consistently"
                " (the declared frameworks list them in an order that contradicts their own dependencies);"
                " reorder 'frameworks'",
            )
        result.append(candidate)
        sequences = [seq[1:] if seq[0] == candidate else seq for seq in sequences]
    return tuple(result)


def _inherit_indexes(spec: StackSpec, layer: LayerSpec, below: list[Layer]) -> dict[str, str]:
    """Own package_indexes plus every lower layer's; conflicts need an index_overrides entry."""
    overrides = layer.index_overrides
    chosen: dict[str, tuple[str, str]] = {}
    sources = [(layer.layer_name, layer.package_indexes)] + [
        (b.name, b.package_indexes) for b in below
    ]
    for origin, mapping in sources:
        for raw_package, index in mapping.items():
            package = canonicalize_name(raw_package)  # "Torch" and "torcH" are one package
            effective = overrides.get(index, index)
            if package in chosen and chosen[package][0] != effective:
                first_index, first_origin = chosen[package]
                raise _fail(
                    spec,
                    layer,
                    "package_indexes",
                    f"inconsistent index for package '{package}': {first_origin} uses '{first_index}'"
                    f" but {origin} uses '{index}'; if this is intended add"
                    f' index_overrides = {{{index} = "{first_index}"}}',
                )
            chosen.setdefault(package, (effective, origin))
    return {package: value[0] for package, value in sorted(chosen.items())}


T = TypeVar("T")


def run_in_stack_order(
    layers: Sequence[Layer], work: Callable[[Layer], T], *, workers: int | None = None
) -> dict[str, T]:
    """Run ``work`` on each layer once every layer it depends on (among ``layers``) is done.

    Independent layers run concurrently. The first failure cancels what has not started
    and is raised once running work has finished.
    """
    pending = {layer.name: layer for layer in layers}
    done: dict[str, T] = {}
    running: dict[Future[T], str] = {}
    with ThreadPoolExecutor(max_workers=workers or max(2, os.cpu_count() or 2)) as pool:
        while pending or running:
            for name, layer in list(pending.items()):
                if not any(dep in pending or dep in running.values() for dep in layer.dependencies):
                    running[pool.submit(work, layer)] = name
                    del pending[name]
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                error = future.exception()
                if error is not None:
                    for other in running:
                        other.cancel()
                    raise error
                done[name] = future.result()
    return done
