"""One feed's day, collected once: take its lease, plan its windows, fetch them, archive each page, store its
rows, and record the outcome.

`DayCollection.run()` reads top to bottom. The object owns everything the day needs and nothing outlives it:
the plan, the manifest, the writer, the lease and the counters. Its rules:
- nothing of a page is written before the page is archived (replay can always rebuild what was written);
- a page with a row the store cannot hold writes nothing, and fails the day; so does a page the Graph client
  refused (not a page, a bad nextLink): either is archived as page-NNNNN.rejected.json, and the manifest says why;
- a row whose time is far from the day (Graph's "never", 0001-01-01, or a clock bug) is stored like any other,
  and the day warns about such rows once, with how many and the earliest and latest;
- a day either succeeds or is recorded failed with its error (the next run retries it); a failure never
  deletes anything, because rows are only ever upserted.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field

from ..config.feeds import Feed
from ..config.settings import Settings
from ..derive.summaries import refresh_summaries
from ..graph.errors import GraphPageError
from ..instants import format_instant, now_iso, parse_instant
from ..stores import Stores
from ..stores.archive import Manifest, PageEntry, run_prefix
from ..stores.calls import DayWriter
from ..stores.rows import RowError
from ..stores.outages import unreachable
from ..stores.ledger import DayOutcome
from .day_shape import DayShape, ShapeCounter, plan
from .windows import Window, day_window, split, utc_days

log = logging.getLogger("collector")

# Most windows of a day read at once when the day's shape is known (see DayCollection._plan).
MAX_WINDOW_THREADS = 64
# Seconds a Graph page takes to arrive, for sizing how many requests keep the rate limit busy.
ASSUMED_PAGE_SECONDS = 2.0
# Prefix of a day's error when a store did not answer at all: the run stops, as every later day would fail too.
STORE_UNREACHABLE = "store unreachable: "
# How far outside its day's window a row's time must be to be worth a warning. Rows just outside are ordinary
# (the README keeps them): the window already is the day in TIME_ZONE, so no zone offset explains more than a
# few hours, and a call that began before the window and ended in it began less than a day before. Graph's
# "never" (0001-01-01T00:00:00Z) and a clock bug are years away, so the margin does not hide them.
FAR_FROM_DAY = dt.timedelta(days=1)


def far_from_window(instant: dt.datetime, window: Window, margin: dt.timedelta = FAR_FROM_DAY) -> bool:
    """Whether a row's time lies more than `margin` before the window's start or after its end."""
    return instant < window.start - margin or instant > window.end + margin


class FarRows:
    """The rows of a day whose time is far from it, by id: a row that two windows return (an inclusive bound, a
    fall-back to whole days) is one row."""

    def __init__(self):
        self._times: dict[str, dt.datetime] = {}

    def add(self, row_id: str, instant: dt.datetime) -> None:
        self._times[row_id] = instant

    @property
    def count(self) -> int:
        return len(self._times)

    def span(self) -> tuple[dt.datetime, dt.datetime]:
        """The earliest and the latest time; only when count > 0."""
        return min(self._times.values()), max(self._times.values())


class LeaseLost(RuntimeError):
    """Another run took this day's lease (ours expired while the day was still running)."""


@dataclass(frozen=True)
class DayContext:
    """What every day of a run shares: settings, the Graph client, the stores and the write pool."""
    settings: Settings
    graph: object  # shared.graph.GraphClient, or a stand-in with the same pages() and stats
    stores: Stores
    pool: ThreadPoolExecutor
    # Days of a run collected at once may share a UTC day (a local day spans two): one summary refresh at a
    # time, so the last one reads every write and its result is the one that stays.
    summaries_lock: threading.Lock = field(default_factory=threading.Lock)


class DayCollection:
    def __init__(self, context: DayContext, feed: Feed, day: dt.date, run_id: str, whole_day_only: bool,
                 done_since: str | None = None):
        settings = context.settings
        self.context, self.feed, self.day, self.run_id = context, feed, day, run_id
        self.done_since = done_since  # skip the day if another run collected it since (the run's start)
        self.ledger, self.archive, self.graph = context.stores.ledger, context.stores.archive, context.graph
        self.day_text = day.isoformat()
        self.window = day_window(day, settings.time_zone)
        self.parts = 1 if whole_day_only else settings.subwindows
        self.prefix = run_prefix(feed.name, settings.graph_api_version, day, run_id)
        self.started, self._t0 = now_iso(), time.monotonic()
        self.manifest = Manifest(feed.name, settings.graph_api_version, self.day_text, settings.time_zone, run_id,
                                 window={"start": format_instant(self.window.start),
                                         "end": format_instant(self.window.end)},
                                 started=self.started)
        self.writer = DayWriter(context.stores.calls[feed.name], context.pool, 2 * settings.upsert_concurrency)
        self.outcome = DayOutcome(feed.name, self.day_text, run_id, "failed", self.started, "")
        # Set when sub-windows returned rows outside themselves: Graph ignored the time part of the window,
        # so the run reads this feed in whole days from now on.
        self.fell_back_to_whole_days = False
        self._lock = threading.Lock()  # the manifest, the shape counter, the strays and far rows, across windows
        self._strays = 0
        self._far = FarRows()
        self._counter = ShapeCounter(self.window)
        self._lease_lock = threading.Lock()
        self._renewed = 0.0

    def run(self) -> DayOutcome:
        lease = self.ledger.acquire(self.feed.name, self.day_text, self.run_id, self.context.settings.lease_seconds,
                                    self.done_since)
        if not lease:
            return self._skipped("another run collected this day after this run began" if lease.done
                                 else "another run holds this day's lease")
        self._renewed = time.monotonic()
        self.outcome.took_over_from = lease.took_over_from
        if lease.took_over_from:
            log.warning("feed %s day %s: run %s stopped before finishing it; collecting it again", self.feed.name,
                        self.day_text, lease.took_over_from)
        stats_before = self.graph.stats.snapshot()
        try:
            windows, at_once = self._plan()
            self.writer.prefetch(utc_days(self.window))
            self._fetch(windows, at_once)
            if self._strays and self.parts > 1:
                log.warning("feed %s day %s: sub-windows returned %d rows outside themselves; falling back to "
                            "whole-day windows for this feed", self.feed.name, self.day_text, self._strays)
                self.fell_back_to_whole_days = True
                self._counter = ShapeCounter(self.window)
                self._fetch([self.window], 1)
            counts = self.writer.finish()
            outcome = self.outcome
            outcome.outcome = "succeeded"
            outcome.new, outcome.changed, outcome.unchanged = counts.new, counts.changed, counts.unchanged
            outcome.windows = len(self.manifest.subwindows)
            outcome.shape = self._counter.shape(format_instant(self.window.start)).as_dict()
        except Exception as exc:
            self.outcome.error = describe(exc)
            try:
                self.writer.finish()  # let batches in flight land or fail before the day is recorded
            except Exception:
                pass
        self._warn_far_rows()
        self._count(self.graph.stats.snapshot() - stats_before)
        self._keep_manifest()
        self._refresh_derived()
        self._record()
        return self.outcome

    # --- the steps ----------------------------------------------------------------------------------------
    def _plan(self) -> tuple[list[Window], int]:
        """The day's windows and how many to read at once: cut to the shape of its last run when there is
        one (about a page each, read together within the rate limit), else `parts` equal slices."""
        if self.parts > 1:
            shape = DayShape.from_dict(self.ledger.day_shape(self.feed.name, self.day_text))
            if shape is not None and shape.start == format_instant(self.window.start):
                settings = self.context.settings
                # Little's law: requests in flight = rate x time each takes. More windows than that at once
                # would only queue on the rate limiter, each holding a thread.
                per_second = settings.graph_function_requests_per_minute / 60
                by_rate = int(per_second * ASSUMED_PAGE_SECONDS + 0.999)
                at_once = max(settings.subwindows, min(MAX_WINDOW_THREADS, by_rate))
                return plan(self.window, shape, at_once), at_once
        windows = split(self.window, self.parts)
        return windows, len(windows)

    def _fetch(self, windows: list[Window], at_once: int) -> None:
        threads = max(1, min(len(windows), at_once))
        with ThreadPoolExecutor(threads, thread_name_prefix="archive") as uploads:
            if threads == 1:
                for window in windows:
                    self._fetch_window(window, uploads)
                return
            with ThreadPoolExecutor(threads, thread_name_prefix="window") as pool:
                for future in [pool.submit(self._fetch_window, window, uploads) for window in windows]:
                    future.result()

    def _fetch_window(self, window: Window, uploads: ThreadPoolExecutor) -> None:
        label = f"{format_instant(window.start)}/{format_instant(window.end)}"
        with self._lock:
            self.manifest.subwindows.append({"start": format_instant(window.start),
                                             "end": format_instant(window.end)})
        previous_rows = None
        try:
            for page in self.graph.pages(self.feed.graph_function, window.start, window.end):
                # The loop variable would keep this page alive while the next one is fetched and parsed: with
                # every window doing that, a big day holds twice the pages it needs. Hold the parts instead,
                # each only as long as it is used (the body until archived, the rows until stored).
                body, rows = page.body, page.rows
                del page
                with self._lock:
                    number = len(self.manifest.pages) + 1
                    self.manifest.pages.append(PageEntry("", "", len(body), len(rows), label))
                upload = uploads.submit(self.archive.put_page, self.prefix, number, body)
                # The page uploads while its rows are checked, hashed and compared (a re-scan's two largest
                # costs); a page whose rows the store refuses is kept under its rejected name instead.
                try:
                    pending = self.writer.classify(rows)
                except RowError as exc:
                    self._reject(number, upload, body, exc)
                    raise
                except BaseException:
                    with suppress(Exception):
                        self._archived(number, upload.result())
                    raise
                del body
                self._archived(number, upload.result())
                self.writer.write(pending)
                del pending  # its rows, like the page's, must not wait here for the next page
                self._keep_lease()
                self._note(rows, window)
                with self._lock:
                    if previous_rows is not None:
                        self._counter.full_page(previous_rows)  # it was followed by this one: a full page
                previous_rows = len(rows)
                del rows
        except GraphPageError as exc:
            # Only the Graph client raises this here, for a page it refused; it hands over the page's bytes.
            if exc.body is not None:
                self._keep_refused(exc.body, label, exc)
            raise

    def _note(self, rows: list[dict], window: Window) -> None:
        """Count a stored page's rows: those inside the window for the day's shape, those outside it as strays,
        those far from the day for the warning. A row far from the day says nothing about how Graph reads
        sub-windows, so it is no stray: one such row must not make every re-scan read the day twice."""
        starts = [(row, self._start(row)) for row in rows]
        with self._lock:
            for row, instant in starts:
                if instant is None:
                    continue
                if self._inside(instant, window):
                    self._counter.add(instant)
                elif far_from_window(instant, self.window):
                    self._far.add(row["id"], instant)
                else:
                    self._strays += 1

    def _reject(self, number: int, upload, body: bytes, exc: BaseException) -> None:
        """Keep a page whose rows the store refused as page-NNNNN.rejected.json, and drop the copy that was
        uploading under its accepted name meanwhile. The manifest entry says why either way; the day fails with
        the store's error, not with an archive error met here."""
        why = describe(exc)
        accepted = ("", "")
        with suppress(Exception):
            accepted = upload.result()
        try:
            kept = self.archive.put_page(self.prefix, number, body, rejected=True)
        except Exception as archive_exc:
            log.warning("feed %s day %s: could not archive refused page %d as rejected: %s", self.feed.name,
                        self.day_text, number, describe(archive_exc))
            kept = accepted
        with self._lock:
            entry = self.manifest.pages[number - 1]
            (entry.name, entry.sha256), entry.rejected = kept, why
        if accepted[0] and kept[0] != accepted[0]:
            try:
                self.archive.discard(accepted[0])
            except Exception as archive_exc:
                log.warning("feed %s day %s: could not remove %s, kept as rejected too (the manifest names the "
                            "rejected copy): %s", self.feed.name, self.day_text, accepted[0], describe(archive_exc))

    def _keep_refused(self, body: bytes, label: str, exc: GraphPageError) -> None:
        """Archive a page the Graph client refused as page-NNNNN.rejected.json, named in the manifest with why."""
        with self._lock:
            number = len(self.manifest.pages) + 1
            self.manifest.pages.append(PageEntry("", "", len(body), 0, label, rejected=describe(exc)))
        try:
            self._archived(number, self.archive.put_page(self.prefix, number, body, rejected=True))
        except Exception as archive_exc:
            log.warning("feed %s day %s: could not archive refused page %d: %s", self.feed.name, self.day_text,
                        number, describe(archive_exc))

    def _warn_far_rows(self) -> None:
        far = self._far
        if not far.count:
            return
        earliest, latest = (format_instant(instant) for instant in far.span())
        log.warning("feed %s day %s: %d stored rows have a %s more than %s outside the day's window "
                    "(earliest %s, latest %s); kept as sent", self.feed.name, self.day_text, far.count,
                    self.feed.time_field, FAR_FROM_DAY, earliest, latest,
                    extra={"event": "collect.farRows", "feed": self.feed.name, "day": self.day_text,
                           "runId": self.run_id, "rows": far.count, "timeField": self.feed.time_field,
                           "earliest": earliest, "latest": latest})

    def _archived(self, number: int, stored: tuple[str, str]) -> None:
        with self._lock:
            entry = self.manifest.pages[number - 1]
            entry.name, entry.sha256 = stored

    def _keep_lease(self) -> None:
        """Renew the day's lease as pages arrive. Leases are short (LEASE_SECONDS), so a run that died frees
        its days quickly, and a live run keeps them for as long as it makes progress."""
        seconds = self.context.settings.lease_seconds
        with self._lease_lock:
            if time.monotonic() - self._renewed < seconds / 3:
                return
            if not self.ledger.renew(self.feed.name, self.day_text, self.run_id, seconds):
                raise LeaseLost(f"another run took over {self.feed.name} {self.day_text}: this run stopped writing it")
            self._renewed = time.monotonic()

    def _count(self, stats) -> None:
        outcome = self.outcome
        outcome.rows = sum(p.rows for p in self.manifest.pages if p.rejected is None)
        outcome.pages = len(self.manifest.pages)
        outcome.retries = stats.retries
        outcome.throttled_seconds = round(stats.throttle_wait_seconds, 3)
        outcome.days_written = sorted(self.writer.days_written)
        outcome.ended = now_iso()
        outcome.duration_seconds = round(time.monotonic() - self._t0, 3)

    def _keep_manifest(self) -> None:
        outcome, manifest = self.outcome, self.manifest
        manifest.rows, manifest.ended, manifest.outcome, manifest.error = (
            outcome.rows, outcome.ended, outcome.outcome, outcome.error)
        # With a store unreachable the manifest would only wait out the same retries; the ledger tells instead.
        if (outcome.error or "").startswith(STORE_UNREACHABLE):
            return
        try:
            self.archive.put_manifest(self.prefix, manifest)
        except Exception as exc:
            if outcome.outcome == "succeeded":
                outcome.outcome, outcome.error = "failed", f"writing the run manifest failed: {describe(exc)}"

    def _refresh_derived(self) -> None:
        if self.outcome.outcome != "succeeded":
            return
        try:
            with self.context.summaries_lock:
                refresh_summaries(self.context.stores, self.feed, self.outcome.days_written)
        except Exception as exc:
            self.outcome.outcome, self.outcome.error = "failed", f"updating the daily summaries failed: {describe(exc)}"

    def _record(self) -> None:
        try:
            self.ledger.record(self.outcome)
        except Exception as exc:
            # The store itself is unreachable; the day stays without a success and the next run retries it.
            log.error("feed %s day %s: could not record the outcome in the ledger: %s",
                      self.feed.name, self.day_text, describe(exc))
        log_outcome(self.outcome)

    def _skipped(self, why: str) -> DayOutcome:
        outcome = DayOutcome(self.feed.name, self.day_text, self.run_id, "skipped", self.started, now_iso(),
                             error=why)
        self.ledger.record(outcome)
        return outcome

    # --- rows and windows -------------------------------------------------------------------------------
    def _start(self, row: dict) -> dt.datetime | None:
        try:
            return parse_instant(row[self.feed.time_field])
        except (KeyError, TypeError, ValueError, AttributeError):
            return None

    def _inside(self, start: dt.datetime, window: Window) -> bool:
        return window.start <= start and (start <= window.end if self.feed.to_inclusive else start < window.end)


def describe(exc: BaseException) -> str:
    """A day's error as the ledger keeps it: the exception's type and message, marked when a store did not
    answer at all."""
    text = str(exc).strip() or type(exc).__name__
    prefix = STORE_UNREACHABLE if unreachable(exc) else ""
    return f"{prefix}{type(exc).__name__}: {text}"[:2000]


def log_outcome(o: DayOutcome) -> None:
    # Flat fields: they become Application Insights custom dimensions (see shared/telemetry.py).
    dims = {"event": "collect.day", "feed": o.feed, "day": o.day, "runId": o.run_id, "outcome": o.outcome,
            "pages": o.pages, "rows": o.rows, "new": o.new, "changed": o.changed, "unchanged": o.unchanged,
            "retries": o.retries, "throttledSeconds": o.throttled_seconds, "durationSeconds": o.duration_seconds}
    if o.outcome == "failed":
        log.error("feed %s day %s failed: %s", o.feed, o.day, o.error, extra={**dims, "error": o.error})
    else:
        log.info("feed %s day %s %s: %d rows in %d pages (%d new, %d changed, %d unchanged) in %.1fs",
                 o.feed, o.day, o.outcome, o.rows, o.pages, o.new, o.changed, o.unchanged, o.duration_seconds,
                 extra=dims)
