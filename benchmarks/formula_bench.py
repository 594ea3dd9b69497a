"""Formula benchmark: the compiled formula vs the same formula written by hand, DuckDB and Polars.

    uv run --frozen --no-sync python -m benchmarks formula [--rows N]

Synthetic events (default 10,000,000 rows, three BIGINT token columns) are generated once under
benchmarks/data/. Baseline and compiled formula run alternately seven times on the same in-memory
data; the best time of each counts.
The hand-written baselines are exact too (DuckDB DECIMAL literals on integer columns; Polars
Decimal casts), so the ratio measures what compiling costs, not float vs decimal.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl

from pricing_lab.formula import Formula

DATA = Path(__file__).parent / "data"
FORMULA = "(1.1 * model1_tokens) + (1.5 * model2_tokens) + (5 * model3_tokens)"
HAND_SQL = "1.1 * model1_tokens + 1.5 * model2_tokens + 5 * model3_tokens"
TARGET_RATIO = 1.3


def _events(rows: int) -> Path:
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"formula_events_{rows}.parquet"
    if not path.exists():
        duckdb.sql(
            "COPY (SELECT CAST(random() * 100000 AS BIGINT) AS model1_tokens,"
            " CAST(random() * 20000 AS BIGINT) AS model2_tokens,"
            " CAST(random() * 1000 AS BIGINT) AS model3_tokens"
            f" FROM range({rows})) TO '{path}' (FORMAT parquet)"
        )
    return path


def _race(
    baseline: Callable[[], object], ours: Callable[[], object], repeat: int = 7
) -> tuple[float, float]:
    """Best times of baseline and ours, run alternately (the machine may be shared); the two
    must compute the same result."""
    best = [float("inf"), float("inf")]
    for _ in range(repeat):
        results = []
        for index, run in enumerate((baseline, ours)):
            start = time.perf_counter()
            results.append(run())
            best[index] = min(best[index], time.perf_counter() - start)
        assert results[0] == results[1], results
    return best[0], best[1]


def _hand_polars() -> pl.Expr:
    def term(column: str, rate: str) -> pl.Expr:
        places = max(0, -Decimal(rate).as_tuple().exponent)  # type: ignore[operator]
        literal = pl.lit(Decimal(rate), dtype=pl.Decimal(38, places))
        return pl.col(column).cast(pl.Decimal(38, 0)) * literal

    return term("model1_tokens", "1.1") + term("model2_tokens", "1.5") + term("model3_tokens", "5")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks formula")
    parser.add_argument("--rows", type=int, default=10_000_000)
    options = parser.parse_args(argv)
    path = _events(options.rows)
    formula = Formula.parse(FORMULA)
    status = 0

    con = duckdb.connect()
    con.sql(f"CREATE TABLE events AS SELECT * FROM read_parquet('{path}')")
    types = dict(zip(con.table("events").columns, map(str, con.table("events").types), strict=True))
    compiled_sql = formula.to_duckdb_sql(types)
    hand_time, ours_time = _race(
        lambda: con.sql(f"SELECT sum({HAND_SQL}) FROM events").fetchall(),
        lambda: con.sql(f"SELECT sum({compiled_sql}) FROM events").fetchall(),
    )
    ratio = ours_time / hand_time
    print(f"rows: {options.rows:,}")
    print(f"duckdb  hand-written SQL: {hand_time:.3f} s   compiled formula: {ours_time:.3f} s")
    print(f"duckdb  ratio: {ratio:.2f} (target <= {TARGET_RATIO})")
    status |= ratio > TARGET_RATIO

    frame = pl.read_parquet(path)
    compiled = formula.to_polars(frame.schema)
    hand = _hand_polars()
    hand_time, ours_time = _race(
        lambda: frame.select(hand.sum()).item(), lambda: frame.select(compiled.sum()).item()
    )
    ratio = ours_time / hand_time
    print(f"polars  hand-written expr: {hand_time:.3f} s   compiled formula: {ours_time:.3f} s")
    print(f"polars  ratio: {ratio:.2f} (target <= {TARGET_RATIO})")
    status |= ratio > TARGET_RATIO
    return int(status)
