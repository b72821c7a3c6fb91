"""Building layers in two halves: what needs only the runtime, then what needs lower layers.

A framework's or app's environment and package installation need only its runtime, so
they run for every layer at once; linking to the lower layers waits for those layers to
be linked, not checked: ``work(layer, steps)`` calls ``steps.await_lower()`` where its
second half starts and ``steps.linked()`` once layers above may link to it (its check
then runs alongside theirs).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from venvlayers.errors import BuildError
from venvlayers.graph import Layer, run_in_stack_order
from venvlayers.spec import LayerKind

T = TypeVar("T")


class LowerLayerFailed(BuildError):
    """A lower layer failed (that failure is the one reported)."""


@dataclass(frozen=True)
class Steps:
    await_lower: Callable[[], None]  # blocks until every lower layer is linked
    linked: Callable[[], None]  # this layer is linked: the layers above may go on


def _nothing() -> None:
    pass


def run_pipelined(
    layers: Sequence[Layer],
    work: Callable[[Layer, Steps], T],
    *,
    workers: int | None = None,
) -> dict[str, T]:
    """Runtimes first (in stack order), then every other layer at once, each waiting in
    ``steps.await_lower`` until its lower layers are linked. Layers go to a first-in-first-out pool in stack
    order, so whatever a layer waits for has started before it. After a failure nothing
    new starts; the first failure is raised once running work has finished."""
    runtimes = [layer for layer in layers if layer.kind is LayerKind.RUNTIME]
    done = run_in_stack_order(
        runtimes, lambda layer: work(layer, Steps(_nothing, _nothing)), workers=workers
    )
    others = [layer for layer in layers if layer.kind is not LayerKind.RUNTIME]
    linked = {layer.name: threading.Event() for layer in others}  # or finished, or failed
    failed: set[str] = set()

    def await_lower(layer: Layer) -> None:
        for name in layer.dependencies:
            event = linked.get(name)
            if event is not None:
                event.wait()
            if name in failed:
                raise LowerLayerFailed(name)

    def run(layer: Layer) -> T:
        try:
            if failed:
                raise LowerLayerFailed(sorted(failed)[0])
            return work(layer, Steps(lambda: await_lower(layer), linked[layer.name].set))
        except BaseException:
            failed.add(layer.name)
            raise
        finally:
            linked[layer.name].set()

    # mostly waiting on uv: one thread per layer unless told otherwise
    with ThreadPoolExecutor(workers or max(1, len(others)), thread_name_prefix="build") as pool:
        futures = [(layer, pool.submit(run, layer)) for layer in others]
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
