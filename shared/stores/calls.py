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

import datetime as dt
import hashlib
import json
import re
import threading
from array import array
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, TypeVar

import orjson

from ..collect.windows import canonical_instant, parse_instant

DERIVED_FIELDS = ("day", "startUtc", "rowHash")
COSMOS_SYSTEM_FIELDS = ("_rid", "_self", "_etag", "_attachments", "_ts")
# Transactional batches take at most 100 operations and 2 MB of one partition key; stay well inside both.
BATCH_OPERATIONS = 100
BATCH_BYTES = 1_000_000
# Rows per page of the per-day hash query: about 0.5 MB an answer.
HASH_PAGE_ITEMS = 5000
FORBIDDEN_ID_CHARS = set("/\\?#")
T = TypeVar("T")


class RowError(ValueError):
    """A row Graph sent cannot be stored (no id, no parseable startDateTime, an id Cosmos cannot hold)."""


def row_hash(row: dict) -> str:
    return hashlib.sha256(_canonical(row)).hexdigest()


def _canonical(row: dict) -> bytes:
    """The row's JSON with sorted keys, compact, UTF-8: what its rowHash is taken of, so it must never change.

    That was json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False) from the start; orjson writes
    the same bytes in a tenth of the time (the largest CPU cost of a re-scan) except for floats json writes in
    exponent form (nonzero below 1e-4, from 1e16 up), NaN and infinities, and integers beyond 64 bits (orjson
    refuses them). Rows holding any of those take json's path. tests/test_store_writer.py checks the two agree.
    """
    if _plain_floats(row.values()):
        try:
            return orjson.dumps(row, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            pass
    return json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _plain_floats(values: Iterable) -> bool:
    """No float that json and orjson write differently (see _canonical) among these values, nested or not."""
    for value in values:
        kind = type(value)
        if kind is float:
            if not (value == 0.0 or 1e-4 <= abs(value) < 1e16):
                return False
        elif kind is dict:
            if not _plain_floats(value.values()):
                return False
        elif kind is list and not _plain_floats(value):
            return False
    return True


# Graph's own form of a DateTimeOffset (UTC, 7 fractional digits): already what `startUtc` stores.
_CANONICAL_INSTANT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", re.ASCII)


@dataclass(frozen=True, slots=True)
class _Derived:
    """What the store adds to a row, and the size of its JSON for batching."""
    day: str
    start_utc: str
    row_hash: str
    size: int  # bytes of the document as the SDK sends it, at most (non-ASCII escaped as \\uXXXX)

    def document(self, row: dict) -> dict:
        return {**row, "day": self.day, "startUtc": self.start_utc, "rowHash": self.row_hash}


def _derive(row: dict) -> _Derived:
    """Validate a row and derive its stored fields; RowError if the store cannot hold it."""
    row_id = row.get("id")
    if not isinstance(row_id, str) or not row_id or FORBIDDEN_ID_CHARS & set(row_id) or len(row_id) > 255:
        raise RowError(f"row has no usable id: {str(row_id)[:80]!r}")
    start = row.get("startDateTime")
    try:
        if isinstance(start, str) and _CANONICAL_INSTANT.fullmatch(start):
            # The common case, without the general parser: only the calendar and clock need checking.
            dt.datetime.fromisoformat(start[:19])
            day, start_utc = start[:10], start
        else:
            day, start_utc = parse_instant(start).date().isoformat(), canonical_instant(start)
    except (TypeError, ValueError, AttributeError):
        raise RowError(f"row {row_id} has no valid startDateTime: {str(start)[:40]!r}") from None
    clash = [f for f in DERIVED_FIELDS if f in row]
    if clash:
        # Graph added a field with one of our names: refuse rather than silently overwrite its value.
        raise RowError(f"row {row_id} carries field(s) {clash} that the store derives itself")
    canonical = _canonical(row)
    chars = len(canonical) if canonical.isascii() else len(canonical.decode())
    # The SDK escapes every non-ASCII character (up to 12 bytes for 1 to 4 in UTF-8), so 5 bytes more per
    # UTF-8 continuation byte bound it; the derived fields add under 200 bytes.
    size = chars + 5 * (len(canonical) - chars) + 200
    return _Derived(day, start_utc, hashlib.sha256(canonical).hexdigest(), size)


def to_document(row: dict) -> dict:
    return _derive(row).document(row)


def _key(text: str) -> int:
    """64 bits of a row id or content hash: what DayWriter remembers per row (a collision among a day's ids,
    or between a row's old and new content, has a chance of about n^2 / 2^65). Never 0: _KeyTable marks free
    slots with 0, and a stored document without a rowHash is remembered as content 0, which must match no row."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") or 1


def _content_key(row_hash: str) -> int:
    """64 bits of a rowHash: it is a sha256 in hex already, so its first 16 digits are as good as a new hash
    of it (and cost no hashing, once per row of every page). A stored value that is not hex (edited by hand)
    is hashed like any text."""
    try:
        return int(row_hash[:16], 16) or 1
    except ValueError:
        return _key(row_hash)


class _KeyTable:
    """The map row key -> content key of one day, in two flat arrays of unsigned 64-bit numbers (open
    addressing, linear probing, at most half full): 32 to 64 bytes a row, where a dict of ints takes about 110
    (the int objects, not the table, are most of that). A day's rows are its only state that grows with its
    size, so this is what bounds a collecting process on a big day. Keys are hashes already: their low bits
    are the slot."""

    __slots__ = ("keys", "values", "mask", "size")

    def __init__(self, capacity: int = 1024):  # a power of two
        self.keys = array("Q", bytes(8 * capacity))
        self.values = array("Q", bytes(8 * capacity))
        self.mask = capacity - 1
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def get(self, key: int) -> int | None:
        keys, mask = self.keys, self.mask
        slot = key & mask
        while True:
            found = keys[slot]
            if found == key:
                return self.values[slot]
            if not found:
                return None
            slot = (slot + 1) & mask

    def put(self, key: int, value: int) -> None:
        keys, mask = self.keys, self.mask
        slot = key & mask
        while True:
            found = keys[slot]
            if found == key:
                self.values[slot] = value
                return
            if not found:
                break
            slot = (slot + 1) & mask
        keys[slot] = key
        self.values[slot] = value
        self.size += 1
        if 2 * self.size > len(keys):
            self._grow()

    def _grow(self) -> None:
        old_keys, old_values = self.keys, self.values
        capacity = 2 * len(old_keys)
        keys = self.keys = array("Q", bytes(8 * capacity))
        values = self.values = array("Q", bytes(8 * capacity))
        mask = self.mask = capacity - 1
        for key, value in zip(old_keys, old_values):
            if key:
                slot = key & mask
                while keys[slot]:
                    slot = (slot + 1) & mask
                keys[slot] = key
                values[slot] = value


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
        return dict(self.iter_hashes(day))

    def iter_hashes(self, day: str) -> Iterable[tuple[str, str | None]]:
        """(id, rowHash) of every document of a day, read in pages of HASH_PAGE_ITEMS, so a large day never
        arrives as one answer (a Cosmos page can be 4 MB, about 11 MB once parsed)."""
        query = "SELECT c.id, c.rowHash FROM c WHERE c.day = @day"
        items = self.container.query_items(query, parameters=[{"name": "@day", "value": day}], partition_key=day,
                                           max_item_count=HASH_PAGE_ITEMS)
        for item in items:
            yield item["id"], item.get("rowHash")

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

    What it remembers of a day's stored rows is two 64-bit numbers per row (of the id and of the content
    hash) in a _KeyTable rather than the strings: 32 to 64 bytes a row instead of about 250, read in pages.
    """

    def __init__(self, store: CallStore, pool: ThreadPoolExecutor, max_in_flight: int):
        self.store = store
        self.pool = pool
        self.slots = threading.BoundedSemaphore(max_in_flight)
        self.lock = threading.Lock()
        self.known: dict[str, _KeyTable] = {}  # day -> _key(id) -> _key(rowHash)
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

    def _load(self, day: str) -> _KeyTable:
        table = _KeyTable()
        for row_id, digest in self.store.iter_hashes(day):
            table.put(_key(row_id), _content_key(digest) if digest else 0)
        return table

    def _known(self, day: str) -> _KeyTable:
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

    def add(self, rows: Iterable[dict], gate: Callable[[], object] | None = None) -> WriteCounts:
        """Classify a page's rows and write the new and changed ones. `gate`, when given, is called after the
        rows are classified and before anything is written (the caller's archive upload, which can then run
        while the rows are hashed); what it raises fails the page with nothing written."""
        rows = list(rows)
        derived = [_derive(row) for row in rows]  # validates the whole page before writing any
        counts = WriteCounts()
        pending: dict[str, list[tuple[tuple[dict, _Derived], int]]] = {}
        with self.lock:
            for row, extra in zip(rows, derived):
                known = self._known(extra.day)
                row_key, content = _key(row["id"]), _content_key(extra.row_hash)
                previous = known.get(row_key)
                if previous == content:
                    counts.unchanged += 1
                    continue
                if previous is None:
                    counts.new += 1
                else:
                    counts.changed += 1
                known.put(row_key, content)
                pending.setdefault(extra.day, []).append(((row, extra), extra.size))
        if gate is not None:
            gate()
        with self.lock:
            self.days_written.update(pending)
        for day, day_rows in pending.items():
            for batch in _sized_batches(day_rows):
                # Documents (copies of their rows) are built a batch at a time, as it is sent: a page's worth
                # of them waiting for a free slot would be memory per window for nothing.
                self._submit(day, [extra.document(row) for row, extra in batch])
                counts.written += len(batch)
        with self.lock:
            self.counts.add(counts)
        return counts

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


def _batches(docs: list[dict]) -> Iterable[list[dict]]:
    return _sized_batches((doc, len(json.dumps(doc))) for doc in docs)


def _sized_batches(docs: Iterable[tuple[T, int]]) -> Iterable[list[T]]:
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
