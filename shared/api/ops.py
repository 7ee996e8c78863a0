"""Operator routes: status, dashboard, backfill requests and replay. Plain values in, `web.Response` out."""
from __future__ import annotations

import datetime as dt
import re
from typing import Mapping

from ..collect.replay import ReplayError
from ..config.feeds import FEEDS
from ..config.settings import Settings
from ..instants import yesterday
from .dashboard import POLICY, render
from .http import Response, bad_request, html_response, json_response, known_params
from .status import DEFAULT_DAYS, build_status

MAX_BACKFILL_DAYS = 366
MAX_STATUS_DAYS = 366
# ASCII digits only: str.isdigit() and int() also take '²' and '１２', which int() then parses or refuses.
_WHOLE_NUMBER = re.compile(r"[0-9]{1,9}")


def _whole_number(params: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    text = params.get(name) or str(default)
    if not _WHOLE_NUMBER.fullmatch(text) or not low <= int(text) <= high:
        raise bad_request("InvalidParameter", f"{name} must be a whole number from {low} to {high}, "
                                              f"got {text[:40]!r}", name)
    return int(text)


def _date(params: dict[str, str], name: str) -> dt.date:
    text = params.get(name)
    if not text:
        raise bad_request("MissingParameter", f"{name} is required (a date YYYY-MM-DD)", name)
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise bad_request("InvalidParameter", f"{name} must be a date YYYY-MM-DD, got {text[:40]!r}", name) from None


def _feeds(params: dict[str, str], settings: Settings, many: bool) -> list[str]:
    name = params.get("feed")
    if not name:
        if many:
            return list(settings.feeds)
        raise bad_request("MissingParameter", f"feed is required: one of {', '.join(settings.feeds)}", "feed")
    if name not in FEEDS:
        raise bad_request("InvalidParameter", f"feed must be one of {', '.join(FEEDS)}, got {name[:40]!r}", "feed")
    if name not in settings.feeds:
        raise bad_request("InvalidParameter", f"feed {name} is not enabled (FEEDS={','.join(settings.feeds)})", "feed")
    return [name]


def status(params: Mapping[str, str], settings: Settings, ledger, now: dt.datetime | None = None) -> dict:
    p = known_params(params, {"days", "format"})
    return build_status(settings, ledger, now, _whole_number(p, "days", DEFAULT_DAYS, 1, MAX_STATUS_DAYS))


def status_response(params: Mapping[str, str], settings: Settings, ledger) -> Response:
    return json_response(status(params, settings, ledger))


def dashboard_response(params: Mapping[str, str], settings: Settings, ledger) -> Response:
    return html_response(render(status(params, settings, ledger)), POLICY)


def backfill(params: Mapping[str, str], settings: Settings, ledger, api_base: str,
             now: dt.datetime | None = None) -> Response:
    """Record a backfill request per feed; the collector works it off on its next runs, oldest day first."""
    p = known_params(params, {"feed", "from", "to"})
    feeds = _feeds(p, settings, many=True)
    first = _date(p, "from")
    last = _date(p, "to") if p.get("to") else first
    latest = yesterday(settings.time_zone, now)
    if last < first:
        raise bad_request("InvalidRange", "to must not be before from", "to")
    if last > latest:
        raise bad_request("InvalidRange", f"to must be yesterday ({latest}) or earlier: today is not over yet", "to")
    if (last - first).days + 1 > MAX_BACKFILL_DAYS:
        raise bad_request("RangeTooLong", f"a backfill may cover at most {MAX_BACKFILL_DAYS} days", "to")
    requests = [ledger.request_backfill(feed, first, last) for feed in feeds]
    body = {"status": "accepted", "watch": f"{api_base}/status",
            "note": "the collector works requests off on its next runs, oldest day first, within its time budget; "
                    "run the collect function by hand to start now",
            "requests": [{k: r[k] for k in ("id", "feed", "from", "to", "status", "requestedAt")} for r in requests]}
    return json_response(body, 202, {"Location": f"{api_base}/status"})


def replay(params: Mapping[str, str], settings: Settings, collector) -> Response:
    p = known_params(params, {"feed", "day"})
    feed = FEEDS[_feeds(p, settings, many=False)[0]]
    day = _date(p, "day")
    try:
        report = collector.replay(feed, day)
    except ReplayError as exc:
        raise bad_request("NothingToReplay", str(exc), "day") from None
    return json_response(report.as_dict())
