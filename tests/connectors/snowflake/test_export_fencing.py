"""Fencing: a stalled export that lost its lock never changes a target table.

A first run (A) takes the lock with a lease that is always already over (a run stalled past its
lease), a second run (B) takes the lock over, and a scheduler lets them pass their steps in a
given interleaving. Whatever the interleaving, the tables end as one uninterrupted run leaves
them, and no staging table or stage file is left behind. The default run covers the
interleavings where B takes over while A holds the lock (after A's lock, copy or merge step);
`PRICING_LAB_LONG=1` runs every interleaving of their steps.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from connectors.snowflake.config import SnowflakeCredentials
from connectors.snowflake.export import ExportOptions, FaultHook, export_tables
from connectors.snowflake.export_errors import LockLostError
from connectors.snowflake.tables import LEDGER_ENTRIES
from tests.connectors.snowflake.export_support import (
    LEDGER_V2,
    SchemaTarget,
    fetch,
    ledger_frame,
    schema_connect,
    snapshot,
    table_names,
)

BOOKKEEPING = ["LEDGER_ENTRIES", "EXPORT_RUNS", "EXPORT_RUN_TABLES"]
# The steps a scheduler interleaves: each run waits at these points for its turn.
GATES = ("begin", "lock", "copy", "merge", "record")
WAIT = 60.0


class Scheduler:
    """Lets runs pass their gates one at a time, in the order of a schedule of run names."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: set[str] = set()
        self._finished: set[str] = set()
        self._turn: str | None = None

    def hook(self, run: str) -> FaultHook:
        def gate(step: str, table: str) -> None:
            if step not in GATES:
                return
            with self._cond:
                self._waiting.add(run)
                self._cond.notify_all()
                assert self._cond.wait_for(lambda: self._turn == run, WAIT)
                self._turn = None
                self._waiting.discard(run)
                self._cond.notify_all()

        return gate

    def finished(self, run: str) -> None:
        with self._cond:
            self._finished.add(run)
            self._cond.notify_all()

    def grant(self, run: str) -> bool:
        """Let `run` pass its current gate and wait until it reaches the next one or ends;
        False when it had already ended."""
        with self._cond:
            assert self._cond.wait_for(lambda: run in self._waiting or run in self._finished, WAIT)
            if run in self._finished:
                return False
            self._turn = run
            self._cond.notify_all()
            assert self._cond.wait_for(lambda: self._turn is None, WAIT)
            assert self._cond.wait_for(lambda: run in self._waiting or run in self._finished, WAIT)
            return True


def _interleave(schedule: tuple[str, ...], target: SchemaTarget) -> tuple[dict[str, Any], int]:
    """Run A and B in `schedule`'s order; their outcomes and how much of it mattered (the
    schedule's length up to the first run's end: after that the order is forced)."""
    scheduler = Scheduler()
    tables = [LEDGER_ENTRIES.bind(ledger_frame(LEDGER_V2))]
    outcomes: dict[str, Any] = {}
    leases = {"A": timedelta(0), "B": timedelta(minutes=30)}

    def run(name: str) -> None:
        options = ExportOptions(fail_after=scheduler.hook(name), lock_ttl=leases[name])
        try:
            outcomes[name] = export_tables(target, tables, options).status
        except LockLostError:
            outcomes[name] = "lost the lock"
        except Exception as exc:  # pragma: no cover - reported by the assertion below
            outcomes[name] = exc
        finally:
            scheduler.finished(name)

    threads = {name: threading.Thread(target=run, args=(name,)) for name in ("A", "B")}
    for thread in threads.values():
        thread.start()
    mattered = len(schedule)
    for index, name in enumerate(schedule):
        if not scheduler.grant(name) and mattered == len(schedule):
            mattered = index
    for name in ("A", "B"):
        while scheduler.grant(name):
            pass
        threads[name].join(WAIT)
    return outcomes, mattered


def _schedules() -> Iterator[tuple[str, ...]]:
    """Every interleaving of A's and B's turns, A first (it holds the lock before B starts)."""
    turns = len(GATES)
    for positions in itertools.combinations(range(2 * turns - 1), turns - 1):
        rest = ["B"] * (2 * turns - 1)
        for position in positions:
            rest[position] = "A"
        yield ("A", *rest)


def _takeovers() -> list[tuple[str, ...]]:
    """B takes over after each of A's steps while A holds the lock (lock, copy, merge); then B
    runs to its end before A goes on, or A goes on first. (B before A's lock, or after A's last
    step, is two runs one after the other: the long run covers them with every interleaving.)"""
    turns = len(GATES)
    result = []
    for done in range(2, turns):
        before = ("A",) * done
        result.append((*before, *("B",) * turns, *("A",) * (turns - done)))
        if done in (2, 3):  # A at its copy or merge step when B takes over: A goes on first
            result.append((*before, "B", *("A",) * (turns - done), *("B",) * (turns - 1)))
    return result


def _check(credentials: SnowflakeCredentials, schedules: list[tuple[str, ...]]) -> None:
    reference_target = schema_connect(credentials)
    export_tables(reference_target, [LEDGER_ENTRIES.bind(ledger_frame(LEDGER_V2))])
    expected = snapshot(reference_target, BOOKKEEPING)
    seen: set[tuple[str, ...]] = set()
    for schedule in schedules:
        if any(schedule[:n] in seen for n in range(1, len(schedule) + 1)):
            continue  # the same as a run already checked: its order only differed after an end
        target = schema_connect(credentials)
        outcomes, mattered = _interleave(schedule, target)
        seen.add(schedule[:mattered])
        where = f"schedule {''.join(schedule)}: {outcomes}"
        assert set(outcomes.values()) <= {"succeeded", "unchanged", "lost the lock"}, where
        assert "succeeded" in outcomes.values(), where
        assert snapshot(target, BOOKKEEPING) == expected, where
        assert fetch(target, 'SELECT "HOLDER" FROM "EXPORT_LOCK"') == [(None,)], where
        assert table_names(target) == {*BOOKKEEPING, "EXPORT_LOCK"}, where
        assert fetch(target, "LIST @PRICING_LAB_EXPORT_STAGE") == [], where


def test_a_stalled_run_taken_over_at_any_step_never_changes_the_tables(
    registered_snowflake_credentials: SnowflakeCredentials,
) -> None:
    _check(registered_snowflake_credentials, _takeovers())


@pytest.mark.slow
def test_every_interleaving_of_a_stalled_run_and_its_successor_ends_as_one_run(
    registered_snowflake_credentials: SnowflakeCredentials,
) -> None:
    _check(registered_snowflake_credentials, list(_schedules()))
