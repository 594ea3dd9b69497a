"""DuckDB's division fast paths (a literal ±10^e divisor as an exact shift; a 64-bit path where the
scaled operands fit, falling back to the exact HUGEINT path) give the Decimal evaluator's value
at their boundaries: around the 64-bit cutoff, negative operands, .5 ties at the 12th place,
division by 1, 10, 1000, 0.001, by zero, nulls."""

from __future__ import annotations

from decimal import Decimal

import polars as pl
import pytest

from pricing_lab.formula import Formula
from tests.formula.backends import frame, on_decimal, on_duckdb
from tests.formula.test_property import check_backends_agree

D = Decimal
# The 64-bit path takes |dividend * 10^(13 + divisor scale)| < 10^(18 - dividend scale).
_EDGES = [0, 1, -1, 5, -5, 7, 99_999, 100_000, -99_999, -100_000, 10**9, -(10**9), 10**13]
ROWS = [
    {"i": i, "d": d, "f": f, "n": n, "s": None}
    for i, n, d, f in zip(
        [*_EDGES, None, 3],
        [7, -7, 3, 2, -2, 1, 7, 7, 3, 3, 1024, -3, 1, 7, None],
        [
            D("0.099999"),
            D("-0.099999"),
            D("0.1"),
            D("-0.1"),
            D("0.000005"),
            D("-0.000005"),
            D("123456789012.123456"),
            D("-0.5"),
            D("0.5"),
            D("1"),
            D("0"),
            None,
            D("7"),
            D("3"),
            D("2.5"),
        ],
        [
            1e-13,
            -1e-13,
            5e-13,
            -5e-13,
            1e-7,
            0.5,
            2.5e-12,
            -2.5e-12,
            123456.789,
            0.0,
            None,
            3.0,
            -7.0,
            1.5,
            2.0,
        ],
        strict=True,
    )
]

FORMULAS = [
    # a literal power of ten: an exact shift
    "i / 1",
    "i / 10",
    "i / 1000",
    "i / -1000",
    "i / 0.001",
    "i / -0.001",
    "i / - -10",
    "d / 1000",
    "d / 1000000000",
    "f / 10",
    "f / 1000",
    "f / 0.000000000001",
    "i / 10000000000000000000000000",
    "d / 0.1",
    "(i + 5) / 10000000000000",
    "-i / 100000000000000",
    "i * 0.5 / 1000000000000",
    # any other literal, and columns: 64-bit where it fits, else HUGEINT
    "i / 7",
    "i / -7",
    "i / 3",
    "i / 1.5",
    "i / 0.7",
    "i / 2000000000000",
    "i / 0",
    "i / n",
    "-i / n",
    "d / n",
    "d / 3",
    "i / d",
    "f / n",
    "i / f",
    "d / f",
    "f / d",
    "i / 99999999999999999",
    "i / 1000000000000000000",
    "(i / n) / (d / 7)",
    "i / n / 1000",
    "coalesce(i / n, 0) + 1",
]


@pytest.mark.parametrize("text", FORMULAS)
def test_division_paths_agree(text: str) -> None:
    # Exact equality with the Decimal evaluator; an early overflow (the documented dividend
    # limit) is allowed, a wrong value never.
    check_backends_agree(Formula.parse(text).tree, ROWS)


def test_ties_round_half_away_from_zero_on_every_path() -> None:
    # 5e-13 = 5 × 10^-13: the 13th place is exactly 5.
    rows = [{"i": 5, "n": 10**13}, {"i": -5, "n": 10**13}, {"i": 15, "n": 10**14}]
    data = frame(rows, {"i": pl.Int64, "n": pl.Int64})
    for text in ("i / n", "i / 10000000000000", "i / 20000000000000 * 2"):
        formula = Formula.parse(text)
        expected = on_decimal(formula, data)
        assert on_duckdb(formula, data) == expected, text
    assert on_duckdb(Formula.parse("i / n"), data) == [D("1E-12"), D("-1E-12"), D("0")]


def test_wide_decimal_dividend_is_not_an_overflow() -> None:
    # DuckDB keeps a product of two DECIMAL(<=18) in int64 and fails on overflow; the dividend
    # is widened first, so a DECIMAL(18, 6) column divides like any other.
    data = frame([{"d": D("123456789012.123456")}], {"d": pl.Decimal(18, 6)})
    for text in ("d / 3", "d / 1000", "d / 0.001", "1 / d"):
        formula = Formula.parse(text)
        assert on_duckdb(formula, data) == on_decimal(formula, data), text


def test_literal_power_of_ten_compiles_to_a_product() -> None:
    sql = Formula.parse("tokens / 1000").to_duckdb_sql({"tokens": "BIGINT"})
    assert "HUGEINT" not in sql and "//" not in sql
    sql = Formula.parse("tokens / 7").to_duckdb_sql({"tokens": "BIGINT"})
    assert "coalesce(" in sql and "AS BIGINT) // NULLIF(CAST(7 AS BIGINT), 0)" in sql


def test_long_operands_are_not_repeated() -> None:
    # Nested divisions must not double the SQL at every level.
    text = "i" + " / n" * 60
    sql = Formula.parse(text).to_duckdb_sql({"i": "BIGINT", "n": "BIGINT"})
    assert len(sql) < 200_000
    data = frame([{"i": 10**9, "n": 1}, {"i": 7, "n": -1}], {"i": pl.Int64, "n": pl.Int64})
    formula = Formula.parse(text)
    assert on_duckdb(formula, data) == on_decimal(formula, data)


def test_negation_and_abs_of_a_long_quotient_keep_all_twelve_places() -> None:
    # -x and abs(x) are exact: Python's default 28-digit context must not round them.
    row = {"i": 10**9, "d": None, "f": None, "n": None, "s": None}
    for text in ("-(i / 0.00000003)", "abs(0 - i / 0.00000003)"):
        check_backends_agree(Formula.parse(text).tree, [row])
    value = Formula.parse("-(i / 0.00000003)").evaluate({"i": Decimal(10**9)})
    assert value == Decimal("-33333333333333333.333333333333")
