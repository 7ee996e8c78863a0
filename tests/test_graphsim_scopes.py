"""The simulator's Graph scopes (devstack/graphsim/scopes.py) over real HTTP: each scope refuses at its limit with
429, Retry-After and x-ms-throttle-scope, admits again after the Retry-After, and keeps its windows apart."""
from __future__ import annotations

import base64
import json
import time

import pytest
import requests

from devstack.graphsim.scopes import app_key, parse_limits
from devstack.graphsim.server import GraphSimulator

WINDOW = "fromDateTime=2026-06-01T00:00:00Z,toDateTime=2026-06-02T00:00:00Z"


def _url(sim, function: str = "getPstnCalls") -> str:
    return f"{sim.url}/v1.0/communications/callRecords/{function}({WINDOW})"


def _jwt(appid: str) -> str:
    header, payload = (base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")
                       for part in ({"alg": "none"}, {"appid": appid}))
    return f"Bearer {header}.{payload}.sig"


def _codes(sim, n: int, function: str = "getPstnCalls", token: str = "Bearer t") -> list[requests.Response]:
    with requests.Session() as session:
        return [session.get(_url(sim, function), headers={"Authorization": token}, timeout=10) for _ in range(n)]


@pytest.fixture
def sim():
    with GraphSimulator(seed=3, rows_per_day=10) as simulator:
        yield simulator


def test_the_function_scope_refuses_its_51st_request_and_names_itself(sim):
    sim.configure(limits="documented", time_scale=20)  # 50 per 3 s
    answers = _codes(sim, 53)
    assert [a.status_code for a in answers].count(200) == 50
    refused = answers[-1]
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "TooManyRequests"
    assert refused.headers["x-ms-throttle-scope"] == "Collection/getPstnCalls"
    assert 0 < float(refused.headers["Retry-After"]) <= 3.0
    time.sleep(float(refused.headers["Retry-After"]) + 0.05)
    assert _codes(sim, 1)[0].status_code == 200
    stats = sim.stats()["limits"]
    assert stats["scopes"]["Collection/getPstnCalls"] == {"admitted": 51, "refused": 3}
    assert stats["functions"]["getPstnCalls"]["admitted"] == 51


def test_functions_have_windows_of_their_own(sim):
    sim.configure(limits={"per_function": "5/60"}, time_scale=10)
    assert [a.status_code for a in _codes(sim, 6)].count(429) == 1
    assert {a.status_code for a in _codes(sim, 5, "getDirectRoutingCalls")} == {200}


def test_the_app_and_tenant_scopes_count_across_functions_and_apps(sim):
    sim.configure(limits={"per_app": "6/60", "per_tenant": "10/60"}, time_scale=10)
    a, b = _jwt("app-a"), _jwt("app-b")
    assert {r.status_code for r in _codes(sim, 3, token=a) + _codes(sim, 3, "getDirectRoutingCalls", token=a)} == {200}
    refused = _codes(sim, 1, token=a)[0]
    assert refused.status_code == 429 and refused.headers["x-ms-throttle-scope"] == "Tenant_Application/app-a"
    assert {r.status_code for r in _codes(sim, 4, token=b)} == {200}, "another app has its own 6"
    refused = _codes(sim, 1, token=b)[0]
    assert refused.headers["x-ms-throttle-scope"] == "Tenant", "but the tenant's 10 are spent"


def test_whole_second_retry_after_without_a_time_scale(sim):
    sim.configure(limits={"per_function": "1/60"})
    refused = _codes(sim, 2)[1]
    assert refused.status_code == 429 and refused.headers["Retry-After"] in {"59", "60"}


def test_a_token_is_never_the_app_key():
    assert app_key("Bearer some-opaque-secret") == "application"
    assert app_key(_jwt("11111111-2222")) == "11111111-2222"
    assert app_key(None) == "application"


@pytest.mark.parametrize("bad, named", [({"per_function": "fifty"}, "limits.per_function"),
                                        ({"per_app": {"requests": 0, "per_seconds": 60}}, "limits.per_app"),
                                        ({"per_everything": "1/1"}, "limits must be")])
def test_bad_limits_are_refused_with_their_name(bad, named):
    with pytest.raises(ValueError, match=named):
        parse_limits(bad)


def test_the_control_api_refuses_a_bad_knob(sim):
    answer = requests.post(f"{sim.url}/_sim/config", data=json.dumps({"time_scale": 0}), timeout=10)
    assert answer.status_code == 400 and "time_scale" in answer.text
