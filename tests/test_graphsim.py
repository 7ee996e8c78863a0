"""The Graph simulator, over real HTTP: paging, window semantics, errors, faults, late rows, throttling,
the control API and the CLI."""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import requests

from devstack.graphsim import GraphSimulator
from devstack.graphsim.rows import DR_BETA, DR_V1, PSTN_BETA, PSTN_V1

ROOT = Path(__file__).resolve().parents[1]
AUTH = {"Authorization": "Bearer test-token"}
DAY, NEXT_DAY = "2024-05-01", "2024-05-02"
DEFAULT_KNOBS = dict(rows_per_day=2500, rows_per_day_overrides={}, page_size=1000, latency=0, faults=[],
                     late_rows=[], rate_limit=None, token=None, functions={})
TICKS_7 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{7}Z")


@pytest.fixture(scope="module")
def sim():
    with GraphSimulator(port=0, seed=1) as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def clean(sim):
    sim.configure(**DEFAULT_KNOBS)
    sim.reset()
    yield


def pstn_url(sim, start=DAY, end=NEXT_DAY, version="v1.0"):
    return f"{sim.url}/{version}/communications/callRecords/getPstnCalls(fromDateTime={start},toDateTime={end})"


def dr_url(sim, start=DAY, end=NEXT_DAY, version="v1.0"):
    return (f"{sim.url}/{version}/communications/callRecords/"
            f"getDirectRoutingCalls(fromDateTime={start},toDateTime={end})")


def get(url, headers=AUTH, **kwargs):
    return requests.get(url, headers=headers, timeout=10, **kwargs)


def function_url(sim, name, start=DAY, end=NEXT_DAY, version="v1.0"):
    return f"{sim.url}/{version}/communications/callRecords/{name}(fromDateTime={start},toDateTime={end})"


def collect(url, headers=AUTH):
    """Follow nextLinks verbatim; return (rows, page bodies)."""
    rows, pages = [], []
    with requests.Session() as session:
        while url:
            response = session.get(url, headers=headers, timeout=10)
            assert response.status_code == 200, response.text
            body = response.json()
            pages.append(body)
            rows.extend(body["value"])
            url = body.get("@odata.nextLink")
            assert len(pages) < 50, "runaway paging"
    return rows, pages


# --- paging and the documented shapes ---------------------------------------------------------------
def test_pstn_pages_of_1000_with_documented_next_links_add_up_to_the_truth(sim):
    rows, pages = collect(pstn_url(sim))
    assert [p["@odata.count"] for p in pages] == [1000, 1000, 500]
    assert [len(p["value"]) for p in pages] == [1000, 1000, 500]
    base = f"{sim.url}/v1.0/communications/callRecords/getPstnCalls(from={DAY},to={NEXT_DAY})"
    assert [p.get("@odata.nextLink") for p in pages] == [f"{base}?$skip=1000", f"{base}?$skip=2000", None]
    assert pages[0]["@odata.context"] == (
        f"{sim.url}/v1.0/$metadata#Collection(microsoft.graph.callRecords.pstnCallLogRow)")
    assert rows == sim.truth("pstn", DAY, NEXT_DAY)
    assert len({r["id"] for r in rows}) == 2500
    assert rows == sorted(rows, key=lambda r: (r["startDateTime"], r["id"]))


def test_direct_routing_next_links_keep_the_full_parameter_names(sim):
    sim.configure(rows_per_day={"pstn": 100, "directRouting": 1200})
    rows, pages = collect(dr_url(sim, version="beta"))
    assert [p["@odata.count"] for p in pages] == [1000, 200]
    assert pages[0]["@odata.nextLink"] == (f"{sim.url}/beta/communications/callRecords/getDirectRoutingCalls"
                                           f"(fromDateTime={DAY},toDateTime={NEXT_DAY})?$skip=1000")
    assert pages[0]["@odata.context"].endswith("#Collection(microsoft.graph.callRecords.directRoutingLogRow)")
    assert rows == sim.truth("directRouting", DAY, NEXT_DAY, "beta")


def test_direct_routing_defaults_to_a_fifth_of_the_rows_and_page_size_is_a_knob(sim):
    assert len(sim.truth("directRouting", DAY, NEXT_DAY)) == 500
    sim.configure(page_size=200, rows_per_day_overrides={DAY: 450})
    _, pages = collect(pstn_url(sim, DAY, "2024-05-01T23:59:59Z"))
    assert [p["@odata.count"] for p in pages] == [200, 200, 50]


def test_responses_are_compact_json_with_content_length_on_a_kept_alive_connection(sim):
    connection = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=10)
    path = pstn_url(sim).removeprefix(sim.url)
    for _ in range(2):  # the second request reuses the connection
        connection.request("GET", path, headers=AUTH)
        response = connection.getresponse()
        data = response.read()
        assert response.status == 200
        assert int(response.getheader("Content-Length")) == len(data)
        assert response.getheader("Content-Type").startswith("application/json")
        assert b'":"' in data and b'": "' not in data[:200]
    connection.close()


def test_the_request_host_header_sets_the_links_base(sim):
    body = get(pstn_url(sim), headers={**AUTH, "Host": "graph.example:1234"}).json()
    assert body["@odata.nextLink"].startswith("http://graph.example:1234/v1.0/communications/")


# --- rows --------------------------------------------------------------------------------------------
def test_v1_rows_have_exactly_the_v1_fields_and_beta_rows_add_the_beta_ones(sim):
    for feed, v1_fields, beta_fields in (("pstn", PSTN_V1, PSTN_BETA), ("directRouting", DR_V1, DR_BETA)):
        v1 = sim.truth(feed, DAY, NEXT_DAY, "v1.0")
        beta = sim.truth(feed, DAY, NEXT_DAY, "beta")
        assert all(set(r) == set(v1_fields) for r in v1)
        assert all(set(r) == set(beta_fields) for r in beta)
        assert [r["id"] for r in v1] == [r["id"] for r in beta]
        assert all(b[k] == r[k] for r, b in zip(v1, beta) for k in v1_fields)
    assert len(PSTN_V1) == 23
    beta_page = get(pstn_url(sim, version="beta")).json()["value"]
    assert "administrativeUnitInfos" in beta_page[0] and "clientPublicIpV4Address" in beta_page[0]
    assert "administrativeUnitInfos" not in get(pstn_url(sim)).json()["value"][0]


def test_pstn_rows_look_like_graphs(sim):
    rows = sim.truth("pstn", DAY, NEXT_DAY, "beta")
    for row in rows:
        assert TICKS_7.fullmatch(row["startDateTime"]) and TICKS_7.fullmatch(row["endDateTime"])
        assert row["startDateTime"].startswith(DAY)
        assert re.fullmatch(r"\d+_\d+@\d+\.\d+\.\d+\.\d+", row["callId"])
        assert re.fullmatch(r"\+\d{8,15}", row["callerNumber"]) and re.fullmatch(r"\+\d{8,15}", row["calleeNumber"])
        assert row["userPrincipalName"].endswith("@contoso.com")
        assert isinstance(row["duration"], int) and row["currency"] in ("USD", "EUR", "GBP")
        assert row["licenseCapability"] in ("MCOPSTNU", "MCOPSTN1", "MCOPSTN2", "MCOMEETADD")
        assert row["callDurationSource"] in ("microsoft", "operator")
        assert (row["conferenceId"] is not None) == row["callType"].startswith("conf")
        assert (row["userId"] == "") == row["callType"].startswith("ucap")
        if row["callType"] in ("user_in", "conf_in", "ucap_in", "oc_user_in"):
            assert row["charge"] == 0 and row["destinationContext"] is None
        else:
            assert row["destinationContext"] in ("Domestic", "International")
            assert len(repr(float(row["charge"])).split(".")[1]) <= 4
    types = {r["callType"] for r in rows}
    assert {"user_in", "user_out", "conf_in", "ucap_in", "ucap_out"} <= types
    call_ids = [r["callId"] for r in rows]
    assert len(set(call_ids)) < len(call_ids), "some callIds repeat across rows"
    durations = sorted(r["duration"] for r in rows)
    assert 60 <= durations[len(durations) // 2] <= 600 and durations[len(durations) // 50] <= 5
    assert any(r["administrativeUnitInfos"] == [] for r in rows)
    assert any(r["clientPublicIpV6Address"] is None for r in rows)


def test_direct_routing_rows_look_like_graphs(sim):
    rows = sim.truth("directRouting", DAY, NEXT_DAY, "beta")
    for row in rows:
        assert all(TICKS_7.fullmatch(row[k]) for k in ("startDateTime", "inviteDateTime", "endDateTime"))
        assert isinstance(row["successfulCall"], bool) and isinstance(row["mediaBypassEnabled"], bool)
        assert isinstance(row["finalSipCode"], int) and isinstance(row["callEndSubReason"], int)
        assert (row["failureDateTime"] == "0001-01-01T00:00:00Z") == row["successfulCall"]
    assert {True, False} == {r["successfulCall"] for r in rows}


def test_the_same_seed_gives_the_same_rows_in_another_process_and_another_seed_differs(sim):
    mine = hashlib.sha256(json.dumps(sim.truth("pstn", DAY, NEXT_DAY, "beta")).encode()).hexdigest()
    script = ("import hashlib, json; from devstack.graphsim import GraphSimulator; "
              f"rows = GraphSimulator(seed=1).truth('pstn', '{DAY}', '{NEXT_DAY}', 'beta'); "
              "print(hashlib.sha256(json.dumps(rows).encode()).hexdigest())")
    other_process = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                                   check=True, env={**os.environ, "PYTHONHASHSEED": "123"})
    assert other_process.stdout.strip() == mine
    other_seed = GraphSimulator(seed=2).truth("pstn", DAY, NEXT_DAY)
    assert {r["id"] for r in other_seed}.isdisjoint({r["id"] for r in sim.truth("pstn", DAY, NEXT_DAY)})


def test_fifty_thousand_rows_a_day_are_generated_distinct_and_in_order():
    # How fast is a benchmark's business (bench/), not a timed unit test's: only the content is checked here.
    rows = GraphSimulator(rows_per_day=50_000).truth("pstn", DAY, "2024-05-01T23:59:59.9999999Z", "beta")
    assert len(rows) == 50_000 and len({r["id"] for r in rows}) == 50_000
    assert [r["startDateTime"] for r in rows] == sorted(r["startDateTime"] for r in rows)


# --- the window --------------------------------------------------------------------------------------
def test_date_only_and_full_datetimeoffset_parameters_mean_the_same_instants(sim):
    expected = get(pstn_url(sim)).json()["value"]
    for start, end in (("2024-05-01T00:00:00Z", "2024-05-02T00:00:00Z"),
                       ("2024-05-01T00:00:00.0000000Z", "2024-05-02T00:00:00.000Z"),
                       ("2024-05-01T02:00:00+02:00", "2024-05-01T19:00:00-05:00"),
                       ("2024-05-01T02:00:00%2B02:00", "2024-05-01T19:00:00-05:00")):
        response = get(pstn_url(sim, start, end))
        assert response.status_code == 200, (start, response.text)
        assert response.json()["value"] == expected


def test_url_encoded_parentheses_colons_and_skip_are_understood(sim):
    encoded = (f"{sim.url}/v1.0/communications/callRecords/getPstnCalls%28from%3D2024-05-01T00%3A00%3A00Z,"
               f"to=2024-05-02%29?%24skip=2000")
    body = get(encoded).json()
    assert body["@odata.count"] == 500
    assert body["value"] == sim.truth("pstn", DAY, NEXT_DAY)[2000:]


def test_pstn_includes_both_bounds_and_direct_routing_excludes_the_end(sim):
    pstn = sim.truth("pstn", DAY, NEXT_DAY)
    row = pstn[1234]
    window = get(pstn_url(sim, row["startDateTime"], row["startDateTime"])).json()["value"]
    assert row in window and all(r["startDateTime"] == row["startDateTime"] for r in window)
    dr = sim.truth("directRouting", DAY, NEXT_DAY)
    row = dr[100]
    before = get(dr_url(sim, DAY, row["startDateTime"])).json()["value"]
    after = get(dr_url(sim, row["startDateTime"], NEXT_DAY)).json()["value"]
    assert row not in before and after[0] == row
    assert before + after == dr


def test_ninety_days_is_allowed_and_ninety_one_is_a_bad_request(sim):
    assert get(pstn_url(sim, "2024-01-01", "2024-03-31")).status_code == 200  # 90 days
    response = get(pstn_url(sim, "2024-01-01", "2024-04-01"))
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "BadRequest" and "90 days" in error["message"]
    assert {"date", "request-id", "client-request-id"} <= set(error["innerError"])


def test_a_ninety_day_window_pages_without_generating_every_day(sim):
    body = get(pstn_url(sim, "2024-01-01", "2024-03-31") + "?$skip=150000").json()
    assert body["@odata.count"] == 1000
    assert body["value"][0]["startDateTime"].startswith("2024-03-01")  # day 61: 60 whole days skipped


@pytest.mark.parametrize("path, status", [
    ("/v1.0/communications/callRecords/getPstnCalls(fromDateTime=2024-13-01,toDateTime=2024-05-02)", 400),
    ("/v1.0/communications/callRecords/getPstnCalls(fromDateTime=yesterday,toDateTime=2024-05-02)", 400),
    ("/v1.0/communications/callRecords/getPstnCalls(fromDateTime=2024-05-01T00:00:00,toDateTime=2024-05-02)", 400),
    ("/v1.0/communications/callRecords/getPstnCalls(fromDateTime=2024-05-01)", 400),
    ("/v1.0/communications/callRecords/getPstnCalls(start=2024-05-01,toDateTime=2024-05-02)", 400),
    ("/v1.0/communications/callRecords/getPstnCalls(from=2024-05-01,from=2024-05-01,to=2024-05-02)", 400),
    ("/v1.0/communications/callRecords/getPstnCalls", 400),
    ("/v1.0/communications/callRecords/getPstnCalls(fromDateTime=2024-05-02,toDateTime=2024-05-01)", 400),
    ("/v1.0/communications/callRecords/getPstnCalls(fromDateTime=2024-05-01,toDateTime=2024-05-02)?$skip=-1", 400),
    ("/v1.0/communications/callRecords/getPstnCalls(fromDateTime=2024-05-01,toDateTime=2024-05-02)?$skip=x", 400),
    ("/v2.0/communications/callRecords/getPstnCalls(fromDateTime=2024-05-01,toDateTime=2024-05-02)", 400),
    ("/v1.0/communications/callRecords/getSmsLog(fromDateTime=2024-05-01,toDateTime=2024-05-02)", 404),
    ("/v1.0/me", 404),
])
def test_malformed_requests_get_graph_errors(sim, path, status):
    response = get(sim.url + path)
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == {400: "BadRequest", 404: "ResourceNotFound"}[status]


# --- authentication ----------------------------------------------------------------------------------
def test_a_missing_or_wrong_bearer_token_is_refused(sim):
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer "}):
        response = get(pstn_url(sim), headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "InvalidAuthenticationToken"
    sim.configure(token="s3cret")
    assert get(pstn_url(sim)).status_code == 401
    assert get(pstn_url(sim), headers={"Authorization": "Bearer s3cret"}).status_code == 200


# --- faults ------------------------------------------------------------------------------------------
def test_status_faults_fire_as_configured_with_retry_after(sim):
    sim.configure(faults=[{"kind": "status", "status": 429, "retry_after": 3, "skip": 1000},
                          {"kind": "status", "status": 503, "times": 2, "feed": "directRouting"}])
    first = get(pstn_url(sim))
    assert first.status_code == 200
    throttled = get(first.json()["@odata.nextLink"])
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "3"
    assert throttled.json()["error"]["code"] == "TooManyRequests"
    assert get(first.json()["@odata.nextLink"]).status_code == 200  # times defaults to 1
    assert [get(dr_url(sim)).status_code for _ in range(3)] == [503, 503, 200]
    assert sim.stats()["faults_by_kind"] == {"status": 3}


def test_after_lets_matching_requests_through_first(sim):
    sim.configure(faults=[{"kind": "status", "status": 500, "after": 2, "times": 1}])
    assert [get(pstn_url(sim)).status_code for _ in range(4)] == [200, 200, 500, 200]


def test_drop_closes_the_connection_without_an_answer_or_mid_body(sim):
    sim.configure(faults=[{"kind": "drop"}, {"kind": "drop", "partial": True}])
    with pytest.raises(requests.ConnectionError):
        get(pstn_url(sim))
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        get(pstn_url(sim))
    assert get(pstn_url(sim)).status_code == 200
    statuses = [entry["status"] for entry in sim.request_log()]
    assert statuses == [None, 200, 200] and sim.stats()["faults_fired"] == 2


def test_invalid_json_is_a_200_with_a_truncated_body(sim):
    sim.configure(faults=[{"kind": "invalid_json"}])
    response = get(pstn_url(sim))
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()
    assert get(pstn_url(sim)).json()["@odata.count"] == 1000


def test_loop_points_the_next_link_at_the_current_request(sim):
    sim.configure(faults=[{"kind": "loop", "skip": 1000}])
    url = get(pstn_url(sim)).json()["@odata.nextLink"]
    assert get(url).json()["@odata.nextLink"] == url


def test_slow_delays_the_answer(sim):
    sim.configure(faults=[{"kind": "slow", "seconds": 0.5}])
    started = time.perf_counter()
    assert get(pstn_url(sim)).status_code == 200
    assert time.perf_counter() - started >= 0.5


def test_empty_page_keeps_a_next_link_that_loses_no_rows(sim):
    sim.configure(faults=[{"kind": "empty_page", "skip": 1000}])
    rows, pages = collect(pstn_url(sim))
    assert [p["@odata.count"] for p in pages] == [1000, 0, 1000, 500]
    assert pages[1]["value"] == [] and "?$skip=1000&" in pages[1]["@odata.nextLink"]
    assert pages[1]["@odata.nextLink"] != pages[0]["@odata.nextLink"]  # distinct, so not a loop
    assert rows == sim.truth("pstn", DAY, NEXT_DAY)


def test_latency_is_added_to_every_graph_request(sim):
    sim.configure(latency=0.3)
    started = time.perf_counter()
    get(pstn_url(sim), headers={})
    assert time.perf_counter() - started >= 0.3


def test_bad_fault_rules_are_refused(sim):
    for rule in ({"kind": "explode"}, {"kind": "status"}, {"kind": "status", "status": 429, "retyr_after": 1},
                 {"kind": "drop", "seconds": 1}, {"kind": "slow", "seconds": 1, "times": 0}):
        with pytest.raises(ValueError):
            sim.configure(faults=[rule])


# --- late rows ---------------------------------------------------------------------------------------
def test_late_rows_appear_after_the_configured_number_of_requests_and_are_always_in_the_truth(sim):
    sim.configure(late_rows=[{"day": DAY, "feed": "pstn", "count": 7, "after_requests": 2}])
    truth = sim.truth("pstn", DAY, NEXT_DAY)
    assert len(truth) == 2507
    sim.configure(page_size=5000)  # one request per collection; does not restart the late-row clock
    counts = [get(pstn_url(sim)).json()["@odata.count"] for _ in range(4)]
    assert counts == [2500, 2500, 2507, 2507]
    assert get(pstn_url(sim)).json()["value"] == truth
    late_ids = {r["id"] for r in truth} - {r["id"] for r in GraphSimulator().truth("pstn", DAY, NEXT_DAY)}
    assert len(late_ids) == 7
    sim.reset()  # restarts the clock: hidden again
    assert get(pstn_url(sim)).json()["@odata.count"] == 2500


def test_late_rows_can_wait_for_seconds(sim):
    sim.configure(late_rows=[{"day": DAY, "feed": "directRouting", "count": 3, "after_seconds": 0.4}])
    assert get(dr_url(sim)).json()["@odata.count"] == 500
    time.sleep(0.45)
    assert get(dr_url(sim)).json()["@odata.count"] == 503
    assert len(sim.truth("directRouting", DAY, NEXT_DAY)) == 503


# --- rate limit --------------------------------------------------------------------------------------
def test_the_rate_limit_answers_429_with_retry_after_beyond_the_window(sim):
    sim.configure(rate_limit={"requests": 3, "per_seconds": 1})
    responses = [get(pstn_url(sim)) for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert int(responses[-1].headers["Retry-After"]) >= 1
    assert responses[-1].json()["error"]["code"] == "TooManyRequests"
    stats = sim.stats()
    assert stats["rate_limited"] == 1 and stats["faults_fired"] == 0 and stats["by_status"]["429"] == 1
    time.sleep(1.05)
    assert get(pstn_url(sim)).status_code == 200


# --- extra, made-up functions -----------------------------------------------------------------------
MADE_UP = {"getMadeUpCalls": {"rows": "directRouting", "to_inclusive": False, "row_type": "madeUpLogRow"}}


def test_an_extra_function_serves_its_datasets_rows_under_its_own_name_and_row_type():
    with GraphSimulator(seed=3, token="t", functions=MADE_UP,
                        rows_per_day={"pstn": 100, "directRouting": 1200}) as own:
        headers = {"Authorization": "Bearer t"}
        for version in ("v1.0", "beta"):
            rows, pages = collect(function_url(own, "getMadeUpCalls", version=version), headers)
            assert [p["@odata.count"] for p in pages] == [1000, 200]
            assert pages[0]["@odata.nextLink"] == (
                f"{own.url}/{version}/communications/callRecords/getMadeUpCalls"
                f"(fromDateTime={DAY},toDateTime={NEXT_DAY})?$skip=1000")
            assert "@odata.nextLink" not in pages[-1]
            assert all(p["@odata.context"] == f"{own.url}/{version}/$metadata"
                       "#Collection(microsoft.graph.callRecords.madeUpLogRow)" for p in pages)
            assert rows == own.truth("directRouting", DAY, NEXT_DAY, version)
            assert rows == collect(function_url(own, "getDirectRoutingCalls", version=version), headers)[0]
        # As for the real functions, the name is matched whatever its case; links spell it as declared.
        body = get(function_url(own, "GETMADEUPCALLS"), headers=headers).json()
        assert body["@odata.nextLink"].startswith(f"{own.url}/v1.0/communications/callRecords/getMadeUpCalls(")
        assert get(function_url(own, "getMadeUpCalls"), headers=AUTH).status_code == 401
        full_names = ["fromDateTime", "toDateTime"]  # the default
        assert own.config()["functions"] == {
            "getMadeUpCalls": {**MADE_UP["getMadeUpCalls"], "next_link_parameters": full_names}}


def test_an_extra_functions_to_inclusive_is_honoured_at_the_windows_end(sim):
    sim.configure(functions={
        "getInclusiveRoutingCalls": {"rows": "directRouting", "to_inclusive": True, "row_type": "madeUpLogRow"},
        "getExclusivePstnCalls": {"rows": "pstn", "to_inclusive": False, "row_type": "madeUpLogRow"},
    })
    for name, real, feed, inclusive in (
            ("getInclusiveRoutingCalls", "getDirectRoutingCalls", "directRouting", True),
            ("getExclusivePstnCalls", "getPstnCalls", "pstn", False)):
        truth = sim.truth(feed, DAY, NEXT_DAY)
        edge = truth[100]["startDateTime"]
        up_to_edge = [r for r in truth if r["startDateTime"] <= edge]
        before_edge = [r for r in truth if r["startDateTime"] < edge]
        extra = get(function_url(sim, name, DAY, edge)).json()["value"]
        assert extra == (up_to_edge if inclusive else before_edge), name
        assert get(function_url(sim, real, DAY, edge)).json()["value"] == (before_edge if inclusive else up_to_edge)
        at_edge = get(function_url(sim, name, edge, edge)).json()["value"]
        assert bool(at_edge) == inclusive


def test_an_extra_function_can_shorten_its_next_link_parameters_and_the_links_are_followed(sim):
    sim.configure(page_size=600, functions={"getShortCalls": {"rows": "pstn", "to_inclusive": True,
                                                              "row_type": "shortLogRow",
                                                              "next_link_parameters": ["from", "to"]}})
    rows, pages = collect(function_url(sim, "getShortCalls", version="beta"))
    base = f"{sim.url}/beta/communications/callRecords/getShortCalls(from={DAY},to={NEXT_DAY})"
    links = [f"{base}?$skip={n}" for n in (600, 1200, 1800, 2400)]
    assert [p.get("@odata.nextLink") for p in pages] == links + [None]
    assert rows == sim.truth("pstn", DAY, NEXT_DAY, "beta")


def test_an_extra_function_shares_its_datasets_faults_late_rows_and_rate_limit(sim):
    sim.configure(functions=MADE_UP,
                  faults=[{"kind": "status", "status": 503, "feed": "directRouting"},
                          {"kind": "status", "status": 500, "feed": "pstn"}],
                  late_rows=[{"day": DAY, "feed": "directRouting", "count": 4, "after_requests": 2}])
    statuses = [get(function_url(sim, "getMadeUpCalls")).status_code for _ in range(2)]
    assert statuses == [503, 200]  # the directRouting rule fires; the pstn one does not
    body = get(function_url(sim, "getMadeUpCalls")).json()
    assert body["@odata.count"] == 504 and body["value"] == sim.truth("directRouting", DAY, NEXT_DAY)
    sim.configure(rate_limit="1/60")
    assert get(function_url(sim, "getMadeUpCalls")).status_code == 200
    assert get(dr_url(sim)).status_code == 429  # one window for every function


def test_declaring_extra_functions_leaves_the_real_ones_exactly_as_they_were(sim):
    urls = [pstn_url(sim), pstn_url(sim) + "?$skip=2000", dr_url(sim, version="beta"),
            sim.url + "/v1.0/communications/callRecords/GetPstnCalls(from=2024-05-01,to=2024-05-02)"]
    before = [get(url).content for url in urls]
    prefixed = function_url(sim, "getPstnCallsV2")
    assert get(prefixed).status_code == 400  # read as getPstnCalls followed by junk
    sim.configure(functions={**MADE_UP, "getPstnCallsV2": {"rows": "directRouting", "to_inclusive": True,
                                                          "row_type": "madeUpLogRow"}})
    assert [get(url).content for url in urls] == before
    # The longer declared name wins over the real name it starts with.
    assert get(prefixed).json()["@odata.context"].endswith(".madeUpLogRow)")
    sim.reset()  # like every knob but the faults, the extras survive a reset
    assert get(function_url(sim, "getMadeUpCalls")).status_code == 200
    sim.configure(functions={})  # the knob replaces the extras: none are left
    assert get(function_url(sim, "getMadeUpCalls")).status_code == 404
    assert [get(url).content for url in urls] == before


def _declare(name="getMadeUpCalls", **fields):
    return {name: {**MADE_UP["getMadeUpCalls"], **fields}}


@pytest.mark.parametrize("functions, problem", [
    (["getMadeUpCalls"], "functions must be an object"),
    ({"getMadeUpCalls": "directRouting"}, "'getMadeUpCalls' must be declared as an object"),
    (_declare("get-made-up"), "'get-made-up' is not a plain identifier"),
    (_declare("1stCalls"), "'1stCalls' is not a plain identifier"),
    (_declare("getCallsé"), "is not a plain identifier"),
    (_declare(""), "'' is not a plain identifier"),
    (_declare("getPstnCalls"), "'getPstnCalls' is the real function getPstnCalls"),
    (_declare("getpstncalls"), "'getpstncalls' is the real function getPstnCalls"),
    (_declare("GETDIRECTROUTINGCALLS"), "is the real function getDirectRoutingCalls"),
    ({**_declare("getMadeUpCalls"), **_declare("getmadeupcalls")}, "differ only in case"),
    (_declare(rows="fax"), "'rows' must be a dataset, one of ['pstn', 'directRouting'], not 'fax'"),
    (_declare(to_inclusive="yes"), "'to_inclusive' must be true or false, not 'yes'"),
    (_declare(to_inclusive=1), "'to_inclusive' must be true or false, not 1"),
    (_declare(row_type="made up row"), "'row_type' must be a plain identifier"),
    (_declare(next_link_parameters=["start", "end"]), "'next_link_parameters' must be [from, to]"),
    (_declare(next_link_parameters="from,to"), "'next_link_parameters' must be [from, to]"),
    (_declare(to_inclsive=True), "unknown fields ['to_inclsive']"),
    ({"getMadeUpCalls": {"rows": "pstn", "to_inclusive": True}}, "'getMadeUpCalls' is missing ['row_type']"),
])
def test_bad_function_declarations_are_refused_naming_the_problem(sim, functions, problem):
    sim.configure(functions=MADE_UP)
    with pytest.raises(ValueError, match=re.escape(problem)):
        sim.configure(functions=functions)
    assert list(sim.config()["functions"]) == ["getMadeUpCalls"]  # a refused knob changes nothing
    with pytest.raises(ValueError, match=re.escape(problem)):
        GraphSimulator(functions=functions)


# --- control API -------------------------------------------------------------------------------------
def _control(sim, path, payload=None):
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(sim.url + path, data=data, method="GET" if data is None else "POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_the_control_api_works_from_a_plain_http_client(sim):
    config = _control(sim, "/_sim/config", {"page_size": 700, "faults": [{"kind": "status", "status": 504}]})
    assert config["page_size"] == 700 and config["faults"][0]["status"] == 504
    assert get(pstn_url(sim)).status_code == 504
    ok = get(pstn_url(sim))
    assert ok.json()["@odata.count"] == 700

    log = _control(sim, "/_sim/log")["value"]
    assert [e["status"] for e in log] == [504, 200] and log[1]["rows"] == 700
    assert log[1]["sha256"] == hashlib.sha256(ok.content).hexdigest()
    assert log[1]["path"].startswith("/v1.0/communications/callRecords/getPstnCalls(")
    stats = _control(sim, "/_sim/stats")
    assert stats["requests"] == 2 and stats["by_status"] == {"504": 1, "200": 1} and stats["faults_fired"] == 1

    truth = _control(sim, f"/_sim/truth?feed=pstn&from={DAY}T00:00:00Z&to={NEXT_DAY}&version=beta")["value"]
    assert truth == sim.truth("pstn", DAY, NEXT_DAY, "beta")
    offset = _control(sim, "/_sim/truth?feed=directRouting&from=2024-05-01T02:00:00%2B02:00&to=2024-05-02")
    assert offset["value"] == sim.truth("directRouting", DAY, NEXT_DAY)

    declared = _control(sim, "/_sim/config", {"functions": MADE_UP})["functions"]
    assert declared["getMadeUpCalls"]["row_type"] == "madeUpLogRow"
    assert _control(sim, "/_sim/config")["functions"] == declared
    made_up = get(function_url(sim, "getMadeUpCalls")).json()
    assert made_up["@odata.context"].endswith(".madeUpLogRow)")
    assert made_up["value"] == sim.truth("directRouting", DAY, NEXT_DAY)[:700]

    _control(sim, "/_sim/config", {"faults": [{"kind": "status", "status": 500}]})
    assert _control(sim, "/_sim/reset", {}) == {"reset": True}
    assert _control(sim, "/_sim/stats")["requests"] == 0
    assert _control(sim, "/_sim/config")["faults"] == [] and get(pstn_url(sim)).status_code == 200


def test_the_control_api_refuses_bad_input(sim):
    for path, payload in (("/_sim/config", {"page_size": 0}), ("/_sim/config", {"nope": 1}),
                          ("/_sim/truth?feed=fax&from=2024-05-01&to=2024-05-02", None),
                          ("/_sim/truth?feed=pstn&from=2024-05-01", None)):
        with pytest.raises(urllib.error.HTTPError) as caught:
            _control(sim, path, payload)
        assert caught.value.code == 400
    bad = requests.post(sim.url + "/_sim/config", json={"functions": _declare(rows="fax")}, timeout=10)
    assert bad.status_code == 400 and "'rows' must be a dataset" in bad.json()["error"]["message"]
    response = requests.post(sim.url + "/_sim/config", data=b"not json", timeout=10)
    assert response.status_code == 400
    assert requests.get(sim.url + "/_sim/unknown", timeout=10).status_code == 404


# --- lifecycle ---------------------------------------------------------------------------------------
def test_stop_cuts_kept_alive_connections_and_the_port_can_be_reused():
    simulator = GraphSimulator().start()
    with requests.Session() as session:
        url = pstn_url(simulator)
        assert session.get(url, headers=AUTH, timeout=10).status_code == 200
        simulator.stop()
        with pytest.raises(requests.ConnectionError):
            session.get(url, headers=AUTH, timeout=10)
        with GraphSimulator(port=simulator.port):
            assert session.get(url, headers=AUTH, timeout=10).status_code == 200


# --- CLI ---------------------------------------------------------------------------------------------
def test_the_cli_prints_its_address_serves_and_stops_on_sigterm():
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack.graphsim", "--port", "0", "--seed", "3", "--rows-per-day", "10",
         "--token", "cli-token", "--rate-limit", "100/60"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        match = re.fullmatch(r"graphsim listening on (http://127\.0\.0\.1:\d+)\n", line)
        assert match, line
        url = f"{match[1]}/beta/communications/callRecords/getPstnCalls(fromDateTime={DAY},toDateTime={NEXT_DAY})"
        assert requests.get(url, headers={"Authorization": "Bearer cli-token"}, timeout=10).json()["@odata.count"] == 10
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
