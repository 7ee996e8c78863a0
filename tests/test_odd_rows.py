"""One odd row must not make reads walk the calendar.

Graph writes 0001-01-01T00:00:00Z as a "never" value, so a stored row can sit two thousand years before the
rest. An open read (no $filter, or one bound only) reaches from that row to the newest: read one day partition
at a time, that would be a query per calendar day in between (about 739,000). These tests store rows on a few
days plus one such row, read them through the OData feed on the local stack, compare every answer with a plain
computation over the documents, and count the queries each request sends to the feed's container: one per
day that holds matching rows, plus one (the query that finds those days).
"""
from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from shared.api import odata_feed
from shared.stores import Stores, open_stores
from shared.stores.rows import to_document
from tests.collecting import fresh_settings

BASE = "http://localhost/api/odata"
NEVER = "0001-01-01T00:00:00Z"
STARTS = [NEVER, "2026-05-01T08:00:00Z", "2026-05-01T08:00:00Z", "2026-05-01T17:30:00Z", "2026-05-02T23:59:59Z",
          "2026-05-20T00:00:00Z", "2026-05-20T12:00:00.1234567Z", "2026-06-30T10:00:00Z"]
# A request may send this many queries beyond one per day read; the old walk would pass it within a month.
CONSTANT = 1
# Past this, a request is walking the calendar: stop it rather than wait for 739,000 queries.
RUNAWAY = 200


class Runaway(AssertionError):
    pass


class CountingContainer:
    """The feed's real container client, counting the queries sent through it."""

    def __init__(self, container, counter: list[int]):
        self._container, self._counter = container, counter

    def query_items(self, *args, **kwargs):
        self._counter[0] += 1
        if self._counter[0] > RUNAWAY:
            raise Runaway(f"more than {RUNAWAY} queries for one request: the read walks the calendar")
        return self._container.query_items(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._container, name)


@pytest.fixture(scope="module")
def docs(stack):
    settings = fresh_settings(stack, stack.graph_url, FEEDS="pstn")
    container = open_stores(settings)._container("pstn")
    stored = []
    for i, start in enumerate(STARTS):
        row = {"id": f"call-{i:02d}", "startDateTime": start, "endDateTime": start, "callType": "user_out",
               "userPrincipalName": f"user{i % 3}@contoso.com", "duration": 60 * i}
        document = to_document(row, "startDateTime")
        container.upsert_item(document)
        stored.append(document)
    return {"settings": settings, "docs": sorted(stored, key=lambda d: (d["startUtc"], d["id"]))}


@pytest.fixture
def feed(docs, monkeypatch):
    """GET on the OData feed: (response, queries the request sent to the feed's container)."""
    counter = [0]
    real = Stores._container
    monkeypatch.setattr(Stores, "_container", lambda self, table: CountingContainer(real(self, table), counter))

    def get(path: str, params: dict | None = None, page_size: int | None = None):
        counter[0] = 0
        headers = {"Prefer": f"odata.maxpagesize={page_size}"} if page_size else {}
        response = odata_feed.handle(path, params or {}, headers, BASE, open_stores(docs["settings"]))
        assert response.status == 200, response.body
        return response, counter[0]
    return get


def days_of(rows) -> int:
    return len({r["day"] for r in rows})


def ids(rows) -> list[str]:
    return [r["id"] for r in rows]


def body(response) -> dict:
    return json.loads(response.body)


def check_cost(queries: int, days_read: int, response) -> None:
    assert queries <= CONSTANT + days_read, \
        f"{queries} queries to read {days_read} day(s) holding rows: the read visits days without rows"
    assert int(response.headers["X-Partitions-Read"]) <= days_read


def test_the_odd_row_is_stored_two_thousand_years_before_the_rest(docs):
    assert docs["docs"][0]["day"] == "0001-01-01" and days_of(docs["docs"]) == 5


def test_an_unfiltered_page_visits_only_the_days_that_hold_rows(docs, feed):
    response, queries = feed("PstnCalls")
    assert ids(body(response)["value"]) == ids(docs["docs"])
    check_cost(queries, days_of(docs["docs"]), response)
    assert response.headers["X-Partitions-Read"] == str(days_of(docs["docs"]))  # day partitions read


def test_an_unfiltered_count_visits_only_the_days_that_hold_rows(docs, feed):
    response, queries = feed("PstnCalls/$count")
    assert response.body == str(len(docs["docs"])).encode()
    check_cost(queries, days_of(docs["docs"]), response)


def test_a_page_with_its_count_pays_for_each_read_once(docs, feed):
    response, queries = feed("PstnCalls", {"$count": "true"})
    assert body(response)["@odata.count"] == len(docs["docs"])
    assert ids(body(response)["value"]) == ids(docs["docs"])
    assert queries <= 2 * (CONSTANT + days_of(docs["docs"]))


def test_a_descending_page_visits_only_the_days_that_hold_rows(docs, feed):
    response, queries = feed("PstnCalls", {"$orderby": "startDateTime desc"})
    assert ids(body(response)["value"]) == ids(reversed(docs["docs"]))
    check_cost(queries, days_of(docs["docs"]), response)


@pytest.mark.parametrize("orderby", [None, "startDateTime desc"])
@pytest.mark.parametrize("page_size", [1, 2, 3])
def test_following_skiptokens_reads_every_row_once_in_order(docs, feed, orderby, page_size):
    params = {"$orderby": orderby} if orderby else {}
    want = list(reversed(docs["docs"])) if orderby else docs["docs"]
    rows, pages = [], 0
    while True:
        response, queries = feed("PstnCalls", params, page_size)
        page = body(response)
        pages += 1
        # A page reads from the cursor's day (the previous page's last row) to its look-ahead row's day.
        check_cost(queries, days_of(want[max(0, len(rows) - 1):len(rows) + page_size + 1]), response)
        rows += page["value"]
        link = page.get("@odata.nextLink")
        if link is None:
            break
        params = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
        assert pages <= len(want), "the pages do not end"
    assert ids(rows) == ids(want)


RANGES = [
    # (filter, which documents match)
    ("startDateTime ge 2026-05-02T00:00:00Z", lambda d: d["startUtc"] >= "2026-05-02T00:00:00.0000000Z"),
    ("startDateTime lt 2026-05-20T00:00:00Z", lambda d: d["startUtc"] < "2026-05-20T00:00:00.0000000Z"),
    ("startDateTime gt 0001-01-01T00:00:00Z", lambda d: d["startUtc"] > "0001-01-01T00:00:00.0000000Z"),
    ("startDateTime ge 0001-01-01T00:00:00Z and startDateTime le 9999-12-31T00:00:00Z", lambda d: True),
    ("startDateTime ge 2026-05-01T12:00:00Z and startDateTime lt 2026-06-01T00:00:00Z",
     lambda d: "2026-05-01T12:00:00.0000000Z" <= d["startUtc"] < "2026-06-01T00:00:00.0000000Z"),
    ("startDateTime ge 2026-05-01T00:00:00Z and startDateTime lt 2026-05-03T00:00:00Z",
     lambda d: "2026-05-01" <= d["day"] <= "2026-05-02"),
    ("startDateTime lt 2000-01-01T00:00:00Z", lambda d: d["day"] == "0001-01-01"),
    ("duration ge 300", lambda d: d["duration"] >= 300),
    ("duration ge 300 and startDateTime lt 2026-06-01T00:00:00Z",
     lambda d: d["duration"] >= 300 and d["startUtc"] < "2026-06-01"),
    ("userPrincipalName eq 'nobody@contoso.com'", lambda d: False),
]


@pytest.mark.parametrize("text, matches", RANGES, ids=[r[0] for r in RANGES])
@pytest.mark.parametrize("orderby", [None, "startDateTime desc"])
def test_a_filtered_range_reads_only_days_holding_matching_rows(docs, feed, text, matches, orderby):
    want = [d for d in docs["docs"] if matches(d)]
    want = list(reversed(want)) if orderby else want
    params = {"$filter": text, **({"$orderby": orderby} if orderby else {})}
    response, queries = feed("PstnCalls", params)
    assert ids(body(response)["value"]) == ids(want)
    # A range of at most a few days is read day by day: those days, whether or not they hold rows.
    check_cost(queries, max(days_of(want), 2 if "lt 2026-05-03" in text else 0), response)
    counted, queries = feed("PstnCalls/$count", {"$filter": text})
    assert counted.body == str(len(want)).encode()
    check_cost(queries, max(days_of(want), 2 if "lt 2026-05-03" in text else 0), counted)
