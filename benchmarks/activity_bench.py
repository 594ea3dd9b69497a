"""The activity stream's cost: a full in-memory replay with and without `activity.parquet`.

Workload: `replay_bench`'s (synthetic events for 10k customers over 60 days, the sample catalog,
monthly plan grants, a promotional grant expiring after 14 days for everyone, auto-recharge with a
monthly spend limit on 20% of customers), with low-balance thresholds 1000 and 100 credits.
Both sides run `simulate(...)` then `write(out)` in this process, alternating, three times each;
the figures are medians and the ratio is with / without (the target: ≤ 1.15).

Run: `uv run --frozen --no-sync python -m benchmarks activity --rows=1000000`. With `--rollover`
the second side also has rollover on (50% of every plan's and add-on's monthly credits, issue 22's
"activity and rollover on" against both off).
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import duckdb

from benchmarks.replay_bench import CUSTOMERS, DATA, DAYS, START, _rows, workload_customers
from pricing_lab.activity import ActivityOptions
from pricing_lab.catalog.model import Catalog, CreditEntitlement, Rollover
from pricing_lab.events.ingest import ingest_events
from pricing_lab.events.synthetic import generate_events
from pricing_lab.simulation.demo import sample_catalog
from pricing_lab.simulation.simulate import simulate

THRESHOLDS = {"credits": (Decimal(1000), Decimal(100))}


def main(argv: list[str]) -> int:
    rows = _rows(argv)
    DATA.mkdir(exist_ok=True)
    events = DATA / f"replay_events_{rows}.parquet"
    if not events.exists():
        generate_events(events, events=rows, customers=CUSTOMERS, days=DAYS, seed=7, start=START)
    plain = sample_catalog()
    rolling = with_rollover(plain) if "--rollover" in argv else plain
    customers = workload_customers()
    con = duckdb.connect()
    report = ingest_events(con, str(events))
    timings: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(dir=DATA) as scratch:
        for turn in range(7):  # a warm-up, then three of each, alternating
            with_activity = turn % 2 == 1
            began = time.perf_counter()
            result = simulate(
                con,
                rolling if with_activity else plain,
                customers,
                ingest=report,
                activity=ActivityOptions(thresholds=THRESHOLDS) if with_activity else None,
            )
            result.write(Path(scratch) / str(turn))
            took = time.perf_counter() - began
            if turn:
                timings[with_activity].append(took)
            events_out = 0 if result.activity is None else result.activity.height
            entries = result.replay.ledger.height
            shown = f"{took:.2f} s, {events_out} activity events, {entries} ledger entries"
            print(f"run {turn}: on {with_activity}: {shown}")
    without, with_ = statistics.median(timings[False]), statistics.median(timings[True])
    print(f"{rows} events: replay + write {without:.2f} s without activity, {with_:.2f} s with")
    print(f"ratio with / without: {with_ / without:.3f} (target <= 1.15)")
    return 0


def with_rollover(catalog: Catalog) -> Catalog:
    """`catalog` with 50% of every plan's and add-on's credit entitlement rolling over."""
    half = Rollover(max_percent=Decimal(50))

    def rolled(offer):  # type: ignore[no-untyped-def]
        entitlements = tuple(
            dataclasses.replace(e, rollover=half) if isinstance(e, CreditEntitlement) else e
            for e in offer.entitlements
        )
        return dataclasses.replace(offer, entitlements=entitlements)

    return dataclasses.replace(
        catalog,
        plans=tuple(rolled(p) for p in catalog.plans),
        addons=tuple(rolled(a) for a in catalog.addons),
    )
