"""The Microsoft Graph client of the collector: the call-log pages of one window, fetched politely and checked.

    client = GraphClient(settings)
    for page in client.pages("getPstnCalls", start, end):   # one request per page, lazily
        archive(page.body); store(page.rows)
    client.stats.snapshot()                                 # GraphStats of the run so far
    client.close()

Modules with one job each: client (requests, tokens, retries, the pages generator), paging (what a page is,
its nextLink, the loop rule), ratelimit (the request limits per function, app and tenant, shared by the
process), retry (Retry-After and backoff), stats (counters), errors (exceptions).
"""
from .client import PERMISSION, GraphClient, build_function_url, check_window, format_datetime
from .errors import (GraphAuthError, GraphError, GraphPageError, GraphPagingLoopError, GraphPermissionError,
                     GraphRequestError, GraphRetriesExhaustedError, GraphWindowError)
from .paging import Page, parse_page
from .ratelimit import RateLimiter, ScopedLimiter, ScopeLimits, ScopeRegistry, reset_registry, throttle_scope
from .retry import Backoff, parse_retry_after
from .stats import GraphStats

__all__ = [
    "GraphClient", "Page", "GraphStats", "build_function_url", "format_datetime", "check_window", "parse_page",
    "PERMISSION", "RateLimiter", "ScopeRegistry", "ScopedLimiter", "ScopeLimits", "reset_registry", "throttle_scope",
    "Backoff", "parse_retry_after",
    "GraphError", "GraphWindowError", "GraphRequestError", "GraphPermissionError", "GraphAuthError",
    "GraphRetriesExhaustedError", "GraphPageError", "GraphPagingLoopError",
]
