"""DayWriter's bookkeeping without a store: new / changed / unchanged, no row written twice, and the compact
table it keeps per day (shared/store.py), plus the malloc tuning of a collecting process (shared/heap.py)."""
import random
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.collect.heap import pin_mmap_threshold
from shared.config.feeds import FEEDS
from shared.stores.calls import DayWriter
from shared.stores.keytable import KeyTable, row_key
from shared.stores.rows import row_hash, to_document


def test_the_key_table_is_a_map_of_64_bit_numbers():
    rng = random.Random(7)
    table, expected = KeyTable(capacity=8), {}
    keys = [rng.getrandbits(64) or 1 for _ in range(3000)]
    keys += [(i << 40) | 0x5 for i in range(1, 300)]  # the same low bits: one long probe run
    for key in keys + keys[:500]:  # the repeats replace values
        value = rng.getrandbits(64)
        assert table.get(key) == expected.get(key)
        table.put(key, value)
        expected[key] = value
    assert len(table) == len(expected) and len(table.keys) >= 2 * len(table)
    assert all(table.get(key) == value for key, value in expected.items())
    assert table.get(12345) is None
    table.put(2**64 - 1, 0)
    assert table.get(2**64 - 1) == 0  # content 0 (no stored rowHash) is a value like any other


def test_keys_are_never_zero():
    assert all(row_key(str(i)) != 0 for i in range(1000))


class FakeStore:
    """A feed's store in memory: what a DayWriter reads and writes of it."""
    feed = FEEDS["pstn"]

    def __init__(self, stored: dict[str, dict[str, str | None]]):
        self.stored = stored  # day -> id -> rowHash
        self.batches: list[tuple[str, list[dict]]] = []
        self.queries: list[str] = []

    def iter_hashes(self, day):
        self.queries.append(day)
        return iter(self.stored.get(day, {}).items())

    def write_batch(self, day, docs):
        self.batches.append((day, docs))


def row(i: int, day: str = "2026-05-04", charge: float = 0.1) -> dict:
    return {"id": f"row-{i}", "startDateTime": f"{day}T10:00:{i % 60:02d}.0000000Z", "charge": charge}


def test_the_writer_counts_and_writes_only_what_differs():
    same, changed, hashless = row(1), row(2), row(3)
    store = FakeStore({"2026-05-04": {same["id"]: row_hash(same), changed["id"]: row_hash(row(2, charge=9.9)),
                                      hashless["id"]: None}})
    fresh = [row(i) for i in range(10, 260)]
    next_day = row(500, day="2026-05-05")
    with ThreadPoolExecutor(2) as pool:
        writer = DayWriter(store, pool, max_in_flight=2)
        first = writer.add([same, changed, hashless, next_day] + fresh)
        # A row seen again in the same run is not written again; a new version of it is.
        second = writer.add([fresh[0], {**fresh[1], "charge": 0.5}])
        total = writer.finish()
    assert (first.new, first.changed, first.unchanged, first.written) == (251, 2, 1, 253)
    assert (second.new, second.changed, second.unchanged, second.written) == (0, 1, 1, 1)
    assert (total.new, total.changed, total.unchanged, total.written) == (251, 3, 2, 254)
    assert sorted(store.queries) == ["2026-05-04", "2026-05-05"]  # one hash query per day
    assert writer.days_written == {"2026-05-04", "2026-05-05"}
    written = [doc for _, docs in store.batches for doc in docs]
    assert all(len(docs) <= 100 and all(d["day"] == day for d in docs) for day, docs in store.batches)
    expected = [changed, hashless, next_day] + fresh + [{**fresh[1], "charge": 0.5}]
    assert sorted(written, key=repr) == sorted((to_document(r, "startDateTime") for r in expected), key=repr)


def test_a_page_with_a_bad_row_writes_nothing():
    store = FakeStore({})
    with ThreadPoolExecutor(1) as pool:
        writer = DayWriter(store, pool, max_in_flight=2)
        with pytest.raises(ValueError):
            writer.add([row(1), {"id": "no-start"}])
        writer.finish()
    assert store.batches == []


def test_pinning_the_mmap_threshold_is_idempotent():
    assert pin_mmap_threshold() is pin_mmap_threshold()


def test_prefetched_hash_queries_run_on_the_pool_once_per_day_and_are_used():
    stored = row(1)
    store = FakeStore({"2026-05-04": {stored["id"]: row_hash(stored)}})
    with ThreadPoolExecutor(2) as pool:
        writer = DayWriter(store, pool, max_in_flight=2)
        writer.prefetch(["2026-05-04", "2026-05-05"])
        writer.prefetch(["2026-05-04"])  # asked again: still one query
        counts = writer.add([stored, row(2)])
        assert (counts.new, counts.unchanged) == (1, 1)
        writer.finish()
    assert sorted(store.queries) == ["2026-05-04", "2026-05-05"]


def test_a_prefetch_still_queued_behind_busy_pool_threads_is_done_inline_not_waited_for():
    import threading

    release = threading.Event()
    store = FakeStore({})
    with ThreadPoolExecutor(1) as pool:
        pool.submit(release.wait, 30)  # the only pool thread is busy, as with batches waiting on the lock
        writer = DayWriter(store, pool, max_in_flight=2)
        writer.prefetch(["2026-05-04"])
        done = threading.Event()
        adder = threading.Thread(target=lambda: (writer.add([row(1)]), done.set()))
        adder.start()
        finished_without_the_pool = done.wait(10)
        release.set()
        adder.join()
        writer.finish()
    assert finished_without_the_pool and store.queries == ["2026-05-04"]


def test_a_failed_prefetch_fails_the_page_that_needs_it():
    class Unreachable(FakeStore):
        def iter_hashes(self, day):
            raise ConnectionError("store unreachable")

    with ThreadPoolExecutor(2) as pool:
        writer = DayWriter(Unreachable({}), pool, max_in_flight=2)
        writer.prefetch(["2026-05-04"])
        with pytest.raises(ConnectionError):
            writer.add([row(1)])
        writer.finish()


def json_dumps_canonical(row):
    """The rowHash input every stored hash was taken of; canonical_json must give these bytes for every row."""
    import json

    return json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def test_the_canonical_json_of_a_row_is_what_json_dumps_wrote_for_any_row():
    from hypothesis import given, settings, strategies as st

    from shared.stores.rows import canonical_json

    scalars = (st.none() | st.booleans() | st.integers() | st.integers(-2**70, 2**70)
               | st.floats(allow_nan=True, allow_infinity=True)
               | st.sampled_from([0.0, -0.0, 1e-4, 9.99e-5, 1e16, 9999999999999998.0, 0.0123, 1e300, 5e-324])
               | st.text())
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.text(max_size=5), inner, max_size=4), max_leaves=20)

    @settings(max_examples=600, deadline=None)
    @given(st.dictionaries(st.text(max_size=8), values, max_size=8))
    def same(row):
        try:
            expected = json_dumps_canonical(row)
        except UnicodeEncodeError:  # a lone surrogate: no row hash either way
            with pytest.raises(UnicodeEncodeError):
                canonical_json(row)
            return
        assert canonical_json(row) == expected

    same()
    graph_like = {"id": "x", "charge": 0.0123, "duration": 61, "callerNumber": "+1 425 555 0100", "é": "ü😀",
                  "administrativeUnitInfos": [{"id": "au", "n": 1e-7}], "ctl": "\x00\x1f\x7f\u2028"}
    assert canonical_json(graph_like) == json_dumps_canonical(graph_like)
