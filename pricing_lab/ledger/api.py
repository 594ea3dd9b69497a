"""`replay`: run a `ReplayInput` through an engine and return the SPEC §6 outputs as DataFrames."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

import numpy as np
import polars as pl

from pricing_lab.ledger.balances import balances_table, summary_table
from pricing_lab.ledger.inputs import PreparedReplay, prepare
from pricing_lab.ledger.invariants import ConsumptionKeys, assert_invariants, consumption_keys
from pricing_lab.ledger.model import ReplayInput

if TYPE_CHECKING:
    from pricing_lab.ledger.fast import EngineWork

Engine = Literal["fast", "reference"]
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayResult:
    """The outputs of one replay (SPEC §6), as Polars DataFrames.

    `ledger` and `denied_events` have the columns of `frames.ledger_schema` / `denied_schema`;
    `balances` one row per customer and currency; `summary` one row per currency (see
    docs/ledger.md).
    """

    scenario: str
    start: datetime
    until: datetime
    ledger: pl.DataFrame
    denied_events: pl.DataFrame
    balances: pl.DataFrame
    summary: pl.DataFrame

    def customer_ledger(self, customer_id: str) -> pl.DataFrame:
        """The ledger entries of one customer, in ledger order."""
        return self.ledger.filter(pl.col("customer_id") == customer_id)


@dataclass(slots=True)
class SharedWork:
    """What replays of the same events with other costs or settings (a comparison's scenarios)
    can share, handed from one replay to the next: the last replay's prepared input (its checked
    and ordered event columns, its grant table), the hash table of its consumption keys and the
    fast engine's work (what it derived from the event columns alone).

    A replay given one takes over only what provably equals its own (`inputs.prepare(like=…)`,
    `invariants.consumption_keys(like=…)`, `fast.EngineWork`), checks everything else as always,
    then leaves its own here for the next. Holding one keeps the last replay's inputs and the
    engine's work in memory.
    """

    prepared: PreparedReplay | None = None
    keys: ConsumptionKeys | None = None
    engine: EngineWork | None = None


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
    shared: SharedWork | None = None,
) -> ReplayResult:
    """Replay costed consumptions against grants and policies (SPEC §5) and build SPEC §6 outputs.

    `engine="fast"` (default) runs the compiled engine; `"reference"` the readable `Decimal` one;
    both give identical outputs. `progress(done, total)` is called as customers finish (see
    `stderr_progress`). The SPEC §5 invariants are checked at the end (`check=False` skips them,
    for benchmarks only); a violation raises `InvariantViolation`. Bad input raises
    `ValidationError` listing every problem. `shared`: work shared with the previous replay of
    the same events (see `SharedWork`); the outputs are the same with or without it.
    """
    prepared = prepare(replay_input, like=shared.prepared if shared is not None else None)
    ledger, denied = run_engine(prepared, engine, progress=progress, shared=shared)
    if check:
        keys = None
        if shared is not None:
            keys = consumption_keys(prepared.consumptions, like=shared.keys)
            shared.keys = keys
        assert_invariants(ledger, denied, prepared, keys=keys)
    if shared is not None:
        shared.prepared = prepared
    balances = balances_table(ledger, denied, prepared)
    return ReplayResult(
        scenario=replay_input.scenario,
        start=prepared.start,
        until=prepared.until,
        ledger=ledger,
        denied_events=denied,
        balances=balances,
        summary=summary_table(ledger, prepared, balances),
    )


def run_engine(
    prepared: PreparedReplay,
    engine: Engine,
    *,
    progress: Progress | None = None,
    shared: SharedWork | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The ledger and denied events of a prepared replay from one engine, unchecked. `shared`:
    the fast engine's work is taken from it and left in it for the next replay."""
    if engine == "reference":
        from pricing_lab.ledger.reference import replay_reference

        ledger, denied = replay_reference(prepared, progress)
        return chronological(ledger), denied
    if engine == "fast":
        from pricing_lab.ledger.fast import EngineWork, replay_fast

        work = None
        if shared is not None:
            work = shared.engine = shared.engine or EngineWork()
        return replay_fast(prepared, progress, work=work)  # already in ledger order
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
        pl.Series("entry_id", np.arange(1, ordered.height + 1, dtype=np.int64))
    )
