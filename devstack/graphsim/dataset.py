"""The rows of a seed: generated per (feed, day), cached, merged with late rows, cut to a time window.

Each day's rows come from their own Random seeded by (seed, feed, day, count), so any day can be built
alone, in any order, in any process, and always comes out the same.
"""
from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from functools import partial
from operator import itemgetter
from typing import Callable, Sequence

from . import rows as rowgen
from .late import LateRule
from .tenant import Tenant, stable_random
from .ticks import DAY_TICKS, day_of, day_start, format_ticks

# Bounds memory (a row takes about 1.5 KB) while still holding a 90-day window at 2,500 rows a day.
MAX_CACHED_ROWS = 300_000

_row_order = itemgetter("startDateTime", "id")


class Window:
    """The rows of one query, in API order, loading a day's rows only when a slice reaches them."""

    def __init__(self, segments: list[tuple[Callable[[], list[dict]], int, int]]):
        self._segments = segments  # (load the day's rows, first index in the window, end index)
        self.total = sum(hi - lo for _, lo, hi in segments)

    def slice(self, skip: int, limit: int) -> list[dict]:
        out: list[dict] = []
        for load, lo, hi in self._segments:
            if len(out) >= limit:
                break
            if skip >= hi - lo:
                skip -= hi - lo
                continue
            start = lo + skip
            out.extend(load()[start:min(hi, start + limit - len(out))])
            skip = 0
        return out

    def all(self) -> list[dict]:
        return self.slice(0, self.total)


class Dataset:
    def __init__(self, seed: int):
        self.seed = seed
        self.tenant = Tenant(seed)
        self._cache: OrderedDict[tuple, tuple[list[dict], list[str]]] = OrderedDict()
        self._cached_rows = 0
        # One generation at a time (two threads never build the same day); re-entrant because a day
        # with late rows builds on the same day without them.
        self._lock = threading.RLock()

    def window(self, feed: str, start: int, end: int, end_inclusive: bool, count_of: Callable[[int], int],
               late: Sequence[LateRule]) -> Window:
        """Rows of `feed` whose startDateTime lies in [start, end] (or [start, end) ), in ticks.

        `count_of(day)` is the number of regular rows of a day; `late` the late rules whose rows are
        visible. Days wholly inside the window are counted without being generated.
        """
        last = end if end_inclusive else end - 1
        segments = []
        for day in range(day_of(start), day_of(last) + 1) if last >= start else ():
            day_late = tuple(r for r in late if r.feed == feed and r.day == day)
            count = count_of(day)
            load = partial(self._rows, feed, day, count, day_late)
            first = day_start(day)
            if start <= first and first + DAY_TICKS - 1 <= last:
                segments.append((load, 0, count + sum(r.count for r in day_late)))
                continue
            keys = self._day(feed, day, count, day_late)[1]
            lo = bisect_left(keys, format_ticks(start))
            hi = (bisect_right if end_inclusive else bisect_left)(keys, format_ticks(end))
            segments.append((load, lo, hi))
        return Window(segments)

    def _rows(self, feed: str, day: int, count: int, late: tuple[LateRule, ...]) -> list[dict]:
        return self._day(feed, day, count, late)[0]

    def _day(self, feed: str, day: int, count: int, late: tuple[LateRule, ...]) -> tuple[list[dict], list[str]]:
        """The day's rows sorted by (startDateTime, id), and their startDateTime strings for bisecting
        (same-width UTC strings sort like the instants they name)."""
        key = (feed, day, count, late)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
            if late:  # the regular rows (cached on their own) plus each rule's rows, re-sorted
                rows = list(self._rows(feed, day, count, ()))
                for rule in late:
                    rng = stable_random("late", self.seed, feed, day, rule.index, rule.count)
                    rows.extend(rowgen.generate(feed, rng, self.tenant, day, rule.count))
                rows.sort(key=_row_order)
            else:
                rows = rowgen.generate(feed, stable_random(self.seed, feed, day, count), self.tenant, day, count)
            entry = (rows, [r["startDateTime"] for r in rows])
            self._remember(key, entry)
            return entry

    def _remember(self, key: tuple, entry: tuple[list[dict], list[str]]) -> None:
        self._cache[key] = entry
        self._cached_rows += len(entry[0])
        while self._cached_rows > MAX_CACHED_ROWS and len(self._cache) > 1:
            _, (evicted, _) = self._cache.popitem(last=False)
            self._cached_rows -= len(evicted)
