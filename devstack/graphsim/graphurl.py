"""Graph's call-log function URLs: parse a request target; build the nextLink and @odata.context.

Accepted: /{v1.0|beta}/communications/callRecords/{function}(fromDateTime=X,toDateTime=Y), for any function
in the simulator's FunctionTable (functions.py: getPstnCalls, getDirectRoutingCalls and any declared
extras), its name matched case-insensitively; with the nextLink spelling (from=X,to=Y) too, percent-encoded
or not, plus an optional $skip=N (or %24skip=N) query. What a function serves, its window's end, its row
type and its nextLink spelling all come from its table entry.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from .functions import PARAMETER_SPELLINGS, FunctionTable, GraphFunction
from .replies import GraphError
from .rows import VERSIONS
from .ticks import DAY_TICKS, LiteralError, parse_literal

MAX_RANGE_DAYS = 90

_PATH = re.compile(r"communications/callRecords/(.*)", re.I | re.S)
_PARAMETER_ROLE = {spelling.lower(): role for role, spellings in PARAMETER_SPELLINGS.items()
                   for spelling in spellings}


@dataclass(frozen=True)
class Query:
    version: str
    function: GraphFunction
    start: int  # ticks
    end: int  # ticks
    start_literal: str  # as the client wrote it, for the nextLink
    end_literal: str
    skip: int

    @property
    def feed(self) -> str:
        """The dataset served: fault and late-row rules select by it."""
        return self.function.rows

    @property
    def end_inclusive(self) -> bool:
        return self.function.to_inclusive


def parse_target(target: str, functions: FunctionTable) -> Query:
    """The query in a request target (path and query string) for one of `functions`.
    Raises GraphError 400 or 404."""
    split = urlsplit(target)
    _, version, rest = (unquote(split.path).split("/", 2) + ["", ""])[:3]
    if version not in VERSIONS:
        raise GraphError(400, f"Invalid version: {version}")
    path = _PATH.fullmatch(rest)
    called = functions.match(path[1]) if path else None
    if called is None:
        raise GraphError(404, f"Resource not found for the segment '{rest}'.")
    function, arguments = called
    if not (arguments.startswith("(") and arguments.endswith(")")):
        raise GraphError(400, f"{function.name} must be called as "
                              f"{function.name}(fromDateTime=...,toDateTime=...)")
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
    return Query(version, function, start, end, literals["from"], literals["to"], _skip(split.query))


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
    for role, spellings in PARAMETER_SPELLINGS.items():
        if not literals.get(role):
            raise GraphError(400, f"Missing function parameter '{spellings[0]}'.")
    return literals


def _skip(query: str) -> int:
    values = [value for key, value in parse_qsl(query, keep_blank_values=True) if key == "$skip"]
    if not values:
        return 0
    if len(values) > 1 or not (values[0].isascii() and values[0].isdigit()):
        raise GraphError(400, f"Invalid $skip value '{values[-1]}'.")
    return int(values[0])


def next_link(base: str, query: Query, skip: int) -> str:
    """{function}({from}=X,{to}=Y)?$skip=N, in the function's own parameter spelling (getPstnCalls
    shortens the names, as Graph does) and with the bounds as the client wrote them."""
    function = query.function
    from_name, to_name = function.next_link_parameters
    return (f"{base}/{query.version}/communications/callRecords/{function.name}"
            f"({from_name}={query.start_literal},{to_name}={query.end_literal})?$skip={skip}")


def context_url(base: str, query: Query) -> str:
    return (f"{base}/{query.version}/$metadata#Collection(microsoft.graph.callRecords."
            f"{query.function.row_type})")
