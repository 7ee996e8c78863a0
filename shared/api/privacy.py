"""Masking of personal data in what the query routes return (setting PRIVACY_MASK, off by default).

Phone numbers keep their last four digits ("+14255550123" -> "+*******0123"); client IP addresses are replaced
whole. The stored rows and the raw archive are not changed: masking is about who sees the feed, and an operator
with access to the stores sees everything anyway. While masking is on, filtering on a masked property is
refused, or its value could be recovered one `startswith` at a time.
"""
from __future__ import annotations

from ..odata.nodes import And, Compare, In, Not, Or, StringFunction

PHONE_FIELDS = frozenset({"calleeNumber", "callerNumber"})
IP_FIELDS = frozenset({"clientLocalIpV4Address", "clientLocalIpV6Address", "clientPublicIpV4Address",
                       "clientPublicIpV6Address"})
MASKED_FIELDS = PHONE_FIELDS | IP_FIELDS
IP_MASK = "***"


def mask_phone(value: str) -> str:
    digits = sum(ch.isdigit() for ch in value)
    keep_from = digits - 4  # digits before this index are hidden
    out, seen = [], 0
    for ch in value:
        if ch.isdigit():
            out.append(ch if seen >= keep_from else "*")
            seen += 1
        else:
            out.append(ch)
    return "".join(out)


def mask_row(row: dict) -> dict:
    """A copy of the row with phone numbers and client IP addresses masked (nulls stay null)."""
    masked = dict(row)
    for name in PHONE_FIELDS:
        value = masked.get(name)
        if isinstance(value, str) and value:
            masked[name] = mask_phone(value)
    for name in IP_FIELDS:
        if masked.get(name):
            masked[name] = IP_MASK
    return masked


def filtered_properties(node) -> set[str]:
    """Every property a parsed $filter tree reads."""
    found: set[str] = set()
    stack = [node] if node is not None else []
    while stack:
        current = stack.pop()
        if isinstance(current, (And, Or)):
            stack += [current.left, current.right]
        elif isinstance(current, Not):
            stack.append(current.operand)
        elif isinstance(current, (Compare, In, StringFunction)):
            found.add(current.operand.prop.name)
    return found
