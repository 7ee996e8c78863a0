"""Cutting a day into windows by its shape (shared.day_shape): pure logic, no Azure parts."""
from __future__ import annotations

import datetime as dt
import math
import random

import pytest

from shared.collect.day_shape import BUCKET_SECONDS, DayShape, ShapeCounter, buckets, plan
from shared.collect.windows import Window, day_window, split

UTC = dt.timezone.utc
DAY = day_window(dt.date(2026, 5, 4), "UTC")


def diurnal(total: int, seed: int = 1) -> tuple[int, ...]:
    """A business-hours day: most rows between 08:00 and 18:00, a few at night."""
    rng = random.Random(seed)
    weights = [0.2 + 5 * math.exp(-((i * BUCKET_SECONDS / 3600 - 13) / 3) ** 2) for i in range(buckets(DAY))]
    counts = [0] * len(weights)
    for i in rng.choices(range(len(weights)), weights, k=total):
        counts[i] += 1
    return tuple(counts)


def expected_rows(window: Window, shape: DayShape, day: Window = DAY) -> float:
    """Rows a window should hold if each bucket's rows are spread evenly over the bucket."""
    total = 0.0
    for i, count in enumerate(shape.counts):
        b_start = day.start + dt.timedelta(seconds=i * BUCKET_SECONDS)
        b_end = min(day.end, b_start + dt.timedelta(seconds=BUCKET_SECONDS))
        overlap = (min(b_end, window.end) - max(b_start, window.start)).total_seconds()
        if overlap > 0:
            total += count * overlap / (b_end - b_start).total_seconds()
    return total


def assert_tiles(windows: list[Window], day: Window) -> None:
    assert windows[0].start == day.start and windows[-1].end == day.end
    assert all(a.end == b.start for a, b in zip(windows, windows[1:]))
    assert all(w.end > w.start and w.start.microsecond == 0 for w in windows)


@pytest.mark.parametrize("total", [0, 1, 700, 5_000, 20_000])
def test_planned_windows_tile_the_day_and_each_holds_at_most_the_fill_of_a_page(total):
    shape = DayShape(DAY.start.isoformat(), diurnal(total), 1000)
    windows = plan(DAY, shape, 64)
    assert_tiles(windows, DAY)
    assert max(expected_rows(w, shape) for w in windows) <= 800 + 1e-6
    # Few windows beyond the minimum the page size allows: quiet buckets are joined, not read one by one.
    assert len(windows) <= max(1, 1.5 * total / 800 + 2)


@pytest.mark.parametrize("parts", [3, 8, 24])
def test_when_fewer_windows_can_be_read_at_once_they_hold_many_pages_each_not_a_partial_page_more(parts):
    total = 1_000_000
    shape = DayShape(DAY.start.isoformat(), diurnal(total), 1000)
    windows = plan(DAY, shape, parts)
    assert_tiles(windows, DAY)
    assert parts <= len(windows) <= 2 * parts + 2   # requests: about the day's pages plus one per window
    assert max(expected_rows(w, shape) for w in windows) <= -(-total // parts) + 1e-6


def test_a_busy_bucket_is_cut_into_equal_parts_and_quiet_ones_are_joined():
    counts = [0] * buckets(DAY)
    counts[100] = 2_000
    shape = DayShape(DAY.start.isoformat(), tuple(counts), 1000)
    windows = plan(DAY, shape, 64)
    bucket_start = DAY.start + dt.timedelta(seconds=100 * BUCKET_SECONDS)
    assert windows[0] == Window(DAY.start, bucket_start)   # the empty morning is one window
    assert windows[1:4] == split(Window(bucket_start, bucket_start + dt.timedelta(seconds=BUCKET_SECONDS)), 3)
    assert windows[4:] == [Window(bucket_start + dt.timedelta(seconds=BUCKET_SECONDS), DAY.end)]


def test_the_page_size_seen_sets_the_target_and_an_unknown_one_is_graphs_1000():
    counts = diurnal(5_000)
    small = plan(DAY, DayShape(DAY.start.isoformat(), counts, 100), 64)
    default = plan(DAY, DayShape(DAY.start.isoformat(), counts, None), 64)
    assert max(expected_rows(w, DayShape("", counts, 100)) for w in small) <= 80 + 1e-6
    assert len(small) > 5 * len(default)


def test_a_dst_day_of_25_hours_is_planned_to_its_end():
    day = day_window(dt.date(2026, 10, 25), "Europe/Berlin")
    assert (day.end - day.start) == dt.timedelta(hours=25) and buckets(day) == 300
    counter = ShapeCounter(day)
    for minute in range(0, 25 * 60, 2):
        counter.add(day.start + dt.timedelta(minutes=minute))
    windows = plan(day, counter.shape(day.start.isoformat()), 64)
    assert_tiles(windows, day)


def test_the_counter_buckets_rows_ignores_strays_and_keeps_the_largest_full_page():
    counter = ShapeCounter(DAY)
    counter.add(DAY.start)
    counter.add(DAY.start + dt.timedelta(seconds=BUCKET_SECONDS - 1))
    counter.add(DAY.start + dt.timedelta(seconds=BUCKET_SECONDS))
    counter.add(DAY.end)                                   # the next day's first instant
    counter.add(DAY.start - dt.timedelta(microseconds=1))  # the day before
    counter.full_page(1000)
    counter.full_page(999)
    shape = counter.shape("2026-05-04T00:00:00Z")
    assert shape.counts[:3] == (2, 1, 0) and sum(shape.counts) == 3 and shape.page_rows == 1000
    assert DayShape.from_dict(shape.as_dict()) == shape
    assert ShapeCounter(DAY).shape("x").page_rows is None


@pytest.mark.parametrize("stored", [
    None, "shape", {}, {"start": "x", "bucketSeconds": 900, "counts": [1], "pageRows": 1000},
    {"start": "x", "bucketSeconds": BUCKET_SECONDS, "counts": [1, -1], "pageRows": 1000},
    {"start": "x", "bucketSeconds": BUCKET_SECONDS, "counts": "1,2", "pageRows": 1000},
    {"start": "x", "bucketSeconds": BUCKET_SECONDS, "counts": [1, 2.5], "pageRows": 1000},
    {"start": "x", "bucketSeconds": BUCKET_SECONDS, "counts": [1], "pageRows": 0},
    {"start": 5, "bucketSeconds": BUCKET_SECONDS, "counts": [1], "pageRows": None},
])
def test_a_stored_shape_this_code_did_not_write_is_ignored(stored):
    assert DayShape.from_dict(stored) is None
