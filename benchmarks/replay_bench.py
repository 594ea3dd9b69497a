"""Full replay and scenario comparison against one DuckDB pass over the same events.

Workload (issues 5 and 6): synthetic events (`--rows`, default 1M; the issues' figure is 10M) for
10k customers over 60 days, the sample catalog's formula rates, monthly recurring grants from
plans, a promotional grant expiring after 14 days for everyone, auto-recharge on 20% of customers.

* baseline: `COPY (SELECT *, <the formulas> FROM events ORDER BY customer_id, timestamp,
  event_id) TO …parquet` in DuckDB;
* full replay: read Parquet → validate → match → cost → fast engine → invariant check →
  balances and summaries → write all outputs; in memory, and in customer partitions (one per 2M
  events, DuckDB in a database file capped at 512 MB: what `pricing-lab simulate` does by default);
* compare: read the Parquet once, match and cost once, replay the base and 4 scenarios (results
  in memory), against one full replay; and the same again writing every scenario's outputs and
  the HTML report.

Each part runs in a fresh interpreter, so its peak RSS is its own.

Run: `uv run --frozen --no-sync python -m benchmarks replay --rows=1000000`;
`… replay --rows=100000000 --partitioned-only` measures the partitioned replay of 100M events
(the in-memory one would not fit; generating the file takes a while, and the baseline's sort
needs ~15 GB). One part alone, without the baseline, on an existing file:
`… replay --part=partitioned --events=benchmarks/data/replay_events_100000000.parquet --out=DIR`
(prints its figures as JSON; peak RSS is the part's own, from VmHWM). 100M events of 100k
customers: `… replay --part=partitioned --tenants=10
--events=benchmarks/data/replay_events_10000000_x10.parquet --out=DIR` (the file the scale bench
makes with `scale --rows=10000000 --tenants=10`).
"""

from __future__ import annotations

import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb

from benchmarks import peak_rss_bytes
from pricing_lab.catalog.model import CreditRate
from pricing_lab.cli.simulate_cmd import EVENTS_PER_PARTITION
from pricing_lab.events.ingest import ingest_events
from pricing_lab.events.synthetic import customer_ids, generate_events
from pricing_lab.ledger.model import AutoRecharge, Grant, Subscription
from pricing_lab.simulation.customers import CustomerInputs
from pricing_lab.simulation.demo import sample_catalog
from pricing_lab.simulation.partitioned import simulate_partitioned, spilling_connection
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


def _part(argv: list[str]) -> str | None:
    for arg in argv:
        if arg.startswith("--part="):
            return arg.split("=", 1)[1]
    return None


def _scenarios() -> list[Scenario]:
    return [Scenario(name="base")] + [
        Scenario(name=f"chat_x{factor}", rate_multipliers={"llm_chat": Decimal(factor)})
        for factor in ("0.8", "1.1", "1.2", "1.5")
    ]


def _run_part(part: str, events: Path, out: Path, tenants: int = 1) -> dict[str, float]:
    """One measured part, in this (fresh) process: seconds per step and peak RSS. `tenants`:
    the customers of the scale bench's `--tenants` events (`scale_bench.tenant_events`)."""
    from benchmarks.scale_bench import tenant_customers  # it imports this module

    catalog = sample_catalog()
    customers = tenant_customers(tenants)
    steps: dict[str, float] = {}
    began, cpu_began = time.perf_counter(), _cpu_seconds()
    # As `pricing-lab simulate` does when partitioned: a database file, DuckDB's memory capped.
    con = spilling_connection(f"{out}.duckdb") if part == "partitioned" else duckdb.connect()
    report = ingest_events(con, str(events))
    steps["read + validate"] = time.perf_counter() - began
    if part == "partitioned":
        mark = time.perf_counter()
        partitions = -(-report.accepted // EVENTS_PER_PARTITION)
        result = simulate_partitioned(
            con, catalog, customers, ingest=report, out_dir=out, partitions=partitions
        )
        steps[f"match … write, {partitions} customer partitions"] = time.perf_counter() - mark
        steps["ledger entries"] = result.ledger_entries or 0
    elif part == "replay":
        mark = time.perf_counter()
        result = simulate(con, catalog, customers, ingest=report)
        steps["match, cost, replay, check, summarise"] = time.perf_counter() - mark
        mark = time.perf_counter()
        result.write(out)
        steps["write outputs"] = time.perf_counter() - mark
        steps["ledger entries"] = result.ledger.height
    else:
        mark = time.perf_counter()
        if part == "compare+write":
            # As `pricing-lab compare --out`: each scenario written as soon as it is replayed.
            from pricing_lab.report.build import write_comparison

            comparison = compare(con, catalog, customers, _scenarios(), ingest=report, out_dir=out)
            steps["match + cost once, replay and write 5 scenarios"] = time.perf_counter() - mark
            mark = time.perf_counter()
            write_comparison(comparison, out)
            steps["write comparison tables + report"] = time.perf_counter() - mark
        else:
            compare(con, catalog, customers, _scenarios(), ingest=report)
            steps["match + cost once, replay 5 scenarios"] = time.perf_counter() - mark
    steps["total"] = time.perf_counter() - began
    # CPU time of every thread (DuckDB's, Polars' too): steadier than wall time on a shared machine.
    steps["CPU seconds"] = _cpu_seconds() - cpu_began
    steps["peak RSS GiB"] = peak_rss_bytes() / 1024**3
    return steps


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _in_child(part: str, events: Path, out: Path) -> dict[str, float]:
    """Run `part` in a fresh interpreter, so each part's peak memory is its own."""
    command = [sys.executable, "-m", "benchmarks", "replay", f"--part={part}"]
    command += [f"--events={events}", f"--out={out}"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{part} failed:\n{done.stdout}\n{done.stderr}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def _digests(folder: Path) -> str:
    """The SHA-256 (first 12 hex digits) of each output file in `folder`, by name."""
    return ", ".join(
        f"{path.name} {hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"
        for path in sorted(folder.iterdir())
        if path.is_file()
    )


def _print_steps(label: str, steps: dict[str, float]) -> None:
    print(f"{label}: {steps['total']:.2f} s, peak RSS {steps['peak RSS GiB']:.2f} GiB")
    for name, value in steps.items():
        if name not in ("total", "peak RSS GiB"):
            print(f"    {name:<48} {value:10.2f}")


def main(argv: list[str]) -> int:
    part = _part(argv)
    if part is not None:
        options = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
        tenants = int(options.get("tenants", "1"))
        steps = _run_part(part, Path(options["events"]), Path(options["out"]), tenants)
        print(json.dumps(steps))
        return 0
    rows = _rows(argv)
    events = DATA / f"replay_events_{rows}.parquet"
    if not events.exists():
        print(f"generating {rows:,} events for {CUSTOMERS:,} customers …", flush=True)
        generate_events(events, events=rows, customers=CUSTOMERS, days=DAYS, seed=7, start=START)
    catalog = sample_catalog()
    probe = duckdb.connect()
    relation = probe.sql(f"SELECT * FROM read_parquet('{events}')")
    types = {name: str(kind) for name, kind in zip(relation.columns, relation.types)}
    formulas = _formulas(catalog.default_credit_rates, types)

    with tempfile.TemporaryDirectory(dir=DATA) as scratch:
        baseline = min(_baseline(events, Path(scratch) / f"b{i}.parquet", formulas) for i in (1, 2))
        print(f"baseline DuckDB COPY with {len(formulas)} formulas + sort: {baseline:.2f} s")
        parted = _in_child("partitioned", events, Path(scratch) / "partitioned")
        _print_steps("full replay in customer partitions (as pricing-lab simulate)", parted)
        print(f"  ratio to the baseline: {parted['total'] / baseline:.2f}")
        # Outputs must not change with the code's speed: compare these digests before and after.
        print(f"  output digests: {_digests(Path(scratch) / 'partitioned')}")
        if "--partitioned-only" in argv:
            return 0
        replay = _in_child("replay", events, Path(scratch) / "replay")
        _print_steps("full replay in memory (read Parquet → write all outputs)", replay)
        print(f"  ratio to the baseline: {replay['total'] / baseline:.2f} (target ≤ 3)")
        compared = _in_child("compare", events, Path(scratch) / "compare")
        _print_steps("compare 5 scenarios (read once, results in memory)", compared)
        print(
            f"  ratio to one full replay: {compared['total'] / replay['total']:.2f} (target ≤ 2.5)"
        )
        written = _in_child("compare+write", events, Path(scratch) / "compare_written")
        _print_steps("compare 5 scenarios and write every scenario's outputs", written)
        print(f"  ratio to one full replay: {written['total'] / replay['total']:.2f}")
    return 0
