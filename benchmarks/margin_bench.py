"""The margin's share of a full replay: costs to serve and revenue recognised, against `simulate`.

Workload: the `replay` benchmark's (synthetic events for 10k customers over 60 days, the sample
catalog with its unit costs, plans, promotions, auto-recharge). One `simulate` in memory is timed
end to end (it includes the margin); then, on its result, the margin's two steps are timed alone,
each the median of 3 runs: `serve_costs` (a DuckDB pass over the events) and
`recognised_revenue` (a DuckDB pass over the ledger). The share is their sum over the replay.

Run: `uv run --frozen --no-sync python -m benchmarks margin --rows=1000000` (the events file is
the `replay` benchmark's, generated when missing).
"""

from __future__ import annotations

import statistics
import time

import duckdb
import polars as pl

from benchmarks.replay_bench import CUSTOMERS, DATA, DAYS, START, _rows, workload_customers
from pricing_lab.events.ingest import ingest_events
from pricing_lab.events.synthetic import generate_events
from pricing_lab.simulation.demo import sample_catalog
from pricing_lab.simulation.margin import recognised_revenue, serve_costs
from pricing_lab.simulation.simulate import simulate


def _median_seconds(run: object, times: int = 3) -> float:
    seconds = []
    for _ in range(times):
        began = time.perf_counter()
        run()  # type: ignore[operator]
        seconds.append(time.perf_counter() - began)
    return statistics.median(seconds)


def main(argv: list[str]) -> int:
    rows = _rows(argv)
    events = DATA / f"replay_events_{rows}.parquet"
    if not events.exists():
        print(f"generating {rows:,} events for {CUSTOMERS:,} customers …", flush=True)
        generate_events(events, events=rows, customers=CUSTOMERS, days=DAYS, seed=7, start=START)
    catalog = sample_catalog()
    customers = workload_customers()
    con = duckdb.connect()
    report = ingest_events(con, str(events))
    began = time.perf_counter()
    result = simulate(con, catalog, customers, ingest=report)
    replay = time.perf_counter() - began
    ledger = result.ledger
    not_served = pl.concat([result.rejected_events["event_id"], result.denied_events["event_id"]])

    def serving() -> None:
        serve_costs(
            con,
            catalog,
            customers.subscriptions,
            start=result.replay.start,
            until=result.replay.until,
            excluded=not_served,
        )

    def revenue() -> None:
        recognised_revenue(
            con,
            ledger,
            grants=customers.grants,
            currencies=catalog.currencies,
            subscriptions=customers.subscriptions,
        )

    serve_seconds = _median_seconds(serving)
    revenue_seconds = _median_seconds(revenue)
    margin = serve_seconds + revenue_seconds
    print(f"full replay in memory (simulate, margin included): {replay:.2f} s")
    print(f"    costs to serve (serve_costs, {report.accepted:,} events)  {serve_seconds:8.2f} s")
    print(f"    revenue recognised ({ledger.height:,} ledger entries)    {revenue_seconds:8.2f} s")
    print(f"  margin: {margin:.2f} s = {margin / replay:.1%} of the replay")
    return 0
