"""The Graph functions the simulator serves: their table, and the `functions` knob that adds made-up ones.

Each function states
  name                  as the URL spells it (requests match it case-insensitively, as Graph does)
  rows                  the dataset whose rows it serves: "pstn" | "directRouting" (rows.FEEDS)
  to_inclusive          whether a row starting exactly at toDateTime is in the window
  row_type              the entity type named in @odata.context
  next_link_parameters  the (fromDateTime, toDateTime) parameter names its nextLinks spell

The `functions` knob declares extra functions, {name: declaration} (JSON, also over the control API):
  {"getMadeUpCalls": {"rows": "directRouting", "to_inclusive": false, "row_type": "madeUpLogRow",
                      "next_link_parameters": ["fromDateTime", "toDateTime"]}}
rows, to_inclusive and row_type are required; next_link_parameters defaults to the full names. An extra
function is its dataset under another name: the same rows, paging, faults and late rows (both select by
dataset), rate limit and truth (`truth(rows, ...)`). The knob replaces the previous extras.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .rows import FEEDS

# The spellings the URL parser accepts for each parameter, the canonical one first. A nextLink may only
# use these, or a client following it would be refused.
PARAMETER_SPELLINGS = {"from": ("fromDateTime", "from"), "to": ("toDateTime", "to")}
FULL_NAMES = (PARAMETER_SPELLINGS["from"][0], PARAMETER_SPELLINGS["to"][0])


@dataclass(frozen=True)
class GraphFunction:
    name: str
    rows: str
    to_inclusive: bool
    row_type: str
    next_link_parameters: tuple[str, str] = FULL_NAMES

    def as_json(self) -> dict:
        return {"rows": self.rows, "to_inclusive": self.to_inclusive, "row_type": self.row_type,
                "next_link_parameters": list(self.next_link_parameters)}


# As Graph documents them: getPstnCalls' toDateTime is inclusive and its nextLinks shorten the parameter
# names; getDirectRoutingCalls' toDateTime is exclusive and its nextLinks keep the full names.
REAL_FUNCTIONS = (
    GraphFunction("getPstnCalls", rows="pstn", to_inclusive=True, row_type="pstnCallLogRow",
                  next_link_parameters=("from", "to")),
    GraphFunction("getDirectRoutingCalls", rows="directRouting", to_inclusive=False,
                  row_type="directRoutingLogRow", next_link_parameters=FULL_NAMES),
)
_REAL_OF_ROWS = {function.rows: function for function in REAL_FUNCTIONS}
_REAL_NAMES = frozenset(function.name for function in REAL_FUNCTIONS)
_FIELDS = ("rows", "to_inclusive", "row_type", "next_link_parameters")
_REQUIRED = ("rows", "to_inclusive", "row_type")


def real_function(rows: str) -> GraphFunction:
    """The real function serving a dataset: its window semantics are the dataset's truth."""
    return _REAL_OF_ROWS[rows]


class FunctionTable:
    """The real functions plus the declared extras, and the name matching they imply. Immutable, so a
    request can hold one while the knob is replaced."""

    def __init__(self, extras: tuple[GraphFunction, ...] = ()):
        self.extras = extras
        self.functions = REAL_FUNCTIONS + extras
        # Longest name first: an extra such as getPstnCallsV2 must not be read as getPstnCalls + "V2".
        # A named group per function finds the entry even where re.I folds case beyond str.lower().
        order = sorted(range(len(self.functions)), key=lambda i: -len(self.functions[i].name))
        self._names = re.compile("|".join(f"(?P<f{i}>{re.escape(self.functions[i].name)})" for i in order),
                                 re.I)

    def match(self, text: str) -> tuple[GraphFunction, str] | None:
        """The function whose name `text` starts with, and the rest of `text`; None if there is none."""
        found = self._names.match(text)
        if found is None:
            return None
        return self.functions[int(found.lastgroup[1:])], text[found.end():]

    def as_json(self) -> dict:
        return {function.name: function.as_json() for function in self.extras}


def parse_functions(value: object) -> FunctionTable:
    """Validate the `functions` knob; ValueError names what is wrong."""
    if not isinstance(value, dict):
        raise ValueError('functions must be an object {"name": {"rows": ..., "to_inclusive": ..., '
                         f'"row_type": ...}}, not {value!r}')
    taken = {function.name.lower(): function.name for function in REAL_FUNCTIONS}
    extras = []
    for name, declaration in value.items():
        if not _is_identifier(name):
            raise ValueError(f"function name {name!r} is not a plain identifier "
                             "(ASCII letters, digits and _, not starting with a digit)")
        # Requests match names case-insensitively, so names equal but for case would be ambiguous.
        clash = taken.get(name.lower())
        if clash in _REAL_NAMES:
            raise ValueError(f"function name {name!r} is the real function {clash}, which the simulator "
                             "already serves (names match case-insensitively)")
        if clash:
            raise ValueError(f"function names {clash!r} and {name!r} differ only in case "
                             "(names match case-insensitively)")
        taken[name.lower()] = name
        extras.append(_parse_declaration(name, declaration))
    return FunctionTable(tuple(extras))



def _parse_declaration(name: str, obj: object) -> GraphFunction:
    where = f"function {name!r}"
    if not isinstance(obj, dict):
        raise ValueError(f"{where} must be declared as an object, not {obj!r}")
    unknown = set(obj) - set(_FIELDS)
    if unknown:
        raise ValueError(f"{where} has unknown fields {sorted(unknown)}; known: {list(_FIELDS)}")
    missing = [field for field in _REQUIRED if field not in obj]
    if missing:
        raise ValueError(f"{where} is missing {missing}")
    if obj["rows"] not in FEEDS:
        raise ValueError(f"{where}: 'rows' must be a dataset, one of {list(FEEDS)}, not {obj['rows']!r}")
    if not isinstance(obj["to_inclusive"], bool):
        raise ValueError(f"{where}: 'to_inclusive' must be true or false, not {obj['to_inclusive']!r}")
    if not _is_identifier(obj["row_type"]):
        raise ValueError(f"{where}: 'row_type' must be a plain identifier, not {obj['row_type']!r}")
    parameters = obj.get("next_link_parameters", FULL_NAMES)
    if not (isinstance(parameters, (list, tuple)) and len(parameters) == 2
            and parameters[0] in PARAMETER_SPELLINGS["from"] and parameters[1] in PARAMETER_SPELLINGS["to"]):
        raise ValueError(f"{where}: 'next_link_parameters' must be [from, to] with from one of "
                         f"{list(PARAMETER_SPELLINGS['from'])} and to one of {list(PARAMETER_SPELLINGS['to'])}, "
                         f"not {parameters!r}")
    return GraphFunction(name, obj["rows"], obj["to_inclusive"], obj["row_type"], tuple(parameters))


def _is_identifier(value: object) -> bool:
    return isinstance(value, str) and value.isascii() and value.isidentifier()
