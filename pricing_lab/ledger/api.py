"""`replay` and `replay_partition`: a replay's inputs in, the SPEC §6 outputs out, as tables.

Both are plain functions of their arguments: no state kept between calls, nothing changed in the
process, safe to call from any thread or process (the scale-out runs `replay_partition` in worker
processes, one bucket of customers each).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar

import polars as pl

from pricing_lab.catalog.model import CreditCurrency
from pricing_lab.ledger.balances import balances_table, money_scale, summary_table
from pricing_lab.ledger.grant_table import grant_records
from pricing_lab.ledger.grants import grants_table
from pricing_lab.ledger.inputs import PreparedReplay, prepare
from pricing_lab.ledger.invariants import assert_invariants
from pricing_lab.ledger.model import (
    AutoRecharge,
    Consumption,
    Enforcement,
    Grant,
    RecurringEntitlement,
    ReplayInput,
)

Engine = Literal["fast", "reference"]
Progress = Callable[[int, int], None]
Record = TypeVar("Record")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayResult:
    """The outputs of one replay (SPEC §6), as Polars DataFrames.

    `ledger` and `denied_events` have the columns of `frames.ledger_schema` / `denied_schema`,
    `grants` those of `frames.grants_schema`; `balances` one row per customer and currency;
    `summary` one row per currency (see docs/ledger.md).
    """

    scenario: str
    start: datetime
    until: datetime
    ledger: pl.DataFrame
    denied_events: pl.DataFrame
    balances: pl.DataFrame
    summary: pl.DataFrame
    grants: pl.DataFrame

    def customer_ledger(self, customer_id: str) -> pl.DataFrame:
        """The ledger entries of one customer, in ledger order."""
        return self.ledger.filter(pl.col("customer_id") == customer_id)


def stderr_progress(label: str = "replay") -> Progress:
    """A progress callback writing one updating line to stderr (at most ~10 updates a second)."""
    last = [0.0]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= 0.1:
            last[0] = now
            end = "\n" if done == total else ""
            print(f"\r{label}: {done}/{total} customers", end=end, file=sys.stderr, flush=True)

    return report


def replay(
    replay_input: ReplayInput,
    engine: Engine = "fast",
    *,
    progress: Progress | None = None,
    check: bool = True,
) -> ReplayResult:
    """Replay costed consumptions against grants and policies (SPEC §5) and build SPEC §6 outputs.

    `engine="fast"` (default) runs the compiled engine; `"reference"` the readable `Decimal` one;
    both give identical outputs. `progress(done, total)` is called as customers finish (see
    `stderr_progress`). The SPEC §5 invariants are checked at the end (`check=False` skips them,
    for benchmarks only); a violation raises `InvariantViolation`. Bad input raises
    `ValidationError` listing every problem, before anything runs.
    """
    prepared = prepare(replay_input)
    ledger, denied = run_engine(prepared, engine, progress=progress)
    if check:
        assert_invariants(ledger, denied, prepared)
    balances = balances_table(ledger, denied, prepared)
    return ReplayResult(
        scenario=prepared.scenario,
        start=prepared.start,
        until=prepared.until,
        ledger=ledger,
        denied_events=denied,
        balances=balances,
        summary=summary_table(ledger, prepared, balances),
        grants=grants_table(ledger, prepared, money_scale(prepared)),
    )


def replay_partition(
    *,
    consumptions: pl.DataFrame | Sequence[Consumption],
    currencies: Sequence[CreditCurrency],
    start: datetime,
    until: datetime,
    grants: pl.DataFrame | Sequence[Grant] = (),
    recurring: pl.DataFrame | Sequence[RecurringEntitlement] = (),
    auto_recharges: pl.DataFrame | Sequence[AutoRecharge] = (),
    enforcement: Enforcement = "overdraft",
    scenario: str = "base",
    engine: Engine = "fast",
    progress: Progress | None = None,
) -> ReplayResult:
    """The replay of one partition of customers: tables in, tables out.

    Customers never share credits (SPEC §5), so a replay's customers can be cut into partitions
    replayed apart (in any process or machine) and their outputs put together: each partition's
    ledger is its customers' entries of the whole replay. The horizon `[start, until)` is the
    whole replay's (decided once, before partitions run); `entry_id` numbers the partition's own
    ledger (a merge renumbers).

    Tables: `consumptions` as costing delivers them (`event_id, customer_id, timestamp,
    feature_id, currency_id, cost`); `grants` with the columns of the `grants` output
    (`frames.grants_schema`, without `scenario`); `recurring` and `auto_recharges` with the
    fields of `RecurringEntitlement` / `AutoRecharge` as columns. Records are accepted too.
    Returns the outputs of `replay`, the invariants checked.
    """
    replay_input = ReplayInput(
        currencies=tuple(currencies),
        grants=_records(grants, Grant, grant_records),
        recurring=_records(recurring, RecurringEntitlement),
        auto_recharges=_records(auto_recharges, AutoRecharge),
        consumptions=consumptions,
        enforcement=enforcement,
        start=start,
        until=until,
        scenario=scenario,
    )
    return replay(replay_input, engine, progress=progress)


def _records(
    given: pl.DataFrame | Sequence[Record],
    kind: type[Record],
    convert: Callable[[pl.DataFrame], tuple[Any, ...]] | None = None,
) -> tuple[Record, ...]:
    """Records of `kind` from a table with their fields as columns (or the records given)."""
    if not isinstance(given, pl.DataFrame):
        return tuple(given)
    if convert is not None:
        return convert(given)
    fields = [f.name for f in dataclasses.fields(kind)]  # type: ignore[arg-type]
    present = [name for name in fields if name in given.columns]
    return tuple(kind(**row) for row in given.select(present).iter_rows(named=True))


def run_engine(
    prepared: PreparedReplay, engine: Engine, *, progress: Progress | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The ledger (in ledger order) and denied events of a prepared replay from one engine,
    unchecked."""
    if engine == "reference":
        from pricing_lab.ledger.reference import replay_reference

        ledger, denied = replay_reference(prepared, progress)
        return chronological(ledger), denied
    if engine == "fast":
        from pricing_lab.ledger.fast import replay_fast

        return replay_fast(prepared, progress)  # already in ledger order
    raise ValueError(f"unknown engine {engine!r}: use 'fast' or 'reference'")


def chronological(ledger: pl.DataFrame) -> pl.DataFrame:
    """The engines' per-customer ledger in ledger order: by time, then customer id, then the
    customer's own order of things; `entry_id` renumbered 1, 2, ….

    Why chronological: replaying the same history with later events added leaves every entry
    before the earlier horizon unchanged *and at the same entry_id* (nothing before `until`
    depends on what comes after it), so exports can move only what is new (`entry_id` above the
    last exported one).
    """
    if ledger.is_empty():
        return ledger
    ordered = ledger.sort(["timestamp", "customer_id", "entry_id"])
    return ordered.with_columns(
        pl.int_range(1, ordered.height + 1, dtype=pl.Int64, eager=True).alias("entry_id")
    )
