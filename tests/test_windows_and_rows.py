"""Pure logic: day windows, sub-windows, instants, and turning rows into documents."""
import datetime as dt

import pytest

from shared.stores.calls import sized_batches
from shared.stores.rows import RowError, row_hash, to_document

from .collecting import strip_document
from shared.collect.windows import day_window, split
from shared.instants import canonical_instant, parse_instant, yesterday

UTC = dt.timezone.utc


def test_a_utc_day_is_midnight_to_midnight():
    w = day_window(dt.date(2026, 5, 4), "UTC")
    assert (w.start, w.end) == (dt.datetime(2026, 5, 4, tzinfo=UTC), dt.datetime(2026, 5, 5, tzinfo=UTC))


@pytest.mark.parametrize("day, start, hours", [
    (dt.date(2026, 3, 29), dt.datetime(2026, 3, 28, 23, tzinfo=UTC), 23),   # spring forward
    (dt.date(2026, 10, 25), dt.datetime(2026, 10, 24, 22, tzinfo=UTC), 25),  # fall back
    (dt.date(2026, 7, 1), dt.datetime(2026, 6, 30, 22, tzinfo=UTC), 24),
])
def test_berlin_days_across_dst(day, start, hours):
    w = day_window(day, "Europe/Berlin")
    assert w.start == start and (w.end - w.start) == dt.timedelta(hours=hours)


def test_yesterday_follows_the_time_zone():
    now = dt.datetime(2026, 3, 29, 22, 30, tzinfo=UTC)  # already the 30th in Berlin
    assert yesterday("UTC", now) == dt.date(2026, 3, 28)
    assert yesterday("Europe/Berlin", now) == dt.date(2026, 3, 29)


def test_subwindows_tile_the_window_exactly():
    w = day_window(dt.date(2026, 3, 29), "Europe/Berlin")
    parts = split(w, 4)
    assert parts[0].start == w.start and parts[-1].end == w.end and len(parts) == 4
    assert all(a.end == b.start for a, b in zip(parts, parts[1:]))
    assert split(w, 1) == [w]


def test_graph_instants_with_seven_fractional_digits_and_offsets():
    assert parse_instant("2019-11-01T00:00:08.2589935Z") == dt.datetime(2019, 11, 1, 0, 0, 8, 258993, tzinfo=UTC)
    assert parse_instant("2019-11-01T01:00:00+02:00") == dt.datetime(2019, 10, 31, 23, tzinfo=UTC)
    assert parse_instant("2019-11-01T23:59:59.9999999Z").date() == dt.date(2019, 11, 1)
    with pytest.raises(ValueError):
        parse_instant("yesterday")


@pytest.mark.parametrize("text, canonical", [
    ("2019-11-01T00:00:08.2589935Z", "2019-11-01T00:00:08.2589935Z"),
    ("2019-11-01T00:00:08Z", "2019-11-01T00:00:08.0000000Z"),
    ("2019-11-01T00:00:08.25Z", "2019-11-01T00:00:08.2500000Z"),
    ("2019-11-01T02:00:08.1234567+02:00", "2019-11-01T00:00:08.1234567Z"),
    ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.0000000Z"),
])
def test_canonical_instants_sort_by_time_whatever_their_precision(text, canonical):
    assert canonical_instant(text) == canonical


ROW = {"id": "9c4984c7-6c3c-427d-a30c-bd0b2eacee90", "startDateTime": "2019-11-01T00:00:08.2589935Z",
       "charge": 0.12, "futureField": {"nested": [1, None]}}


def test_a_document_keeps_every_field_and_adds_the_derived_ones():
    doc = to_document(ROW, "startDateTime")
    assert doc["day"] == "2019-11-01" and doc["rowHash"] == row_hash(ROW)
    assert doc["startUtc"] == "2019-11-01T00:00:08.2589935Z"
    assert strip_document({**doc, "_etag": "x", "_ts": 1}) == ROW


def test_the_hash_ignores_key_order_but_not_values():
    assert row_hash(dict(reversed(list(ROW.items())))) == row_hash(ROW)
    assert row_hash({**ROW, "charge": 0.13}) != row_hash(ROW)


@pytest.mark.parametrize("row, message", [
    ({"startDateTime": "2019-11-01T00:00:00Z"}, "no usable id"),
    ({"id": "a/b", "startDateTime": "2019-11-01T00:00:00Z"}, "no usable id"),
    ({"id": 5, "startDateTime": "2019-11-01T00:00:00Z"}, "no usable id"),
    ({"id": "x"}, "startDateTime"),
    ({"id": "x", "startDateTime": "soon"}, "startDateTime"),
    ({"id": "x", "startDateTime": "2019-11-01T00:00:00Z", "day": "clash"}, "derives"),
])
def test_rows_the_store_cannot_hold_are_refused_with_a_reason(row, message):
    with pytest.raises(RowError, match=message):
        to_document(row, "startDateTime")


def test_batches_respect_the_operation_limit():
    docs = [({"id": str(i)}, 30) for i in range(250)]
    assert [len(b) for b in sized_batches(docs)] == [100, 100, 50]
    big = [({"id": str(i)}, 300_030) for i in range(7)]
    assert [len(b) for b in sized_batches(big)] == [3, 3, 1]
