"""Test helper: run one formula over rows on each backend and return plain Decimal results."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import duckdb
import polars as pl

from pricing_lab.formula import Formula

Result = Decimal | None


def frame(rows: Sequence[dict[str, Any]], schema: dict[str, Any] | None = None) -> pl.DataFrame:
    """A Polars frame of `rows`; the same frame is read by DuckDB (via Arrow)."""
    return pl.DataFrame(list(rows), schema=schema, orient="row", infer_schema_length=None)


def on_decimal(formula: Formula, data: pl.DataFrame) -> list[Result]:
    return [formula.evaluate(row) for row in data.to_dicts()]


def on_duckdb(formula: Formula, data: pl.DataFrame) -> list[Result]:
    con = duckdb.connect()
    con.register("events", data.to_arrow())
    return [row[0] for row in formula.evaluate_duckdb(con, "events").fetchall()]


def on_polars(formula: Formula, data: pl.DataFrame) -> list[Result]:
    return formula.evaluate_polars(data).to_list()
