"""Reading and checking literal values of $filter: numbers, DateTimeOffset and Date."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation

from ..instants import canonical_instant
from .errors import ODataError
from .nodes import DATE, DATETIMEOFFSET, DECIMAL, INT, Literal

TARGET = "$filter"
INT64_MAX = 2**63 - 1
# Edm.Decimal as .NET (and so Power BI) knows it: at most 28-29 significant digits, |x| < 7.9e28.
DECIMAL_MAX = Decimal("79228162514264337593543950335")
DECIMAL_MIN_NONZERO = Decimal("1e-28")


def _invalid(kind: str, text: str, why: str, pos: int) -> ODataError:
    shown = text if len(text) <= 60 else text[:57] + "..."
    return ODataError(400, "InvalidLiteral", f"Invalid {kind} literal '{shown}' at position {pos} in $filter: {why}.",
                      TARGET)


def parse_number(text: str, pos: int) -> Literal:
    """An Int64 literal (`42`, `-7`, `42L`) or a decimal one (`0.5`, `1e3`, `5m`); out-of-range values are 400."""
    if not text.isascii():
        # int() and Decimal() read any Unicode digit ('٣' as 3); OData literals are written in ASCII.
        raise _invalid("number", text, "numbers are written with the ASCII digits 0-9", pos)
    body = text
    suffix = ""
    if body[-1] in "mMdDfFlL":
        body, suffix = body[:-1], body[-1].lower()
    is_int = suffix in ("", "l") and all("0" <= ch <= "9" or ch == "-" for ch in body)
    if is_int:
        if len(body.lstrip("-")) > 19 or abs(int(body)) > INT64_MAX:
            raise _invalid("integer", text, "out of range (at most 19 digits, |x| <= 9223372036854775807)", pos)
        return Literal(INT, int(body), text)
    if suffix == "l":
        raise _invalid("integer", text, "the L suffix is for integers only", pos)
    if len(body) > 64:
        raise _invalid("decimal", text, "too long", pos)
    try:
        value = Decimal(body)
    except InvalidOperation:
        raise _invalid("decimal", text, "not a number", pos) from None
    if not value.is_finite() or abs(value) > DECIMAL_MAX or (value != 0 and abs(value) < DECIMAL_MIN_NONZERO):
        raise _invalid("decimal", text, "out of range for Edm.Decimal (|x| between 1e-28 and 7.9e28, or 0)", pos)
    if value == value.to_integral_value() and abs(value) <= INT64_MAX:
        return Literal(DECIMAL, int(value), text)
    return Literal(DECIMAL, float(value), text)


def parse_datetime(text: str, pos: int, written: str | None = None) -> Literal:
    """A DateTimeOffset literal, as the canonical UTC string (7 fractional digits + Z). No zone means UTC."""
    try:
        value = canonical_instant(text)
    except (ValueError, OverflowError) as err:
        raise _invalid("DateTimeOffset", written or text, str(err) or "not a valid date and time", pos) from None
    return Literal(DATETIMEOFFSET, value, written or text)


def parse_date(text: str, pos: int) -> Literal:
    """A Date literal YYYY-MM-DD, checked to be a real calendar day."""
    try:
        value = dt.date.fromisoformat(text)
    except ValueError as err:
        raise _invalid("Date", text, str(err), pos) from None
    return Literal(DATE, value.isoformat(), text)


def date_as_instant(literal: Literal) -> Literal:
    """A Date literal compared with a DateTimeOffset property: midnight UTC of that day."""
    return Literal(DATETIMEOFFSET, canonical_instant(str(literal.value)), literal.text)
