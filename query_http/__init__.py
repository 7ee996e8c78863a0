"""HTTP blueprint: the query routes. Each handler turns the request into plain values, calls shared/, and turns
the plain response into an HttpResponse (gzip-compressed when the client accepts it)."""
from __future__ import annotations

import json
from urllib.parse import urlsplit

import azure.functions as func

bp = func.Blueprint()


def _reply(response, req: func.HttpRequest) -> func.HttpResponse:
    from shared.api.http import maybe_gzip

    response = maybe_gzip(response, req.headers.get("Accept-Encoding"))
    return func.HttpResponse(response.body, status_code=response.status, headers=response.headers)


def _api_base(req: func.HttpRequest) -> str:
    url = urlsplit(req.url)
    return f"{url.scheme}://{url.netloc}/api"


def _with_settings(req: func.HttpRequest, what: str, handler) -> func.HttpResponse:
    """Load settings, run handler(settings), and answer every failure as a JSON error."""
    from shared.odata.errors import ODataError
    from shared.config.settings import SettingsError, load_settings
    from shared.api.http import error_response, guarded

    try:
        settings = load_settings()
    except SettingsError as exc:
        return _reply(error_response(ODataError(500, "Misconfigured", f"the app's settings are invalid: {exc}")), req)
    return _reply(guarded(lambda: handler(settings), what), req)


def _serve(req: func.HttpRequest, what: str, handler) -> func.HttpResponse:
    """Like _with_settings, handing handler(containers, settings) the Cosmos containers of the query routes."""
    from shared.stores.clients import cosmos_client

    def run(settings):
        database = cosmos_client(settings).get_database_client(settings.cosmos_database)
        containers = {
            "pstn": database.get_container_client(settings.cosmos_pstn_container),
            "directRouting": database.get_container_client(settings.cosmos_direct_routing_container),
            "dailyUsage": database.get_container_client(settings.cosmos_summaries_container),
        }
        return handler(containers, settings)

    return _with_settings(req, what, run)


def _ledger(settings):
    from shared.stores.clients import cosmos_client
    from shared.stores.ledger import Ledger

    database = cosmos_client(settings).get_database_client(settings.cosmos_database)
    return Ledger(database.get_container_client(settings.cosmos_runs_container))


# Anonymous on purpose: platform health probes call it without a key. It reveals only ok / failed per part.
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api.health import check_health

    healthy, report = check_health()
    return func.HttpResponse(json.dumps(report), status_code=200 if healthy else 503, mimetype="application/json")


@bp.route(route="odata/{*path}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def odata(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api.odata_feed import handle

    base = _api_base(req) + "/odata"
    return _serve(req, "odata", lambda containers, settings: handle(
        req.route_params.get("path") or "", dict(req.params), dict(req.headers), base, containers,
        settings.privacy_mask))


@bp.route(route="calls", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def calls(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api.calls import calls as answer

    return _serve(req, "calls", lambda containers, settings: answer(dict(req.params), containers, _api_base(req),
                                                                    settings.privacy_mask))


@bp.route(route="usage", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def usage(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api.calls import usage as answer

    return _serve(req, "usage", lambda containers, settings: answer(dict(req.params), containers["dailyUsage"],
                                                                    _api_base(req)))


@bp.route(route="status", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def status(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api.ops import status_response

    return _with_settings(req, "status", lambda settings: status_response(dict(req.params), settings,
                                                                          _ledger(settings)))


@bp.route(route="dashboard", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def dashboard(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api.ops import dashboard_response

    return _with_settings(req, "dashboard", lambda settings: dashboard_response(dict(req.params), settings,
                                                                                _ledger(settings)))


# Operator actions. Their routes start with "ops/", not "admin/": the Functions host reserves the "admin" prefix
# for its own API and refuses function routes that start with it, even under /api (azure-functions-host#1781).
@bp.route(route="ops/collect", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
def ops_collect(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api.ops import backfill

    return _with_settings(req, "ops/collect", lambda settings: backfill(dict(req.params), settings,
                                                                        _ledger(settings), _api_base(req)))


@bp.route(route="ops/replay", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
def ops_replay(req: func.HttpRequest) -> func.HttpResponse:
    from shared.collect.run import build_collector
    from shared.api.ops import replay

    def run(settings):
        collector = build_collector(settings)
        try:
            return replay(dict(req.params), settings, collector)
        finally:
            collector.close()

    return _with_settings(req, "ops/replay", run)
