"""A stored document of a Graph row: the row exactly as sent plus three fields derived from it.

`day` (the partition key: the UTC day of the feed's time field), `startUtc` (that instant normalised to UTC
with 7 fractional digits, so that string order is time order for range filters, sorting and paging, whatever
precision Graph sent) and `rowHash` (sha256 of the row's canonical JSON). A document is a function of its row
alone, so replaying archived pages rebuilds exactly the documents collection wrote, and a row whose hash is
unchanged need not be written again.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Iterable

import orjson

from ..instants import canonical_instant

DERIVED_FIELDS = ("day", "startUtc", "rowHash")
COSMOS_SYSTEM_FIELDS = ("_rid", "_self", "_etag", "_attachments", "_ts")
FORBIDDEN_ID_CHARS = set("/\\?#")


class RowError(ValueError):
    """A row Graph sent cannot be stored (no id, no parseable time field, an id Cosmos cannot hold)."""


def row_hash(row: dict) -> str:
    return hashlib.sha256(canonical_json(row)).hexdigest()


def canonical_json(row: dict) -> bytes:
    """The row's JSON with sorted keys, compact, UTF-8: what its rowHash is taken of, so it must never change.

    Every stored rowHash is of json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False), so these
    must be its bytes. orjson writes the same bytes in a tenth of the time (the largest CPU cost of a re-scan)
    except for floats json writes in exponent form (nonzero below 1e-4, from 1e16 up), NaN and infinities, and
    integers beyond 64 bits (orjson refuses them): rows holding any of those take json's path.
    tests/test_store_writer.py checks the two agree.
    """
    if _plain_floats(row.values()):
        try:
            return orjson.dumps(row, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            pass
    return json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _plain_floats(values: Iterable) -> bool:
    """No float that json and orjson write differently (see canonical_json) among these values, nested or not."""
    for value in values:
        kind = type(value)
        if kind is float:
            if not (value == 0.0 or 1e-4 <= abs(value) < 1e16):
                return False
        elif kind is dict:
            if not _plain_floats(value.values()):
                return False
        elif kind is list and not _plain_floats(value):
            return False
    return True


@dataclass(frozen=True, slots=True)
class Derived:
    """What the store adds to a row, and the size of its JSON for batching."""
    day: str
    start_utc: str
    row_hash: str
    size: int  # bytes of the document as the SDK sends it, at most (non-ASCII escaped as \\uXXXX)

    def document(self, row: dict) -> dict:
        return {**row, "day": self.day, "startUtc": self.start_utc, "rowHash": self.row_hash}


def derive(row: dict, time_field: str) -> Derived:
    """Validate a row and derive its stored fields from its id and its feed's time field; RowError if the
    store cannot hold it."""
    row_id = row.get("id")
    if not isinstance(row_id, str) or not row_id or FORBIDDEN_ID_CHARS & set(row_id) or len(row_id) > 255:
        raise RowError(f"row has no usable id: {str(row_id)[:80]!r}")
    start = row.get(time_field)
    try:
        start_utc = canonical_instant(start)
        day = start_utc[:10]
    except (TypeError, ValueError, AttributeError):
        raise RowError(f"row {row_id} has no valid {time_field}: {str(start)[:40]!r}") from None
    clash = [f for f in DERIVED_FIELDS if f in row]
    if clash:
        # Graph added a field with one of our names: refuse rather than silently overwrite its value.
        raise RowError(f"row {row_id} carries field(s) {clash} that the store derives itself")
    canonical = canonical_json(row)
    chars = len(canonical) if canonical.isascii() else len(canonical.decode())
    # The SDK escapes every non-ASCII character (up to 12 bytes for 1 to 4 in UTF-8), so 5 bytes more per
    # UTF-8 continuation byte bound it; the derived fields add under 200 bytes.
    size = chars + 5 * (len(canonical) - chars) + 200
    return Derived(day, start_utc, hashlib.sha256(canonical).hexdigest(), size)


def to_document(row: dict, time_field: str) -> dict:
    return derive(row, time_field).document(row)
