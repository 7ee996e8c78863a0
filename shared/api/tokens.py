"""Paging tokens of the query routes: where a page ended, opaque and URL-safe, bound to the query that made it.

A token's values only ever reach Cosmos as query parameters; one made for another query (other filter, order,
limit) is refused rather than silently applied to this one.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json

from ..stores.reader import Cursor


class TokenError(ValueError):
    """A paging token that is malformed, or was made for a different query."""


def encode_token(cursor: Cursor, fingerprint: str, remaining: int | None = None) -> str:
    """An opaque, URL-safe token: where the page ended, how many rows `$top` still allows, and which query it
    belongs to. Its values only ever reach Cosmos as query parameters."""
    payload = {"v": 1, "d": cursor.day, "k": cursor.key, "i": cursor.id, "f": fingerprint}
    if remaining is not None:
        payload["r"] = remaining
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, fingerprint: str) -> tuple[Cursor, int | None]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
        cursor = Cursor(payload["d"], payload["k"], payload["i"])
        remaining = payload.get("r")
        valid = (payload.get("v") == 1 and all(isinstance(v, str) and len(v) < 300 for v in
                                                (cursor.day, cursor.key, cursor.id))
                 and (remaining is None or (isinstance(remaining, int) and remaining >= 0)))
        dt.date.fromisoformat(cursor.day)
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError):
        raise TokenError("the paging token is malformed; start again from the first page") from None
    if not valid:
        raise TokenError("the paging token is malformed; start again from the first page")
    if payload.get("f") != fingerprint:
        raise TokenError("the paging token belongs to a different query; start again from the first page")
    return cursor, remaining


def fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]
