"""The simple routes for people and scripts: /api/calls and /api/usage, as JSON or CSV.

    GET /api/calls?from=2026-05-01&to=2026-05-07&user=a@contoso.com&callType=user_out,user_in&feed=pstn&format=csv
    GET /api/usage?from=2026-05-01&to=2026-05-07&user=...&feed=pstn&format=json

`from` is required; `to` defaults to now. A date-only `to` includes that whole day; a date-time `to` is
exclusive. At most `limit` rows (default and maximum 50,000) per response; when more exist, the JSON body has
`nextLink` and both formats send a `Link: <...>; rel="next"` header whose `after` token resumes exactly there.
"""
from __future__ import annotations

import datetime as dt
from typing import Callable, Mapping

from ..config.feeds import DAILY_USAGE, DEFAULT_FEED, FEEDS
from ..instants import canonical_instant, format_instant
from ..odata.model import entity_set
from ..stores import Stores
from ..stores.reader import QuerySpec, read_page
from ..stores.rows import COSMOS_SYSTEM_FIELDS, DERIVED_FIELDS
from .http import Response, bad_request, csv_lines, json_response, known_params
from .privacy import mask_row
from .tokens import TokenError, decode_token, encode_token, fingerprint, next_link

MAX_ROWS = 50_000
MAX_DAYS = 366
HIDDEN = (set(DERIVED_FIELDS) - {"day"}) | set(COSMOS_SYSTEM_FIELDS)
# What each route reads; its nextLink carries these and nothing else (never `code`, the Functions key).
CALLS_PARAMS = frozenset({"from", "to", "user", "callType", "feed", "format", "csv", "limit", "after"})
USAGE_PARAMS = frozenset({"from", "to", "user", "feed", "format", "csv", "limit", "after"})


def _instant(name: str, text: str, end: bool) -> str:
    """A date or date-time parameter as a canonical UTC instant string; a date-only end covers its whole day."""
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            if end:
                day += dt.timedelta(days=1)
            return f"{day.isoformat()}T00:00:00.0000000Z"
        if "T" not in text or not (text.endswith(("Z", "z")) or text[-6] in "+-"):
            raise ValueError
        return canonical_instant(text)
    except (ValueError, IndexError):
        raise bad_request("InvalidParameter", f"{name} must be a date (YYYY-MM-DD) or a date-time with a time "
                                              f"zone (2026-05-01T00:00:00Z), got {text[:40]!r}", name) from None
    except OverflowError:
        # 0001-01-01T00:00:00+01:00 is before year 1 in UTC, and the day after 9999-12-31 does not exist.
        raise bad_request("InvalidParameter", f"{name} is out of range (years 0001 to 9999 in UTC), "
                                              f"got {text[:40]!r}", name) from None


def _pinned(p: dict[str, str], upper: str) -> dict[str, str]:
    """The parameters with `to` as this request resolved it: a `to` left to default to now would move on the next
    page, making it another query (its token refused) with other rows."""
    return p if p.get("to") else {**p, "to": upper}


def _range(p: dict[str, str], now: dt.datetime) -> tuple[str, str]:
    if not p.get("from"):
        raise bad_request("MissingParameter", "from is required (a date such as 2026-05-01)", "from")
    lower = _instant("from", p["from"], end=False)
    upper = _instant("to", p["to"], end=True) if p.get("to") else canonical_instant(format_instant(now, "microseconds"))
    if upper <= lower:
        raise bad_request("InvalidRange", "to must be after from", "to")
    if (dt.date.fromisoformat(upper[:10]) - dt.date.fromisoformat(lower[:10])).days > MAX_DAYS:
        raise bad_request("RangeTooLong", f"the range may span at most {MAX_DAYS} days", "to")
    return lower, upper


def _choice(p: dict[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    value = p.get(name) or default
    if value not in choices:
        raise bad_request("InvalidParameter", f"{name} must be one of {', '.join(choices)}, got {value[:40]!r}", name)
    return value


def _limit(p: dict[str, str]) -> int:
    text = p.get("limit") or str(MAX_ROWS)
    # ASCII digits only: str.isdigit() is also true of '²' and '٣', which int() refuses or reads as 3.
    if not (text.isascii() and text.isdigit()) or len(text) > 7 or not 1 <= int(text) <= MAX_ROWS:
        raise bad_request("InvalidParameter", f"limit must be a whole number from 1 to {MAX_ROWS} (ASCII digits), "
                                              f"got {text[:40]!r}", "limit")
    return int(text)


def _user_clause(p: dict[str, str], conditions: list[str], params: list[dict]) -> None:
    if p.get("user"):
        conditions.append("(c.userPrincipalName = @user OR c.userId = @user)")
        params.append({"name": "@user", "value": p["user"]})


def calls(params: Mapping[str, str], stores: Stores, base_url: str, mask: bool = False,
          now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)) -> Response:
    """The rows of one feed (`feed`, default DEFAULT_FEED) in a time range; `mask`: the PRIVACY_MASK setting."""
    p = known_params(params, CALLS_PARAMS)
    feed = FEEDS[_choice(p, "feed", tuple(FEEDS), DEFAULT_FEED)]
    fmt = _choice(p, "format", ("json", "csv"), "json")
    lower, upper = _range(p, now())
    p = _pinned(p, upper)
    conditions = ["c.startUtc >= @from", "c.startUtc < @to"]
    sql_params = [{"name": "@from", "value": lower}, {"name": "@to", "value": upper}]
    _user_clause(p, conditions, sql_params)
    if p.get("callType"):
        types = [t.strip() for t in p["callType"].split(",") if t.strip()]
        if not types or len(types) > 50:
            raise bad_request("InvalidParameter", "callType must list 1 to 50 call types, comma separated",
                              "callType")
        names = [f"@ct{i}" for i in range(len(types))]
        conditions.append(f"c.callType IN ({', '.join(names)})")
        sql_params += [{"name": n, "value": t} for n, t in zip(names, types)]
    spec = QuerySpec(" AND ".join(conditions), tuple(sql_params), lower[:10], upper[:10], sort_path="startUtc")
    columns = ["day"] + [prop.name for prop in entity_set(feed.entity_set).entity_type.properties
                         if prop.name != "day"]
    return _answer(stores, feed.name, spec, p, fmt, columns, base_url, "/calls", CALLS_PARAMS, mask)


def usage(params: Mapping[str, str], stores: Stores, base_url: str,
          now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)) -> Response:
    """Daily usage summaries from the summaries container."""
    p = known_params(params, USAGE_PARAMS)
    fmt = _choice(p, "format", ("json", "csv"), "json")
    lower, upper = _range(p, now())
    p = _pinned(p, upper)
    # Summaries are per UTC day: a day is in range when it starts inside [from, to). No day starts after
    # 9999-12-31, whose day after does not exist.
    if lower[10:] == "T00:00:00.0000000Z":
        first = lower[:10]
    elif lower[:10] == dt.date.max.isoformat():
        first = "9999-12-32"  # after every day: the range below is empty
    else:
        first = (dt.date.fromisoformat(lower[:10]) + dt.timedelta(days=1)).isoformat()
    last = (dt.date.fromisoformat(upper[:10]) - dt.timedelta(days=1)).isoformat() \
        if upper[10:] == "T00:00:00.0000000Z" else upper[:10]
    conditions, sql_params = [], []
    _user_clause(p, conditions, sql_params)
    if p.get("feed"):
        conditions.append("c.feed = @feed")
        sql_params.append({"name": "@feed", "value": _choice(p, "feed", tuple(FEEDS), DEFAULT_FEED)})
    spec = QuerySpec(" AND ".join(conditions), tuple(sql_params), first, last, sort_path="id")
    columns = [prop.name for prop in entity_set(DAILY_USAGE.entity_set).entity_type.properties
               if prop.name != "id"]
    if first > last:
        _limit(p)  # refused alike whether or not the range holds a day
        return _render([], None, p, fmt, columns, base_url, "/usage")
    return _answer(stores, DAILY_USAGE.name, spec, p, fmt, columns, base_url, "/usage", USAGE_PARAMS)


def _answer(stores: Stores, table: str, spec: QuerySpec, p: dict[str, str], fmt: str, columns: list[str],
            base_url: str, route: str, carried: frozenset[str], mask: bool = False) -> Response:
    limit = _limit(p)
    key = fingerprint(route, spec.where, spec.params, spec.first_day, spec.last_day, limit)
    after = None
    if p.get("after"):
        try:
            after, _ = decode_token(stores.paging_key, p["after"], key)
        except TokenError as exc:
            raise bad_request("InvalidToken", str(exc), "after") from None
    page = read_page(stores.reader(table), spec, limit, after)
    next_url = None
    if page.next_cursor is not None:
        token = encode_token(stores.paging_key, page.next_cursor, key)
        next_url = next_link(f"{base_url}{route}", p, carried, "after", token)
    rows = [{k: v for k, v in doc.items() if k not in HIDDEN} for doc in page.rows]
    if mask:
        rows = [mask_row(row) for row in rows]
    return _render(rows, next_url, p, fmt, columns, base_url, route)


def _render(rows: list[dict], next_url: str | None, p: dict[str, str], fmt: str, columns: list[str],
            base_url: str, route: str) -> Response:
    headers = {"Link": f'<{next_url}>; rel="next"'} if next_url else {}
    # Spreadsheet-safe unless a program asks for the values as they are (csv=raw).
    safe = _choice(p, "csv", ("safe", "raw"), "safe") == "safe"
    if fmt == "csv":
        body = "".join(csv_lines(columns, rows, safe=safe)).encode()
        name = route.strip("/")
        return Response(200, body, {"Content-Type": "text/csv; charset=utf-8",
                                    "Content-Disposition": f'attachment; filename="{name}.csv"', **headers})
    body = {"count": len(rows), "value": rows}
    if next_url:
        body["nextLink"] = next_url
    return json_response(body, headers=headers)

