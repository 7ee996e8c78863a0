"""The query API over real HTTP: the OData feed read by independent clients, paging, pushdown, errors, CSV."""
from __future__ import annotations

import base64
import csv
import datetime as dt
import gzip
import io
import json
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from devstack.graphsim.server import GraphSimulator
from devstack.localhost import FunctionIndex
from shared.collect.run import run_days
from shared.config.feeds import FEEDS
from shared.odata import evaluate, parse_filter

from .collecting import TOKEN, fresh_settings, served_app, sort_key, stored_documents, stored_rows, strip_document
from .paging_tokens import (assert_no_credential_in_links, byte_changed, forge, payload_of, re_encodings,
                            token_in)

WEEK = [dt.date(2026, 4, 6) + dt.timedelta(days=i) for i in range(7)]
SETS = ("PstnCalls", "DirectRoutingCalls", "DailyUsage")
SMALL_DAYS = [dt.date(2026, 4, 7), dt.date(2026, 4, 8)]   # the days of the small data set (`small`, at the end)


@pytest.fixture(scope="module")
def world(stack):
    """A 2,500-row PSTN week collected into a fresh database, and the app served on a free port."""
    with GraphSimulator(seed=5, token=TOKEN, rows_per_day={"pstn": 357, "directRouting": 40},
                        rows_per_day_overrides={WEEK[3].isoformat(): {"pstn": 358, "directRouting": 40}}) as sim:
        settings = fresh_settings(stack, sim.url)
        report = run_days(settings, [FEEDS["pstn"], FEEDS["directRouting"]], WEEK[0], WEEK[-1])
        assert not report.failed
        with served_app(settings, sim) as served:
            yield served


@pytest.fixture(scope="module")
def store(world):
    rows = {d["id"]: strip_document(d) for d in stored_rows(world["settings"], "pstn")}
    assert len(rows) == 2500
    return rows


def odata(world, path="PstnCalls", params=None, headers=None):
    return requests.get(f"{world['api']}/odata/{path}", params=params, headers=headers, timeout=30)


def follow(world, first_url, headers=None):
    rows, pages, url = [], 0, first_url
    while url:
        response = requests.get(url, headers=headers, timeout=30)
        assert response.status_code == 200, response.text
        body = response.json()
        rows += body["value"]
        pages += 1
        url = body.get("@odata.nextLink")
    return rows, pages


def by_start(rows):
    return sorted(rows, key=lambda r: (r["startDateTime"], r["id"]))


def declared(row: dict, entity="PstnCalls") -> dict:
    from shared.odata import entity_sets
    out = {}
    row = {**row, "day": row["startDateTime"][:10]}  # the partition day, exposed as a property
    for prop in entity_sets()[entity].entity_type.properties:
        value = row.get(prop.name)
        out[prop.name] = ([] if prop.collection else None) if value is None else value
    return out


# --- the feed, read by independent OData clients --------------------------------------------------------------
def test_python_odata_reads_metadata_pages_the_week_and_filters(world, store):
    from odata import ODataService

    session = requests.Session()
    service = ODataService(f"{world['api']}/odata/", reflect_entities=True, session=session, quiet_progress=True)
    PstnCall = service.entities["PstnCalls"]
    everything = list(service.query(PstnCall))
    assert len(everything) == 2500
    assert {e.id for e in everything} == set(store)

    some = next(iter(store.values()))
    user, day = some["userPrincipalName"], dt.datetime.combine(WEEK[2], dt.time(), dt.timezone.utc)
    q = service.query(PstnCall).filter(PstnCall.userPrincipalName == user) \
        .filter(PstnCall.startDateTime >= day).filter(PstnCall.startDateTime < day + dt.timedelta(days=2))
    got = {e.id for e in q}
    want = {r["id"] for r in store.values() if r["userPrincipalName"] == user
            and f"{WEEK[2]}" <= r["startDateTime"][:10] <= f"{WEEK[3]}"}
    assert got == want and want


def test_odatapy_reads_the_same_rows_with_typed_values(world, store):
    from odatapy import client as odatapy

    client = odatapy.EdmEnabledODataClient(f"{world['api']}/odata/", odatapy.HttpxTransport())
    client.get_edm()
    since = dt.datetime(2026, 4, 11, tzinfo=dt.timezone.utc)
    uri = client.entity_set_uri("PstnCalls").filter(
        odatapy.and_(odatapy.Field("startDateTime").ge(since), odatapy.Field("callType").eq("user_out")))
    rows = list(client.iter_entities(uri))
    want = [r for r in by_start(store.values()) if r["startDateTime"][:10] >= "2026-04-11"
            and r["callType"] == "user_out"]
    assert [r.get_value("id") for r in rows] == [r["id"] for r in want] and want
    assert isinstance(rows[0].get_value("startDateTime"), dt.datetime)


def test_incremental_refresh_range_returns_exactly_its_rows_from_its_days_only(world, store):
    lo, hi = "2026-04-08T00:00:00Z", "2026-04-10T00:00:00Z"
    response = odata(world, params={"$filter": f"startDateTime ge {lo} and startDateTime lt {hi}"})
    assert response.status_code == 200
    assert response.headers["X-Partitions-Read"] == "2"  # the 8th and the 9th, nothing else
    rows, _ = follow(world, response.url)
    want = [declared(r) for r in by_start(store.values()) if "2026-04-08" <= r["startDateTime"][:10] < "2026-04-10"]
    assert rows == want


@pytest.mark.parametrize("text", ["startDateTime lt 0001-01-01T00:00:00Z", "startDateTime lt 0001-01-01",
                                  "startDateTime lt 0001-01-01T00:00:00Z and duration ge 0"])
def test_a_range_ending_at_the_first_instant_there_is_is_empty(world, text):
    """A range that ends at the first instant there is (0001-01-01) selects nothing and says so, 200 with no
    rows and a count of 0: the day before it, where the partition range would start, does not exist and must
    not be computed."""
    response = odata(world, "PstnCalls", {"$filter": text, "$count": "true"})
    assert response.status_code == 200 and response.json()["value"] == [], response.text
    assert response.json()["@odata.count"] == 0
    assert odata(world, "PstnCalls/$count", {"$filter": text}).text == "0"


@pytest.mark.parametrize("page_size, days", [(1, ("2026-04-07", "2026-04-08")), (7, ("2026-04-07", "2026-04-09")),
                                             (1000, None)])
def test_pages_concatenated_equal_one_unpaged_query(world, store, page_size, days):
    params = {"$filter": f"startDateTime ge {days[0]}T00:00:00Z and startDateTime lt {days[1]}T00:00:00Z"} \
        if days else {}
    first = requests.Request("GET", f"{world['api']}/odata/PstnCalls", params=params).prepare().url
    rows, pages = follow(world, first, headers={"Prefer": f"odata.maxpagesize={page_size}"})
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids))
    want = [r for r in by_start(store.values()) if not days or days[0] <= r["startDateTime"][:10] < days[1]]
    assert rows == [declared(r) for r in want]
    assert pages == max(1, -(-len(want) // page_size))  # one look-ahead row: no trailing empty page


def test_orderby_descending_top_skip_select_and_counts(world, store):
    ordered = by_start(store.values())
    r = odata(world, params={"$orderby": "startDateTime desc", "$top": "5", "$skip": "2",
                             "$select": "id,startDateTime", "$count": "true"})
    body = r.json()
    assert body["@odata.count"] == 2500
    assert body["value"] == [{"id": x["id"], "startDateTime": x["startDateTime"]} for x in ordered[::-1][2:7]]
    assert "@odata.nextLink" not in body and body["@odata.context"].endswith("#PstnCalls(id,startDateTime)")
    top, pages = follow(world, f"{world['api']}/odata/PstnCalls?$top=25", headers={"Prefer": "odata.maxpagesize=10"})
    assert [x["id"] for x in top] == [x["id"] for x in ordered[:25]] and pages == 3
    count = odata(world, "PstnCalls/$count", params={"$filter": "callType eq 'user_in'"})
    assert count.headers["Content-Type"].startswith("text/plain")
    assert int(count.text) == sum(1 for x in store.values() if x["callType"] == "user_in")


def test_service_document_and_metadata(world):
    doc = odata(world, "").json()
    assert [s["name"] for s in doc["value"]] == list(SETS)
    meta = odata(world, "$metadata")
    assert meta.status_code == 200 and b"<edmx:Edmx" in meta.content and b'Name="PstnCall"' in meta.content


def test_responses_are_gzip_compressed_when_accepted(world):
    raw = requests.get(f"{world['api']}/odata/PstnCalls", headers={"Accept-Encoding": "gzip"}, stream=True)
    assert raw.headers["Content-Encoding"] == "gzip"
    compressed = raw.raw.read()
    plain = requests.get(f"{world['api']}/odata/PstnCalls", headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers
    assert gzip.decompress(compressed) == plain.content and len(compressed) * 3 < len(plain.content)


def test_daily_usage_entity_set_equals_the_summaries(world):
    rows, _ = follow(world, f"{world['api']}/odata/DailyUsage?$filter=day ge 2026-04-06 and day le 2026-04-12")
    assert sum(r["calls"] for r in rows if r["feed"] == "pstn") == 2500
    assert sum(r["calls"] for r in rows if r["feed"] == "directRouting") == 7 * 40


# --- hostile and malformed input --------------------------------------------------------------------------------
BAD = [
    ("PstnCalls", {"$filter": "startDateTime ge"}),
    ("PstnCalls", {"$filter": "nosuchField eq 'x'"}),
    ("PstnCalls", {"$filter": "userId eq 'x' or 1 eq 1; DROP TABLE c"}),
    ("PstnCalls", {"$filter": "userId eq ''); SELECT * FROM c --'"}),
    ("PstnCalls", {"$filter": "userId eq 'unterminated"}),
    ("PstnCalls", {"$filter": "((userId eq 'x')"}),
    ("PstnCalls", {"$filter": "duration eq 'ten'"}),
    ("PstnCalls", {"$filter": "startDateTime ge 2026-13-45T00:00:00Z"}),
    ("PstnCalls", {"$filter": "startDateTime ge 'yesterday'"}),
    ("PstnCalls", {"$filter": "duration gt 99999999999999999999999999999"}),
    ("PstnCalls", {"$filter": "(" * 300 + "id eq 'x'" + ")" * 300}),
    ("PstnCalls", {"$filter": "administrativeUnitInfos eq 'x'"}),
    ("PstnCalls", {"$filter": "year(startDateTime) eq 2026"}),
    ("PstnCalls", {"$filter": "c.id eq 'x'"}),
    ("PstnCalls", {"$top": "1000000000000000000000000000000"}),
    ("PstnCalls", {"$top": "-1"}),
    ("PstnCalls", {"$skip": "many"}),
    ("PstnCalls", {"$select": "id,password"}),
    ("PstnCalls", {"$orderby": "charge desc"}),
    ("PstnCalls", {"$orderby": "startDateTime sideways"}),
    ("PstnCalls", {"$expand": "user"}),
    ("PstnCalls", {"$count": "maybe"}),
    ("PstnCalls", {"$skiptoken": "not-a-token"}),
    ("PstnCalls", {"$skiptoken": "eyJ2IjoxfQ"}),
    ("PstnCalls", {"$format": "xml"}),
    ("PstnCalls", {"$bogus": "1"}),
    ("Nope", {}),
    ("PstnCalls('abc')", {}),
    ("PstnCalls/extra/path", {}),
    ("DailyUsage", {"$filter": "day ge 2026-04-06T00:00:00Z"}),
]


@pytest.mark.parametrize("path, params", BAD)
def test_malformed_or_hostile_requests_answer_4xx_or_501_with_an_error_body(world, path, params):
    r = odata(world, path, params)
    assert 400 <= r.status_code < 500 or r.status_code == 501, (r.status_code, r.text)
    error = r.json()["error"]
    assert error["code"] and error["message"] and "Traceback" not in r.text


def test_a_skiptoken_from_another_query_is_refused(world):
    page = odata(world, params={"$filter": "callType eq 'user_in'"}, headers={"Prefer": "odata.maxpagesize=5"}).json()
    token = parse_qs(urlsplit(page["@odata.nextLink"]).query)["$skiptoken"][0]
    r = odata(world, params={"$filter": "callType eq 'user_out'", "$skiptoken": token})
    assert r.status_code == 400 and "different query" in r.json()["error"]["message"]


# --- the simple routes ------------------------------------------------------------------------------------------
def test_calls_route_json_and_csv_agree_with_the_store(world, store):
    user = next(iter(store.values()))["userPrincipalName"]
    params = {"from": "2026-04-07", "to": "2026-04-08", "user": user}
    as_json = requests.get(f"{world['api']}/calls", params=params).json()
    want = [r for r in by_start(store.values())
            if r["userPrincipalName"] == user and "2026-04-07" <= r["startDateTime"][:10] <= "2026-04-08"]
    assert [r["id"] for r in as_json["value"]] == [r["id"] for r in want] and want
    assert as_json["value"][0] == {**want[0], "day": want[0]["startDateTime"][:10]}

    response = requests.get(f"{world['api']}/calls", params={**params, "format": "csv"})
    assert response.headers["Content-Type"].startswith("text/csv") and response.content.count(b"\r\n") == len(want) + 1
    table = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["id"] for r in table] == [r["id"] for r in want]
    assert table[0]["duration"] == str(want[0]["duration"])


def test_calls_csv_is_spreadsheet_safe_by_default_and_raw_on_request(world, store):
    """A phone number opens as the text Graph sent (a leading quote keeps a spreadsheet from reading `+1...` as
    a number or formula); csv=raw gives programs the values unchanged."""
    params = {"from": "2026-04-07", "to": "2026-04-07", "format": "csv", "limit": "50"}
    safe = list(csv.DictReader(io.StringIO(requests.get(f"{world['api']}/calls", params=params).text)))
    raw = list(csv.DictReader(io.StringIO(requests.get(f"{world['api']}/calls", params={**params, "csv": "raw"}).text)))
    assert [r["id"] for r in safe] == [r["id"] for r in raw] and raw
    numbers = [(s["callerNumber"], r["callerNumber"], store[r["id"]]["callerNumber"]) for s, r in zip(safe, raw)
               if (store[r["id"]]["callerNumber"] or "").startswith("+")]
    assert numbers and all(s == "'" + stored and r == stored for s, r, stored in numbers)
    bad = requests.get(f"{world['api']}/calls", params={**params, "csv": "excel"})
    assert bad.status_code == 400 and bad.json()["error"]["target"] == "csv"


def test_calls_route_pages_with_a_link_header(world, store):
    params = {"from": "2026-04-06", "to": "2026-04-12", "limit": "1000", "callType": "user_in,user_out"}
    ids, url = [], f"{world['api']}/calls"
    while url:
        r = requests.get(url, params=params if url.endswith("/calls") else None)
        ids += [x["id"] for x in r.json()["value"]]
        url = r.json().get("nextLink")
        assert (url is None) == ("Link" not in r.headers)
    want = [r["id"] for r in by_start(store.values()) if r["callType"] in ("user_in", "user_out")]
    assert ids == want


def test_usage_route_as_csv(world):
    r = requests.get(f"{world['api']}/usage", params={"from": "2026-04-06", "to": "2026-04-12", "format": "csv",
                                                      "feed": "pstn"})
    table = list(csv.DictReader(io.StringIO(r.text)))
    assert sum(int(row["calls"]) for row in table) == 2500


@pytest.mark.parametrize("route, params", [
    ("calls", {}), ("calls", {"from": "someday"}), ("calls", {"from": "2026-04-06", "to": "2026-04-01"}),
    ("calls", {"from": "2026-04-06T00:00:00"}), ("calls", {"from": "2020-01-01", "to": "2026-01-01"}),
    ("calls", {"from": "2026-04-06", "feed": "sms"}), ("calls", {"from": "2026-04-06", "format": "xlsx"}),
    ("calls", {"from": "2026-04-06", "limit": "0"}), ("calls", {"from": "2026-04-06", "after": "garbage"}),
    ("calls", {"from": "2026-04-06", "color": "blue"}), ("usage", {"from": "2026-04-06", "limit": "9" * 30}),
])
def test_simple_routes_refuse_bad_parameters_by_name(world, route, params):
    r = requests.get(f"{world['api']}/{route}", params=params)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"]


@pytest.mark.parametrize("route, params", [
    ("calls", {"from": "0001-01-01T00:00:00+01:00"}),
    ("calls", {"from": "9999-12-30", "to": "9999-12-31"}),
    ("calls", {"from": "2026-01-01", "to": "9999-12-31T23:59:59-01:00"}),
    ("usage", {"from": "0001-01-01T00:30:00+14:00"}),
    ("usage", {"from": "9999-12-31", "to": "9999-12-31"}),
])
def test_instants_out_of_range_answer_400(world, route, params):
    """A bound outside years 0001 to 9999 once moved to UTC (0001-01-01T00:00:00+01:00), or a date-only `to` of
    9999-12-31 (whose day after, where the range ends, does not exist), is refused with 400 naming the range,
    not answered with a server error."""
    response = requests.get(f"{world['api']}/{route}", params=params, timeout=60)
    assert response.status_code == 400 and "out of range" in response.json()["error"]["message"], response.text


def test_usage_from_inside_the_last_day_there_is_answers_no_rows(world):
    """No UTC day starts between 9999-12-31T10:00Z and 23:00Z, so /api/usage answers 200 with no rows; the day
    after 9999-12-31 does not exist and is never computed."""
    response = requests.get(f"{world['api']}/usage", timeout=60,
                            params={"from": "9999-12-31T10:00:00Z", "to": "9999-12-31T23:00:00Z"})
    assert response.status_code == 200 and response.json() == {"count": 0, "value": []}, response.text


def test_every_route_declares_its_auth_level(world):
    """Reads need a function key, operator actions the admin key; only the health probe is anonymous."""
    from function_app import app

    levels = {r.name: r.auth_level for r in FunctionIndex.of(app).routes}
    assert levels == {"health": "anonymous", "odata": "function", "calls": "function", "usage": "function",
                      "status": "function", "dashboard": "function", "ops_collect": "admin", "ops_replay": "admin"}


# --- hardening: links, integer parameters, paging tokens, bounded work ---------------------------------------------
KEY = "s3cr3t-function-key"  # what a client sends as `code`; keys are not required here, so any value passes


@pytest.mark.parametrize("route, params", [
    ("calls", {"from": "2026-04-06", "to": "2026-04-07", "limit": "5"}),
    ("calls", {"from": "2026-04-06", "to": "2026-04-07", "limit": "5", "format": "csv"}),
    ("usage", {"from": "2026-04-06", "to": "2026-04-07", "limit": "3"}),
    ("usage", {"from": "2026-04-06", "to": "2026-04-07", "limit": "3", "format": "csv"}),
])
def test_calls_and_usage_links_never_carry_the_function_key(world, route, params):
    """The Functions key a client sends as `code` stays out of nextLink and the Link header (which land in saved
    JSON, CSV tooling, proxies and logs); following the links without the key reads the next pages."""
    response = requests.get(f"{world['api']}/{route}", params={**params, "code": KEY}, timeout=60)
    assert response.status_code == 200, response.text
    assert_no_credential_in_links(response, [KEY])
    link = response.headers["Link"]
    assert "code" not in parse_qs(urlsplit(link[1:link.index(">")]).query)
    if params.get("format") != "csv":
        assert KEY not in response.json()["nextLink"]
    second = requests.get(link[1:link.index(">")], timeout=60)
    assert second.status_code == 200, second.text
    assert_no_credential_in_links(second, [KEY])


def test_odata_links_carry_the_query_options_only(world):
    """@odata.nextLink keeps the query's own options (names as the client wrote them) and the token; the key and
    any other parameter the feed does not read (an access token a proxy added, a SAS signature) are dropped."""
    params = {"$filter": "callType eq 'user_in'", "$SELECT": "id,startDateTime", "$top": "7", "$skip": "2",
              "code": KEY, "access_token": KEY, "sig": KEY, "foo": "bar"}
    response = odata(world, params=params, headers={"Prefer": "odata.maxpagesize=3"})
    assert response.status_code == 200, response.text
    assert_no_credential_in_links(response, [KEY])
    link = response.json()["@odata.nextLink"]
    assert set(parse_qs(urlsplit(link).query)) == {"$filter", "$SELECT", "$top", "$skiptoken"}, link
    assert KEY not in response.json()["@odata.context"]
    rows, _ = follow(world, link, headers={"Prefer": "odata.maxpagesize=3"})
    assert len(response.json()["value"]) + len(rows) == 7


@pytest.mark.parametrize("text", ["\u00b2", "\u0663", "\uff15", "1\u0660", "\u2167", "\u00bd", "\U0001d7d9"])
@pytest.mark.parametrize("route, name, params", [
    ("calls", "limit", {"from": "2026-04-06"}), ("usage", "limit", {"from": "2026-04-06"}),
    ("usage", "limit", {"from": "9999-12-31T10:00:00Z", "to": "9999-12-31T23:00:00Z"}),
    ("odata/PstnCalls", "$top", {}), ("odata/PstnCalls", "$skip", {}), ("odata/DailyUsage", "$TOP", {})])
def test_unicode_digits_in_integer_parameters_answer_400_naming_them(world, text, route, name, params):
    """'²'.isdigit() is true and int('²') fails; int('٣') is 3. Integer parameters take ASCII digits only: any
    other digit answers 400 naming the parameter, never 500, never read as another number."""
    response = requests.get(f"{world['api']}/{route}", params={**params, name: text}, timeout=60)
    assert response.status_code == 400, (response.status_code, response.text)
    assert response.json()["error"]["target"].lower() == name.lower(), response.text


@pytest.mark.parametrize("text", ["duration eq \u00b2", "duration eq \u0663", "duration eq 1\u0663",
                                  "startDateTime ge \u0662\u0660\u0662\u0666-04-07",
                                  "duration lt \uff15", "duration eq 3\u00b2"])
def test_unicode_digits_in_filter_literals_answer_400(world, text):
    """`duration eq ٣` was served as `duration eq 3`; every number, date and time in $filter is ASCII digits."""
    response = odata(world, params={"$filter": text})
    assert response.status_code == 400, (response.status_code, response.text[:300])
    assert response.json()["error"]["target"] == "$filter"


def test_prefer_maxpagesize_in_other_digits_is_ignored():
    """An invalid preference is ignored (RFC 7240): 'odata.maxpagesize=٣' is not a page size of 3. (A unit
    test: HTTP clients send header values as Latin-1, which cannot spell '٣'.)"""
    from shared.odata import page_size_from_prefer

    assert page_size_from_prefer("odata.maxpagesize=\u0663", 5000) == (5000, None)
    assert page_size_from_prefer("odata.maxpagesize=\u00b2", 5000) == (5000, None)
    assert page_size_from_prefer("odata.maxpagesize=3", 5000) == (3, "odata.maxpagesize=3")


def first_token(world, path, params, name, headers=None):
    if path.startswith("odata/"):
        response = odata(world, path[len("odata/"):], params, headers)
        link = response.json()["@odata.nextLink"]
    else:
        response = requests.get(f"{world['api']}/{path}", params=params, timeout=60)
        link = response.json()["nextLink"]
    assert response.status_code == 200, response.text
    return token_in(link, name)


def test_a_skiptoken_with_a_changed_row_count_is_refused(world):
    """The forgery of the issue: a $top=3 token whose remaining-rows count is set to 50 returned 50 rows. A
    token is signed: changing any field answers 400."""
    headers = {"Prefer": "odata.maxpagesize=1"}
    token = first_token(world, "odata/PstnCalls", {"$top": "3"}, "$skiptoken", headers)
    assert payload_of(token)["r"] == 2
    for forged in (forge(token, r=50), forge(token, i="0"), forge(token, d="2026-04-10"), forge(token, v=1)):
        response = odata(world, params={"$top": "3", "$skiptoken": forged}, headers=headers)
        assert response.status_code == 400, f"{payload_of(forged)} answered {response.status_code}"
        assert response.json()["error"] == {"code": "InvalidSkipToken", "target": "$skiptoken", "message":
                                            "the paging token is malformed; start again from the first page"}
    assert odata(world, params={"$top": "3", "$skiptoken": token}, headers=headers).status_code == 200


@pytest.mark.parametrize("path, params, name", [
    ("odata/PstnCalls", {"$filter": "duration ge 0"}, "$skiptoken"),
    ("calls", {"from": "2026-04-06", "to": "2026-04-07", "limit": "5"}, "after"),
    ("usage", {"from": "2026-04-06", "to": "2026-04-07", "limit": "3"}, "after")])
def test_changed_cut_or_re_encoded_tokens_are_refused(world, path, params, name):
    """Only the token the service wrote is accepted: a byte changed, the token cut short, the same bytes
    spelled otherwise (padding, the other base64 alphabet, characters decoders skip), or an unsigned token
    made the way tokens were made before (which also means tokens issued before signing are refused)."""
    headers = {"Prefer": "odata.maxpagesize=2"}
    token = first_token(world, path, params, name, headers)
    fields = payload_of(token)
    unsigned = base64.urlsafe_b64encode(json.dumps({**fields, "v": 1}, separators=(",", ":")).encode()).decode()
    variants = [byte_changed(token, i, 0x01) for i in (0, 5, 17, -1)] + [token[:-1], token[:len(token) // 2]]
    variants += re_encodings(token) + [unsigned.rstrip("="), forge(token, r=10**6)]
    code = "InvalidSkipToken" if name == "$skiptoken" else "InvalidToken"
    for variant in variants:
        query = {**params, name: variant}
        response = (odata(world, path[len("odata/"):], query, headers) if path.startswith("odata/")
                    else requests.get(f"{world['api']}/{path}", params=query, timeout=60))
        assert response.status_code == 400, f"{variant!r} answered {response.status_code}"
        assert response.json()["error"]["code"] == code and response.json()["error"]["target"] == name


def test_next_links_of_a_range_ending_now_read_the_same_query(world, store):
    """Without `to` the range ends now; the nextLink pins that end, so its token belongs to the query it resumes
    (a `to` recomputed on each page made every second page a 400) and the pages add up to the range."""
    for route, total in (("calls", 2500), ("usage", None)):
        url, params, rows = f"{world['api']}/{route}", {"from": "2026-04-06", "limit": "400", "feed": "pstn"}, []
        while url:
            r = requests.get(url, params=params, timeout=60)
            assert r.status_code == 200, r.text
            rows += r.json()["value"]
            url, params = r.json().get("nextLink"), None
        if total:
            assert len(rows) == total and len({row["id"] for row in rows}) == total
        else:
            assert sum(row["calls"] for row in rows) == 2500


def test_a_calls_token_from_another_query_is_refused(world):
    token = first_token(world, "calls", {"from": "2026-04-06", "to": "2026-04-07", "limit": "5"}, "after")
    r = requests.get(f"{world['api']}/calls", timeout=60,
                     params={"from": "2026-04-06", "to": "2026-04-07", "limit": "6", "after": token})
    assert r.status_code == 400 and "different query" in r.json()["error"]["message"], r.text


def test_skip_is_bounded_and_says_to_follow_next_links(world):
    """$skip reads and discards the skipped rows in the worker: above MAX_SKIP it is refused with 400 naming
    $skip and the way to read further (nextLinks); at the maximum it is served."""
    MAX_SKIP = 10_000  # the documented maximum (README, Routes)
    for text in (str(MAX_SKIP + 1), "2147483647"):
        response = odata(world, params={"$skip": text})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["target"] == "$skip" and str(MAX_SKIP) in error["message"] and "nextLink" in error["message"]
    response = odata(world, params={"$skip": str(MAX_SKIP), "$count": "true"})
    assert response.status_code == 200 and response.json()["value"] == [] and response.json()["@odata.count"] == 2500


def test_limit_and_top_are_bounded(world):
    from shared.api.calls import MAX_ROWS

    r = requests.get(f"{world['api']}/calls", params={"from": "2026-04-06", "limit": str(MAX_ROWS + 1)}, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["target"] == "limit"
    # $top bounds the rows of the whole query, not of one request: each request reads at most a page.
    r = odata(world, params={"$top": "2147483647"}, headers={"Prefer": "odata.maxpagesize=7"})
    assert r.status_code == 200 and len(r.json()["value"]) == 7
    assert odata(world, params={"$top": "2147483648"}).status_code == 400


def test_the_paging_key_is_one_document_shared_by_every_instance(world):
    """The key that signs tokens is made once, kept in the runs container in a partition no feed has, and read
    back by any other instance (here: the same process with its cache emptied), so a token one instance wrote
    is accepted by another. An instance that loses the race to create it reads the winner's."""
    from shared.stores import keys, open_stores
    from shared.stores.clients import cosmos_client

    settings = world["settings"]
    token = first_token(world, "calls", {"from": "2026-04-06", "to": "2026-04-07", "limit": "5"}, "after")
    runs = cosmos_client(settings).get_database_client(settings.cosmos_database) \
        .get_container_client(settings.cosmos_runs_container)
    stored = list(runs.query_items("SELECT * FROM c WHERE c.id = @id", enable_cross_partition_query=True,
                                   parameters=[{"name": "@id", "value": keys.PAGING_KEY_ID}]))
    assert len(stored) == 1 and stored[0]["pk"] == keys.PAGING_KEY_PK and stored[0]["pk"] not in FEEDS
    first = open_stores(settings).paging_key

    class LosesTheRace:
        """The runs container as an instance sees it that read before another instance created the key."""
        def __init__(self, container):
            self.container, self.missed = container, False

        def read_item(self, *args, **kwargs):
            if not self.missed:
                self.missed = True
                from azure.cosmos.exceptions import CosmosResourceNotFoundError
                raise CosmosResourceNotFoundError(message="not yet")
            return self.container.read_item(*args, **kwargs)

        def create_item(self, body):
            return self.container.create_item(body)

    saved = dict(keys._cache)
    keys._cache.clear()
    try:
        assert keys.paging_key(LosesTheRace(runs), ("race",)) == first
        assert open_stores(settings).paging_key == first
    finally:
        keys._cache.clear()
        keys._cache.update(saved)
    r = requests.get(f"{world['api']}/calls", timeout=60,
                     params={"from": "2026-04-06", "to": "2026-04-07", "limit": "5", "after": token})
    assert r.status_code == 200, r.text


# --- privacy -------------------------------------------------------------------------------------------------------
def test_privacy_mask_hides_numbers_everywhere_the_query_routes_answer(world, store, monkeypatch):
    monkeypatch.setenv("PRIVACY_MASK", "true")
    first = by_start(store.values())[0]
    row = odata(world, params={"$top": "1"}).json()["value"][0]
    for name in ("callerNumber", "calleeNumber"):
        real = first[name]
        assert row[name] != real and row[name][-4:] == real[-4:] and row[name].count("*") == sum(
            c.isdigit() for c in real) - 4
    as_csv = requests.get(f"{world['api']}/calls", params={"from": "2026-04-06", "to": "2026-04-06",
                                                           "format": "csv"}).text
    as_json = requests.get(f"{world['api']}/calls", params={"from": "2026-04-06", "to": "2026-04-06"}).text
    numbers = {r[n] for r in store.values() for n in ("callerNumber", "calleeNumber") if r[n]}
    assert not [n for n in numbers if n in as_csv or n in as_json]
    refused = odata(world, params={"$filter": "startswith(callerNumber, '+1')"})
    assert refused.status_code == 400 and "PRIVACY_MASK" in refused.json()["error"]["message"]

    monkeypatch.setenv("PRIVACY_MASK", "false")
    assert odata(world, params={"$top": "1"}).json()["value"][0]["callerNumber"] == first["callerNumber"]


def test_mask_row_hides_client_addresses_and_keeps_nulls():
    from shared.api.privacy import mask_row

    row = {"callerNumber": "+4930123456", "calleeNumber": None, "clientPublicIpV4Address": "99.76.33.16",
           "clientLocalIpV6Address": "2600:1700:1dca:8110::40", "clientLocalIpV4Address": None, "duration": 5}
    masked = mask_row(row)
    assert masked == {"callerNumber": "+******3456", "calleeNumber": None, "clientPublicIpV4Address": "***",
                      "clientLocalIpV6Address": "***", "clientLocalIpV4Address": None, "duration": 5}
    assert row["callerNumber"] == "+4930123456"  # the stored row is not touched


# The last test of `world`: it adds rows to the module's week, which the tests above count.
def test_paging_resumes_exactly_while_ingestion_writes(world, store):
    settings, sim = world["settings"], world["sim"]
    filter_ = "startDateTime ge 2026-04-06T00:00:00Z and startDateTime lt 2026-04-07T00:00:00Z"
    headers = {"Prefer": "odata.maxpagesize=100"}
    first = odata(world, params={"$filter": filter_}, headers=headers).json()
    # Late rows land in the middle of the day while a client is between pages.
    sim.configure(late_rows=[{"day": "2026-04-06", "feed": "pstn", "count": 30, "after_requests": 0}])
    run_days(settings, [FEEDS["pstn"]], WEEK[0], WEEK[0])
    rest, _ = follow(world, first["@odata.nextLink"], headers=headers)
    rows = first["value"] + rest
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids))  # nothing twice
    before = {r["id"] for r in store.values() if r["startDateTime"][:10] == "2026-04-06"}
    assert before <= set(ids)  # nothing that existed was skipped
    assert [r["startDateTime"] for r in rows] == sorted(r["startDateTime"] for r in rows)
    sim.configure(late_rows=[])


# --- a small data set: two days of both feeds, compared document by document ------------------------------------
# Last in the module: serving this database points the app (which reads os.environ on each request) away from
# the week, so no test of `world` may run after `small` is set up.
@pytest.fixture(scope="module")
def small(stack):
    """Two days of both feeds (84 calls) collected into a fresh database, small enough that one page holds an
    entity set; the app served on a free port, and the stored documents behind each entity set."""
    with GraphSimulator(seed=8, token=TOKEN, rows_per_day={"pstn": 30, "directRouting": 12}) as sim:
        settings = fresh_settings(stack, sim.url)
        report = run_days(settings, [FEEDS["pstn"], FEEDS["directRouting"]], SMALL_DAYS[0], SMALL_DAYS[-1])
        assert not report.failed
        docs = stored_documents(settings)
        assert all(docs.values()), {k: len(v) for k, v in docs.items()}
        with served_app(settings, sim) as served:
            yield {**served, "docs": docs}


def fetch_all(served, set_name: str, params: dict, page_size: int) -> tuple[list[dict], int]:
    """Every row of the query in pages of page_size, following @odata.nextLink, and the number of pages."""
    first = requests.Request("GET", f"{served['api']}/odata/{set_name}", params=params).prepare().url
    return follow(served, first, headers={"Prefer": f"odata.maxpagesize={page_size}"})


@pytest.mark.parametrize("path, text", [
    ("PstnCalls", "startDateTime ge 0001-01-01T00:00:00Z"),
    ("PstnCalls", "startDateTime le 9999-12-31T23:59:59Z"),
    ("PstnCalls/$count", "startDateTime gt 1900-01-01 and startDateTime lt 9999-12-31"),
    ("DirectRoutingCalls", "startDateTime in (0001-01-01T00:00:00Z, 9999-12-31T00:00:00Z) or duration ge 0"),
    ("DailyUsage", "day le 9999-12-31"),
    ("DailyUsage/$count", "day ge 0001-01-01"),
])
def test_a_bound_centuries_from_the_data_reads_only_the_stored_days(small, path, text):
    """A time bound centuries away from the data (0001, 9999) reads only the day partitions that hold rows, and
    quickly: the read walks from one stored day to the next, where one partition query per day of the range
    (3.6 million from 0001 to 9999) would keep the request from ever ending."""
    set_name = path.split("/")[0]
    node = parse_filter(text, set_name)
    want = [d for d in small["docs"][set_name] if evaluate(node, d)]
    response = odata(small, path, {"$filter": text})
    assert response.status_code == 200, response.text
    assert response.elapsed.total_seconds() < 10
    assert int(response.headers["X-Partitions-Read"]) <= len(SMALL_DAYS)
    got = int(response.text) if path.endswith("$count") else len(response.json()["value"])
    assert got == len(want) and want


@pytest.mark.parametrize("set_name, orderby", [("DailyUsage", "day asc,id desc"), ("DailyUsage", "day desc,id"),
                                               ("PstnCalls", "startDateTime desc,id asc"),
                                               ("DirectRoutingCalls", "startDateTime,id desc")])
def test_an_orderby_that_mixes_directions_is_refused_not_answered_in_another_order(small, set_name, orderby):
    """An $orderby whose id tiebreak runs against the first key is refused with 501 (the rows are read in one
    direction), rather than answered with the tiebreak in the first key's direction, an order the client did
    not ask for; the same direction for both keys is served, in exactly that order."""
    response = odata(small, set_name, {"$orderby": orderby})
    assert response.status_code == 501 and "mixes directions" in response.json()["error"]["message"], response.text
    first = orderby.split(",")[0].split()[0]
    direction = "desc" if "desc" in orderby.split(",")[0] else "asc"
    rows, _ = fetch_all(small, set_name, {"$orderby": f"{first} {direction},id {direction}"}, 1000)
    key = sort_key(set_name)
    want = sorted(small["docs"][set_name], key=key, reverse=direction == "desc")
    assert [r["id"] for r in rows] == [d["id"] for d in want]


@pytest.mark.parametrize("set_name, params", [("PstnCalls", {"$skip": "3"}),
                                             ("DailyUsage", {"$skip": "5", "$top": "11", "$FILTER": "calls ge 1"}),
                                             ("DirectRoutingCalls", {"$skip": "1", "$orderby": "startDateTime desc"})])
def test_skip_with_more_than_one_page_follows_every_next_link(small, set_name, params):
    """A query with $skip that spans pages is answered to its end: each @odata.nextLink (which carries the
    paging token and no $skip) is accepted as the same query, and the pages together are the rows after the
    skipped ones, $top of them where $top is given."""
    rows, _ = fetch_all(small, set_name, params, 4)
    node = parse_filter(params["$FILTER"], set_name) if "$FILTER" in params else None
    want = sorted((d for d in small["docs"][set_name] if evaluate(node, d)), key=sort_key(set_name),
                  reverse="$orderby" in params)[int(params["$skip"]):]
    want = want[:int(params["$top"])] if "$top" in params else want
    assert [r["id"] for r in rows] == [d["id"] for d in want] and len(want) > 4
