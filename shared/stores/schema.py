"""The Cosmos DB containers and the Blob container the app uses, and how to create them where keys allow it.

In Azure the Bicep templates create them (data-plane RBAC cannot create containers); locally, with the emulator
key, `ensure_stores` does, from the same definitions.
"""
from __future__ import annotations

from dataclasses import dataclass

from azure.core.exceptions import ResourceExistsError
from azure.cosmos import PartitionKey

from ..config.feeds import DAILY_USAGE, DERIVED, FEEDS
from ..config.settings import Settings
from .clients import blob_service, cosmos_client

# Index only what queries filter or sort on: every indexed path costs RU on every write. Reads by day use the
# partition key; the feed sorts by (startUtc, id) both ways, which Cosmos serves only from composite indexes.
CALL_PATHS = ("/day/?", "/startUtc/?", "/id/?", "/userPrincipalName/?", "/userId/?", "/callType/?")
CALL_COMPOSITES = ((("/startUtc", "ascending"), ("/id", "ascending")),
                   (("/startUtc", "descending"), ("/id", "descending")))
RUNS_PATHS = ("/pk/?", "/kind/?", "/day/?", "/started/?")
# Each derived table indexes what its entity set filters on.
DERIVED_PATHS = {DAILY_USAGE.name: ("/day/?", "/id/?", "/feed/?", "/userId/?", "/userPrincipalName/?", "/callType/?")}


@dataclass(frozen=True)
class ContainerDef:
    name: str
    partition_key: str
    indexed_paths: tuple[str, ...]
    composite_indexes: tuple = ()

    def indexing_policy(self) -> dict:
        return {
            "indexingMode": "consistent",
            "automatic": True,
            "includedPaths": [{"path": p} for p in self.indexed_paths],
            "excludedPaths": [{"path": "/*"}, {"path": '/"_etag"/?'}],
            "compositeIndexes": [[{"path": path, "order": order} for path, order in index]
                                 for index in self.composite_indexes],
        }


def cosmos_containers(settings: Settings) -> list[ContainerDef]:
    """Every Cosmos container the app uses: one per feed and derived table of the feed table, and the ledger's.
    Also the contract for infra/main.bicep, which must create the same containers (tests/test_infra.py)."""
    feeds = [ContainerDef(settings.container(feed.name), "/day", CALL_PATHS, CALL_COMPOSITES)
             for feed in FEEDS.values()]
    derived = [ContainerDef(settings.container(table.name), "/day", DERIVED_PATHS[table.name])
               for table in DERIVED.values()]
    return [*feeds, ContainerDef(settings.cosmos_runs_container, "/pk", RUNS_PATHS), *derived]


def ensure_stores(settings: Settings) -> None:
    """Create the database, containers and archive container if missing (needs key / connection-string auth)."""
    database = cosmos_client(settings).create_database_if_not_exists(settings.cosmos_database)
    for container in cosmos_containers(settings):
        database.create_container_if_not_exists(container.name, PartitionKey(path=container.partition_key),
                                                indexing_policy=container.indexing_policy())
    try:
        blob_service(settings).create_container(settings.archive_container)
    except ResourceExistsError:
        pass
