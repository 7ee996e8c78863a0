"""The run ledger in Cosmos DB: what each run did per feed and day, day leases, and the next run's work list.

Documents (container COSMOS_RUNS_CONTAINER, partition key /pk = the feed name):
  day:{day}            the day's state: status of its last run, last success, last error, row counts, lease
  run:{runId}:{day}    one run's outcome for the day (kept as history)
  meta                 the feed's coverage start, fixed on the first run
  backfill:{id}        an operator's request to collect a date range again; done when every day succeeded

Runs of the same feed work at once (a timer run, a manual run, one that stalled past its lease), so every write
that depends on what was read is conditional: a replace carries the etag of the version read, a first write is a
create. When another run wrote in between, the write fails, the document is read again and the decision made
again on what it now says, a bounded number of times. No write puts back what another run wrote.
"""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import asdict, dataclass, field

from azure.core import MatchConditions
from azure.cosmos.exceptions import (CosmosAccessConditionFailedError, CosmosResourceExistsError,
                                     CosmosResourceNotFoundError)

from ..instants import days_between, now_iso
from .rows import COSMOS_SYSTEM_FIELDS

FIRST_RUN_LOOKBACK_DAYS = 30

# Reads and conditional writes one decision may take when other runs keep writing the same document. Each lost
# write means another run made progress, so a handful is plenty; past it the caller gets the safe answer.
WRITE_ATTEMPTS = 5


class LedgerContention(RuntimeError):
    """Other runs kept changing a ledger document between this run's read and its write."""


def _body(doc: dict) -> dict:
    """The document as written back: without the fields Cosmos DB sets itself."""
    return {k: v for k, v in doc.items() if k not in COSMOS_SYSTEM_FIELDS}


class _Conflict(Exception):
    """Another writer changed (or removed) the document since it was read."""


def _guarded(container, doc: dict, read: dict | None) -> None:
    """Write `doc` only if the document is still as `read` left it (absent when `read` is None); raises
    _Conflict when it is not."""
    try:
        if read is None:
            container.create_item(_body(doc))
        else:
            container.replace_item(doc["id"], _body(doc), etag=read["_etag"],
                                   match_condition=MatchConditions.IfNotModified)
    except (CosmosAccessConditionFailedError, CosmosResourceExistsError, CosmosResourceNotFoundError) as exc:
        raise _Conflict() from exc


@dataclass(frozen=True)
class LeaseResult:
    """Whether the lease was taken, and from which run if that run's lease had lapsed (it died or stalled)."""
    ok: bool
    took_over_from: str | None = None
    done: bool = False  # not taken because another run collected the day after `done_since`

    def __bool__(self) -> bool:
        return self.ok


@dataclass
class DayOutcome:
    feed: str
    day: str
    run_id: str
    outcome: str                  # succeeded | failed | skipped (lease held by another run)
    started: str
    ended: str
    rows: int = 0
    pages: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    retries: int = 0
    throttled_seconds: float = 0.0
    duration_seconds: float = 0.0
    error: str | None = None
    windows: int = 1
    days_written: list[str] = field(default_factory=list)
    took_over_from: str | None = None      # a run that held this day's lease and stopped (crashed) before finishing
    shape: dict | None = None              # rows per five minutes and page size (collect/day_shape.py), on success

    def as_dict(self) -> dict:
        # The shape (about 300 numbers) is kept in the day's state only: run records, the command line's JSON
        # and the operator routes' answers do not need it.
        out = asdict(self)
        del out["shape"]
        return out


def _holds(state: dict, run_id: str) -> bool:
    """Whether a run may still write the day's state: it holds the lease, or the lease was released and the
    last run recorded is this one (or none). A released lease with another run's id means that run took the day
    after ours lapsed and finished it."""
    owner = (state.get("lease") or {}).get("owner")
    if owner is not None:
        return owner == run_id
    return state.get("lastRunId") in (None, run_id)


def new_run_id(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


class Ledger:
    def __init__(self, container_client, clock=lambda: dt.datetime.now(dt.timezone.utc)):
        self._container = container_client
        self.clock = clock

    # --- coverage and the work list -------------------------------------------------------------------
    def coverage_start(self, feed: str, configured: dt.date | None, today: dt.date) -> dt.date:
        """COVERAGE_START if set; else the day fixed on the feed's first run (30 days before it), fixing it
        now if this is the first run. Only a collection calls this: a read must not fix the start."""
        start, fixed = self._coverage(feed, configured, today)
        if fixed:
            return start
        try:
            _guarded(self._container, {"id": "meta", "pk": feed, "coverageStart": start.isoformat()}, None)
        except _Conflict:
            # Another first run fixed it a moment ago: its start is the feed's start, for this run too.
            return self._coverage(feed, configured, today)[0]
        return start

    def planned_coverage_start(self, feed: str, configured: dt.date | None, today: dt.date) -> dt.date:
        """The coverage start without fixing it: what status shows before a feed's first run."""
        return self._coverage(feed, configured, today)[0]

    def _coverage(self, feed: str, configured: dt.date | None, today: dt.date) -> tuple[dt.date, bool]:
        """The coverage start, and whether it is fixed already (configured, or recorded by a first run)."""
        if configured:
            return configured, True
        try:
            meta = self._container.read_item("meta", partition_key=feed)
        except CosmosResourceNotFoundError:
            return today - dt.timedelta(days=FIRST_RUN_LOOKBACK_DAYS), False
        return dt.date.fromisoformat(meta["coverageStart"]), True

    def day_states(self, feed: str) -> dict[str, dict]:
        items = self._container.query_items("SELECT * FROM c WHERE c.pk = @feed AND c.kind = 'day'",
                                           parameters=[{"name": "@feed", "value": feed}], partition_key=feed)
        return {item["day"]: item for item in items}

    def work_list(self, feed: str, first: dt.date, last: dt.date, rescan_days: int) -> list[dt.date]:
        """Every day from `first` to `last` without a successful run, plus the last `rescan_days` days (late rows),
        oldest first."""
        if last < first:
            return []
        states = self.day_states(feed)
        missing = [d for d in days_between(first, last)
                   if states.get(d.isoformat(), {}).get("lastSuccessAt") is None]
        recent = days_between(max(first, last - dt.timedelta(days=rescan_days - 1)), last) if rescan_days else []
        return sorted(set(missing) | set(recent))

    # --- leases ---------------------------------------------------------------------------------------
    def acquire(self, feed: str, day: str, owner: str, seconds: float, done_since: str | None = None) -> LeaseResult:
        """Take the day's lease unless another live run holds it, or (with `done_since`) another run collected
        the day successfully since then: a run that planned the day before that has nothing left to do there.
        The etag makes two racing runs see each other: only one replace (or create) wins, and the loser decides
        again on what the winner wrote."""
        for _ in range(WRITE_ATTEMPTS):
            now = self.clock()
            lease = {"owner": owner, "until": now_iso(now + dt.timedelta(seconds=seconds))}
            state = self._day_state(feed, day)
            if state is None:
                fresh = {"id": f"day:{day}", "pk": feed, "kind": "day", "feed": feed, "day": day,
                         "status": "running", "lease": lease}
                try:
                    _guarded(self._container, fresh, None)
                    return LeaseResult(True)
                except _Conflict:
                    continue
            held = state.get("lease") or {}
            if held.get("owner") not in (None, owner) and held.get("until", "") > now_iso(now):
                return LeaseResult(False)
            if done_since and (state.get("lastSuccessAt") or "") >= done_since and state.get("lastRunId") != owner:
                return LeaseResult(False, done=True)
            lapsed = held.get("owner") if held.get("owner") not in (None, owner) else None
            try:
                _guarded(self._container, {**state, "lease": lease}, state)
                return LeaseResult(True, lapsed)
            except _Conflict:
                continue
        # Others kept writing the day: whoever they are, the day is busy, and skipping it is the safe answer.
        return LeaseResult(False)

    def renew(self, feed: str, day: str, owner: str, seconds: float) -> bool:
        """Extend our own lease; False when the lease is no longer ours."""
        for _ in range(WRITE_ATTEMPTS):
            state = self._day_state(feed, day)
            if state is None or (state.get("lease") or {}).get("owner") != owner:
                return False
            lease = {"owner": owner, "until": now_iso(self.clock() + dt.timedelta(seconds=seconds))}
            try:
                _guarded(self._container, {**state, "lease": lease}, state)
                return True
            except _Conflict:
                continue
        # Not sure the lease is still ours: the caller stops writing the day, which is always safe.
        return False

    def _day_state(self, feed: str, day: str) -> dict | None:
        try:
            return self._container.read_item(f"day:{day}", partition_key=feed)
        except CosmosResourceNotFoundError:
            return None

    # --- outcomes -------------------------------------------------------------------------------------
    def day_shape(self, feed: str, day: str) -> dict | None:
        """The shape its last successful run recorded for the day (collect/day_shape.py reads it), if any."""
        try:
            state = self._container.read_item(f"day:{day}", partition_key=feed)
        except CosmosResourceNotFoundError:
            return None
        return state.get("shape")

    def record(self, outcome: DayOutcome) -> bool:
        """Write the run's record and update the day's state, releasing the lease. The day's state is updated
        only while this run holds the day: a run whose lease lapsed and was taken by another run keeps its own
        run record but leaves the day (its status, counts and the other run's lease) to the run that took it.
        True when the day's state now tells this run's outcome."""
        doc = {"id": f"run:{outcome.run_id}:{outcome.day}", "pk": outcome.feed, "kind": "run", **outcome.as_dict()}
        self._container.upsert_item(doc)  # this run's own document: nothing another run writes
        if outcome.outcome == "skipped":
            return False
        for _ in range(WRITE_ATTEMPTS):
            read = self._day_state(outcome.feed, outcome.day)
            if read is not None and not _holds(read, outcome.run_id):
                return False
            state = dict(read) if read is not None else {
                "id": f"day:{outcome.day}", "pk": outcome.feed, "kind": "day", "feed": outcome.feed,
                "day": outcome.day}
            state.update({"status": outcome.outcome, "lastRunId": outcome.run_id, "lastRunAt": outcome.ended,
                          "lease": None})
            if outcome.outcome == "succeeded":
                state.update({"lastSuccessAt": outcome.ended, "rows": outcome.rows, "pages": outcome.pages,
                              "lastError": None, "shape": outcome.shape})
            else:
                state["lastError"] = outcome.error
            try:
                _guarded(self._container, state, read)
                return True
            except _Conflict:
                continue
        raise LedgerContention(f"feed {outcome.feed} day {outcome.day}: the day's state changed under each of "
                               f"{WRITE_ATTEMPTS} attempts to record run {outcome.run_id}; the run's record is "
                               f"kept, the day's state was left as the other runs wrote it")

    # --- backfill requests -----------------------------------------------------------------------------
    def request_backfill(self, feed: str, first: dt.date, last: dt.date, requested_by: str = "operator") -> dict:
        doc = {"id": f"backfill:{uuid.uuid4().hex[:12]}", "pk": feed, "kind": "backfill", "feed": feed,
               "from": first.isoformat(), "to": last.isoformat(), "status": "pending",
               "requestedAt": now_iso(self.clock()), "requestedBy": requested_by, "completedAt": None}
        self._container.create_item(doc)
        return doc

    def backfills(self, feed: str, pending_only: bool = False) -> list[dict]:
        query = "SELECT * FROM c WHERE c.pk = @feed AND c.kind = 'backfill'"
        if pending_only:
            query += " AND c.status = 'pending'"
        items = self._container.query_items(query, parameters=[{"name": "@feed", "value": feed}], partition_key=feed)
        return sorted(items, key=lambda b: b["requestedAt"])

    def settle_backfills(self, feed: str) -> list[dict]:
        """Mark done every pending request whose days all succeeded in a run that began after it was made.
        A request another run settled meanwhile is left as that run wrote it (and not reported again)."""
        states = self.day_states(feed)
        done = []
        for request in self.backfills(feed, pending_only=True):
            days = days_between(dt.date.fromisoformat(request["from"]), dt.date.fromisoformat(request["to"]))
            if not all((states.get(d.isoformat(), {}).get("lastSuccessAt") or "") >= request["requestedAt"]
                       for d in days):
                continue
            settled = self._settle(feed, request)
            if settled is not None:
                done.append(settled)
        return done

    def _settle(self, feed: str, request: dict) -> dict | None:
        read = request
        for _ in range(WRITE_ATTEMPTS):
            if read is None or read.get("status") != "pending":
                return None
            settled = {**_body(read), "status": "done", "completedAt": now_iso(self.clock())}
            try:
                _guarded(self._container, settled, read)
                return settled
            except _Conflict:
                try:
                    read = self._container.read_item(request["id"], partition_key=feed)
                except CosmosResourceNotFoundError:
                    read = None
        # Still pending and still contended: the next run's settle tries again.
        return None

    def runs(self, feed: str, day: str | None = None, since: str | None = None) -> list[dict]:
        """Run records of a feed, oldest first: of one day, or of every day since a start time."""
        query = "SELECT * FROM c WHERE c.pk = @feed AND c.kind = 'run'"
        params = [{"name": "@feed", "value": feed}]
        if day:
            query += " AND c.day = @day"
            params.append({"name": "@day", "value": day})
        if since:
            query += " AND c.started >= @since"
            params.append({"name": "@since", "value": since})
        items = list(self._container.query_items(query, parameters=params, partition_key=feed))
        return sorted(items, key=lambda r: (r["started"], r["run_id"]))
