"""Helpers for tests that collect: a simulator, settings on the session stack, and reading what was stored."""
from __future__ import annotations

import datetime as dt
import json
import uuid

from shared.collect.run import build_collector
from shared.stores.clients import blob_service, cosmos_client
from shared.stores.schema import ensure_stores
from shared.config.settings import load_settings
from shared.stores.rows import COSMOS_SYSTEM_FIELDS, DERIVED_FIELDS
from shared.collect.windows import day_window

TOKEN = "test-token"


def fresh_settings(stack, graph_url: str, **overrides):
    """Settings on the session stack with a database and archive container of their own."""
    suffix = uuid.uuid4().hex[:10]
    env = {**stack.app_env(), "GRAPH_ENDPOINT": graph_url, "GRAPH_STATIC_TOKEN": TOKEN,
           "COSMOS_DATABASE": f"db{suffix}", "ARCHIVE_CONTAINER": f"raw-{suffix}",
           "GRAPH_MAX_REQUESTS_PER_SECOND": "200", "GRAPH_TIMEOUT_SECONDS": "5", **overrides}
    settings = load_settings(env)
    ensure_stores(settings)
    return settings


def new_collector(settings, sleep=None):
    """A collector whose Graph client sleeps through `sleep` (tests record the waits instead of waiting)."""
    if sleep is None:
        return build_collector(settings)
    from shared.graph import GraphClient
    from shared.config.credentials import graph_credential

    return build_collector(settings, graph=GraphClient(settings, graph_credential(settings), sleep=sleep))


def stored_rows(settings, feed: str = "pstn") -> list[dict]:
    container = cosmos_client(settings).get_database_client(settings.cosmos_database) \
        .get_container_client(settings.container(feed))
    return list(container.query_items("SELECT * FROM c", enable_cross_partition_query=True))


def delete_day(settings, day: str, feed: str = "pstn") -> int:
    """Delete a day's documents behind the app's back (an accident replay must repair); returns how many."""
    container = cosmos_client(settings).get_database_client(settings.cosmos_database) \
        .get_container_client(settings.container(feed))
    ids = [d["id"] for d in container.query_items("SELECT c.id FROM c WHERE c.day = @day",
                                                  parameters=[{"name": "@day", "value": day}], partition_key=day)]
    for i in range(0, len(ids), 100):
        container.execute_item_batch([("delete", (x,)) for x in ids[i:i + 100]], partition_key=day)
    return len(ids)


def strip_document(doc: dict) -> dict:
    """The Graph row inside a stored document."""
    return {k: v for k, v in doc.items() if k not in DERIVED_FIELDS and k not in COSMOS_SYSTEM_FIELDS}


def by_id(rows) -> dict[str, dict]:
    return {row["id"]: row for row in rows}


def truth_for_days(sim, settings, feed: str, days: list[dt.date]) -> dict[str, dict]:
    """The rows a complete collection of these days must hold, by id."""
    version = settings.graph_api_version
    out = {}
    for day in days:
        window = day_window(day, settings.time_zone)
        out.update(by_id(sim.truth(feed, window.start, window.end, version)))
    return out


def assert_store_equals_truth(settings, sim, feed: str, days: list[dt.date]) -> None:
    docs = stored_rows(settings, feed)
    ids = [d["id"] for d in docs]
    assert len(ids) == len(set(ids)), "a row is stored twice"
    truth = truth_for_days(sim, settings, feed, days)
    stored = {d["id"]: strip_document(d) for d in docs}
    assert stored.keys() == truth.keys(), (f"missing {len(truth.keys() - stored.keys())}, "
                                           f"extra {len(stored.keys() - truth.keys())}")
    for row_id, row in truth.items():
        assert stored[row_id] == row, f"row {row_id} differs"


def archive_blobs(settings) -> dict[str, bytes]:
    container = blob_service(settings).get_container_client(settings.archive_container)
    return {b.name: container.download_blob(b.name).readall() for b in container.list_blobs()}


def manifests(settings) -> list[dict]:
    return [json.loads(body) for name, body in archive_blobs(settings).items() if name.endswith("manifest.json")]
