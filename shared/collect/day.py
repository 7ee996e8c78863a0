"""One feed's day, collected once: take its lease, plan its windows, fetch them, archive each page, store its
rows, and record the outcome.

`DayCollection.run()` reads top to bottom. The object owns everything the day needs and nothing outlives it:
the plan, the manifest, the writer, the lease and the counters. Its rules:
- nothing of a page is written before the page is archived (replay can always rebuild what was written);
- a page with a row the store cannot hold writes nothing, and fails the day;
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
from dataclasses import dataclass

from ..config.feeds import Feed
from ..config.settings import Settings
from ..derive.summaries import refresh_summaries
from ..instants import format_instant, now_iso, parse_instant
from ..stores import Stores
from ..stores.archive import Manifest, PageEntry, run_prefix
from ..stores.calls import DayWriter
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


class LeaseLost(RuntimeError):
    """Another run took this day's lease (ours expired while the day was still running)."""


@dataclass(frozen=True)
class DayContext:
    """What every day of a run shares: settings, the Graph client, the stores and the write pool."""
    settings: Settings
    graph: object  # shared.graph.GraphClient, or a stand-in with the same pages() and stats
    stores: Stores
    pool: ThreadPoolExecutor


class DayCollection:
    def __init__(self, context: DayContext, feed: Feed, day: dt.date, run_id: str, whole_day_only: bool):
        settings = context.settings
        self.context, self.feed, self.day, self.run_id = context, feed, day, run_id
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
        self._lock = threading.Lock()  # the manifest, the shape counter and the stray count, across windows
        self._strays = 0
        self._counter = ShapeCounter(self.window)
        self._lease_lock = threading.Lock()
        self._renewed = 0.0

    def run(self) -> DayOutcome:
        lease = self.ledger.acquire(self.feed.name, self.day_text, self.run_id, self.context.settings.lease_seconds)
        if not lease:
            return self._skipped()
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
                by_rate = int(settings.graph_max_requests_per_second * ASSUMED_PAGE_SECONDS + 0.999)
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
        for page in self.graph.pages(self.feed.graph_function, window.start, window.end):
            # The loop variable would keep this page alive while the next one is fetched and parsed: with
            # every window doing that, a big day holds twice the pages it needs. Hold the parts instead, each
            # only as long as it is used (the body until archived, the rows until stored).
            body, rows = page.body, page.rows
            del page
            with self._lock:
                number = len(self.manifest.pages) + 1
                self.manifest.pages.append(PageEntry("", "", len(body), len(rows), label))
            upload = uploads.submit(self.archive.put_page, self.prefix, number, body)
            del body
            # The page uploads while its rows are checked, hashed and compared (a re-scan's two largest
            # costs); a page that fails the checks is still archived, and the manifest names it.
            try:
                pending = self.writer.classify(rows)
            except BaseException:
                with suppress(Exception):
                    self._archived(number, upload.result())
                raise
            self._archived(number, upload.result())
            self.writer.write(pending)
            del pending  # its rows, like the page's, must not wait here for the next page
            self._keep_lease()
            starts = [self._start(row) for row in rows]
            del rows
            inside = [t for t in starts if t is not None and self._inside(t, window)]
            with self._lock:
                self._strays += len(starts) - len(inside)
                for instant in inside:
                    self._counter.add(instant)
                if previous_rows is not None:
                    self._counter.full_page(previous_rows)  # it was followed by this one: a full page
            previous_rows = len(starts)

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
        outcome.rows = sum(p.rows for p in self.manifest.pages)
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

    def _skipped(self) -> DayOutcome:
        outcome = DayOutcome(self.feed.name, self.day_text, self.run_id, "skipped", self.started, now_iso(),
                             error="another run holds this day's lease")
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
