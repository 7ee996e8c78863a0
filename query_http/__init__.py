"""HTTP blueprint: the query and operator routes. Each handler turns the request into plain values, calls
shared/api, and turns the plain response into an HttpResponse (gzip-compressed when the client accepts it).

shared/ is imported inside the handlers: the host indexes the functions before any request, and the stores'
SDKs would otherwise cost that indexing their import time.
"""
from __future__ import annotations

import json
import logging
from urllib.parse import urlsplit

import azure.functions as func

bp = func.Blueprint()
log = logging.getLogger("query_http")


def _reply(response, req: func.HttpRequest) -> func.HttpResponse:
    from shared.api.http import maybe_gzip, safe_headers

    response = maybe_gzip(response, req.headers.get("Accept-Encoding"))
    return func.HttpResponse(response.body, status_code=response.status, headers=safe_headers(response.headers))


def _api_base(req: func.HttpRequest) -> str:
    url = urlsplit(req.url)
    return f"{url.scheme}://{url.netloc}/api"


def _serve(req: func.HttpRequest, what: str, handler) -> func.HttpResponse:
    """Load settings, run handler(stores, settings), and answer every failure as a JSON error."""
    from shared.api.http import HttpError, error_response, guarded
    from shared.config.settings import SettingsError, load_settings
    from shared.stores import open_stores

    try:
        settings = load_settings()
    except SettingsError as exc:
        # The answer names the setting and the problem; the value given (masked) goes to the log only.
        log.error("%s: invalid setting: %s", what, exc)
        return _reply(error_response(HttpError(500, "Misconfigured", f"the app's settings are invalid: {exc.public}",
                                               exc.setting)), req)
    return _reply(guarded(lambda: handler(open_stores(settings), settings), what), req)


# Anonymous on purpose: platform health probes call it without a key. It reveals only ok / failed per part.
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api.health import check_health
    from shared.api.http import Response

    healthy, report = check_health()
    return _reply(Response(200 if healthy else 503, json.dumps(report).encode(), {"Content-Type": "application/json"}),
                  req)


@bp.route(route="odata/{*path}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def odata(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api.odata_feed import handle

    base = _api_base(req) + "/odata"
    return _serve(req, "odata", lambda stores, settings: handle(
        req.route_params.get("path") or "", dict(req.params), dict(req.headers), base, stores, settings.privacy_mask))


@bp.route(route="calls", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def calls(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api.calls import calls as answer

    return _serve(req, "calls", lambda stores, settings: answer(dict(req.params), stores, _api_base(req),
                                                                settings.privacy_mask))


@bp.route(route="usage", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def usage(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api.calls import usage as answer

    return _serve(req, "usage", lambda stores, settings: answer(dict(req.params), stores, _api_base(req)))


@bp.route(route="status", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def status(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api.ops import status_response

    return _serve(req, "status", lambda stores, settings: status_response(dict(req.params), settings, stores.ledger))


@bp.route(route="dashboard", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def dashboard(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api.ops import dashboard_response

    return _serve(req, "dashboard", lambda stores, settings: dashboard_response(dict(req.params), settings,
                                                                                stores.ledger))


# Operator actions. Their routes start with "ops/", not "admin/": the Functions host reserves the "admin" prefix
# for its own API and refuses function routes that start with it, even under /api (azure-functions-host#1781).
@bp.route(route="ops/collect", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
def ops_collect(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api.ops import backfill

    return _serve(req, "ops/collect", lambda stores, settings: backfill(dict(req.params), settings, stores.ledger,
                                                                        _api_base(req)))


@bp.route(route="ops/replay", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
def ops_replay(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api.ops import replay
    from shared.collect.run import build_collector

    def run(stores, settings):
        collector = build_collector(settings, stores=stores)
        try:
            return replay(dict(req.params), settings, collector)
        finally:
            collector.close()

    return _serve(req, "ops/replay", run)
