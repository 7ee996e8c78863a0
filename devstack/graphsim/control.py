"""The control API, for tests in other processes. No token needed.

  GET  /_sim/config  the knobs                         POST /_sim/config  merge a JSON object of knobs
  POST /_sim/reset   see GraphSimulator.reset          GET  /_sim/stats   counters
  GET  /_sim/log     {"value": [per Graph request]}
  GET  /_sim/truth?feed=pstn|directRouting&from=ISO&to=ISO[&version=v1.0|beta]  {"value": [rows]}
"""
from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

from .replies import Reply, json_reply


def _get_config(sim, params, body):
    return json_reply(200, sim.config())


def _post_config(sim, params, body):
    updates = json.loads(body or b"{}")
    if not isinstance(updates, dict):
        raise ValueError("the body must be a JSON object of knobs")
    return json_reply(200, sim.configure(**updates))


def _reset(sim, params, body):
    sim.reset()
    return json_reply(200, {"reset": True})


def _truth(sim, params, body):
    def one(name, default=None):
        values = params.get(name) or ([default] if default else [])
        if len(values) != 1:
            raise ValueError(f"query parameter '{name}' is required once")
        return values[0]
    data = sim.truth_json(one("feed"), one("from"), one("to"), one("version", "v1.0"))
    return Reply(200, data, {"Content-Type": "application/json"})


def _stats(sim, params, body):
    return json_reply(200, sim.stats())


def _log(sim, params, body):
    return json_reply(200, {"value": sim.request_log()})


ROUTES = {
    ("GET", "/_sim/config"): _get_config, ("POST", "/_sim/config"): _post_config,
    ("POST", "/_sim/reset"): _reset, ("GET", "/_sim/truth"): _truth,
    ("GET", "/_sim/stats"): _stats, ("GET", "/_sim/log"): _log,
}


def handle(sim, method: str, target: str, body: bytes) -> Reply:
    split = urlsplit(target)
    action = ROUTES.get((method, split.path))
    if action is None:
        known = any(path == split.path for _, path in ROUTES)
        status = 405 if known else 404
        return json_reply(status, {"error": {"code": "MethodNotAllowed" if known else "NotFound",
                                             "message": f"{method} {split.path} is not a control route"}})
    try:
        return action(sim, parse_qs(split.query, keep_blank_values=True), body)
    except ValueError as exc:  # bad knobs, bad JSON, bad truth parameters
        return json_reply(400, {"error": {"code": "BadRequest", "message": str(exc)}})
