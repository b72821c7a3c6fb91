"""Building layers in two halves: what needs only the runtime, then what needs lower layers.

A framework's or app's environment and package installation need only its runtime, so
they run for every layer at once; linking to the lower layers waits for those layers to
be linked, not checked: ``work(layer, steps)`` calls ``steps.await_lower()`` where its
second half starts and ``steps.linked()`` once layers above may link to it (its check
then runs alongside theirs). A runtime calls ``steps.linked()`` once it is installed, so
the layers on it start while it is checked.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from venvlayers.core.errors import BuildError
from venvlayers.stack.graph import Layer
from venvlayers.stack.spec import LayerKind

T = TypeVar("T")


class LowerLayerFailed(BuildError):
    """A lower layer failed (that failure is the one reported)."""


@dataclass(frozen=True)
class Steps:
    await_lower: Callable[[], None]  # blocks until every lower layer is linked
    linked: Callable[[], None]  # this layer is linked: the layers above may go on


def run_pipelined(
    layers: Sequence[Layer],
    work: Callable[[Layer, Steps], T],
    *,
    workers: int | None = None,
) -> dict[str, T]:
    """Every layer at once: a framework or app starts once its runtime is linked (its
    environment is made from the runtime's python) and waits in ``steps.await_lower``
    until its other lower layers are linked; no layer waits for a lower layer's check.
    Layers go to a first-in-first-out pool in stack order (runtimes first), so whatever a
    layer waits for has started before it. After a failure nothing new starts; the first
    failure is raised once running work has finished."""
    linked = {layer.name: threading.Event() for layer in layers}  # or finished, or failed
    failed: set[str] = set()

    def await_layers(names: Sequence[str]) -> None:
        for name in names:
            event = linked.get(name)
            if event is not None:
                event.wait()
            if name in failed:
                raise LowerLayerFailed(name)

    def run(layer: Layer) -> T:
        try:
            if failed:
                raise LowerLayerFailed(sorted(failed)[0])
            if layer.kind is not LayerKind.RUNTIME:
                await_layers([layer.runtime])
            steps = Steps(lambda: await_layers(layer.dependencies), linked[layer.name].set)
            return work(layer, steps)
        except BaseException:
            failed.add(layer.name)
            raise
        finally:
            linked[layer.name].set()

    # mostly waiting on uv: one thread per layer unless told otherwise
    ordered = sorted(layers, key=lambda layer: layer.kind is not LayerKind.RUNTIME)  # stable
    done: dict[str, T] = {}
    with ThreadPoolExecutor(workers or max(1, len(layers)), thread_name_prefix="build") as pool:
        futures = [(layer, pool.submit(run, layer)) for layer in ordered]
        first_error: BaseException | None = None
        for layer, future in futures:
            error = future.exception()
            if error is None:
                done[layer.name] = future.result()
            elif first_error is None and not isinstance(error, LowerLayerFailed):
                first_error = error
    if first_error is not None:
        raise first_error
    return done
