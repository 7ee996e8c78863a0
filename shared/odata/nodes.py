"""The typed $filter syntax tree, as produced by filter_parser and consumed by sql, evaluate and time_range.

Every node is immutable and already checked against the model: properties are resolved `Property` objects and
literals carry the value in the form both the SQL parameters and `evaluate` use.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from .model import Property

# Literal kinds
STRING = "string"
INT = "int"
DECIMAL = "decimal"
BOOLEAN = "boolean"
NULL = "null"
DATETIMEOFFSET = "datetimeoffset"
DATE = "date"

COMPARISONS = ("eq", "ne", "gt", "ge", "lt", "le")
STRING_FUNCTIONS = ("startswith", "endswith", "contains")
CASE_FUNCTIONS = ("tolower", "toupper")


@dataclass(frozen=True)
class Literal:
    """A literal. `value` is: str for string (and for date, 'YYYY-MM-DD', and datetimeoffset, the canonical UTC
    form with 7 fractional digits, see shared.instants.canonical_instant); int or float for numbers (the value
    sent as the Cosmos parameter: JSON numbers are doubles there); bool; None for null. `text` is what the
    client wrote (for messages only; never rendered into SQL)."""
    kind: str
    value: object
    text: str = ""


@dataclass(frozen=True)
class PropertyOperand:
    """A property, optionally wrapped in tolower()/toupper() (innermost first)."""
    prop: Property
    functions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Compare:
    """`operand op literal`, property always on the left (a literal on the left is flipped at parse time)."""
    op: str
    operand: PropertyOperand
    literal: Literal


@dataclass(frozen=True)
class In:
    operand: PropertyOperand
    literals: tuple[Literal, ...]


@dataclass(frozen=True)
class StringFunction:
    """startswith / endswith / contains(operand, 'text')."""
    name: str
    operand: PropertyOperand
    literal: Literal


@dataclass(frozen=True)
class And:
    left: "Node"
    right: "Node"


@dataclass(frozen=True)
class Or:
    left: "Node"
    right: "Node"


@dataclass(frozen=True)
class Not:
    operand: "Node"


@dataclass(frozen=True)
class Constant:
    """`true` / `false` as a whole boolean expression (also what `x gt null` reduces to)."""
    value: bool


Node = Union[Compare, In, StringFunction, And, Or, Not, Constant]


def conjuncts(node: Node | None) -> list[Node]:
    """The top-level AND terms of a filter (the node itself if it is not an And)."""
    if node is None:
        return []
    out: list[Node] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, And):
            stack.append(current.right)
            stack.append(current.left)
        else:
            out.append(current)
    return out
