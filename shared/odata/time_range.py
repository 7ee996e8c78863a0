"""`time_range(node, property)`: the range of the time property a filter implies, for partition pushdown."""
from __future__ import annotations

from typing import NamedTuple

from .nodes import Compare, In, Node, conjuncts


class TimeRange(NamedTuple):
    """Bounds on the time property (canonical strings: 'YYYY-MM-DDTHH:MM:SS.fffffffZ' for startDateTime,
    'YYYY-MM-DD' for day) or None where the filter sets no bound."""
    lower: str | None
    lower_inclusive: bool
    upper: str | None
    upper_inclusive: bool

    @property
    def empty(self) -> bool:
        """True when the bounds exclude every value (e.g. ge X and lt X)."""
        if self.lower is None or self.upper is None:
            return False
        if self.lower != self.upper:
            return self.lower > self.upper
        return not (self.lower_inclusive and self.upper_inclusive)


def _tighter_lower(current: tuple, value: str, inclusive: bool) -> tuple:
    if current[0] is None or value > current[0]:
        return value, inclusive
    if value == current[0]:
        return value, current[1] and inclusive
    return current


def _tighter_upper(current: tuple, value: str, inclusive: bool) -> tuple:
    if current[0] is None or value < current[0]:
        return value, inclusive
    if value == current[0]:
        return value, current[1] and inclusive
    return current


def time_range(node: Node | None, property: str) -> TimeRange:
    """The tightest range on `property` (a property name, e.g. "startDateTime" or "day") implied by the
    filter's top-level AND terms. Terms under OR or NOT, and `ne`, are ignored (conservative: the true set of
    rows is always inside the range). `eq` gives both bounds; `in` gives its smallest and largest value.
    Terms on the property wrapped in a function are ignored. No bound: None, with inclusive False."""
    lower: tuple = (None, False)
    upper: tuple = (None, False)
    for term in conjuncts(node):
        if isinstance(term, Compare):
            if term.operand.prop.name != property or term.operand.functions or term.literal.value is None:
                continue
            value = term.literal.value
            if term.op in ("gt", "ge", "eq"):
                lower = _tighter_lower(lower, value, term.op != "gt")
            if term.op in ("lt", "le", "eq"):
                upper = _tighter_upper(upper, value, term.op != "lt")
        elif isinstance(term, In):
            if term.operand.prop.name != property or term.operand.functions:
                continue
            values = [lit.value for lit in term.literals]
            if not values or any(v is None for v in values):
                continue
            lower = _tighter_lower(lower, min(values), True)
            upper = _tighter_upper(upper, max(values), True)
    return TimeRange(lower[0], lower[1], upper[0], upper[1])
