"""HTTP blueprint: the query routes. Each handler parses the request, calls shared/, and shapes the response."""
import json

import azure.functions as func

bp = func.Blueprint()


def _json(body: dict, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")


# Anonymous on purpose: platform health probes call it without a key. It reveals only ok / failed per part.
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    from shared.health import check_health

    healthy, report = check_health()
    return _json(report, 200 if healthy else 503)
