"""A request-rate limit shared by every thread of a process: a spaced schedule with a small burst.

Graph throttles per app and tenant, not per connection, so concurrent requests of one client must draw from
one budget. Each caller reserves the next free slot under a lock and then sleeps outside it: the lock is held
for microseconds, and callers leave in the order they reserved, so no thread starves.
"""
from __future__ import annotations

import threading
import time
from typing import Callable


class RateLimiter:
    """At most `burst` requests at once after an idle spell, then one every 1/rate_per_second seconds.

    In any span of W seconds at most `burst + W * rate_per_second` requests start. It is the generic cell
    rate algorithm: `_tat` is the theoretical arrival time of the next request on a perfectly spaced schedule.
    """

    def __init__(self, rate_per_second: float, burst: int = 1, *,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        if not rate_per_second > 0:
            raise ValueError(f"rate_per_second must be positive, got {rate_per_second!r}")
        if int(burst) < 1:
            raise ValueError(f"burst must be at least 1, got {burst!r}")
        self.rate_per_second = float(rate_per_second)
        self.interval = 1.0 / self.rate_per_second
        self.burst = int(burst)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tat: float | None = None

    def reserve(self) -> float:
        """Claim the next slot; return how many seconds from now it starts (0 if at once). Does not sleep."""
        with self._lock:
            now = self._clock()
            tat = now if self._tat is None else max(self._tat, now)
            # The burst is tolerance below the schedule: up to burst-1 intervals early is still allowed.
            slot = max(now, tat - (self.burst - 1) * self.interval)
            self._tat = tat + self.interval
            return slot - now

    def hold(self, seconds: float) -> None:
        """Start no new request for `seconds`: the server asked the whole client, not one thread, to back off."""
        if seconds <= 0:
            return
        with self._lock:
            now = self._clock()
            # The first slot after the hold is now + seconds; the burst is spent, the schedule resumes spaced.
            resume = now + seconds + (self.burst - 1) * self.interval
            self._tat = resume if self._tat is None else max(self._tat, resume)

    def acquire(self) -> float:
        """Wait for the next slot; return the seconds waited."""
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)
        return wait
