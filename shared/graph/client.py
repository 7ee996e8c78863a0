"""Talking to Microsoft Graph: a window's call-log pages, fetched politely (rate-limited, retried, with a
cached token) from the function URL this module builds.

Plain `requests`, not the Graph SDK: the SDK formats the window's datetimes wrongly (400 BadRequest, see
msgraph-sdk-python #285 and #1234), and the collector needs each page's exact bytes for the raw archive.
"""
from __future__ import annotations

import json
import logging
import re
import threading
import time
import unicodedata
import uuid
from collections.abc import Generator
from datetime import datetime, timedelta, timezone
from typing import Any, Callable
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util import parse_url

from ..config.credentials import graph_credential
from ..config.settings import Settings
from .errors import (GraphAuthError, GraphError, GraphPageError, GraphPermissionError, GraphRequestError,
                     GraphRetriesExhaustedError, GraphWindowError)
from .paging import LoopGuard, Page, next_link_of, parse_page
from .ratelimit import FUNCTION, ScopeRegistry, ScopedLimiter, limiter_for
from .retry import RETRYABLE_EXCEPTIONS, RETRYABLE_STATUSES, Backoff, parse_retry_after
from .stats import GraphCounters

log = logging.getLogger(__name__)

MAX_WINDOW = timedelta(days=90)

# Application permissions that allow the call-log functions, with their app role ids on Microsoft Graph.
PERMISSION = ("CallRecords.Read.All", "45bbb07e-7321-4fd7-a8f6-3ff27e6a81c8")
NARROW_PERMISSION = ("CallRecord-PstnCalls.Read.All", "a2611786-80b3-417e-adaa-707d4261a5f0")
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"

_FUNCTION_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_DEFAULT_PORTS = {"http": 80, "https": 443}


# --- URL -----------------------------------------------------------------------------------------------

def format_datetime(value: datetime) -> str:
    """An Edm.DateTimeOffset literal in UTC: 2024-05-01T00:00:00Z, with a fraction only when there is one."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise GraphWindowError(f"datetime {value.isoformat()} has no time zone; Graph windows are absolute instants")
    v = value.astimezone(timezone.utc)
    text = f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}"
    if v.microsecond:
        text += f".{v.microsecond:06d}".rstrip("0")
    return text + "Z"


def check_window(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The window in UTC, or GraphWindowError: it must run forwards and span at most 90 days."""
    for name, value in (("start", start), ("end", end)):
        if not isinstance(value, datetime):
            raise GraphWindowError(f"window {name} must be a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise GraphWindowError(f"window {name} {value.isoformat()} has no time zone; "
                                   "pass an aware datetime (e.g. tzinfo=timezone.utc)")
    start, end = start.astimezone(timezone.utc), end.astimezone(timezone.utc)
    if end <= start:
        raise GraphWindowError(f"window end {format_datetime(end)} is not after its start {format_datetime(start)}")
    if end - start > MAX_WINDOW:
        raise GraphWindowError(f"window {format_datetime(start)} .. {format_datetime(end)} spans {end - start}; "
                               f"Graph serves at most {MAX_WINDOW.days} days per request: split it")
    return start, end


def build_function_url(endpoint: str, version: str, function: str, start: datetime, end: datetime) -> str:
    """The URL of call-log function `function` over [start, end]: ValueError for a name that is not one,
    GraphWindowError for a bad window."""
    if not _FUNCTION_NAME.fullmatch(function or ""):
        raise ValueError(f"not a Graph function name: {function!r}")
    start, end = check_window(start, end)
    return (f"{endpoint.rstrip('/')}/{version}/communications/callRecords/{function}"
            f"(fromDateTime={format_datetime(start)},toDateTime={format_datetime(end)})")


def _urllib3_origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of `url` as urllib3's parse_url reads it (requests 2.31 picked the connection so)."""
    parts = parse_url(url)
    scheme = (parts.scheme or "").lower()
    return scheme, (parts.host or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)


def _urlsplit_origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of `url` as urllib.parse reads it (requests 2.32 and later pick the connection so)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)


def next_link_problem(next_link: str, origin: tuple[str, str, int | None]) -> str | None:
    """Why a nextLink must not be followed with the token, or None when it may: it must name `origin`
    (scheme, host, port) and nothing that parsers read differently.

    The bearer token goes with every request. urllib.parse and urllib3 disagree on some URLs (a backslash before
    an @ ends the host for urllib3, not for urllib.parse), and requests has used each to choose where to
    connect, so a link is refused unless both read the same origin; and what such tricks are made of
    (userinfo, backslashes, whitespace, control characters, a non-ASCII host) is refused outright: Graph's
    nextLinks hold none of it.
    """
    for ch in next_link:
        if ch == "\\":
            return "holds a backslash"
        if unicodedata.category(ch)[0] in ("C", "Z"):  # control, format, unassigned; space and separators
            return f"holds whitespace or a control character ({ch!r})"
    try:
        parsed = parse_url(next_link)
        split = urlsplit(next_link)
        ours, theirs = _urllib3_origin(next_link), _urlsplit_origin(next_link)
    except ValueError as exc:  # urllib3's LocationParseError is one, and so is urlsplit's bad port
        return f"is not a URL the HTTP client can parse ({exc})"
    if parsed.auth is not None or "@" in split.netloc:
        return "carries userinfo (user@host)"
    if not split.netloc.isascii():
        return "has a host that is not ASCII"
    if ours != theirs:
        return f"names one origin to urllib3 ({_show(ours)}) and another to urllib.parse ({_show(theirs)})"
    if ours != origin:
        return f"points at {_show(ours)}, another origin than GRAPH_ENDPOINT ({_show(origin)})"
    return None


def _show(origin: tuple[str, str, int | None]) -> str:
    scheme, host, port = origin
    return f"{scheme or '(no scheme)'}://{host or '(no host)'}:{port if port is not None else '(no port)'}"


# --- client --------------------------------------------------------------------------------------------

class GraphClient:
    """Fetches call-log pages from Graph. Thread-safe: one client serves every concurrent window of a run.

    All requests of the client share one token cache, one connection pool and one set of counters (`stats`);
    its request limits (per function, per app, per tenant: see ratelimit) are shared with every other client of
    the process on the same endpoint, tenant and app identity, through `limits` (the process-wide
    registry unless another is given; tests pass one on a fake clock). `sleep` is the wait between retries,
    injectable so tests need not wait; `wall_clock` (epoch seconds) is used for token expiry and Retry-After
    dates.
    """

    def __init__(self, settings: Settings, credential=None, session: requests.Session | None = None, *,
                 sleep: Callable[[float], None] = time.sleep, wall_clock: Callable[[], float] = time.time,
                 limits: ScopeRegistry | None = None, backoff: Backoff | None = None, pool_size: int | None = None,
                 max_retry_after: float = 300.0, token_refresh_margin: float = 300.0):
        self._settings = settings
        self._scope = f"{settings.graph_endpoint.rstrip('/')}/.default"
        self._credential = credential if credential is not None else graph_credential(settings)
        self._sleep = sleep
        self._wall_clock = wall_clock
        self._limiter: ScopedLimiter = limiter_for(settings, limits)
        self._backoff = backoff or Backoff(base=1.0, cap=60.0)
        self._timeout = (float(settings.graph_timeout_seconds), float(settings.graph_timeout_seconds))
        self._max_retries = int(settings.graph_max_retries)
        # Beyond this a Retry-After is not slept through but reported: a run has a time budget to keep.
        self._max_retry_after = max_retry_after
        self._refresh_margin = token_refresh_margin
        self._origin = _urlsplit_origin(settings.graph_endpoint)
        self._counters = GraphCounters()
        self._token_lock = threading.Lock()
        self._access_token = None  # azure.core AccessToken
        self._owns_session = session is None
        if session is None:
            session = requests.Session()
            # One pooled connection per concurrent window; retries are ours, so urllib3 must not add its own.
            size = pool_size or max(10, settings.subwindows * len(settings.feeds))
            adapter = HTTPAdapter(pool_connections=2, pool_maxsize=size, max_retries=0)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        self._session = session

    # --- public ---------------------------------------------------------------------------------------
    def pages(self, function: str, start: datetime, end: datetime) -> Generator[Page, None, None]:
        """The pages of `function` over [start, end]: a generator fetching one page per `next()`.

        The window is checked by this call, before any request: a bad one raises GraphWindowError here, not
        at the first `next()`. Each nextLink is followed verbatim, and only to GRAPH_ENDPOINT's origin (the
        token goes with every request). The nextLink alone decides whether the stream goes on: an empty page
        that has one is handed out and followed (Graph sends those mid-window; stopping there would drop the
        rest of the day), and the page without one is the last, rows or not. A failure ends the generator and
        is logged once, here.
        """
        url = build_function_url(self._settings.graph_endpoint, self._settings.graph_api_version, function,
                                 start, end)
        start, end = check_window(start, end)
        return self._pages(function, start, end, url)

    @property
    def stats(self) -> GraphCounters:
        """Live counters of every window of this client: `.snapshot()` is a GraphStats, and `b - a` of two
        snapshots is the traffic between them."""
        return self._counters

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    # --- pages ----------------------------------------------------------------------------------------
    def _pages(self, function: str, start: datetime, end: datetime, url: str) -> Generator[Page, None, None]:
        guard = LoopGuard(url)
        number = 0
        next_url: str | None = url
        try:
            while next_url is not None:
                number += 1
                # The page leaves this frame as it is yielded: the generator stays suspended while the caller
                # archives and stores the page, and must not keep its body and rows alive meanwhile.
                handover = [self._read_page(function, number, next_url, guard)]
                next_url = handover[0].next_link
                yield handover.pop()
        except GraphError as exc:
            log.error("Graph %s %s..%s failed: %s", function, format_datetime(start), format_datetime(end), exc)
            raise

    def _read_page(self, function: str, number: int, url: str, guard: LoopGuard) -> Page:
        body = self._fetch(function, url)
        try:
            document, rows = parse_page(url, body)
            next_link = next_link_of(url, document)
            if next_link is not None:
                self._check_next_link(url, next_link)
                guard.follow(number, url, rows, next_link)
        except GraphPageError as exc:
            # The collector archives a refused page as rejected, for diagnosis: it needs the bytes.
            exc.body = body
            raise
        self._counters.add(pages=1, rows=len(rows), bytes_received=len(body))
        log.debug("Graph page %d of %s: %d rows, %d bytes, more: %s", number, function, len(rows), len(body),
                  next_link is not None)
        return Page(number=number, url=url, body=body, rows=rows, next_link=next_link)

    # --- tokens ---------------------------------------------------------------------------------------
    def _token(self) -> str:
        with self._token_lock:
            cached = self._access_token
            if cached is None or cached.expires_on - self._wall_clock() <= self._refresh_margin:
                self._access_token = self._get_token()
            return self._access_token.token

    def _refresh_after_401(self, rejected: str) -> bool:
        """Fetch a new token unless another thread already replaced the rejected one. True if fetched."""
        with self._token_lock:
            if self._access_token is not None and self._access_token.token != rejected:
                return False
            self._access_token = self._get_token()
            return True

    def _get_token(self):
        try:
            token = self._credential.get_token(self._scope)
        except Exception as exc:
            raise GraphAuthError(f"Could not get a Microsoft Graph token for scope {self._scope} with "
                                 f"{type(self._credential).__name__}: {type(exc).__name__}: {exc}") from exc
        if not getattr(token, "token", None):
            raise GraphAuthError(f"{type(self._credential).__name__} returned an empty token for {self._scope}")
        return token

    # --- requests -------------------------------------------------------------------------------------
    def _send(self, url: str, token: str) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json",
                   "client-request-id": str(uuid.uuid4())}
        prepared = self._session.prepare_request(requests.Request("GET", url, headers=headers))
        # requests re-quotes URLs (it decodes %41 to A, for one); a nextLink is opaque and goes out as received.
        prepared.url = url
        env = self._session.merge_environment_settings(url, {}, False, None, None)
        return self._session.send(prepared, timeout=self._timeout, allow_redirects=False, **env)

    def _fetch(self, function: str, url: str) -> bytes:
        """The body of a 200 answer to GET url (a page of `function`), after whatever retries the budget allows."""
        retries = 0
        refreshed = False
        while True:
            slot = self._limiter.acquire(function)
            if slot.waited > 0:
                self._counters.add(**{"rate_limit_wait_seconds": slot.waited,
                                      f"slot_wait_{slot.bound_by or FUNCTION}_seconds": slot.waited})
            token = self._token()
            self._counters.add(requests=1)
            retry_after = None
            try:
                response = self._send(url, token)
            except RETRYABLE_EXCEPTIONS as exc:
                last_status, reason = None, _describe_exception(exc, self._timeout[1])
            else:
                status = response.status_code
                if 200 <= status < 300:
                    self._limiter.succeeded(slot)
                    return response.content
                if status == 401 and not refreshed:
                    # Tokens can be revoked or rotated before their expiry: one fresh token, one more try.
                    refreshed = True
                    if self._refresh_after_401(token):
                        self._counters.add(token_refreshes=1)
                    log.warning("Graph answered 401 for %s; retrying once with a new token", url)
                    continue
                if status == 401:
                    raise self._request_error(GraphAuthError, response, url, token,
                                              "A freshly fetched token was rejected too: check the credential's "
                                              "tenant and that GRAPH_ENDPOINT matches the token's audience")
                if status == 403:
                    raise self._request_error(GraphPermissionError, response, url, token,
                                              self._permission_help(function))
                if status not in RETRYABLE_STATUSES:
                    raise self._request_error(GraphRequestError, response, url, token, _status_hint(status))
                last_status = status
                reason = f"HTTP {status}{_error_suffix(response, token)}"
                retry_after = parse_retry_after(response.headers.get("Retry-After"), now=self._wall_clock())
                # A Retry-After beyond what this client waits is reported below, not held: other threads would
                # only sit out a run's time budget in it.
                held = retry_after if retry_after is not None and retry_after <= self._max_retry_after else None
                if status == 429 or held is not None:
                    # Only the scope that was throttled holds and slows down; the other functions' feeds go on.
                    kind = self._limiter.throttled(slot, response.headers.get("x-ms-throttle-scope"), held,
                                                   slow_down=status == 429)
                    if status == 429:
                        self._counters.add(**{"responses_429": 1, f"responses_429_{kind}": 1})
            if retries >= self._max_retries:
                raise GraphRetriesExhaustedError(
                    f"Graph request failed after {retries + 1} attempts ({retries} retries, the GRAPH_MAX_RETRIES "
                    f"budget); last: {reason}; url: {url}", url=url, attempts=retries + 1,
                    last_status=last_status, last_error=reason)
            if retry_after is not None and retry_after > self._max_retry_after:
                raise GraphRetriesExhaustedError(
                    f"Graph asked to wait {retry_after:.0f} s (Retry-After) after {reason}, longer than the "
                    f"{self._max_retry_after:.0f} s this client waits; url: {url}", url=url,
                    attempts=retries + 1, last_status=last_status, last_error=reason)
            if retry_after is not None:
                # The scope's hold (above) keeps every other thread of the process out of it meanwhile: they
                # would only collect 429s, and lengthen the penalty.
                wait = retry_after
            else:
                wait = self._backoff.delay(retries)
            retries += 1
            log.warning("Graph %s for %s; retry %d of %d in %.2f s%s", reason, url, retries, self._max_retries,
                        wait, " (Retry-After)" if retry_after is not None else " (backoff)")
            self._counters.add(retries=1, throttle_wait_seconds=wait)
            if wait > 0:
                self._sleep(wait)

    def _check_next_link(self, url: str, next_link: str) -> None:
        problem = next_link_problem(next_link, self._origin)
        if problem is not None:
            raise GraphPageError(f"Graph page's nextLink {problem}; not following it with our token; "
                                 f"nextLink: {next_link!r}; page url: {url}", url=url)

    def _permission_help(self, function: str) -> str:
        endpoint = self._settings.graph_endpoint.rstrip("/")
        return (f"{function} was refused (403): the app identity needs the Microsoft Graph application permission "
                f"{PERMISSION[0]} (app role {PERMISSION[1]}) or the narrower {NARROW_PERMISSION[0]} (app role "
                f"{NARROW_PERMISSION[1]}); delegated permissions do not work here. For a managed identity the "
                f"portal cannot grant it: POST "
                f"{endpoint}/v1.0/servicePrincipals/{{managed-identity-sp-id}}/appRoleAssignments with body "
                f"{{\"principalId\": \"<managed-identity-sp-id>\", \"resourceId\": \"<id of the Microsoft Graph "
                f"service principal, appId {GRAPH_APP_ID}>\", \"appRoleId\": \"{PERMISSION[1]}\"}}, as a caller "
                f"holding AppRoleAssignment.ReadWrite.All (e.g. az rest or Microsoft Graph PowerShell "
                f"New-MgServicePrincipalAppRoleAssignment). Managed-identity tokens are cached up to 24 h, so a new "
                f"grant can take hours to take effect")

    def _request_error(self, cls: type[GraphRequestError], response: requests.Response, url: str, token: str,
                       hint: str) -> GraphRequestError:
        code, message, request_id = _graph_error(response)
        said = f"{code or 'no code'}: {message or 'no message'}"
        rid = f" (request-id {request_id})" if request_id else ""
        text = f"Graph answered {response.status_code} {response.reason or ''}".rstrip()
        text += f" for {url}: {said}{rid}"
        if hint:
            text += f". {hint}"
        text = _redact(text, token)
        return cls(text, url=url, status=response.status_code, code=_redact(code, token),
                   graph_message=_redact(message, token), request_id=request_id)


# --- helpers -------------------------------------------------------------------------------------------

def _graph_error(response: requests.Response) -> tuple[str | None, str | None, str | None]:
    """(code, message, request-id) from Graph's error body {"error": {"code", "message", "innerError"}}."""
    request_id = response.headers.get("request-id") or response.headers.get("client-request-id")
    try:
        document: Any = json.loads(response.content or b"null")
    except (ValueError, UnicodeDecodeError):
        document = None
    if isinstance(document, dict) and isinstance(document.get("error"), dict):
        error = document["error"]
        inner = error.get("innerError") or error.get("innererror") or {}
        if isinstance(inner, dict):
            request_id = inner.get("request-id") or request_id
        code, message = error.get("code"), error.get("message")
        return (str(code) if code is not None else None, str(message) if message is not None else None,
                request_id)
    text = " ".join((response.content or b"").decode("utf-8", "replace").split())
    return None, (text[:200] or None), request_id


def _error_suffix(response: requests.Response, token: str) -> str:
    code, message, _ = _graph_error(response)
    if not code and not message:
        return ""
    return _redact(f" ({code or ''}{': ' if code and message else ''}{message or ''})", token)


def _redact(text: str | None, token: str) -> str | None:
    # Graph never echoes the token, but an error body from a proxy might; it must not reach a log line.
    # (Real tokens are long JWTs; a few-letter test token would only mangle ordinary words.)
    if text and token and len(token) >= 8 and token in text:
        return text.replace(token, "***")
    return text


def _describe_exception(exc: Exception, read_timeout: float) -> str:
    if isinstance(exc, requests.exceptions.Timeout) or "timed out" in str(exc).lower():
        return f"{type(exc).__name__} (no answer within the {read_timeout:g} s GRAPH_TIMEOUT_SECONDS)"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return f"{type(exc).__name__} (connection dropped while reading the answer)"
    return f"{type(exc).__name__} ({_first_line(exc)})"


def _first_line(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text[:200]


def _status_hint(status: int) -> str:
    if status in (400, 406):
        return ("Check the window (Graph takes at most 90 days and ISO-8601 UTC bounds) and GRAPH_API_VERSION; "
                "this is a configuration error, not a transient one")
    if status == 404:
        return ("The function was not found: check GRAPH_ENDPOINT and GRAPH_API_VERSION (getSmsLog is beta only; "
                "the China cloud has no call-log functions)")
    return ""
