"""Daily usage summaries: per UTC day, feed, user, callType, destinationContext and currency, the number of calls,
minutes, charge and connection charge. Recomputed from the stored rows of a day whenever a collection writes
to that day, so a summary always equals a plain recomputation from the rows.
"""
from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Iterable

from ..stores.calls import BATCH_OPERATIONS

KEY_FIELDS = ("userId", "userPrincipalName", "callType", "destinationContext", "currency")
ROW_FIELDS = KEY_FIELDS + ("userDisplayName", "duration", "charge", "connectionCharge")


def _money(value) -> Decimal:
    # Decimal of the JSON number's shortest repr: sums of charges stay exact (0.1 + 0.2 == 0.3).
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return Decimal(0)
    return Decimal(repr(value))


def summarize(feed: str, day: str, rows: Iterable[dict]) -> list[dict]:
    """The summary documents of one feed and UTC day, from its rows (plain dicts). Pure."""
    groups: dict[tuple, dict] = {}
    for row in rows:
        key = tuple(row.get(f) for f in KEY_FIELDS)
        group = groups.get(key)
        if group is None:
            group = groups[key] = {"calls": 0, "seconds": 0, "charge": Decimal(0), "connectionCharge": Decimal(0),
                                   "userDisplayName": row.get("userDisplayName")}
        group["calls"] += 1
        duration = row.get("duration")
        if isinstance(duration, (int, float)) and not isinstance(duration, bool):
            group["seconds"] += duration
        group["charge"] += _money(row.get("charge"))
        group["connectionCharge"] += _money(row.get("connectionCharge"))
    out = []
    for key, group in groups.items():
        fields = dict(zip(KEY_FIELDS, key))
        identity = "\x1f".join(["v1", feed, day] + ["" if v is None else str(v) for v in key])
        out.append({
            "id": hashlib.sha1(identity.encode()).hexdigest(),
            "day": day, "feed": feed, **fields, "userDisplayName": group["userDisplayName"],
            "calls": group["calls"], "minutes": round(group["seconds"] / 60, 4),
            "charge": float(group["charge"]), "connectionCharge": float(group["connectionCharge"]),
        })
    return sorted(out, key=lambda d: d["id"])


class SummaryStore:
    """Summaries container (partition key /day), shared by both feeds."""

    def __init__(self, container_client):
        self.container = container_client

    def recompute(self, feed: str, day: str, call_container) -> int:
        """Rebuild one feed's summaries of a UTC day from its stored rows; returns how many there are now."""
        fields = ", ".join(f"c.{name}" for name in ROW_FIELDS)
        rows = call_container.query_items(f"SELECT {fields} FROM c WHERE c.day = @day",
                                          parameters=[{"name": "@day", "value": day}], partition_key=day,
                                          max_item_count=1000)  # pages of 1,000: bounded memory on big days
        fresh = summarize(feed, day, rows)
        stale = {d["id"] for d in self.for_day(day, feed)} - {d["id"] for d in fresh}
        operations = [("upsert", (doc,)) for doc in fresh] + [("delete", (doc_id,)) for doc_id in sorted(stale)]
        for i in range(0, len(operations), BATCH_OPERATIONS):
            self.container.execute_item_batch(operations[i:i + BATCH_OPERATIONS], partition_key=day)
        return len(fresh)

    def for_day(self, day: str, feed: str | None = None) -> list[dict]:
        query, params = "SELECT * FROM c WHERE c.day = @day", [{"name": "@day", "value": day}]
        if feed:
            query += " AND c.feed = @feed"
            params.append({"name": "@feed", "value": feed})
        return list(self.container.query_items(query, parameters=params, partition_key=day, max_item_count=1000))
