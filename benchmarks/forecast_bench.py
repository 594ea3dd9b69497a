"""Run-out forecast: its backtest (real traces, synthetic generator) and its speed.

Two parts (both by default; `--part=backtest` or `--part=speed` for one):

* **backtest** — the figures of issue 23's target: calibration of the 80% interval and the p50
  error against the naive baseline (balance ÷ mean daily burn of the 14 days before the cut), on
  the real traces shipped in the package (40,216 requests, 50 customers, 60 days; horizons of 30
  and 14 days) and on synthetic events (`--synthetic-events`, default 600,000 for 200 customers
  over 120 days; horizon 30 days). Customers are the backtest population below.
* **speed** — forecast 10k customers with `--rows` events of history (default 10M; the issue's
  figure) and 1,000 paths, end to end (read Parquet → forecast → write the table), against one
  full replay of the same history (read Parquet → replay → write every output), each in a fresh
  interpreter, the two taking turns (`--repeat`, default 2), medians compared. The workload is the
  replay benchmark's (10k customers on plans, a 14-day promotion, auto-recharge for a fifth).

The backtest population ("customers who sized their credits on their first two weeks"): every
customer is on the free plan (500 credits a month) with the 2,000-credit welcome promotion expiring
after 14 days; at the start it bought a top-up of 7 to 56 days of its mean daily burn over the
first 14 days (log-uniform, by a stable hash of its id), which expires after 60 days for 30% of
customers; 40% bought a second top-up of 14 days' burn that takes effect on day 30; 25% have
auto-recharge (below 2 days' burn back to 10 days', up to 20 days' burn of spend a month, recharged
credits valid a month). The forecast never sees the sizing: it sees balances, grants and history.

Run: `uv run --frozen --no-sync python -m benchmarks forecast --part=backtest`;
`flock /work/team/heavy.lock uv run --frozen --no-sync python -m benchmarks forecast --part=speed`.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from benchmarks import peak_rss_bytes
from pricing_lab.events.real import DEFAULT_START, load_sample_events, stable_uniform
from pricing_lab.events.synthetic import generate_events
from pricing_lab.forecast import BurnModel, backtest, backtest_summary
from pricing_lab.ledger.model import AutoRecharge, Grant, Subscription
from pricing_lab.simulation.customers import CustomerInputs
from pricing_lab.simulation.demo import sample_catalog

DATA = Path(__file__).parent / "data"
CURRENCY = "credits"
SIZING_DAYS = 14
PAID_BASIS = Decimal("0.0008")
UNIT_PRICE = Decimal("0.001")  # the sample catalog's credits


def _options(argv: list[str]) -> dict[str, str]:
    return dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)


def backtest_population(con: duckdb.DuckDBPyConnection, start: datetime) -> CustomerInputs:
    """The backtest's customers for the events of table `events` (see the module doc)."""
    sizing = con.sql(
        "SELECT customer_id, count(*) AS n FROM events WHERE timestamp < ? GROUP BY customer_id",
        params=[start.replace(tzinfo=None) + timedelta(days=SIZING_DAYS)],
    ).pl()
    catalog = sample_catalog()
    from pricing_lab.simulation.simulate import cost

    costs = cost(con, catalog, CustomerInputs()).consumptions
    early = (
        costs.filter(pl.col("timestamp") < start + timedelta(days=SIZING_DAYS))
        .group_by("customer_id")
        .agg(pl.col("cost").sum())
    )
    burn = {c: Decimal(v) / SIZING_DAYS for c, v in early.iter_rows()}
    ids = sorted(set(sizing["customer_id"].to_list()) | set(burn))
    rows = np.arange(1, len(ids) + 1)
    u1, u2, u3, u4 = (stable_uniform(salt, rows) for salt in (11, 12, 13, 14))
    subscriptions, grants, recharges = [], [], []
    for i, customer in enumerate(ids):
        daily = burn.get(customer, Decimal(0))
        subscriptions.append(
            Subscription(
                subscription_id=f"{customer}:free", customer_id=customer, plan_id="free",
                start=start,
            )
        )  # fmt: skip
        grants.append(
            Grant(
                grant_id=f"{customer}:welcome", customer_id=customer, currency_id=CURRENCY,
                amount=Decimal(2000), type="PROMOTIONAL", effective_at=start,
                expires_at=start + timedelta(days=14),
            )
        )  # fmt: skip
        days = Decimal(7 * 2 ** (3 * float(u1[i]))).quantize(Decimal("0.1"))
        top_up = (daily * days).quantize(Decimal(1))
        if top_up > 0:
            grants.append(
                Grant(
                    grant_id=f"{customer}:top_up:0", customer_id=customer, currency_id=CURRENCY,
                    amount=top_up, type="PAID", effective_at=start, cost_basis=PAID_BASIS,
                    source="top_up",
                    expires_at=start + timedelta(days=60) if u2[i] < 0.3 else None,
                )
            )  # fmt: skip
        second = (daily * 14).quantize(Decimal(1))
        if u3[i] < 0.4 and second > 0:
            grants.append(
                Grant(
                    grant_id=f"{customer}:top_up:1", customer_id=customer, currency_id=CURRENCY,
                    amount=second, type="PAID", effective_at=start + timedelta(days=30),
                    cost_basis=PAID_BASIS, source="top_up",
                )
            )  # fmt: skip
        if u4[i] < 0.25 and daily > 0:
            recharges.append(
                AutoRecharge(
                    customer_id=customer, currency_id=CURRENCY,
                    threshold=(daily * 2).quantize(Decimal(1)),
                    target=(daily * 10).quantize(Decimal(1)) + 1,
                    monthly_spend_limit=(daily * 20 * UNIT_PRICE).quantize(Decimal("0.01")),
                    grant_expiry="1_month",
                )
            )  # fmt: skip
    return CustomerInputs(
        subscriptions=tuple(subscriptions),
        grants=tuple(grants),
        auto_recharges=tuple(recharges),
        customer_ids=frozenset(ids),
    )


def _datasets(options: dict[str, str]) -> list[tuple[str, duckdb.DuckDBPyConnection, datetime]]:
    real = duckdb.connect()
    load_sample_events(real)
    synthetic = duckdb.connect()
    events = int(options.get("synthetic-events", "600000"))
    path = DATA / f"forecast_synthetic_{events}.parquet"
    if not path.exists():
        generate_events(path, events=events, customers=200, days=120, seed=23, start=DEFAULT_START)
    from pricing_lab.events.ingest import ingest_events

    ingest_events(synthetic, str(path))
    return [("real traces", real, DEFAULT_START), ("synthetic", synthetic, DEFAULT_START)]


# (dataset, horizon, cuts): the real traces span 60 days, the synthetic events 120.
BACKTESTS = (
    ("real traces", "30d", 3),
    ("real traces", "14d", 5),
    ("synthetic", "30d", 6),
)


def run_backtests(options: dict[str, str]) -> int:
    default = BurnModel()
    model = BurnModel(
        window_days=int(options.get("window", default.window_days)),
        block_days=int(options.get("block", default.block_days)),
        resample_level=options.get("resample", "1") == "1",
    )
    print(f"burn model: {model}")
    catalog = sample_catalog()
    for name, con, start in _datasets(options):
        customers = backtest_population(con, start)
        for dataset, horizon, cuts in BACKTESTS:
            if dataset != name:
                continue
            began = time.perf_counter()
            rows = backtest(
                con, catalog, customers, horizon=horizon, cuts=cuts, model=model,
                seed=int(options.get("seed", "0")),
            )  # fmt: skip
            summary = backtest_summary(rows)
            seconds = time.perf_counter() - began
            print(f"{name}, horizon {horizon}, {cuts} cuts ({seconds:.1f} s):")
            with pl.Config(tbl_rows=20, tbl_cols=12, tbl_width_chars=160, float_precision=3):
                print(summary)
    return 0


def main(argv: list[str]) -> int:
    options = _options(argv)
    part = options.get("part")
    if part in (None, "backtest"):
        run_backtests(options)
    if part in (None, "speed"):
        return run_speed(options)
    if part is not None and part.endswith("-child"):
        print(json.dumps(_child(part.removesuffix("-child"), Path(options["events"]))))
    return 0


def run_speed(options: dict[str, str]) -> int:
    """Forecast vs one full replay of the same history, each in a fresh interpreter, in turns."""
    from benchmarks.replay_bench import CUSTOMERS, DAYS, START

    rows = int(options.get("rows", "10000000").replace("_", ""))
    repeat = int(options.get("repeat", "2"))
    events = DATA / f"replay_events_{rows}.parquet"
    if not events.exists():
        print(f"generating {rows:,} events for {CUSTOMERS:,} customers …", flush=True)
        generate_events(events, events=rows, customers=CUSTOMERS, days=DAYS, seed=7, start=START)
    figures: dict[str, list[dict[str, float]]] = {"replay": [], "forecast": []}
    for _ in range(repeat):
        for part in ("replay", "forecast"):
            figures[part].append(_in_child(part, events))
            last = figures[part][-1]
            print(f"  {part}: {last['total']:.2f} s, peak RSS {last['peak RSS GiB']:.2f} GiB "
                  + ", ".join(f"{k} {v:.2f}" for k, v in last.items()
                              if k not in ("total", "peak RSS GiB")), flush=True)  # fmt: skip
    replay = statistics.median(f["total"] for f in figures["replay"])
    forecast = statistics.median(f["total"] for f in figures["forecast"])
    print(f"full replay (read → replay → write every output), median of {repeat}: {replay:.2f} s")
    print(
        f"forecast ({CUSTOMERS:,} customers, 1,000 paths, horizon 30d; read → forecast → write), "
        f"median of {repeat}: {forecast:.2f} s"
    )
    print(f"  ratio to one full replay: {forecast / replay:.2f} (target ≤ 2)")
    return 0


def _in_child(part: str, events: Path) -> dict[str, float]:
    command = [sys.executable, "-m", "benchmarks", "forecast", f"--part={part}-child"]
    done = subprocess.run(
        [*command, f"--events={events}"], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{part} failed:\n{done.stdout}\n{done.stderr}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def _child(part: str, events: Path) -> dict[str, float]:
    """One measured part in this fresh process: seconds per step and peak RSS."""
    import tempfile

    from benchmarks.replay_bench import DAYS, START, workload_customers
    from pricing_lab.events.ingest import ingest_events
    from pricing_lab.forecast import forecast
    from pricing_lab.simulation.simulate import simulate

    catalog = sample_catalog()
    customers = workload_customers()
    steps: dict[str, float] = {}
    began = time.perf_counter()
    con = duckdb.connect()
    report = ingest_events(con, str(events))
    steps["read + validate"] = time.perf_counter() - began
    with tempfile.TemporaryDirectory(dir=DATA) as out:
        mark = time.perf_counter()
        if part == "replay":
            result = simulate(con, catalog, customers, ingest=report)
            result.write(out)
        else:
            table = forecast(
                con, catalog, customers, as_of=START + timedelta(days=DAYS), horizon="30d"
            )
            table.write_parquet(Path(out) / "forecast.parquet")
        steps[part] = time.perf_counter() - mark
    steps["total"] = time.perf_counter() - began
    steps["peak RSS GiB"] = peak_rss_bytes() / 1024**3
    return steps
