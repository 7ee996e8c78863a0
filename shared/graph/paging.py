"""Reading Graph pages: checking a body is a page, and following its nextLinks to the end of a window.

The paginator has the shape of Meltano singer-sdk's `BaseAPIPaginator` (current_value, finished, count,
get_next, has_more, advance), fed with parsed bodies instead of responses so it stays testable without HTTP.
"""
from __future__ import annotations

import json
from typing import Any

import orjson

from .errors import GraphPageError, GraphPagingLoopError

# Current Graph spells it @odata.nextLink; the older call-records doc text has @odata.NextLink.
NEXT_LINK_KEYS = ("@odata.nextLink", "@odata.NextLink")


def _loads(body: bytes) -> Any:
    # orjson reads a 1,000-row page in two thirds of json's time; what it refuses (a UTF-16 body, NaN, a lone
    # surrogate, a huge integer) json reads or rejects with its own message, exactly as before.
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
    for key in NEXT_LINK_KEYS:
        if key in document and document[key] is not None:
            link = document[key]
            if not isinstance(link, str) or not link.strip():
                raise GraphPageError(f"Graph page has an unusable {key} ({link!r}); url: {url}", url=url)
            return link
    return None


class NextLinkPaginator:
    """Tracks the next URL of one window and refuses to go round in circles.

    `current_value` is the URL to fetch next (the function URL first), `finished` turns true after the page
    without a nextLink. The links are opaque: Graph's nextLink has another shape than the request
    (`(from=..,to=..)?$skip=1000`), so it is followed exactly as received, never rebuilt.

    A loop is a nextLink back to a URL already read in this window whose page had rows: following it would
    read the same rows forever. A nextLink back to a page that was EMPTY is Graph saying "nothing here yet,
    continue from here" (the project's simulator models it that way), so it is followed again, but only
    `max_empty_revisits` times per window before it too counts as a loop.
    """

    def __init__(self, start_url: str, max_empty_revisits: int = 3):
        self.current_value: str | None = start_url
        self.finished = False
        self.count = 0  # pages advanced over
        self.max_empty_revisits = max_empty_revisits
        self._visits: dict[str, int] = {start_url: 1}
        self._had_rows: set[str] = set()
        self._empty_revisits = 0

    def get_next(self, document: dict[str, Any]) -> str | None:
        return next_link_of(self.current_value or "", document)

    def has_more(self, document: dict[str, Any]) -> bool:
        # The nextLink alone decides: Graph can hand out an empty `value` with a nextLink mid-window, and
        # stopping there would silently drop every later row of the day.
        return self.get_next(document) is not None

    def advance(self, document: dict[str, Any]) -> None:
        """Move past the page just read (`document`, already checked by parse_page).

        GraphPagingLoopError if its nextLink leads back to a page of this window that had rows, or back to
        an empty page more than `max_empty_revisits` times.
        """
        if self.finished:
            raise RuntimeError("paginator already finished")
        url = self.current_value
        if document.get("value"):
            self._had_rows.add(url)
        link = self.get_next(document)
        self.count += 1
        if link is None:
            self.finished = True
            self.current_value = None
            return
        if link in self._visits:
            if link in self._had_rows:
                raise GraphPagingLoopError(
                    f"Graph paging loop: the nextLink of page {self.count} points back to a page already read "
                    f"in this window, so following it would repeat the same rows forever; nextLink: {link}",
                    url=link)
            self._empty_revisits += 1
            if self._empty_revisits > self.max_empty_revisits:
                raise GraphPagingLoopError(
                    f"Graph paging loop: the nextLink of page {self.count} points back to an empty page again "
                    f"({self._empty_revisits} returns to empty pages in this window, at most "
                    f"{self.max_empty_revisits} tolerated); nextLink: {link}", url=link)
        self._visits[link] = self._visits.get(link, 0) + 1
        self.current_value = link
