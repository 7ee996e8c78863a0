"""The OData v4 "language" of the feed, with no I/O: the entity model, the CSDL $metadata document, query options,
and $filter parsed into a typed tree that becomes a parameterized Cosmos DB SQL WHERE clause.

    options = parse_options("PstnCalls", params, prefer_header, max_page_size=1000)
    where, parameters = to_sql(options.filter, "PstnCalls")          # "true", [] when there is no filter
    bounds = time_range(options.filter, entity_set("PstnCalls").time_property)

Every client error is an ODataError (status 400/404/406/501, to_body() gives the OData JSON error body).
"""
from .csdl import context_url, metadata_xml, service_document
from .errors import ODataError
from .evaluate import evaluate
from .filter_parser import parse_filter
from .model import ENTITY_TYPES, NAMESPACE, EntitySet, EntityType, Property, entity_set, entity_sets
from .nodes import And, Compare, Constant, In, Literal, Node, Not, Or, PropertyOperand, StringFunction
from .options import QueryOptions, page_size_from_prefer, parse_options
from .sql import instant_spellings, to_sql
from .time_range import TimeRange, time_range

__all__ = [
    "ENTITY_TYPES", "NAMESPACE", "And", "Compare", "Constant", "EntitySet", "EntityType", "In", "Literal", "Node",
    "Not", "ODataError", "Or", "Property", "PropertyOperand", "QueryOptions", "StringFunction", "TimeRange",
    "context_url", "entity_set", "entity_sets", "evaluate", "instant_spellings", "metadata_xml",
    "page_size_from_prefer",
    "parse_filter", "parse_options", "service_document", "time_range", "to_sql",
]
