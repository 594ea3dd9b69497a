"""Ledger engine benchmark: the fast engine against the reference replay on the same consumptions.

Engine only (costs are given): N costed consumptions for 10k customers over 2024, monthly
recurring grants, expiring promotional grants, auto-recharge on 20% of customers. Measures the
reference and the fast engine on the same `--rows` consumptions (default 1M; each engine's median
of 5 runs, the engines taking turns) and the fast engine alone on `--big` consumptions (default
10M; `--big=0` skips it). Run:
`uv run --frozen --no-sync python -m benchmarks ledger --rows=100000 --big=0` for a quick run.
`--in-blocks`: each engine's 5 runs one after another instead of in turns. On this virtual
machine memory freed for about 2 s is handed back to the host, and a fast run that follows a 30 s
reference run writes only such pages again (benchmarks/README.md, "ledger and replay"); in blocks,
a fast run reuses what the one before it freed, as a user's second replay in a session does.
`--rollover` instead measures rollover's cost: the same `--rows` consumptions with and without a
50% rollover on the monthly plan credits, fast engine and invariant check, taking turns.
`--phases` instead times the fast engine's phases on the `--rows` consumptions, in one process:
input columns (`columns.kernel_input`), the kernel (`fast._run_kernel`), output assembly
(`assembly`), each one's median wall and CPU time (all threads) over REPEATS runs.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pricing_lab.catalog.model import CreditCurrency, Rollover
from pricing_lab.ledger import AutoRecharge, Grant, RecurringEntitlement, ReplayInput
from pricing_lab.ledger.api import run_engine
from pricing_lab.ledger.inputs import prepare
from pricing_lab.ledger.invariants import check_invariants

DATA = Path(__file__).parent / "data"
CUSTOMERS = 10_000
CURRENCY = CreditCurrency(id="CR", name="Credits", unit_price=Decimal("0.01"), precision=2)
YEAR_START = datetime(2024, 1, 1, tzinfo=UTC)
YEAR_US = 366 * 86_400 * 1_000_000
REPEATS = 5


def _option(argv: list[str], name: str, default: int) -> int:
    for index, arg in enumerate(argv):
        if arg.startswith(f"--{name}="):
            return int(arg.split("=", 1)[1].replace("_", ""))
        if arg == f"--{name}" and index + 1 < len(argv):
            return int(argv[index + 1].replace("_", ""))
    return default


def consumptions(rows: int, seed: int = 5) -> pl.DataFrame:
    """`rows` costed consumptions (one feature each), cached as Parquet under benchmarks/data."""
    path = DATA / f"ledger_consumptions_{rows}.parquet"
    if path.exists():
        return pl.read_parquet(path)
    rng = np.random.default_rng(seed)
    customer = rng.integers(0, CUSTOMERS, rows)
    micros = np.sort(rng.integers(0, YEAR_US, rows))
    frame = pl.DataFrame(
        {
            "event_id": pl.Series(np.arange(rows)).cast(pl.String).str.zfill(10),
            "customer_id": pl.Series(customer).cast(pl.String).str.zfill(5).str.replace("^", "c"),
            "timestamp": pl.Series(micros + int(YEAR_START.timestamp() * 1_000_000)).cast(
                pl.Datetime("us", "UTC")
            ),
            "feature_id": pl.Series(["chat", "embed", "image"]).gather(rng.integers(0, 3, rows)),
            "currency_id": pl.Series(["CR"]).gather(np.zeros(rows, dtype=np.int64)),
            "cost": pl.Series(rng.integers(0, 500, rows)).cast(pl.Decimal(38, 0))
            / pl.Series([100]).cast(pl.Decimal(38, 0)).gather(np.zeros(rows, dtype=np.int64)),
        }
    ).with_columns(pl.col("cost").cast(pl.Decimal(38, 2)))
    DATA.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path)
    return frame


def replay_input(frame: pl.DataFrame, rollover: Rollover | None = None) -> ReplayInput:
    """Monthly plan grants for every customer (with `rollover`), a 30-day promotion,
    auto-recharge on 20%."""
    customers = [f"c{i:05d}" for i in range(CUSTOMERS)]
    recurring = tuple(
        RecurringEntitlement(
            customer_id=c,
            source_id="pro",
            source_kind="plan",
            currency_id="CR",
            amount=Decimal(300),
            cadence="monthly",
            start=datetime(2024, 1, 1 + i % 28, tzinfo=UTC),
            rollover=rollover,
        )
        for i, c in enumerate(customers)
    )
    grants = tuple(
        Grant(
            grant_id=f"{c}:welcome",
            customer_id=c,
            currency_id="CR",
            amount=Decimal(100),
            type="PROMOTIONAL",
            effective_at=datetime(2024, 1, 1, tzinfo=UTC),
            expires_at=datetime(2024, 1, 31, tzinfo=UTC),
        )
        for c in customers
    )
    recharges = tuple(
        AutoRecharge(
            customer_id=c,
            currency_id="CR",
            threshold=Decimal(50),
            target=Decimal(500),
            monthly_spend_limit=Decimal(20),
            grant_expiry="1_year",
        )
        for c in customers[::5]
    )
    return ReplayInput(
        currencies=(CURRENCY,),
        grants=grants,
        recurring=recurring,
        auto_recharges=recharges,
        consumptions=frame,
        scenario="bench",
    )


def _timed(label: str, action):  # type: ignore[no-untyped-def]
    began = time.perf_counter()
    value = action()
    elapsed = time.perf_counter() - began
    print(f"  {label:<44} {elapsed:9.2f} s", flush=True)
    return value, elapsed


def _median(actions, *, in_blocks: bool = False):  # type: ignore[no-untyped-def]
    """Each action's first value and its median time over REPEATS runs. By default the actions
    take turns (one run of each per round): a machine that is slower for a minute slows them
    alike. `in_blocks`: each action's runs one after another instead (see `--in-blocks`). Only
    the first run's value is kept: the others' memory is freed as a user's would be."""
    runs: dict[str, list] = {label: [] for label in actions}  # type: ignore[type-arg]
    first: dict[str, Any] = {}
    rounds = (
        [(i, label) for label in actions for i in range(REPEATS)]
        if in_blocks
        else [(i, label) for i in range(REPEATS) for label in actions]
    )
    for i, label in rounds:
        value, elapsed = _timed(f"{label} (run {i + 1})", actions[label])
        first.setdefault(label, value)
        del value
        runs[label].append(elapsed)
    median = {}
    for label, times in runs.items():
        median[label] = (first[label], sorted(times)[len(times) // 2])
        print(
            f"  {label + ', median of ' + str(REPEATS):<44} {median[label][1]:9.2f} s", flush=True
        )
    return median


def rollover_cost(rows: int) -> int:
    """The fast engine (and the invariant check) with and without rollover, medians, one run."""
    frame = consumptions(rows)
    half = Rollover(max_percent=Decimal(50))
    print(f"rollover cost, {rows:,} consumptions, {CUSTOMERS:,} customers", flush=True)
    plain = prepare(replay_input(frame))
    rolling = prepare(replay_input(frame, half))
    run_engine(prepare(replay_input(frame.head(1000), half)), "fast")  # compile / load the cache

    def replay_and_check(prepared):  # type: ignore[no-untyped-def]
        ledger, denied = run_engine(prepared, "fast")
        assert check_invariants(ledger, denied, prepared) == []
        return ledger

    best = _median(
        {
            "without rollover": lambda: replay_and_check(plain),
            "with rollover": lambda: replay_and_check(rolling),
        }
    )
    with_ledger, with_time = best["with rollover"]
    _, without_time = best["without rollover"]
    rolled = with_ledger.filter(pl.col("entry_type") == "ROLLED_OVER").height
    print(f"  ROLLED_OVER entries: {rolled:,}; with / without: {with_time / without_time:.3f}×")
    return 0


def phases(rows: int) -> int:
    """The fast engine's phases, one after the other, REPEATS times: median wall and CPU."""
    from pricing_lab.ledger import assembly, columns, fast

    frame = consumptions(rows)
    print(f"fast engine phases, {rows:,} consumptions, {CUSTOMERS:,} customers", flush=True)
    prepared = prepare(replay_input(frame))
    run_engine(prepare(replay_input(frame.head(1000))), "fast")  # compile / load the cache
    run_engine(prepared, "fast")  # a first run, not counted

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    timings: dict[str, list[tuple[float, float]]] = {}

    def timed(label: str, action: Callable[..., Any], *args: Any) -> Any:
        wall, used = time.perf_counter(), cpu()
        value = action(*args)
        timings.setdefault(label, []).append((time.perf_counter() - wall, cpu() - used))
        return value

    def outputs(kernel_rows: Any, denied: Any, inputs: Any) -> Any:
        ledger = assembly.ledger_frame(kernel_rows, inputs, prepared)
        return ledger, assembly.denied_frame(denied, inputs, prepared)

    for _ in range(REPEATS):
        inputs = timed("input columns", columns.kernel_input, prepared)
        kernel_rows, denied = timed("kernel", fast._run_kernel, inputs, None)
        timed("output assembly", outputs, kernel_rows, denied, inputs)
    for label, runs in timings.items():
        walls, cpus = sorted(w for w, _ in runs), sorted(c for _, c in runs)
        middle = len(runs) // 2
        print(
            f"  {label:<20} wall median {walls[middle] * 1000:7.1f} ms "
            f"(runs {walls[0] * 1000:.1f}–{walls[-1] * 1000:.1f}), "
            f"CPU median {cpus[middle] * 1000:7.1f} ms",
            flush=True,
        )
    return 0


def main(argv: list[str]) -> int:
    rows = _option(argv, "rows", 1_000_000)
    if "--rollover" in argv:
        return rollover_cost(rows)
    if "--phases" in argv:
        return phases(rows)
    big = _option(argv, "big", 10_000_000)
    frame = consumptions(rows)
    print(f"ledger engine, {rows:,} consumptions, {CUSTOMERS:,} customers", flush=True)
    prepared, _ = _timed("prepare + validate (shared)", lambda: prepare(replay_input(frame)))
    run_engine(prepare(replay_input(frame.head(1000))), "fast")  # compile / load the cache
    # Median of REPEATS runs for each engine, taking turns: the machine is shared and noisy.
    best = _median(
        {
            "fast engine": lambda: run_engine(prepared, "fast"),
            "reference engine": lambda: run_engine(prepared, "reference"),
        },
        in_blocks="--in-blocks" in argv,
    )
    (fast_ledger, fast_denied), fast = best["fast engine"]
    (ref_ledger, _), reference = best["reference engine"]
    check = _median(
        {"invariant check": lambda: check_invariants(fast_ledger, fast_denied, prepared)}
    )
    problems, checked = check["invariant check"]
    assert problems == [], problems
    same = ref_ledger.equals(fast_ledger)
    print(f"  ledger entries: {fast_ledger.height:,}; identical ledgers: {same}")
    print(f"  fast engine vs reference: {reference / fast:,.0f}× faster")
    print(f"  fast engine + invariant check vs reference: {reference / (fast + checked):,.0f}×")
    if big:
        big_frame = consumptions(big)
        print(f"ledger engine, {big:,} consumptions (fast engine only)", flush=True)
        big_prepared, prep = _timed("prepare + validate", lambda: prepare(replay_input(big_frame)))
        (ledger, denied), engine = _timed("fast engine", lambda: run_engine(big_prepared, "fast"))
        problems, checked = _timed(
            "invariant check", lambda: check_invariants(ledger, denied, big_prepared)
        )
        assert problems == [], problems
        print(f"  ledger entries: {ledger.height:,}; total {prep + engine + checked:.2f} s")
    return 0 if same else 1
