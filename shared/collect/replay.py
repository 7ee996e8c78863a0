"""Rebuild a day's documents from the archived raw pages, without calling Graph.

Every run of the day is replayed in the order it ran, each of its pages through the same validation and hash
comparison as collection. Collection only ever upserts, and a document is a function of its row, so the result
is exactly what the collections wrote: rows deleted from Cosmos come back, rows still there are left alone.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from ..config.feeds import Feed
from ..graph.paging import parse_page
from ..stores import Stores
from ..stores.calls import DayWriter

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

    def as_dict(self) -> dict:
        return {"feed": self.feed, "day": self.day, "runs": self.runs, "pages": self.pages, "rows": self.rows,
                "new": self.new, "changed": self.changed, "unchanged": self.unchanged,
                "daysWritten": self.days_written}


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
            if not name or name.endswith(".rejected.json"):
                continue
            body = archive.read(name)
            _, rows = parse_page(name, body)
            writer.add(rows)
            report.pages += 1
            report.rows += len(rows)
    counts = writer.finish()
    report.new, report.changed, report.unchanged = counts.new, counts.changed, counts.unchanged
    report.days_written = sorted(writer.days_written)
    log.info("replayed %s %s from %d run(s): %d pages, %d rows, %d written", feed.name, day, len(report.runs),
             report.pages, report.rows, counts.written)
    return report
