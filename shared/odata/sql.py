"""`to_sql(node, entity)`: a $filter tree as a parameterized Cosmos DB SQL WHERE-clause fragment.

Only text from this module and property paths from the model are ever written into the SQL; every literal
becomes a parameter (`@p0`, `@p1`, ...), returned in azure-cosmos's shape [{"name": "@p0", "value": ...}].

Cosmos SQL has three-valued logic with `undefined` (missing fields, comparisons across types), and `NOT
undefined` is undefined, which would drop rows that OData's `ne` and `not` keep. So every leaf is written to be
definitely true or false: a type guard (IS_STRING / IS_NUMBER / IS_BOOL) is ANDed in front of each comparison
(`false AND undefined` is false), and null tests use IS_DEFINED / IS_NULL. `ne` is NOT of the guarded `eq`, so it
keeps missing and null rows, as OData's null semantics ask.

DateTimeOffset literals are canonical UTC strings (7 fractional digits + Z). startDateTime is compared on
`startUtc`, which is stored in that form, so plain string comparison is time order. Other DateTimeOffset fields
are stored as Graph sent them (usually the same form; `failureDateTime` may be `0001-01-01T00:00:00Z`): equality
also matches the shorter spellings of the same instant (no fraction, trimmed trailing zeros), and orderings
treat those spellings as equal to the literal. Only a stored value with a trimmed fraction compared with a
literal inside the same second can still be ordered wrongly.

Functions used (all valid Cosmos DB SQL and executed by the local emulator): IS_DEFINED, IS_NULL, IS_STRING,
IS_NUMBER, IS_BOOL, STARTSWITH, ENDSWITH, CONTAINS, LOWER, UPPER, the IN operator, NOT/AND/OR, comparisons.
"""
from __future__ import annotations

from .model import BOOLEAN, DATETIMEOFFSET, NUMERIC_TYPES, EntitySet, EntityType, Property
from .model import entity_type as resolve_entity_type
from .nodes import And, Compare, Constant, In, Node, Not, Or, PropertyOperand, StringFunction

SQL_OPS = {"eq": "=", "ne": "!=", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}
SQL_FUNCTIONS = {"startswith": "STARTSWITH", "endswith": "ENDSWITH", "contains": "CONTAINS",
                 "tolower": "LOWER", "toupper": "UPPER"}


class _Parameters:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.items: list[dict] = []

    def add(self, value: object) -> str:
        name = f"{self.prefix}{len(self.items)}"
        self.items.append({"name": name, "value": value})
        return name


def field_ref(prop: Property, alias: str = "c") -> str:
    """The SQL reference to a property's stored path, e.g. c["startUtc"] (paths are model identifiers)."""
    return f'{alias}["{prop.path}"]'


def _guard(prop: Property, ref: str) -> str:
    if prop.edm_type in NUMERIC_TYPES:
        return f"IS_NUMBER({ref})"
    if prop.edm_type == BOOLEAN:
        return f"IS_BOOL({ref})"
    return f"IS_STRING({ref})"


def instant_spellings(canonical: str) -> list[str]:
    """The spellings of one canonical instant (YYYY-MM-DDTHH:MM:SS.fffffffZ) with shorter fractions:
    '...00.5000000Z' -> ['...00.5Z', '...00.50Z', ..., '...00.5000000Z']; a zero fraction also gives '...00Z'."""
    head, fraction = canonical[:19], canonical[20:27]
    significant = len(fraction.rstrip("0"))
    return [head + (f".{fraction[:k]}" if k else "") + "Z" for k in range(significant, 8)]


def _null_test(ref: str) -> str:
    return f"(NOT IS_DEFINED({ref}) OR IS_NULL({ref}))"


class _Writer:
    def __init__(self, params: _Parameters, alias: str) -> None:
        self.params = params
        self.alias = alias

    def operand(self, operand: PropertyOperand) -> tuple[str, str]:
        """(guard, value expression) for a property operand."""
        ref = field_ref(operand.prop, self.alias)
        expr = ref
        for fn in operand.functions:
            expr = f"{SQL_FUNCTIONS[fn]}({expr})"
        return _guard(operand.prop, ref), expr

    def spelled(self, prop: Property) -> bool:
        """Does this property need the several-spellings treatment (non-canonical stored DateTimeOffset)?"""
        return prop.edm_type == DATETIMEOFFSET and not prop.canonical

    def in_list(self, expr: str, values: list) -> str:
        names = ", ".join(self.params.add(v) for v in values)
        return f"{expr} IN ({names})"

    def write(self, node: Node) -> str:
        if isinstance(node, And):
            return f"({self.write(node.left)} AND {self.write(node.right)})"
        if isinstance(node, Or):
            return f"({self.write(node.left)} OR {self.write(node.right)})"
        if isinstance(node, Not):
            return f"(NOT {self.write(node.operand)})"
        if isinstance(node, Constant):
            return "true" if node.value else "false"
        if isinstance(node, Compare):
            return self.compare(node)
        if isinstance(node, In):
            return self.in_node(node)
        if isinstance(node, StringFunction):
            guard, expr = self.operand(node.operand)
            return f"({guard} AND {SQL_FUNCTIONS[node.name]}({expr}, {self.params.add(node.literal.value)}))"
        raise TypeError(f"not a filter node: {node!r}")

    def compare(self, node: Compare) -> str:
        ref = field_ref(node.operand.prop, self.alias)
        if node.literal.value is None:
            if node.op == "eq":
                return _null_test(ref)
            if node.op == "ne":
                return f"(IS_DEFINED({ref}) AND NOT IS_NULL({ref}))"
            return "false"
        if node.op == "ne":
            return f"(NOT {self.compare(Compare('eq', node.operand, node.literal))})"
        guard, expr = self.operand(node.operand)
        value = node.literal.value
        if not self.spelled(node.operand.prop):
            return f"({guard} AND {expr} {SQL_OPS[node.op]} {self.params.add(value)})"
        same = self.in_list(expr, instant_spellings(value))
        if node.op == "eq":
            return f"({guard} AND {same})"
        bound = self.params.add(value)
        if node.op in ("gt", "lt"):
            return f"({guard} AND {expr} {SQL_OPS[node.op]} {bound} AND NOT ({same}))"
        return f"({guard} AND ({expr} {SQL_OPS[node.op]} {bound} OR {same}))"

    def in_node(self, node: In) -> str:
        ref = field_ref(node.operand.prop, self.alias)
        guard, expr = self.operand(node.operand)
        values = [lit.value for lit in node.literals if lit.value is not None]
        has_null = len(values) < len(node.literals)
        if self.spelled(node.operand.prop):
            values = [spelling for v in values for spelling in instant_spellings(v)]
        parts = []
        if has_null:
            parts.append(_null_test(ref))
        if values:
            parts.append(f"({guard} AND {self.in_list(expr, values)})")
        return parts[0] if len(parts) == 1 else f"({parts[0]} OR {parts[1]})"


def to_sql(node: Node | None, entity: str | EntitySet | EntityType | None = None, *, param_prefix: str = "@p",
           alias: str = "c") -> tuple[str, list[dict]]:
    """(WHERE fragment, parameters) for a parsed filter. No filter gives ("true", []).

    `entity` (optional) checks that the tree's properties belong to that entity type. `param_prefix` lets the
    caller keep its own parameter names apart (default @p0, @p1, ...); `alias` is the FROM alias (default c).
    """
    if not (param_prefix.startswith("@") and param_prefix[1:].isidentifier()) or not alias.isidentifier():
        raise ValueError("param_prefix must look like @name and alias must be an identifier")
    if entity is not None and node is not None:
        declared = resolve_entity_type(entity)
        for prop in _properties(node):
            if declared.get(prop.name) != prop:
                raise ValueError(f"property {prop.name} is not a property of {declared.name}")
    if node is None:
        return "true", []
    params = _Parameters(param_prefix)
    return _Writer(params, alias).write(node), params.items


def _properties(node: Node):
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, (And, Or)):
            stack.extend((current.left, current.right))
        elif isinstance(current, Not):
            stack.append(current.operand)
        elif isinstance(current, (Compare, In, StringFunction)):
            yield current.operand.prop
