"""HTTP blueprint: the query routes. Each handler turns the request into plain values, calls shared/, and turns
the plain response into an HttpResponse (gzip-compressed when the client accepts it)."""
from __future__ import annotations

import json
from urllib.parse import urlsplit

import azure.functions as func

bp = func.Blueprint()


def _reply(response, req: func.HttpRequest) -> func.HttpResponse:
    from shared.web import maybe_gzip

    response = maybe_gzip(response, req.headers.get("Accept-Encoding"))
    return func.HttpResponse(response.body, status_code=response.status, headers=response.headers)


def _api_base(req: func.HttpRequest) -> str:
    url = urlsplit(req.url)
    return f"{url.scheme}://{url.netloc}/api"


def _serve(req: func.HttpRequest, what: str, handler) -> func.HttpResponse:
    """Load settings, run the handler over the containers, answer every failure as a JSON error."""
    from shared.connections import cosmos_client
    from shared.odata.errors import ODataError
    from shared.settings import SettingsError, load_settings
    from shared.web import error_response, guarded

    try:
        settings = load_settings()
    except SettingsError as exc:
        return _reply(error_response(ODataError(500, "Misconfigured", f"the app's settings are invalid: {exc}")), req)

    def run():
        database = cosmos_client(settings).get_database_client(settings.cosmos_database)
        containers = {
            "pstn": database.get_container_client(settings.cosmos_pstn_container),
            "directRouting": database.get_container_client(settings.cosmos_direct_routing_container),
            "dailyUsage": database.get_container_client(settings.cosmos_summaries_container),
        }
        return handler(containers)

    return _reply(guarded(run, what), req)


# Anonymous on purpose: platform health probes call it without a key. It reveals only ok / failed per part.
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    from shared.health import check_health

    healthy, report = check_health()
    return func.HttpResponse(json.dumps(report), status_code=200 if healthy else 503, mimetype="application/json")


@bp.route(route="odata/{*path}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def odata(req: func.HttpRequest) -> func.HttpResponse:
    from shared.odata_service import handle

    base = _api_base(req) + "/odata"
    return _serve(req, "odata", lambda containers: handle(req.route_params.get("path") or "", dict(req.params),
                                                           dict(req.headers), base, containers))


@bp.route(route="calls", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def calls(req: func.HttpRequest) -> func.HttpResponse:
    from shared.calls_api import calls as answer

    return _serve(req, "calls", lambda containers: answer(dict(req.params), containers, _api_base(req)))


@bp.route(route="usage", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def usage(req: func.HttpRequest) -> func.HttpResponse:
    from shared.calls_api import usage as answer

    return _serve(req, "usage", lambda containers: answer(dict(req.params), containers["dailyUsage"],
                                                          _api_base(req)))
