"""The stores, and their one front door: `open_stores(settings)`.

    stores = open_stores(settings)
    stores.calls["pstn"]          # CallStore: a feed's rows, and the DayWriter's reads and writes
    stores.ledger                 # Ledger: day states, leases, run records, backfill requests
    stores.summaries              # SummaryStore: the derived daily usage documents
    stores.archive                # Archive: raw Graph pages and run manifests in Blob storage
    stores.reader("pstn")         # PartitionedReader of a feed's or derived table's rows, for the query routes
    stores.check()                # {"cosmos": "ok", "blob": "ok"} or what failed, for /api/health

Every part of the app (the collector, each route, the command line, status and health) gets its containers
here, and only here: which container holds what comes from the feed table and the settings.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from ..config.feeds import FEEDS
from ..config.settings import Settings
from .archive import Archive
from .calls import CallStore
from .clients import blob_service, cosmos_client
from .ledger import Ledger
from .reader import PartitionedReader, ReadLog
from .summaries import SummaryStore


@dataclass(frozen=True)
class Stores:
    calls: Mapping[str, CallStore]
    ledger: Ledger
    summaries: SummaryStore
    archive: Archive
    _database: object
    _blob_container: object
    _tables: Mapping[str, str]  # feed or derived table -> its container name

    def reader(self, table: str, log: ReadLog | None = None) -> PartitionedReader:
        """Ordered, partition-by-partition reads of a feed's or derived table's rows."""
        return PartitionedReader(self._database.get_container_client(self._tables[table]), log)

    def check(self) -> dict[str, Exception | None]:
        """Whether each store answers: None, or the exception it raised (the caller decides what to show)."""
        checks: dict[str, Exception | None] = {}
        for name, probe in (("cosmos", self._database.read), ("blob", self._blob_container.get_container_properties)):
            try:
                probe()
                checks[name] = None
            except Exception as exc:  # any failure is a finding for the health check
                checks[name] = exc
        return checks


def open_stores(settings: Settings) -> Stores:
    """The app's stores for these settings: Cosmos DB containers per the feed table, and the Blob archive.
    Cheap to call: the clients underneath are built once per settings and process."""
    database = cosmos_client(settings).get_database_client(settings.cosmos_database)
    blob_container = blob_service(settings).get_container_client(settings.archive_container)
    tables = dict(settings.containers)
    return Stores(
        calls={name: CallStore(feed, database.get_container_client(tables[name])) for name, feed in FEEDS.items()},
        ledger=Ledger(database.get_container_client(settings.cosmos_runs_container)),
        summaries=SummaryStore(database.get_container_client(tables["dailyUsage"])),
        archive=Archive(blob_container),
        _database=database,
        _blob_container=blob_container,
        _tables=tables,
    )
