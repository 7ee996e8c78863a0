"""The Cosmos DB containers and the Blob container the app uses, and how to create them where keys allow it.

In Azure the Bicep templates create them (data-plane RBAC cannot create containers); locally, with the emulator
key, `ensure_stores` does, from the same definitions.
"""
from __future__ import annotations

from dataclasses import dataclass

from .settings import Settings


@dataclass(frozen=True)
class ContainerDef:
    name: str
    partition_key: str


def cosmos_containers(settings: Settings) -> list[ContainerDef]:
    return [
        ContainerDef(settings.cosmos_pstn_container, "/day"),
        ContainerDef(settings.cosmos_direct_routing_container, "/day"),
        ContainerDef(settings.cosmos_runs_container, "/pk"),
        ContainerDef(settings.cosmos_summaries_container, "/day"),
    ]


def ensure_stores(settings: Settings) -> None:
    """Create the database, containers and archive container if missing (needs key / connection-string auth)."""
    from azure.core.exceptions import ResourceExistsError
    from azure.cosmos import PartitionKey

    from .connections import blob_service, cosmos_client

    database = cosmos_client(settings).create_database_if_not_exists(settings.cosmos_database)
    for container in cosmos_containers(settings):
        database.create_container_if_not_exists(container.name, PartitionKey(path=container.partition_key))
    try:
        blob_service(settings).create_container(settings.archive_container)
    except ResourceExistsError:
        pass
