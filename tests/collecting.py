"""Helpers for tests that collect: a simulator, settings on the session stack, the app served over HTTP on
them, and reading what was stored."""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
import uuid
from typing import Iterator

import pytest

from devstack.localhost import Keys, make_server
from shared.collect.run import build_collector
from shared.stores.clients import blob_service, cosmos_client
from shared.stores.schema import ensure_stores
from shared.config.feeds import container_tables
from shared.config.settings import load_settings, specs
from shared.odata import entity_sets
from shared.stores.rows import COSMOS_SYSTEM_FIELDS, DERIVED_FIELDS
from shared.collect.windows import day_window

TOKEN = "test-token"


def fresh_settings(stack, graph_url: str, **overrides):
    """Settings on the session stack with a database and archive container of their own."""
    suffix = uuid.uuid4().hex[:10]
    env = {**stack.app_env(), "GRAPH_ENDPOINT": graph_url, "GRAPH_STATIC_TOKEN": TOKEN,
           "COSMOS_DATABASE": f"db{suffix}", "ARCHIVE_CONTAINER": f"raw-{suffix}",
           "GRAPH_FUNCTION_REQUESTS_PER_MINUTE": "12000", "GRAPH_APP_REQUESTS_PER_MINUTE": "12000",
           "GRAPH_TENANT_REQUESTS_PER_MINUTE": "12000", "GRAPH_TIMEOUT_SECONDS": "5",
           # "The next run" of a test retries its failed days: the tick-to-tick retry delay has tests of its own.
           "FAILED_RETRY_MINUTES": "0", **overrides}
    settings = load_settings(env)
    ensure_stores(settings)
    return settings


def app_environment(settings) -> dict[str, str | None]:
    """The app settings (environment variables) that load_settings reads back as exactly these settings, every
    setting named; None for one these settings leave unset."""
    held = dict(settings.containers)
    by_setting = {t.container_setting: held[t.name] for t in container_tables()}
    env: dict[str, str | None] = {}
    for spec in specs():
        value = by_setting[spec.name] if spec.name in by_setting else getattr(settings, spec.name.lower())
        if value is None:
            env[spec.name] = None
        elif isinstance(value, bool):
            env[spec.name] = "true" if value else "false"
        elif isinstance(value, tuple):
            env[spec.name] = ",".join(value)
        elif isinstance(value, dt.date):
            env[spec.name] = value.isoformat()
        else:
            env[spec.name] = str(value)
    assert load_settings({k: v for k, v in env.items() if v is not None}) == settings, \
        "app_environment does not spell every setting: a setting was added that it cannot write back"
    return env


@contextlib.contextmanager
def served_app(settings, sim=None, keys: Keys | None = None) -> Iterator[dict]:
    """The app (function_app) served over HTTP on a free port of 127.0.0.1, in a daemon thread, with
    os.environ holding exactly `settings` (set with pytest's MonkeyPatch); `keys` as devstack.localhost checks
    them (none required by default). Yields {"api": its /api base URL, "root": its root URL, "settings",
    "sim"}; on leaving, the server is shut down and os.environ restored.

    A context manager here, not a fixture in conftest.py: each module's fixture first collects what its tests
    read (the data differs from module to module) and then calls this with the result, in its own scope.

    One served app per process at a time: the app reads its settings from os.environ on every request, so a
    module that serves a second data set puts the tests of the second after every test of the first."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in app_environment(settings).items():
            if value is None:
                patch.delenv(name, raising=False)
            else:
                patch.setenv(name, value)
        from function_app import app

        server = make_server(app, "127.0.0.1", 0, keys)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        root = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            yield {"api": f"{root}/api", "root": root, "settings": settings, "sim": sim}
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)


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


def stored_documents(settings) -> dict[str, list[dict]]:
    """Entity set -> the stored documents behind it (derived and Cosmos system fields included)."""
    database = cosmos_client(settings).get_database_client(settings.cosmos_database)
    names = dict(settings.containers)
    out = {}
    for set_name, entity in entity_sets().items():
        container = database.get_container_client(names[entity.feed])
        out[set_name] = list(container.query_items("SELECT * FROM c", enable_cross_partition_query=True))
    return out


def sort_key(set_name: str):
    """The order the feed serves an entity set's documents in by default: the time property (startUtc, the start
    in UTC, for the calls), then id."""
    path = "startUtc" if entity_sets()[set_name].time_property == "startDateTime" else "day"
    return lambda doc: (doc[path], doc["id"])


def snapshot(settings) -> dict:
    """Everything the app stores: every document of every container (with _etag and _ts) and every archived blob
    (name and etag). Equal snapshots before and after mean nothing was written."""
    database = cosmos_client(settings).get_database_client(settings.cosmos_database)
    out: dict = {}
    for props in database.list_containers():
        container = database.get_container_client(props["id"])
        docs = container.query_items("SELECT * FROM c", enable_cross_partition_query=True)
        out[props["id"]] = sorted(json.dumps(d, sort_keys=True) for d in docs)
    archive = blob_service(settings).get_container_client(settings.archive_container)
    out["blobs"] = sorted((b.name, b.etag) for b in archive.list_blobs())
    return out


def assert_unchanged(before: dict, after: dict) -> None:
    """Two snapshots are equal; else name the container and a few documents added or rewritten."""
    for name in sorted(set(before) | set(after)):
        added = sorted(set(after.get(name, [])) - set(before.get(name, [])))
        removed = sorted(set(before.get(name, [])) - set(after.get(name, [])))
        assert not added and not removed, (f"a read route changed {name}: added {added[:3]}, "
                                           f"removed or rewritten {removed[:3]}")
