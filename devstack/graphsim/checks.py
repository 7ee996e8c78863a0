"""Type checks shared by the knob validators (JSON booleans are ints in Python, so exclude them)."""
from __future__ import annotations


def is_int(value: object, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def is_number(value: object, minimum: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= minimum
