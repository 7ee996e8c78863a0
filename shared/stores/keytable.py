"""What a day's writer remembers of each stored row: 64 bits of its id and 64 of its content hash, in a flat
open-addressing table, so that a collecting process holds 32 to 64 bytes per row of a big day instead of
about 250 for the strings."""
from __future__ import annotations

import hashlib
from array import array


def row_key(text: str) -> int:
    """64 bits of a row id or content hash: what a DayWriter remembers per row (a collision among a day's ids,
    or between a row's old and new content, has a chance of about n^2 / 2^65). Never 0: KeyTable marks free
    slots with 0, and a stored document without a rowHash is remembered as content 0, which must match no row."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") or 1


def content_key(row_hash: str) -> int:
    """64 bits of a rowHash: it is a sha256 in hex already, so its first 16 digits are as good as a new hash
    of it (and cost no hashing, once per row of every page). A stored value that is not hex (edited by hand)
    is hashed like any text."""
    try:
        return int(row_hash[:16], 16) or 1
    except ValueError:
        return row_key(row_hash)


class KeyTable:
    """The map row key -> content key of one day, in two flat arrays of unsigned 64-bit numbers (open
    addressing, linear probing, at most half full): 32 to 64 bytes a row, where a dict of ints takes about 110
    (the int objects, not the table, are most of that). A day's rows are its only state that grows with its
    size, so this is what bounds a collecting process on a big day. Keys are hashes already: their low bits
    are the slot."""

    __slots__ = ("keys", "values", "mask", "size")

    def __init__(self, capacity: int = 1024):  # a power of two
        self.keys = array("Q", bytes(8 * capacity))
        self.values = array("Q", bytes(8 * capacity))
        self.mask = capacity - 1
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def get(self, key: int) -> int | None:
        keys, mask = self.keys, self.mask
        slot = key & mask
        while True:
            found = keys[slot]
            if found == key:
                return self.values[slot]
            if not found:
                return None
            slot = (slot + 1) & mask

    def put(self, key: int, value: int) -> None:
        keys, mask = self.keys, self.mask
        slot = key & mask
        while True:
            found = keys[slot]
            if found == key:
                self.values[slot] = value
                return
            if not found:
                break
            slot = (slot + 1) & mask
        keys[slot] = key
        self.values[slot] = value
        self.size += 1
        if 2 * self.size > len(keys):
            self._grow()

    def _grow(self) -> None:
        old_keys, old_values = self.keys, self.values
        capacity = 2 * len(old_keys)
        keys = self.keys = array("Q", bytes(8 * capacity))
        values = self.values = array("Q", bytes(8 * capacity))
        mask = self.mask = capacity - 1
        for key, value in zip(old_keys, old_values):
            if key:
                slot = key & mask
                while keys[slot]:
                    slot = (slot + 1) & mask
                keys[slot] = key
                values[slot] = value
