"""Counters of a Graph client's traffic, safe across the threads of a run."""
from __future__ import annotations

import threading
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class GraphStats:
    """A snapshot of the counters. `b - a` gives what happened between two snapshots."""

    requests: int = 0                      # HTTP attempts sent, retries and 401 re-sends included
    retries: int = 0                       # attempts repeated after 429/5xx/dropped connection/timeout
    throttle_wait_seconds: float = 0.0     # time asked to sleep by Retry-After or backoff before retries
    responses_429: int = 0                 # 429 Too Many Requests received
    pages: int = 0                         # pages accepted (valid JSON with a value list)
    rows: int = 0                          # rows in those pages
    rate_limit_wait_seconds: float = 0.0   # time spent waiting for slots of the client-side request limits
    token_refreshes: int = 0               # tokens fetched again after a 401
    bytes_received: int = 0                # body bytes of accepted pages
    # 429s by the scope they slowed (x-ms-throttle-scope; the request's function when Graph does not say).
    responses_429_function: int = 0
    responses_429_app: int = 0
    responses_429_tenant: int = 0
    # rate_limit_wait_seconds by the scope that set the slot: which of the three limits the run is bound by.
    slot_wait_function_seconds: float = 0.0
    slot_wait_app_seconds: float = 0.0
    slot_wait_tenant_seconds: float = 0.0

    def __sub__(self, other: "GraphStats") -> "GraphStats":
        return GraphStats(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)})


_NAMES = frozenset(f.name for f in fields(GraphStats))


class GraphCounters:
    """The live counters of one client: `add` from any thread, `snapshot()` for a GraphStats of them all at once."""

    def __init__(self):
        self._lock = threading.Lock()
        self._values = dict.fromkeys(_NAMES, 0)

    def add(self, **deltas: float) -> None:
        unknown = set(deltas) - _NAMES
        if unknown:
            raise KeyError(f"unknown Graph counters: {sorted(unknown)}")
        with self._lock:
            for name, delta in deltas.items():
                self._values[name] += delta

    def snapshot(self) -> GraphStats:
        with self._lock:
            return GraphStats(**self._values)

    def __repr__(self) -> str:
        return f"GraphCounters({self.snapshot()})"
