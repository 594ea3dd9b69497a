"""Full replay and scenario comparison against one DuckDB pass over the same events.

Workload (issues 5 and 6): synthetic events (`--rows`, default 1M; the issues' figure is 10M) for
10k customers over 60 days, the sample catalog's formula rates, monthly recurring grants from
plans, a promotional grant expiring after 14 days for everyone, auto-recharge on 20% of customers.

* baseline: `COPY (SELECT *, <the formulas> FROM events ORDER BY customer_id, timestamp,
  event_id) TO …parquet` in DuckDB;
* full replay: read Parquet → validate → match → cost → fast engine → write all outputs;
* compare: the base and 4 scenarios (5 replays) over the same events, against one replay.

Run: `uv run --frozen --no-sync python -m benchmarks replay --rows=1000000`.
"""

from __future__ import annotations

import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb

from pricing_lab.catalog.model import CreditRate
from pricing_lab.events.ingest import ingest_events
from pricing_lab.events.synthetic import customer_ids, generate_events
from pricing_lab.ledger.model import AutoRecharge, Grant, Subscription
from pricing_lab.simulation.customers import CustomerInputs
from pricing_lab.simulation.demo import sample_catalog
from pricing_lab.simulation.scenarios import Scenario, compare
from pricing_lab.simulation.simulate import simulate

DATA = Path(__file__).parent / "data"
CUSTOMERS = 10_000
DAYS = 60
START = datetime(2024, 1, 1, tzinfo=UTC)


def _rows(argv: list[str]) -> int:
    for index, arg in enumerate(argv):
        if arg.startswith("--rows="):
            return int(arg.split("=", 1)[1].replace("_", ""))
        if arg == "--rows" and index + 1 < len(argv):
            return int(argv[index + 1].replace("_", ""))
    return 1_000_000


def workload_customers() -> CustomerInputs:
    ids = customer_ids(CUSTOMERS)
    plans = ("free", "pro", "enterprise")
    subscriptions = []
    grants = []
    recharges = []
    for index, customer in enumerate(ids):
        subscriptions.append(
            Subscription(
                subscription_id=f"{customer}:s",
                customer_id=customer,
                plan_id=plans[index % 3],
                start=START,
            )
        )
        grants.append(
            Grant(
                grant_id=f"{customer}:promo",
                customer_id=customer,
                currency_id="credits",
                amount=Decimal(1000),
                type="PROMOTIONAL",
                effective_at=START,
                expires_at=START + timedelta(days=14),
            )
        )
        if index % 5 == 0:
            recharges.append(
                AutoRecharge(
                    customer_id=customer,
                    currency_id="credits",
                    threshold=Decimal(500),
                    target=Decimal(5000),
                    monthly_spend_limit=Decimal(50),
                    grant_expiry="1_month",
                )
            )
    return CustomerInputs(
        subscriptions=tuple(subscriptions), grants=tuple(grants), auto_recharges=tuple(recharges)
    )


def _baseline(events: Path, out: Path, formulas: dict[str, str]) -> float:
    con = duckdb.connect()
    columns = ", ".join(f'{sql} AS "{name}"' for name, sql in formulas.items())
    began = time.perf_counter()
    con.execute(
        f"COPY (SELECT *, {columns} FROM read_parquet('{events}') "
        f"ORDER BY customer_id, timestamp, event_id) TO '{out}' (FORMAT parquet)"
    )
    return time.perf_counter() - began


def _formulas(rates: tuple[CreditRate, ...], column_types: dict[str, str]) -> dict[str, str]:
    from pricing_lab.formula import Formula

    return {
        f"cost_{rate.feature}": Formula.parse(rate.formula).to_duckdb_sql(column_types)
        for rate in rates
        if rate.mode == "formula" and rate.formula is not None
    }


def main(argv: list[str]) -> int:
    rows = _rows(argv)
    events = DATA / f"replay_events_{rows}.parquet"
    if not events.exists():
        print(f"generating {rows:,} events for {CUSTOMERS:,} customers …", flush=True)
        generate_events(events, events=rows, customers=CUSTOMERS, days=DAYS, seed=7, start=START)
    catalog = sample_catalog()
    customers = workload_customers()
    probe = duckdb.connect()
    relation = probe.sql(f"SELECT * FROM read_parquet('{events}')")
    types = {name: str(kind) for name, kind in zip(relation.columns, relation.types)}
    formulas = _formulas(catalog.default_credit_rates, types)

    with tempfile.TemporaryDirectory(dir=DATA) as scratch:
        baseline = min(_baseline(events, Path(scratch) / f"b{i}.parquet", formulas) for i in (1, 2))
        print(f"baseline DuckDB COPY with {len(formulas)} formulas + sort: {baseline:.2f} s")

        con = duckdb.connect()
        began = time.perf_counter()
        report = ingest_events(con, str(events))
        result = simulate(con, catalog, customers, ingest=report)
        result.write(Path(scratch) / "replay")
        replay_seconds = time.perf_counter() - began
        print(
            f"full replay (read, validate, match, cost, replay, write): {replay_seconds:.2f} s, "
            f"{result.ledger.height:,} ledger entries; ratio {replay_seconds / baseline:.2f} "
            "(target ≤ 3)"
        )

        scenarios = [Scenario(name="base")] + [
            Scenario(
                name=f"chat_x{factor}",
                rate_multipliers={"llm_chat": Decimal(factor)},
            )
            for factor in ("0.8", "1.1", "1.2", "1.5")
        ]
        began = time.perf_counter()
        compare(con, catalog, customers, scenarios)
        compare_seconds = time.perf_counter() - began
        began = time.perf_counter()
        simulate(con, catalog, customers)
        one = time.perf_counter() - began
        print(
            f"compare 5 scenarios: {compare_seconds:.2f} s vs one replay on the same store "
            f"{one:.2f} s; ratio {compare_seconds / one:.2f} (target ≤ 2.5)"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak:,.0f} MiB")
    return 0
