"""$filter: a recursive-descent parser over the lexer's tokens that builds the typed tree of nodes.py, checking
every property against the model and every literal against the property's type.

Grammar (lowest precedence first; keywords are lower case, as in OData):

    filter      := or_expr END
    or_expr     := and_expr ('or' and_expr)*
    and_expr    := not_expr ('and' not_expr)*
    not_expr    := 'not' not_expr | comparison
    comparison  := operand [ ('eq'|'ne'|'gt'|'ge'|'lt'|'le') operand | 'in' '(' literal (',' literal)* ')' ]
    operand     := '(' or_expr ')' | function '(' args ')' | property | literal

So `not a eq 1` is `not (a eq 1)` (the reading people and Power BI mean). Supported functions: startswith,
endswith, contains (property or tolower/toupper of one, and a string literal), tolower, toupper. Known OData
functions and operators that are not supported (year(), length(), any(), add, has, casts...) answer 501;
anything unknown or ill-typed answers 400.

Typing rules (documented choices):
- Comparisons are two-valued, with a missing field treated as null: `p eq null` is true for missing/null,
  `p ne 'x'` includes missing/null rows, `gt/ge/lt/le` against a missing or null field are false, `not` negates.
  `p gt null` (and the other orderings with null) is always false.
- A Date literal compared with a DateTimeOffset property means midnight UTC of that day
  (`startDateTime ge 2026-05-04` == `startDateTime ge 2026-05-04T00:00:00Z`).
- A DateTimeOffset literal without a zone is read as UTC (python-odata sends naive datetimes that way), and
  `T10:00:00 02:00` as `+02:00` (an unencoded '+' in a URL arrives as a space).
- A Date property accepts a Date literal and, for clients that cannot write Date literals (python-odata types
  Edm.Date as a string), a quoted 'YYYY-MM-DD'. It does not accept a DateTimeOffset literal (400).
- Booleans compare with eq/ne only; `successfulCall` alone means `successfulCall eq true`;
  `startswith(p,'x') eq false` means `not startswith(p,'x')`.
- Two literals compared are evaluated here (`1 eq 1` is simply true): no client text ever reaches SQL.
- Limits: at most 2,000 characters, nesting (parentheses, not, function calls) at most 50 deep, `in` lists at
  most 200 values.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from . import lexer as lx
from . import literals
from .errors import ODataError
from .model import BOOLEAN, DATE, DATETIMEOFFSET, NUMERIC_TYPES, STRING, EntitySet, EntityType, Property
from .model import entity_type as resolve_entity_type
from .model import unknown_property
from .nodes import (CASE_FUNCTIONS, COMPARISONS, STRING_FUNCTIONS, And, Compare, Constant, In, Literal, Node, Not,
                    Or, PropertyOperand, StringFunction)
from . import nodes as n

TARGET = "$filter"
MAX_LENGTH = 2000
MAX_DEPTH = 50
MAX_IN_VALUES = 200

KEYWORDS = frozenset({"and", "or", "not", "in", *COMPARISONS})
ARITHMETIC = frozenset({"add", "sub", "mul", "div", "divby", "mod"})
UNSUPPORTED_FUNCTIONS = frozenset({
    "length", "indexof", "substring", "concat", "trim", "matchespattern", "year", "month", "day", "hour", "minute",
    "second", "fractionalseconds", "totalseconds", "date", "time", "totaloffsetminutes", "mindatetime",
    "maxdatetime", "now", "round", "floor", "ceiling", "cast", "isof", "geo.distance", "geo.length",
    "geo.intersects", "any", "all", "case", "hassubset", "hassubsequence",
})
FLIPPED = {"eq": "eq", "ne": "ne", "gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}
EDM_OF_KIND = {n.STRING: "Edm.String", n.INT: "Edm.Int64", n.DECIMAL: "Edm.Decimal", n.BOOLEAN: "Edm.Boolean",
               n.DATETIMEOFFSET: "Edm.DateTimeOffset", n.DATE: "Edm.Date", n.NULL: "null"}
SUPPORTED = "startswith, endswith, contains, tolower, toupper"


def _bad(code: str, message: str) -> ODataError:
    return ODataError(400, code, message, TARGET)


def _unsupported(message: str) -> ODataError:
    return ODataError(501, "NotImplemented", message, TARGET)


@dataclass(frozen=True)
class _At:
    """A parsed operand or expression with the position where it started."""
    value: Union[Node, PropertyOperand, Literal]
    pos: int


def _shown(literal: Literal) -> str:
    text = literal.text or repr(literal.value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(item: _At) -> str:
    value = item.value
    if isinstance(value, PropertyOperand):
        inner = value.prop.name
        for fn in value.functions:
            inner = f"{fn}({inner})"
        return f"property '{inner}' ({value.prop.type_name})"
    if isinstance(value, Literal):
        return f"{EDM_OF_KIND[value.kind]} literal {_shown(value)}"
    return "a boolean expression"


class _Parser:
    def __init__(self, text: str, entity_type: EntityType) -> None:
        self.text = text
        self.entity_type = entity_type
        self.tokens = lx.tokenize(text)
        self.i = 0
        self.depth = 0

    # token helpers -------------------------------------------------------------------------------------------
    def peek(self, ahead: int = 0) -> lx.Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def next(self) -> lx.Token:
        token = self.peek()
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return token

    def at_keyword(self, *words: str) -> bool:
        token = self.peek()
        return token.kind == lx.IDENT and token.text in words

    def expect(self, kind: str, what: str, opened_at: int | None = None) -> lx.Token:
        token = self.peek()
        if token.kind != kind:
            extra = f" to close the '(' at position {opened_at}" if opened_at is not None else ""
            raise lx.syntax_error(f"expected {what}{extra} but found {token.describe()}", token.pos)
        return self.next()

    def enter(self, pos: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _bad("FilterTooComplex", f"$filter is nested deeper than {MAX_DEPTH} levels (at position {pos}).")

    def leave(self) -> None:
        self.depth -= 1

    # grammar -------------------------------------------------------------------------------------------------
    def parse(self) -> Node:
        start = self.peek().pos
        expr = self.or_expr()
        token = self.peek()
        if token.kind != lx.EOF_KIND:
            if token.kind == lx.RPAREN:
                raise lx.syntax_error("unbalanced ')' (no '(' to close)", token.pos)
            if token.kind == lx.IDENT and token.text.lower() in KEYWORDS and token.text not in KEYWORDS:
                raise lx.syntax_error(f"operators are lower case: write '{token.text.lower()}', "
                                      f"not '{token.text}'", token.pos)
            raise lx.syntax_error(f"unexpected {token.describe()} after a complete expression "
                                  "(expected 'and', 'or' or the end)", token.pos)
        return self.boolean(_At(expr.value, start))

    def or_expr(self) -> _At:
        left = self.and_expr()
        while self.at_keyword("or"):
            self.next()
            right = self.and_expr()
            left = _At(Or(self.boolean(left), self.boolean(right)), left.pos)
        return left

    def and_expr(self) -> _At:
        left = self.not_expr()
        while self.at_keyword("and"):
            self.next()
            right = self.not_expr()
            left = _At(And(self.boolean(left), self.boolean(right)), left.pos)
        return left

    def not_expr(self) -> _At:
        if self.at_keyword("not"):
            token = self.next()
            self.enter(token.pos)
            operand = self.not_expr()
            self.leave()
            return _At(Not(self.boolean(operand)), token.pos)
        return self.comparison()

    def comparison(self) -> _At:
        left = self.operand()
        token = self.peek()
        if token.kind != lx.IDENT:
            return left
        word = token.text
        if word in COMPARISONS:
            self.next()
            right = self.operand()
            return _At(self.compare(left, word, right, token.pos), left.pos)
        if word == "in":
            self.next()
            return _At(self.in_list(left, token.pos), left.pos)
        if word in ARITHMETIC:
            raise _unsupported(f"Arithmetic operator '{word}' (position {token.pos}) is not supported in $filter.")
        if word == "has":
            raise _unsupported(f"Operator 'has' (position {token.pos}) is not supported: the model has no enums.")
        return left

    def operand(self) -> _At:
        token = self.next()
        kind = token.kind
        if kind == lx.LPAREN:
            self.enter(token.pos)
            inner = self.or_expr()
            self.expect(lx.RPAREN, "')'", token.pos)
            self.leave()
            return _At(inner.value, token.pos)
        if kind == lx.STRING:
            return _At(Literal(n.STRING, token.value, token.text), token.pos)
        if kind == lx.NUMBER:
            return _At(literals.parse_number(token.text, token.pos), token.pos)
        if kind == lx.DATETIME:
            return _At(literals.parse_datetime(token.value, token.pos, token.text), token.pos)
        if kind == lx.DATE:
            return _At(literals.parse_date(token.text, token.pos), token.pos)
        if kind == lx.GUID:
            raise _bad("TypeMismatch", f"Unquoted GUID {token.text} at position {token.pos}: this model has no "
                       f"Edm.Guid properties; ids are strings, so quote it: '{token.text}'.")
        if kind == lx.TYPED:
            raise _unsupported(f"Typed literal {token.describe()} at position {token.pos} is not supported "
                               "(durations, binary, enum and spatial literals).")
        if kind == lx.IDENT:
            return self.identifier(token)
        raise lx.syntax_error(f"expected a property, literal or function but found {token.describe()}", token.pos)

    def identifier(self, token: lx.Token) -> _At:
        name = token.text
        if name == "true" or name == "false":
            return _At(Literal(n.BOOLEAN, name == "true", name), token.pos)
        if name == "null":
            return _At(Literal(n.NULL, None, name), token.pos)
        if name in ("INF", "NaN"):
            raise _unsupported(f"Literal {name} at position {token.pos} is not supported.")
        if self.peek().kind == lx.LPAREN:
            return self.function(token)
        if name in KEYWORDS:
            raise lx.syntax_error(f"expected a property, literal or function but found operator '{name}'",
                                  token.pos)
        if name.startswith("$"):
            raise _unsupported(f"'{name}' (position {token.pos}) is not supported in $filter.")
        if name.startswith("@"):
            raise _unsupported(f"Parameter alias '{name}' (position {token.pos}) is not supported.")
        if "." in name:
            raise _unsupported(f"Qualified name '{name}' (position {token.pos}) is not supported "
                               "(type casts and enum values).")
        prop = self.entity_type.get(name)
        if prop is None:
            if name.lower() in KEYWORDS:
                raise lx.syntax_error(f"operators are lower case: write '{name.lower()}', not '{name}'",
                                      token.pos)
            error = unknown_property(self.entity_type, name, TARGET)
            error.message = error.message.rstrip(".") + f" (position {token.pos} in $filter)."
            raise error
        if self.peek().kind == lx.SLASH:
            after = self.peek(1)
            if prop.collection and after.kind == lx.IDENT and after.text in ("any", "all"):
                raise _unsupported(f"Lambda operator '{name}/{after.text}' is not supported in $filter.")
            raise _unsupported(f"Property path '{name}/...' (position {token.pos}) is not supported in $filter.")
        return _At(PropertyOperand(prop), token.pos)

    def function(self, token: lx.Token) -> _At:
        name = token.text
        lowered = name.lower()
        if name not in STRING_FUNCTIONS and name not in CASE_FUNCTIONS:
            if lowered in UNSUPPORTED_FUNCTIONS:
                raise _unsupported(f"Function '{name}' (position {token.pos}) is not supported; "
                                   f"supported functions: {SUPPORTED}.")
            hint = " (function names are lower case)" if lowered in STRING_FUNCTIONS + CASE_FUNCTIONS else ""
            shown = name if len(name) <= 60 else name[:57] + "..."
            raise _bad("UnknownFunction", f"Unknown function '{shown}' at position {token.pos}{hint}; "
                       f"supported functions: {SUPPORTED}.")
        opened = self.next()  # '('
        self.enter(opened.pos)
        args = [self.or_expr()]
        while self.peek().kind == lx.COMMA:
            self.next()
            args.append(self.or_expr())
        self.expect(lx.RPAREN, "')' or ','", opened.pos)
        self.leave()
        if name in CASE_FUNCTIONS:
            if len(args) != 1:
                raise _bad("InvalidFilter", f"{name}() takes 1 argument, got {len(args)} (position {token.pos}).")
            return _At(self.case_function(name, args[0]), token.pos)
        if len(args) != 2:
            raise _bad("InvalidFilter", f"{name}() takes 2 arguments, got {len(args)} (position {token.pos}).")
        operand, text = args
        if not isinstance(operand.value, PropertyOperand):
            if isinstance(operand.value, Literal):
                raise _unsupported(f"{name}() with a literal as its first argument (position {operand.pos}) "
                                   "is not supported: the first argument must be a property.")
            raise _bad("TypeMismatch", f"The first argument of {name}() must be a string property "
                       f"(position {operand.pos}).")
        self.require_string(operand, name)
        literal = text.value
        if not isinstance(literal, Literal) or literal.kind != n.STRING:
            what = _describe(text) if not isinstance(literal, Literal) or literal.kind != n.NULL else "null"
            raise _bad("TypeMismatch", f"The second argument of {name}() must be a string literal, "
                       f"not {what} (position {text.pos}).")
        return _At(StringFunction(name, operand.value, literal), token.pos)

    def case_function(self, name: str, arg: _At):
        value = arg.value
        if isinstance(value, Literal):
            if value.kind != n.STRING:
                raise _bad("TypeMismatch", f"{name}() needs a string, not {_describe(arg)} (position {arg.pos}).")
            folded = value.value.lower() if name == "tolower" else value.value.upper()
            return Literal(n.STRING, folded, value.text)
        if not isinstance(value, PropertyOperand):
            raise _bad("TypeMismatch", f"{name}() needs a string property (position {arg.pos}).")
        self.require_string(arg, name)
        return PropertyOperand(value.prop, value.functions + (name,))

    def require_string(self, item: _At, fn: str) -> None:
        prop = item.value.prop
        if prop.collection or prop.edm_type != STRING:
            raise _bad("TypeMismatch", f"{fn}() needs an Edm.String property, not {_describe(item)} "
                       f"(position {item.pos}).")

    # typing --------------------------------------------------------------------------------------------------
    def boolean(self, item: _At) -> Node:
        value = item.value
        if isinstance(value, PropertyOperand):
            if value.prop.edm_type == BOOLEAN and not value.prop.collection and not value.functions:
                return Compare("eq", value, Literal(n.BOOLEAN, True, "true"))
            raise _bad("TypeMismatch", f"Expected a boolean expression at position {item.pos} but found "
                       f"{_describe(item)}.")
        if isinstance(value, Literal):
            if value.kind == n.BOOLEAN:
                return Constant(bool(value.value))
            raise _bad("TypeMismatch", f"Expected a boolean expression at position {item.pos} but found "
                       f"{_describe(item)}.")
        return value

    def compare(self, left: _At, op: str, right: _At, pos: int) -> Node:
        lv, rv = left.value, right.value
        is_node = lambda v: not isinstance(v, (PropertyOperand, Literal))  # noqa: E731
        # a boolean-valued expression against true/false: fold into the expression itself
        for expr, other in ((left, right), (right, left)):
            if is_node(expr.value):
                if not (isinstance(other.value, Literal) and other.value.kind == n.BOOLEAN and op in ("eq", "ne")):
                    raise _bad("TypeMismatch", f"A boolean expression can only be compared with true or false "
                               f"using eq or ne (position {pos}).")
                positive = (op == "eq") == bool(other.value.value)
                return expr.value if positive else Not(expr.value)
        if isinstance(lv, PropertyOperand) and isinstance(rv, PropertyOperand):
            raise _unsupported(f"Comparing two properties (position {pos}) is not supported; compare a property "
                               "with a literal.")
        if isinstance(lv, Literal) and isinstance(rv, Literal):
            return self.fold(lv, op, rv, pos)
        if isinstance(lv, Literal):
            left, right, op = right, left, FLIPPED[op]
        return self.typed_compare(left, op, right, pos)

    def coerce(self, operand: _At, literal_at: _At) -> Literal:
        """The literal converted to the property's type, or a 400 that names both types."""
        prop: Property = operand.value.prop
        literal: Literal = literal_at.value
        if prop.collection:
            raise _bad("TypeMismatch", f"Collection property '{prop.name}' cannot be compared (position "
                       f"{operand.pos}); lambda operators any()/all() are not supported.")
        kind = literal.kind
        if kind == n.NULL:
            return literal
        edm = prop.edm_type
        ok = ((edm == STRING and kind == n.STRING)
              or (edm in NUMERIC_TYPES and kind in (n.INT, n.DECIMAL))
              or (edm == BOOLEAN and kind == n.BOOLEAN)
              or (edm == DATETIMEOFFSET and kind == n.DATETIMEOFFSET)
              or (edm == DATE and kind == n.DATE))
        if ok:
            return literal
        if edm == DATETIMEOFFSET and kind == n.DATE:
            return literals.date_as_instant(literal)
        if edm == DATE and kind == n.STRING:
            return literals.parse_date(literal.value, literal_at.pos)
        hint = ""
        if edm == STRING:
            hint = "; string literals are quoted: 'text'"
        elif edm == DATE and kind == n.DATETIMEOFFSET:
            hint = "; write a Date literal such as 2026-05-04"
        elif edm == DATETIMEOFFSET:
            hint = "; write a DateTimeOffset literal such as 2026-05-04T00:00:00Z (unquoted)"
        elif edm in NUMERIC_TYPES:
            hint = "; numbers are not quoted"
        raise _bad("TypeMismatch", f"Cannot compare {_describe(operand)} with {_describe(literal_at)} "
                   f"(position {literal_at.pos}){hint}.")

    def typed_compare(self, operand: _At, op: str, literal_at: _At, pos: int) -> Node:
        literal = self.coerce(operand, literal_at)
        if literal.kind == n.NULL and op not in ("eq", "ne"):
            return Constant(False)
        if operand.value.prop.edm_type == BOOLEAN and op not in ("eq", "ne"):
            raise _bad("TypeMismatch", f"Edm.Boolean property '{operand.value.prop.name}' can only be compared "
                       f"with eq or ne (position {pos}).")
        return Compare(op, operand.value, literal)

    def fold(self, left: Literal, op: str, right: Literal, pos: int) -> Constant:
        from .evaluate import compare_values  # local: evaluate imports nothing from here
        kinds = {left.kind, right.kind}
        numeric = {n.INT, n.DECIMAL}
        comparable = (len(kinds) == 1 or kinds <= numeric or n.NULL in kinds
                      or kinds == {n.DATE, n.DATETIMEOFFSET})
        if not comparable:
            raise _bad("TypeMismatch", f"Cannot compare {EDM_OF_KIND[left.kind]} literal {_shown(left)} with "
                       f"{EDM_OF_KIND[right.kind]} literal {_shown(right)} (position {pos}).")
        if kinds == {n.DATE, n.DATETIMEOFFSET}:
            left = literals.date_as_instant(left) if left.kind == n.DATE else left
            right = literals.date_as_instant(right) if right.kind == n.DATE else right
        return Constant(compare_values(op, left.value, right.value))

    def in_list(self, left: _At, pos: int) -> Node:
        opened = self.expect(lx.LPAREN, "'(' after 'in'")
        items: list[_At] = []
        while True:
            token = self.peek()
            item = self.operand() if token.kind != lx.RPAREN else None
            if item is None:
                raise lx.syntax_error("expected a literal in the 'in' list but found ')'", token.pos)
            if not isinstance(item.value, Literal):
                raise _bad("InvalidFilter", f"The 'in' list may hold only literals (position {item.pos}).")
            items.append(item)
            if len(items) > MAX_IN_VALUES:
                raise _bad("FilterTooComplex", f"An 'in' list may hold at most {MAX_IN_VALUES} values.")
            if self.peek().kind == lx.COMMA:
                self.next()
                continue
            self.expect(lx.RPAREN, "',' or ')'", opened.pos)
            break
        if not isinstance(left.value, PropertyOperand):
            raise _bad("InvalidFilter", f"The left side of 'in' must be a property (position {left.pos}).")
        values = []
        for item in items:
            literal = self.coerce(left, item)
            if literal not in values:
                values.append(literal)
        return In(left.value, tuple(values))


def parse_filter(text: str, entity: str | EntitySet | EntityType) -> Node:
    """Parse and type-check a $filter expression for an entity set (name, EntitySet or EntityType)."""
    entity_type = resolve_entity_type(entity)
    if not isinstance(text, str):
        raise _bad("InvalidFilter", "$filter must be text.")
    if len(text) > MAX_LENGTH:
        raise _bad("FilterTooComplex", f"$filter is too long ({len(text)} characters; at most {MAX_LENGTH}).")
    if not text.strip():
        raise _bad("InvalidFilter", "$filter is empty.")
    return _Parser(text, entity_type).parse()
