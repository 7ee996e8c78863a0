"""Fuzzing the HTTP surface (issue 8, item 2): hypothesis over every route and query option, schemathesis over the
OpenAPI description of the non-OData routes (openapi.yaml), and a differential oracle for $filter.

Every response is 2xx or 4xx (501 for valid-but-unsupported OData features), every error a JSON body
{"error": {"code", "message"}}, no body ever carries a stack trace, and a read route never changes the store (the
Cosmos documents with their _etag and the archive's blobs are compared before and after). Bounded and
deterministic: each property has a fixed max_examples, derandomized, no example database.
"""
from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import re
import string
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
import requests
import yaml
from hypothesis import HealthCheck, Phase, assume, given, note, settings
from hypothesis import strategies as st

from devstack.graphsim.server import GraphSimulator
from devstack.localhost import FunctionIndex, Keys
from shared.api.http import starts_formula
from shared.collect.run import run_days
from shared.config.feeds import FEEDS
from shared.odata import ODataError, entity_sets, evaluate, parse_filter, to_sql
from shared.odata.filter_parser import UNSUPPORTED_FUNCTIONS
from shared.odata.model import BOOLEAN, DATE, DATETIMEOFFSET, DECIMAL, INT32, STRING

from .collecting import TOKEN, assert_unchanged, fresh_settings, served_app, snapshot, sort_key, stored_documents
from .paging_tokens import assert_no_credential_in_links, byte_changed, char_changed, forge, re_encodings, token_in

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "openapi.yaml"
DAYS = [dt.date(2026, 4, 7), dt.date(2026, 4, 8)]   # fixed, so the data and the examples drawn from it are too
ENTITY_SETS = entity_sets()
SETS = tuple(ENTITY_SETS)
FUNCTION_KEY, ADMIN_KEY = "fuzz-function-key", "fuzz-admin-key"
AUTH = {"x-functions-key": ADMIN_KEY}
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
FORBIDDEN_IN_BODIES = ("Traceback", 'File "')
# Every credential a request here carries in its query (`code`, `access_token`, `sig`, ...) starts with this, so a
# link that copied one is found whatever its parameter name.
CREDENTIAL_MARK = "fuzzcred"
SECRETS = (FUNCTION_KEY, ADMIN_KEY, CREDENTIAL_MARK)
PATH_SAFE = "/$()'=,"


# The local Cosmos emulator parses each query with @zeit/cosmosdb-query's PEG.js parser, generated without
# memoization: its time grows about eightfold per level of parentheses (0.15 s for `userId eq 'a'`, 2.3 s for
# three `and`-ed comparisons, minutes at depth 6) and it blocks the single-threaded server meanwhile. Real
# Cosmos DB has no such limit. Valid filters whose SQL nests deeper than this are therefore not sent here
# (generated, parsed and translated to SQL, then skipped); filters the app refuses are sent whatever their
# depth. Raise it once devstack/cosmos_server.js memoizes the parser.
EMULATOR_MAX_SQL_DEPTH = 3


def sql_depth(sql: str) -> int:
    depth = deepest = 0
    for ch in sql:
        depth += (ch == "(") - (ch == ")")
        deepest = max(deepest, depth)
    return deepest


def emulator_can_run(set_name: str, text: str | None) -> bool:
    """False for a valid filter whose SQL the emulator would take too long to parse (see above); a filter the
    app refuses never reaches the store, so it is always fine."""
    if text is None:
        return True
    try:
        node = parse_filter(text, set_name)
    except ODataError:
        return True
    return sql_depth(to_sql(node, set_name)[0]) <= EMULATOR_MAX_SQL_DEPTH


def bounded(examples: int):
    """Hypothesis settings of every property here: bounded, deterministic (CI sees the same examples each run),
    no deadline (a request's time depends on the machine), no example database written into the checkout, and
    no shrinking: each example costs HTTP requests, and shrinking a failure could take minutes of CI (the
    failing example is printed as generated)."""
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    phases=(Phase.explicit, Phase.generate), suppress_health_check=list(HealthCheck))


# --- the app on a small collected data set --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fuzz(stack):
    """Two days of both feeds collected into a fresh database (no COVERAGE_START, as deployed by
    default), and the app served on a free port with keys required (the admin key opens every route)."""
    with GraphSimulator(seed=8, token=TOKEN, rows_per_day={"pstn": 30, "directRouting": 12}) as sim:
        settings_ = fresh_settings(stack, sim.url)
        report = run_days(settings_, [FEEDS["pstn"], FEEDS["directRouting"]], DAYS[0], DAYS[-1])
        assert not report.failed
        docs = Documents(stored_documents(settings_))
        for set_name, stored in docs.items():
            assert stored, f"no {set_name} documents to fuzz with"
        keys = Keys(required=True, function_key=FUNCTION_KEY, admin_key=ADMIN_KEY)
        with served_app(settings_, sim, keys) as served, requests.Session() as session:
            session.headers.update(AUTH)
            # The first token signed creates the paging key document (once per deployment); done here, so the
            # tests' before/after snapshots of the store compare reads only.
            warm = session.get(f"{served['api']}/odata/PstnCalls", headers={"Prefer": "odata.maxpagesize=1"},
                               timeout=60)
            assert warm.status_code == 200 and "@odata.nextLink" in warm.json(), warm.text
            yield {**served, "http": session, "docs": docs}


class Documents(dict):
    """Entity set -> stored documents (the oracle's input); a short repr, as hypothesis prints the arguments of
    strategies."""

    def __repr__(self) -> str:
        return f"<stored documents: {', '.join(f'{k} {len(v)}' for k, v in self.items())}>"


def check_answer(response: requests.Response, allow_501: bool = False) -> None:
    """The contract of every route: 2xx or 4xx (501 where OData allows it), a JSON error body that names the
    problem, never a stack trace, and no link (Link and Location headers, nextLinks, @odata.context, HTML links)
    that carries a credential."""
    status = response.status_code
    assert 200 <= status < 300 or 400 <= status < 500 or (allow_501 and status == 501), \
        f"{response.request.method} {response.request.url} answered {status}: {response.text[:300]}"
    text = response.content.decode("utf-8", "replace")
    for forbidden in FORBIDDEN_IN_BODIES:
        assert forbidden not in text, f"{response.request.url} answered a stack trace: {text[:300]}"
    if status >= 400:
        assert header(response, "Content-Type").startswith("application/json"), response.headers
        error = response.json()["error"]
        assert isinstance(error["code"], str) and error["code"], response.text
        assert isinstance(error["message"], str) and error["message"], response.text
        assert set(error) <= {"code", "message", "target"}, response.text
    assert_no_credential_in_links(response, SECRETS)
    assert_spreadsheet_safe(response)


NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")


def assert_spreadsheet_safe(response) -> None:
    """A CSV answer that was not asked for raw values (csv=raw) has no cell a spreadsheet would run as a
    formula: every such cell carries the leading quote that makes it text."""
    if not header(response, "Content-Type").startswith("text/csv"):
        return
    query = dict(parse_qsl(urlsplit(response.request.url).query))
    if query.get("csv") == "raw":
        return
    for row in csv.reader(io.StringIO(response.content.decode("utf-8"))):
        for cell in row:
            # A number (a negative charge) is written as a number on purpose: a spreadsheet reads it as one.
            assert cell.startswith("'") or NUMBER.fullmatch(cell) or not starts_formula(cell), \
                f"{response.request.url}: cell {cell[:60]!r}"


def header(response, name: str) -> str:
    """A response header from requests (case-insensitive dict) or schemathesis (lower-case name -> list)."""
    for key, value in response.headers.items():
        if key.lower() == name.lower():
            return value[0] if isinstance(value, list) else value
    return ""


def clean(text: str) -> bool:
    """Generated text never spells what check_answer looks for (error messages quote the input back)."""
    return not any(f in text for f in FORBIDDEN_IN_BODIES)


# --- the $filter grammar ------------------------------------------------------------------------------------------
def quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def props(set_name: str, *edm: str):
    return [p for p in ENTITY_SETS[set_name].entity_type.properties if p.edm_type in edm and not p.collection]


def stored_values(docs: list[dict], prop) -> list:
    values = sorted({json.dumps(d.get(prop.path)) for d in docs})
    return [json.loads(v) for v in values if json.loads(v) is not None]


OPS = ("eq", "ne", "gt", "ge", "lt", "le")
OFFSETS = [f"{sign}{h:02d}:{m:02d}" for sign in "+-" for h in (0, 1, 5, 9, 12, 14) for m in (0, 30)]


def instant_text(draw, base: dt.datetime) -> str:
    """A DateTimeOffset literal near `base`, in any of the spellings the grammar accepts."""
    moment = base + dt.timedelta(seconds=draw(st.integers(-3 * 86400, 3 * 86400)))
    digits = draw(st.sampled_from(["", ".5", ".1234567", ".000", ".9999999", ".25"]))
    zone = draw(st.sampled_from(["Z", "", "+00:00", *OFFSETS]))
    if zone not in ("Z", ""):
        sign = 1 if zone[0] == "+" else -1
        moment = moment + sign * dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + digits + zone


def number_text(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


@st.composite
def literal_for(draw, prop, docs):
    """A literal of the property's type: a stored value (so filters hit rows) or one near the stored values."""
    values = stored_values(docs, prop)
    edm = prop.edm_type
    if edm == STRING:
        choices = [st.text(max_size=8).filter(clean)]
        if values:
            choices += [st.sampled_from(values), st.sampled_from(values).map(lambda v: v[: len(v) // 2])]
        return quoted(draw(st.one_of(*choices)))
    if edm in (INT32, DECIMAL):
        choices = [st.integers(-10**6, 10**6).map(str),
                   st.floats(-1e6, 1e6, allow_nan=False).filter(lambda f: f == 0 or abs(f) > 1e-20)
                   .map(number_text),
                   st.sampled_from(["0", "-0", "1e2", "5L", "0.5m", "2.5d", "3f"])]
        if values:
            choices.append(st.sampled_from(values).map(number_text))
        return draw(st.one_of(*choices))
    if edm == BOOLEAN:
        return draw(st.sampled_from(["true", "false"]))
    if edm == DATE:
        day = draw(st.sampled_from(DAYS)) + dt.timedelta(days=draw(st.integers(-3, 3)))
        if draw(st.integers(0, 3)) == 0:  # the first and last days there are
            day = draw(st.sampled_from([dt.date.min, dt.date.max]))
        return draw(st.sampled_from([day.isoformat(), quoted(day.isoformat())]))
    assert edm == DATETIMEOFFSET
    if values and draw(st.booleans()):
        return draw(st.sampled_from(values))  # exactly a stored spelling
    if draw(st.integers(0, 3)) == 0:  # the first and last instants there are, and dates (midnight UTC)
        return draw(st.sampled_from(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.9999999Z", "0001-01-01",
                                     "9999-12-31", DAYS[0].isoformat(), "0001-01-01T00:00:00.0000001Z"]))
    base = dt.datetime.combine(draw(st.sampled_from(DAYS)), dt.time(12))
    return instant_text(draw, base)


@st.composite
def time_bound(draw, set_name):
    """A bound on the time property (what decides which day partitions are read) at a day boundary: in the
    data, just after it, or at the first or last day there is."""
    entity = ENTITY_SETS[set_name]
    day = draw(st.sampled_from([dt.date.min, dt.date.max, DAYS[0], DAYS[-1] + dt.timedelta(days=1)]))
    if entity.time_property == "day":
        literal = day.isoformat()
    else:
        literal = draw(st.sampled_from([day.isoformat(), f"{day.isoformat()}T00:00:00Z"]))
    return f"{entity.time_property} {draw(st.sampled_from(OPS))} {literal}"


@st.composite
def leaf(draw, set_name, docs):
    """One valid boolean leaf of the grammar for this entity set."""
    kind = draw(st.sampled_from(["compare", "compare", "flipped", "null", "in", "function", "case", "boolean",
                                 "constant", "range"]))
    comparable = props(set_name, STRING, INT32, DECIMAL, BOOLEAN, DATETIMEOFFSET, DATE)
    strings = props(set_name, STRING)
    if kind == "boolean":
        booleans = props(set_name, BOOLEAN)
        if booleans:
            prop = draw(st.sampled_from(booleans)).name
            return draw(st.sampled_from([prop, f"{prop} eq true", f"{prop} ne false", f"not {prop}",
                                         f"true eq {prop}"]))
        kind = "constant"
    if kind == "constant":
        return draw(st.sampled_from(["true", "false", "1 eq 1", "1 lt 0.5", "'a' lt 'b'", "null eq null",
                                     "2026-01-01 lt 2026-01-01T00:00:01Z", "not false"]))
    if kind == "range":
        return draw(time_bound(set_name))
    if kind == "null":
        prop = draw(st.sampled_from(comparable)).name
        return f"{prop} {draw(st.sampled_from(OPS))} null"
    if kind in ("function", "case"):
        prop = draw(st.sampled_from(strings))
        operand = draw(st.sampled_from([prop.name, f"tolower({prop.name})", f"toupper({prop.name})",
                                        f"tolower(toupper({prop.name}))"]))
        values = stored_values(docs[set_name], prop)
        text = draw(st.one_of(st.text(max_size=4).filter(clean),
                              *([st.sampled_from(values).flatmap(lambda v: st.integers(0, len(v)).flatmap(
                                  lambda i: st.integers(i, len(v)).map(lambda j: v[i:j])))] if values else [])))
        if "tolower" in operand:
            text = text.lower()
        elif "toupper" in operand:
            text = text.upper()
        if kind == "case":
            return f"{operand} {draw(st.sampled_from(OPS))} {quoted(text)}"
        fn = draw(st.sampled_from(["startswith", "endswith", "contains"]))
        suffix = draw(st.sampled_from(["", "", " eq true", " eq false", " ne true"]))
        return f"{fn}({operand},{quoted(text)}){suffix}"
    prop = draw(st.sampled_from(comparable))
    if draw(st.booleans()):  # the time property, whose range decides which day partitions are read
        prop = ENTITY_SETS[set_name].entity_type.property(ENTITY_SETS[set_name].time_property)
    if kind == "in":
        items = draw(st.lists(literal_for(prop, docs[set_name]), min_size=1, max_size=4))
        if draw(st.integers(0, 4)) == 0:
            items.append("null")
        return f"{prop.name} in ({','.join(items)})"
    op = draw(st.sampled_from(OPS if prop.edm_type != BOOLEAN else ("eq", "ne")))
    literal = draw(literal_for(prop, docs[set_name]))
    if kind == "flipped":
        return f"{literal} {op} {prop.name}"
    return f"{prop.name} {op} {literal}"


def valid_filter(set_name: str, docs, max_leaves: int = 5) -> st.SearchStrategy[str]:
    """Filters from the grammar's valid branch: leaves combined with and / or / not / parentheses / eq true."""
    def combine(children):
        return st.one_of(
            st.tuples(children, st.sampled_from(["and", "or"]), children).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
            children.map(lambda c: f"({c})"),
            children.map(lambda c: f"not ({c})"),
            children.map(lambda c: f"({c}) eq false"),
        )
    return st.one_of(st.recursive(leaf(set_name, docs), combine, max_leaves=max_leaves), time_bound(set_name),
                     st.tuples(time_bound(set_name), leaf(set_name, docs)).map(" and ".join))


SQLISH = ["1 eq 1; DROP TABLE c", "id eq '' OR 1=1 --'", "' OR '1'='1", "c.id = c.id", "SELECT * FROM c",
          "id eq 'x') OR (1 eq 1", "IS_DEFINED(c.id)", "udf.evil()", "@p0 eq 1", "$it/id eq 'x'",
          "id eq 'x' -- comment", "id eq 'x'/*", "id eq \"x\"", "id eq `x`", "id eq 'x'; SELECT VALUE 1",
          "ARRAY_CONTAINS(c.x, 1)", "1 = 1", "id == 'x'", "id eq 'a\\'b'", "id eq N'x'"]
JUNK_TOKENS = ["(", ")", "'", "''", ",", "/", ":", "$", "@", "eq", "and", "or", "not", "in", "AND", "Eq", "null",
               "true", "INF", "NaN", "-INF", "1e999999", "9" * 40, "-" + "9" * 25, "1.7976931348623157e309",
               "0." + "0" * 40 + "1", "2026-02-30", "2026-13-01T00:00:00Z", "2026-01-01T25:00:00Z",
               "2026-01-01T00:00:00+24:00", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
               "0001-01-01", "9999-12-31", "duration'PT1H'", "binary'AA=='", "X'00'",
               "0f8fad5b-d9cb-469f-a165-70867728950e", "geography'POINT(0 0)'", "has", "add", "mod",
               "administrativeUnitInfos/any(a:a/id eq 'x')", "id/x", "Edm.String", "cast(id,Edm.Int32)",
               "\u00e9", "\u202e", "\x00", "\t", "%", "%27", "+", "\\", ";", "*", "[", "]", "{", "}", "=", "==",
               "!=", "<", ">", "<=", "#", "?", "&", "$filter=", "length(id) gt 1", "year(startDateTime) eq 2026",
               "now()", "substringof('a',id)", "tolower()", "startswith(id)", "contains('a','b')",
               "startswith(1,'a')", "tolower(duration) eq 'x'"]


@st.composite
def broken_filter(draw, set_name, docs):
    """Filters from the grammar's broken branch (most are refused with 400 or 501; a few happen to be valid)."""
    entity = ENTITY_SETS[set_name].entity_type
    names = [p.name for p in entity.properties]
    unknown = st.one_of(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True),
                        st.sampled_from(names).map(str.upper), st.sampled_from(names).map(lambda n: n + "x"))
    kind = draw(st.sampled_from(["mutate", "mutate", "junk", "sql", "unbalanced", "huge", "deep", "wrong_kind",
                                 "unknown", "function", "long", "tokens"]))
    base = draw(valid_filter(set_name, docs))
    if kind == "mutate":
        i = draw(st.integers(0, len(base)))
        j = draw(st.integers(i, min(len(base), i + 6)))
        insert = draw(st.one_of(st.sampled_from(JUNK_TOKENS), st.text(max_size=3).filter(clean), st.just("")))
        return base[:i] + insert + base[j:]
    if kind == "junk":
        return draw(st.text(max_size=40).filter(clean))
    if kind == "sql":
        return draw(st.sampled_from(SQLISH))
    if kind == "unbalanced":
        n = draw(st.integers(1, 5))
        return draw(st.sampled_from(["(" * n + base, base + ")" * n, "'" + base, base + "'", f"id eq 'x{'(' * n}",
                                     f"({base}", f"{base})", f"id eq ')'"]))
    if kind == "huge":
        prop = draw(st.sampled_from(props(set_name, INT32, DECIMAL)))
        number = draw(st.sampled_from(["9" * 19, "9" * 20, "9" * 200, "-9223372036854775808", "9223372036854775808",
                                       "1e28", "8e28", "1e-28", "1e-29", "1e309", "-1e309", "1" + "0" * 64 + ".5",
                                       "79228162514264337593543950335", "79228162514264337593543950336",
                                       "0.1e999999999", "1e-999999999", "123456789012345678901234567890m"]))
        return f"{prop.name} {draw(st.sampled_from(OPS))} {number}"
    if kind == "deep":
        depth = draw(st.integers(40, 120))
        return draw(st.sampled_from(["(" * depth + base + ")" * depth, "not " * depth + "true",
                                     " and ".join(["true"] * depth), " or ".join([f"({base})"] * (depth // 10)),
                                     "tolower(" * depth + "id" + ")" * depth + " eq 'x'",
                                     "not (" * depth + "true" + ")" * depth]))
    if kind == "wrong_kind":
        prop = draw(st.sampled_from([p for p in entity.properties]))
        other = draw(st.sampled_from(SETS))
        other_prop = draw(st.sampled_from(props(other, STRING, INT32, DECIMAL, BOOLEAN, DATETIMEOFFSET, DATE)))
        literal = draw(literal_for(other_prop, docs[other]))
        return f"{prop.name} {draw(st.sampled_from(OPS + ('in',)))} {literal}"
    if kind == "unknown":
        return f"{draw(unknown)} {draw(st.sampled_from(OPS))} {draw(st.sampled_from(['1', quoted('x'), 'null']))}"
    if kind == "function":
        fn = draw(st.one_of(st.sampled_from(sorted(UNSUPPORTED_FUNCTIONS)), unknown,
                            st.sampled_from(["StartsWith", "CONTAINS", "tolower", "endswith", "substringof"])))
        args = draw(st.lists(st.sampled_from(names + ["'x'", "1", "null", "true", base]), max_size=3))
        return f"{fn}({','.join(args)}) eq true"
    if kind == "long":
        return base + " and true" * draw(st.integers(200, 260))
    tokens = draw(st.lists(st.one_of(st.sampled_from(JUNK_TOKENS), st.sampled_from(names), unknown), max_size=8))
    return " ".join(tokens)


def any_filter(set_name, docs):
    return st.one_of(valid_filter(set_name, docs), broken_filter(set_name, docs))


# --- the other options, headers and paths ----------------------------------------------------------------------------
def select_option(set_name):
    names = [p.name for p in ENTITY_SETS[set_name].entity_type.properties]
    item = st.one_of(st.sampled_from(names), st.sampled_from(names).map(str.lower), st.just("*"),
                     st.sampled_from(["id/x", "a.b", "f()", "", " ", "$it"]), st.text(max_size=6).filter(clean))
    return st.lists(item, min_size=1, max_size=4).map(",".join)


def orderby_option(set_name):
    entity = ENTITY_SETS[set_name]
    names = [p.name for p in entity.entity_type.properties]
    key = st.one_of(st.sampled_from(entity.orderable + entity.tiebreak), st.sampled_from(names),
                    st.sampled_from(["length(id)", "id/x", "", "startDateTime sideways"]))
    item = st.tuples(key, st.sampled_from(["", " asc", " desc", " DESC", "  desc"])).map("".join)
    return st.lists(item, min_size=1, max_size=4).map(",".join)


INT_TEXT = st.one_of(st.integers(0, 3000).map(str), st.sampled_from(
    ["-1", "0", "2147483647", "2147483648", "9" * 30, "1.5", "1e3", "", " 5", "+5", "0x10", "\u0663", "\u00b2",
     "５", "NaN"]), st.text(max_size=4).filter(clean))


def skiptoken_option():
    payloads = st.fixed_dictionaries({}, optional={
        "v": st.one_of(st.just(1), st.integers(), st.text(max_size=3)),
        "d": st.one_of(st.sampled_from([d.isoformat() for d in DAYS] + ["0001-01-01", "9999-12-31", "x"]),
                       st.integers()),
        "k": st.one_of(st.text(max_size=10), st.integers(), st.none()),
        "i": st.one_of(st.text(max_size=10), st.lists(st.integers(), max_size=2)),
        "f": st.text(max_size=16),
        "r": st.one_of(st.integers(-5, 2**40), st.booleans(), st.text(max_size=3), st.none())})
    as_token = payloads.map(lambda p: base64.urlsafe_b64encode(json.dumps(p).encode()).decode().rstrip("="))
    return st.one_of(as_token, st.text(max_size=20).filter(clean), st.sampled_from(["", "=", "e30", "W10", "bnVsbA"]))


FORMAT_OPTION = st.one_of(st.sampled_from(["json", "JSON", "application/json", "application/json;odata.metadata=full",
                                           "xml", "atom", "text/csv", "csv", "application/xml", "*/*", "", "jsonx",
                                           "application/json;q=0", "text/html; charset=utf-8"]),
                          st.text(max_size=10).filter(clean))
UNKNOWN_OPTIONS = st.dictionaries(
    st.one_of(st.sampled_from(["$expand", "$search", "$apply", "$compute", "$deltatoken", "$levels", "$index",
                               "$schemaversion", "$foo", "$", "$$filter", "$filter ", "$FILTER", "$Top", "$id",
                               "@p1", "$value", "$batch"]),
              st.from_regex(r"\$[A-Za-z]{1,10}", fullmatch=True)),
    st.text(max_size=8).filter(clean), max_size=2)
PLAIN_PARAMS = st.dictionaries(st.sampled_from(["foo", "code", "odata.maxpagesize", "from", "x y"]),
                               st.text(max_size=8).filter(clean), max_size=1)
# Credentials a request may carry in its query besides the key: a link that copies any of them is a leak.
CREDENTIAL = st.text(max_size=8).filter(clean).map(lambda t: CREDENTIAL_MARK + t)
CREDENTIAL_PARAMS = st.dictionaries(st.sampled_from(["access_token", "sig", "key", "Code", "token", "password"]),
                                    CREDENTIAL, max_size=2)
HEADER_TEXT = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30).filter(clean)
PREFER = st.one_of(
    st.integers(-2, 2000).map(lambda n: f"odata.maxpagesize={n}"),
    st.sampled_from(["odata.maxpagesize=0", "odata.maxpagesize=99999999999", 'odata.maxpagesize="3"', "maxpagesize=2",
                     "ODATA.MAXPAGESIZE=2", "odata.maxpagesize=2; foo=bar", "return=minimal, odata.maxpagesize=2",
                     "odata.maxpagesize", "odata.maxpagesize=", "odata.track-changes", "respond-async, wait=10",
                     "odata.include-annotations=*"]),
    HEADER_TEXT)


@st.composite
def odata_request(draw, docs):
    """(path under /api/odata/, query parameters, headers) over every option and header the feed reads."""
    set_name = draw(st.sampled_from(SETS))
    path = set_name + draw(st.sampled_from(["", "", "", "/$count", "/"]))
    params: dict[str, str] = {}
    options = {
        "$filter": any_filter(set_name, docs), "$select": select_option(set_name),
        "$orderby": orderby_option(set_name), "$top": INT_TEXT, "$skip": INT_TEXT,
        "$count": st.one_of(st.sampled_from(["true", "false", "True", "1", ""]), st.text(max_size=4).filter(clean)),
        "$skiptoken": skiptoken_option(), "$format": FORMAT_OPTION}
    names = draw(st.lists(st.sampled_from(sorted(options)), unique=True, max_size=5))
    if "$filter" not in names and draw(st.integers(0, 3)) > 0:
        names.append("$filter")  # the richest option: in most requests
    for name in names:
        shown = draw(st.sampled_from([name, name, name, name.upper(), name.capitalize()]))
        params[shown] = draw(options[name])
    params.update(draw(UNKNOWN_OPTIONS) if draw(st.integers(0, 5)) == 0 else {})
    params.update(draw(PLAIN_PARAMS) if draw(st.integers(0, 5)) == 0 else {})
    params.update(draw(CREDENTIAL_PARAMS) if draw(st.integers(0, 3)) == 0 else {})
    params["code"] = draw(CREDENTIAL)  # as Power BI sends the key (ApiKeyName="code"): on every request
    headers = {}
    if draw(st.booleans()):
        headers["Prefer"] = draw(PREFER)
    if draw(st.integers(0, 3)) == 0:
        headers["Accept-Encoding"] = draw(st.sampled_from(["gzip", "gzip;q=0", "*", "br", "identity"]))
    if draw(st.integers(0, 5)) == 0:
        headers["Accept"] = draw(st.sampled_from(["application/xml", "text/csv", "*/*", "application/json"]))
    return path, params, headers


def get_odata(fuzz, path: str, params=None, headers=None) -> requests.Response:
    url = f"{fuzz['api']}/odata/{quote(path, safe=PATH_SAFE)}"
    return fuzz["http"].get(url, params=params, headers=headers, timeout=60)


# --- OData: every option, header and path -----------------------------------------------------------------------------
def test_odata_feed_answers_every_query_with_2xx_4xx_or_501_and_never_writes(fuzz):
    before = snapshot(fuzz["settings"])
    seen: dict[int, int] = {}

    @bounded(200)
    @given(request=odata_request(fuzz["docs"]))
    def run(request):
        path, params, headers = request
        note(f"GET /api/odata/{path} params={params!r} headers={headers!r}")
        texts = [v for k, v in params.items() if k.lower() == "$filter"]
        assume(emulator_can_run(path.split("/")[0], texts[0] if texts else None))
        response = get_odata(fuzz, path, params, headers)
        check_answer(response, allow_501=True)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        if response.status_code == 200 and not path.endswith("$count"):
            body = response.json()
            assert isinstance(body["value"], list)

    run()
    assert_unchanged(before, snapshot(fuzz["settings"]))
    # the generator reaches the interesting answers, not only one kind of refusal
    assert seen.get(200, 0) >= 25 and seen.get(400, 0) >= 25 and seen.get(501, 0) >= 1, seen


PATH_SEGMENT = st.one_of(
    st.sampled_from(["", "$metadata", "$count", "$batch", "$value", "$ref", "$entity", "$all", "$crossjoin(a,b)",
                     "PstnCalls", "pstncalls", "PstnCalls(1)", "PstnCalls('x')", "PstnCalls(id='x')", "DailyUsage",
                     "DirectRoutingCalls", "..", ".", "%2e%2e", "%00", "%ZZ", "'", "(", ")", "()", "$metadata#x",
                     "TeamsCallLogs.PstnCall", "Container", "PstnCalls/$count/$count", "odata", "api", "admin"]),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/?#"), max_size=12).filter(clean))


def test_odata_garbage_paths_answer_json_errors(fuzz):
    before = snapshot(fuzz["settings"])

    @bounded(50)
    @given(segments=st.lists(PATH_SEGMENT, min_size=1, max_size=4), count=st.booleans())
    def run(segments, count):
        url = f"{fuzz['api']}/odata/" + "/".join(quote(s, safe="$()'=,%") for s in segments)
        response = fuzz["http"].get(url, params={"$count": "true"} if count else None, timeout=60)
        check_answer(response, allow_501=True)

    run()
    assert_unchanged(before, snapshot(fuzz["settings"]))


# --- OData: the differential oracle ----------------------------------------------------------------------------------
def fetch_all(fuzz, set_name: str, params: dict, page_size: int) -> tuple[list[dict], dict]:
    """Every row of the query, following @odata.nextLink, and the first page's body."""
    headers = {"Prefer": f"odata.maxpagesize={page_size}"}
    response = get_odata(fuzz, set_name, params, headers)
    assert response.status_code == 200, f"{params} -> {response.status_code} {response.text[:300]}"
    first = response.json()
    rows, body = list(first["value"]), first
    for _ in range(500):
        if "@odata.nextLink" not in body:
            break
        response = fuzz["http"].get(body["@odata.nextLink"], headers=headers, timeout=60)
        assert response.status_code == 200, response.text[:300]
        body = response.json()
        rows += body["value"]
    else:
        pytest.fail("more than 500 pages: the nextLinks do not end")
    return rows, first


@st.composite
def oracle_case(draw, docs):
    set_name = draw(st.sampled_from(SETS))
    entity = ENTITY_SETS[set_name]
    text = draw(valid_filter(set_name, docs, max_leaves=3).filter(lambda t: emulator_can_run(set_name, t)))
    first_key, tiebreak = entity.orderable[0], entity.tiebreak[0]
    orderby = draw(st.sampled_from([None, first_key, f"{first_key} asc", f"{first_key} desc",
                                    f"{first_key} desc,{tiebreak} desc", f"{first_key} asc,{tiebreak} asc",
                                    f"{first_key} asc,{tiebreak} desc", f"{first_key} desc,{tiebreak} asc"]))
    top = draw(st.one_of(st.none(), st.integers(0, 30)))
    skip = draw(st.one_of(st.none(), st.integers(0, 30)))
    page_size = draw(st.sampled_from([1000, 6, 6]))
    count = draw(st.booleans())
    return set_name, text, orderby, top, skip, page_size, count


def test_valid_filters_return_exactly_the_rows_evaluate_selects(fuzz):
    """The differential oracle: the feed (filter -> Cosmos SQL, keyset paging, $top/$skip/$orderby) returns the
    same rows in the same order as shared.odata.evaluate applied to every stored document in Python."""
    hits = []

    @bounded(40)
    @given(case=oracle_case(fuzz["docs"]))
    def run(case):
        set_name, text, orderby, top, skip, page_size, count = case
        note(f"oracle case: {case!r}")
        node = parse_filter(text, set_name)  # the valid branch must parse
        key = sort_key(set_name)
        directions = [item.split()[-1] if " " in item else "asc" for item in (orderby or "").split(",") if item]
        docs = [d for d in fuzz["docs"][set_name] if evaluate(node, d)]
        first_desc = bool(directions) and directions[0] == "desc"
        id_desc = directions[1] == "desc" if len(directions) > 1 else first_desc
        docs.sort(key=lambda d: key(d)[1], reverse=id_desc)
        docs.sort(key=lambda d: key(d)[0], reverse=first_desc)
        want = docs[skip or 0:][:top] if top is not None else docs[skip or 0:]
        params = {"$filter": text, **({"$count": "true"} if count else {})}
        params.update({"$orderby": orderby} if orderby else {})
        params.update({"$top": str(top)} if top is not None else {})
        params.update({"$skip": str(skip)} if skip is not None else {})
        headers = {"Prefer": f"odata.maxpagesize={page_size}"}
        response = get_odata(fuzz, set_name, params, headers)
        if response.status_code == 501:  # a valid but unsupported $orderby must say so, not answer wrongly
            assert orderby and directions[1:] and directions[1] != directions[0], response.text
            return
        rows, first = fetch_all(fuzz, set_name, params, page_size)
        assert [r["id"] for r in rows] == [d["id"] for d in want], f"$filter={text} $orderby={orderby}"
        if count:
            assert first["@odata.count"] == len(docs), f"$filter={text}"
            total = get_odata(fuzz, f"{set_name}/$count", {"$filter": text})
            assert total.status_code == 200 and int(total.text) == len(docs), f"$filter={text}: {total.text}"
        hits.append(len(docs))

    run()
    assert sum(1 for n in hits if n) >= 12 and sum(1 for n in hits if not n) >= 3, hits


# Queries that page (one row per page), each with the parameter its token travels in. Every pair differs, so a
# token of one is foreign to every other.
PAGED_QUERIES = [
    ("odata/PstnCalls", {}, "$skiptoken"),
    ("odata/PstnCalls", {"$orderby": "startDateTime desc", "$top": "5"}, "$skiptoken"),
    ("odata/PstnCalls", {"$orderby": "startDateTime desc", "$top": "6"}, "$skiptoken"),
    ("odata/DirectRoutingCalls", {"$filter": "duration ge 0"}, "$skiptoken"),
    ("odata/DailyUsage", {"$orderby": "day desc"}, "$skiptoken"),
    ("calls", {"from": DAYS[0].isoformat(), "limit": "1"}, "after"),
    ("calls", {"from": DAYS[0].isoformat(), "limit": "2"}, "after"),
    ("calls", {"from": DAYS[0].isoformat(), "limit": "1", "feed": "directRouting"}, "after"),
    ("usage", {"from": DAYS[0].isoformat(), "limit": "1"}, "after"),
]
ONE_ROW_PAGES = {"Prefer": "odata.maxpagesize=1"}
BASE64URL = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"


def paged_get(fuzz, path: str, params: dict) -> requests.Response:
    return fuzz["http"].get(f"{fuzz['api']}/{path}", params=params, headers=ONE_ROW_PAGES, timeout=60)


def issued_token(fuzz, path: str, params: dict, name: str) -> tuple[dict, str]:
    """The query the first nextLink asks (what a client sends next: /api/calls pins a `to` left to default) and
    its token."""
    response = paged_get(fuzz, path, params)
    assert response.status_code == 200, response.text
    body = response.json()
    link = body["@odata.nextLink"] if path.startswith("odata/") else body["nextLink"]
    query = dict(parse_qsl(urlsplit(link).query))
    return {k: v for k, v in query.items() if k != name}, token_in(link, name)


@st.composite
def token_variant(draw, token: str, foreign: list[str]):
    """A token the service did not issue for this query: a byte of it changed, a character changed, cut short,
    the same bytes spelled otherwise, a field forged (the signature kept), or another query's token."""
    kind = draw(st.sampled_from(["byte", "char", "cut", "re-encoded", "forged", "foreign"]))
    if kind == "byte":
        return kind, byte_changed(token, draw(st.integers(0, 10**4)), draw(st.integers(1, 255)))
    if kind == "char":
        i = draw(st.integers(0, len(token) - 1))
        return kind, char_changed(token, i, draw(st.sampled_from(BASE64URL.replace(token[i], ""))))
    if kind == "cut":
        return kind, token[:draw(st.integers(1, len(token) - 1))]
    if kind == "re-encoded":
        return kind, draw(st.sampled_from(re_encodings(token)))
    if kind == "forged":
        field = draw(st.sampled_from(["r", "d", "k", "i", "v", "f"]))
        value = draw(st.one_of(st.integers(0, 10**6), st.sampled_from(["2026-04-08", "0", "", "zz"]),
                               st.text(max_size=6).filter(clean)))
        return kind, forge(token, **{field: value})
    return kind, draw(st.sampled_from(foreign))


def test_tokens_not_issued_for_this_query_are_refused(fuzz):
    """A paging token is signed with a key no client knows and bound to its query: a token with any byte or
    character changed, truncated, re-encoded, with a field forged (the remaining-rows count once turned $top=3
    into 50 rows), or taken from another query answers 400 with the route's token error, never rows."""
    issued = [(path, *issued_token(fuzz, path, params, name)) for path, params, name in PAGED_QUERIES]
    issued = [(path, params, name, token) for (path, params, token), (*_, name) in zip(issued, PAGED_QUERIES)]
    kinds: dict[str, int] = {}

    @bounded(40)
    @given(which=st.integers(0, len(issued) - 1), data=st.data())
    def run(which, data):
        path, params, name, token = issued[which]
        foreign = [t for i, (*_, t) in enumerate(issued) if i != which]
        kind, variant = data.draw(token_variant(token, foreign))
        assume(variant != token)
        note(f"{path} {params!r}: {kind} token {variant!r}")
        response = paged_get(fuzz, path, {**params, name: variant})
        check_answer(response)
        assert response.status_code == 400, f"a {kind} token answered {response.status_code}: {response.text[:200]}"
        error = response.json()["error"]
        assert error["target"] == name and error["code"] == ("InvalidSkipToken" if name == "$skiptoken"
                                                             else "InvalidToken"), error
        kinds[kind] = kinds.get(kind, 0) + 1

    run()
    assert len(kinds) == 6, kinds
    for path, params, name, token in issued:  # the tokens as issued are served
        assert paged_get(fuzz, path, {**params, name: token}).status_code == 200, (path, params)


# Every integer parameter, with the other parameters of a request that is otherwise valid.
INTEGER_PARAMETERS = [("calls", "limit", {"from": DAYS[0].isoformat()}),
                      ("usage", "limit", {"from": DAYS[0].isoformat()}),
                      ("odata/PstnCalls", "$top", {}), ("odata/PstnCalls", "$skip", {}),
                      ("odata/DailyUsage", "$TOP", {"$filter": "calls ge 1"}), ("odata/DirectRoutingCalls", "$Skip", {}),
                      ("status", "days", {}), ("dashboard", "days", {})]
UNICODE_NUMBERS = st.characters(categories=("Nd", "Nl", "No"))
INTEGER_TEXT = st.one_of(
    st.text(UNICODE_NUMBERS, min_size=1, max_size=4),
    st.tuples(st.integers(0, 99).map(str), st.text(UNICODE_NUMBERS, min_size=1, max_size=2)).map("".join),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=6),
    INT_TEXT).filter(clean)


def test_integer_parameters_answer_2xx_or_400_naming_them(fuzz):
    """'²'.isdigit() is true and int('²') raises; int('٣') is 3. Any text in an integer parameter answers 2xx or
    400 naming that parameter, never a server error."""
    @bounded(40)
    @given(which=st.sampled_from(INTEGER_PARAMETERS), text=INTEGER_TEXT)
    def run(which, text):
        route, name, params = which
        response = fuzz["http"].get(f"{fuzz['api']}/{route}", params={**params, name: text}, timeout=60)
        check_answer(response)
        if response.status_code >= 300:
            assert response.status_code == 400 and response.json()["error"].get("target", "").lower() == \
                name.lower(), f"{route} {name}={text!r}: {response.status_code} {response.text[:200]}"
        elif not text.strip().isascii():
            pytest.fail(f"{route} {name}={text!r} was read as a number: {response.text[:200]}")

    run()


# --- the simple routes, with hypothesis ------------------------------------------------------------------------------
EDGE_INSTANTS = ["0001-01-01", "9999-12-31", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
                 "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01T00:30:00+14:00",
                 "2026-02-30", "2026-01-01T00:00:00", "2026-01-01T24:00:00Z", "2026-01-01T00:00:00+24:00",
                 "2026-01-01T00:00:00.12345678901Z", "2026-01-01T00:00:00.5.6Z", "2026-01-01 00:00:00Z",
                 "2026-W01-1", "20260101", "T", "Z", "-", "+", "2026-01-01T00:00:00+0100", "now", ""]


OVERFLOWING = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01T00:30:00+14:00",
               "9999-12-31T12:00:00Z", "9999-12-31T23:00:00Z", "9999-12-31", "0001-01-01"]


def instants():
    return st.one_of(
        st.sampled_from(OVERFLOWING),
        st.sampled_from(EDGE_INSTANTS),
        st.sampled_from(DAYS).map(dt.date.isoformat),
        st.dates().map(dt.date.isoformat),
        st.datetimes(timezones=st.sampled_from([dt.timezone.utc, dt.timezone(dt.timedelta(hours=-8)),
                                                dt.timezone(dt.timedelta(hours=13, minutes=45))]))
        .map(lambda d: d.isoformat()),
        st.text(max_size=12).filter(clean))


SIMPLE_PARAMS = {
    "from": instants(), "to": instants(), "day": instants(),
    "user": st.one_of(st.sampled_from(["", "%", "'", "a@contoso.com", "' OR 1=1 --"]),
                      st.text(max_size=10).filter(clean)),
    "callType": st.one_of(st.sampled_from(["user_out", "user_in,user_out", ",", ",,,", ",".join(["x"] * 60), ""]),
                          st.text(max_size=10).filter(clean)),
    "feed": st.one_of(st.sampled_from(["pstn", "directRouting", "PSTN", "sms", ""]), st.text(max_size=6).filter(clean)),
    "format": st.one_of(st.sampled_from(["json", "csv", "CSV", "xml", ""]), st.text(max_size=4).filter(clean)),
    "csv": st.one_of(st.sampled_from(["safe", "raw", "RAW", ""]), st.text(max_size=4).filter(clean)),
    "limit": st.one_of(st.integers(1, 40).map(str), INT_TEXT), "days": INT_TEXT, "after": skiptoken_option(),
    "code": CREDENTIAL, "force": st.text(max_size=3).filter(clean),
}


ROUTE_PARAMS = {"calls": ("from", "to", "user", "callType", "feed", "format", "csv", "limit", "after"),
                "usage": ("from", "to", "user", "feed", "format", "csv", "limit", "after"),
                "status": ("days", "format"), "dashboard": ("days", "format"), "health": (),
                "ops/collect": ("feed", "from", "to"), "ops/replay": ("feed", "day")}


@st.composite
def simple_params(draw, route: str | None = None):
    """Parameters of the route (most requests), now and then one it does not know (a 400 before anything else)."""
    own = ROUTE_PARAMS.get(route, tuple(SIMPLE_PARAMS))
    names = draw(st.lists(st.sampled_from(own), unique=True, max_size=len(own))) if own else []
    if not own or draw(st.integers(0, 5)) == 0:
        names.append(draw(st.sampled_from(sorted(SIMPLE_PARAMS))))
    return {name: draw(SIMPLE_PARAMS[name]) for name in dict.fromkeys(names)}


def test_read_routes_answer_every_parameter_value_and_never_write(fuzz):
    before = snapshot(fuzz["settings"])

    @bounded(100)
    @given(request=st.sampled_from(["calls", "usage", "status", "dashboard", "health"]).flatmap(
        lambda route: st.tuples(st.just(route), simple_params(route))), gzip=st.booleans(), code=CREDENTIAL)
    def run(request, gzip, code):
        route, params = request
        if route in ("calls", "usage") and "from" not in params and params:
            params = {**params, "from": DAYS[0].isoformat()}  # most requests get past the required parameter
        params = {**params, "code": code}  # the key in the query, as Power BI and scripts send it
        headers = {"Accept-Encoding": "gzip"} if gzip else {}
        response = fuzz["http"].get(f"{fuzz['api']}/{route}", params=params, headers=headers, timeout=60)
        check_answer(response)

    run()
    assert_unchanged(before, snapshot(fuzz["settings"]))


def test_operator_routes_answer_every_parameter_value(fuzz):
    @bounded(40)
    @given(request=st.sampled_from(["ops/collect", "ops/replay"]).flatmap(
        lambda route: st.tuples(st.just(route), simple_params(route))), code=CREDENTIAL)
    def run(request, code):
        route, params = request
        response = fuzz["http"].post(f"{fuzz['api']}/{route}", params={**params, "code": code}, timeout=60)
        check_answer(response)

    run()


def test_requests_without_a_key_are_refused_with_a_json_error(fuzz):
    """The routes above anonymous refuse a request without the key (401, JSON), whatever it asks."""
    @bounded(30)
    @given(route=st.sampled_from(["calls", "usage", "status", "dashboard", "odata/", "odata/PstnCalls",
                                  "odata/$metadata", "ops/collect", "ops/replay"]),
           key=st.one_of(st.none(), st.just(""), HEADER_TEXT.filter(lambda k: k not in (FUNCTION_KEY, ADMIN_KEY))),
           params=simple_params())
    def run(route, key, params):
        method = "POST" if route.startswith("ops/") else "GET"
        headers = {} if key is None else {"x-functions-key": key}
        params = {k: v for k, v in params.items() if k != "code"}
        response = requests.request(method, f"{fuzz['api']}/{route}", params=params, headers=headers, timeout=60)
        assert response.status_code == 401, response.text
        check_answer(response)

    run()


# --- the OpenAPI description ----------------------------------------------------------------------------------------
def test_openapi_lists_exactly_the_apps_non_odata_routes_with_their_auth_levels():
    from function_app import app

    schemathesis_schema()  # a valid OpenAPI 3.0 document whose every operation loads

    spec = yaml.safe_load(SPEC.read_text())
    assert spec["openapi"].startswith("3.")
    index = FunctionIndex.of(app)
    declared = {}
    for route in index.routes:
        trigger = next(b for b in index.bindings[route.name]["bindings"] if b["type"] == "httpTrigger")
        template = trigger.get("route") or route.name
        if template.split("/")[0] == "odata":
            continue
        for method in route.methods:
            declared[(f"/api/{template}", method.lower())] = route.auth_level
    described = {(path, method): operation.get("x-auth-level")
                 for path, item in spec["paths"].items() for method, operation in item.items()
                 if method in HTTP_METHODS}
    assert described == declared
    global_security = spec.get("security")
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            security = operation.get("security", global_security)
            assert (security == []) == (operation["x-auth-level"] == "anonymous"), (path, method)


def schemathesis_schema():
    import schemathesis

    schema = schemathesis.openapi.from_path(SPEC)
    schema.validate()  # against the OpenAPI 3.0 meta-schema
    for result in schema.get_all_operations():
        result.ok()  # raises on an operation the loader cannot use
    return schema


def schemathesis_checks():
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (content_type_conformance, ignored_auth, negative_data_rejection,
                                                   response_headers_conformance, response_schema_conformance,
                                                   status_code_conformance, unsupported_method)

    return [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
            response_headers_conformance, negative_data_rejection, unsupported_method, ignored_auth]


def run_schemathesis(fuzz, operations, examples: int, fixed: dict | None = None) -> dict[str, int]:
    """Fuzz the operations with schemathesis (positive and negative data), every default check that applies
    to this API plus check_answer; positive_data_acceptance is left out: schema-valid values may still break
    rules between parameters (to before from, more than 366 days) that a schema cannot express."""
    from schemathesis import GenerationMode

    schema = schemathesis_schema()
    checks = schemathesis_checks()
    statuses: dict[str, int] = {}
    for path, method in operations:
        operation = schema[path][method]
        strategies = [operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
                      operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)]
        if fixed and (path, method) in fixed:
            strategies.append(operation.as_strategy(query=fixed[(path, method)]))

        @bounded(examples)
        @given(case=st.one_of(*strategies))
        def run(case):
            response = case.call_and_validate(base_url=fuzz["root"], headers=dict(AUTH), checks=checks,
                                              timeout=60)
            check_answer(response)
            key = f"{method} {path} {response.status_code}"
            statuses[key] = statuses.get(key, 0) + 1

        run()
    return statuses


READ_OPERATIONS = [("/api/health", "GET"), ("/api/calls", "GET"), ("/api/usage", "GET"), ("/api/status", "GET"),
                   ("/api/dashboard", "GET")]
OPS_OPERATIONS = [("/api/ops/collect", "POST"), ("/api/ops/replay", "POST")]


def test_schemathesis_read_routes_conform_to_openapi_and_never_write(fuzz):
    assert {op for op in READ_OPERATIONS + OPS_OPERATIONS} == {
        (path, method.upper()) for path, item in yaml.safe_load(SPEC.read_text())["paths"].items()
        for method in item if method in HTTP_METHODS}, "every described operation is fuzzed"
    before = snapshot(fuzz["settings"])
    statuses = run_schemathesis(fuzz, READ_OPERATIONS, 30, fixed={
        ("/api/calls", "GET"): {"from": DAYS[0].isoformat(), "limit": "7"},
        ("/api/usage", "GET"): {"from": DAYS[0].isoformat(), "format": "csv"}})
    assert_unchanged(before, snapshot(fuzz["settings"]))
    for path, method in READ_OPERATIONS:
        assert any(k.startswith(f"{method} {path} 2") for k in statuses), (path, statuses)


def test_schemathesis_operator_routes_conform_to_openapi(fuzz):
    """The POST ops routes on the fuzz database: they record backfill requests or replay archived days."""
    statuses = run_schemathesis(fuzz, OPS_OPERATIONS, 25, fixed={
        ("/api/ops/replay", "POST"): {"feed": "pstn", "day": DAYS[1].isoformat()},
        ("/api/ops/collect", "POST"): {"from": DAYS[0].isoformat()}})
    assert any(k.startswith("POST /api/ops/replay 200") for k in statuses), statuses
    assert any(k.startswith("POST /api/ops/collect 202") for k in statuses), statuses
