"""`evaluate(node, doc)`: the $filter semantics in plain Python over one stored document.

It is the reference the SQL of sql.py is tested against, and usable by the service wherever rows are filtered in
memory. Semantics (see filter_parser): two-valued logic; a missing field is null; eq/ne treat null as a value;
gt/ge/lt/le and the string functions are false against null or a value of the wrong JSON type; DateTimeOffset
values compare as instants (both sides in the canonical UTC form).
"""
from __future__ import annotations

import operator

from ..instants import canonical_instant
from .model import BOOLEAN, DATETIMEOFFSET, NUMERIC_TYPES, Property
from .nodes import And, Compare, Constant, In, Literal, Node, Not, Or, PropertyOperand, StringFunction

_OPS = {"eq": operator.eq, "ne": operator.ne, "gt": operator.gt, "ge": operator.ge, "lt": operator.lt,
        "le": operator.le}


class _WrongType:
    """A stored value whose JSON type does not match the property: not null, equal to nothing, ordered never."""


WRONG_TYPE = _WrongType()


def compare_values(op: str, left: object, right: object) -> bool:
    """OData comparison of two plain values (None is null): eq/ne treat null as a value; orderings with null are
    false."""
    if left is None or right is None:
        if op == "eq":
            return left is None and right is None
        if op == "ne":
            return not (left is None and right is None)
        return False
    return bool(_OPS[op](left, right))


def _typed(prop: Property, raw: object) -> object:
    if raw is None:
        return None
    edm = prop.edm_type
    if edm in NUMERIC_TYPES:
        ok = isinstance(raw, (int, float)) and not isinstance(raw, bool)
    elif edm == BOOLEAN:
        ok = isinstance(raw, bool)
    else:
        ok = isinstance(raw, str)
    if not ok:
        return WRONG_TYPE
    if edm == DATETIMEOFFSET and not prop.canonical:
        try:
            return canonical_instant(raw)
        except (ValueError, OverflowError):
            return raw
    return raw


def value_of(operand: PropertyOperand, doc: dict) -> object:
    """The operand's value in `doc`: None for missing/null, WRONG_TYPE for a value of another JSON type."""
    value = _typed(operand.prop, doc.get(operand.prop.path) if isinstance(doc, dict) else None)
    if isinstance(value, str):
        for fn in operand.functions:
            value = value.lower() if fn == "tolower" else value.upper()
    return value


def _compare(op: str, value: object, literal: Literal) -> bool:
    if value is WRONG_TYPE:
        return op == "ne"  # differs from every literal and from null; never ordered
    return compare_values(op, value, literal.value)


def evaluate(node: Node | None, doc: dict) -> bool:
    """True if the stored document `doc` satisfies the filter (None: no filter, always true)."""
    if node is None:
        return True
    if isinstance(node, And):
        return evaluate(node.left, doc) and evaluate(node.right, doc)
    if isinstance(node, Or):
        return evaluate(node.left, doc) or evaluate(node.right, doc)
    if isinstance(node, Not):
        return not evaluate(node.operand, doc)
    if isinstance(node, Constant):
        return node.value
    if isinstance(node, Compare):
        return _compare(node.op, value_of(node.operand, doc), node.literal)
    if isinstance(node, In):
        value = value_of(node.operand, doc)
        return any(_compare("eq", value, literal) for literal in node.literals)
    if isinstance(node, StringFunction):
        value = value_of(node.operand, doc)
        if not isinstance(value, str):
            return False
        needle = node.literal.value
        if node.name == "startswith":
            return value.startswith(needle)
        if node.name == "endswith":
            return value.endswith(needle)
        return needle in value
    raise TypeError(f"not a filter node: {node!r}")
