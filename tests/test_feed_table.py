"""The feed table is the one place a feed is declared: a made-up third feed, declared there and in the OData
model and nowhere else, is collected from the simulator, archived, recorded in the ledger and status, and
served by the OData feed and /api/calls."""
from __future__ import annotations

import ast
import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest

from devstack.graphsim import GraphSimulator
from shared.api.calls import calls
from shared.api.odata_feed import handle
from shared.api.status import build_status
from shared.collect.run import run_days
from shared.config.feeds import FEEDS, Feed
from shared.config.settings import load_settings, specs
from shared.instants import yesterday
from shared.odata.model import BOOLEAN, DATE, DATETIMEOFFSET, ENTITY_TYPES, INT32, STRING, EntityType, Property
from shared.stores import open_stores


from .collecting import (TOKEN, archive_blobs, fresh_settings, manifests, stored_rows, strip_document,
                         truth_for_days)

ROOT = Path(__file__).resolve().parent.parent
DAYS = [yesterday("UTC") - dt.timedelta(days=1), yesterday("UTC")]
MADE_UP = Feed("madeUp", "made-up call rows", "getMadeUpCalls", to_inclusive=False, time_field="startDateTime",
               row_type="madeUpLogRow", entity_set="MadeUpCalls", entity_type="MadeUpCall",
               container_setting="COSMOS_MADE_UP_CONTAINER", container_default="madeUpCalls", summaries=(),
               enabled_by_default=False)
MADE_UP_CALL = EntityType("MadeUpCall", (
    Property("id", STRING, nullable=False, key=True),
    Property("userPrincipalName", STRING),
    Property("startDateTime", DATETIMEOFFSET, path="startUtc", canonical=True),
    Property("duration", INT32),
    Property("successfulCall", BOOLEAN),
    Property("day", DATE, computed=True),
))


@pytest.fixture(scope="module")
def made_up(stack):
    """The made-up feed declared in the two places, its days collected beside PSTN's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(FEEDS, MADE_UP.name, MADE_UP)
        patch.setitem(ENTITY_TYPES, MADE_UP_CALL.name, MADE_UP_CALL)
        # The simulator's stand-in for the new Graph function: another function's rows under a new name.
        functions = {"getMadeUpCalls": {"rows": "directRouting", "to_inclusive": False, "row_type": "madeUpLogRow"}}
        with GraphSimulator(seed=21, token=TOKEN, rows_per_day={"pstn": 40, "directRouting": 1300},
                            functions=functions) as sim:
            settings = fresh_settings(stack, sim.url, FEEDS="pstn,madeUp")
            report = run_days(settings, [FEEDS["pstn"], FEEDS["madeUp"]], DAYS[0], DAYS[-1])
            env = {**stack.app_env(), "GRAPH_ENDPOINT": sim.url, "GRAPH_STATIC_TOKEN": TOKEN,
                   "COSMOS_DATABASE": settings.cosmos_database, "ARCHIVE_CONTAINER": settings.archive_container}
            yield {"settings": settings, "sim": sim, "report": report, "env": env}


def test_the_made_up_feed_has_its_container_setting_and_container(made_up):
    settings = made_up["settings"]
    spec = next(s for s in specs() if s.name == "COSMOS_MADE_UP_CONTAINER")
    assert spec.default == "madeUpCalls" and "made-up call rows" in spec.meaning
    assert settings.container("madeUp") == "madeUpCalls"
    assert settings.masked()["COSMOS_MADE_UP_CONTAINER"] == "madeUpCalls"
    renamed = load_settings({**made_up["env"], "FEEDS": "madeUp", "COSMOS_MADE_UP_CONTAINER": "elsewhere"})
    assert renamed.container("madeUp") == "elsewhere" and renamed.feeds == ("madeUp",)


def test_the_made_up_feed_is_collected_with_every_row_of_its_graph_function(made_up):
    settings, sim, report = made_up["settings"], made_up["sim"], made_up["report"]
    assert [(o.feed, o.outcome) for o in report.outcomes] == [
        ("madeUp", "succeeded"), ("pstn", "succeeded"), ("madeUp", "succeeded"), ("pstn", "succeeded")]
    truth = truth_for_days(sim, settings, "directRouting", DAYS)
    stored = {d["id"]: d for d in stored_rows(settings, "madeUp")}
    assert len(truth) > 2000 and stored.keys() == truth.keys()  # more than one page a day: nextLinks followed
    assert all(strip_document(stored[i]) == row for i, row in truth.items())
    assert {d["day"] for d in stored.values()} <= {d.isoformat() for d in DAYS} | {
        (DAYS[-1] + dt.timedelta(days=1)).isoformat()}
    # Its rows are its own: the PSTN container holds PSTN rows only.
    assert not set(stored) & {d["id"] for d in stored_rows(settings, "pstn")}


def test_the_made_up_feed_is_archived_byte_for_byte_under_its_own_name(made_up):
    settings = made_up["settings"]
    blobs = archive_blobs(settings)
    ours = [m for m in manifests(settings) if m["feed"] == "madeUp"]
    assert sorted(m["day"] for m in ours) == [d.isoformat() for d in DAYS]
    for manifest in ours:
        assert manifest["outcome"] == "succeeded" and len(manifest["pages"]) >= 2
        for page in manifest["pages"]:
            assert page["name"].startswith(f"madeUp/{settings.graph_api_version}/{manifest['day'].replace('-', '/')}/")
            body = blobs[page["name"]]
            assert hashlib.sha256(body).hexdigest() == page["sha256"]
            assert "madeUpLogRow" in json.loads(body)["@odata.context"]


def test_the_made_up_feed_is_in_the_ledger_and_status(made_up):
    settings = made_up["settings"]
    status = build_status(settings, open_stores(settings).ledger, days=2)
    feed = status["feeds"]["madeUp"]
    assert [(d["day"], d["status"]) for d in feed["days"]] == [(d.isoformat(), "succeeded") for d in DAYS]
    assert feed["gaps"] == [] and feed["rows"] == len(stored_rows(settings, "madeUp"))
    assert status["healthy"]


def test_the_made_up_feed_is_served_by_the_odata_feed(made_up):
    settings = made_up["settings"]
    stores = open_stores(settings)
    base = "http://localhost/api/odata"
    assert {"name": "MadeUpCalls", "kind": "EntitySet", "url": "MadeUpCalls"} in \
        json.loads(handle("", {}, {}, base, stores).body)["value"]
    metadata = handle("$metadata", {}, {}, base, stores).body.decode()
    assert '<EntityType Name="MadeUpCall">' in metadata
    assert '<EntitySet Name="MadeUpCalls" EntityType="TeamsCallLogs.MadeUpCall"' in metadata

    stored = {d["id"]: d for d in stored_rows(settings, "madeUp")}
    rows, url = [], "MadeUpCalls"
    params: dict = {"$filter": f"startDateTime ge {DAYS[0]}T00:00:00Z"}
    while url:
        response = handle(url, params, {"Prefer": "odata.maxpagesize=1000"}, base, stores)
        assert response.status == 200, response.body[:300]
        body = json.loads(response.body)
        rows += body["value"]
        next_link = body.get("@odata.nextLink")
        url, params = (None, {}) if not next_link else _split(next_link[len(base) + 1:])
    assert [r["id"] for r in rows] == sorted(stored, key=lambda i: (stored[i]["startUtc"], i))
    for row in rows:
        doc = stored[row["id"]]
        assert row == {name: doc.get(name) for name in MADE_UP_CALL.property_names}

    one_day = handle("MadeUpCalls/$count", {"$filter": f"startDateTime ge {DAYS[1]}T00:00:00Z and "
                                                       f"startDateTime lt {DAYS[1] + dt.timedelta(days=1)}T00:00:00Z"},
                     {}, base, stores)
    assert one_day.headers["X-Partitions-Read"] == "1"
    assert int(one_day.body) == sum(1 for d in stored.values() if d["day"] == DAYS[1].isoformat())


def test_the_made_up_feed_is_served_by_the_calls_route(made_up):
    settings = made_up["settings"]
    answer = calls({"feed": "madeUp", "from": DAYS[0].isoformat(), "to": DAYS[-1].isoformat()},
                   open_stores(settings), "http://localhost/api")
    body = json.loads(answer.body)
    in_range = [d for d in stored_rows(settings, "madeUp") if d["day"] in {x.isoformat() for x in DAYS}]
    assert answer.status == 200 and body["count"] == len(in_range)


def test_nothing_outside_the_feed_table_names_a_feed():
    """What differs between feeds is written in shared/config/feeds.py, and the entity types it names in
    shared/odata/model.py: no other module of shared/ has a string that is one of those spellings."""
    allowed = {ROOT / "shared/config/feeds.py", ROOT / "shared/odata/model.py"}
    words = set()
    for feed in FEEDS.values():
        words |= {feed.name, feed.graph_function, feed.row_type, feed.entity_set, feed.container_setting,
                  feed.container_default}
    found = []
    for path in sorted((ROOT / "shared").rglob("*.py")):
        if path in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in words:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert found == []


def _split(link: str) -> tuple[str, dict]:
    from urllib.parse import parse_qsl, urlsplit

    parts = urlsplit(link)
    return parts.path, dict(parse_qsl(parts.query))
