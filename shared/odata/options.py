"""`parse_options`: the system query options of a request on an entity set, parsed and validated."""
from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ODataError
from .filter_parser import parse_filter
from .model import EntitySet, entity_set as find_entity_set
from .nodes import Node

MAX_INT = 2**31 - 1
# Skipped rows are read and discarded by the worker, so $skip is what one request costs: at most two full pages
# of rows. Clients reading further follow the nextLinks (server-driven paging, as Power BI does), whose
# $skiptoken resumes by key and costs nothing extra.
MAX_SKIP = 10_000
MAX_ORDERBY_ITEMS = 3
SUPPORTED = ("$filter", "$select", "$orderby", "$top", "$skip", "$count", "$skiptoken", "$format")
NOT_IMPLEMENTED = ("$expand", "$search", "$apply", "$compute", "$deltatoken", "$levels", "$index",
                   "$schemaversion")
SKIP_ADVICE = ("; skipped rows are read and discarded, so to read further follow each page's @odata.nextLink "
               "(server-driven paging) instead of a larger $skip")
_ORDERBY_ITEM = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\s+(asc|desc))?$")
# re.ASCII: a size is written in ASCII digits ('٣' is a digit to Python's \d).
_MAXPAGESIZE = re.compile(r"^\s*(?:odata\.)?maxpagesize\s*=\s*\"?(\d{1,10})\"?\s*$", re.IGNORECASE | re.ASCII)


@dataclass(frozen=True)
class QueryOptions:
    """The validated query options of one request.

    `filter`: the parsed $filter tree or None. `select`: property names in request order, or None for all
    (no $select, or `*`). `orderby`: ((property, "asc"|"desc"), ...), empty when not given. `top`, `skip`:
    int or None. `count`: $count=true. `skiptoken`: $skiptoken as given (opaque, for the service to decode).
    `page_size`: rows per page (Prefer odata.maxpagesize, capped at max_page_size; else max_page_size).
    `preference_applied`: the value for a Preference-Applied header when odata.maxpagesize was honoured.
    `format`: "json" (the only format).
    """
    entity_set: str
    filter: Node | None = None
    select: tuple[str, ...] | None = None
    orderby: tuple[tuple[str, str], ...] = ()
    top: int | None = None
    skip: int | None = None
    count: bool = False
    skiptoken: str | None = None
    page_size: int = 1000
    preference_applied: str | None = None
    format: str = "json"


def _bad(code: str, message: str, target: str) -> ODataError:
    return ODataError(400, code, message, target)


def _shown(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


def _non_negative(name: str, text: str, maximum: int = MAX_INT, why: str = "") -> int:
    value = text.strip()
    # ASCII digits only: str.isdigit() is also true of '²' (which int() refuses) and '٣' (which it reads as 3).
    if not value.isascii() or not value.isdigit():
        raise _bad("InvalidQueryOption", f"{name} must be a non-negative integer in ASCII digits, not "
                   f"'{_shown(text)}'.", name)
    if len(value) > 10 or int(value) > maximum:
        raise _bad("InvalidQueryOption", f"{name} must be at most {maximum}{why}.", name)
    return int(value)


def _select(entity: EntitySet, text: str) -> tuple[str, ...] | None:
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise _bad("InvalidQueryOption", "$select must be a comma-separated list of property names or *.",
                   "$select")
    if "*" in items:
        return None
    names: list[str] = []
    for item in items:
        if "/" in item or "(" in item or "." in item:
            raise ODataError(501, "NotImplemented", f"$select item '{_shown(item)}' is not supported: select "
                             "whole properties of the entity type.", "$select")
        entity.entity_type.property(item, "$select")
        if item not in names:
            names.append(item)
    return tuple(names)


def _orderby(entity: EntitySet, text: str) -> tuple[tuple[str, str], ...]:
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise _bad("InvalidQueryOption", "$orderby must be a comma-separated list of 'property [asc|desc]'.",
                   "$orderby")
    if len(items) > MAX_ORDERBY_ITEMS:
        raise _bad("InvalidQueryOption", f"$orderby may name at most {MAX_ORDERBY_ITEMS} properties.", "$orderby")
    result: list[tuple[str, str]] = []
    for position, item in enumerate(items):
        match = _ORDERBY_ITEM.match(item)
        if not match:
            if re.match(r"^[A-Za-z_][A-Za-z0-9_]*\s+\S+$", item):
                raise _bad("InvalidQueryOption", f"$orderby direction must be asc or desc: '{_shown(item)}'.",
                           "$orderby")
            if "/" in item or "(" in item:
                raise ODataError(501, "NotImplemented", f"$orderby on an expression ('{_shown(item)}') is not "
                                 "supported.", "$orderby")
            raise _bad("InvalidQueryOption", f"Invalid $orderby item '{_shown(item)}': expected "
                       "'property [asc|desc]'.", "$orderby")
        name, direction = match.group(1), match.group(2) or "asc"
        prop = entity.entity_type.property(name, "$orderby")
        if prop.collection:
            raise _bad("InvalidQueryOption", f"Cannot order by collection property '{name}'.", "$orderby")
        if any(existing == name for existing, _ in result):
            raise _bad("InvalidQueryOption", f"$orderby names '{name}' twice.", "$orderby")
        allowed = name in entity.orderable or (position > 0 and name in entity.tiebreak)
        if not allowed:
            supported = " or ".join(entity.orderable)
            tiebreak = f", then optionally {', '.join(entity.tiebreak)}" if entity.tiebreak else ""
            raise ODataError(501, "NotImplemented", f"Ordering {entity.name} by '{name}' is not supported; "
                             f"order by {supported} (asc or desc){tiebreak}.", "$orderby")
        if position > 0 and direction != result[0][1]:
            # Rows are read in one direction (and indexed only as asc/asc and desc/desc): 'day asc,id desc' would
            # come back with ids ascending, a wrong order. Refuse it instead.
            raise ODataError(501, "NotImplemented", f"$orderby '{_shown(text)}' mixes directions; a tiebreak is "
                             f"ordered like the first property: write '{name} {result[0][1]}'.", "$orderby")
        result.append((name, direction))
    return tuple(result)


def _count(text: str) -> bool:
    if text == "true":
        return True
    if text == "false":
        return False
    raise _bad("InvalidQueryOption", f"$count must be true or false, not '{_shown(text)}'.", "$count")


def _format(text: str) -> str:
    value = text.strip()
    media = value.split(";", 1)[0].strip().lower()
    if media in ("json", "application/json"):
        return "json"
    if media in ("xml", "atom", "application/xml", "application/atom+xml", "text/xml", "text/csv", "csv") or (
            re.match(r"^[a-z0-9.+-]+/[a-z0-9.+*-]+$", media)):
        raise ODataError(406, "NotAcceptable", f"$format '{_shown(text)}' is not available; this service "
                         "answers application/json only.", "$format")
    raise _bad("InvalidQueryOption", f"Invalid $format '{_shown(text)}'; use json.", "$format")


def page_size_from_prefer(prefer_header: str | None, max_page_size: int) -> tuple[int, str | None]:
    """(page size, Preference-Applied value or None) from a Prefer header. Invalid preferences are ignored, as
    RFC 7240 asks; a requested size is capped at max_page_size."""
    if prefer_header:
        for preference in prefer_header.split(","):
            match = _MAXPAGESIZE.match(preference.split(";", 1)[0])
            if match:
                requested = int(match.group(1))
                if requested >= 1:
                    size = min(requested, max_page_size)
                    return size, f"odata.maxpagesize={size}"
    return max_page_size, None


def parse_options(entity_set: str, params: dict[str, str], prefer_header: str | None = None,
                  max_page_size: int = 1000) -> QueryOptions:
    """Parse and validate the query options of a GET on `entity_set`.

    Parameters not starting with '$' (such as `code`, the Functions key) are ignored. Option names are matched
    case-insensitively (as OData 4.01 allows). Raises ODataError: 404 for an unknown entity set, 400 for invalid
    options, 501 for valid but unsupported ones, 406 for a $format other than JSON.
    """
    if max_page_size < 1:
        raise ValueError("max_page_size must be at least 1")
    entity = find_entity_set(entity_set)
    options: dict[str, str] = {}
    for raw_name, value in params.items():
        if not raw_name.startswith("$"):
            continue
        name = raw_name.lower()
        if name in NOT_IMPLEMENTED:
            raise ODataError(501, "NotImplemented", f"Query option {raw_name} is not supported by this service.",
                             raw_name)
        if name not in SUPPORTED:
            raise _bad("UnknownQueryOption", f"Unknown query option '{_shown(raw_name)}'; supported: "
                       + ", ".join(SUPPORTED) + ".", _shown(raw_name))
        if name in options:
            raise _bad("InvalidQueryOption", f"Query option {name} is given twice.", name)
        if not isinstance(value, str):
            raise _bad("InvalidQueryOption", f"Query option {name} must be given once, as text.", name)
        options[name] = value
    page_size, applied = page_size_from_prefer(prefer_header, max_page_size)
    filter_text = options.get("$filter")
    skiptoken = options.get("$skiptoken")
    if skiptoken is not None and not skiptoken:
        raise _bad("InvalidQueryOption", "$skiptoken is empty.", "$skiptoken")
    return QueryOptions(
        entity_set=entity.name,
        filter=parse_filter(filter_text, entity) if filter_text is not None else None,
        select=_select(entity, options["$select"]) if "$select" in options else None,
        orderby=_orderby(entity, options["$orderby"]) if "$orderby" in options else (),
        top=_non_negative("$top", options["$top"]) if "$top" in options else None,
        skip=_non_negative("$skip", options["$skip"], MAX_SKIP, SKIP_ADVICE) if "$skip" in options else None,
        count=_count(options["$count"]) if "$count" in options else False,
        skiptoken=skiptoken,
        page_size=page_size,
        preference_applied=applied,
        format=_format(options["$format"]) if "$format" in options else "json",
    )
