"""Snowflake export of 1M ledger rows through a local fakesnow server vs `executemany` INSERTs.

Ours: `export_tables` (Parquet → PUT to a named stage → COPY INTO staging → MERGE → record).
Baseline: the connector's `executemany` of INSERTs of the same rows into the same table shape.
`executemany` of 1M rows through the local server takes far too long, so it runs on a subset
(`--baseline-rows`, default 5,000) and its rate is extrapolated linearly to the full size; the
output says so. The subset is smaller than 20k because fakesnow's server keeps every executed
statement's result in memory (about 60 MB per 1,000 inserted rows); its rate is flat from 1k to
4k rows (~215-280 rows/s), so the linear extrapolation is fair.
Both use the real `snowflake-connector-python` over HTTP to the local server without its key-pair
gateway (password login: authentication is not what is measured). Then the same export again,
with nothing new: it must say "unchanged" in under 5 s.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from connectors.snowflake import export_sql as sql
from connectors.snowflake.export import export_tables
from connectors.snowflake.tables import LEDGER_ENTRIES, to_arrow


def ledger(rows: int) -> pl.DataFrame:
    """A synthetic ledger in SPEC §5 columns (amounts Decimal(38, 2))."""
    ids = np.arange(1, rows + 1)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    cents = -((ids * 7919) % 5000 + 1)
    return pl.DataFrame(
        {
            "replay_id": ["bench"] * rows,
            "scenario": ["base"] * rows,
            "entry_id": ids,
            "timestamp": pl.datetime_range(
                start, start + timedelta(seconds=rows - 1), "1s", eager=True, time_zone="UTC"
            ),
            "customer_id": [f"cust-{i % 2000:04d}" for i in ids],
            "currency_id": ["credits"] * rows,
            "entry_type": ["CONSUMED"] * rows,
            "grant_id": [f"cust-{i % 2000:04d}:plan:credits:0" for i in ids],
            "grant_type": ["RECURRING"] * rows,
            "grant_source": ["plan"] * rows,
            "amount": pl.Series(cents, dtype=pl.Int64).cast(pl.Decimal(38, 0)) / 100,
            "balance_after": pl.Series(cents * 3, dtype=pl.Int64).cast(pl.Decimal(38, 0)) / 100,
            "event_id": [f"evt-{i}" for i in ids],
            "feature_id": ["chat"] * rows,
        }
    ).with_columns(pl.col("amount", "balance_after").cast(pl.Decimal(38, 2)))


def _executemany(connect: Any, frame: pl.DataFrame) -> float:
    table = LEDGER_ENTRIES.bind(frame)
    arrow = to_arrow(table)
    names = ", ".join(sql.ident(c.name) for c in table.columns)
    marks = ", ".join(["%s"] * len(table.columns))
    rows = [tuple(r.values()) for r in arrow.to_pylist()]
    connection = connect()
    cursor = connection.cursor()
    cursor.execute(f'CREATE OR REPLACE TABLE "BASELINE_LEDGER" ({sql.column_ddl(table.columns)})')
    started = time.perf_counter()
    cursor.executemany(f'INSERT INTO "BASELINE_LEDGER" ({names}) VALUES ({marks})', rows)
    elapsed = time.perf_counter() - started
    cursor.execute('SELECT COUNT(*) FROM "BASELINE_LEDGER"')
    (count,) = cursor.fetchone()
    connection.close()
    if count != len(rows):
        raise RuntimeError(f"baseline loaded {count} rows, expected {len(rows)}")
    return elapsed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks export")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--baseline-rows", type=int, default=5_000)
    args, _ = parser.parse_known_args(argv)  # the runner passes every benchmark the same options

    import snowflake.connector

    from connectors.snowflake.local import start_local_server

    frame = ledger(args.rows)
    with start_local_server(key_pair_gateway=False) as server:

        def connect() -> Any:
            return snowflake.connector.connect(
                user="bench",
                password="bench",
                account="bench",
                host=server.host,
                port=server.port,
                protocol="http",
                session_parameters={"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False},
                network_timeout=600,
                database="BENCH",
                schema="EXPORT",
            )

        started = time.perf_counter()
        report = export_tables(connect, [LEDGER_ENTRIES.bind(frame)])
        ours = time.perf_counter() - started
        if report.rows_inserted != args.rows:
            raise RuntimeError(f"export inserted {report.rows_inserted} rows, expected {args.rows}")
        started = time.perf_counter()
        again = export_tables(connect, [LEDGER_ENTRIES.bind(frame)])
        rerun = time.perf_counter() - started
        if again.status != "unchanged":
            raise RuntimeError(f"the re-run with nothing new was {again.status}")
        subset = frame.head(args.baseline_rows)
        baseline = _executemany(connect, subset)
    baseline_full = baseline * args.rows / len(subset)
    ours_rate = args.rows / ours
    print(
        f"export (Parquet → PUT → COPY → MERGE), {args.rows:,} ledger rows: {ours:.2f} s, "
        f"{ours_rate:,.0f} rows/s, {report.bytes / 1e6:.1f} MB Parquet"
    )
    print(
        f"executemany INSERT, {len(subset):,} rows measured: {baseline:.2f} s, "
        f"{len(subset) / baseline:,.0f} rows/s; extrapolated linearly to {args.rows:,} rows: "
        f"{baseline_full:,.0f} s"
    )
    print(f"ratio: export is {baseline_full / ours:,.0f}x faster than executemany (target ≥ 20x)")
    print(f"re-run with nothing new: {rerun:.2f} s (target < 5 s)")
    return 0
