"""Plain HTTP for the routes: responses (JSON, CSV, gzip), the routes' error type, and the guard that turns
every failure into a JSON error, without azure.functions.

The blueprint turns a `Response` into an `azure.functions.HttpResponse`; everything here is testable alone.
"""
from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import logging
import re
import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable, Iterable, Mapping

import orjson
from isal import igzip

from ..odata.errors import ODataError
from ..stores.outages import unavailable

log = logging.getLogger("http")
GZIP_MIN_BYTES = 1024
# ISA-L's gzip (the isal package, same format) at its level 1 compresses a 5,000-row page about 6x faster than
# zlib's fastest level and a little smaller: with zlib, compression is a tenth of a large feed page's time.
GZIP_LEVEL = 1


# Sent on every answer: a browser must take each body as its declared type (a CSV or JSON answer holding Graph's
# text is never sniffed into HTML and run).
SAFE_HEADERS = {"X-Content-Type-Options": "nosniff"}


def safe_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """`headers` with SAFE_HEADERS added where absent."""
    return {**SAFE_HEADERS, **headers}


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, value in SAFE_HEADERS.items():
            self.headers.setdefault(name, value)

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")


class HttpError(Exception):
    """A request the route refuses: the status, a short machine-readable code, a sentence for a person and the
    parameter concerned. Answered in the same JSON error shape as the OData feed's, so clients parse one."""

    def __init__(self, status: int, code: str, message: str, target: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.target = status, code, message, target

    def to_body(self) -> dict:
        error: dict = {"code": self.code, "message": self.message}
        if self.target is not None:
            error["target"] = self.target
        return {"error": error}


def bad_request(code: str, message: str, target: str | None = None) -> HttpError:
    return HttpError(400, code, message, target)


def dumps(obj) -> bytes:
    """Compact UTF-8 JSON. orjson writes a 5,000-row page in a seventh of json.dumps' time; what it refuses
    (an integer beyond 64 bits) goes through json, which writes anything JSON can hold."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def json_response(obj, status: int = 200, headers: Mapping[str, str] | None = None,
                  content_type: str = "application/json; charset=utf-8") -> Response:
    return Response(status, dumps(obj), {"Content-Type": content_type, **(headers or {})})


def known_params(params: Mapping[str, str], allowed: set[str]) -> dict[str, str]:
    """The request's parameters, trimmed; an unknown one is refused by name (`code` is the Functions key)."""
    unknown = sorted(set(params) - allowed - {"code"})
    if unknown:
        raise HttpError(400, "UnknownParameter", f"unknown parameter(s): {', '.join(unknown)}; allowed: "
                                                  f"{', '.join(sorted(allowed)) or 'none'}", unknown[0])
    return {k: v.strip() for k, v in params.items()}


def error_response(error: HttpError | ODataError) -> Response:
    """Every route answers client errors in the OData JSON error shape, so clients parse one format."""
    return json_response(error.to_body(), error.status)


def csv_lines(columns: list[str], rows: Iterable[Mapping], safe: bool = True) -> Iterable[str]:
    """RFC 4180 CSV (CRLF line ends, quotes doubled), header first, one row at a time.

    safe (the default) is for opening in a spreadsheet, following OWASP's advice on CSV injection: every field
    is quoted, so that a reader splitting on another separator (Excel's `;` in many locales) still sees one
    field, and a text cell a spreadsheet would run as a formula or change (starts_formula, and digit strings
    it would turn into numbers) gets a leading `'`, which Excel takes as "text" and does not show; so
    `+14255550123` shows as the text +14255550123. A cell starting with `'` gets one more, so removing one
    leading `'` always gives back what Graph sent. safe=False writes the values as they are,
    for programs that read the CSV."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_ALL if safe else csv.QUOTE_MINIMAL)
    cell = _safe_cell if safe else _cell

    def line(values) -> str:
        writer.writerow(values)
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    yield line([cell(c) for c in columns])
    for row in rows:
        yield line([cell(row.get(c)) for c in columns])


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


# First characters that make Excel, LibreOffice Calc or Google Sheets read a cell as a formula: OWASP's = + - @,
# and the minus sign U+2212 (LibreOffice reads it as a minus). Look-alikes (full-width ＝＋－＠, small ﹦﹢﹣﹫,
# super- and subscript ⁺⁻₊₋⁼₌) are caught by comparing the NFKC form, which maps them onto these.
FORMULA_STARTS = frozenset("=+-@\u2212")
# Tab, CR and LF at the start (OWASP), NUL (OWASP ASVS): neutralised whatever follows.
_CONTROL_STARTS = frozenset("\t\r\n\0")
# Excel keeps 15 significant digits and drops leading zeros: such digit strings lose digits as numbers.
_MANGLED_DIGITS = re.compile(r"0[0-9]+|[0-9]{16,}")


def _skippable(char: str) -> bool:
    # What a spreadsheet may skip before it looks for "=": spaces of every kind, controls, and invisible
    # format characters (a zero-width space or BOM in front of "=").
    return char.isspace() or unicodedata.category(char) in ("Cc", "Cf", "Zs", "Zl", "Zp")


def starts_formula(text: str) -> bool:
    """Whether a spreadsheet could take this cell text for a formula: it starts with tab, CR, LF or NUL, or its
    first character after spaces, controls and invisible characters is (in NFKC form) one of FORMULA_STARTS."""
    if not text:
        return False
    if text[0] in _CONTROL_STARTS:
        return True
    for char in text:
        if not _skippable(char):
            return char in FORMULA_STARTS or unicodedata.normalize("NFKC", char)[:1] in FORMULA_STARTS
    return False


def spreadsheet_safe(text: str) -> str:
    """The cell text a spreadsheet shows as `text`, never as a formula or a number: `'` + text where needed
    (starts_formula, a digit string a spreadsheet would shorten, or a leading `'` of its own), else text."""
    if text.startswith("'") or starts_formula(text) or _MANGLED_DIGITS.fullmatch(text):
        return "'" + text
    return text


def _safe_cell(value) -> str:
    # Numbers are written as numbers (a negative charge stays a number); every text goes through the rule.
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return _cell(value)
    return spreadsheet_safe(_cell(value))


def accepts_gzip(accept_encoding: str | None) -> bool:
    for part in (accept_encoding or "").split(","):
        name, _, params = part.strip().partition(";")
        if name.strip().lower() in ("gzip", "*"):
            return "q=0" not in params.replace(" ", "") or "q=0." in params.replace(" ", "")
    return False


def maybe_gzip(response: Response, accept_encoding: str | None) -> Response:
    """Compress when the client accepts gzip and the body is worth it; JSON pages shrink about 4x."""
    response.headers.setdefault("Vary", "Accept-Encoding")
    if len(response.body) < GZIP_MIN_BYTES or not accepts_gzip(accept_encoding):
        return response
    # Level 1 (nginx's default for dynamic answers): a 1,000-row page compresses 4.2x in about 5 ms, where
    # level 5 took about 9 ms for 4.8x; the feed's time per page is mostly this process's CPU.
    response.body = igzip.compress(response.body, compresslevel=GZIP_LEVEL)
    response.headers["Content-Encoding"] = "gzip"
    return response


def guarded(handler: Callable[[], Response], what: str) -> Response:
    """Run a route handler and turn every failure into a JSON error: client errors keep their status and
    message; a store that is down or throttling answers 503 with Retry-After; anything else is logged with
    its trace and answered 500 with no detail, so no stack trace ever reaches a client."""
    try:
        return handler()
    except (HttpError, ODataError) as exc:
        return error_response(exc)
    except Exception as exc:
        if unavailable(exc):
            log.warning("%s: the store is unavailable (%s)", what, type(exc).__name__)
            response = error_response(HttpError(503, "StoreUnavailable",
                                                "the data store is busy or unreachable; try again shortly"))
            response.headers["Retry-After"] = "10"
            return response
        log.exception("%s failed", what)
        return error_response(HttpError(500, "InternalError", "the request failed on the server; the error is "
                                                              "in the app's logs"))


_INLINE = re.compile(r"<(script|style)(\s[^>]*)?>(.*?)</\1\s*>", re.S | re.I)
_NOT_JAVASCRIPT = re.compile(r"""\stype\s*=\s*["']?(?!(?:text/javascript|module)\b)""", re.I)


def _sha256_source(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def page_policy(page: str) -> str:
    """The Content-Security-Policy of an HTML page: its inline scripts and style elements allowed by their
    sha256 hashes (taken from the page's own text, so an edited script cannot drift from its hash), nothing
    else loaded, no framing, no <base>, no form posts. A data block (<script type="application/json">) is
    not run, so it needs no hash; inline style attributes and event handlers are refused."""
    scripts, styles = [], []
    for tag, attrs, body in _INLINE.findall(page):
        if tag.lower() == "style":
            styles.append(_sha256_source(body))
        elif not _NOT_JAVASCRIPT.search(attrs or ""):
            scripts.append(_sha256_source(body))
    return "; ".join(["default-src 'none'", "script-src " + (" ".join(scripts) or "'none'"),
                      "style-src " + (" ".join(styles) or "'none'"), "img-src 'none'",
                      "frame-ancestors 'none'", "base-uri 'none'", "form-action 'none'"])


def html_response(body: bytes, policy: str, status: int = 200) -> Response:
    """An HTML page with the headers every page gets: its policy (page_policy), no caching (it shows live
    state), no framing for browsers that predate frame-ancestors, no referrer (URLs may carry a function key)."""
    return Response(status, body, {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store",
                                   "Content-Security-Policy": policy, "X-Frame-Options": "DENY",
                                   "Referrer-Policy": "no-referrer"})
