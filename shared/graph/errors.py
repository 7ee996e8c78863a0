"""The ways a Graph call-log request can fail, each with a message an operator can act on."""
from __future__ import annotations


class GraphError(Exception):
    """Base of every Graph client error. `url` is the request URL when one was involved (never a token)."""

    def __init__(self, message: str, *, url: str | None = None):
        super().__init__(message)
        self.url = url


class GraphWindowError(GraphError, ValueError):
    """The requested window is invalid (over 90 days, end not after start, no time zone). Raised before any request."""


class GraphRequestError(GraphError):
    """Graph answered with an error that retrying will not fix (a 4xx, or a 5xx outside the retried ones)."""

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None,
                 code: str | None = None, graph_message: str | None = None, request_id: str | None = None):
        super().__init__(message, url=url)
        self.status = status
        self.code = code
        self.graph_message = graph_message
        self.request_id = request_id


class GraphPermissionError(GraphRequestError):
    """403: the identity lacks the Graph application permission. The message says which one and how to grant it."""


class GraphAuthError(GraphRequestError):
    """No usable token: the credential failed, or Graph answered 401 again right after a fresh token."""


class GraphRetriesExhaustedError(GraphError):
    """Throttling, transient 5xx or dropped connections outlasted the retry budget (or Retry-After was too long)."""

    def __init__(self, message: str, *, url: str | None = None, attempts: int = 0,
                 last_status: int | None = None, last_error: str | None = None):
        super().__init__(message, url=url)
        self.attempts = attempts
        self.last_status = last_status
        self.last_error = last_error


class GraphPageError(GraphError):
    """A page that cannot be trusted: not JSON, not an object with a `value` list, or a bad nextLink.

    `body` is the page as received when there was one (the collector keeps it in the archive as a rejected
    page): bytes Graph sent, never anything of the request, so never a token. It stays out of the message.
    """

    def __init__(self, message: str, *, url: str | None = None, body: bytes | None = None):
        super().__init__(message, url=url)
        self.body = body


class GraphPagingLoopError(GraphPageError):
    """A nextLink leads back to a page already read in this window: following it would never end."""
