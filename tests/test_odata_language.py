"""Tests of shared/odata: the entity model and CSDL, query options, and $filter parsed, typed, turned into
parameterized Cosmos SQL (checked against the local emulator and the pure-Python evaluator) and into time
ranges for partition pushdown. Also: two independent OData clients from PyPI read the CSDL and their $filter
strings parse (skipped where those packages are not installed)."""
from __future__ import annotations

import json
import random
import re
import subprocess
import threading
import uuid
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from shared.odata import (And, Compare, Constant, In, Not, ODataError, Or, StringFunction,
                          context_url, evaluate, metadata_xml, parse_filter, parse_options, service_document,
                          time_range, to_sql, entity_sets)
from shared.odata.sql import instant_spellings

ENTITY_SETS = entity_sets()

ROOT = Path(__file__).resolve().parents[1]
EMULATOR_KEY = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")


# ------------------------------------------------------------------------------------------------------------
# helpers

def render(node) -> str:
    """A fully parenthesised text of a filter tree, to check structure and precedence."""
    if isinstance(node, And):
        return f"({render(node.left)} and {render(node.right)})"
    if isinstance(node, Or):
        return f"({render(node.left)} or {render(node.right)})"
    if isinstance(node, Not):
        return f"(not {render(node.operand)})"
    if isinstance(node, Constant):
        return "true" if node.value else "false"
    operand = node.operand.prop.name
    for fn in node.operand.functions:
        operand = f"{fn}({operand})"
    if isinstance(node, Compare):
        return f"{operand} {node.op} {node.literal.value!r}"
    if isinstance(node, In):
        return f"{operand} in {tuple(lit.value for lit in node.literals)!r}"
    if isinstance(node, StringFunction):
        return f"{node.name}({operand}, {node.literal.value!r})"
    raise AssertionError(node)


def pstn(text: str):
    return render(parse_filter(text, "PstnCalls"))


SQL_TOKEN = re.compile(r'\s+|c\["([A-Za-z_][A-Za-z0-9_]*)"\]|@p\d+|\(|\)|,|!=|>=|<=|=|>|<|\b(?:AND|OR|NOT|IN|'
                       r'IS_STRING|IS_NUMBER|IS_BOOL|IS_DEFINED|IS_NULL|STARTSWITH|ENDSWITH|CONTAINS|LOWER|UPPER|'
                       r'true|false)\b')


def assert_only_model_text(sql: str, params: list[dict], entity: str) -> None:
    """The SQL is made only of this module's keywords, @pN names and c["path"] of model properties: nothing a
    client wrote can be in it. Every parameter is referenced."""
    paths = {p.path for p in ENTITY_SETS[entity].entity_type.properties}
    pos = 0
    while pos < len(sql):
        match = SQL_TOKEN.match(sql, pos)
        assert match, f"unexpected SQL text at {pos}: {sql[pos:pos + 40]!r} in {sql}"
        if match.group(1):
            assert match.group(1) in paths
        pos = match.end()
    names = [p["name"] for p in params]
    assert names == [f"@p{i}" for i in range(len(params))]
    for name in names:
        assert re.search(rf"{name}(?!\d)", sql), f"{name} not used in {sql}"


# ------------------------------------------------------------------------------------------------------------
# parser: structure, precedence, literals

@pytest.mark.parametrize("text, expected", [
    ("userId eq 'a' or userId eq 'b' and duration gt 5",
     "(userId eq 'a' or (userId eq 'b' and duration gt 5))"),
    ("(userId eq 'a' or userId eq 'b') and duration gt 5",
     "((userId eq 'a' or userId eq 'b') and duration gt 5)"),
    ("not userId eq 'a' and duration gt 5", "((not userId eq 'a') and duration gt 5)"),
    ("not (userId eq 'a' and duration gt 5)", "(not (userId eq 'a' and duration gt 5))"),
    ("userId eq 'a' and duration gt 5 and charge lt 1", "((userId eq 'a' and duration gt 5) and charge lt 1)"),
    ("not not userId ne 'a'", "(not (not userId ne 'a'))"),
    ("((((userId eq 'a'))))", "userId eq 'a'"),
    ("(userId) eq 'a'", "userId eq 'a'"),
    ("5 lt duration", "duration gt 5"),
    ("2026-05-04T00:00:00Z le startDateTime", "startDateTime ge '2026-05-04T00:00:00.0000000Z'"),
])
def test_precedence_and_parentheses(text, expected):
    assert pstn(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("userDisplayName eq 'O''Brien'", "userDisplayName eq \"O'Brien\""),
    ("userDisplayName eq ''", "userDisplayName eq ''"),
    ("userDisplayName eq 'Zoë 日本'", "userDisplayName eq 'Zoë 日本'"),
    ("duration eq 42", "duration eq 42"),
    ("duration eq -7", "duration eq -7"),
    ("duration eq 42L", "duration eq 42"),
    ("charge eq 0.5", "charge eq 0.5"),
    ("charge eq -1.25e-2", "charge eq -0.0125"),
    ("charge eq 1e3", "charge eq 1000"),
    ("charge eq 5m", "charge eq 5"),
    ("charge eq 2.50M", "charge eq 2.5"),
    ("userId eq null", "userId eq None"),
    ("null eq userId", "userId eq None"),
    ("startDateTime eq 2026-05-04T10:00:00Z", "startDateTime eq '2026-05-04T10:00:00.0000000Z'"),
    ("startDateTime eq 2026-05-04T10:00:00.1234567Z", "startDateTime eq '2026-05-04T10:00:00.1234567Z'"),
    ("startDateTime eq 2026-05-04T10:00:00.5+02:00", "startDateTime eq '2026-05-04T08:00:00.5000000Z'"),
    ("startDateTime eq 2026-05-04T00:30:00-01:30", "startDateTime eq '2026-05-04T02:00:00.0000000Z'"),
    ("startDateTime eq 2026-05-04T10:00Z", "startDateTime eq '2026-05-04T10:00:00.0000000Z'"),
    # a '+' that was not URL-encoded arrives as a space
    ("startDateTime eq 2026-05-04T10:00:00 02:00", "startDateTime eq '2026-05-04T08:00:00.0000000Z'"),
    # no zone: UTC (python-odata sends naive datetimes like this)
    ("startDateTime lt 2026-05-04T00:00:00", "startDateTime lt '2026-05-04T00:00:00.0000000Z'"),
    # a Date against a DateTimeOffset property: midnight UTC
    ("startDateTime ge 2026-05-04", "startDateTime ge '2026-05-04T00:00:00.0000000Z'"),
    ("day eq 2026-05-04", "day eq '2026-05-04'"),
    ("day eq '2026-05-04'", "day eq '2026-05-04'"),
    ("endDateTime ne null", "endDateTime ne None"),
    ("callType in ('user_in', 'user_out')", "callType in ('user_in', 'user_out')"),
    ("callType in ('user_in')", "callType in ('user_in',)"),
    ("callType in ('a', null, 'a')", "callType in ('a', None)"),
    ("duration in (1, 2.5)", "duration in (1, 2.5)"),
    ("startswith(userPrincipalName, 'al')", "startswith(userPrincipalName, 'al')"),
    ("endswith(userPrincipalName,'@contoso.com')", "endswith(userPrincipalName, '@contoso.com')"),
    ("contains(calleeNumber, '+4930')", "contains(calleeNumber, '+4930')"),
    ("contains(tolower(userDisplayName), 'ann')", "contains(tolower(userDisplayName), 'ann')"),
    ("toupper(currency) eq 'EUR'", "toupper(currency) eq 'EUR'"),
    ("tolower(currency) eq tolower('EUR')", "tolower(currency) eq 'eur'"),
    ("startswith(userId, 'a') eq true", "startswith(userId, 'a')"),
    ("startswith(userId, 'a') eq false", "(not startswith(userId, 'a'))"),
    ("true eq startswith(userId, 'a')", "startswith(userId, 'a')"),
    ("duration gt null", "false"),
    ("1 eq 1", "true"),
    ("true", "true"),
    ("2026-05-04 lt 2026-05-04T00:00:01Z", "true"),
    ("userId eq 'x'' OR 1=1 --'", "userId eq \"x' OR 1=1 --\""),
])
def test_literals_functions_and_forms(text, expected):
    assert pstn(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("successfulCall", "successfulCall eq True"),
    ("not successfulCall", "(not successfulCall eq True)"),
    ("successfulCall eq false and mediaBypassEnabled", "(successfulCall eq False and mediaBypassEnabled eq True)"),
    ("finalSipCode ge 400 and finalSipCode lt 500", "(finalSipCode ge 400 and finalSipCode lt 500)"),
    ("failureDateTime ne 0001-01-01T00:00:00Z", "failureDateTime ne '0001-01-01T00:00:00.0000000Z'"),
])
def test_direct_routing_booleans_and_dates(text, expected):
    assert render(parse_filter(text, "DirectRoutingCalls")) == expected


@pytest.mark.parametrize("text", [
    # Power BI folding (incremental refresh and ordinary steps)
    "startDateTime ge 2026-05-04T00:00:00Z and startDateTime lt 2026-05-05T00:00:00Z",
    "startDateTime ge 2026-05-04T00:00:00+00:00 and startDateTime lt 2026-05-05T00:00:00+00:00",
    "(startDateTime ge 2026-05-04T00:00:00Z and startDateTime lt 2026-05-05T00:00:00Z)",
    "userPrincipalName eq 'a@b.com'",
    "startswith(userPrincipalName, 'a') and not contains(calleeNumber, '555')",
    "duration gt 60 and charge ge 0.5 and currency eq 'EUR'",
    # python-odata: each clause in parentheses, aware datetimes with +00:00, naive ones without a zone
    "(userId eq 'u1') and (startDateTime ge 2026-05-02T00:00:00+00:00) and (startDateTime lt 2026-05-04T00:00:00)",
    "((startswith(userPrincipalName, 'user1')) or (duration ge 100))",
    "(userId eq null) and (charge gt 0.5)",
    # odatapy
    "(userId eq 'u1') and (startswith(userPrincipalName,'a')) and (startDateTime ge 2026-05-02T00:00:00Z)",
    "callType in ('user_in','user_out')",
])
def test_client_shapes_parse(text):
    node = parse_filter(text, "PstnCalls")
    sql, params = to_sql(node, "PstnCalls")
    assert_only_model_text(sql, params, "PstnCalls")


# ------------------------------------------------------------------------------------------------------------
# parser: malformed and hostile input

HOSTILE = [
    ("userId eq 'x' or 1 eq 1; DROP", 400, "unexpected character ';'"),
    ("'); SELECT * FROM c --", 400, "unterminated string"),
    ("userId eq 'x'; DELETE FROM c", 400, "';'"),
    ("userId eq 'x' -- comment", 400, "position 14"),
    ("userId eq 'x' /* c */", 400, "position"),
    ("userId eq 'abc", 400, "unterminated string"),
    ("userId eq abc'", 400, "unterminated string"),
    ("(userId eq 'a'", 400, "expected ')' to close the '(' at position 0"),
    ("((userId eq 'a')", 400, "expected ')'"),
    ("userId eq 'a')", 400, "unbalanced ')'"),
    ("userId eq", 400, "found the end of the expression"),
    ("eq 'a'", 400, "operator 'eq'"),
    ("userId 'a'", 400, "after a complete expression"),
    ("userId eq 'a' and", 400, "found the end"),
    ("userId eq 'a' or or userId eq 'b'", 400, "operator 'or'"),
    ("userId = 'a'", 400, "unexpected character '='"),
    ("userId eq \"a\"", 400, "single quotes"),
    ("userId eq 'a' AND duration gt 1", 400, "lower case: write 'and'"),
    ("userId EQ 'a'", 400, "lower case: write 'eq'"),
    ("duration eq 5 eq 5", 400, "after a complete expression"),
    ("unknownProp eq 1", 400, "Property 'unknownProp' is not declared"),
    ("userid eq 'x'", 400, "did you mean 'userId'"),
    ("rowHash eq 'x'", 400, "Property 'rowHash' is not declared"),
    ("startUtc ge '2026'", 400, "Property 'startUtc' is not declared"),
    ("duration eq 'sixty'", 400, "Cannot compare property 'duration' (Edm.Int32) with Edm.String"),
    ("userId eq 42", 400, "Cannot compare property 'userId' (Edm.String)"),
    ("startDateTime ge '2026-05-04T00:00:00Z'", 400, "(unquoted)"),
    ("userPrincipalName eq 2026-05-04T00:00:00Z", 400, "Edm.DateTimeOffset literal"),
    ("day ge 2026-05-04T00:00:00Z", 400, "write a Date literal"),
    ("day eq 'yesterday'", 400, "Invalid Date literal 'yesterday'"),
    ("startDateTime ge 2026-13-45T00:00:00Z", 400, "month must be in 1..12"),
    ("startDateTime ge 2026-02-30T00:00:00Z", 400, "day is out of range"),
    ("startDateTime ge 2026-05-04T25:00:00Z", 400, "Invalid DateTimeOffset literal"),
    ("startDateTime ge 2026-05-04T", 400, "malformed DateTimeOffset"),
    ("day eq 2026-02-30", 400, "Invalid Date literal '2026-02-30'"),
    ("startDateTime ge 0001-01-01T00:00:00+01:00", 400, "Invalid DateTimeOffset literal"),
    ("duration gt 99999999999999999999999999", 400, "out of range"),
    ("charge gt 1e999", 400, "out of range for Edm.Decimal"),
    ("charge gt 1e-400", 400, "out of range for Edm.Decimal"),
    ("duration gt 1.2.3", 400, "malformed number"),
    ("duration gt -", 400, "malformed number"),
    ("administrativeUnitInfos eq 'x'", 400, "Collection property 'administrativeUnitInfos' cannot be compared"),
    ("startswith(duration, '1')", 400, "needs an Edm.String property"),
    ("startswith(userId, 1)", 400, "must be a string literal"),
    ("startswith(userId, null)", 400, "must be a string literal, not null"),
    ("startswith(userId)", 400, "takes 2 arguments"),
    ("tolower(duration) eq 'x'", 400, "needs an Edm.String property"),
    ("foo(userId) eq 1", 400, "Unknown function 'foo'"),
    ("STARTSWITH(userId, 'a')", 400, "function names are lower case"),
    ("userId in ()", 400, "expected a literal in the 'in' list"),
    ("userId in ('a', duration)", 400, "may hold only literals"),
    ("userId in 'a'", 400, "expected '(' after 'in'"),
    ("'a' in userId", 400, "expected '(' after 'in'"),
    ("duration", 400, "Expected a boolean expression"),
    ("userId eq 'a' or 1", 400, "Expected a boolean expression"),
    ("'a' eq 1", 400, "Cannot compare Edm.String literal 'a' with Edm.Int64 literal 1"),
    ("userId eq 01234567-89ab-cdef-0123-456789abcdef", 400, "quote it"),
    ("userId eq 'a' \x00", 400, "U+0000"),
    ("userId eq 'a' && duration gt 1", 400, "unexpected character '&'"),
    ("(" * 60 + "userId eq 'a'" + ")" * 60, 400, "nested deeper than 50"),
    ("not " * 60 + "userId eq 'a'", 400, "nested deeper than 50"),
    ("contains(" * 60 + "userId, 'a')", 400, "nested deeper than 50"),
    ("userId eq '" + "a" * 2100 + "'", 400, "too long"),
    ("", 400, "empty"),
    ("   ", 400, "empty"),
    ("userId in (" + ",".join(["'a'"] * 201) + ")", 400, "at most 200 values"),
    ("year(startDateTime) eq 2026", 501, "Function 'year'"),
    ("length(userId) gt 3", 501, "Function 'length'"),
    ("administrativeUnitInfos/any(a:a/id eq 'x')", 501, "Lambda operator 'administrativeUnitInfos/any'"),
    ("duration add 5 gt 10", 501, "Arithmetic operator 'add'"),
    ("startDateTime gt endDateTime", 501, "Comparing two properties"),
    ("duration eq duration'PT1H'", 501, "Typed literal"),
    ("userId eq @alias", 501, "Parameter alias"),
    ("isof(TeamsCallLogs.PstnCall)", 501, "Function 'isof'"),
]


@pytest.mark.parametrize("text, status, fragment", HOSTILE)
def test_malformed_and_hostile_filters_are_rejected(text, status, fragment):
    with pytest.raises(ODataError) as caught:
        parse_filter(text, "PstnCalls")
    error = caught.value
    assert error.status == status, error.message
    assert fragment in error.message, error.message
    body = error.to_body()
    assert body["error"]["code"] and body["error"]["message"] == error.message
    assert body["error"]["target"] == "$filter"
    assert len(error.message) < 400  # a hostile literal is never echoed at length


def test_there_are_at_least_thirty_hostile_cases():
    assert len(HOSTILE) >= 30 and sum(1 for _, status, _ in HOSTILE if status == 400) >= 30


def test_direct_routing_typing_errors():
    for text, fragment in [("successfulCall gt true", "only be compared with eq or ne"),
                           ("successfulCall eq 1", "Cannot compare property 'successfulCall' (Edm.Boolean)"),
                           ("finalSipCode eq '404'", "numbers are not quoted")]:
        with pytest.raises(ODataError) as caught:
            parse_filter(text, "DirectRoutingCalls")
        assert caught.value.status == 400 and fragment in caught.value.message
    with pytest.raises(ODataError) as caught:
        parse_filter("duration gt 5", "DailyUsage")
    assert "not declared on TeamsCallLogs.DailyUsage" in caught.value.message


# ------------------------------------------------------------------------------------------------------------
# SQL text and parameters

def test_sql_shapes():
    sql, params = to_sql(parse_filter("userId eq 'a'", "PstnCalls"))
    assert sql == '(IS_STRING(c["userId"]) AND c["userId"] = @p0)'
    assert params == [{"name": "@p0", "value": "a"}]
    sql, params = to_sql(parse_filter("userId ne 'a'", "PstnCalls"))
    assert sql == '(NOT (IS_STRING(c["userId"]) AND c["userId"] = @p0))'
    assert to_sql(parse_filter("userId eq null", "PstnCalls"))[0] == \
        '(NOT IS_DEFINED(c["userId"]) OR IS_NULL(c["userId"]))'
    assert to_sql(parse_filter("userId ne null", "PstnCalls"))[0] == \
        '(IS_DEFINED(c["userId"]) AND NOT IS_NULL(c["userId"]))'
    sql, params = to_sql(parse_filter("startDateTime ge 2026-05-04T02:00:00+02:00", "PstnCalls"))
    assert sql == '(IS_STRING(c["startUtc"]) AND c["startUtc"] >= @p0)'
    assert params == [{"name": "@p0", "value": "2026-05-04T00:00:00.0000000Z"}]
    sql, params = to_sql(parse_filter("callType in ('a', 'b')", "PstnCalls"))
    assert sql == '(IS_STRING(c["callType"]) AND c["callType"] IN (@p0, @p1))'
    sql, _ = to_sql(parse_filter("startswith(tolower(userDisplayName), 'al')", "PstnCalls"))
    assert sql == '(IS_STRING(c["userDisplayName"]) AND STARTSWITH(LOWER(c["userDisplayName"]), @p0))'
    assert to_sql(None) == ("true", [])
    sql, params = to_sql(parse_filter("day eq 2026-05-04", "DailyUsage"), "DailyUsage", param_prefix="@f")
    assert sql == '(IS_STRING(c["day"]) AND c["day"] = @f0)' and params[0]["name"] == "@f0"


def test_instant_spellings():
    assert instant_spellings("2026-05-04T10:00:00.5000000Z") == [
        "2026-05-04T10:00:00.5Z", "2026-05-04T10:00:00.50Z", "2026-05-04T10:00:00.500Z",
        "2026-05-04T10:00:00.5000Z", "2026-05-04T10:00:00.50000Z", "2026-05-04T10:00:00.500000Z",
        "2026-05-04T10:00:00.5000000Z"]
    assert instant_spellings("0001-01-01T00:00:00.0000000Z")[0] == "0001-01-01T00:00:00Z"
    assert instant_spellings("2026-05-04T10:00:00.1234567Z") == ["2026-05-04T10:00:00.1234567Z"]


@pytest.mark.parametrize("entity, text", [
    ("PstnCalls", "userId eq 'x'' OR 1=1 --' or userDisplayName eq '\"; DROP TABLE c; --'"),
    ("PstnCalls", "contains(userDisplayName, 'c[\"id\"]') or startswith(callType, ')) OR true OR ((')"),
    ("PstnCalls", "callType in ('a'' OR ''1''=''1', 'SELECT * FROM c', '@p00', 'c[\"userId\"]')"),
    ("PstnCalls", "userPrincipalName ne 'IS_DEFINED(c.x)' and duration ge 60 and charge lt 0.25"),
    ("PstnCalls", "endDateTime lt 2026-05-04T10:00:00.5Z and startDateTime ge 2026-05-04"),
    ("DirectRoutingCalls", "successfulCall eq false or finalSipCode in (486, 487) or failureDateTime gt 2026-01-01"),
    ("DailyUsage", "day ge 2026-05-01 and minutes gt 1.5 and feed eq 'pstn'"),
])
def test_sql_is_built_from_model_text_only(entity, text):
    node = parse_filter(text, entity)
    sql, params = to_sql(node, entity)
    assert_only_model_text(sql, params, entity)
    for param in params:
        if isinstance(param["value"], str) and len(param["value"]) > 1:
            assert param["value"] not in sql


def test_to_sql_checks_the_entity_and_its_arguments():
    node = parse_filter("successfulCall", "DirectRoutingCalls")
    with pytest.raises(ValueError):
        to_sql(node, "PstnCalls")
    with pytest.raises(ValueError):
        to_sql(node, param_prefix="p; DROP")


# ------------------------------------------------------------------------------------------------------------
# evaluate (pure Python)

def test_evaluate_null_and_missing_semantics():
    docs = {"missing": {"id": "1"}, "null": {"id": "2", "userId": None}, "x": {"id": "3", "userId": "x"},
            "y": {"id": "4", "userId": "y"}, "wrong": {"id": "5", "userId": 7}}

    def matching(text):
        node = parse_filter(text, "PstnCalls")
        return sorted(name for name, doc in docs.items() if evaluate(node, doc))

    assert matching("userId eq null") == ["missing", "null"]
    assert matching("userId ne null") == ["wrong", "x", "y"]
    assert matching("userId eq 'x'") == ["x"]
    assert matching("userId ne 'x'") == ["missing", "null", "wrong", "y"]
    assert matching("userId gt 'a'") == ["x", "y"]
    assert matching("not (userId gt 'a')") == ["missing", "null", "wrong"]
    assert matching("userId in ('x', null)") == ["missing", "null", "x"]
    assert matching("startswith(userId, '')") == ["x", "y"]
    assert evaluate(None, {}) is True


def test_evaluate_datetimes_compare_as_instants():
    node = parse_filter("failureDateTime eq 0001-01-01T00:00:00Z", "DirectRoutingCalls")
    assert evaluate(node, {"failureDateTime": "0001-01-01T00:00:00Z"})
    assert evaluate(node, {"failureDateTime": "0001-01-01T00:00:00.0000000Z"})
    node = parse_filter("endDateTime gt 2026-05-04T10:00:00+02:00", "DirectRoutingCalls")
    assert evaluate(node, {"endDateTime": "2026-05-04T08:00:00.0000001Z"})
    assert not evaluate(node, {"endDateTime": "2026-05-04T08:00:00Z"})


# ------------------------------------------------------------------------------------------------------------
# SQL == evaluate, on the local Cosmos emulator

class _Emulator:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(["node", str(ROOT / "devstack" / "cosmos_server.js"), "--host", "127.0.0.1",
                                      "--port", "0"], cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(20)
        match = re.search(r"cosmos listening on (https://127\.0\.0\.1:\d+)", lines[0] if lines else "")
        if not match:
            self.stop()
            raise RuntimeError(f"cosmos server did not start: {lines!r}")
        self.endpoint = match.group(1)
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _instant(rng: random.Random, day: int) -> tuple[str, str]:
    """(Graph's text, canonical UTC text) of a random instant on 2026-05-(day)."""
    hour, minute, second = rng.randrange(24), rng.randrange(60), rng.randrange(60)
    fraction = rng.choice(["0000000", "5000000", f"{rng.randrange(10**7):07d}"])
    canonical = f"2026-05-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.{fraction}Z"
    return canonical, canonical


def _call_docs(rng: random.Random, kind: str, count: int) -> list[dict]:
    users = [("u1", "ann@contoso.com", "Ann Smith"), ("u2", "bob@contoso.com", "Bob O'Brien"),
             ("u3", "Zoe@Contoso.com", "Zoë Müller"), ("", "bot@contoso.com", None)]
    docs = []
    for i in range(count):
        day = 1 + i % 6
        start, start_utc = _instant(rng, day)
        user_id, upn, name = users[i % len(users)]
        doc = {"id": f"{kind}-{i:03d}", "day": f"2026-05-{day:02d}", "startDateTime": start, "startUtc": start_utc,
               "userId": user_id, "userPrincipalName": upn, "userDisplayName": name,
               "duration": rng.choice([0, 5, 59, 60, 61, 300, 3600]),
               "callType": rng.choice(["user_in", "user_out", "ucap_in", "oc_user_out", "User_In"]),
               "callerNumber": rng.choice(["+4930123", "+14155550100", "tel:+99", None]),
               "calleeNumber": rng.choice(["+4930555", "+33155500", "+4930123"]),
               "endDateTime": rng.choice([start[:-1].split(".")[0] + "Z", start, "2026-05-10T00:00:00.0000000Z"]),
               "administrativeUnitInfos": rng.choice([[], [{"id": "au1"}]]), "rowHash": "h"}
        if kind == "pstn":
            doc.update({"charge": rng.choice([0, 0.5, 0.25, 1.75, 12]),
                        "connectionCharge": rng.choice([0, 0.1]),
                        "currency": rng.choice(["EUR", "USD", "eur"]),
                        "destinationContext": rng.choice(["Domestic", "International", None])})
        else:
            failed = rng.random() < 0.4
            doc.update({"successfulCall": not failed,
                        "failureDateTime": start if failed else "0001-01-01T00:00:00Z",
                        "finalSipCode": rng.choice([0, 200, 404, 486, 487, 503]),
                        "mediaBypassEnabled": rng.choice([True, False]),
                        "trunkFullyQualifiedDomainName": rng.choice(["sbc1.contoso.com", "sbc2.contoso.com"])})
        # some fields missing, some null, one of the wrong JSON type
        for field in rng.sample(["userId", "duration", "callType", "charge", "successfulCall", "endDateTime",
                                 "userDisplayName", "finalSipCode", "mediaBypassEnabled"], 2):
            if rng.random() < 0.5:
                doc.pop(field, None)
            else:
                doc[field] = None
        if i == 7:
            doc["duration"] = "60"
        docs.append(doc)
    return docs


def _usage_docs(rng: random.Random) -> list[dict]:
    docs = []
    for i in range(24):
        day = f"2026-05-{1 + i % 6:02d}"
        docs.append({"id": f"usage-{i:03d}", "day": day, "feed": rng.choice(["pstn", "directRouting"]),
                     "userId": f"u{i % 3}", "callType": rng.choice(["user_in", "user_out"]),
                     "currency": rng.choice(["EUR", None]), "calls": rng.randrange(0, 20),
                     "minutes": rng.choice([0, 1.5, 2.25, 10]), "charge": rng.choice([0, 0.5, 3])})
    return docs


EQUIVALENCE = [
    ("PstnCalls", "startDateTime ge 2026-05-02T00:00:00Z and startDateTime lt 2026-05-04T00:00:00Z"),
    ("PstnCalls", "startDateTime gt 2026-05-03T12:00:00+02:00 or startDateTime le 2026-05-01T06:00:00Z"),
    ("PstnCalls", "startDateTime ge 2026-05-03"),
    ("PstnCalls", "userPrincipalName eq 'ann@contoso.com'"),
    ("PstnCalls", "userId ne 'u1'"),
    ("PstnCalls", "userId eq null"),
    ("PstnCalls", "userId ne null and userId ne ''"),
    ("PstnCalls", "userDisplayName eq 'Bob O''Brien'"),
    ("PstnCalls", "userDisplayName eq null or startswith(userDisplayName, 'Zo')"),
    ("PstnCalls", "duration gt 60"),
    ("PstnCalls", "not (duration gt 60)"),
    ("PstnCalls", "duration ne 60"),
    ("PstnCalls", "duration ge 59.5 and duration le 300"),
    ("PstnCalls", "duration in (0, 5, 3600)"),
    ("PstnCalls", "charge gt 0.25 and currency eq 'EUR'"),
    ("PstnCalls", "charge eq 0.5 or connectionCharge eq 0.1"),
    ("PstnCalls", "callType in ('user_in', 'ucap_in', null)"),
    ("PstnCalls", "tolower(callType) eq 'user_in'"),
    ("PstnCalls", "contains(tolower(userPrincipalName), 'contoso') and not endswith(userPrincipalName, 'contoso.com')"),
    ("PstnCalls", "startswith(callerNumber, '+49') or contains(calleeNumber, '555')"),
    ("PstnCalls", "toupper(currency) eq 'EUR'"),
    ("PstnCalls", "destinationContext ne 'Domestic'"),
    ("PstnCalls", "endDateTime lt 2026-05-04T00:00:00Z"),
    ("PstnCalls", "endDateTime ge 2026-05-10T00:00:00Z"),
    ("PstnCalls", "endDateTime eq null or endDateTime gt 2026-05-05T00:00:00Z"),
    ("PstnCalls", "day eq 2026-05-02 or day eq '2026-05-05'"),
    ("PstnCalls", "(userId eq 'u1') and (startDateTime ge 2026-05-02T00:00:00+00:00) and "
                  "(startDateTime lt 2026-05-06T00:00:00)"),
    ("PstnCalls", "not (userId eq 'u2' or duration lt 60) and charge ne null"),
    ("PstnCalls", "1 eq 1 and userId eq 'u3'"),
    ("PstnCalls", "userId eq 'x'' OR 1=1 --'"),
    ("DirectRoutingCalls", "successfulCall"),
    ("DirectRoutingCalls", "not successfulCall"),
    ("DirectRoutingCalls", "successfulCall ne true"),
    ("DirectRoutingCalls", "failureDateTime ne 0001-01-01T00:00:00Z"),
    ("DirectRoutingCalls", "failureDateTime eq 0001-01-01T00:00:00Z"),
    ("DirectRoutingCalls", "failureDateTime gt 0001-01-01T00:00:00Z"),
    ("DirectRoutingCalls", "failureDateTime le 0001-01-01T00:00:00.0000000Z"),
    ("DirectRoutingCalls", "failureDateTime ge 2026-05-03T00:00:00Z"),
    ("DirectRoutingCalls", "finalSipCode ge 400 and finalSipCode lt 500 and mediaBypassEnabled eq false"),
    ("DirectRoutingCalls", "finalSipCode in (486, 487) or trunkFullyQualifiedDomainName eq 'sbc2.contoso.com'"),
    ("DailyUsage", "day ge 2026-05-02 and day lt 2026-05-05"),
    ("DailyUsage", "minutes gt 1.5 or currency eq null"),
    ("DailyUsage", "feed eq 'pstn' and calls ge 10"),
]


@pytest.fixture(scope="module")
def emulator_containers():
    from azure.cosmos import CosmosClient, PartitionKey

    server = _Emulator()
    try:
        client = CosmosClient(server.endpoint, credential=EMULATOR_KEY)
        database = client.create_database_if_not_exists(f"odata{uuid.uuid4().hex[:8]}")
        rng = random.Random(4)
        data = {"PstnCalls": _call_docs(rng, "pstn", 50), "DirectRoutingCalls": _call_docs(rng, "dr", 50),
                "DailyUsage": _usage_docs(rng)}
        containers = {}
        for name, docs in data.items():
            container = database.create_container_if_not_exists(name, PartitionKey(path="/day"))
            for doc in docs:
                container.upsert_item(doc)
            containers[name] = (container, docs)
        yield containers
    finally:
        server.stop()


def test_sql_matches_evaluate_on_the_emulator(emulator_containers):
    sizes = []
    for entity, text in EQUIVALENCE:
        container, docs = emulator_containers[entity]
        node = parse_filter(text, entity)
        where, params = to_sql(node, entity)
        assert_only_model_text(where, params, entity)
        rows = container.query_items(f"SELECT c.id FROM c WHERE {where}", parameters=params,
                                     enable_cross_partition_query=True)
        got = sorted(row["id"] for row in rows)
        expected = sorted(doc["id"] for doc in docs if evaluate(node, doc))
        assert got == expected, f"{entity}: {text}\nSQL: {where}\nparams: {params}"
        sizes.append((len(expected), len(docs)))
    assert len(EQUIVALENCE) >= 30
    # the filters discriminate: most select some rows but not all
    assert sum(1 for n, total in sizes if 0 < n < total) >= 0.8 * len(sizes)


def test_sql_with_time_range_and_order_runs_on_the_emulator(emulator_containers):
    """The shape the service will run: the filter ANDed with a day range, ordered by startUtc then id."""
    container, docs = emulator_containers["PstnCalls"]
    node = parse_filter("startDateTime ge 2026-05-02T06:00:00Z and startDateTime lt 2026-05-04T00:00:00Z "
                        "and userId ne 'u2'", "PstnCalls")
    bounds = time_range(node, "startDateTime")
    where, params = to_sql(node, "PstnCalls")
    query = (f"SELECT * FROM c WHERE {where} AND c.day >= @dayFrom AND c.day <= @dayTo "
             "ORDER BY c.startUtc DESC")
    params += [{"name": "@dayFrom", "value": bounds.lower[:10]}, {"name": "@dayTo", "value": bounds.upper[:10]}]
    got = [row["id"] for row in container.query_items(query, parameters=params, enable_cross_partition_query=True)]
    expected = [d["id"] for d in sorted(docs, key=lambda d: d["startUtc"], reverse=True) if evaluate(node, d)]
    assert got == expected and got


# ------------------------------------------------------------------------------------------------------------
# time_range

@pytest.mark.parametrize("text, expected", [
    ("startDateTime ge 2026-05-04T00:00:00Z and startDateTime lt 2026-05-05T00:00:00Z",
     ("2026-05-04T00:00:00.0000000Z", True, "2026-05-05T00:00:00.0000000Z", False)),
    ("startDateTime gt 2026-05-04T02:00:00+02:00", ("2026-05-04T00:00:00.0000000Z", False, None, False)),
    ("startDateTime le 2026-05-04", (None, False, "2026-05-04T00:00:00.0000000Z", True)),
    ("startDateTime eq 2026-05-04T10:00:00.5Z",
     ("2026-05-04T10:00:00.5000000Z", True, "2026-05-04T10:00:00.5000000Z", True)),
    ("startDateTime ge 2026-05-01T00:00:00Z and userId eq 'a' and startDateTime ge 2026-05-03T00:00:00Z "
     "and startDateTime lt 2026-05-09T00:00:00Z and startDateTime le 2026-05-07T00:00:00Z",
     ("2026-05-03T00:00:00.0000000Z", True, "2026-05-07T00:00:00.0000000Z", True)),
    ("startDateTime ge 2026-05-03T00:00:00Z and startDateTime gt 2026-05-03T00:00:00Z",
     ("2026-05-03T00:00:00.0000000Z", False, None, False)),
    ("(startDateTime ge 2026-05-03T00:00:00Z) and (startDateTime lt 2026-05-04T00:00:00Z)",
     ("2026-05-03T00:00:00.0000000Z", True, "2026-05-04T00:00:00.0000000Z", False)),
    ("startDateTime in (2026-05-05T00:00:00Z, 2026-05-03T00:00:00Z)",
     ("2026-05-03T00:00:00.0000000Z", True, "2026-05-05T00:00:00.0000000Z", True)),
    # conservative: nothing under or / not, no ne, no null, no other property
    ("startDateTime ge 2026-05-03T00:00:00Z or userId eq 'a'", (None, False, None, False)),
    ("not (startDateTime lt 2026-05-03T00:00:00Z)", (None, False, None, False)),
    ("startDateTime ne 2026-05-03T00:00:00Z", (None, False, None, False)),
    ("startDateTime ne null and endDateTime ge 2026-05-03T00:00:00Z", (None, False, None, False)),
    ("userId eq 'a'", (None, False, None, False)),
])
def test_time_range(text, expected):
    assert tuple(time_range(parse_filter(text, "PstnCalls"), "startDateTime")) == expected


def test_time_range_on_day_and_empty_ranges():
    node = parse_filter("day ge 2026-05-02 and day lt '2026-05-05' and feed eq 'pstn'", "DailyUsage")
    assert tuple(time_range(node, "day")) == ("2026-05-02", True, "2026-05-05", False)
    assert time_range(None, "day") == (None, False, None, False)
    assert time_range(parse_filter("day ge 2026-05-05 and day lt 2026-05-05", "DailyUsage"), "day").empty
    assert not time_range(parse_filter("day eq 2026-05-05", "DailyUsage"), "day").empty


# ------------------------------------------------------------------------------------------------------------
# query options

def test_options_parse_everything():
    options = parse_options("PstnCalls", {
        "$filter": "userId eq 'a'", "$select": "id, duration,startDateTime,id",
        "$orderby": "startDateTime desc,id desc",
        "$top": "5", "$skip": "10", "$count": "true", "$skiptoken": "opaque==", "$format": "json", "code": "key",
        "other": "ignored"}, "odata.maxpagesize=50", 1000)
    assert render(options.filter) == "userId eq 'a'"
    assert options.select == ("id", "duration", "startDateTime")
    assert options.orderby == (("startDateTime", "desc"), ("id", "desc"))
    assert (options.top, options.skip, options.count, options.skiptoken) == (5, 10, True, "opaque==")
    assert (options.page_size, options.preference_applied, options.format) == (50, "odata.maxpagesize=50", "json")
    with pytest.raises(Exception):
        options.top = 3  # frozen


def test_options_defaults_and_prefer():
    options = parse_options("DailyUsage", {}, None, 1000)
    assert options.filter is None and options.select is None and options.orderby == ()
    assert (options.top, options.skip, options.count, options.skiptoken) == (None, None, False, None)
    assert options.page_size == 1000 and options.preference_applied is None
    for prefer, size in [("odata.maxpagesize=5000", 1000), ("odata.track-changes, odata.maxpagesize=7", 7),
                         ('odata.maxpagesize="25"', 25), ("maxpagesize=3", 3), ("odata.maxpagesize=0", 1000),
                         ("odata.maxpagesize=abc", 1000), ("return=minimal", 1000), ("", 1000)]:
        assert parse_options("PstnCalls", {}, prefer, 1000).page_size == size, prefer
    assert parse_options("PstnCalls", {"$select": "*"}).select is None
    assert parse_options("PstnCalls", {"$select": "id,*"}).select is None
    assert parse_options("PstnCalls", {"$format": "application/json;odata.metadata=minimal"}).format == "json"
    assert parse_options("DailyUsage", {"$orderby": "day desc, id desc"}).orderby == (("day", "desc"),
                                                                                       ("id", "desc"))
    assert parse_options("PstnCalls", {"$Top": "3"}).top == 3  # 4.01: case-insensitive option names


@pytest.mark.parametrize("entity, params, status, fragment", [
    ("PstnCalls", {"$foo": "1"}, 400, "Unknown query option '$foo'"),
    ("PstnCalls", {"$top": "-1"}, 400, "non-negative integer"),
    ("PstnCalls", {"$top": "abc"}, 400, "non-negative integer"),
    ("PstnCalls", {"$top": "1.5"}, 400, "non-negative integer"),
    ("PstnCalls", {"$top": "1" + "0" * 30}, 400, "at most 2147483647"),
    ("PstnCalls", {"$top": "2147483648"}, 400, "at most 2147483647"),
    ("PstnCalls", {"$top": ""}, 400, "non-negative integer"),
    ("PstnCalls", {"$skip": "１２"}, 400, "non-negative integer"),
    ("PstnCalls", {"$skip": "-0"}, 400, "non-negative integer"),
    ("PstnCalls", {"$count": "yes"}, 400, "$count must be true or false"),
    ("PstnCalls", {"$count": "True"}, 400, "$count must be true or false"),
    ("PstnCalls", {"$select": "nope"}, 400, "Property 'nope' is not declared"),
    ("PstnCalls", {"$select": "id,,duration"}, 400, "comma-separated"),
    ("PstnCalls", {"$select": "administrativeUnitInfos/id"}, 501, "not supported"),
    ("PstnCalls", {"$orderby": "duration"}, 501, "Ordering PstnCalls by 'duration' is not supported"),
    ("PstnCalls", {"$orderby": "id"}, 501, "by 'id' is not supported"),
    ("PstnCalls", {"$orderby": "startDateTime sideways"}, 400, "asc or desc"),
    ("PstnCalls", {"$orderby": "nope desc"}, 400, "Property 'nope' is not declared"),
    ("PstnCalls", {"$orderby": "startDateTime,startDateTime desc"}, 400, "twice"),
    ("PstnCalls", {"$orderby": "tolower(userId)"}, 501, "expression"),
    ("DailyUsage", {"$orderby": "startDateTime"}, 400, "not declared on TeamsCallLogs.DailyUsage"),
    ("PstnCalls", {"$expand": "x"}, 501, "$expand is not supported"),
    ("PstnCalls", {"$search": "ann"}, 501, "$search is not supported"),
    ("PstnCalls", {"$apply": "groupby((userId))"}, 501, "$apply is not supported"),
    ("PstnCalls", {"$compute": "duration mul 2 as d"}, 501, "$compute is not supported"),
    ("PstnCalls", {"$format": "xml"}, 406, "application/json only"),
    ("PstnCalls", {"$format": "application/atom+xml"}, 406, "application/json only"),
    ("PstnCalls", {"$format": "!!"}, 400, "Invalid $format"),
    ("PstnCalls", {"$skiptoken": ""}, 400, "$skiptoken is empty"),
    ("PstnCalls", {"$filter": ""}, 400, "$filter is empty"),
    ("PstnCalls", {"$filter": "userId eq 1"}, 400, "Cannot compare"),
    ("Nope", {}, 404, "No entity set named 'Nope'"),
])
def test_invalid_options(entity, params, status, fragment):
    with pytest.raises(ODataError) as caught:
        parse_options(entity, params, None, 1000)
    assert caught.value.status == status, caught.value.message
    assert fragment in caught.value.message
    assert set(caught.value.to_body()["error"]) >= {"code", "message"}


def test_error_body():
    error = ODataError(400, "InvalidFilter", "bad", "$filter")
    assert error.to_body() == {"error": {"code": "InvalidFilter", "message": "bad", "target": "$filter"}}
    assert ODataError(501, "NotImplemented", "no").to_body() == {"error": {"code": "NotImplemented",
                                                                             "message": "no"}}


# ------------------------------------------------------------------------------------------------------------
# model and CSDL

EDMX = "{http://docs.oasis-open.org/odata/ns/edmx}"
EDM = "{http://docs.oasis-open.org/odata/ns/edm}"


def test_csdl_is_well_formed_and_matches_the_model():
    root = ET.fromstring(metadata_xml())
    assert root.tag == f"{EDMX}Edmx" and root.get("Version") == "4.0"
    schema = root.find(f"{EDMX}DataServices/{EDM}Schema")
    assert schema.get("Namespace") == "TeamsCallLogs"
    complex_types = {ct.get("Name"): ct for ct in schema.findall(f"{EDM}ComplexType")}
    assert [p.get("Name") for p in complex_types["AdministrativeUnitInfo"].findall(f"{EDM}Property")] == ["id"]
    types = {et.get("Name"): et for et in schema.findall(f"{EDM}EntityType")}
    container = schema.find(f"{EDM}EntityContainer")
    sets = {es.get("Name"): es.get("EntityType") for es in container.findall(f"{EDM}EntitySet")}
    assert sets == {name: s.entity_type.qualified_name for name, s in ENTITY_SETS.items()}
    for entity in ENTITY_SETS.values():
        element = types[entity.entity_type.name]
        props = element.findall(f"{EDM}Property")
        assert [p.get("Name") for p in props] == list(entity.entity_type.property_names)
        assert [r.get("Name") for r in element.findall(f"{EDM}Key/{EDM}PropertyRef")] == ["id"]
        for xml_prop, prop in zip(props, entity.entity_type.properties):
            assert xml_prop.get("Type") == prop.type_name
            if prop.edm_type == "Edm.Decimal":
                assert xml_prop.get("Scale") == "variable"
            if not prop.collection:
                assert xml_prop.get("Nullable") == ("false" if prop.key else "true")
    pstn_types = {p.get("Name"): p.get("Type") for p in types["PstnCall"].findall(f"{EDM}Property")}
    assert pstn_types["startDateTime"] == "Edm.DateTimeOffset" and pstn_types["duration"] == "Edm.Int32"
    assert pstn_types["charge"] == "Edm.Decimal" and pstn_types["day"] == "Edm.Date"
    assert pstn_types["administrativeUnitInfos"] == "Collection(TeamsCallLogs.AdministrativeUnitInfo)"
    dr_types = {p.get("Name"): p.get("Type") for p in types["DirectRoutingCall"].findall(f"{EDM}Property")}
    assert dr_types["successfulCall"] == "Edm.Boolean" and dr_types["finalSipCode"] == "Edm.Int32"
    day = [p for p in types["PstnCall"].findall(f"{EDM}Property") if p.get("Name") == "day"][0]
    assert day.find(f"{EDM}Annotation").get("Term") == "Org.OData.Core.V1.Computed"


def test_model_registry():
    assert {name: (s.feed, s.time_property) for name, s in ENTITY_SETS.items()} == {
        "PstnCalls": ("pstn", "startDateTime"), "DirectRoutingCalls": ("directRouting", "startDateTime"),
        "DailyUsage": ("dailyUsage", "day")}
    pstn_type = ENTITY_SETS["PstnCalls"].entity_type
    assert pstn_type.get("startDateTime").path == "startUtc" and pstn_type.get("endDateTime").path == "endDateTime"
    assert pstn_type.get("administrativeUnitInfos").collection
    assert len(pstn_type.properties) == 30 and len(ENTITY_SETS["DirectRoutingCalls"].entity_type.properties) == 26


def test_service_document_and_context_url():
    doc = service_document("https://fn.example/api/odata/")
    assert doc["@odata.context"] == "https://fn.example/api/odata/$metadata"
    assert doc["value"] == [{"name": n, "kind": "EntitySet", "url": n}
                            for n in ("PstnCalls", "DirectRoutingCalls", "DailyUsage")]
    assert context_url("https://x/api/odata", "PstnCalls") == "https://x/api/odata/$metadata#PstnCalls"
    assert context_url("https://x/api/odata/", "PstnCalls", ("id", "duration")) == \
        "https://x/api/odata/$metadata#PstnCalls(id,duration)"


# ------------------------------------------------------------------------------------------------------------
# independent OData clients read the CSDL, and their $filter strings parse (a minimal in-test feed)

CLIENT_DOCS = [{"id": f"id{i:02d}", "userId": f"u{i % 3}", "userPrincipalName": f"user{i % 3}@x.com",
                "startDateTime": f"2026-05-0{1 + i % 5}T10:00:0{i % 10}.1234567Z",
                "startUtc": f"2026-05-0{1 + i % 5}T10:00:0{i % 10}.1234567Z", "duration": i * 10, "charge": i / 4,
                "day": f"2026-05-0{1 + i % 5}", "administrativeUnitInfos": [{"id": "au1"}], "rowHash": "h"}
               for i in range(23)]


class _Feed(BaseHTTPRequestHandler):
    """GET $metadata, entity sets (paged by nextLink with $skiptoken = offset) and /$count over CLIENT_DOCS,
    using parse_options + evaluate. Only for reading the clients' requests: the real service is the lead's."""
    requests: list = []

    def log_message(self, *args):
        pass

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("OData-Version", "4.0")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        self.requests.append((url.path, params))
        parts = url.path.split("/")[2:]  # /odata/...
        if parts == ["$metadata"]:
            return self._send(200, metadata_xml(), "application/xml")
        try:
            options = parse_options(parts[0], params, self.headers.get("Prefer"), 10)
        except ODataError as error:
            return self._send(error.status, json.dumps(error.to_body()).encode(), "application/json")
        rows = [d for d in CLIENT_DOCS if evaluate(options.filter, d)]
        if parts[1:] == ["$count"]:
            return self._send(200, str(len(rows)).encode(), "text/plain")
        start = int(options.skiptoken or 0)
        page = rows[start:start + (options.top or options.page_size)]
        names = ENTITY_SETS[parts[0]].entity_type.property_names
        body = {"@odata.context": context_url(f"http://{self.headers['Host']}/odata", parts[0]),
                "value": [{k: d.get(k) for k in names} for d in page]}
        if options.top is None and start + len(page) < len(rows):
            query = {k: v for k, v in params.items() if k != "$skiptoken"}
            query["$skiptoken"] = str(start + len(page))
            from urllib.parse import urlencode
            body["@odata.nextLink"] = f"http://{self.headers['Host']}{url.path}?{urlencode(query)}"
        return self._send(200, json.dumps(body).encode(), "application/json;odata.metadata=minimal")


@pytest.fixture(scope="module")
def feed_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Feed)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/odata"
    finally:
        server.shutdown()
        server.server_close()


def test_python_odata_reads_the_csdl_and_filters(feed_url):
    import odata  # noqa: F401  (a dev requirement: fail, never skip, when missing)
    import datetime as dt
    from odata import ODataService
    from odata.property import BooleanProperty, DatetimeProperty, DecimalProperty, IntegerProperty

    service = ODataService(feed_url + "/", reflect_entities=True, quiet_progress=True)
    assert set(service.entities) == {"PstnCalls", "DirectRoutingCalls", "DailyUsage"}
    calls = service.entities["PstnCalls"]
    assert isinstance(calls.startDateTime, DatetimeProperty) and isinstance(calls.duration, IntegerProperty)
    assert isinstance(calls.charge, DecimalProperty)
    assert isinstance(service.entities["DirectRoutingCalls"].successfulCall, BooleanProperty)
    assert calls.id.primary_key and calls.administrativeUnitInfos.is_collection

    _Feed.requests.clear()
    query = (service.query(calls).filter(calls.userId == "u1")
             .filter(calls.startDateTime >= dt.datetime(2026, 5, 2, tzinfo=dt.timezone.utc))
             .filter(calls.startDateTime < dt.datetime(2026, 5, 5)))  # naive: sent without a zone
    rows = query.all()
    expected = [d for d in CLIENT_DOCS if d["userId"] == "u1" and "2026-05-02" <= d["day"] < "2026-05-05"]
    assert [r.id for r in rows] == [d["id"] for d in expected] and rows
    assert rows[0].startDateTime.tzinfo is not None and rows[0].day == expected[0]["day"]
    sent = _Feed.requests[0][1]["$filter"]
    assert sent.startswith("(userId eq 'u1') and (startDateTime ge 2026-05-02T00:00:00+00:00)")

    everything = service.query(calls).all()  # 23 rows in pages of 10: follows @odata.nextLink
    assert [r.id for r in everything] == [d["id"] for d in CLIENT_DOCS]
    assert service.query(calls).filter(calls.userPrincipalName.startswith("user2")).count() == \
        sum(1 for d in CLIENT_DOCS if d["userPrincipalName"].startswith("user2"))
    ordered = service.query(calls).filter(calls.duration.__ge__(100) | calls.userId.__eq__(None)) \
        .order_by(calls.startDateTime.desc()).all()
    assert len(ordered) == sum(1 for d in CLIENT_DOCS if d["duration"] >= 100)


def test_odatapy_reads_the_csdl_and_filters(feed_url):
    from odatapy import client as client_module
    import datetime as dt

    client = client_module.EdmEnabledODataClient(feed_url, client_module.HttpxTransport())
    client.get_edm()
    Field, and_ = client_module.Field, client_module.and_
    expression = and_(Field("userId").eq("u2"), Field("startDateTime").ge(dt.datetime(2026, 5, 2)),
                      Field("charge").gt(0.5))
    uri = client.entity_set_uri("PstnCalls").filter(expression)
    rows = list(client.iter_entities(uri))
    expected = [d for d in CLIENT_DOCS if d["userId"] == "u2" and d["day"] >= "2026-05-02" and d["charge"] > 0.5]
    assert [r.get_value("id") for r in rows] == [d["id"] for d in expected] and rows
    first = rows[0]
    assert first.get_value("startDateTime").tzinfo is not None
    assert str(first.get_value("day")) == expected[0]["day"]
    everything = list(client.iter_entities(client.entity_set_uri("PstnCalls")))
    assert len(everything) == len(CLIENT_DOCS)
