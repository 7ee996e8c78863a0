"""The simulator's `limits` and `time_scale` knobs over real HTTP: Graph's "PSTN call records limits" per
function, per app and per tenant, each refusing at its limit with 429, Retry-After and x-ms-throttle-scope,
and admitting again once the Retry-After has passed.

Counting tests use unscaled 60-second windows, so a slow machine cannot let a window expire mid-test; only
the tests that wait out a Retry-After use a time scale, with windows long enough (1.5 s) that a handful of
requests always fits in one."""
from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from devstack.graphsim import GraphSimulator

ROOT = Path(__file__).resolve().parents[1]
DAY, NEXT_DAY = "2024-05-01", "2024-05-02"
OPAQUE = "opaque-secret-token-value"
MADE_UP = {"getMadeUpCalls": {"rows": "directRouting", "to_inclusive": False, "row_type": "madeUpLogRow"}}
SCALED = re.compile(r"\d+\.\d{3}")  # a scaled Retry-After: decimal seconds to the millisecond


def jwt(appid: str, claim: str = "appid") -> str:
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part({claim: appid, 'tid': 'contoso'})}.signature"


APP_A, APP_B = jwt("app-a"), jwt("app-b", claim="azp")


@pytest.fixture(scope="module")
def sim():
    with GraphSimulator(port=0, seed=1, rows_per_day=10) as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def clean(sim):
    sim.configure(limits=None, time_scale=1, rate_limit=None, functions={}, token=None)
    sim.reset()
    yield


def url(sim, function: str = "getPstnCalls") -> str:
    return f"{sim.url}/v1.0/communications/callRecords/{function}(fromDateTime={DAY},toDateTime={NEXT_DAY})"


def call(sim, function: str = "getPstnCalls", token: str = OPAQUE) -> requests.Response:
    # A connection per request: on a kept-alive one, http.server's separate header and body writes meet the
    # client's delayed ACK (Nagle), about 40 ms a request, and the 400-request tests would take 16 s.
    return requests.get(url(sim, function), headers={"Authorization": f"Bearer {token}"}, timeout=10)


def calls(sim, n: int, function: str = "getPstnCalls", token: str = OPAQUE) -> list[int]:
    return [call(sim, function, token).status_code for _ in range(n)]


def control(sim, path: str, payload: dict | None = None) -> requests.Response:
    if payload is None:
        return requests.get(sim.url + path, timeout=10)
    return requests.post(sim.url + path, data=json.dumps(payload), timeout=10)


# --- the knobs ---------------------------------------------------------------------------------------
def test_limits_are_off_by_default_and_documented_is_graphs_figures(sim):
    config = control(sim, "/_sim/config").json()
    assert config["limits"] is None and config["time_scale"] == 1
    config = control(sim, "/_sim/config", {"limits": "documented"}).json()
    assert config["limits"] == {"per_function": {"*": {"requests": 50, "per_seconds": 60}},
                                "per_app": {"requests": 200, "per_seconds": 60},
                                "per_tenant": {"requests": 1000, "per_seconds": 60}}


def test_every_limit_spelling_is_accepted(sim):
    config = sim.configure(limits={"per_function": {"getPstnCalls": "5/60", "*": {"requests": 7, "per_seconds": 30}},
                                   "per_app": None, "per_tenant": "9/10"}, time_scale=2.5)
    assert config["limits"]["per_function"] == {"getpstncalls": {"requests": 5, "per_seconds": 60},
                                                "*": {"requests": 7, "per_seconds": 30}}
    assert config["limits"]["per_app"] is None and config["limits"]["per_tenant"]["requests"] == 9
    assert config["time_scale"] == 2.5
    assert sim.configure(limits={"per_function": "3/60"})["limits"]["per_function"] == {
        "*": {"requests": 3, "per_seconds": 60}}


@pytest.mark.parametrize("knobs, named", [
    ({"limits": {"per_function": "fifty"}}, "limits.per_function"),
    ({"limits": {"per_function": {"getPstnCalls": "0/60"}}}, "limits.per_function.getPstnCalls"),
    ({"limits": {"per_app": {"requests": 0, "per_seconds": 60}}}, "limits.per_app"),
    ({"limits": {"per_tenant": {"requests": 5, "per_seconds": 0}}}, "limits.per_tenant"),
    ({"limits": {"per_minute": "1/60"}}, "limits must be"),
    ({"limits": "documentd"}, "limits must be"),
    ({"limits": 50}, "limits must be"),
    ({"time_scale": 0}, "time_scale"),
    ({"time_scale": -2}, "time_scale"),
    ({"time_scale": "fast"}, "time_scale"),
    ({"time_scale": True}, "time_scale"),
])
def test_bad_limit_knobs_are_a_400_naming_the_knob_and_change_nothing(sim, knobs, named):
    answer = control(sim, "/_sim/config", knobs)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "BadRequest" and named in answer.json()["error"]["message"]
    config = control(sim, "/_sim/config").json()
    assert config["limits"] is None and config["time_scale"] == 1


# --- each scope at its limit -------------------------------------------------------------------------
def test_the_function_scope_refuses_the_51st_with_whole_seconds_and_its_name(sim):
    sim.configure(limits="documented")
    assert calls(sim, 50) == [200] * 50
    refused = call(sim)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "TooManyRequests" and error["innerError"]["request-id"]
    assert refused.headers["x-ms-throttle-scope"] == "Collection/getPstnCalls"
    assert re.fullmatch(r"\d+", refused.headers["Retry-After"])
    assert 50 <= int(refused.headers["Retry-After"]) <= 60  # slack for a slow machine; never 0


def test_function_windows_are_independent(sim):
    sim.configure(limits={"per_function": "3/60"}, functions=MADE_UP)
    assert calls(sim, 4) == [200, 200, 200, 429]
    assert calls(sim, 4, "getDirectRoutingCalls") == [200, 200, 200, 429]
    refused = call(sim, "getMadeUpCalls")
    assert refused.status_code == 200  # an unnamed function has a window of its own under "*"
    functions = sim.stats()["limits"]["functions"]
    assert {name: entry["admitted"] for name, entry in functions.items()} == {
        "getPstnCalls": 3, "getDirectRoutingCalls": 3, "getMadeUpCalls": 1}


def test_per_function_names_match_case_insensitively_and_star_covers_the_rest(sim):
    sim.configure(limits={"per_function": {"GETPSTNCALLS": "2/60", "*": "1/60"}}, functions=MADE_UP)
    assert calls(sim, 1) + calls(sim, 2, "GetPstnCalls") == [200, 200, 429]
    refused = call(sim, "getpstncalls")
    assert refused.headers["x-ms-throttle-scope"] == "Collection/getPstnCalls"  # as the function spells it
    assert calls(sim, 2, "getDirectRoutingCalls") == [200, 429]
    assert calls(sim, 2, "getMadeUpCalls") == [200, 429]


def test_a_function_named_with_null_has_no_per_function_limit(sim):
    sim.configure(limits={"per_function": {"getDirectRoutingCalls": None, "*": "1/60"}})
    assert calls(sim, 2) == [200, 429]
    assert set(calls(sim, 5, "getDirectRoutingCalls")) == {200}


def test_each_app_gets_its_own_200_keyed_by_the_tokens_appid_or_azp(sim):
    sim.configure(limits={"per_app": "200/60"})
    assert set(calls(sim, 200, token=APP_A)) == {200}
    refused = call(sim, "getDirectRoutingCalls", token=APP_A)  # the app's window spans functions
    assert refused.status_code == 429
    assert refused.headers["x-ms-throttle-scope"] == "Tenant_Application/app-a"
    assert set(calls(sim, 200, "getDirectRoutingCalls", token=APP_B)) == {200}
    assert call(sim, token=APP_B).headers["x-ms-throttle-scope"] == "Tenant_Application/app-b"
    scopes = sim.stats()["limits"]["scopes"]
    assert scopes["Tenant_Application/app-a"] == {"admitted": 200, "refused": 1}
    assert scopes["Tenant_Application/app-b"] == {"admitted": 200, "refused": 1}


def test_a_token_that_is_not_a_jwt_is_never_echoed(sim):
    sim.configure(limits={"per_app": "1/60"})
    assert call(sim).status_code == 200
    refused = call(sim)
    assert refused.headers["x-ms-throttle-scope"] == "Tenant_Application/application"
    seen = [refused.text, json.dumps(dict(refused.headers)), control(sim, "/_sim/stats").text,
            control(sim, "/_sim/log").text, control(sim, "/_sim/config").text]
    assert not any(OPAQUE in text for text in seen)


def test_an_appid_a_header_cannot_carry_is_reported_as_application(sim):
    sim.configure(limits={"per_app": "1/60"})
    token = jwt("app-应用")  # beyond latin-1, which http.server writes headers in
    assert call(sim, token=token).status_code == 200
    refused = call(sim, token=token)
    assert refused.status_code == 429 and refused.headers["x-ms-throttle-scope"] == "Tenant_Application/application"


def test_two_opaque_tokens_have_app_windows_of_their_own(sim):
    sim.configure(limits={"per_app": "1/60"})
    assert calls(sim, 2, token="opaque-one") == [200, 429]
    assert calls(sim, 1, token="opaque-two") == [200]


def test_the_tenant_counts_every_app_and_function_and_refusals_occupy_nothing(sim):
    sim.configure(limits={"per_app": "2/60", "per_tenant": "4/60"})
    assert calls(sim, 1, token=APP_A) + calls(sim, 1, "getDirectRoutingCalls", token=APP_A) == [200, 200]
    # Refused requests take no place in any window: were they counted, the tenant would be full by now.
    assert calls(sim, 5, token=APP_A) == [429] * 5
    assert calls(sim, 1, token=APP_B) + calls(sim, 1, "getDirectRoutingCalls") == [200, 200]
    refused = call(sim, token=jwt("app-c"))
    assert refused.status_code == 429 and refused.headers["x-ms-throttle-scope"] == "Tenant"
    scopes = sim.stats()["limits"]["scopes"]
    assert scopes["Tenant"] == {"admitted": 4, "refused": 1}
    assert scopes["Tenant_Application/app-a"] == {"admitted": 2, "refused": 5}


@pytest.mark.parametrize("limits, named", [
    ({"per_function": "2/60", "per_tenant": "2/120"}, "Tenant"),
    ({"per_function": "2/120", "per_tenant": "2/60"}, "Collection/getPstnCalls"),
], ids=["tenant-longer", "function-longer"])
def test_the_scope_needing_the_longest_wait_is_named_with_its_wait(sim, limits, named):
    sim.configure(limits=limits)
    assert calls(sim, 2) == [200, 200]
    refused = call(sim)  # both scopes are full; one of them frees a place a minute later
    assert refused.headers["x-ms-throttle-scope"] == named
    assert 110 <= int(refused.headers["Retry-After"]) <= 120
    scopes = sim.stats()["limits"]["scopes"]
    assert scopes[named]["refused"] == 1 and sum(s["refused"] for s in scopes.values()) == 1


# --- waiting out a Retry-After on a time scale --------------------------------------------------------
@pytest.mark.parametrize("limits, token, other, named", [
    ({"per_function": "5/60"}, APP_A, ("getDirectRoutingCalls", APP_A), "Collection/getPstnCalls"),
    ({"per_app": "5/60"}, APP_A, ("getPstnCalls", APP_B), "Tenant_Application/app-a"),
    ({"per_tenant": "5/60"}, APP_A, None, "Tenant"),
], ids=["function", "app", "tenant"])
def test_each_scope_admits_again_after_its_scaled_retry_after(sim, limits, token, other, named):
    sim.configure(limits=limits, time_scale=40)  # 5 per 1.5 s
    assert calls(sim, 5, token=token) == [200] * 5
    refused = call(sim, token=token)
    assert refused.status_code == 429 and refused.headers["x-ms-throttle-scope"] == named
    retry_after = refused.headers["Retry-After"]
    assert SCALED.fullmatch(retry_after) and 0.001 <= float(retry_after) <= 1.5
    if other:  # a scope that is not full still admits meanwhile
        assert call(sim, *other).status_code == 200
    # The header is rounded to the millisecond: a few more milliseconds are the client's margin.
    time.sleep(float(retry_after) + 0.005)
    assert call(sim, token=token).status_code == 200


def test_a_time_scale_shortens_the_windows_themselves(sim):
    sim.configure(limits={"per_function": "2/60"}, time_scale=60)  # 2 per second
    assert calls(sim, 3) == [200, 200, 429]
    time.sleep(1.1)
    assert calls(sim, 3) == [200, 200, 429]


# --- beside the older rate_limit knob ----------------------------------------------------------------
def test_rate_limit_still_applies_and_a_request_the_scopes_refuse_takes_no_place_in_it(sim):
    sim.configure(rate_limit="3/60", limits={"per_function": {"getPstnCalls": "1/60"}})
    assert calls(sim, 4) == [200, 429, 429, 429]
    assert calls(sim, 2, "getDirectRoutingCalls") == [200, 200]
    refused = call(sim, "getDirectRoutingCalls")
    assert refused.status_code == 429 and "x-ms-throttle-scope" not in refused.headers
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    stats = sim.stats()
    assert stats["rate_limited"] == 4 and stats["by_status"] == {"200": 3, "429": 4}


# --- stats -------------------------------------------------------------------------------------------
def test_stats_report_scopes_and_functions_with_monotonic_times_and_reset_clears_them(sim):
    sim.configure(limits={"per_function": "3/60", "per_app": "100/60", "per_tenant": "100/60"})
    before = time.monotonic()
    calls(sim, 4, token=APP_A)
    calls(sim, 2, "getDirectRoutingCalls", token=APP_A)
    after = time.monotonic()
    stats = control(sim, "/_sim/stats").json()["limits"]
    assert stats["scopes"] == {
        "Collection/getPstnCalls": {"admitted": 3, "refused": 1},
        "Collection/getDirectRoutingCalls": {"admitted": 2, "refused": 0},
        "Tenant_Application/app-a": {"admitted": 5, "refused": 0},
        "Tenant": {"admitted": 5, "refused": 0},
    }
    pstn = stats["functions"]["getPstnCalls"]
    assert pstn["admitted"] == 3 and before <= pstn["first_admitted"] <= pstn["last_admitted"] <= after
    assert stats["functions"]["getDirectRoutingCalls"]["admitted"] == 2
    assert stats["time_scale"] == 1
    assert control(sim, "/_sim/reset", {}).json() == {"reset": True}
    assert control(sim, "/_sim/stats").json()["limits"] == {"scopes": {}, "functions": {}, "time_scale": 1}
    assert calls(sim, 3, token=APP_A) == [200] * 3  # reset empties the windows too


# --- CLI ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("limits, expected", [
    ("documented", {"requests": 50, "per_seconds": 60}),
    ('{"per_function": "7/60"}', {"requests": 7, "per_seconds": 60}),
])
def test_the_cli_takes_limits_and_a_time_scale(limits, expected):
    process = subprocess.Popen([sys.executable, "-m", "devstack.graphsim", "--port", "0", "--limits", limits,
                                "--time-scale", "50"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        match = re.fullmatch(r"graphsim listening on (http://127\.0\.0\.1:\d+)\n", process.stdout.readline())
        assert match
        config = requests.get(f"{match[1]}/_sim/config", timeout=10).json()
        assert config["limits"]["per_function"] == {"*": expected} and config["time_scale"] == 50
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_cli_refuses_bad_limits_naming_the_knob():
    done = subprocess.run([sys.executable, "-m", "devstack.graphsim", "--port", "0", "--limits", '{"per_app": "x"}'],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "limits.per_app" in done.stderr
