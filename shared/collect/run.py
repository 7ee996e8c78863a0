"""One collection run: work list -> per feed and day: fetch pages, archive each, store its rows, record the day.

A day either completes or is recorded failed with its error (and is retried by the next run); one failed day
does not stop the others; a failure never deletes what is stored, because rows are only ever upserted.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable

from ..stores.archive import Archive, Manifest, PageEntry, run_prefix
from .day_shape import ShapeCounter, plan
from ..config.feeds import FEEDS, Feed, enabled_feeds
from ..stores.ledger import DayOutcome, Ledger, new_run_id
from .replay import ReplayReport, replay_day
from ..config.settings import Settings
from ..stores.calls import CallStore, DayWriter
from ..derive.summaries import SummaryStore
from .windows import Window, day_window, parse_instant, split, utc_days, yesterday

log = logging.getLogger("collector")

# Most windows of a day read at once when the day's shape is known (see _planned_concurrency).
MAX_WINDOW_THREADS = 64
# Seconds a Graph page takes to arrive, for sizing how many requests keep the rate limit busy.
ASSUMED_PAGE_SECONDS = 2.0

Progress = Callable[[DayOutcome], None]


@dataclass
class RunReport:
    run_id: str
    started: str
    ended: str = ""
    outcomes: list[DayOutcome] = field(default_factory=list)
    deferred: list[tuple[str, str]] = field(default_factory=list)  # (feed, day) left for the next run

    @property
    def failed(self) -> list[DayOutcome]:
        return [o for o in self.outcomes if o.outcome == "failed"]

    def totals(self) -> dict:
        done = [o for o in self.outcomes if o.outcome != "skipped"]
        return {"days": len(done), "failed": len(self.failed), "rows": sum(o.rows for o in done),
                "pages": sum(o.pages for o in done), "new": sum(o.new for o in done),
                "changed": sum(o.changed for o in done), "unchanged": sum(o.unchanged for o in done),
                "deferred": len(self.deferred)}


def _iso_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


STORE_UNREACHABLE = "store unreachable: "


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    prefix = STORE_UNREACHABLE if _unreachable(exc) else ""
    return f"{prefix}{type(exc).__name__}: {text}"[:2000]


def _unreachable(exc: BaseException) -> bool:
    """Blob storage or Cosmos DB did not answer at all (refused, reset, timed out) after the SDK's retries."""
    from azure.core.exceptions import ServiceRequestError, ServiceResponseError

    return isinstance(exc, (ServiceRequestError, ServiceResponseError))


class Collector:
    """Everything a run needs, wired once. Build it with `build_collector(settings)`."""

    def __init__(self, settings: Settings, graph, archive: Archive, stores: dict[str, CallStore], ledger: Ledger,
                 summaries: SummaryStore):
        self.settings = settings
        self.graph = graph
        self.archive = archive
        self.stores = stores
        self.ledger = ledger
        self.summaries = summaries
        # Feeds whose sub-windows returned rows outside themselves: Graph ignored the time part, so only
        # whole-day windows are safe for them from now on.
        self.whole_day_only: set[str] = set()
        self.pool = ThreadPoolExecutor(settings.upsert_concurrency, thread_name_prefix="upsert")

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        close = getattr(self.graph, "close", None)
        if close:
            close()

    # --- one day --------------------------------------------------------------------------------------
    def collect_day(self, feed: Feed, day: dt.date, run_id: str) -> DayOutcome:
        started_at, t0 = _iso_now(), time.monotonic()
        day_text = day.isoformat()
        lease_taken = self.ledger.acquire(feed.name, day_text, run_id, self.settings.lease_seconds)
        if not lease_taken:
            outcome = DayOutcome(feed.name, day_text, run_id, "skipped", started_at, _iso_now(),
                                 error="another run holds this day's lease")
            self.ledger.record(outcome)
            return outcome
        if lease_taken.took_over_from:
            log.warning("feed %s day %s: run %s stopped before finishing it; collecting it again", feed.name,
                        day_text, lease_taken.took_over_from)

        window = day_window(day, self.settings.time_zone)
        prefix = run_prefix(feed.name, self.settings.graph_api_version, day, run_id)
        manifest = Manifest(feed.name, self.settings.graph_api_version, day_text, self.settings.time_zone, run_id,
                            window={"start": _iso(window.start), "end": _iso(window.end)}, started=started_at)
        writer = DayWriter(self.stores[feed.name], self.pool, 2 * self.settings.upsert_concurrency)
        lease = _LeaseKeeper(self.ledger, feed.name, day_text, run_id, self.settings.lease_seconds)
        stats_before = self.graph.stats.snapshot()
        outcome = DayOutcome(feed.name, day_text, run_id, "failed", started_at, "",
                             took_over_from=lease_taken.took_over_from)
        try:
            parts = 1 if feed.name in self.whole_day_only else self.settings.subwindows
            shape = self.ledger.day_shape(feed.name, day_text) if parts > 1 else None
            if shape is not None and shape.start == _iso(window.start):
                at_once = self._planned_concurrency()
                windows = plan(window, shape, at_once)
            else:
                windows = split(window, parts)
                at_once = len(windows)
            writer.prefetch(utc_days(window))
            counter = ShapeCounter(window)
            strays = self._fetch(feed, windows, prefix, manifest, writer, lease, counter, at_once)
            if strays and parts > 1:
                log.warning("feed %s day %s: sub-windows returned %d rows outside themselves; falling back to "
                            "whole-day windows for this feed", feed.name, day_text, strays)
                self.whole_day_only.add(feed.name)
                counter = ShapeCounter(window)
                self._fetch(feed, [window], prefix, manifest, writer, lease, counter, 1)
            counts = writer.finish()
            outcome.outcome = "succeeded"
            outcome.windows = len(manifest.subwindows)
            outcome.new, outcome.changed, outcome.unchanged = counts.new, counts.changed, counts.unchanged
            outcome.shape = counter.shape(_iso(window.start)).as_dict()
        except Exception as exc:
            outcome.error = _describe(exc)
            try:
                writer.finish()  # let batches in flight land or fail before the day is recorded
            except Exception:
                pass
        stats = self.graph.stats.snapshot() - stats_before
        outcome.rows = sum(p.rows for p in manifest.pages)
        outcome.pages = len(manifest.pages)
        outcome.retries = stats.retries
        outcome.throttled_seconds = round(stats.throttle_wait_seconds, 3)
        outcome.days_written = sorted(writer.days_written)
        outcome.ended = _iso_now()
        outcome.duration_seconds = round(time.monotonic() - t0, 3)
        manifest.rows, manifest.ended, manifest.outcome, manifest.error = (
            outcome.rows, outcome.ended, outcome.outcome, outcome.error)
        self._finish(feed, outcome, prefix, manifest)
        return outcome

    def _finish(self, feed: Feed, outcome: DayOutcome, prefix: str, manifest: Manifest) -> None:
        # With a store unreachable the manifest would only wait out the same retries; the ledger tells instead.
        if not (outcome.error or "").startswith(STORE_UNREACHABLE):
            try:
                self.archive.put_manifest(prefix, manifest)
            except Exception as exc:
                if outcome.outcome == "succeeded":
                    outcome.outcome, outcome.error = "failed", f"writing the run manifest failed: {_describe(exc)}"
        if outcome.outcome == "succeeded":
            try:
                self.refresh_summaries(feed, outcome.days_written)
            except Exception as exc:
                outcome.outcome, outcome.error = "failed", f"updating the daily summaries failed: {_describe(exc)}"
        try:
            self.ledger.record(outcome)
        except Exception as exc:
            # The store itself is unreachable; the day stays without a success and the next run retries it.
            log.error("feed %s day %s: could not record the outcome in the ledger: %s",
                      feed.name, outcome.day, _describe(exc))
        _log_outcome(outcome)

    def _planned_concurrency(self) -> int:
        # Little's law: requests in flight = rate x time each takes. More windows than that at once would only
        # queue on the rate limiter, each holding a thread.
        by_rate = int(self.settings.graph_max_requests_per_second * ASSUMED_PAGE_SECONDS + 0.999)
        return max(self.settings.subwindows, min(MAX_WINDOW_THREADS, by_rate))

    def _fetch(self, feed: Feed, windows: list[Window], prefix: str, manifest: Manifest,
               writer: DayWriter, lease: "_LeaseKeeper", counter: ShapeCounter, at_once: int) -> int:
        """Fetch windows, `at_once` at a time; archive then store each page; count the day's shape. Returns
        the rows seen outside their window."""
        lock = threading.Lock()
        strays = 0

        def one(window: Window) -> None:
            nonlocal strays
            label = f"{_iso(window.start)}/{_iso(window.end)}"
            with lock:
                manifest.subwindows.append({"start": _iso(window.start), "end": _iso(window.end)})
            previous_rows = None
            for page in self.graph.pages(feed.graph_function, window.start, window.end):
                # The loop variable would keep this page alive while the next one is fetched and parsed: with
                # every window doing that, a big day holds twice the pages it needs. Hold the parts instead,
                # each only as long as it is used (the body until archived, the rows until stored).
                body, rows = page.body, page.rows
                del page
                with lock:
                    number = len(manifest.pages) + 1
                    manifest.pages.append(PageEntry("", "", len(body), len(rows), label))
                upload = uploads.submit(self.archive.put_page, prefix, number, body)
                del body

                def archived(upload=upload, number=number) -> None:
                    name, digest = upload.result()
                    with lock:
                        entry = manifest.pages[number - 1]
                        entry.name, entry.sha256 = name, digest

                # The page uploads while its rows are hashed and compared (a re-scan's two largest costs), and
                # nothing of it is written before it is archived.
                try:
                    writer.add(rows, gate=archived)
                except BaseException:
                    try:
                        archived()  # a rejected page is still archived: the manifest names it
                    except Exception:
                        pass
                    raise
                lease.keep()
                starts = [_start(row) for row in rows]
                del rows
                inside = [t for t in starts if t is not None and _inside(t, window, feed.to_inclusive)]
                with lock:
                    strays += len(starts) - len(inside)
                    for instant in inside:
                        counter.add(instant)
                    if previous_rows is not None:
                        counter.full_page(previous_rows)  # it was followed by this one: a full page
                previous_rows = len(starts)

        threads = max(1, min(len(windows), at_once))
        with ThreadPoolExecutor(threads, thread_name_prefix="archive") as uploads:
            if threads == 1:
                for window in windows:
                    one(window)
            else:
                with ThreadPoolExecutor(threads, thread_name_prefix="window") as pool:
                    for future in [pool.submit(one, w) for w in windows]:
                        future.result()
        return strays

    def refresh_summaries(self, feed: Feed, utc_days: Iterable[str]) -> None:
        # Only the UTC days that were written to: an unchanged re-scan leaves their summaries (and RU) alone.
        for day in utc_days:
            self.summaries.recompute(feed.name, day, self.stores[feed.name].container)

    def replay(self, feed: Feed, day: dt.date) -> ReplayReport:
        """Rebuild the day's documents (and summaries) from the archive, without calling Graph."""
        report = replay_day(feed, day, self.settings.graph_api_version, self.archive, self.stores[feed.name],
                            self.pool, self.settings.upsert_concurrency)
        self.refresh_summaries(feed, report.days_written)
        return report

    # --- a run ----------------------------------------------------------------------------------------
    def run(self, work: list[tuple[Feed, dt.date]], budget_seconds: float, run_id: str | None = None,
            progress: Progress | None = None) -> RunReport:
        """Collect the work list oldest day first, within the time budget; the rest is left for the next run."""
        run_id = run_id or new_run_id()
        report = RunReport(run_id, _iso_now())
        t0, longest = time.monotonic(), 0.0
        ordered = sorted(work, key=lambda item: (item[1], item[0].name))
        for index, (feed, day) in enumerate(ordered):
            elapsed = time.monotonic() - t0
            # Start a day only if the longest day so far would still fit: a day cut off by the host's timeout
            # would be recorded as neither success nor failure.
            if elapsed + longest * 1.2 > budget_seconds:
                report.deferred = [(f.name, d.isoformat()) for f, d in ordered[index:]]
                log.warning("run %s: time budget of %ss reached; %d day(s) left for the next run",
                            run_id, budget_seconds, len(report.deferred))
                break
            outcome = self.collect_day(feed, day, run_id)
            longest = max(longest, outcome.duration_seconds)
            report.outcomes.append(outcome)
            if progress:
                progress(outcome)
            if outcome.outcome == "failed" and (outcome.error or "").startswith(STORE_UNREACHABLE):
                # Every later day would fail the same way, each after the SDKs' retries: stop, and leave them
                # to the next run rather than spend the budget knocking on a closed door.
                report.deferred = [(f.name, d.isoformat()) for f, d in ordered[index + 1:]]
                log.error("run %s: %s; stopping, %d day(s) left for the next run", run_id, outcome.error,
                          len(report.deferred))
                break
        report.ended = _iso_now()
        log.info("run %s finished: %s", run_id, report.totals(),
                 extra={"event": "collect.run", "runId": run_id, **report.totals()})
        return report


class LeaseLost(RuntimeError):
    """Another run took this day's lease (ours expired while the day was still running)."""


class _LeaseKeeper:
    """Renews the day's lease as pages arrive. Leases are short (LEASE_SECONDS), so a run that died frees its
    days quickly, and a live run keeps them for as long as it makes progress."""

    def __init__(self, ledger: Ledger, feed: str, day: str, owner: str, seconds: float):
        self.ledger, self.feed, self.day, self.owner, self.seconds = ledger, feed, day, owner, seconds
        self.renewed = time.monotonic()
        self.lock = threading.Lock()

    def keep(self) -> None:
        with self.lock:
            if time.monotonic() - self.renewed < self.seconds / 3:
                return
            if not self.ledger.renew(self.feed, self.day, self.owner, self.seconds):
                raise LeaseLost(f"another run took over {self.feed} {self.day}: this run stopped writing it")
            self.renewed = time.monotonic()


def _iso(instant: dt.datetime) -> str:
    return instant.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _start(row: dict) -> dt.datetime | None:
    try:
        return parse_instant(row["startDateTime"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _inside(start: dt.datetime, window: Window, to_inclusive: bool) -> bool:
    return window.start <= start and (start <= window.end if to_inclusive else start < window.end)


def _log_outcome(o: DayOutcome) -> None:
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


# --- wiring -------------------------------------------------------------------------------------------
def build_collector(settings: Settings, graph=None, credential=None) -> Collector:
    from ..stores.clients import blob_service, cosmos_client
    from ..config.credentials import graph_credential
    from ..graph.client import GraphClient
    from .heap import pin_mmap_threshold

    pin_mmap_threshold()  # page bodies go back to the system when freed (see shared/heap.py)
    database = cosmos_client(settings).get_database_client(settings.cosmos_database)
    stores = {name: CallStore(database.get_container_client(feed.container(settings))) for name, feed in FEEDS.items()}
    ledger = Ledger(database.get_container_client(settings.cosmos_runs_container))
    archive = Archive(blob_service(settings).get_container_client(settings.archive_container))
    graph = graph or GraphClient(settings, credential or graph_credential(settings))
    summaries = SummaryStore(database.get_container_client(settings.cosmos_summaries_container))
    return Collector(settings, graph, archive, stores, ledger, summaries)


def scheduled_work(settings: Settings, ledger: Ledger, now: dt.datetime | None = None) -> list[tuple[Feed, dt.date]]:
    """The timer's work list per feed: missing days since the coverage start, the trailing re-scan, and the
    days of pending backfill requests (which may lie before the coverage start)."""
    from .windows import days_between

    last = yesterday(settings.time_zone, now)
    work = []
    for feed in enabled_feeds(settings):
        first = ledger.coverage_start(feed.name, settings.coverage_start, last + dt.timedelta(days=1))
        days = set(ledger.work_list(feed.name, first, last, settings.rescan_days))
        for request in ledger.backfills(feed.name, pending_only=True):
            days.update(days_between(dt.date.fromisoformat(request["from"]), dt.date.fromisoformat(request["to"])))
        work += [(feed, day) for day in sorted(days) if day <= last]
    return work


def run_scheduled(settings: Settings, now: dt.datetime | None = None, collector: Collector | None = None,
                  progress: Progress | None = None) -> RunReport:
    owned = collector is None
    collector = collector or build_collector(settings)
    try:
        work = scheduled_work(settings, collector.ledger, now)
        report = collector.run(work, settings.time_budget_seconds, progress=progress)
        for feed in enabled_feeds(settings):
            for request in collector.ledger.settle_backfills(feed.name):
                log.info("backfill %s of %s %s..%s is done", request["id"], feed.name, request["from"], request["to"])
        return report
    finally:
        if owned:
            collector.close()


def run_days(settings: Settings, feeds: list[Feed], first: dt.date, last: dt.date,
             collector: Collector | None = None, progress: Progress | None = None,
             budget_seconds: float = float("inf")) -> RunReport:
    """Collect a date range by hand (the command line), through the same code path as the timer."""
    from .windows import days_between

    owned = collector is None
    collector = collector or build_collector(settings)
    try:
        work = [(feed, day) for feed in feeds for day in days_between(first, last)]
        return collector.run(work, budget_seconds, progress=progress)
    finally:
        if owned:
            collector.close()
