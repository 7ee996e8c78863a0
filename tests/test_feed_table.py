"""The feed table is the one place a feed is declared.

A made-up third feed is declared there and in the OData model, and nowhere else. It differs from both real
feeds where they differ from each other: its own Graph function, an inclusive toDateTime, a time field of its
own (endDateTime, not startDateTime) and a container setting of its own; it has the daily summaries. The
tests show it collected from the simulator, archived byte for byte, in the ledger and the status route,
summarised, replayed, and served by the OData feed, /api/calls and /api/usage of the function app over HTTP.
A static test finds any spelling of a feed outside the table.
"""
from __future__ import annotations

import ast
import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest
import requests
import yaml

from devstack.graphsim import GraphSimulator
from shared.collect.run import run_days
from shared.config.feeds import DERIVED, FEEDS, Feed
from shared.config.settings import load_settings, specs
from shared.derive.summaries import summarize
from shared.instants import canonical_instant, yesterday
from shared.odata.model import BOOLEAN, DATE, DATETIMEOFFSET, ENTITY_TYPES, INT32, STRING, EntityType, Property

from .collecting import (TOKEN, app_environment, archive_blobs, delete_day, fresh_settings, manifests, served_app,
                         stored_rows, strip_document, truth_for_days)

ROOT = Path(__file__).resolve().parent.parent
# The tables as the app declares them, before the fixture below adds the made-up feed.
REAL_FEEDS, REAL_DERIVED = dict(FEEDS), dict(DERIVED)
DAYS = [yesterday("UTC") - dt.timedelta(days=1), yesterday("UTC")]
MADE_UP = Feed("madeUp", "made-up call rows", "getMadeUpCalls", to_inclusive=True, time_field="endDateTime",
               entity_set="MadeUpCalls", entity_type="MadeUpCall", container_setting="COSMOS_MADE_UP_CONTAINER",
               container_default="madeUpCalls", summaries=("dailyUsage",), enabled_by_default=False)
MADE_UP_CALL = EntityType("MadeUpCall", (
    Property("id", STRING, nullable=False, key=True),
    Property("userId", STRING),
    Property("userPrincipalName", STRING),
    Property("startDateTime", DATETIMEOFFSET),
    Property("endDateTime", DATETIMEOFFSET, path="startUtc", canonical=True),
    Property("duration", INT32),
    Property("successfulCall", BOOLEAN),
    Property("day", DATE, computed=True),
))


@pytest.fixture(scope="module")
def made_up(stack):
    """The made-up feed declared in the two places, its days collected beside PSTN's, and the app served."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(FEEDS, MADE_UP.name, MADE_UP)
        patch.setitem(ENTITY_TYPES, MADE_UP_CALL.name, MADE_UP_CALL)
        # The simulator's stand-in for the new Graph function: Direct Routing's rows under a new name, with
        # an inclusive toDateTime as the feed declares.
        functions = {"getMadeUpCalls": {"rows": "directRouting", "to_inclusive": True, "row_type": "madeUpLogRow"}}
        with GraphSimulator(seed=21, token=TOKEN, rows_per_day={"pstn": 40, "directRouting": 1300},
                            functions=functions) as sim:
            settings = fresh_settings(stack, sim.url, FEEDS="pstn,madeUp")
            report = run_days(settings, [FEEDS["pstn"], FEEDS["madeUp"]], DAYS[0], DAYS[-1])
            with served_app(settings, sim) as app:
                yield {**app, "report": report}


def get(made_up, route: str, **params) -> requests.Response:
    response = requests.get(f"{made_up['api']}/{route}", params=params, timeout=30)
    assert response.status_code == 200, response.text[:300]
    return response


def test_the_made_up_feed_has_its_container_setting_and_container(made_up):
    settings = made_up["settings"]
    spec = next(s for s in specs() if s.name == "COSMOS_MADE_UP_CONTAINER")
    assert spec.default == "madeUpCalls" and "made-up call rows" in spec.meaning
    assert "madeUp" in next(s for s in specs() if s.name == "FEEDS").meaning
    assert settings.container("madeUp") == "madeUpCalls"
    assert settings.masked()["COSMOS_MADE_UP_CONTAINER"] == "madeUpCalls"
    env = {k: v for k, v in app_environment(settings).items() if v is not None}
    renamed = load_settings({**env, "FEEDS": "madeUp", "COSMOS_MADE_UP_CONTAINER": "elsewhere"})
    assert renamed.container("madeUp") == "elsewhere" and renamed.feeds == ("madeUp",)


def test_the_made_up_feed_is_collected_with_every_row_of_its_graph_function(made_up):
    settings, sim, report = made_up["settings"], made_up["sim"], made_up["report"]
    assert [(o.feed, o.outcome) for o in report.outcomes] == [
        ("madeUp", "succeeded"), ("pstn", "succeeded"), ("madeUp", "succeeded"), ("pstn", "succeeded")]
    truth = truth_for_days(sim, settings, "directRouting", DAYS)
    stored = {d["id"]: d for d in stored_rows(settings, "madeUp")}
    assert len(truth) > 2000 and stored.keys() == truth.keys()  # more than one page a day: nextLinks followed
    assert all(strip_document(stored[i]) == row for i, row in truth.items())
    # The day partition and the sort key come from the feed's own time field.
    assert all(d["startUtc"] == canonical_instant(d["endDateTime"]) and d["day"] == d["startUtc"][:10]
               for d in stored.values())
    assert any(d["startUtc"] != canonical_instant(d["startDateTime"]) for d in stored.values())
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


def test_the_made_up_feed_is_in_the_ledger_and_the_status_route(made_up):
    status = get(made_up, "status", days="2").json()
    feed = status["feeds"]["madeUp"]
    assert [(d["day"], d["status"]) for d in feed["days"]] == [(d.isoformat(), "succeeded") for d in DAYS]
    assert feed["gaps"] == [] and feed["rows"] == len(stored_rows(made_up["settings"], "madeUp"))
    assert status["healthy"] and status["settings"]["COSMOS_MADE_UP_CONTAINER"] == "madeUpCalls"


def test_the_made_up_feed_is_served_by_the_odata_feed(made_up):
    stored = {d["id"]: d for d in stored_rows(made_up["settings"], "madeUp")}
    assert {"name": "MadeUpCalls", "kind": "EntitySet", "url": "MadeUpCalls"} in get(made_up, "odata/").json()["value"]
    metadata = get(made_up, "odata/$metadata").text
    assert '<EntityType Name="MadeUpCall">' in metadata
    assert '<EntitySet Name="MadeUpCalls" EntityType="TeamsCallLogs.MadeUpCall"' in metadata

    rows, response = [], get(made_up, "odata/MadeUpCalls", **{"$filter": f"endDateTime ge {DAYS[0]}T00:00:00Z"})
    while True:
        body = response.json()
        rows += body["value"]
        if "@odata.nextLink" not in body:
            break
        response = requests.get(body["@odata.nextLink"], timeout=30)
        assert response.status_code == 200, response.text[:300]
    expected = sorted((d for d in stored.values() if d["day"] >= DAYS[0].isoformat()),
                      key=lambda d: (d["startUtc"], d["id"]))
    assert [r["id"] for r in rows] == [d["id"] for d in expected]
    assert all(row == {name: stored[row["id"]].get(name) for name in MADE_UP_CALL.property_names} for row in rows)

    next_day = DAYS[1] + dt.timedelta(days=1)
    one_day = get(made_up, "odata/MadeUpCalls/$count",
                  **{"$filter": f"endDateTime ge {DAYS[1]}T00:00:00Z and endDateTime lt {next_day}T00:00:00Z"})
    assert one_day.headers["X-Partitions-Read"] == "1"
    assert int(one_day.text) == sum(1 for d in stored.values() if d["day"] == DAYS[1].isoformat())


def test_the_made_up_feed_is_served_by_the_calls_route(made_up):
    stored = stored_rows(made_up["settings"], "madeUp")
    body = get(made_up, "calls", feed="madeUp", **{"from": DAYS[0].isoformat(), "to": DAYS[-1].isoformat()}).json()
    in_range = {d["id"] for d in stored if d["day"] in {x.isoformat() for x in DAYS}}
    assert {r["id"] for r in body["value"]} == in_range and body["count"] == len(in_range)


def test_the_made_up_feed_has_its_daily_summaries(made_up):
    stored = stored_rows(made_up["settings"], "madeUp")
    for day in DAYS:
        rows = [d for d in stored if d["day"] == day.isoformat()]
        served = get(made_up, "usage", feed="madeUp", **{"from": day.isoformat(), "to": day.isoformat()}).json()
        by_id = sorted(served["value"], key=lambda s: s["id"])
        assert by_id == sorted(summarize("madeUp", day.isoformat(), rows), key=lambda s: s["id"])
        assert sum(s["calls"] for s in served["value"]) == len(rows) > 0


def test_the_made_up_feed_is_replayed_from_its_archive(made_up):
    settings, day = made_up["settings"], DAYS[0].isoformat()
    before = {d["id"]: d["rowHash"] for d in stored_rows(settings, "madeUp") if d["day"] == day}
    assert delete_day(settings, day, feed="madeUp") == len(before) > 0
    response = requests.post(f"{made_up['api']}/ops/replay", params={"feed": "madeUp", "day": day}, timeout=60)
    assert response.status_code == 200, response.text[:300]
    assert {d["id"]: d["rowHash"] for d in stored_rows(settings, "madeUp") if d["day"] == day} == before


# --- nothing else spells a feed ---------------------------------------------------------------------------------
def _spellings() -> set[str]:
    words = set()
    for feed in REAL_FEEDS.values():
        words |= {feed.name, feed.graph_function, feed.entity_set, feed.entity_type, feed.container_setting,
                  feed.container_default}
    for table in REAL_DERIVED.values():
        words |= {table.name, table.entity_set, table.entity_type, table.container_setting, table.container_default}
    return words


def _strings(tree: ast.AST):
    """The string constants of a module, without docstrings (prose may name a feed to explain something)."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node


def test_nothing_outside_the_feed_table_spells_a_feed():
    """What differs between feeds is written in shared/config/feeds.py, and the entity types it names in
    shared/odata/model.py: no string in any other module of the app names a feed, a derived table, their
    Graph functions, entity sets or container settings, whole or as a word inside a longer string."""
    allowed = {ROOT / "shared/config/feeds.py", ROOT / "shared/odata/model.py"}
    words = _spellings()
    paths = [*sorted((ROOT / "shared").rglob("*.py")), *sorted((ROOT / "query_http").rglob("*.py")),
             *sorted((ROOT / "collect_timer").rglob("*.py")), ROOT / "function_app.py"]
    found = []
    for path in paths:
        if path in allowed:
            continue
        for node in _strings(ast.parse(path.read_text(encoding="utf-8"))):
            tokens = set(node.value.replace(",", " ").replace("/", " ").replace('"', " ").split())
            found += [f"{path.relative_to(ROOT)}:{node.lineno}: {word!r}" for word in sorted(words & tokens)]
    assert found == []


def test_the_scan_finds_a_feed_spelled_in_a_module():
    tree = ast.parse('"""Reads pstn rows."""\nCONTAINERS = {"pstn": "COSMOS_PSTN_CONTAINER"}\nX = "feeds: pstn,x"\n')
    found = {(n.lineno, w) for n in _strings(tree) for w in set(n.value.replace(",", " ").split()) & _spellings()}
    assert found == {(2, "pstn"), (2, "COSMOS_PSTN_CONTAINER"), (3, "pstn")}


def test_the_documents_name_the_feeds_of_the_table():
    """openapi.yaml lists the feeds a `feed` parameter takes; it must say what the table says."""
    spec = yaml.safe_load((ROOT / "openapi.yaml").read_text(encoding="utf-8"))
    assert spec["components"]["schemas"]["Feed"]["enum"] == list(REAL_FEEDS)
