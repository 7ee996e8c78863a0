"""A feed's rows in Cosmos DB (id = the row's id, partition key = its UTC day), and the writer of a day.

The writer classifies each row of a page as new, changed or unchanged against the stored hashes, and writes
only the new and changed ones, in transactional batches per day partition: re-scanning an unchanged day costs
one query per day and no writes.
"""
from __future__ import annotations

import threading
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable, TypeVar

from ..config.feeds import Feed
from .keytable import KeyTable, content_key, row_key
from .rows import Derived, derive

# Transactional batches take at most 100 operations and 2 MB of one partition key; stay well inside both.
BATCH_OPERATIONS = 100
BATCH_BYTES = 1_000_000
# Rows per page of the per-day hash query: about 0.5 MB an answer.
HASH_PAGE_ITEMS = 5000
T = TypeVar("T")


@dataclass
class WriteCounts:
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    written: int = 0

    def add(self, other: "WriteCounts") -> None:
        self.new += other.new
        self.changed += other.changed
        self.unchanged += other.unchanged
        self.written += other.written


@dataclass
class PendingRows:
    """A classified page: its counts, and the new and changed rows with their derived fields, by day."""
    counts: WriteCounts = field(default_factory=WriteCounts)
    by_day: dict[str, list[tuple[tuple[dict, Derived], int]]] = field(default_factory=dict)


class CallStore:
    """One feed's container."""

    def __init__(self, feed: Feed, container_client):
        self.feed = feed
        self._container = container_client

    def iter_hashes(self, day: str) -> Iterable[tuple[str, str | None]]:
        """(id, rowHash) of every document of a day, read in pages of HASH_PAGE_ITEMS, so a large day never
        arrives as one answer (a Cosmos page can be 4 MB, about 11 MB once parsed)."""
        query = "SELECT c.id, c.rowHash FROM c WHERE c.day = @day"
        items = self._container.query_items(query, parameters=[{"name": "@day", "value": day}], partition_key=day,
                                            max_item_count=HASH_PAGE_ITEMS)
        for item in items:
            yield item["id"], item.get("rowHash")

    def rows_of_day(self, day: str, fields: Iterable[str], page_items: int = 1000) -> Iterable[dict]:
        """The named fields of every row of a day, read in pages (bounded memory on big days)."""
        select = ", ".join(f"c.{name}" for name in fields)
        return self._container.query_items(f"SELECT {select} FROM c WHERE c.day = @day",
                                           parameters=[{"name": "@day", "value": day}], partition_key=day,
                                           max_item_count=page_items)

    def write_batch(self, day: str, docs: list[dict]) -> None:
        operations = [("upsert", (doc,)) for doc in docs]
        self._container.execute_item_batch(batch_operations=operations, partition_key=day)


class DayWriter:
    """Classifies rows as new / changed / unchanged against the stored hashes and writes the rest in batches.

    Batches go to a shared thread pool with a bound on batches in flight, so memory stays flat however many
    pages a day has. `finish()` waits for every batch and raises the first failure.

    What it remembers of a day's stored rows is two 64-bit numbers per row (of the id and of the content
    hash) in a KeyTable rather than the strings: 32 to 64 bytes a row instead of about 250, read in pages.
    """

    def __init__(self, store: CallStore, pool: ThreadPoolExecutor, max_in_flight: int):
        self.store = store
        self.pool = pool
        self.slots = threading.BoundedSemaphore(max_in_flight)
        self.lock = threading.Lock()
        self.known: dict[str, KeyTable] = {}  # day -> row_key(id) -> content_key(rowHash)
        self.loading: dict[str, Future] = {}   # day -> its hash query, started ahead by prefetch()
        self.in_flight = 0
        self.landed = threading.Condition(self.lock)
        self.error: BaseException | None = None
        self.counts = WriteCounts()
        self.days_written: set[str] = set()

    def prefetch(self, days: Iterable[str]) -> None:
        """Start the hash queries of the UTC days a window covers now, on the pool: they then run while the
        first Graph pages are on their way instead of after them, with every window waiting (on a 20,000-row
        day, about a second of a re-scan's three)."""
        with self.lock:
            for day in days:
                if day not in self.known and day not in self.loading:
                    self.loading[day] = self.pool.submit(self._load, day)

    def _load(self, day: str) -> KeyTable:
        table = KeyTable()
        for row_id, digest in self.store.iter_hashes(day):
            table.put(row_key(row_id), content_key(digest) if digest else 0)
        return table

    def _known(self, day: str) -> KeyTable:
        # Called with the lock held: one hash query per UTC day, however many pages touch it.
        if day not in self.known:
            loading = self.loading.pop(day, None)
            # A load still queued is done here instead: waiting on it with the lock held could otherwise wait
            # for pool threads that are themselves waiting for the lock.
            if loading is None or loading.cancel():
                self.known[day] = self._load(day)
            else:
                self.known[day] = loading.result()
        return self.known[day]

    def classify(self, rows: Iterable[dict]) -> "PendingRows":
        """Check and hash a page's rows and compare them with what is stored; nothing is written yet, so a
        caller can archive the page meanwhile and write only once it is archived. RowError if any row of the
        page cannot be stored: the page then writes nothing."""
        rows = list(rows)
        time_field = self.store.feed.time_field
        derived = [derive(row, time_field) for row in rows]
        pending = PendingRows()
        with self.lock:
            for row, extra in zip(rows, derived):
                known = self._known(extra.day)
                key, content = row_key(row["id"]), content_key(extra.row_hash)
                previous = known.get(key)
                if previous == content:
                    pending.counts.unchanged += 1
                    continue
                if previous is None:
                    pending.counts.new += 1
                else:
                    pending.counts.changed += 1
                known.put(key, content)
                pending.by_day.setdefault(extra.day, []).append(((row, extra), extra.size))
        return pending

    def write(self, pending: "PendingRows") -> WriteCounts:
        """Write the new and changed rows of a classified page, in batches per day partition."""
        counts = pending.counts
        with self.lock:
            self.days_written.update(pending.by_day)
        for day, day_rows in pending.by_day.items():
            for batch in sized_batches(day_rows):
                # Documents (copies of their rows) are built a batch at a time, as it is sent: a page's worth
                # of them waiting for a free slot would be memory per window for nothing.
                self._submit(day, [extra.document(row) for row, extra in batch])
                counts.written += len(batch)
        with self.lock:
            self.counts.add(counts)
        return counts

    def add(self, rows: Iterable[dict]) -> WriteCounts:
        """Classify and write a page's rows (replay: the page is archived already)."""
        return self.write(self.classify(rows))

    def _submit(self, day: str, batch: list[dict]) -> None:
        self.slots.acquire()
        with self.lock:
            self.in_flight += 1
        try:
            future = self.pool.submit(self.store.write_batch, day, batch)
        except BaseException:
            self._landed(None)
            raise
        # Only a count of batches in flight and the first failure are kept, not the futures: a day's worth of
        # finished futures would be memory that grows with the day.
        future.add_done_callback(self._landed)

    def _landed(self, future: Future | None) -> None:
        if future is None:
            exc = None
        else:
            exc = CancelledError("the batch was cancelled") if future.cancelled() else future.exception()
        with self.lock:
            if exc is not None and self.error is None:
                self.error = exc
            self.in_flight -= 1
            self.landed.notify_all()
        self.slots.release()

    def finish(self) -> WriteCounts:
        with self.lock:
            for loading in self.loading.values():  # days no row of this run fell in
                loading.cancel()
            self.loading.clear()
            while self.in_flight:
                self.landed.wait()
            error, self.error = self.error, None
        if error is not None:
            raise error
        return self.counts


def sized_batches(docs: Iterable[tuple[T, int]]) -> Iterable[list[T]]:
    """Batches of at most BATCH_OPERATIONS documents and BATCH_BYTES bytes, from (document, size) pairs."""
    batch: list[T] = []
    size = 0
    for doc, doc_size in docs:
        if batch and (len(batch) >= BATCH_OPERATIONS or size + doc_size > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(doc)
        size += doc_size
    if batch:
        yield batch
