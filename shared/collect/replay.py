"""Rebuild a day's documents from the archived raw pages, without calling Graph.

Every run of the day is replayed in the order it ran, failed runs too, each of its accepted pages through the
same validation and hash comparison as collection. Collection only ever upserts, and a document is a function of
its row, so the result is exactly what the collections wrote: rows deleted from Cosmos come back, rows still
there are left alone.

A page collection refused wrote nothing, so replay skips it and names it in its report: one the manifest marks
rejected (`page-NNNNN.rejected.json`), and one that the same checks refuse now (a page archived under its
accepted name by a version that did not yet mark refused pages). Either way the rest of the day is replayed.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from ..config.feeds import Feed
from ..graph.paging import parse_page
from ..stores import Stores
from ..graph.errors import GraphPageError
from ..stores.calls import DayWriter
from ..stores.rows import RowError

log = logging.getLogger("replay")


class ReplayError(RuntimeError):
    pass


@dataclass
class ReplayReport:
    feed: str
    day: str
    runs: list[str] = field(default_factory=list)
    pages: int = 0
    rows: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    days_written: list[str] = field(default_factory=list)
    rejected_pages: list[str] = field(default_factory=list)  # blob names of the pages skipped as refused

    def as_dict(self) -> dict:
        return {"feed": self.feed, "day": self.day, "runs": self.runs, "pages": self.pages, "rows": self.rows,
                "new": self.new, "changed": self.changed, "unchanged": self.unchanged,
                "daysWritten": self.days_written, "rejected": len(self.rejected_pages),
                "rejectedPages": self.rejected_pages}


def replay_day(feed: Feed, day: dt.date, api_version: str, stores: Stores, pool, concurrency: int) -> ReplayReport:
    archive = stores.archive
    manifests = archive.manifests(feed.name, api_version, day)
    if not manifests:
        raise ReplayError(f"nothing archived for {feed.name} {day} (API version {api_version}): collect it instead")
    report = ReplayReport(feed.name, day.isoformat())
    writer = DayWriter(stores.calls[feed.name], pool, 2 * concurrency)
    for manifest in manifests:
        report.runs.append(manifest["runId"])
        for page in manifest["pages"]:
            name = page.get("name")
            if not name:
                continue  # its upload failed, so collection wrote nothing of it either
            if page.get("rejected") or name.endswith(".rejected.json"):
                _skip(report, name, page.get("rejected") or "archived as rejected")
                continue
            try:
                _, rows = parse_page(name, archive.read(name))
                writer.add(rows)  # classifies the whole page before writing any of it, as collection does
            except (GraphPageError, RowError) as exc:
                _skip(report, name, f"{type(exc).__name__}: {exc}")
                continue
            report.pages += 1
            report.rows += len(rows)
    counts = writer.finish()
    report.new, report.changed, report.unchanged = counts.new, counts.changed, counts.unchanged
    report.days_written = sorted(writer.days_written)
    log.info("replayed %s %s from %d run(s): %d pages, %d rows, %d written, %d rejected pages skipped", feed.name,
             day, len(report.runs), report.pages, report.rows, counts.written, len(report.rejected_pages),
             extra={"event": "replay.day", "feed": feed.name, "day": day.isoformat(), "runs": len(report.runs),
                    "pages": report.pages, "rows": report.rows, "written": counts.written,
                    "rejected": len(report.rejected_pages)})
    return report


def _skip(report: ReplayReport, name: str, why: str) -> None:
    report.rejected_pages.append(name)
    log.warning("replay %s %s: skipping %s, refused when collected: %s", report.feed, report.day, name, why)
