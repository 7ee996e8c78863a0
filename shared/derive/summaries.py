"""Daily usage summaries: per UTC day, feed, user, callType, destinationContext and currency, the number of calls,
minutes, charge and connection charge. Recomputed from the stored rows of a day whenever a collection or a
replay writes to that day, so a summary always equals a plain recomputation from the rows.
"""
from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Iterable

from ..config.feeds import DAILY_USAGE, Feed

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


def refresh_summaries(stores, feed: Feed, utc_days: Iterable[str]) -> None:
    """Recompute the derived tables the feed declares for the UTC days a collection or replay wrote to: an
    unchanged re-scan writes no day, so it leaves their summaries (and RU) alone."""
    if DAILY_USAGE.name not in feed.summaries:
        return
    calls = stores.calls[feed.name]
    for day in utc_days:
        stores.summaries.replace_day(feed.name, day, summarize(feed.name, day, calls.rows_of_day(day, ROW_FIELDS)))
