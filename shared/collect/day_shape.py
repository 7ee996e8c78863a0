"""The shape of a collected day (rows per five minutes, rows per full page), and windows cut to that shape.

Calls are diurnal: cut into equal slices, a day's busy hours hold several Graph pages each, read one after the
other at about a second a page, while the night slices are done after one. A day collected again (the
re-scans of recent days, a backfill of a day already held) knows where its rows are from its last run, so
it is cut into windows of about one page each, and all of them are read at once, within the request-rate
limit. Late rows make a window two pages instead of one; nothing is lost either way, because the windows
still tile the day.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .windows import Window, split

BUCKET_SECONDS = 300
BUCKET = dt.timedelta(seconds=BUCKET_SECONDS)
# Graph's documented page size of the call-log functions, assumed until a run has seen a full page.
DEFAULT_PAGE_ROWS = 1000
# A planned window aims at this share of a page, leaving room for rows that arrived since the last run.
FILL = 0.8


@dataclass(frozen=True)
class DayShape:
    start: str                  # the day window's start, UTC ISO: a shape applies only to the same window
    counts: tuple[int, ...]     # rows per BUCKET_SECONDS from the start
    page_rows: int | None       # rows of a full Graph page, when the run saw one

    def as_dict(self) -> dict:
        return {"start": self.start, "bucketSeconds": BUCKET_SECONDS, "counts": list(self.counts),
                "pageRows": self.page_rows}

    @classmethod
    def from_dict(cls, data: dict | None) -> "DayShape | None":
        """The stored shape, or None when it is absent or not one this code wrote."""
        if not isinstance(data, dict) or data.get("bucketSeconds") != BUCKET_SECONDS:
            return None
        counts, page_rows, start = data.get("counts"), data.get("pageRows"), data.get("start")
        if not isinstance(start, str) or not isinstance(counts, list) or \
                not all(isinstance(c, int) and c >= 0 for c in counts):
            return None
        if page_rows is not None and not (isinstance(page_rows, int) and page_rows > 0):
            return None
        return cls(start, tuple(counts), page_rows)


def buckets(window: Window) -> int:
    return -(-int((window.end - window.start).total_seconds()) // BUCKET_SECONDS)


class ShapeCounter:
    """Counts a day's rows into five-minute buckets as pages arrive (one instance per day, one thread at a time)."""

    def __init__(self, window: Window):
        self.window = window
        self.counts = [0] * buckets(window)
        self.page_rows = 0

    def add(self, instant: dt.datetime) -> None:
        offset = (instant - self.window.start) // BUCKET  # floor: an instant just before the start is not in it
        if 0 <= offset < len(self.counts):
            self.counts[offset] += 1

    def full_page(self, rows: int) -> None:
        """A page followed by another in the same window: Graph's page size."""
        self.page_rows = max(self.page_rows, rows)

    def shape(self, start_iso: str) -> DayShape:
        return DayShape(start_iso, tuple(self.counts), self.page_rows or None)


def plan(window: Window, shape: DayShape, parts: int, fill: float = FILL) -> list[Window]:
    """Adjacent windows from the window's start to its end, each expected to hold at most `fill` of a page, or
    a `parts`-th of the day's rows if that is more. Quiet buckets join their neighbours; a bucket busier than
    that is cut into equal parts.

    `parts` is how many windows can be read at once. Where the rate limit allows fewer requests in flight than
    the day has pages, page-sized windows would only add a partial last page each (a quarter more requests
    than pages), so the windows then hold many pages each, about equal in rows so that they end together."""
    total = sum(shape.counts)
    target = max(1, int((shape.page_rows or DEFAULT_PAGE_ROWS) * fill), -(-total // max(1, parts)))
    out: list[Window] = []
    current, held = window.start, 0
    for i, count in enumerate(shape.counts):
        b_start = window.start + i * BUCKET
        b_end = min(window.end, b_start + BUCKET)
        if b_start >= window.end:
            break
        if count > target:
            if b_start > current:
                out.append(Window(current, b_start))
            out.extend(split(Window(b_start, b_end), -(-count // target)))
            current, held = b_end, 0
        elif held + count > target:
            out.append(Window(current, b_start))
            current, held = b_start, count
        else:
            held += count
    if current < window.end:
        out.append(Window(current, window.end))
    return out
