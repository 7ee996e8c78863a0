"""The one place that decides a store did not answer: what stops a collection run, and what a route answers
503 to. Only azure.core's exception types, so the routes can import it without the stores' SDKs."""
from __future__ import annotations

from azure.core.exceptions import ServiceRequestError, ServiceResponseError

# Cosmos DB's answers that mean "busy or unavailable, try again later": timeout, throttled, retry-with,
# unavailable.
BUSY_STATUSES = (408, 429, 449, 503)


def unreachable(exc: BaseException) -> bool:
    """Blob storage or Cosmos DB did not answer at all (refused, reset, timed out) after the SDK's retries:
    every later request would fail the same way, so a run stops and a route answers 503."""
    return isinstance(exc, (ServiceRequestError, ServiceResponseError))


def unavailable(exc: BaseException) -> bool:
    """A store that is unreachable, or answered that it is busy or unavailable: worth a retry later, not an
    error of the request."""
    return unreachable(exc) or getattr(exc, "status_code", None) in BUSY_STATUSES
