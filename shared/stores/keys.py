"""The paging key: the secret that signs the query routes' paging tokens, shared by every instance of the app.

A random 256-bit key kept as one document of its own in the runs container (the ledger's), in a partition no
feed can have (feed names are identifiers; "~" is not part of one), so no ledger query ever reads it and no
route ever answers it. It needs no setting: the first instance that signs a token creates it with create_item,
and an instance that loses that race reads back the one that won, so all instances sign with the same key. It is
read once per process and database, then kept in memory.
"""
from __future__ import annotations

import base64
import secrets
import threading

from azure.cosmos.exceptions import CosmosResourceExistsError, CosmosResourceNotFoundError

PAGING_KEY_ID = "paging-key"
PAGING_KEY_PK = "~service"
KEY_BYTES = 32

_cache: dict[tuple, bytes] = {}
_lock = threading.Lock()


class PagingKeyError(RuntimeError):
    """The stored paging key document is not one this code wrote (wrong shape or length)."""


def paging_key(container, cache_key: tuple) -> bytes:
    """The key (32 bytes) kept in `container` (the runs container); `cache_key` names the account, database and
    container, so two databases in one process (the tests) keep their own."""
    key = _cache.get(cache_key)
    if key is not None:
        return key
    with _lock:
        key = _cache.get(cache_key)
        if key is None:
            key = _load_or_create(container)
            _cache[cache_key] = key
    return key


def _load_or_create(container) -> bytes:
    try:
        doc = container.read_item(PAGING_KEY_ID, partition_key=PAGING_KEY_PK)
    except CosmosResourceNotFoundError:
        fresh = {"id": PAGING_KEY_ID, "pk": PAGING_KEY_PK, "kind": "pagingKey",
                 "key": base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}
        try:
            doc = container.create_item(fresh)
        except CosmosResourceExistsError:
            # Another instance created it between our read and our create: use theirs, as every instance must.
            doc = container.read_item(PAGING_KEY_ID, partition_key=PAGING_KEY_PK)
    try:
        key = base64.b64decode(doc["key"], validate=True)
    except (KeyError, TypeError, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise PagingKeyError(f"the paging key document {PAGING_KEY_ID!r} (partition {PAGING_KEY_PK!r}) of the runs "
                             f"container does not hold a {KEY_BYTES}-byte key; delete it and a new one is created")
    return key
