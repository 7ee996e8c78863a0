"""When and how long to wait before retrying a Graph request."""
from __future__ import annotations

import email.utils
import math
import random
import time
from datetime import timezone

import requests

# 429 and 503 are Graph's throttling answers; 504, 500 and 502 come back transiently from its gateways.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})

# A connection dropped mid-response surfaces as ChunkedEncodingError; ConnectionError also covers connect
# timeouts and reads that time out while the body streams in.
RETRYABLE_EXCEPTIONS = (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError,
                        requests.exceptions.Timeout)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if absent or unreadable.

    A date in the past, or a negative number, means "now" (0). `now` is wall-clock epoch seconds.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)  # Graph sends whole seconds; a fraction costs nothing to honour
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT even when the zone is spelled "-0000"
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


class Backoff:
    """Capped exponential backoff with full jitter: retry n waits uniform(0, min(cap, base * 2**n)).

    Full jitter spreads the retries of many concurrent requests over the whole interval, so they do not
    return to a throttled service in lock-step.
    """

    def __init__(self, base: float = 1.0, cap: float = 60.0, rng: random.Random | None = None):
        if base <= 0 or cap < base:
            raise ValueError(f"need 0 < base <= cap, got base={base!r} cap={cap!r}")
        self.base = base
        self.cap = cap
        self._rng = rng or random.Random()

    def ceiling(self, retry_number: int) -> float:
        # min() before the power would still overflow for huge retry numbers; cap the exponent instead.
        return min(self.cap, self.base * 2 ** min(retry_number, 64))

    def delay(self, retry_number: int) -> float:
        """Seconds to wait before retry number `retry_number` (0 for the first retry)."""
        return self._rng.uniform(0, self.ceiling(retry_number))
