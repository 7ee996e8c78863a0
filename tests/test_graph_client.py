"""The Graph client: URL, window checks, paging, retries, tokens, errors, rate limit, counters, logs.

Pure unit tests first; then real HTTP against the project's Graph simulator (devstack/graphsim), plus a
tiny canned-answer server for what the simulator cannot send (odd nextLinks and loops, an HTTP-date
Retry-After). Everything is observed from outside the client: what the servers received, what an injected
credential, sleep or limit registry was asked, the pages and errors handed out, and `stats`. The scopes of
the request limits (function, app, tenant) have tests of their own in test_graph_scopes.py.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
import sys
import threading
import time
import weakref
from contextlib import closing
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime as http_date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from azure.core.credentials import AccessToken

from devstack.graphsim import GraphSimulator
from shared.config.settings import load_settings
from shared.graph import (Backoff, GraphAuthError, GraphClient, GraphPageError, GraphPagingLoopError,
                          GraphPermissionError, GraphRequestError, GraphRetriesExhaustedError, GraphStats,
                          GraphWindowError, RateLimiter, ScopeRegistry, build_function_url, check_window,
                          format_datetime, parse_page, parse_retry_after, reset_registry)
from shared.graph.ratelimit import ScopedLimiter, limiter_for
from shared.graph.stats import GraphCounters

UTC = timezone.utc
DAY = datetime(2024, 5, 1, tzinfo=UTC)
NEXT_DAY = DAY + timedelta(days=1)
TOKEN = "sim-secret-token-0123456789abcdef"
STALE = "stale-token-fedcba9876543210"


# --- helpers -------------------------------------------------------------------------------------------

def make_settings(endpoint: str, **env: str):
    base = {"GRAPH_ENDPOINT": endpoint, "GRAPH_CREDENTIAL": "static_token", "GRAPH_STATIC_TOKEN": TOKEN,
            "COSMOS_ENDPOINT": "https://acct.documents.azure.com:443/",
            "STORAGE_ACCOUNT_URL": "https://acct.blob.core.windows.net",
            "GRAPH_TIMEOUT_SECONDS": "10", "GRAPH_MAX_RETRIES": "8", **per_minute(60_000)}
    return load_settings({**base, **env})


def per_minute(function: float, app: float | None = None, tenant: float | None = None) -> dict[str, str]:
    """The three request-limit settings; app and tenant default to the function's (so it is the one that binds)."""
    return {"GRAPH_FUNCTION_REQUESTS_PER_MINUTE": f"{function:g}",
            "GRAPH_APP_REQUESTS_PER_MINUTE": f"{app if app is not None else function:g}",
            "GRAPH_TENANT_REQUESTS_PER_MINUTE": f"{tenant if tenant is not None else function:g}"}


@pytest.fixture(autouse=True)
def fresh_limits():
    """Clients of the process share their request limits: a test's holds and slowed scopes stay in it."""
    reset_registry()
    yield
    reset_registry()


class CountingCredential:
    """Hands out the given tokens in turn (the last one repeats) and counts get_token calls."""

    def __init__(self, *tokens: str, lifetime: float = 3600):
        self.tokens = tokens or (TOKEN,)
        self.lifetime = lifetime
        self.calls = 0
        self.scopes: list[tuple] = []

    def get_token(self, *scopes, **kwargs) -> AccessToken:
        self.calls += 1
        self.scopes.append(scopes)
        token = self.tokens[min(self.calls, len(self.tokens)) - 1]
        return AccessToken(token, int(time.time() + self.lifetime))


class Sleeper:
    """A sleep that returns at once and remembers what it was asked."""

    def __init__(self):
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def rows_of(pages) -> list[dict]:
    return [row for page in pages for row in page.rows]


def graph_log(sim) -> list[dict]:
    return [entry for entry in sim.request_log() if not entry["path"].startswith("/_sim")]


def day_url(endpoint: str, function: str = "getPstnCalls", version: str = "v1.0") -> str:
    """The URL a client on `endpoint` fetches first for DAY."""
    return build_function_url(endpoint, version, function, DAY, NEXT_DAY)


def stats(client: GraphClient) -> GraphStats:
    return client.stats.snapshot()


@pytest.fixture(scope="module")
def sim():
    with GraphSimulator(seed=7, rows_per_day=2500, token=TOKEN) as running:
        yield running


@pytest.fixture
def graph(sim):
    """The simulator with default knobs and no faults, and a factory of clients pointed at it."""
    sim.reset()
    sim.configure(page_size=1000, latency=0.0, rate_limit=None, rows_per_day=2500)
    yield from _clients(sim)


@pytest.fixture
def slow_graph():
    """A simulator of its own: a slow fault's request outlives the test, and would be logged in the next one."""
    with GraphSimulator(seed=7, rows_per_day=2500, token=TOKEN) as own:
        for factory in _clients(own):
            yield own, factory


def _clients(sim):
    made: list[GraphClient] = []
    registries = {}

    def limits_for(sleep) -> ScopeRegistry:
        real = sleep is time.sleep
        if real not in registries:
            registries[real] = ScopeRegistry(sleep=time.sleep if real else (lambda seconds: None))
        return registries[real]

    def client(credential=None, sleep=None, timeout=None, **env) -> GraphClient:
        settings = make_settings(sim.url, **env)
        limits = limits_for(sleep)
        if timeout is not None:  # GRAPH_TIMEOUT_SECONDS allows 1 s at least; a test need not wait that long
            settings = dataclasses.replace(settings, graph_timeout_seconds=timeout)
        # A fake `sleep` sees only retry waits: the limits then skip their (Retry-After hold) waits silently.
        made.append(GraphClient(settings, credential or CountingCredential(), limits=limits,
                                sleep=sleep if sleep is not None else Sleeper(),
                                backoff=Backoff(rng=random.Random(1))))
        return made[-1]

    yield client
    for c in made:
        c.close()


# --- URL and window ------------------------------------------------------------------------------------

def test_function_url_has_unquoted_iso_utc_literals():
    url = build_function_url("https://graph.microsoft.com/", "v1.0", "getPstnCalls", DAY, NEXT_DAY)
    assert url == ("https://graph.microsoft.com/v1.0/communications/callRecords/getPstnCalls("
                   "fromDateTime=2024-05-01T00:00:00Z,toDateTime=2024-05-02T00:00:00Z)")
    berlin = timezone(timedelta(hours=2))
    url = build_function_url("https://graph.microsoft.us", "beta", "getDirectRoutingCalls",
                             datetime(2024, 5, 1, 2, 0, tzinfo=berlin),
                             datetime(2024, 5, 1, 12, 30, 15, 250000, tzinfo=UTC))
    assert url == ("https://graph.microsoft.us/beta/communications/callRecords/getDirectRoutingCalls("
                   "fromDateTime=2024-05-01T00:00:00Z,toDateTime=2024-05-01T12:30:15.25Z)")
    assert format_datetime(datetime(2024, 5, 1, 0, 0, 0, 1, tzinfo=UTC)) == "2024-05-01T00:00:00.000001Z"
    with pytest.raises(ValueError):
        build_function_url("https://graph.microsoft.com", "v1.0", "getPstnCalls?x=1", DAY, NEXT_DAY)


@pytest.mark.parametrize("start, end, ok", [
    (DAY, DAY + timedelta(days=90), True),
    (DAY, DAY + timedelta(days=90, seconds=1), False),
    (DAY, DAY + timedelta(days=91), False),
    (DAY, DAY, False),
    (NEXT_DAY, DAY, False),
    (datetime(2024, 5, 1), NEXT_DAY, False),  # naive: which day is it?
])
def test_window_checks(start, end, ok):
    if ok:
        assert check_window(start, end) == (start, end)
    else:
        with pytest.raises(GraphWindowError):
            check_window(start, end)


def test_91_day_window_is_refused_before_any_request(graph, sim):
    credential = CountingCredential()
    client = graph(credential=credential)
    with pytest.raises(GraphWindowError, match="90 days"):
        client.pages("getPstnCalls", DAY, DAY + timedelta(days=91))
    with pytest.raises(GraphWindowError, match="not after"):
        client.pages("getPstnCalls", NEXT_DAY, DAY)
    assert graph_log(sim) == [] and credential.calls == 0 and stats(client).requests == 0


# --- retry arithmetic ----------------------------------------------------------------------------------

def test_parse_retry_after():
    now = 1_700_000_000.0
    assert parse_retry_after("7") == 7
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("0") == 0
    assert parse_retry_after("-3") == 0
    assert parse_retry_after(http_date(datetime.fromtimestamp(now + 30, UTC), usegmt=True), now=now) == 30
    assert parse_retry_after(http_date(datetime.fromtimestamp(now - 30, UTC), usegmt=True), now=now) == 0
    for junk in (None, "", "soon", "nan", "inf"):
        assert parse_retry_after(junk) is None


def test_backoff_is_capped_exponential_with_full_jitter():
    backoff = Backoff(base=1, cap=60, rng=random.Random(3))
    assert [backoff.ceiling(n) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff.ceiling(10_000) == 60
    delays = [backoff.delay(n) for n in range(8) for _ in range(50)]
    assert all(0 <= d <= 60 for d in delays)
    assert max(backoff.delay(7) for _ in range(200)) > 30  # full jitter spreads over the whole range
    assert min(backoff.delay(7) for _ in range(200)) < 30


# --- rate limiter --------------------------------------------------------------------------------------

def test_rate_limiter_allows_a_small_burst_then_spaces_requests():
    now = [100.0]
    limiter = RateLimiter(10, burst=2, clock=lambda: now[0], sleep=lambda s: None)
    assert [round(limiter.reserve(), 6) for _ in range(5)] == [0, 0, 0.1, 0.2, 0.3]
    now[0] += 10  # idle: the burst is available again, but never more than the burst
    assert [round(limiter.reserve(), 6) for _ in range(3)] == [0, 0, 0.1]
    with pytest.raises(ValueError):
        RateLimiter(0)


def test_rate_limiter_hold_stops_everyone():
    now = [0.0]
    limiter = RateLimiter(10, burst=2, clock=lambda: now[0], sleep=lambda s: None)
    limiter.reserve()
    limiter.hold(3)
    assert [round(limiter.reserve(), 6) for _ in range(3)] == [3, 3.1, 3.2]
    limiter.hold(1)  # a shorter hold never shortens what is already scheduled
    assert round(limiter.reserve(), 6) == 3.3


class RecordingLimiter(RateLimiter):
    """Records the start time of every slot handed out."""

    def __init__(self, rate_per_second: float, burst: int = 1, *, clock=time.monotonic, **kwargs):
        super().__init__(rate_per_second, burst, clock=clock, **kwargs)
        self.clock = clock
        self.slots: list[float] = []
        self.recording = threading.Lock()

    def reserve(self) -> float:
        now = self.clock()
        wait = super().reserve()
        with self.recording:
            self.slots.append(now + wait)
        return wait


class RecordingScopes(ScopedLimiter):
    """Records the start time of every slot handed out, on the registry's clock."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.slots: list[float] = []
        self.recording = threading.Lock()

    def reserve(self, function):
        slot = super().reserve(function)
        with self.recording:
            self.slots.append(slot.at)
        return slot


class RecordingRegistry(ScopeRegistry):
    limiter_class = RecordingScopes

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.made: list[RecordingScopes] = []

    def limiter(self, *args, **kwargs):
        made = super().limiter(*args, **kwargs)
        if made not in self.made:
            self.made.append(made)
        return made

    def slots(self) -> list[float]:
        return [t for limiter in self.made for t in limiter.slots]


def _max_in_window(times: list[float], width: float) -> int:
    times = sorted(times)
    return max(sum(1 for t in times[i:] if t < first + width) for i, first in enumerate(times))


def test_rate_limiter_is_shared_by_threads():
    limiter = RecordingLimiter(50, burst=2)
    started = time.monotonic()
    threads = [threading.Thread(target=lambda: [limiter.acquire() for _ in range(10)]) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    assert len(limiter.slots) == 60
    # 60 requests at 50/s with a burst of 2 take at least 58 intervals, and no 0.5 s holds more than 2 + 25.
    assert elapsed >= 58 / 50 - 0.02
    assert _max_in_window(limiter.slots, 0.5) <= 2 + 25


# --- counters ------------------------------------------------------------------------------------------

def test_stats_are_thread_safe_and_subtract():
    run = GraphCounters()

    def work():
        for _ in range(1000):
            run.add(requests=1, rows=2, throttle_wait_seconds=0.5)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert run.snapshot() == GraphStats(requests=8000, rows=16000, throttle_wait_seconds=4000)
    assert GraphStats(requests=5, pages=2) - GraphStats(requests=1) == GraphStats(requests=4, pages=2)
    with pytest.raises(KeyError):
        run.add(requets=1)


# --- pages --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("body, complaint", [
    (b'{"value": [', "not valid JSON"),
    (b"\xff\xfe\x00", "not valid JSON"),
    (b"[1, 2]", "not an object"),
    (b'{"error": {"code": "x"}}', "no 'value' list"),
    (b'{"value": {"id": 1}}', "not a list"),
    (b'{"value": [{"id": 1}, 7]}', "row 1"),
])
def test_bad_pages_are_refused_with_the_url(body, complaint):
    with pytest.raises(GraphPageError) as err:
        parse_page("https://g/x", body)
    assert complaint in str(err.value) and "https://g/x" in str(err.value) and err.value.url == "https://g/x"


def test_a_good_page_is_read_as_it_came():
    document, rows = parse_page("https://g/x", b'{"value": [{"id": "1"}], "@odata.nextLink": "https://g/y"}')
    assert rows == [{"id": "1"}] and document["@odata.nextLink"] == "https://g/y"


# --- against the simulator: the happy path --------------------------------------------------------------

def test_a_full_day_arrives_through_next_links(graph, sim):
    client = graph()
    window = client.pages("getPstnCalls", DAY, NEXT_DAY)
    pages = list(window)
    assert [len(p.rows) for p in pages] == [1000, 1000, 500]
    assert [p.number for p in pages] == [1, 2, 3]
    assert rows_of(pages) == sim.truth("pstn", DAY, NEXT_DAY, "v1.0")
    log = graph_log(sim)
    # The bytes handed out are the bytes the simulator sent, and each nextLink went out exactly as received.
    assert [hashlib.sha256(p.body).hexdigest() for p in pages] == [e["sha256"] for e in log]
    assert log[0]["path"] == urlsplit(day_url(sim.url)).path
    assert pages[0].url == day_url(sim.url)
    for page, following, entry in zip(pages, pages[1:], log[1:]):
        assert following.url == page.next_link and "(from=" in page.next_link and "$skip=" in page.next_link
        assert page.next_link.endswith(entry["path"])
    assert pages[-1].next_link is None
    for p in pages:
        assert json.loads(p.body)["value"] == p.rows
    expected = GraphStats(requests=3, pages=3, rows=2500, bytes_received=sum(len(p.body) for p in pages))
    assert stats(client) == expected
    # A later window counts in the same run; two snapshots give one window's share, as the collector takes it.
    before = stats(client)
    later = list(client.pages("getPstnCalls", NEXT_DAY, NEXT_DAY + timedelta(days=1)))
    assert stats(client) - before == GraphStats(requests=len(later), pages=len(later),
                                                rows=sum(len(p.rows) for p in later),
                                                bytes_received=sum(len(p.body) for p in later))


def test_direct_routing_beta_with_small_pages(graph, sim):
    sim.configure(page_size=200)
    client = graph(GRAPH_API_VERSION="beta")
    pages = list(client.pages("getDirectRoutingCalls", DAY, NEXT_DAY))
    assert len(pages) == 3 and "(fromDateTime=" in pages[0].next_link  # direct routing keeps the long names
    assert rows_of(pages) == sim.truth("directRouting", DAY, NEXT_DAY, "beta")


def test_pages_are_fetched_lazily(graph, sim):
    window = graph().pages("getPstnCalls", DAY, NEXT_DAY)
    assert graph_log(sim) == []
    next(window)
    assert len(graph_log(sim)) == 1
    window.close()
    assert list(window) == [] and len(graph_log(sim)) == 1


def test_a_page_handed_out_is_not_kept_by_the_client(graph, sim):
    # The collector drops each page's body once archived and its rows once stored: a window that held on to
    # its last page until the next one arrived would keep twice the pages a big day needs.
    window = graph().pages("getPstnCalls", DAY, NEXT_DAY)
    page = next(window)
    gone = weakref.ref(page)
    body, rows = page.body, page.rows
    del page
    assert gone() is None
    assert sys.getrefcount(body) == 2 and sys.getrefcount(rows) == 2  # these names, and getrefcount's own
    window.close()


def test_token_is_cached_until_shortly_before_expiry(graph, sim):
    credential = CountingCredential()
    client = graph(credential=credential)
    list(client.pages("getPstnCalls", DAY, NEXT_DAY))
    list(client.pages("getPstnCalls", NEXT_DAY, NEXT_DAY + timedelta(days=1)))
    assert credential.calls == 1 and credential.scopes == [(f"{sim.url}/.default",)]
    short = CountingCredential(lifetime=200)  # inside the refresh margin: every request needs a new one
    client = graph(credential=short)
    list(client.pages("getPstnCalls", DAY, NEXT_DAY))
    assert short.calls == 3


# --- retries -------------------------------------------------------------------------------------------

def test_429_retry_after_is_honoured_in_real_time(graph, sim):
    sim.configure(faults=[{"kind": "status", "status": 429, "retry_after": 1, "skip": 1000}])
    client = graph(sleep=time.sleep)
    started = time.monotonic()
    pages = list(client.pages("getPstnCalls", DAY, NEXT_DAY))
    elapsed = time.monotonic() - started
    assert rows_of(pages) == sim.truth("pstn", DAY, NEXT_DAY)
    assert elapsed >= 1.0
    log = graph_log(sim)
    assert [e["status"] for e in log] == [200, 429, 200, 200]
    assert log[2]["time"] - log[1]["time"] >= 0.99
    seen = stats(client)
    assert (seen.responses_429, seen.retries, seen.requests, seen.pages) == (1, 1, 4, 3)
    assert seen.throttle_wait_seconds == 1.0


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_transient_5xx_bursts_are_retried(graph, sim, status):
    sim.configure(faults=[{"kind": "status", "status": status, "times": 3, "skip": 1000}])
    sleeper = Sleeper()
    client = graph(sleep=sleeper)
    pages = list(client.pages("getPstnCalls", DAY, NEXT_DAY))
    assert rows_of(pages) == sim.truth("pstn", DAY, NEXT_DAY)
    assert stats(client).retries == 3 and stats(client).requests == 6
    # No Retry-After: capped exponential backoff with full jitter.
    assert len(sleeper.waits) == 3
    assert all(0 <= w <= ceiling for w, ceiling in zip(sleeper.waits, (1, 2, 4)))
    assert stats(client).throttle_wait_seconds == pytest.approx(sum(sleeper.waits))


def test_mixed_503_and_504_bursts_with_retry_after(graph, sim):
    sim.configure(faults=[{"kind": "status", "status": 503, "times": 2, "retry_after": 3},
                          {"kind": "status", "status": 504, "times": 2, "skip": 2000}])
    sleeper = Sleeper()
    client = graph(sleep=sleeper)
    assert rows_of(client.pages("getPstnCalls", DAY, NEXT_DAY)) == sim.truth("pstn", DAY, NEXT_DAY)
    assert sleeper.waits[:2] == [3.0, 3.0]
    assert [e["status"] for e in graph_log(sim)] == [503, 503, 200, 200, 504, 504, 200]


def test_dropped_connections_mid_paging_are_retried(graph, sim):
    sim.configure(faults=[{"kind": "drop", "skip": 1000},
                          {"kind": "drop", "partial": True, "skip": 2000}])
    client = graph()
    pages = list(client.pages("getPstnCalls", DAY, NEXT_DAY))
    assert rows_of(pages) == sim.truth("pstn", DAY, NEXT_DAY)
    assert stats(client).retries == 2 and stats(client).pages == 3
    assert sim.stats()["faults_by_kind"] == {"drop": 2}


def test_retry_budget_exhausted_is_a_clear_error(graph, sim):
    sim.configure(faults=[{"kind": "status", "status": 503, "times": 50}])
    client = graph(GRAPH_MAX_RETRIES="2")
    with pytest.raises(GraphRetriesExhaustedError) as err:
        list(client.pages("getPstnCalls", DAY, NEXT_DAY))
    message = str(err.value)
    assert "3 attempts" in message and "503" in message and "GRAPH_MAX_RETRIES" in message
    assert err.value.last_status == 503 and err.value.attempts == 3
    assert len(graph_log(sim)) == 3 and stats(client).retries == 2


def test_a_retry_after_longer_than_the_client_waits_is_reported_not_slept(graph, sim):
    sim.configure(faults=[{"kind": "status", "status": 429, "retry_after": 3600}])
    sleeper = Sleeper()
    client = graph(sleep=sleeper)
    with pytest.raises(GraphRetriesExhaustedError, match="3600 s"):
        list(client.pages("getPstnCalls", DAY, NEXT_DAY))
    assert sleeper.waits == []


def test_slow_page_beyond_the_timeout_is_retried(slow_graph):
    sim, graph = slow_graph
    sim.configure(faults=[{"kind": "slow", "seconds": 1.5, "skip": 1000}])
    client = graph(timeout=0.5)
    assert rows_of(client.pages("getPstnCalls", DAY, NEXT_DAY)) == sim.truth("pstn", DAY, NEXT_DAY)
    # Without the timeout the slow page would simply have arrived: the retry is the timeout firing.
    assert stats(client).retries == 1


def test_slow_pages_that_never_come_fail_clearly(slow_graph):
    sim, graph = slow_graph
    sim.configure(faults=[{"kind": "slow", "seconds": 1.0, "times": 2}])
    client = graph(timeout=0.4, GRAPH_MAX_RETRIES="1")
    with pytest.raises(GraphRetriesExhaustedError) as err:
        list(client.pages("getPstnCalls", DAY, NEXT_DAY))
    assert "2 attempts" in str(err.value) and "0.4 s GRAPH_TIMEOUT_SECONDS" in str(err.value)


# --- tokens and permissions ----------------------------------------------------------------------------

def test_401_refreshes_the_token_once_and_succeeds(graph, sim):
    credential = CountingCredential(STALE, TOKEN)  # the simulator accepts TOKEN only
    client = graph(credential=credential)
    pages = list(client.pages("getPstnCalls", DAY, NEXT_DAY))
    assert rows_of(pages) == sim.truth("pstn", DAY, NEXT_DAY)
    assert credential.calls == 2
    assert [e["status"] for e in graph_log(sim)] == [401, 200, 200, 200]
    assert stats(client).token_refreshes == 1 and stats(client).retries == 0


def test_401_mid_paging_refreshes_once(graph, sim):
    sim.configure(faults=[{"kind": "status", "status": 401, "skip": 1000}])
    credential = CountingCredential()
    client = graph(credential=credential)
    assert rows_of(client.pages("getPstnCalls", DAY, NEXT_DAY)) == sim.truth("pstn", DAY, NEXT_DAY)
    assert credential.calls == 2


def test_401_twice_is_an_error(graph, sim):
    sim.configure(faults=[{"kind": "status", "status": 401, "times": 5}])
    credential = CountingCredential()
    client = graph(credential=credential)
    with pytest.raises(GraphAuthError) as err:
        list(client.pages("getPstnCalls", DAY, NEXT_DAY))
    assert err.value.status == 401 and "InvalidAuthenticationToken" in str(err.value)
    assert credential.calls == 2 and len(graph_log(sim)) == 2


def test_credential_failure_is_a_graph_auth_error(graph, sim):
    class Broken:
        def get_token(self, *scopes, **kwargs):
            raise RuntimeError("ManagedIdentityCredential authentication unavailable")

    with pytest.raises(GraphAuthError, match="authentication unavailable"):
        list(graph(credential=Broken()).pages("getPstnCalls", DAY, NEXT_DAY))
    assert graph_log(sim) == []


def test_403_names_both_permissions_and_how_to_grant_them(graph, sim):
    sim.configure(faults=[{"kind": "status", "status": 403}])
    with pytest.raises(GraphPermissionError) as err:
        list(graph().pages("getPstnCalls", DAY, NEXT_DAY))
    message = str(err.value)
    for needed in ("getPstnCalls was refused (403)", "CallRecords.Read.All", "CallRecord-PstnCalls.Read.All",
                   "appRoleAssignments", "AppRoleAssignment.ReadWrite.All", "00000003-0000-0000-c000-000000000000",
                   "24 h", "403"):
        assert needed in message
    assert TOKEN not in message
    assert isinstance(err.value, GraphRequestError) and err.value.status == 403
    assert len(graph_log(sim)) == 1  # not retried


@pytest.mark.parametrize("status, code", [(400, "BadRequest"), (404, "ResourceNotFound"), (406, "NotAcceptable")])
def test_other_4xx_are_request_errors_with_graphs_code(graph, sim, status, code):
    sim.configure(faults=[{"kind": "status", "status": status}])
    with pytest.raises(GraphRequestError) as err:
        list(graph().pages("getPstnCalls", DAY, NEXT_DAY))
    assert not isinstance(err.value, GraphPermissionError)
    assert err.value.status == status and err.value.code == code and err.value.request_id
    assert str(status) in str(err.value) and code in str(err.value)
    assert len(graph_log(sim)) == 1


# --- odd pages -----------------------------------------------------------------------------------------

def test_next_link_loop_is_detected(graph, sim):
    sim.configure(faults=[{"kind": "loop", "skip": 1000}])
    window = graph().pages("getPstnCalls", DAY, NEXT_DAY)
    first = next(window)
    with pytest.raises(GraphPagingLoopError) as err:
        next(window)
    assert err.value.url == first.next_link and first.next_link in str(err.value)
    assert list(window) == [] and len(graph_log(sim)) == 2


def test_an_empty_page_with_a_next_link_is_passed_over(graph, sim):
    sim.configure(faults=[{"kind": "empty_page", "skip": 1000}])
    client = graph()
    pages = list(client.pages("getPstnCalls", DAY, NEXT_DAY))
    assert [len(p.rows) for p in pages] == [1000, 0, 1000, 500]
    assert rows_of(pages) == sim.truth("pstn", DAY, NEXT_DAY)
    assert stats(client).pages == 4 and stats(client).rows == 2500


def test_invalid_json_page_is_a_page_error(graph, sim):
    sim.configure(faults=[{"kind": "invalid_json", "skip": 1000}])
    client = graph()
    window = client.pages("getPstnCalls", DAY, NEXT_DAY)
    first = next(window)
    with pytest.raises(GraphPageError, match="not valid JSON") as err:
        next(window)
    assert err.value.url == first.next_link and first.next_link in str(err.value)
    assert (stats(client).requests, stats(client).pages, stats(client).rows) == (2, 1, 1000)
    assert list(window) == [] and len(graph_log(sim)) == 2
    # The refused page's bytes go with the error (the collector archives them as rejected); not in its text.
    assert hashlib.sha256(err.value.body).hexdigest() == graph_log(sim)[1]["sha256"]
    assert err.value.body.decode("utf-8", "replace") not in str(err.value)


# --- the shared rate limit against the simulator -------------------------------------------------------

def _collect_days_in_threads(client: GraphClient, days: int) -> list[list]:
    results: list[list] = [None] * days
    errors: list[BaseException] = []

    def work(i):
        try:
            start = DAY + timedelta(days=i)
            results[i] = list(client.pages("getPstnCalls", start, start + timedelta(days=1)))
        except BaseException as exc:  # surfaced below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(days)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def test_threads_share_one_request_rate(sim, graph):
    sim.configure(page_size=250)  # 10 pages a day
    settings = make_settings(sim.url, **per_minute(20 * 60))
    limits = RecordingRegistry()
    with closing(GraphClient(settings, CountingCredential(), limits=limits)) as client:
        started = time.monotonic()
        results = _collect_days_in_threads(client, 4)
        elapsed = time.monotonic() - started
    for i, pages in enumerate(results):
        start = DAY + timedelta(days=i)
        assert rows_of(pages) == sim.truth("pstn", start, start + timedelta(days=1))
    arrivals = [e["time"] for e in graph_log(sim)]
    assert len(arrivals) == len(limits.slots()) == 40
    assert elapsed >= 38 / 20 - 0.05                      # 40 requests, burst 2, 20/s
    assert _max_in_window(limits.slots(), 1.0) <= 2 + 20   # the schedule itself, exactly
    assert _max_in_window(arrivals, 1.0) <= 2 + 20 + 2     # as the server saw it (thread wake-up jitter)


def test_client_rate_just_under_the_servers_limit_gets_no_429(sim, graph):
    # Client: 10/s with a burst of 2 is at most 22 requests in any 2 s; the simulator admits 25.
    sim.configure(page_size=250, rate_limit={"requests": 25, "per_seconds": 2})
    with closing(GraphClient(make_settings(sim.url, **per_minute(10 * 60)),
                             CountingCredential())) as client:
        _collect_days_in_threads(client, 4)
        assert stats(client).responses_429 == 0 and stats(client).requests == 40
    assert sim.stats()["rate_limited"] == 0
    # The same traffic without the client's limit is throttled: the check above can fail.
    sim.reset()
    with closing(GraphClient(make_settings(sim.url, GRAPH_MAX_RETRIES="0"), CountingCredential())) as client:
        with pytest.raises(GraphRetriesExhaustedError) as err:
            _collect_days_in_threads(client, 4)
    assert err.value.last_status == 429 and sim.stats()["rate_limited"] > 0


def test_a_retry_after_holds_every_thread_of_the_client(graph, sim):
    # 100 ms a request: without the hold, the other two threads would send pages 4-10 during the second.
    sim.configure(page_size=250, latency=0.1,
                  faults=[{"kind": "status", "status": 429, "retry_after": 1, "skip": 500, "after": 0, "times": 1}])
    with closing(GraphClient(make_settings(sim.url), CountingCredential())) as client:
        results = _collect_days_in_threads(client, 3)
        assert stats(client).responses_429 == 1 and stats(client).requests == 31
    assert sum(len(rows_of(pages)) for pages in results) == 7500
    arrivals = [e["time"] for e in graph_log(sim)]
    throttled = next(e["time"] for e in graph_log(sim) if e["status"] == 429)
    # Requests already on their way when the 429 came back (one per thread at most) arrive in the first
    # 0.1 s + latency; after that, silence until the Retry-After is over.
    assert [t - throttled for t in arrivals if throttled + 0.25 < t < throttled + 0.95] == []
    assert len([t for t in arrivals if t >= throttled + 0.95]) >= 7 * 2


def _pool_discards(sim, caplog, subwindows: int) -> list[str]:
    """urllib3's complaints while 16 windows page at once through one client with `subwindows` set."""
    caplog.clear()
    settings = dataclasses.replace(make_settings(sim.url), subwindows=subwindows)
    with closing(GraphClient(settings, CountingCredential())) as client:
        _collect_days_in_threads(client, 16)
    return [r.getMessage() for r in caplog.records if "pool is full" in r.getMessage()]


def test_connection_pool_is_sized_for_concurrency(graph, sim, caplog):
    # 8 sub-windows x 2 feeds = 16 windows at once: each keeps a pooled connection, none is opened and thrown
    # away per page. Slow pages keep all 16 in flight together.
    sim.configure(page_size=1000, latency=0.2)
    caplog.set_level(logging.WARNING, logger="urllib3.connectionpool")
    assert _pool_discards(sim, caplog, subwindows=8) == []
    # With one sub-window a feed the pool has its floor of 10, and the same traffic discards connections: the
    # check above can fail.
    assert _pool_discards(sim, caplog, subwindows=1) != []


def test_every_attempt_passes_through_the_limiter(graph, sim):
    sim.configure(faults=[{"kind": "status", "status": 503, "times": 2}, {"kind": "drop", "skip": 1000}])
    settings = make_settings(sim.url)
    limits = RecordingRegistry(sleep=lambda s: None)
    with closing(GraphClient(settings, CountingCredential(STALE, TOKEN), sleep=Sleeper(), limits=limits)) as client:
        list(client.pages("getPstnCalls", DAY, NEXT_DAY))
        # 401 (stale token), 503, 503, 200, dropped, 200, 200: seven attempts, seven slots.
        assert len(limits.slots()) == stats(client).requests == len(graph_log(sim)) == 7
        scopes = limiter_for(settings, limits).state()  # the limiter the client drew from
        assert {key: state.requests for key, state in scopes.items()} == {
            ("function", "getPstnCalls"): 7, ("app",): 7, ("tenant",): 7}


# --- logs ----------------------------------------------------------------------------------------------

def test_the_token_never_reaches_logs_or_errors(graph, sim, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, urllib3's included
    sim.configure(faults=[{"kind": "status", "status": 429, "retry_after": 0, "skip": 1000},
                          {"kind": "status", "status": 503, "skip": 2000}])
    client = graph(credential=CountingCredential(STALE, TOKEN))
    list(client.pages("getPstnCalls", DAY, NEXT_DAY))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("401" in m for m in warnings)
    assert any("429" in m and "in 0.00 s" in m for m in warnings)
    assert any("503" in m and " s (backoff)" in m for m in warnings)
    errors = []
    for fault in ({"kind": "status", "status": 403}, {"kind": "status", "status": 401, "times": 2},
                  {"kind": "status", "status": 400}):
        sim.reset()
        sim.configure(faults=[fault])
        with pytest.raises(GraphRequestError) as err:
            list(client.pages("getPstnCalls", DAY, NEXT_DAY))
        errors.append(str(err.value))
    error_records = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(error_records) == 3  # each final failure logged once
    text = caplog.text + "\n".join(errors) + "\n".join(r.getMessage() for r in caplog.records)
    assert TOKEN not in text and STALE not in text


# --- a tiny server for what the simulator does not send ------------------------------------------------

class CannedGraph:
    """Answers from a script: path -> list of (status, headers, body); the last answer repeats."""

    def __init__(self):
        self.script: dict[str, list] = {}
        self.seen: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                outer.seen.append(self.path)
                answers = outer.script.get(self.path) or [(404, {}, b'{"error":{"code":"NotFound","message":"?"}}')]
                status, headers, body = answers.pop(0) if len(answers) > 1 else answers[0]
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def page(self, path: str, rows: list, next_link: str | None = None, key: str = "@odata.nextLink"):
        body = {"value": rows, **({key: next_link} if next_link else {})}
        self.script.setdefault(path, []).append((200, {"Content-Type": "application/json"},
                                                 json.dumps(body).encode()))

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def canned():
    server = CannedGraph()
    yield server
    server.close()


@pytest.fixture
def canned_client(canned):
    """A factory of clients pointed at the canned server, closed after the test."""
    made: list[GraphClient] = []

    def client(**kwargs) -> GraphClient:
        made.append(GraphClient(make_settings(canned.url), CountingCredential(), **{"sleep": Sleeper(), **kwargs}))
        return made[-1]

    yield client
    for c in made:
        c.close()


def test_next_links_go_out_verbatim_in_either_spelling(canned, canned_client):
    client = canned_client()
    first = urlsplit(day_url(canned.url)).path
    # requests would normally rewrite %41 as A; an opaque nextLink must reach Graph as Graph wrote it.
    odd = "/v1.0/communications/callRecords/getPstnCalls(from=2024-05-01,to=2024-05-02)?$skip=1&$skiptoken=%41b%2C'c"
    canned.page(first, [{"id": "1"}], canned.url + odd, key="@odata.NextLink")
    canned.page(odd, [{"id": "2"}])
    pages = list(client.pages("getPstnCalls", DAY, NEXT_DAY))
    assert canned.seen == [first, odd]
    assert rows_of(pages) == [{"id": "1"}, {"id": "2"}] and pages[0].next_link == canned.url + odd


def test_the_next_link_alone_decides_whether_paging_goes_on(canned, canned_client):
    first = urlsplit(day_url(canned.url)).path
    canned.page(first, [{"id": "1"}], canned.url + "/p1")
    canned.page("/p1", [], canned.url + "/p2", key="@odata.NextLink")   # empty, with a link: not the end
    canned.page("/p2", [{"id": "2"}], canned.url + "/p3")
    canned.page("/p3", [])                                              # empty, without one: the end
    pages = list(canned_client().pages("getPstnCalls", DAY, NEXT_DAY))
    assert canned.seen == [first, "/p1", "/p2", "/p3"]
    assert [(p.number, len(p.rows)) for p in pages] == [(1, 1), (2, 0), (3, 1), (4, 0)]
    assert [p.url for p in pages] == [day_url(canned.url)] + [canned.url + f"/p{i}" for i in (1, 2, 3)]
    assert [p.next_link for p in pages] == [canned.url + f"/p{i}" for i in (1, 2, 3)] + [None]


@pytest.mark.parametrize("link", [5, "", "   ", ["https://g/x"]])
def test_an_unusable_next_link_fails_the_window_with_the_url(canned, canned_client, link):
    first = urlsplit(day_url(canned.url)).path
    canned.script[first] = [(200, {}, json.dumps({"value": [], "@odata.nextLink": link}).encode())]
    with pytest.raises(GraphPageError, match="unusable @odata.nextLink") as err:
        list(canned_client().pages("getPstnCalls", DAY, NEXT_DAY))
    assert err.value.url == day_url(canned.url) and day_url(canned.url) in str(err.value)
    assert canned.seen == [first]


def test_a_next_link_back_to_an_earlier_page_with_rows_is_a_loop(canned, canned_client):
    first = urlsplit(day_url(canned.url)).path
    canned.page(first, [{"id": "1"}], canned.url + "/p1")
    canned.page("/p1", [{"id": "2"}], day_url(canned.url))
    window = canned_client().pages("getPstnCalls", DAY, NEXT_DAY)
    assert next(window).rows == [{"id": "1"}]
    with pytest.raises(GraphPagingLoopError, match="already read") as err:
        next(window)
    assert err.value.url == day_url(canned.url) and f"nextLink: {day_url(canned.url)}" in str(err.value)
    assert list(window) == [] and canned.seen == [first, "/p1"]


def test_a_next_link_back_to_an_empty_page_is_followed_three_times(canned, canned_client):
    # Graph's "nothing here yet, continue from here": followed, but a window does it at most three times.
    first = urlsplit(day_url(canned.url)).path
    canned.page(first, [], day_url(canned.url))  # the same answer every time
    window = canned_client().pages("getPstnCalls", DAY, NEXT_DAY)
    assert [next(window).number for _ in range(3)] == [1, 2, 3]
    with pytest.raises(GraphPagingLoopError, match="empty page again") as err:
        next(window)
    assert "at most 3 tolerated" in str(err.value) and err.value.url == day_url(canned.url)
    assert list(window) == [] and canned.seen == [first] * 4


def test_next_link_to_another_host_is_not_followed(canned, canned_client):
    client = canned_client()
    first = urlsplit(day_url(canned.url)).path
    canned.page(first, [{"id": "1"}], "https://evil.example/steal?$skip=1000")
    with pytest.raises(GraphPageError, match="another origin"):
        list(client.pages("getPstnCalls", DAY, NEXT_DAY))
    assert canned.seen == [first]


@pytest.fixture
def bystander():
    """A second real listener on another port: a nextLink that tricks the client sends the token here."""
    server = CannedGraph()
    yield server
    server.close()


# Each a nextLink Graph never sends; {ours} is the canned server (GRAPH_ENDPOINT), {other} the bystander.
HOSTILE_NEXT_LINKS = {
    # urllib.parse reads the host after the @, urllib3 (so requests) the one before the backslash.
    "backslash before @": ("http://{other}\\@{ours}/v1.0/steal?$skip=1000", "backslash"),
    "backslash after our host": ("http://{ours}\\@{other}/steal", "backslash"),
    "encoded backslash in userinfo": ("http://{other}%5C@{ours}/steal", "userinfo"),
    "userinfo on our host": ("http://graph-user@{ours}/steal", "userinfo"),
    "our host as userinfo": ("http://{ours}@{other}/steal", "userinfo"),
    "space": ("http://{ours}/steal ?$skip=1000", "whitespace"),
    "tab in the host": ("http://{other}\t@{ours}/steal", "whitespace or a control"),
    "header injection": ("http://{ours}/steal\r\nHost: {other}", "control"),
    "NUL": ("http://{ours}\x00@{other}/steal", "control"),
    "ideographic space": ("http://{ours}/steal\u3000", "whitespace"),
    "zero-width space in the host": ("http://{ours}\u200b/steal", "control"),
    "another scheme": ("https://{ours}/steal", "another origin"),
    "another port": ("http://{other}/steal", "another origin"),
    "another host name": ("http://localhost:{ours_port}/steal", "another origin"),
    "no scheme": ("//{other}/steal", "another origin"),
    "a port urllib3 cannot read": ("http://127.0.0.1:x/steal", "not a URL the HTTP client can parse"),
}


@pytest.mark.parametrize("shape", sorted(HOSTILE_NEXT_LINKS))
def test_a_hostile_next_link_is_refused_before_any_request_leaves(canned, canned_client, bystander, shape):
    template, reason = HOSTILE_NEXT_LINKS[shape]
    ours, other = urlsplit(canned.url).netloc, urlsplit(bystander.url).netloc
    link = template.format(ours=ours, other=other, ours_port=urlsplit(canned.url).port)
    first = urlsplit(day_url(canned.url)).path
    canned.page(first, [{"id": "1"}], link)
    bystander.page(urlsplit(link).path or "/", [{"id": "stolen"}])  # answers, so a leak would show, not hang
    client = canned_client()
    try:
        list(client.pages("getPstnCalls", DAY, NEXT_DAY))
    except Exception as exc:
        error = exc
    else:
        error = None
    assert bystander.seen == [] and canned.seen == [first]  # no request left after the first page
    assert isinstance(error, GraphPageError), error
    assert reason in str(error) and "not following it with our token" in str(error) and repr(link) in str(error)
    assert error.body == canned.script[first][0][2]  # the refused page, for the rejected archive
    assert stats(client).requests == 1 and TOKEN not in str(error)


@pytest.mark.parametrize("tail", [
    "/v1.0/communications/callRecords/getPstnCalls(from=2024-05-01,to=2024-05-02)?$skip=1000",
    # Percent-encoded, the characters refused above are ordinary query text.
    "/p?$skip=1000&$skiptoken=a%20b%5Cc%40d%0A%E3%80%80",
    "/p(fromDateTime=2024-05-01T00:00:00Z,toDateTime=2024-05-02T00:00:00Z)?$skip=1000&$top=1000",
])
def test_ordinary_next_links_are_still_followed_verbatim(canned, canned_client, bystander, tail):
    first = urlsplit(day_url(canned.url)).path
    canned.page(first, [{"id": "1"}], canned.url + tail)
    canned.page(tail, [{"id": "2"}])
    pages = list(canned_client().pages("getPstnCalls", DAY, NEXT_DAY))
    assert rows_of(pages) == [{"id": "1"}, {"id": "2"}] and canned.seen == [first, tail]
    assert bystander.seen == []


def test_retry_after_as_an_http_date(canned, canned_client):
    now = float(int(time.time()))  # an HTTP date has whole seconds
    sleeper = Sleeper()
    client = canned_client(sleep=sleeper, wall_clock=lambda: now,
                           limits=ScopeRegistry(sleep=lambda s: None))  # its hold must not sleep 42 s either
    first = urlsplit(day_url(canned.url)).path
    when = http_date(datetime.fromtimestamp(now + 42, UTC), usegmt=True)
    canned.script[first] = [(503, {"Retry-After": when}, b"")]
    canned.page(first, [{"id": "1"}])
    assert rows_of(client.pages("getPstnCalls", DAY, NEXT_DAY)) == [{"id": "1"}]
    assert sleeper.waits == [42.0]
