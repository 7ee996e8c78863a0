"""A store that is down or misconfigured: what the routes answer, what the health check reports, and that one
store's trouble does not take down the routes that need only the other (stores/outages.py decides what
"unavailable" is; stores/__init__.py builds each store when first used)."""
from __future__ import annotations

import json

import pytest
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseTimeoutError

from shared.api.calls import calls
from shared.api.health import check_health
from shared.api.http import HttpError, Response, guarded
from shared.config.settings import load_settings
from shared.stores import open_stores
from shared.stores.outages import unavailable, unreachable
from shared.stores.schema import ensure_stores

# A connection string that load_settings accepts (it has Key=Value) and the Blob SDK refuses at once.
BROKEN_BLOB = "Foo=bar"


def answer_of(exc: BaseException) -> Response:
    def handler():
        raise exc
    return guarded(handler, "test")


def busy(status: int) -> HttpResponseError:
    error = HttpResponseError(message=f"HTTP {status}")
    error.status_code = status
    return error


@pytest.mark.parametrize("exc", [ServiceRequestError("connection refused"),
                                 ServiceResponseTimeoutError("read timed out"), busy(429), busy(503), busy(408)])
def test_a_store_that_is_down_or_busy_answers_503_with_retry_after_and_no_detail(exc):
    response = answer_of(exc)
    assert response.status == 503 and response.headers["Retry-After"] == "10"
    body = json.loads(response.body)
    assert body["error"]["code"] == "StoreUnavailable" and str(exc) not in response.body.decode()


def test_any_other_failure_answers_500_without_its_message_or_trace():
    response = answer_of(RuntimeError("secret detail at /home/app/x.py line 3"))
    assert response.status == 500
    assert "secret detail" not in response.body.decode() and "Traceback" not in response.body.decode()
    assert json.loads(response.body)["error"]["code"] == "InternalError"


def test_a_refused_request_keeps_its_status_and_reason():
    response = answer_of(HttpError(400, "InvalidParameter", "limit must be a whole number", "limit"))
    assert response.status == 400
    assert json.loads(response.body) == {"error": {"code": "InvalidParameter", "message": "limit must be a whole "
                                                   "number", "target": "limit"}}


def test_only_a_store_that_did_not_answer_stops_a_collection_run():
    assert unreachable(ServiceRequestError("refused")) and unreachable(ServiceResponseTimeoutError("timeout"))
    assert not unreachable(busy(429)) and unavailable(busy(429))
    assert not unavailable(busy(404)) and not unavailable(ValueError("bad row"))


@pytest.fixture(scope="module")
def stores_env(stack_env) -> dict[str, str]:
    """The session stack's settings, with their database, containers and archive created."""
    ensure_stores(load_settings(stack_env))
    return stack_env


def test_health_names_the_store_that_fails_and_the_one_that_answers(stores_env):
    stack_env = stores_env
    healthy, report = check_health({**stack_env, "STORAGE_CONNECTION_STRING": BROKEN_BLOB})
    assert not healthy and report["status"] == "unhealthy"
    assert report["checks"]["settings"] == "ok" and report["checks"]["cosmos"] == "ok"
    assert report["checks"]["blob"] != "ok" and BROKEN_BLOB not in json.dumps(report)

    healthy, report = check_health(stack_env)
    assert healthy and report["checks"] == {"settings": "ok", "cosmos": "ok", "blob": "ok"}


def test_a_broken_blob_setting_leaves_the_cosmos_routes_answering(stores_env):
    settings = load_settings({**stores_env, "STORAGE_CONNECTION_STRING": BROKEN_BLOB})
    response = guarded(lambda: calls({"from": "2026-05-01", "to": "2026-05-02"}, open_stores(settings),
                                     "http://localhost/api"), "calls")
    assert response.status == 200 and json.loads(response.body)["count"] == 0
    checks = open_stores(settings).check()
    assert checks["cosmos"] is None and checks["blob"] is not None
