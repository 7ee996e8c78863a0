"""What a Graph page is: a body checked to be a page, its nextLink, and the rule against paging in circles.

No HTTP here: the client fetches and this module judges what came back, so the collector's replay can re-read
archived pages with `parse_page` exactly as they were read when collected.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson

from .errors import GraphPageError, GraphPagingLoopError

# Current Graph spells it @odata.nextLink; the older call-records doc text has @odata.NextLink.
NEXT_LINK_KEYS = ("@odata.nextLink", "@odata.NextLink")

# Returns to an empty page tolerated per window (see LoopGuard).
MAX_EMPTY_REVISITS = 3


@dataclass(frozen=True)
class Page:
    """One page of a window, as `GraphClient.pages` hands it out."""

    number: int                 # 1-based within the window
    url: str                    # the URL fetched: the function URL, then nextLinks verbatim
    body: bytes                 # exactly the bytes Graph sent (decompressed), for the raw archive
    rows: list[dict]
    next_link: str | None       # None on the last page


def _loads(body: bytes) -> Any:
    # orjson reads a 1,000-row page in two thirds of json's time; what it refuses (a UTF-16 body, NaN, a lone
    # surrogate, a huge integer) json still reads, or rejects with its own message.
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def parse_page(url: str, body: bytes) -> tuple[dict[str, Any], list[dict]]:
    """The page object and its rows; GraphPageError naming the URL when the body is not a usable page.

    A page that fails here must fail the whole window: storing a half-read day would look complete.
    """
    try:
        document = _loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        excerpt = body[:80].decode("utf-8", "replace")
        raise GraphPageError(f"Graph page is not valid JSON ({exc}); {len(body)} bytes starting {excerpt!r}; "
                             f"url: {url}", url=url) from None
    if not isinstance(document, dict):
        raise GraphPageError(f"Graph page is JSON but not an object (got {type(document).__name__}); url: {url}",
                             url=url)
    if "value" not in document:
        keys = ", ".join(sorted(document)[:10]) or "none"
        raise GraphPageError(f"Graph page has no 'value' list (keys: {keys}); url: {url}", url=url)
    rows = document["value"]
    if not isinstance(rows, list):
        raise GraphPageError(f"Graph page 'value' is a {type(rows).__name__}, not a list; url: {url}", url=url)
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise GraphPageError(f"Graph page row {index} is a {type(row).__name__}, not an object; url: {url}",
                                 url=url)
    return document, rows


def next_link_of(url: str, document: dict[str, Any]) -> str | None:
    """The nextLink of the page read from `url`, None on the last page; GraphPageError if it is not a URL string.

    The link is opaque: Graph's nextLink has another shape than the request (`(from=..,to=..)?$skip=1000`), so
    it is followed exactly as received, never rebuilt.
    """
    for key in NEXT_LINK_KEYS:
        if key in document and document[key] is not None:
            link = document[key]
            if not isinstance(link, str) or not link.strip():
                raise GraphPageError(f"Graph page has an unusable {key} ({link!r}); url: {url}", url=url)
            return link
    return None


class LoopGuard:
    """Refuses the nextLink that would make one window go round in circles.

    A loop is a nextLink back to a URL already read in this window whose page had rows: following it would read
    the same rows forever. A nextLink back to a page that was EMPTY is Graph saying "nothing here yet, continue
    from here" (the project's simulator models it that way), so it is followed again, but at most
    MAX_EMPTY_REVISITS times per window before it too counts as a loop.

    An object because it remembers across the whole window, while the client reads each page in a call of its
    own (so that the page's body and rows go when that call returns).
    """

    def __init__(self, start_url: str):
        self._read = {start_url}            # URLs fetched in this window, or about to be
        self._had_rows: set[str] = set()
        self._empty_revisits = 0

    def follow(self, number: int, url: str, rows: list, next_link: str) -> None:
        """Page `number`, read from `url` with `rows`, leads to `next_link`: allow it or raise GraphPagingLoopError."""
        if rows:
            self._had_rows.add(url)
        if next_link in self._read:
            if next_link in self._had_rows:
                raise GraphPagingLoopError(
                    f"Graph paging loop: the nextLink of page {number} points back to a page already read "
                    f"in this window, so following it would repeat the same rows forever; nextLink: {next_link}",
                    url=next_link)
            self._empty_revisits += 1
            if self._empty_revisits > MAX_EMPTY_REVISITS:
                raise GraphPagingLoopError(
                    f"Graph paging loop: the nextLink of page {number} points back to an empty page again "
                    f"({self._empty_revisits} returns to empty pages in this window, at most "
                    f"{MAX_EMPTY_REVISITS} tolerated); nextLink: {next_link}", url=next_link)
        self._read.add(next_link)
