"""Scheduling on the layer DAG: dependencies first, independent layers together."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from venvlayers.core.errors import BuildError
from venvlayers.stack.graph import Layer, load_stack, run_in_stack_order

DIAMOND = Path(__file__).parent / "data" / "diamond" / "venvstacks.toml"


def test_dependencies_finish_first_and_siblings_overlap() -> None:
    graph = load_stack(DIAMOND)
    layers = list(graph)
    finished: list[str] = []
    lock = threading.Lock()
    # left and right only depend on base: both must be running at once to pass the barrier
    siblings = threading.Barrier(2, timeout=10)

    def work(layer: Layer) -> str:
        with lock:
            assert all(dep in finished for dep in layer.dependencies), layer.name
        if layer.name in ("framework-left", "framework-right"):
            siblings.wait()
        with lock:
            finished.append(layer.name)
        return layer.name.upper()

    results = run_in_stack_order(layers, work, workers=4)
    assert results == {layer.name: layer.name.upper() for layer in layers}
    assert finished.index("framework-diamond") > max(
        finished.index("framework-left"), finished.index("framework-right")
    )


def test_first_failure_is_raised_and_dependents_never_start() -> None:
    graph = load_stack(DIAMOND)
    started: list[str] = []

    def work(layer: Layer) -> None:
        started.append(layer.name)
        if layer.name == "framework-base":
            raise BuildError("base broke")

    with pytest.raises(BuildError, match="base broke"):
        run_in_stack_order(list(graph), work, workers=2)
    assert not {"framework-left", "framework-right", "framework-diamond", "app-app1"} & set(started)
