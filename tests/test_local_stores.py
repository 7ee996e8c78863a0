"""The local stand-ins behave like Azure through the real SDKs (acceptance of the foundation)."""
import uuid

import pytest
from azure.cosmos import PartitionKey
from azure.cosmos.exceptions import CosmosResourceNotFoundError

from shared.stores.clients import blob_service, cosmos_client
from shared.stores.schema import cosmos_containers, ensure_stores
from shared.config.settings import load_settings


@pytest.fixture(scope="module")
def settings(stack_env):
    s = load_settings(stack_env)
    ensure_stores(s)
    return s


def test_a_document_written_with_azure_cosmos_reads_back(settings):
    container = cosmos_client(settings).get_database_client(settings.cosmos_database) \
        .get_container_client(settings.container("pstn"))
    doc = {"id": str(uuid.uuid4()), "day": "2026-11-28", "charge": 0.12, "callType": "user_out", "tags": [1, 2]}
    container.upsert_item(doc)
    back = container.read_item(doc["id"], partition_key="2026-11-28")
    assert {k: back[k] for k in doc} == doc


def test_reading_a_missing_id_raises_not_found(settings):
    container = cosmos_client(settings).get_database_client(settings.cosmos_database) \
        .get_container_client(settings.container("pstn"))
    with pytest.raises(CosmosResourceNotFoundError):
        container.read_item(str(uuid.uuid4()), partition_key="2026-11-28")


def test_containers_are_created_with_their_partition_keys(settings):
    database = cosmos_client(settings).get_database_client(settings.cosmos_database)
    for definition in cosmos_containers(settings):
        props = database.get_container_client(definition.name).read()
        assert props["partitionKey"]["paths"] == [definition.partition_key]
    ensure_stores(settings)  # a second call finds everything in place and changes nothing


def test_a_blob_uploaded_with_azure_storage_blob_lists_by_prefix(settings):
    container = blob_service(settings).get_container_client(settings.archive_container)
    container.upload_blob("pstn/v1.0/2026/11/28/run1/page-00001.json", b'{"value": []}')
    container.upload_blob("pstn/v1.0/2026/11/29/run2/page-00001.json", b'{"value": [1]}')
    names = [b.name for b in container.list_blobs(name_starts_with="pstn/v1.0/2026/11/28/")]
    assert names == ["pstn/v1.0/2026/11/28/run1/page-00001.json"]
    assert container.download_blob(names[0]).readall() == b'{"value": []}'
