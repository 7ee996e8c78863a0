"""Runs racing on the ledger, on the local Cosmos server: every interleaving forced, none left to timing.

Two (or three) Ledger objects share one real runs container, as two collector processes would. A shared clock
that the test moves makes a lease lapse without waiting; `Interleaved` wraps the container client of one run
and lets another run act between that run's read and its write, the moment a real race would hit.
"""
from __future__ import annotations

import datetime as dt

import pytest

from shared.stores.clients import cosmos_client
from shared.stores.ledger import DayOutcome, Ledger
from tests.collecting import fresh_settings

FEED = "pstn"
DAY = "2026-05-04"
LEASE = 60
T0 = dt.datetime(2026, 5, 5, 3, 0, tzinfo=dt.timezone.utc)


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


class Interleaved:
    """A real container client that runs a test's action once, right after a chosen call (returned or raised),
    before the caller sees the answer: another run's step lands between this run's read and its write."""

    def __init__(self, container):
        self._container = container
        self._hooks: list[tuple[str, object, object]] = []
        self.calls: list[str] = []

    def after(self, method: str, action, when=lambda *args, **kwargs: True) -> None:
        self._hooks.append((method, when, action))

    def pending(self) -> int:
        return len(self._hooks)

    def __getattr__(self, name):
        attr = getattr(self._container, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            self.calls.append(name)
            try:
                result = attr(*args, **kwargs)
                if name == "query_items":
                    result = list(result)  # the answer as it was before the other run acts, as the caller reads it
                return result
            finally:
                for hook in list(self._hooks):
                    method, when, action = hook
                    if method == name and when(*args, **kwargs):
                        self._hooks.remove(hook)
                        action()
        return call


@pytest.fixture(scope="module")
def settings(stack):
    return fresh_settings(stack, stack.graph_url, FEEDS="pstn")


@pytest.fixture
def runs(settings):
    """A runs container of its own per test, emptied: the days and runs of one test do not meet another's."""
    container = cosmos_client(settings).get_database_client(settings.cosmos_database) \
        .get_container_client(settings.cosmos_runs_container)
    for doc in list(container.query_items("SELECT c.id, c.pk FROM c", enable_cross_partition_query=True)):
        container.delete_item(doc["id"], partition_key=doc["pk"])
    return container


def outcome(run_id: str, result: str = "succeeded", rows: int = 10, error: str | None = None) -> DayOutcome:
    return DayOutcome(FEED, DAY, run_id, result, now_text(), now_text(), rows=rows, pages=1, error=error)


def now_text() -> str:
    return "2026-05-05T03:00:00.000Z"


def state(ledger: Ledger) -> dict:
    return ledger.day_states(FEED)[DAY]


def run_records(ledger: Ledger) -> dict[str, dict]:
    return {r["run_id"]: r for r in ledger.runs(FEED, DAY)}


def is_day_read(*args, **kwargs) -> bool:
    return (args[0] if args else kwargs.get("item")) == f"day:{DAY}"


# --- a lapsed run records after another run took the day ----------------------------------------------------
def test_a_lapsed_run_recording_after_a_takeover_leaves_the_new_lease_alone(runs):
    clock = Clock()
    a, b, c = Ledger(runs, clock), Ledger(runs, clock), Ledger(runs, clock)
    assert a.acquire(FEED, DAY, "run-a", LEASE)
    clock.advance(LEASE + 1)  # run A stalls past its lease
    taken = b.acquire(FEED, DAY, "run-b", LEASE)
    assert taken and taken.took_over_from == "run-a"

    wrote = a.record(outcome("run-a", "failed", 0, "stalled"))
    lease = state(b)["lease"]
    assert lease and lease["owner"] == "run-b", "the lapsed run's record cleared the live run's lease"
    assert not c.acquire(FEED, DAY, "run-c", LEASE), "a third run got in beside the live one"
    assert run_records(a)["run-a"]["outcome"] == "failed"  # run A's own history is kept
    assert wrote is False


def test_a_lapsed_run_recording_after_the_new_run_finished_leaves_its_outcome(runs):
    clock = Clock()
    a, b = Ledger(runs, clock), Ledger(runs, clock)
    assert a.acquire(FEED, DAY, "run-a", LEASE)
    clock.advance(LEASE + 1)
    assert b.acquire(FEED, DAY, "run-b", LEASE)
    b.record(outcome("run-b", "succeeded", rows=42))

    a.record(outcome("run-a", "failed", 0, "stalled"))
    day = state(a)
    assert (day["status"], day["lastRunId"], day["rows"], day["lastError"]) == ("succeeded", "run-b", 42, None), \
        f"the lapsed run overwrote the outcome of the run that took the day over: {day}"
    records = run_records(a)
    assert (records["run-a"]["outcome"], records["run-b"]["outcome"]) == ("failed", "succeeded")


def test_a_lapsed_run_that_nobody_took_over_still_records_its_day(runs):
    clock = Clock()
    a = Ledger(runs, clock)
    assert a.acquire(FEED, DAY, "run-a", LEASE)
    clock.advance(LEASE + 1)  # lapsed, but no other run wanted the day: its work is the day's latest
    wrote = a.record(outcome("run-a", rows=7))
    day = state(a)
    assert (day["status"], day["lastRunId"], day["rows"], day["lease"]) == ("succeeded", "run-a", 7, None)
    assert wrote is True


# --- the race between a run's read and its write --------------------------------------------------------------
def test_a_takeover_between_the_lapsed_runs_read_and_write_survives(runs):
    clock = Clock()
    a_container = Interleaved(runs)
    a, b, c = Ledger(a_container, clock), Ledger(runs, clock), Ledger(runs, clock)
    assert a.acquire(FEED, DAY, "run-a", LEASE)
    clock.advance(LEASE + 1)
    taken = []
    # Run A reads the day (still its lease, lapsed); run B takes the day before A writes.
    a_container.after("read_item", lambda: taken.append(b.acquire(FEED, DAY, "run-b", LEASE)), is_day_read)

    wrote = a.record(outcome("run-a", "succeeded", rows=5))
    assert a_container.pending() == 0 and taken and taken[0].took_over_from == "run-a"
    day = state(b)
    assert day["lease"] and day["lease"]["owner"] == "run-b", f"run A's write cleared the lease run B took: {day}"
    assert day["status"] == "running" and "lastRunId" not in day, f"run A wrote the day run B holds: {day}"
    assert not c.acquire(FEED, DAY, "run-c", LEASE), "a third run got in beside run B"
    assert wrote is False  # run A is told its outcome is not the day's

    b.record(outcome("run-b", "succeeded", rows=6))
    day = state(b)
    assert (day["lastRunId"], day["rows"], day["lease"]) == ("run-b", 6, None)
    records = run_records(b)
    assert (records["run-a"]["rows"], records["run-b"]["rows"]) == (5, 6)  # each run's record tells its own run


def test_a_renewal_between_a_read_and_a_write_is_read_again_not_lost(runs):
    clock = Clock()
    a_container = Interleaved(runs)
    a, a_renewer = Ledger(a_container, clock), Ledger(runs, clock)
    assert a.acquire(FEED, DAY, "run-a", LEASE)
    # Another thread of the same run renews between the record's read and its write: the record still lands,
    # after reading the day again.
    a_container.after("read_item", lambda: a_renewer.renew(FEED, DAY, "run-a", LEASE), is_day_read)
    a_container.calls.clear()
    wrote = a.record(outcome("run-a", rows=3))
    day = state(a)
    assert (day["status"], day["rows"], day["lease"]) == ("succeeded", 3, None)
    assert wrote is True
    assert a_container.calls.count("read_item") == 2, a_container.calls  # the write lost once, then read again


def test_a_run_that_lost_its_lease_between_read_and_write_cannot_renew(runs):
    clock = Clock()
    a_container = Interleaved(runs)
    a, b = Ledger(a_container, clock), Ledger(runs, clock)
    assert a.acquire(FEED, DAY, "run-a", LEASE)
    clock.advance(LEASE + 1)
    a_container.after("read_item", lambda: b.acquire(FEED, DAY, "run-b", LEASE), is_day_read)
    assert not a.renew(FEED, DAY, "run-a", LEASE)
    assert state(b)["lease"]["owner"] == "run-b"


def test_a_release_between_an_acquires_read_and_write_lets_the_day_be_taken(runs):
    clock = Clock()
    b_container = Interleaved(runs)
    a, b = Ledger(runs, clock), Ledger(b_container, clock)
    assert a.acquire(FEED, DAY, "run-a", LEASE)
    clock.advance(LEASE + 1)
    # Run B reads A's lapsed lease; A finishes and releases the day before B writes. The day is free: B takes
    # it (after reading again) rather than skipping a day nobody holds.
    b_container.after("read_item", lambda: a.record(outcome("run-a", rows=4)), is_day_read)
    taken = b.acquire(FEED, DAY, "run-b", LEASE)
    assert taken and taken.took_over_from is None, taken
    day = state(a)
    assert (day["lease"]["owner"], day["lastRunId"], day["rows"]) == ("run-b", "run-a", 4)


def test_two_runs_creating_the_days_state_at_once_one_wins(runs):
    clock = Clock()
    a_container = Interleaved(runs)
    a, b = Ledger(a_container, clock), Ledger(runs, clock)
    a_container.after("read_item", lambda: b.acquire(FEED, DAY, "run-b", LEASE), is_day_read)
    assert not a.acquire(FEED, DAY, "run-a", LEASE)  # A saw no document, but B created it first
    assert state(b)["lease"]["owner"] == "run-b"


# --- the first run's coverage start, and backfill requests ---------------------------------------------------
def test_two_first_runs_fix_one_coverage_start(runs):
    a_container = Interleaved(runs)
    a, b = Ledger(a_container), Ledger(runs)
    today_a, today_b = dt.date(2026, 5, 5), dt.date(2026, 5, 6)  # the second run starts just after midnight
    from_b = []
    a_container.after("read_item", lambda: from_b.append(b.coverage_start(FEED, None, today_b)),
                      lambda *args, **kwargs: args[0] == "meta")
    from_a = a.coverage_start(FEED, None, today_a)
    assert from_b == [today_b - dt.timedelta(days=30)]
    assert from_a == from_b[0], "the two first runs work to different coverage starts"
    assert b.coverage_start(FEED, None, dt.date(2026, 6, 1)) == from_b[0]  # fixed, not overwritten


def test_a_backfill_settled_by_another_run_meanwhile_is_left_as_it_settled_it(runs):
    clock_a, clock_b = Clock(), Clock()
    clock_b.advance(5)
    a_container = Interleaved(runs)
    a, b = Ledger(a_container, clock_a), Ledger(runs, clock_b)
    request = b.request_backfill(FEED, dt.date(2026, 5, 4), dt.date(2026, 5, 4))
    assert b.acquire(FEED, DAY, "run-b", LEASE)
    # The request was made at T0 + 5 s; make the day's success come after it.
    clock_b.advance(5)
    b.record(DayOutcome(FEED, DAY, "run-b", "succeeded", "2026-05-05T03:00:07.000Z", "2026-05-05T03:00:09.000Z",
                        rows=1, pages=1))
    settled_by_b = []
    a_container.after("query_items", lambda: settled_by_b.extend(b.settle_backfills(FEED)),
                      lambda query, *args, **kwargs: "'backfill'" in query)
    settled_by_a = a.settle_backfills(FEED)
    assert [r["id"] for r in settled_by_b] == [request["id"]]
    assert settled_by_a == [], "both runs report settling the same request"
    stored = {r["id"]: r for r in b.backfills(FEED)}[request["id"]]
    assert (stored["status"], stored["completedAt"]) == ("done", settled_by_b[0]["completedAt"])
