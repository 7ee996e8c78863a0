"""The OData v4 feed under /api/odata: service document, $metadata, entity sets, /$count.

Takes the request as plain values (path, query parameters, headers, base URL) and the stores, returns an
`http.Response`. The language (model, CSDL, $filter -> SQL) is in shared/odata; reading day partitions in order
with keyset cursors is in stores/reader.py, and the paging tokens in api/tokens.py.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Mapping

from ..odata.options import SUPPORTED
from ..odata import context_url, entity_sets, metadata_xml, parse_options, service_document, time_range, to_sql
from ..stores import Stores
from ..stores.reader import PartitionedReader, QuerySpec, ReadLog, read_page
from .http import HttpError, Response, bad_request, json_response
from .privacy import MASKED_FIELDS, filtered_properties, mask_row
from .tokens import TokenError, decode_token, encode_token, fingerprint, next_link

log = logging.getLogger("odata")

# Server-driven page size, as Dataverse's OData API uses: a Power BI refresh reads a week of a large tenant in a
# fifth of the round trips 1,000-row pages took, and each page stays about 4 MB of JSON (1 MB gzipped), far
# below what a Functions instance holds. `Prefer: odata.maxpagesize` asks for smaller pages.
MAX_PAGE_SIZE = 5000
JSON_TYPE = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
ODATA_HEADERS = {"OData-Version": "4.0"}
MIDNIGHT = "T00:00:00.0000000Z"
# What a nextLink carries besides its $skiptoken: the query options, never $skip (the token resumes after the
# skipped rows) and never a parameter the feed does not read (`code`, the Functions key, or any other).
CARRIED = tuple(name for name in SUPPORTED if name not in ("$skip", "$skiptoken"))


def handle(path: str, params: Mapping[str, str], headers: Mapping[str, str], base_url: str, stores: Stores,
           mask: bool = False) -> Response:
    """`base_url` is the feed root (…/api/odata); `mask` is the PRIVACY_MASK setting."""
    path = path.strip("/")
    if path == "":
        return json_response(service_document(base_url), headers=ODATA_HEADERS, content_type=JSON_TYPE)
    if path == "$metadata":
        return Response(200, metadata_xml(), {"Content-Type": "application/xml", **ODATA_HEADERS})
    name, _, rest = path.partition("/")
    if "(" in name:
        raise HttpError(501, "NotImplemented", "reading a single entity by key is not supported; filter the "
                                               "entity set instead, e.g. $filter=id eq '...'", name)
    sets = entity_sets()
    if name not in sets:
        raise HttpError(404, "NotFound", f"no entity set {name[:60]!r}; the feed has {', '.join(sets)}", name)
    if rest not in ("", "$count"):
        raise HttpError(404, "NotFound", f"unknown resource path {path[:100]!r}", path[:100])
    return _collection(sets[name], rest == "$count", params, headers, base_url, stores, mask)


def _day_bounds(entity, bounds) -> tuple[str | None, str | None]:
    """The first and last UTC day partitions that can hold rows within the filter's time range."""
    first = bounds.lower[:10] if bounds.lower else None
    last = bounds.upper[:10] if bounds.upper else None
    if entity.time_property != "day" and bounds.upper and not bounds.upper_inclusive and bounds.upper[10:] == MIDNIGHT:
        # `lt 0001-01-01T00:00:00Z` ends before the first day there is: "0000-12-31" sorts before every day, so
        # the range is empty (there is no date before date.min to compute).
        upper = dt.date.fromisoformat(bounds.upper[:10])
        last = (upper - dt.timedelta(days=1)).isoformat() if upper > dt.date.min else "0000-12-31"
    return first, last


def _collection(entity, count_only: bool, params: Mapping[str, str], headers: Mapping[str, str],
                base_url: str, stores: Stores, mask: bool) -> Response:
    name = entity.name
    prefer = _header(headers, "Prefer")
    options = parse_options(name, dict(params), prefer, MAX_PAGE_SIZE)
    if mask:
        hidden = sorted(filtered_properties(options.filter) & MASKED_FIELDS)
        if hidden:
            raise bad_request("MaskedProperty", f"{', '.join(hidden)} cannot be filtered on while PRIVACY_MASK is "
                                                "on: the values are masked", "$filter")
    where, sql_params = to_sql(options.filter, name, param_prefix="@f")
    bounds = time_range(options.filter, entity.time_property)
    first, last = _day_bounds(entity, bounds)
    descending = bool(options.orderby) and options.orderby[0][1] == "desc"
    spec = QuerySpec("" if where == "true" else where, tuple(sql_params), first, last, descending,
                     entity.sort_path)
    reader = stores.reader(entity.feed, ReadLog())
    empty = bounds.empty or (last is not None and last < (first or dt.date.min.isoformat()))

    if count_only:
        total = 0 if empty else reader.count(spec)
        return Response(200, str(total).encode(), {"Content-Type": "text/plain;charset=utf-8", **ODATA_HEADERS,
                                                   **_read_headers(reader)})

    # What a $skiptoken is bound to. Not $skip: it applies to the first page only and the nextLink drops it, so
    # a second page would never match. The parsed filter, not params["$filter"]: option names are
    # case-insensitive ($FILTER is the same option).
    key = fingerprint(name, options.filter, options.orderby, options.top)
    after, remaining = None, options.top
    if options.skiptoken:
        try:
            after, remaining = decode_token(stores.paging_key, options.skiptoken, key)
        except TokenError as exc:
            raise bad_request("InvalidSkipToken", str(exc), "$skiptoken") from None
    skip = 0 if options.skiptoken else (options.skip or 0)
    if empty or remaining == 0:
        page_rows, next_cursor = [], None
    else:
        page = read_page(reader, spec, options.page_size, after, skip, remaining)
        page_rows, next_cursor, remaining = page.rows, page.next_cursor, page.remaining

    body: dict = {"@odata.context": context_url(base_url, name, options.select)}
    if options.count:
        body["@odata.count"] = 0 if empty else reader.count(spec)
    shape = _shape(entity, options.select)
    body["value"] = [_project(shape, mask_row(doc) if mask else doc) for doc in page_rows]
    if next_cursor is not None:
        token = encode_token(stores.paging_key, next_cursor, key, remaining)
        body["@odata.nextLink"] = next_link(f"{base_url}/{name}", params, CARRIED, "$skiptoken", token)
    extra = {"Preference-Applied": options.preference_applied} if options.preference_applied else {}
    log.info("odata %s: %d rows from %d day partition(s)", name, len(page_rows), len(set(reader.log.days)))
    return json_response(body, headers={**ODATA_HEADERS, **extra, **_read_headers(reader)}, content_type=JSON_TYPE)


def _shape(entity, select) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The properties a page returns, in model order, and which of them are collections."""
    props = [p for p in entity.entity_type.properties if not select or p.name in select]
    return tuple(p.name for p in props), tuple(p.name for p in props if p.collection)


def _project(shape: tuple[tuple[str, ...], tuple[str, ...]], doc: dict) -> dict:
    """Declared properties only, in model order: missing ones as null (collections as []), so every row has the
    shape $metadata promises; undeclared fields Graph adds stay in the store and the /api/calls route."""
    names, collections = shape
    get = doc.get
    out = dict(zip(names, map(get, names)))  # C-speed: a Python loop here costs a tenth of a large page's time
    for name in collections:
        if out[name] is None:
            out[name] = []
    return out


def _read_headers(reader: PartitionedReader) -> dict[str, str]:
    # How many day partitions the request read: lets anyone check that a date filter reached the partition key.
    return {"X-Partitions-Read": str(len(set(reader.log.days)))}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None
