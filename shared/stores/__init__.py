"""The stores, and their one front door: `open_stores(settings)`.

    stores = open_stores(settings)
    stores.calls["pstn"]          # CallStore: a feed's rows, and the DayWriter's reads and writes
    stores.ledger                 # Ledger: day states, leases, run records, backfill requests
    stores.summaries              # SummaryStore: the derived daily usage documents
    stores.archive                # Archive: raw Graph pages and run manifests in Blob storage
    stores.reader("pstn")         # PartitionedReader of a feed's or derived table's rows, for the query routes
    stores.paging_key             # the secret (bytes) that signs the query routes' paging tokens (keys.py)
    stores.check()                # {"cosmos": None, "blob": None}, or the exception a store raised

The collector, every route, the command line, status and health get their containers here: which container
holds what comes from the feed table and the settings. (schema.ensure_stores creates the same containers
where keys allow it, locally; in Azure the Bicep does.) Each part is built when first used, so a route that
reads Cosmos DB does not fail because of a Blob setting, and the health check can report each store apart.
"""
from __future__ import annotations

from functools import cached_property
from typing import Mapping

from ..config.feeds import DAILY_USAGE, FEEDS
from ..config.settings import Settings
from .archive import Archive
from .calls import CallStore
from .clients import blob_service, cosmos_client
from .keys import paging_key
from .ledger import Ledger
from .reader import PartitionedReader, ReadLog
from .summaries import SummaryStore


class Stores:
    def __init__(self, settings: Settings):
        self._settings = settings

    @cached_property
    def calls(self) -> Mapping[str, CallStore]:
        return {name: CallStore(feed, self._container(name)) for name, feed in FEEDS.items()}

    @cached_property
    def ledger(self) -> Ledger:
        return Ledger(self._database.get_container_client(self._settings.cosmos_runs_container))

    @cached_property
    def summaries(self) -> SummaryStore:
        return SummaryStore(self._container(DAILY_USAGE.name))

    @cached_property
    def archive(self) -> Archive:
        return Archive(self._blob_container())

    @cached_property
    def paging_key(self) -> bytes:
        """The key that signs paging tokens, shared by every instance; read from the runs container once per
        process (created there by the first instance that needs it)."""
        s = self._settings
        container = self._database.get_container_client(s.cosmos_runs_container)
        return paging_key(container, (s.cosmos_endpoint, s.cosmos_database, s.cosmos_runs_container))

    def reader(self, table: str, log: ReadLog | None = None) -> PartitionedReader:
        """Ordered, partition-by-partition reads of a feed's or derived table's rows."""
        return PartitionedReader(self._container(table), log)

    def check(self) -> dict[str, Exception | None]:
        """Whether each store answers: None, or the exception it raised (building its client included)."""
        probes = (("cosmos", lambda: self._database.read()),
                  ("blob", lambda: self._blob_container().get_container_properties()))
        checks: dict[str, Exception | None] = {}
        for name, probe in probes:
            try:
                probe()
                checks[name] = None
            except Exception as exc:  # any failure is a finding for the health check
                checks[name] = exc
        return checks

    @cached_property
    def _database(self):
        return cosmos_client(self._settings).get_database_client(self._settings.cosmos_database)

    def _container(self, table: str):
        return self._database.get_container_client(self._settings.container(table))

    def _blob_container(self):
        return blob_service(self._settings).get_container_client(self._settings.archive_container)


def open_stores(settings: Settings) -> Stores:
    """The app's stores for these settings. Cheap to call: the clients underneath are built once per settings
    and process, when first used."""
    return Stores(settings)
