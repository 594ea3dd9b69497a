"""Every construct of the language with its expected value, written by hand, on every backend."""

from __future__ import annotations

from decimal import Decimal

import polars as pl
import pytest

from pricing_lab.formula import Formula
from tests.formula.backends import frame, on_decimal, on_duckdb, on_polars

D = Decimal
# One event with every kind of column: integer, decimal, double, text, and a null.
ROW = {
    "tokens": 1000,
    "out": 250,
    "zero": 0,
    "neg": -7,
    "price": D("0.000015"),
    "ratio": 0.1,
    "tiny": 1e-13,
    "model": "gpt-4o",
    "missing": None,
}
SCHEMA = {
    "tokens": pl.Int64,
    "out": pl.Int32,
    "zero": pl.Int64,
    "neg": pl.Int64,
    "price": pl.Decimal(18, 6),
    "ratio": pl.Float64,
    "tiny": pl.Float64,
    "model": pl.String,
    "missing": pl.Int64,
}

CASES: list[tuple[str, Decimal | None]] = [
    # literals and arithmetic
    ("1.1 * tokens + 1.5 * out + 5 * zero", D("1475")),
    ("tokens - out - 1", D("749")),
    ("tokens - (out - 1)", D("751")),
    ("-neg", D("7")),
    ("- -neg", D("-7")),
    ("2 + 3 * 4", D("14")),
    ("(2 + 3) * 4", D("20")),
    ("tokens * price", D("0.015")),
    # division: 12 places, half away from zero; / 0 is null
    ("1 / 3", D("0.333333333333")),
    ("2 / 3", D("0.666666666667")),
    ("-2 / 3", D("-0.666666666667")),
    ("neg / 2", D("-3.5")),
    ("1 / 8000000000000", D("0")),
    ("5 / 2000000000000", D("0.000000000003")),
    ("-5 / 2000000000000", D("-0.000000000003")),
    ("tokens / zero", None),
    ("tokens / 0", None),
    ("tokens / 1000 * 0.002", D("0.002")),
    # products keep 12 places, rounded half away from zero
    ("0.000001 * 0.0000005", D("0.000000000001")),
    ("0.000001 * -0.0000005", D("-0.000000000001")),
    ("0.000001 * 0.0000004", D("0")),
    # doubles are read through their shortest text: 0.1 is exactly 0.1
    ("ratio * 3", D("0.3")),
    ("ratio * tokens", D("100")),
    ("tiny", D("0")),
    # nulls propagate
    ("missing + 1", None),
    ("unknown_dimension * 2", None),
    ("min(tokens, missing)", None),
    ("max(tokens, missing, 3)", None),
    ("coalesce(missing, 3)", D("3")),
    ("coalesce(missing, unknown_dimension, out)", D("250")),
    # functions
    ("min(tokens, out, 300)", D("250")),
    ("max(tokens, out * 5)", D("1250")),
    ("max(-tokens, neg)", D("-7")),
    ("min(tokens / 3, out + 1)", D("251")),
    ("abs(neg)", D("7")),
    ("round(2.5)", D("3")),
    ("round(-2.5)", D("-3")),
    ("round(2.345, 2)", D("2.35")),
    ("round(-2.345, 2)", D("-2.35")),
    ("round(tokens / 3, 2)", D("333.33")),
    ("round(7)", D("7")),
    ("ceil(2.341)", D("3")),
    ("ceil(-2.341)", D("-2")),
    ("ceil(2.341, 2)", D("2.35")),
    ("floor(2.349, 2)", D("2.34")),
    ("floor(-2.341, 1)", D("-2.4")),
    ("ceil(tokens / 7, 3)", D("142.858")),
    ("floor(neg / 2)", D("-4")),
    # conditions
    ("if(model == 'gpt-4o', 2, 1) * out", D("500")),
    ("if(model != 'gpt-4o', 2, 1) * out", D("250")),
    ("if(model == 'it''s', 2, 1)", D("1")),
    ("if(tokens > 999 and out <= 250, 1, 0)", D("1")),
    ("if(tokens < 999 or not out >= 250, 1, 0)", D("0")),
    ("if(tokens == 1000.0, 1, 0)", D("1")),
    ("if(price >= 0.000015 and price < 0.00002, 1, 0)", D("1")),
    # null conditions: comparisons with null are null, if(null, a, b) is b
    ("if(missing > 1, 1, 2)", D("2")),
    ("if(not missing > 1, 1, 2)", D("2")),
    ("if(missing > 1 or tokens > 1, 1, 2)", D("1")),
    ("if(missing > 1 and tokens > 1, 1, 2)", D("2")),
    ("if(missing > 1 and tokens < 1, 1, 2)", D("2")),
    ("if(missing == 'x', 1, 2)", D("2")),
    # names in backquotes
    ("`tokens` + 1", D("1001")),
]


@pytest.fixture(scope="module")
def data() -> pl.DataFrame:
    return frame([ROW], SCHEMA)


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("backend", [on_decimal, on_duckdb, on_polars], ids=lambda b: b.__name__)
def test_construct_value(backend, data: pl.DataFrame, text: str, expected: Decimal | None) -> None:
    [value] = backend(Formula.parse(text), data)
    if expected is None:
        assert value is None
    else:
        assert value is not None and value == expected, value


def test_dimension_typed_as_text_reads_numbers_only_when_numeric() -> None:
    data = frame(
        [{"q": "12.5"}, {"q": "abc"}, {"q": None}, {"q": "1e3"}, {"q": " 5"}, {"q": "\u0663"}],
        {"q": pl.String},
    )
    formula = Formula.parse("q * 2")
    # Digits are ASCII only, as the SQL engines read them: an Arabic-Indic three is not a number.
    expected = [D("25"), None, None, D("2000"), None, None]
    for backend in (on_decimal, on_duckdb, on_polars):
        assert backend(formula, data) == expected, backend.__name__


def test_doubles_follow_their_shortest_text_on_every_backend() -> None:
    values = [0.1, 0.1 + 0.2, 1e15, 123456789.123456789, 5e-13, -5e-13, 4.99999999999999e-13]
    data = frame([{"x": v} for v in values], {"x": pl.Float64})
    expected = [
        D("0.1"),
        D("0.300000000000"),  # 0.30000000000000004 rounded to 12 places
        D("1000000000000000"),
        D("123456789.12345679"),
        D("0.000000000001"),
        D("-0.000000000001"),
        D("0"),
    ]
    formula = Formula.parse("x")
    for backend in (on_decimal, on_duckdb, on_polars):
        assert backend(formula, data) == expected, backend.__name__


def test_non_finite_doubles_are_null() -> None:
    data = frame([{"x": float("nan")}, {"x": float("inf")}, {"x": 1e300}], {"x": pl.Float64})
    formula = Formula.parse("x + 1")
    for backend in (on_decimal, on_duckdb, on_polars):
        assert backend(formula, data) == [None, None, None], backend.__name__


def test_a_formula_without_dimensions_gives_one_value_per_row() -> None:
    data = frame([{"a": 1}, {"a": 2}, {"a": 3}], {"a": pl.Int64})
    formula = Formula.parse("2 / 3")
    for backend in (on_decimal, on_duckdb, on_polars):
        assert backend(formula, data) == [D("0.666666666667")] * 3, backend.__name__


def test_overflow_is_an_error_not_a_wrong_value() -> None:
    from pricing_lab.formula import FormulaOverflowError

    formula = Formula.parse("big * big")
    with pytest.raises(FormulaOverflowError):
        formula.evaluate({"big": 10**20})
    data = frame([{"big": 10**18}], {"big": pl.Int64})
    with pytest.raises(Exception, match=r"(?i)overflow|out of range"):
        on_duckdb(formula, data)
    with pytest.raises(FormulaOverflowError):
        on_polars(formula, data)


def test_dimension_names_match_columns_case_insensitively_on_duckdb_and_polars() -> None:
    # docs/events.md: a formula may write `Output_Tokens` for the column `output_tokens`.
    data = frame(
        [{"output_tokens": 3, "model": "a"}], {"output_tokens": pl.Int64, "model": pl.String}
    )
    formula = Formula.parse("Output_Tokens * 2 + if(MODEL == 'a', 1, 0)")
    for backend in (on_duckdb, on_polars):
        assert backend(formula, data) == [D("7")], backend.__name__
    sql = formula.to_duckdb_sql({"output_tokens": "BIGINT", "model": "VARCHAR"})
    assert "NULL" not in sql  # both dimensions read their column, typed
    # The reference evaluator reads a row's keys by the same rule (an exact match first).
    assert formula.evaluate({"output_tokens": 3, "model": "a"}) == D("7")
    assert formula.evaluate({"Output_Tokens": 4, "output_tokens": 3, "model": "b"}) == D("8")
