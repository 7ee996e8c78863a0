"""The Graph client's request limits per function, per app and per tenant (shared/graph/ratelimit.py).

Microsoft's call-log limits count every request in three scopes at once: the function (collection), the app
in its tenant, and the tenant for all apps. Unit tests run on an injected clock and sleep (no real waiting):
the limiters alone, then whole GraphClients on a fake session that answers from a script. One test goes over
real HTTP to a tiny local server that answers a 429 with a scope header, then 200s.
"""
from __future__ import annotations

import json
import random
import threading
import time
from contextlib import closing
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from azure.core.credentials import AccessToken
from requests.structures import CaseInsensitiveDict

from shared.config.settings import load_settings
from shared.graph import (GraphClient, GraphPermissionError, GraphRetriesExhaustedError, ScopeLimits, ScopeRegistry,
                          reset_registry)
from shared.graph.ratelimit import (APP, FUNCTION, SLOWDOWN_FLOOR, TENANT, limiter_for, registry,
                                    throttle_scope)

UTC = timezone.utc
DAY = datetime(2024, 5, 1, tzinfo=UTC)
NEXT_DAY = DAY + timedelta(days=1)
TOKEN = "scope-test-token-0123456789abcdef"
PSTN, DR, SMS = "getPstnCalls", "getDirectRoutingCalls", "getSmsLog"
BASE = {"COSMOS_ENDPOINT": "https://acct.documents.azure.com:443/",
        "STORAGE_ACCOUNT_URL": "https://acct.blob.core.windows.net", "GRAPH_MAX_RETRIES": "8"}


# --- helpers -------------------------------------------------------------------------------------------

class FakeTime:
    """A clock that moves only when slept on: one thread's view of time, with no real waiting."""

    def __init__(self, start: float = 1000.0):
        self.now = start
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class JitterClock:
    """For threads: time creeps forward by a random step at every reading, and sleeping does not wait.
    Reservations then meet the schedule both idle (bursts) and queued far ahead."""

    def __init__(self, seed: int, step: float):
        self.now = 0.0
        self.rng = random.Random(seed)
        self.step = step
        self.lock = threading.Lock()

    def clock(self) -> float:
        with self.lock:
            self.now += self.rng.uniform(0, self.step)
            return self.now


def most_in_any_span(times: list[float], span: float = 60.0) -> int:
    """The most of `times` inside any half-open span [t, t + span)."""
    times = sorted(times)
    most, j = 0, 0
    for i, first in enumerate(times):
        while j < len(times) and times[j] < first + span:
            j += 1
        most = max(most, j - i)
    return most


def limits(function: float = 47, app: float = 190, tenant: float = 950) -> ScopeLimits:
    return ScopeLimits(function, app, tenant)


# A scope starts at most one request a cell of 1/rate: at most its rate per minute + 1 in any 60 s.
EXCESS = 1


def settings(endpoint: str = "http://127.0.0.1:9", **env: str):
    """Static-token settings (a loopback endpoint), or an app identity of its own with client_id=..."""
    values = {**BASE, "GRAPH_ENDPOINT": endpoint, "GRAPH_CREDENTIAL": "static_token", "GRAPH_STATIC_TOKEN": TOKEN}
    if "client_id" in env:
        values.update(GRAPH_ENDPOINT="https://graph.example.com", GRAPH_CREDENTIAL="client_secret",
                      GRAPH_TENANT_ID=env.pop("tenant", "tenant-1"), GRAPH_CLIENT_ID=env.pop("client_id"),
                      GRAPH_CLIENT_SECRET="not-a-secret")
    return load_settings({**values, **env})


def per_minute(function: float, app: float, tenant: float) -> dict[str, str]:
    return {"GRAPH_FUNCTION_REQUESTS_PER_MINUTE": f"{function:g}", "GRAPH_APP_REQUESTS_PER_MINUTE": f"{app:g}",
            "GRAPH_TENANT_REQUESTS_PER_MINUTE": f"{tenant:g}"}


class Credential:
    def get_token(self, *scopes, **kwargs) -> AccessToken:
        return AccessToken(TOKEN, int(time.time() + 3600))


def page(rows: int = 1) -> tuple[int, dict, bytes]:
    body = json.dumps({"value": [{"id": str(i)} for i in range(rows)]}).encode()
    return 200, {"Content-Type": "application/json"}, body


def throttled(scope: str | None, retry_after: float | None = None) -> tuple[int, dict, bytes]:
    headers = {"Content-Type": "application/json"}
    if scope is not None:
        headers["x-ms-throttle-scope"] = scope
    if retry_after is not None:
        headers["Retry-After"] = f"{retry_after:g}"
    return 429, headers, b'{"error": {"code": "TooManyRequests", "message": "Too many requests"}}'


class ScriptedSession(requests.Session):
    """Answers each function's requests from its own script (the last answer repeats) without a network, and
    records when (on `time`) each request went out."""

    def __init__(self, time_: FakeTime | None = None, **scripts: list):
        super().__init__()
        self.scripts = scripts
        self.time = time_
        self.sent: list[tuple[str, float | None]] = []
        self.lock = threading.Lock()

    def send(self, prepared, **kwargs):
        function = prepared.url.split("/communications/callRecords/")[1].split("(")[0]
        with self.lock:
            self.sent.append((function, self.time.now if self.time else None))
            script = self.scripts[function]
            status, headers, body = script.pop(0) if len(script) > 1 else script[0]
        response = requests.Response()
        response.status_code, response.headers, response._content = status, CaseInsensitiveDict(headers), body
        response.url, response.reason, response.request = prepared.url, "", prepared
        return response


@pytest.fixture(autouse=True)
def fresh_registry():
    reset_registry()
    yield
    reset_registry()


# --- x-ms-throttle-scope -----------------------------------------------------------------------------------

@pytest.mark.parametrize("header, scope", [
    (f"Collection/{PSTN}", (FUNCTION, PSTN)),
    (f"Collection/{DR}", (FUNCTION, DR)),
    ("Tenant_Application/app-key-1", (APP,)),
    ("Tenant_Application/ReadWrite/11111111-2222-3333-4444-555555555555/app", (APP,)),  # Graph's longer form
    ("tenant_application", (APP,)),
    ("Application/app-key-1", (APP,)),  # an app's limit across tenants: still this app's scope
    ("Tenant", (TENANT,)),
    (" Tenant/ReadWrite/11111111-2222-3333-4444-555555555555", (TENANT,)),
    (None, (FUNCTION, PSTN)),
    ("", (FUNCTION, PSTN)),
    ("User/someone", (FUNCTION, PSTN)),
    ("Collection", (FUNCTION, PSTN)),
])
def test_the_throttle_scope_header_names_the_scope(header, scope):
    assert throttle_scope(header, PSTN) == scope


# --- the three scopes hold ---------------------------------------------------------------------------------

def test_a_request_takes_its_slot_in_all_three_scopes_at_once():
    t = FakeTime()
    scopes = ScopeRegistry(t.clock, t.sleep)
    limiter = scopes.limiter("http://g", "tenant", "app", limits(function=60, app=30, tenant=600))
    # The app scope (30/min: a slot every 2 s) binds although the function scope would allow one a second.
    starts = [limiter.reserve(PSTN).at - t.now for _ in range(5)]
    assert starts == pytest.approx([0, 2, 4, 6, 8])
    state = limiter.state()
    assert {key: s.requests for key, s in state.items()} == {(FUNCTION, PSTN): 5, (APP,): 5, (TENANT,): 5}
    slot = limiter.reserve(DR)  # another function, the same app: queued behind the app's schedule
    assert slot.at - t.now == pytest.approx(10) and slot.bound_by == APP


def test_a_request_waiting_for_its_own_function_leaves_earlier_shared_slots_to_the_others():
    t = FakeTime()
    limiter = ScopeRegistry(t.clock, t.sleep).limiter("http://g", "tenant", "app", limits(6, 600, 6000))
    pstn = [limiter.reserve(PSTN).at - t.now for _ in range(4)]
    assert pstn == pytest.approx([0, 10, 20, 30])  # 6 a minute
    # The app scope (a cell every 0.1 s) has room long before PSTN's next slots: other functions take it.
    assert [limiter.reserve(f).at - t.now for f in (DR, SMS, "getOther")] == pytest.approx([0.1, 0.2, 0.3])


@pytest.mark.parametrize("clock_step", [0.0, 0.05, 2.0], ids=["queued", "busy", "idle-spells"])
def test_each_scope_holds_its_limit_in_any_60_s_with_threads_and_several_clients(clock_step):
    # Two app identities of one tenant, three functions each. Per function 47/min would make 141/min an app,
    # above its 90; two apps at 90 would make 180/min, above the tenant's 120: every scope has to do its part.
    jitter = JitterClock(seed=5, step=clock_step)
    per_thread = 60
    scopes = ScopeRegistry(jitter.clock, sleep=lambda s: None)
    configured = limits(function=47, app=90, tenant=120)
    apps = {app: [scopes.limiter("https://graph.example.com", "tenant-1", app, configured) for _ in range(2)]
            for app in ("app-a", "app-b")}  # two clients of each app: they must get the same limiter
    assert all(a is b for a, b in apps.values()) and apps["app-a"][0] is not apps["app-b"][0]
    slots: list[tuple[str, str, float]] = []
    lock = threading.Lock()

    def work(app: str, client: int, function: str):
        for _ in range(per_thread):
            slot = apps[app][client].acquire(function)
            with lock:
                slots.append((app, function, slot.at))

    threads = [threading.Thread(target=work, args=(app, client, function))
               for app in apps for client in (0, 1) for function in (PSTN, DR, SMS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(slots) == 12 * per_thread
    for app in apps:
        for function in (PSTN, DR, SMS):
            assert most_in_any_span([at for a, f, at in slots if (a, f) == (app, function)]) <= 47 + EXCESS
        assert most_in_any_span([at for a, _, at in slots if a == app]) <= 90 + EXCESS
    assert most_in_any_span([at for _, _, at in slots]) <= 120 + EXCESS


def simulate_threads(scopes_limits: ScopeLimits, feeds: dict[str, list[str]], threads: int, latency: float,
                     minutes: float = 20, seed: int = 3) -> list[tuple[str, str, float]]:
    """Threads as a discrete-event simulation on a virtual clock: each thread reserves a slot, "sleeps" until it,
    spends `latency` (jittered) on the request and reserves again. Returns (app, function, start) of each
    request: what real threads would do, without the real waiting."""
    import heapq

    now = [0.0]
    scopes = ScopeRegistry(lambda: now[0], lambda s: None)
    limiters = {app: scopes.limiter("https://graph.example.com", "tenant-1", app, scopes_limits) for app in feeds}
    rng = random.Random(seed)
    ready = [(rng.uniform(0, 1), app, function, n)
             for app, functions in feeds.items() for function in functions for n in range(threads)]
    heapq.heapify(ready)
    starts = []
    while ready[0][0] < minutes * 60:
        now[0], app, function, n = heapq.heappop(ready)
        slot = limiters[app].reserve(function)
        starts.append((app, function, slot.at))
        heapq.heappush(ready, (slot.at + latency * rng.uniform(0.5, 1.5), app, function, n))
    return starts


@pytest.mark.parametrize("configured, feeds, binding", [
    (limits(), {"app": [PSTN]}, 47),                                   # one feed: its function
    (limits(), {"app": [PSTN, DR]}, 2 * 47),                           # two feeds: each its function
    (limits(), {"app": [f"getFeed{i}" for i in range(6)]}, 190),        # six functions: the app
    (limits(47, 90, 120), {"a": [PSTN, DR, SMS], "b": [PSTN, DR, SMS]}, 120),  # two apps: the tenant
])
def test_the_binding_scope_is_used_to_at_least_0_9_of_its_rate(configured, feeds, binding):
    # A request's slot is one instant in all its scopes, so a function-bound request can push the shared
    # scopes' schedule ahead; with each thread holding one slot at a time that costs little.
    starts = simulate_threads(configured, feeds, threads=8, latency=1.0)
    steady = [at for _, _, at in starts if 120 <= at < 1080]  # minutes 2-18: no warm-up, no tail
    achieved = len(steady) / 16
    assert 0.9 * binding <= achieved <= binding + 2 / 16
    for app, functions in feeds.items():
        mine = [at for a, _, at in starts if a == app]
        assert most_in_any_span(mine) <= configured.app_per_minute + EXCESS
        for function in functions:
            assert most_in_any_span([at for a, f, at in starts if (a, f) == (app, function)]) <= \
                configured.function_per_minute + EXCESS
    assert most_in_any_span([at for _, _, at in starts]) <= configured.tenant_per_minute + EXCESS


def test_the_defaults_stay_under_microsofts_figures_and_near_them():
    # Documented: 50 per function, 200 per app, 1,000 per tenant in 60 s. One function flat out, for 10 minutes.
    t = FakeTime()
    scopes = ScopeRegistry(t.clock, t.sleep)
    limiter = limiter_for(settings(), scopes)
    starts = [limiter.acquire(PSTN).at for _ in range(470)]
    assert most_in_any_span(starts) <= 50
    assert (len(starts) - 1) / (starts[-1] - starts[0]) * 60 >= 0.9 * 50
    # Five functions at once: the app's 190 binds, under 200.
    t2 = FakeTime()
    limiter = limiter_for(settings(), ScopeRegistry(t2.clock, t2.sleep))
    starts = [limiter.acquire(f"getFeed{i % 5}").at for i in range(1900)]
    assert most_in_any_span(starts) <= 200
    assert (len(starts) - 1) / (starts[-1] - starts[0]) * 60 >= 0.9 * 200


def test_clients_of_the_process_share_one_limiter_by_endpoint_tenant_and_app():
    first = limiter_for(settings(**per_minute(47, 190, 950)))
    assert limiter_for(settings()) is first                            # another client, the same budget
    assert limiter_for(settings("http://127.0.0.1:10")) is not first    # another endpoint
    a = limiter_for(settings(client_id="app-a"))
    b = limiter_for(settings(client_id="app-b"))
    other_tenant = limiter_for(settings(client_id="app-a", tenant="tenant-2"))
    assert a is not b and a.key == ("https://graph.example.com", "tenant-1", "app-a")
    assert a is not other_tenant
    # The tenant scope is one for all the tenant's apps; the app scope one per app.
    a.reserve(PSTN), b.reserve(PSTN), other_tenant.reserve(PSTN)
    assert a.state()[(TENANT,)].requests == b.state()[(TENANT,)].requests == 2
    assert a.state()[(APP,)].requests == b.state()[(APP,)].requests == 1
    assert other_tenant.state()[(TENANT,)].requests == 1
    # A managed identity counts as its client id.
    mi = settings("https://graph.example.com", GRAPH_CREDENTIAL="managed_identity",
                  AZURE_CLIENT_ID="mi-client-id")
    assert limiter_for(mi).key == ("https://graph.example.com", "default", "mi-client-id")


def test_the_latest_settings_of_a_shared_limiter_win():
    t = FakeTime()
    scopes = ScopeRegistry(t.clock, t.sleep)
    limiter = limiter_for(settings(**per_minute(60, 600, 6000)), scopes)
    assert limiter_for(settings(**per_minute(30, 600, 6000)), scopes) is limiter
    assert limiter.state()[(APP,)].configured_per_minute == 600
    limiter.reserve(PSTN)
    assert limiter.state()[(FUNCTION, PSTN)].configured_per_minute == 30


# --- 429s ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("header, slowed", [
    (f"Collection/{PSTN}", (FUNCTION, PSTN)),
    ("Tenant_Application/app-key", (APP,)),
    ("Tenant", (TENANT,)),
    (None, (FUNCTION, PSTN)),
    ("Something/else", (FUNCTION, PSTN)),
])
def test_a_429_slows_only_the_scope_it_names(header, slowed):
    t = FakeTime()
    scopes = ScopeRegistry(t.clock, t.sleep)
    limiter = scopes.limiter("http://g", "tenant", "app", limits(function=60, app=600, tenant=6000))
    neighbour = scopes.limiter("http://g", "tenant", "other-app", limits(function=60, app=600, tenant=6000))
    neighbour.reserve(PSTN)
    slot = limiter.reserve(PSTN)
    limiter.reserve(DR)
    assert limiter.throttled(slot, header, None) == slowed[0]
    rates = {key: s.rate_per_minute / s.configured_per_minute for key, s in limiter.state().items()}
    assert rates == {key: (0.5 if key == slowed else 1.0) for key in rates}
    # The other app of the tenant shares the tenant scope only.
    theirs = {key: s.rate_per_minute / s.configured_per_minute for key, s in neighbour.state().items()}
    assert theirs == {key: (0.5 if key == slowed == (TENANT,) else 1.0) for key in theirs}


def test_a_collection_header_naming_another_function_slows_that_one():
    t = FakeTime()
    limiter = ScopeRegistry(t.clock, t.sleep).limiter("http://g", "t", "a", limits(60, 600, 6000))
    limiter.reserve(DR)
    slot = limiter.reserve(PSTN)
    assert limiter.throttled(slot, f"Collection/{DR}", None) == FUNCTION
    state = limiter.state()
    assert state[(FUNCTION, DR)].rate_per_minute == 30 and state[(FUNCTION, PSTN)].rate_per_minute == 60
    limiter.throttled(limiter.reserve(PSTN), "Collection/getdirectroutingcalls", None)  # names are case-blind
    assert limiter.state()[(FUNCTION, DR)].rate_per_minute == 15
    # A collection this limiter never called: the header can only mean the request's own function.
    limiter.throttled(limiter.reserve(PSTN), "Collection/getSomethingElse", None)
    assert limiter.state()[(FUNCTION, PSTN)].rate_per_minute == 30


@pytest.mark.parametrize("header, held", [(f"Collection/{PSTN}", (FUNCTION, PSTN)), ("Tenant_Application/x", (APP,)),
                                          ("Tenant", (TENANT,)), (None, (FUNCTION, PSTN))])
def test_retry_after_holds_the_scope_it_names_and_no_other(header, held):
    t = FakeTime()
    scopes = ScopeRegistry(t.clock, t.sleep)
    limiter = scopes.limiter("http://g", "tenant", "app", limits(function=600, app=6000, tenant=60000))
    neighbour = scopes.limiter("http://g", "tenant", "other-app", limits(function=600, app=6000, tenant=60000))
    limiter.throttled(limiter.reserve(PSTN), header, 30)
    pstn, dr, theirs = limiter.reserve(PSTN), limiter.reserve(DR), neighbour.reserve(PSTN)
    assert pstn.at - t.now >= 30                                             # every scope of it is held
    assert (dr.at - t.now >= 30) == (held in ((APP,), (TENANT,)))            # DR shares the app and tenant
    assert (theirs.at - t.now >= 30) == (held == (TENANT,))                  # the other app only the tenant
    assert limiter.state()[held].held_until == pytest.approx(t.now + 30)
    # After the hold the scope resumes spaced, at its halved rate: no burst of what piled up.
    later = limiter.reserve(PSTN)
    assert later.at - pstn.at >= 60 / 300 - 1e-9 if held == (FUNCTION, PSTN) else later.at > pstn.at


def test_retry_after_holds_every_thread_in_that_scope():
    # A thread asleep until its slot when the 429 comes back must not send into the hold.
    t = FakeTime()
    woke = threading.Event()
    slept = threading.Event()

    def sleep(seconds):
        slept.set()
        woke.wait(5)

    scopes = ScopeRegistry(t.clock, sleep)
    limiter = scopes.limiter("http://g", "tenant", "app", limits(function=60, app=600, tenant=6000))
    first = limiter.reserve(PSTN)  # the next one waits a second
    got = []
    thread = threading.Thread(target=lambda: got.append(limiter.acquire(PSTN)))
    thread.start()
    assert slept.wait(5)
    limiter.throttled(first, None, 20)  # the 429 arrives while the thread sleeps
    woke.set()
    thread.join(5)
    assert got and got[0].at >= t.now + 20  # it went again, after the hold


def test_requests_in_flight_when_the_rate_was_cut_do_not_cut_it_again():
    t = FakeTime()
    limiter = ScopeRegistry(t.clock, t.sleep).limiter("http://g", "t", "a", limits(64, 6400, 64000))
    in_flight = [limiter.reserve(PSTN) for _ in range(4)]
    for slot in in_flight:  # four answers of one throttled moment
        limiter.throttled(slot, None, None)
    assert limiter.state()[(FUNCTION, PSTN)].rate_per_minute == 32
    # Each retry that is throttled again halves again, down to the floor of 1/16.
    for _ in range(10):
        limiter.throttled(limiter.reserve(PSTN), None, None)
    assert limiter.state()[(FUNCTION, PSTN)].rate_per_minute == 64 * SLOWDOWN_FLOOR == 4


def test_the_rate_climbs_back_by_a_16th_a_success_to_the_configured_rate():
    t = FakeTime()
    limiter = ScopeRegistry(t.clock, t.sleep).limiter("http://g", "t", "a", limits(64, 6400, 64000))
    before_cut = limiter.reserve(PSTN)
    limiter.throttled(limiter.reserve(PSTN), "Collection/getPstnCalls", 10)
    limiter.succeeded(before_cut)  # sent before the cut: says nothing of the new rate
    assert limiter.state()[(FUNCTION, PSTN)].rate_per_minute == 32
    rates = []
    for _ in range(10):
        slot = limiter.acquire(PSTN)  # the fake sleep moves the clock: past the hold, then spaced
        assert slot.at >= 1000 + 10
        limiter.succeeded(slot)
        rates.append(limiter.state()[(FUNCTION, PSTN)].rate_per_minute)
    assert rates == pytest.approx([36, 40, 44, 48, 52, 56, 60, 64, 64, 64])
    # From the floor, 15 successes.
    for _ in range(6):
        limiter.throttled(limiter.reserve(PSTN), None, None)
    assert limiter.state()[(FUNCTION, PSTN)].rate_per_minute == 4
    for _ in range(15):
        limiter.succeeded(limiter.acquire(PSTN))
    assert limiter.state()[(FUNCTION, PSTN)].rate_per_minute == 64


def test_a_slowed_scope_spaces_its_requests_at_the_slower_rate():
    t = FakeTime()
    limiter = ScopeRegistry(t.clock, t.sleep).limiter("http://g", "t", "a", limits(60, 6000, 60000))
    limiter.throttled(limiter.reserve(PSTN), None, None)
    limiter.throttled(limiter.reserve(PSTN), None, None)  # a quarter: 15 a minute, one every 4 s
    starts = [limiter.acquire(PSTN).at for _ in range(6)]
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert gaps == pytest.approx([4] * 5)
    assert limiter.acquire(DR).at == pytest.approx(t.now)  # the other function is not slowed


# --- whole clients on a scripted session --------------------------------------------------------------------

def make_client(session, t: FakeTime, **env) -> GraphClient:
    return GraphClient(settings(**env), Credential(), session=session, sleep=t.sleep, wall_clock=lambda: 0.0)


@pytest.mark.parametrize("header, kind", [(f"Collection/{PSTN}", FUNCTION), ("Tenant_Application/app", APP),
                                          ("Tenant", TENANT), (None, FUNCTION)])
def test_the_client_counts_429s_by_scope_and_honours_retry_after_per_scope(header, kind):
    t = FakeTime()
    reset_registry(t.clock, t.sleep)
    session = ScriptedSession(t, **{PSTN: [throttled(header, 30), page()]})
    with closing(make_client(session, t, **per_minute(600, 6000, 60000))) as client:
        assert len(list(client.pages(PSTN, DAY, NEXT_DAY))[0].rows) == 1
        stats = client.stats.snapshot()
    assert stats.responses_429 == 1 and stats.retries == 1 and stats.throttle_wait_seconds == 30
    assert {k: getattr(stats, f"responses_429_{k}") for k in (FUNCTION, APP, TENANT)} == \
        {k: int(k == kind) for k in (FUNCTION, APP, TENANT)}
    (_, throttled_at), (_, retried_at) = session.sent
    assert retried_at - throttled_at == pytest.approx(30)
    state = limiter_for(settings(**per_minute(600, 6000, 60000)), registry()).state()
    slowed = (FUNCTION, PSTN) if kind == FUNCTION else (kind,)
    # Halved by the 429, a 16th back by the retry's success.
    assert {key: s.rate_per_minute / s.configured_per_minute for key, s in state.items()} == \
        pytest.approx({key: 0.5 + 1 / 16 if key == slowed else 1.0 for key in state})


@pytest.mark.parametrize("header, dr_waits", [(f"Collection/{PSTN}", False), ("Tenant_Application/app", True),
                                              ("Tenant", True), (None, False)])
def test_another_function_waits_out_a_hold_only_when_it_shares_the_scope(header, dr_waits):
    t = FakeTime()
    reset_registry(t.clock, t.sleep)
    session = ScriptedSession(t, **{PSTN: [throttled(header, 30)], DR: [page()]})
    # Without retries the throttled request gives up at once: the hold it left is what the other client meets.
    with closing(make_client(session, t, GRAPH_MAX_RETRIES="0")) as pstn, closing(make_client(session, t)) as dr:
        with pytest.raises(GraphRetriesExhaustedError):
            list(pstn.pages(PSTN, DAY, NEXT_DAY))
        list(dr.pages(DR, DAY, NEXT_DAY))
        waited = dr.stats.snapshot()
    if dr_waits:
        assert waited.rate_limit_wait_seconds == pytest.approx(30)
    else:  # at most the app cell the throttled request took
        assert waited.rate_limit_wait_seconds <= 60 / 190
    if dr_waits:
        assert getattr(waited, f"slot_wait_{APP if 'Application' in header else TENANT}_seconds") == pytest.approx(30)


def test_the_client_reports_which_scope_it_waited_for():
    t = FakeTime()
    reset_registry(t.clock, t.sleep)
    session = ScriptedSession(t, **{PSTN: [page()], DR: [page()]})
    # The app scope (60/min) binds two functions of 60/min each.
    with closing(make_client(session, t, **per_minute(60, 60, 6000))) as client:
        for _ in range(5):
            list(client.pages(PSTN, DAY, NEXT_DAY))
            list(client.pages(DR, DAY, NEXT_DAY))
        stats = client.stats.snapshot()
    assert stats.rate_limit_wait_seconds == pytest.approx(9)  # 10 requests at 1 a second
    assert stats.slot_wait_app_seconds == pytest.approx(stats.rate_limit_wait_seconds)
    assert stats.slot_wait_function_seconds == stats.slot_wait_tenant_seconds == 0


def test_clients_of_the_process_feel_each_others_holds():
    # Separate clients (separate sessions, as separate collector runs in one process have): one budget.
    t = FakeTime()
    reset_registry(t.clock, t.sleep)
    one = ScriptedSession(t, **{PSTN: [throttled("Tenant", 45)]})
    two = ScriptedSession(t, **{DR: [page()]})
    with closing(make_client(one, t, GRAPH_MAX_RETRIES="0")) as first, closing(make_client(two, t)) as second:
        with pytest.raises(GraphRetriesExhaustedError):
            list(first.pages(PSTN, DAY, NEXT_DAY))
        list(second.pages(DR, DAY, NEXT_DAY))
        assert second.stats.snapshot().slot_wait_tenant_seconds == pytest.approx(45)
    assert [sent for _, sent in two.sent] == [pytest.approx(1000 + 45)]


def test_a_403_names_the_function_that_was_refused():
    t = FakeTime()
    reset_registry(t.clock, t.sleep)
    refused = (403, {"Content-Type": "application/json"},
               b'{"error": {"code": "Forbidden", "message": "Missing role permissions"}}')
    with closing(make_client(ScriptedSession(t, **{SMS: [refused]}), t, GRAPH_API_VERSION="beta")) as client:
        with pytest.raises(GraphPermissionError) as err:
            list(client.pages(SMS, DAY, NEXT_DAY))
    message = str(err.value)
    assert "getSmsLog was refused (403): the app identity needs the Microsoft Graph application permission" in message
    assert "CallRecords.Read.All" in message and "CallRecord-PstnCalls.Read.All" in message
    assert TOKEN not in message and "Bearer" not in message


# --- over real HTTP ----------------------------------------------------------------------------------------

class ThrottlingGraph:
    """A local server: the first getPstnCalls request answers 429 with a scope header and Retry-After: 1, every
    other request a one-row page. It records when each request arrived."""

    def __init__(self, scope_header: str):
        self.arrivals: list[tuple[str, int, float]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                function = self.path.split("/communications/callRecords/")[1].split("(")[0]
                with outer.lock:
                    first = function == PSTN and not any(f == PSTN for f, _, _ in outer.arrivals)
                    status, headers, body = throttled(scope_header, 1) if first else page()
                    outer.arrivals.append((function, status, time.monotonic()))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("header, dr_held", [(f"Collection/{PSTN}", False), ("Tenant", True)])
def test_over_http_a_429_holds_its_scope_and_lets_the_others_go_on(header, dr_held):
    server = ThrottlingGraph(header)
    try:
        config = settings(server.url, **per_minute(60_000, 60_000, 60_000))
        with closing(GraphClient(config, Credential())) as pstn, closing(GraphClient(config, Credential())) as dr:
            done = threading.Event()

            def direct_routing():
                while not done.is_set():
                    list(dr.pages(DR, DAY, NEXT_DAY))
                    time.sleep(0.05)

            other = threading.Thread(target=direct_routing)
            other.start()
            try:
                rows = list(pstn.pages(PSTN, DAY, NEXT_DAY))
            finally:
                done.set()
                other.join(5)
        assert len(rows) == 1 and pstn.stats.snapshot().responses_429 == 1
        kind = FUNCTION if header.startswith("Collection") else TENANT
        assert getattr(pstn.stats.snapshot(), f"responses_429_{kind}") == 1
        (_, _, throttled_at), = [a for a in server.arrivals if a[1] == 429]
        retried_at = next(at for f, s, at in server.arrivals if f == PSTN and s == 200)
        assert retried_at - throttled_at >= 0.95
        during = [at for f, _, at in server.arrivals if f == DR and throttled_at + 0.2 < at < throttled_at + 0.9]
        assert (during == []) == dr_held  # the tenant's hold stops DR too; PSTN's own hold does not
    finally:
        server.close()
