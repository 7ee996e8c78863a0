"""A sliding-window request limit, like Graph's per-app throttling.

Spec (JSON): {"requests": 10, "per_seconds": 2}. Only admitted requests occupy the window, so a client
that waits the Retry-After it was given is admitted on its next try.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from .checks import is_int, is_number


@dataclass(frozen=True)
class RateLimit:
    requests: int
    per_seconds: float

    def as_json(self) -> dict:
        return {"requests": self.requests, "per_seconds": self.per_seconds}


def parse_rate_limit(obj: object) -> RateLimit | None:
    """None (no limit), {"requests": n, "per_seconds": s}, or the CLI form "n/s"."""
    if obj is None:
        return None
    if isinstance(obj, str):
        requests, _, seconds = obj.partition("/")
        try:
            obj = {"requests": int(requests), "per_seconds": float(seconds)}
        except ValueError:
            raise ValueError(f"rate limit must look like N/SECONDS, not {obj!r}") from None
    if not isinstance(obj, dict) or set(obj) != {"requests", "per_seconds"}:
        raise ValueError('rate_limit must be null or {"requests": n, "per_seconds": s}')
    requests, seconds = obj["requests"], obj["per_seconds"]
    if not is_int(requests, 1):
        raise ValueError("rate_limit 'requests' must be an integer >= 1")
    if not is_number(seconds, 0) or seconds == 0:
        raise ValueError("rate_limit 'per_seconds' must be a number > 0")
    return RateLimit(requests, seconds)


class SlidingWindow:
    """Not thread-safe: the simulator calls it under its lock."""

    def __init__(self, limit: RateLimit):
        self.limit = limit
        self._admitted: deque[float] = deque()

    def wait(self, now: float) -> float:
        """0 if a request may pass now, else the seconds until one may. Occupies nothing, so the simulator
        can ask every limit before any of them counts the request."""
        while self._admitted and self._admitted[0] <= now - self.limit.per_seconds:
            self._admitted.popleft()
        if len(self._admitted) < self.limit.requests:
            return 0.0
        return self._admitted[0] + self.limit.per_seconds - now

    def occupy(self, now: float) -> None:
        self._admitted.append(now)

    def admit(self, now: float) -> int | None:
        """None if the request may pass (it then occupies the window), else the Retry-After in whole
        seconds (at least 1)."""
        wait = self.wait(now)
        if wait == 0:
            self.occupy(now)
            return None
        return max(1, math.ceil(wait))
