"""Call rows in Cosmos DB: one document per Graph row, id = the row's id, partition key = its UTC start day.

A document is the row exactly as Graph sent it (every field, unknown and beta ones too) plus three derived
fields: `day` (partition key), `startUtc` (startDateTime normalised to UTC with 7 fractional digits, so that
string order is time order for range filters, sorting and paging, whatever precision Graph sent) and `rowHash`
(sha256 of the row's canonical JSON). A document is a function of its row alone, so replaying archived pages
rebuilds exactly the documents collection wrote (which run wrote a row is in the ledger and the manifests).
A row whose hash is unchanged is not written again, so re-scanning an unchanged day costs one query per day
and no writes.
"""
from __future__ import annotations

import hashlib
import json
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable

from .windows import canonical_instant, parse_instant

DERIVED_FIELDS = ("day", "startUtc", "rowHash")
COSMOS_SYSTEM_FIELDS = ("_rid", "_self", "_etag", "_attachments", "_ts")
# Transactional batches take at most 100 operations and 2 MB of one partition key; stay well inside both.
BATCH_OPERATIONS = 100
BATCH_BYTES = 1_000_000
FORBIDDEN_ID_CHARS = set("/\\?#")


class RowError(ValueError):
    """A row Graph sent cannot be stored (no id, no parseable startDateTime, an id Cosmos cannot hold)."""


def row_hash(row: dict) -> str:
    canonical = json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def to_document(row: dict) -> dict:
    row_id = row.get("id")
    if not isinstance(row_id, str) or not row_id or FORBIDDEN_ID_CHARS & set(row_id) or len(row_id) > 255:
        raise RowError(f"row has no usable id: {str(row_id)[:80]!r}")
    start = row.get("startDateTime")
    try:
        instant = parse_instant(start)
    except (TypeError, ValueError, AttributeError):
        raise RowError(f"row {row_id} has no valid startDateTime: {str(start)[:40]!r}") from None
    clash = [f for f in DERIVED_FIELDS if f in row]
    if clash:
        # Graph added a field with one of our names: refuse rather than silently overwrite its value.
        raise RowError(f"row {row_id} carries field(s) {clash} that the store derives itself")
    return {**row, "day": instant.date().isoformat(), "startUtc": canonical_instant(start),
            "rowHash": row_hash(row)}


def strip_document(doc: dict) -> dict:
    """The Graph row inside a stored document."""
    return {k: v for k, v in doc.items() if k not in DERIVED_FIELDS and k not in COSMOS_SYSTEM_FIELDS}


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


class CallStore:
    """One feed's container."""

    def __init__(self, container_client):
        self.container = container_client

    def hashes(self, day: str) -> dict[str, str]:
        query = "SELECT c.id, c.rowHash FROM c WHERE c.day = @day"
        items = self.container.query_items(query, parameters=[{"name": "@day", "value": day}], partition_key=day)
        return {item["id"]: item.get("rowHash") for item in items}

    def write_batch(self, day: str, docs: list[dict]) -> None:
        operations = [("upsert", (doc,)) for doc in docs]
        self.container.execute_item_batch(batch_operations=operations, partition_key=day)

    def documents(self, day: str) -> list[dict]:
        items = self.container.query_items("SELECT * FROM c WHERE c.day = @day",
                                           parameters=[{"name": "@day", "value": day}], partition_key=day)
        return list(items)

    def delete_day(self, day: str) -> int:
        ids = [d["id"] for d in self.container.query_items("SELECT c.id FROM c WHERE c.day = @day",
                                                           parameters=[{"name": "@day", "value": day}],
                                                           partition_key=day)]
        for i in range(0, len(ids), BATCH_OPERATIONS):
            self.container.execute_item_batch([("delete", (x,)) for x in ids[i:i + BATCH_OPERATIONS]],
                                              partition_key=day)
        return len(ids)


class DayWriter:
    """Classifies rows as new / changed / unchanged against the stored hashes and writes the rest in batches.

    Batches go to a shared thread pool with a bound on batches in flight, so memory stays flat however many
    pages a day has. `finish()` waits for every batch and raises the first failure.
    """

    def __init__(self, store: CallStore, pool: ThreadPoolExecutor, max_in_flight: int):
        self.store = store
        self.pool = pool
        self.slots = threading.BoundedSemaphore(max_in_flight)
        self.lock = threading.Lock()
        self.known: dict[str, dict[str, str]] = {}  # day -> id -> hash
        self.futures: list[Future] = []
        self.counts = WriteCounts()
        self.days_written: set[str] = set()

    def _known(self, day: str) -> dict[str, str]:
        # Called with the lock held: one hash query per UTC day, however many pages touch it.
        if day not in self.known:
            self.known[day] = self.store.hashes(day)
        return self.known[day]

    def add(self, rows: Iterable[dict]) -> WriteCounts:
        docs = [to_document(row) for row in rows]  # validates the whole page before writing any
        counts = WriteCounts()
        pending: dict[str, list[dict]] = {}
        with self.lock:
            for doc in docs:
                known = self._known(doc["day"])
                previous = known.get(doc["id"])
                if previous == doc["rowHash"]:
                    counts.unchanged += 1
                    continue
                if previous is None:
                    counts.new += 1
                else:
                    counts.changed += 1
                known[doc["id"]] = doc["rowHash"]
                pending.setdefault(doc["day"], []).append(doc)
            self.days_written.update(pending)
        for day, day_docs in pending.items():
            for batch in _batches(day_docs):
                self._submit(day, batch)
                counts.written += len(batch)
        with self.lock:
            self.counts.add(counts)
        return counts

    def _submit(self, day: str, batch: list[dict]) -> None:
        self.slots.acquire()
        try:
            future = self.pool.submit(self.store.write_batch, day, batch)
        except BaseException:
            self.slots.release()
            raise
        future.add_done_callback(lambda _: self.slots.release())
        with self.lock:
            self.futures.append(future)

    def finish(self) -> WriteCounts:
        error = None
        for future in self.futures:
            exc = future.exception()
            if exc is not None and error is None:
                error = exc
        self.futures.clear()
        if error is not None:
            raise error
        return self.counts


def _batches(docs: list[dict]) -> Iterable[list[dict]]:
    batch: list[dict] = []
    size = 0
    for doc in docs:
        doc_size = len(json.dumps(doc))
        if batch and (len(batch) >= BATCH_OPERATIONS or size + doc_size > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(doc)
        size += doc_size
    if batch:
        yield batch
