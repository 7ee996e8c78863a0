"""Graph's call-log function URLs: parse a request target; build the nextLink and @odata.context.

Accepted: /{v1.0|beta}/communications/callRecords/getPstnCalls(fromDateTime=X,toDateTime=Y)
and getDirectRoutingCalls(...), with the nextLink spelling (from=X,to=Y) too, percent-encoded or not,
plus an optional $skip=N (or %24skip=N) query.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from .replies import GraphError
from .rows import VERSIONS
from .ticks import DAY_TICKS, LiteralError, parse_literal

FUNCTIONS = {"pstn": "getPstnCalls", "directRouting": "getDirectRoutingCalls"}
ROW_TYPES = {"pstn": "pstnCallLogRow", "directRouting": "directRoutingLogRow"}
MAX_RANGE_DAYS = 90

_FEED_OF = {name.lower(): feed for feed, name in FUNCTIONS.items()}
_PATH = re.compile(r"communications/callRecords/(getPstnCalls|getDirectRoutingCalls)(.*)", re.I | re.S)
_PARAMETER_ROLE = {"fromdatetime": "from", "from": "from", "todatetime": "to", "to": "to"}


@dataclass(frozen=True)
class Query:
    version: str
    feed: str
    start: int  # ticks
    end: int  # ticks
    start_literal: str  # as the client wrote it, for the nextLink
    end_literal: str
    skip: int

    @property
    def end_inclusive(self) -> bool:
        """getPstnCalls documents toDateTime as inclusive, getDirectRoutingCalls as exclusive."""
        return self.feed == "pstn"


def parse_target(target: str) -> Query:
    """The query in a request target (path and query string). Raises GraphError 400 or 404."""
    split = urlsplit(target)
    _, version, rest = (unquote(split.path).split("/", 2) + ["", ""])[:3]
    if version not in VERSIONS:
        raise GraphError(400, f"Invalid version: {version}")
    match = _PATH.fullmatch(rest)
    if not match:
        raise GraphError(404, f"Resource not found for the segment '{rest}'.")
    feed = _FEED_OF[match[1].lower()]
    arguments = match[2]
    if not (arguments.startswith("(") and arguments.endswith(")")):
        raise GraphError(400, f"{FUNCTIONS[feed]} must be called as "
                              f"{FUNCTIONS[feed]}(fromDateTime=...,toDateTime=...)")
    literals = _parameters(arguments[1:-1])
    try:
        start, end = parse_literal(literals["from"]), parse_literal(literals["to"])
    except LiteralError as exc:
        raise GraphError(400, f"Invalid parameter: {exc}") from None
    if end < start:
        raise GraphError(400, "fromDateTime must not be later than toDateTime.")
    if end - start > MAX_RANGE_DAYS * DAY_TICKS:
        raise GraphError(400, f"The requested date range exceeds {MAX_RANGE_DAYS} days: "
                              "fromDateTime and toDateTime must be at most 90 days apart.")
    return Query(version, feed, start, end, literals["from"], literals["to"], _skip(split.query))


def _parameters(text: str) -> dict[str, str]:
    literals: dict[str, str] = {}
    for part in text.split(","):
        name, equals, value = part.partition("=")
        role = _PARAMETER_ROLE.get(name.strip().lower())
        if not equals or role is None:
            raise GraphError(400, f"Unexpected function parameter '{part.strip()}'.")
        if role in literals:
            raise GraphError(400, f"Parameter '{name.strip()}' is given twice.")
        # A "+" offset sign that was form-decoded arrives as a space; echo it back as "+".
        literals[role] = value.strip().replace(" ", "+")
    for role, name in (("from", "fromDateTime"), ("to", "toDateTime")):
        if not literals.get(role):
            raise GraphError(400, f"Missing function parameter '{name}'.")
    return literals


def _skip(query: str) -> int:
    values = [value for key, value in parse_qsl(query, keep_blank_values=True) if key == "$skip"]
    if not values:
        return 0
    if len(values) > 1 or not (values[0].isascii() and values[0].isdigit()):
        raise GraphError(400, f"Invalid $skip value '{values[-1]}'.")
    return int(values[0])


def next_link(base: str, query: Query, skip: int) -> str:
    """The documented shapes: getPstnCalls(from=X,to=Y)?$skip=N (parameter names shortened, as Graph
    does) and getDirectRoutingCalls(fromDateTime=X,toDateTime=Y)?$skip=N."""
    names = ("from", "to") if query.feed == "pstn" else ("fromDateTime", "toDateTime")
    return (f"{base}/{query.version}/communications/callRecords/{FUNCTIONS[query.feed]}"
            f"({names[0]}={query.start_literal},{names[1]}={query.end_literal})?$skip={skip}")


def context_url(base: str, query: Query) -> str:
    return f"{base}/{query.version}/$metadata#Collection(microsoft.graph.callRecords.{ROW_TYPES[query.feed]})"
