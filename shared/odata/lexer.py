"""The $filter tokenizer: turns the expression text into tokens with their positions, or a 400 that says where
the text stops making sense."""
from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ODataError

TARGET = "$filter"

# Token kinds
LPAREN, RPAREN, COMMA, SLASH, COLON = "(", ")", ",", "/", ":"
STRING = "string"        # value: the unescaped text
NUMBER = "number"        # text: as written (validated by literals.parse_number)
DATETIME = "datetime"    # text: as written, a '+' that arrived as a space restored
DATE = "date"
GUID = "guid"            # unquoted GUID: OData's Edm.Guid literal; this model has no Guid properties
TYPED = "typed"          # prefix'text', e.g. duration'PT1H' or binary'..': not supported
IDENT = "ident"          # names, keywords; may contain dots (qualified names) or start with $ or @
EOF_KIND = "end"

# Digits are ASCII [0-9], never \d: to Python's \d, '٣' (Arabic-Indic three) is a digit that int() and Decimal
# read as 3, so `duration eq ٣` would be served as `duration eq 3`; OData's ABNF DIGIT is ASCII.
_GUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}(?![\w.:-])")
# OData's dateTimeOffsetValue; the zone is optional here (a missing zone means UTC), and " hh:mm" is read as
# "+hh:mm" because an unencoded '+' in a URL query arrives as a space.
_DATETIME = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?)"
                       r"(Z|z|[+-][0-9]{2}:[0-9]{2}| [0-9]{2}:[0-9]{2}(?![\w.:-]))?(?![\w.:+-])")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?![\w.:-])")
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?[mMdDfFlL]?(?![\w.])")
_IDENT = re.compile(r"[$@]?[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_SPACE = re.compile(r"[ \t\r\n]+")
_SINGLE = {"(": LPAREN, ")": RPAREN, ",": COMMA, "/": SLASH, ":": COLON}


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int
    value: str | None = None

    def describe(self) -> str:
        if self.kind == EOF_KIND:
            return "the end of the expression"
        shown = self.text if len(self.text) <= 40 else self.text[:37] + "..."
        return f"'{shown}'"


def syntax_error(message: str, pos: int) -> ODataError:
    return ODataError(400, "InvalidFilter", f"Syntax error in $filter at position {pos}: {message}", TARGET)


def _string(text: str, start: int) -> tuple[str, int]:
    """The unescaped content of the quoted string starting at text[start] == "'", and the index after it."""
    out: list[str] = []
    i = start + 1
    while True:
        end = text.find("'", i)
        if end < 0:
            raise syntax_error("unterminated string literal (a quote inside a string is written '')", start)
        out.append(text[i:end])
        if text.startswith("''", end):
            out.append("'")
            i = end + 2
            continue
        return "".join(out), end + 1


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        m = _SPACE.match(text, i)
        if m:
            i = m.end()
            continue
        ch = text[i]
        if ch in _SINGLE:
            tokens.append(Token(_SINGLE[ch], ch, i))
            i += 1
            continue
        if ch == "'":
            value, end = _string(text, i)
            tokens.append(Token(STRING, text[i:end], i, value))
            i = end
            continue
        if ch == '"':
            raise syntax_error('string literals are enclosed in single quotes, not "', i)
        m = _GUID.match(text, i)
        if m:
            tokens.append(Token(GUID, m.group(), i))
            i = m.end()
            continue
        m = _DATETIME.match(text, i)
        if m:
            zone = m.group(2) or ""
            if zone.startswith(" "):
                zone = "+" + zone[1:]
            tokens.append(Token(DATETIME, m.group(), i, m.group(1) + zone))
            i = m.end()
            continue
        if re.match(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T", text[i:i + 11]):
            raise syntax_error("malformed DateTimeOffset literal (expected e.g. 2026-05-04T00:00:00Z)", i)
        m = _DATE.match(text, i)
        if m:
            tokens.append(Token(DATE, m.group(), i))
            i = m.end()
            continue
        m = _NUMBER.match(text, i)
        if m:
            tokens.append(Token(NUMBER, m.group(), i))
            i = m.end()
            continue
        if "0" <= ch <= "9" or ch == "-":
            raise syntax_error(f"malformed number or date near '{text[i:i + 20]}'", i)
        if ch.isnumeric():
            raise syntax_error(f"'{ch}' (U+{ord(ch):04X}) is not an ASCII digit: numbers are written with 0-9", i)
        m = _IDENT.match(text, i)
        if m:
            end = m.end()
            if end < n and text[end] == "'":
                _, after = _string(text, end)
                tokens.append(Token(TYPED, text[i:after], i, m.group()))
                i = after
                continue
            tokens.append(Token(IDENT, m.group(), i))
            i = end
            continue
        shown = ch if ch.isprintable() else f"U+{ord(ch):04X}"
        raise syntax_error(f"unexpected character '{shown}'", i)
    tokens.append(Token(EOF_KIND, "", n))
    return tokens
