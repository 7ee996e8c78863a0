"""Pages the collector refuses: archived as page-NNNNN.rejected.json and named so in the run manifest with why,
nothing of them stored, and skipped by a replay that still rebuilds the whole day (issue 13, defect 3).

On the local stack: the Graph simulator (its invalid_json fault) behind a proxy that drops one row's id on the
way (tests/graph_proxy.py: the simulator sends no row without an id), Azurite, the Cosmos server, and the app
served over HTTP for POST /api/ops/replay.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest
import requests

from devstack.graphsim.server import GraphSimulator
from shared.collect.run import run_days
from shared.config.feeds import FEEDS
from shared.stores import open_stores
from shared.stores.archive import Manifest, PageEntry, run_prefix

from .collecting import (TOKEN, archive_blobs, assert_store_equals_truth, delete_day, fresh_settings, manifests,
                         served_app, stored_rows)
from .graph_proxy import GraphProxy, page_at

DAY = dt.date(2026, 5, 4)
PSTN = FEEDS["pstn"]


def replay_over_http(settings, day: dt.date) -> dict:
    """POST /api/ops/replay of the PSTN day through the served app; its answer, which must be a 200."""
    with served_app(settings) as app:
        answer = requests.post(f"{app['api']}/ops/replay", params={"feed": "pstn", "day": day.isoformat()},
                               timeout=120)
    assert answer.status_code == 200, answer.text[:500]
    return answer.json()


@pytest.fixture
def sim():
    with GraphSimulator(seed=11, rows_per_day={"pstn": 2500, "directRouting": 0}, token=TOKEN) as simulator:
        yield simulator


@pytest.fixture
def proxy(sim):
    server = GraphProxy(sim.url)
    yield server
    server.close()


@pytest.fixture
def settings(stack, proxy):
    return fresh_settings(stack, proxy.url, FEEDS="pstn")


def _drop_an_id(document: dict) -> None:
    del document["value"][7]["id"]


def _runs(settings) -> list[dict]:
    return sorted(manifests(settings), key=lambda m: m["started"])  # run ids of one second sort by chance


def _page_names(settings, run_id: str) -> list[str]:
    return sorted(name.rsplit("/", 1)[1] for name in archive_blobs(settings) if f"/{run_id}/page-" in name)


def test_refused_pages_are_kept_as_rejected_and_a_replay_rebuilds_the_whole_day(settings, sim, proxy):
    # Run 1: the second page holds a row without an id. The store refuses it, so nothing of that page is stored.
    proxy.rewrite(page_at(1000), _drop_an_id)
    first = run_days(settings, [PSTN], DAY, DAY).outcomes[0]
    assert first.outcome == "failed" and "RowError" in first.error
    assert len(stored_rows(settings)) == 1000
    run1 = _runs(settings)[0]
    assert _page_names(settings, run1["runId"]) == ["page-00001.json", "page-00002.rejected.json"]
    refused = run1["pages"][1]
    assert refused["name"].endswith("/page-00002.rejected.json") and "RowError" in refused["rejected"]
    assert run1["pages"][0]["rejected"] is None
    blobs = archive_blobs(settings)
    assert hashlib.sha256(blobs[refused["name"]]).hexdigest() == refused["sha256"]
    assert "id" not in json.loads(blobs[refused["name"]])["value"][7]  # the page as the client received it

    # Run 2: the third page is not JSON at all. The client refuses it and hands its bytes to the collector.
    sim.configure(faults=[{"kind": "invalid_json", "skip": 2000, "times": 1}])
    second = run_days(settings, [PSTN], DAY, DAY).outcomes[0]
    assert second.outcome == "failed" and "not valid JSON" in second.error
    assert len(stored_rows(settings)) == 2000
    run2 = _runs(settings)[1]
    assert _page_names(settings, run2["runId"]) == ["page-00001.json", "page-00002.json",
                                                    "page-00003.rejected.json"]
    broken = run2["pages"][2]
    assert broken["name"].endswith("/page-00003.rejected.json") and "not valid JSON" in broken["rejected"]
    sent = [e for e in sim.request_log() if "$skip=2000" in e["path"]][-1]
    assert hashlib.sha256(archive_blobs(settings)[broken["name"]]).hexdigest() == sent["sha256"] == broken["sha256"]
    assert (broken["rows"], run2["rows"]) == (0, 2000)

    # Run 3 completes the day.
    sim.configure(faults=[])
    assert run_days(settings, [PSTN], DAY, DAY).outcomes[0].outcome == "succeeded"
    assert_store_equals_truth(settings, sim, "pstn", [DAY])
    before = {d["id"]: d["rowHash"] for d in stored_rows(settings)}

    # The day's documents go; a replay brings every one back from the accepted pages of all three runs.
    assert delete_day(settings, DAY.isoformat()) == 2500
    report = replay_over_http(settings, DAY)
    assert report["rejected"] == 2 and report["rejectedPages"] == [refused["name"], broken["name"]]
    assert report["pages"] == 1 + 2 + 3 and len(report["runs"]) == 3 and report["new"] == 2500
    assert {d["id"]: d["rowHash"] for d in stored_rows(settings)} == before
    assert_store_equals_truth(settings, sim, "pstn", [DAY])


def test_a_replay_skips_a_refused_page_archived_under_its_accepted_name(settings, sim):
    # An archive written before refused pages were marked: a failed run whose bad page is page-00002.json,
    # named in its manifest like any other. Replaying it must skip that page, not fail the whole day.
    assert run_days(settings, [PSTN], DAY, DAY).outcomes[0].outcome == "succeeded"
    stores = open_stores(settings)
    version = settings.graph_api_version
    good = json.dumps({"value": [{"id": "older-1", "startDateTime": f"{DAY}T10:00:00Z"}]}).encode()
    bad = json.dumps({"value": [{"id": "older-2", "startDateTime": f"{DAY}T11:00:00Z"},
                                {"startDateTime": f"{DAY}T12:00:00Z"}]}).encode()
    prefix = run_prefix("pstn", version, DAY, "20000101T000000Z-older")
    manifest = Manifest("pstn", version, DAY.isoformat(), settings.time_zone, "20000101T000000Z-older",
                        window={}, started="2000-01-01T00:00:00.000Z", outcome="failed", error="RowError: no id")
    for number, body in ((1, good), (2, bad)):
        name, digest = stores.archive.put_page(prefix, number, body)
        manifest.pages.append(PageEntry(name, digest, len(body), len(json.loads(body)["value"]), ""))
    stores.archive.put_manifest(prefix, manifest)
    before = {d["id"] for d in stored_rows(settings)}

    assert delete_day(settings, DAY.isoformat()) == 2500
    report = replay_over_http(settings, DAY)
    assert report["rejectedPages"] == [f"{prefix}page-00002.json"] and report["rejected"] == 1
    assert {d["id"] for d in stored_rows(settings)} == before | {"older-1"}  # nothing of the refused page


def test_a_replay_takes_runs_in_the_order_they_started_not_by_run_id(settings):
    # Two runs started within one second: their ids differ only in the random tail, which here sorts the later
    # run first. Replay must end with the later run's version of a row that changed between them.
    stores = open_stores(settings)
    version = settings.graph_api_version
    for run_id, started, where in (("20260505T010203Z-ffffff", "2026-05-05T01:02:03.100Z", "first"),
                                   ("20260505T010203Z-000000", "2026-05-05T01:02:03.900Z", "second")):
        body = json.dumps({"value": [{"id": "row-1", "startDateTime": f"{DAY}T10:00:00Z", "seen": where}]}).encode()
        prefix = run_prefix("pstn", version, DAY, run_id)
        manifest = Manifest("pstn", version, DAY.isoformat(), settings.time_zone, run_id, window={},
                            started=started, outcome="succeeded")
        name, digest = stores.archive.put_page(prefix, 1, body)
        manifest.pages.append(PageEntry(name, digest, len(body), 1, ""))
        stores.archive.put_manifest(prefix, manifest)
    with served_app(settings) as app:
        answer = requests.post(f"{app['api']}/ops/replay", params={"feed": "pstn", "day": DAY.isoformat()},
                               timeout=120)
    assert answer.status_code == 200, answer.text[:500]
    assert answer.json()["runs"] == ["20260505T010203Z-ffffff", "20260505T010203Z-000000"]
    assert [d["seen"] for d in stored_rows(settings)] == ["second"]
