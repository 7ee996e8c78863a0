"""Counters and the per-request log of Graph traffic, as the control API reports them."""
from __future__ import annotations

import hashlib
from collections import Counter, deque

from .replies import Reply

LOG_LIMIT = 10_000  # entries kept; the oldest go first


class Journal:
    """Not thread-safe: the simulator calls it under its lock."""

    def __init__(self):
        self.requests = 0
        self.by_status: Counter[str] = Counter()
        self.rate_limited = 0
        self.faults: Counter[str] = Counter()
        self.rows_served = 0
        self.log: deque[dict] = deque(maxlen=LOG_LIMIT)

    def record(self, *, arrived: float, method: str, target: str, reply: Reply, rows: int,
               fault: str | None, rate_limited: bool) -> None:
        sent = reply.sent_bytes()
        status = reply.status if sent is not None else None  # a dropped connection sends no status
        self.requests += 1
        self.by_status[str(status) if status else "none"] += 1
        self.rate_limited += rate_limited
        if fault:
            self.faults[fault] += 1
        self.rows_served += rows
        self.log.append({
            "time": arrived, "method": method, "path": target, "status": status, "rows": rows,
            "sha256": hashlib.sha256(sent).hexdigest() if sent is not None else None, "fault": fault,
        })

    def stats(self) -> dict:
        return {
            "requests": self.requests,
            "by_status": dict(self.by_status),
            "rate_limited": self.rate_limited,
            "faults_fired": sum(self.faults.values()),
            "faults_by_kind": dict(self.faults),
            "rows_served": self.rows_served,
        }
