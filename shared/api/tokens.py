"""Paging tokens of the query routes, and the links that carry them.

A token says where a page ended, is URL-safe, bounded in size, bound to the query that made it, and signed: an
HMAC-SHA256 (truncated to 128 bits) under the paging key (stores/keys.py), a secret no client can know that
every instance of the app shares. A token the service did not issue, or issued for another query, is refused;
its values only ever reach Cosmos as query parameters.

A link the service writes carries the query's own parameters and the token, nothing else: never the Functions
key (`code`) nor any other parameter the request happened to carry (a credential would land in saved JSON, CSV
tooling, proxies and logs).
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import re
from typing import Iterable, Mapping
from urllib.parse import urlencode

from ..stores.reader import Cursor

VERSION = 2
MAC_BYTES = 16
MAX_VALUE_CHARS = 300
# A cursor of three values under MAX_VALUE_CHARS each, JSON-escaped (at most 6 characters per character) and
# base64-encoded, fits; anything longer is refused before it is decoded.
MAX_TOKEN_CHARS = 8192
MALFORMED = "the paging token is malformed; start again from the first page"
FOREIGN = "the paging token belongs to a different query; start again from the first page"
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


class TokenError(ValueError):
    """A paging token that is malformed, was not issued by this service, or was made for a different query."""


def _mac(key: bytes, raw: bytes) -> bytes:
    return hmac.new(key, raw, hashlib.sha256).digest()[:MAC_BYTES]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def encode_token(key: bytes, cursor: Cursor, fingerprint: str, remaining: int | None = None) -> str:
    """An opaque, URL-safe token: where the page ended, how many rows `$top` still allows, and which query it
    belongs to, signed with the paging key."""
    payload = {"v": VERSION, "d": cursor.day, "k": cursor.key, "i": cursor.id, "f": fingerprint}
    if remaining is not None:
        payload["r"] = remaining
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return _b64(_mac(key, raw) + raw)


def decode_token(key: bytes, token: str, fingerprint: str) -> tuple[Cursor, int | None]:
    """The cursor and remaining count of a token this service issued for this query (`fingerprint`); raises
    TokenError otherwise. Only the one canonical spelling of a token is accepted: base64 padding, other
    alphabets or extra characters are refused, not decoded to the same bytes."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or not _BASE64URL.fullmatch(token):
        raise TokenError(MALFORMED)
    try:
        blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, binascii.Error):
        raise TokenError(MALFORMED) from None
    if _b64(blob) != token or len(blob) <= MAC_BYTES:
        raise TokenError(MALFORMED)
    mac, raw = blob[:MAC_BYTES], blob[MAC_BYTES:]
    if not hmac.compare_digest(mac, _mac(key, raw)):
        raise TokenError(MALFORMED)
    # Signed by this service: the checks below guard against a change of this code's own token shape.
    try:
        payload = json.loads(raw)
        cursor = Cursor(payload["d"], payload["k"], payload["i"])
        remaining = payload.get("r")
        valid = (payload.get("v") == VERSION
                 and all(isinstance(v, str) and len(v) < MAX_VALUE_CHARS for v in (cursor.day, cursor.key, cursor.id))
                 and (remaining is None or (type(remaining) is int and remaining >= 0)))
        dt.date.fromisoformat(cursor.day)
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError):
        raise TokenError(MALFORMED) from None
    if not valid:
        raise TokenError(MALFORMED)
    if payload.get("f") != fingerprint:
        raise TokenError(FOREIGN)
    return cursor, remaining


def fingerprint(*parts) -> str:
    """Which query a token belongs to (inside the signed token, so a client cannot change it)."""
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def next_link(base: str, params: Mapping[str, str], carried: Iterable[str], token_name: str, token: str) -> str:
    """`base?...` with the request's parameters named in `carried` (compared case-insensitively) and the token.
    A whitelist, not a blacklist: a parameter the route does not read (the Functions key `code`, an
    `access_token` a proxy added, anything) never reaches a link."""
    wanted = {name.lower() for name in carried} - {token_name.lower()}
    query = {k: v for k, v in params.items() if k.lower() in wanted}
    query[token_name] = token
    return f"{base}?{urlencode(query)}"
