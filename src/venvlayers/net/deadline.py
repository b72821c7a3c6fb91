"""Wall-clock deadlines: a bound on a whole command, stalls included.

A retry budget alone does not bound a command: one stalled request waits for its socket
timeout, and a server trickling a byte now and then never trips a timeout at all. So:

- ``Deadline(seconds)`` counts from its creation; ``timeout(cap)`` is the socket timeout
  for the next network operation, ``min(cap, remaining)`` (never below ``MIN_TIMEOUT``),
  so no single operation can outlive the deadline by much, and ``remaining()`` /
  ``expired`` tell retry loops when to stop.
- ``run_within(seconds, action, on_timeout)`` runs ``action`` in a worker thread and
  returns its result, or raises ``on_timeout()`` once the deadline (plus ``GRACE``) has
  passed, whatever the worker is stuck in. The worker is a daemon thread: its socket
  timeouts end it soon after, and it never keeps the process alive.

Used by ``release`` (``--deadline``); downloads can use the same object.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: the smallest socket timeout handed out, so a nearly spent deadline still gets an answer
MIN_TIMEOUT = 1.0
#: how long past the deadline ``run_within`` lets the worker finish its own error report
GRACE = 2.0


class Deadline:
    """A point in time, ``seconds`` from now (monotonic clock)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._end = clock() + seconds

    def remaining(self) -> float:
        return self._end - self._clock()

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0

    def timeout(self, cap: float) -> float:
        """The socket timeout for the next operation: at most ``cap``, within the deadline."""
        return max(min(cap, self.remaining()), MIN_TIMEOUT)


def run_within(
    seconds: float, action: Callable[[], T], on_timeout: Callable[[], BaseException]
) -> T:
    """``action()``'s result, or ``on_timeout()`` raised once ``seconds`` (+ grace) passed."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def work() -> None:
        try:
            outcome.append(action())
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=work, name="venvlayers-deadline", daemon=True)
    worker.start()
    worker.join(seconds + GRACE)
    if worker.is_alive():
        raise on_timeout()
    if failure:
        raise failure[0]
    return outcome[0]


__all__ = ["Deadline", "run_within"]
