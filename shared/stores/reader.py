"""Reading stored rows in order, one day partition at a time, with keyset cursors.

Every read names its partition (the UTC day), so a date-range query touches only the days in range, and
paging resumes after the last (sort key, id) returned: rows written while a client pages never shift a page
boundary, so no row is returned twice or skipped. Cosmos DB's OFFSET/LIMIT would do neither.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Callable, Iterator


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the day partition and the (sort key, id) of its last row."""
    day: str
    key: str
    id: str


@dataclass(frozen=True)
class QuerySpec:
    where: str = ""                     # SQL condition over `c`, parameters only
    params: tuple = ()                  # ({"name": "@p0", "value": ...}, ...)
    first_day: str | None = None        # inclusive UTC day bounds from the filter, None = open
    last_day: str | None = None
    descending: bool = False
    sort_path: str = "startUtc"         # the field rows are ordered by within a day (then id)


@dataclass
class ReadLog:
    """Which partitions a request read: the evidence that range filters reach the partition key."""
    days: list[str] = field(default_factory=list)


# A range of fewer days than this is read day by day, empty days too: its cost is bounded by what the request
# asks, not by the data. A longer or open one first asks which days hold rows (one cross-partition DISTINCT
# query, which a week of Power BI pages would otherwise pay on every page: benchmark (d) fell from 0.63 to 0.46
# of a raw read with 3 days here). A week plus a day covers a time zone's overhang of a 7-day range.
DIRECT_READ_DAYS = 8


class PartitionedReader:
    def __init__(self, container, log: ReadLog | None = None):
        self.container = container
        self.log = log or ReadLog()

    def _query(self, sql: str, params: list, day: str | None = None, **kwargs):
        if day is None:
            return self.container.query_items(sql, parameters=params, enable_cross_partition_query=True, **kwargs)
        return self.container.query_items(sql, parameters=params, partition_key=day, **kwargs)

    def days(self, spec: QuerySpec, after: Cursor | None = None) -> Iterator[str]:
        """The day partitions a read visits, in its order, from the cursor's day on.

        A filter's bound may lie centuries from the data (startDateTime ge 0001-01-01, day le 9999-12-31), and
        one stored row may too (Graph writes 0001-01-01T00:00:00Z for "never"): a day-by-day walk between the
        edges would cost a query for each calendar day in between, 739,000 from year 1 to now. So past a week one
        cross-partition query asks which days in range hold matching rows, and the read visits
        those only: one query, then one per such day, whatever lies between them."""
        first, last = spec.first_day, spec.last_day
        if after is not None:
            if spec.descending:
                last = after.day if last is None else min(last, after.day)
            else:
                first = after.day if first is None else max(first, after.day)
        if first is not None and last is not None:
            if last < first:
                return
            short = _short_range(first, last)
            if short is not None:
                yield from reversed(short) if spec.descending else short
                return
        days = self._days_holding_rows(spec, first, last)
        yield from reversed(days) if spec.descending else days

    def _days_holding_rows(self, spec: QuerySpec, first: str | None, last: str | None) -> list[str]:
        """The days within [first, last] (None: open) that hold a row matching the filter, ascending.
        Cosmos DB does not order DISTINCT results across partitions, so they are sorted here."""
        conditions, params = [], list(spec.params)
        if first is not None:
            conditions.append("c.day >= @walkFirst")
            params.append({"name": "@walkFirst", "value": first})
        if last is not None:
            conditions.append("c.day <= @walkLast")
            params.append({"name": "@walkLast", "value": last})
        if spec.where:
            conditions.append(f"({spec.where})")
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        return sorted(self._query(f"SELECT DISTINCT VALUE c.day FROM c{where}", params))

    def rows(self, spec: QuerySpec, after: Cursor | None = None,
             batch: int | Callable[[], int] = 1000) -> Iterator[tuple[str, dict]]:
        """(day, document) in order, lazily, starting after the cursor. `batch` is the rows asked of each
        query answer, or a function giving it when a day's query starts (how many rows the caller still needs:
        a page that ends early in a day should not fetch the whole day)."""
        days = self.days(spec, after)
        direction = "DESC" if spec.descending else "ASC"
        beyond = "<" if spec.descending else ">"
        for day in days:
            conditions = ["c.day = @day"]
            params = [{"name": "@day", "value": day}, *spec.params]
            if spec.where:
                conditions.append(f"({spec.where})")
            by_id = spec.sort_path == "id"
            if after is not None and day == after.day:
                if by_id:
                    conditions.append(f"c.id {beyond} @afterId")
                else:
                    conditions.append(f"(c.{spec.sort_path} {beyond} @afterKey OR "
                                      f"(c.{spec.sort_path} = @afterKey AND c.id {beyond} @afterId))")
                    params.append({"name": "@afterKey", "value": after.key})
                params.append({"name": "@afterId", "value": after.id})
            order = f"c.id {direction}" if by_id else f"c.{spec.sort_path} {direction}, c.id {direction}"
            sql = f"SELECT * FROM c WHERE {' AND '.join(conditions)} ORDER BY {order}"
            self.log.days.append(day)
            size = max(1, batch() if callable(batch) else batch)
            for doc in self._query(sql, params, day, max_item_count=size):
                yield day, doc

    def count(self, spec: QuerySpec) -> int:
        total = 0
        for day in self.days(spec):
            conditions = ["c.day = @day"] + ([f"({spec.where})"] if spec.where else [])
            self.log.days.append(day)
            for value in self._query(f"SELECT VALUE COUNT(1) FROM c WHERE {' AND '.join(conditions)}",
                                     [{"name": "@day", "value": day}, *spec.params], day):
                total += value
        return total


# Most rows one query answer is asked for: a full page (5,000) and its look-ahead row, plus some $skip. Cosmos
# DB ends an answer at 4 MB whatever is asked, so this bounds memory only when the answers are small.
MAX_BATCH = 6000


@dataclass
class Page:
    rows: list[dict]
    next_cursor: Cursor | None
    remaining: int | None       # rows `$top` still allows after this page (None: no $top)


def _short_range(first: str, last: str) -> list[str] | None:
    """Every day from `first` to `last` when they are at most DIRECT_READ_DAYS apart, else None (a bound that is
    not a calendar day, such as one past 9999-12-31, is never short)."""
    try:
        start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    except ValueError:
        return None
    if (end - start).days >= DIRECT_READ_DAYS:
        return None
    return [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def read_page(reader: PartitionedReader, spec: QuerySpec, page_size: int, after: Cursor | None = None,
              skip: int = 0, top: int | None = None) -> Page:
    """One page of at most `page_size` rows after the cursor, `skip` rows skipped first, never more than `top`
    in all. A next cursor is given only when at least one more row exists (one row of look-ahead)."""
    limit = page_size if top is None else min(page_size, top)
    rows: list[dict] = []
    last: tuple[str, dict] | None = None
    more = False
    # Each day's query asks for what the page still needs, look-ahead row included: asking for `limit` would
    # cost every full page a second round trip for that one row, and a page that only finishes in the next
    # day would have that day send a whole batch of rows to use a few.
    stream = reader.rows(spec, after, batch=lambda: min(skip + limit + 1 - len(rows), MAX_BATCH))
    for day, doc in stream:
        if skip:
            skip -= 1
            continue
        if len(rows) == limit:
            more = True
            break
        rows.append(doc)
        last = (day, doc)
    remaining = None if top is None else top - len(rows)
    if not more or last is None or remaining == 0:
        return Page(rows, None, remaining)
    day, doc = last
    return Page(rows, Cursor(day, doc[spec.sort_path], doc["id"]), remaining)
