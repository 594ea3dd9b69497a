"""Snowflake SQL: exact text, and the same values as the Decimal evaluator when run on fakesnow.

fakesnow runs Snowflake SQL on DuckDB (translated by sqlglot), so it checks that the SQL is valid
and means what we intend; it cannot reproduce Snowflake's own NUMBER rounding bit for bit, hence
the comparison after rounding to a currency precision (2 places), as SPEC §3 states it.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import fakesnow
import pytest
import snowflake.connector

from pricing_lab.formula import Formula
from pricing_lab.money import quantize
from tests.formula.test_table import CASES

# fakesnow notes that its DB-API results copy Arrow data; irrelevant for one-row results.
pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning")

SPEC_EXAMPLE = "(1.1 * model1_tokens) + (1.5 * model2_tokens) + (5 * model3_tokens)"


@pytest.mark.parametrize(
    ("text", "types", "sql"),
    [
        (
            SPEC_EXAMPLE,
            {"model1_tokens": "NUMBER(38,0)", "model2_tokens": "INT", "model3_tokens": "BIGINT"},
            'CAST((((1.1 * "model1_tokens") + (1.5 * "model2_tokens")) + (5 * "model3_tokens"))'
            " AS NUMBER(38, 12))",
        ),
        (
            "tokens / 1000",
            None,
            'CAST(CAST((CAST("tokens" AS NUMBER(38, 12)) / NULLIF(1000, 0)) AS NUMBER(38, 12))'
            " AS NUMBER(38, 12))",
        ),
        (
            "if(model == 'gpt-4o', 2, 1) * out",
            {"model": "VARCHAR", "out": "NUMBER(38,0)"},
            'CAST((IFF(("model" = \'gpt-4o\'), 2, 1) * "out") AS NUMBER(38, 12))',
        ),
        (
            "min(a, b * 0.5) + ceil(c, 2)",
            {"a": "NUMBER(38,0)", "b": "NUMBER(38,0)", "c": "NUMBER(18,6)"},
            'CAST((LEAST(CAST("a" AS NUMBER(38, 1)), ("b" * 0.5)) + CEIL("c", 2))'
            " AS NUMBER(38, 12))",
        ),
        (
            '`weird "name"` + coalesce(x, 0)',
            {'weird "name"': "FLOAT", "x": "TEXT"},
            'CAST((CAST("weird ""name""" AS NUMBER(38, 12)) + coalesce(TRY_TO_NUMBER("x", 38, 12),'
            " CAST(0 AS NUMBER(38, 12)))) AS NUMBER(38, 12))",
        ),
    ],
)
def test_snowflake_sql_text(text: str, types: dict[str, str] | None, sql: str) -> None:
    assert Formula.parse(text).to_snowflake_sql(types) == sql


@pytest.fixture(scope="module")
def cursor() -> Iterator[snowflake.connector.cursor.SnowflakeCursor]:
    with fakesnow.patch():
        conn = snowflake.connector.connect(database="formula_db", schema="formula_schema")
        cur = conn.cursor()
        cur.execute(
            'CREATE TABLE events ("tokens" INT, "out" INT, "zero" INT, "neg" INT,'
            ' "price" NUMBER(18, 6), "ratio" FLOAT, "tiny" FLOAT, "model" VARCHAR,'
            ' "missing" INT)'
        )
        cur.execute(
            "INSERT INTO events VALUES (1000, 250, 0, -7, 0.000015, 0.1, 1e-13, 'gpt-4o', NULL)"
        )
        yield cur
        conn.close()


# fakesnow runs LEAST/GREATEST as DuckDB's, which skip NULLs; Snowflake's return NULL.
_NULL_EXTREMES = {"min(tokens, missing)", "max(tokens, missing, 3)"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [c for c in CASES if c[0] not in _NULL_EXTREMES and "unknown_dimension" not in c[0]],
    ids=[c[0] for c in CASES if c[0] not in _NULL_EXTREMES and "unknown_dimension" not in c[0]],
)
def test_snowflake_sql_runs_on_fakesnow_with_the_reference_values(
    cursor, text: str, expected: Decimal | None
) -> None:
    cursor.execute(f"SELECT {Formula.parse(text).to_snowflake_sql()} FROM events")
    [(value,)] = cursor.fetchall()
    if expected is None:
        assert value is None
    else:
        assert value is not None and quantize(value, 2) == quantize(expected, 2)
