"""The retry policy shared by the GitHub client and the downloads: what to retry, how long to wait.

5xx answers, dropped connections and rate limits are retried with exponential backoff,
honouring ``Retry-After`` and ``X-RateLimit-Reset``; a ``Budget`` bounds all attempts of
one command by wall-clock time, stalls and waits included.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

MAX_BACKOFF = 60.0
# A host that refuses connections or does not resolve is usually a wrong URL (or
# GITHUB_API_URL) or no network, not a hiccup: a few quick retries (1 + 2 + 4 s), then a
# clear error instead of retrying until the deadline.
UNREACHABLE_ATTEMPTS = 4


class HttpFailure(Exception):
    """One failed exchange with GitHub; ``status`` is None when no answer came back."""

    def __init__(
        self,
        status: int | None,
        message: str,
        headers: Mapping[str, str] | None = None,
        codes: tuple[str, ...] = (),
        *,
        unreachable: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = {k.lower(): str(v) for k, v in (headers or {}).items()}
        self.codes = codes
        self.unreachable = unreachable  # no connection could be made at all

    def describe(self) -> str:
        if self.status is None:
            return self.message
        message = self.message
        if not message:  # e.g. an HTML error page from a proxy: name the status instead
            from http import HTTPStatus

            try:
                message = HTTPStatus(self.status).phrase
            except ValueError:
                message = ""
        return f"{self.status} {message}".rstrip()


def _retry_after(value: str, now: float) -> float | None:
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        import email.utils  # only for a Retry-After date

        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - now, 0.0)


def retry_delay(failure: HttpFailure, attempt: int, now: float) -> tuple[float, str] | None:
    """How long to wait before retrying ``failure`` (and why), or None if retrying is futile."""
    backoff = min(2.0 ** (attempt - 1), MAX_BACKOFF)
    headers = failure.headers
    if failure.unreachable and attempt >= UNREACHABLE_ATTEMPTS:
        return None
    if failure.status is None or failure.status >= 500:
        return backoff, "backoff"
    if failure.status in (403, 429):
        if "retry-after" in headers:
            delay = _retry_after(headers["retry-after"], now)
            if delay is not None:
                return delay, "Retry-After"
        if headers.get("x-ratelimit-remaining") == "0" and "x-ratelimit-reset" in headers:
            try:
                reset = float(headers["x-ratelimit-reset"])
            except ValueError:
                reset = now + MAX_BACKOFF
            # one second of slack for clock skew between us and GitHub
            return max(reset - now, 0.0) + 1.0, "rate limit reset"
        lowered = failure.message.lower()
        if failure.status == 429 or "secondary rate limit" in lowered:
            # GitHub's advice for secondary limits without headers: wait at least a minute
            return max(backoff, MAX_BACKOFF), "secondary rate limit"
    return None


class Budget:
    """Total time allowed for all attempts, counting requested sleeps.

    An injected ``sleep`` may return at once (tests); the time it was asked to wait
    still counts, so the deadline means the same with a fake clock.
    """

    def __init__(self, seconds: float, sleep: Callable[[float], None] = time.sleep) -> None:
        self.seconds = seconds
        self._sleep = sleep
        self._start = time.monotonic()
        self._unslept = 0.0

    def elapsed(self) -> float:
        return time.monotonic() - self._start + self._unslept

    def remaining(self) -> float:
        return self.seconds - self.elapsed()

    def wait(self, delay: float) -> None:
        before = time.monotonic()
        self._sleep(delay)
        self._unslept += max(delay - (time.monotonic() - before), 0.0)
