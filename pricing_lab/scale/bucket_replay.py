"""One bucket's replay: its input files in, its result files out; safe in any process.

`replay_bucket(BucketTask)` is the unit an executor runs. It reads the job's manifest and the
bucket's inputs, replays them with the manifest's horizon and settings, and writes under
`results/bucket=NNNN/`: `ledger.parquet` (in ledger order, entry ids of the bucket alone),
`denied_events.parquet`, `balances.parquet`, `summary.parquet`, `plan_summary.parquet`,
`feature_totals.parquet`, `activity.parquet` (the bucket's activity stream, `replay_activity`
with the manifest's options; not written when the replay derives none), `revenue.parquet`
(`margin.recognised_revenue` of the bucket's ledger: what the margin needs of it) and, last,
`done.json` (entry count and the ledger's rows per window of the merge's time grid). Names are
fixed: a retried bucket first removes what an earlier attempt left and writes the same names
again, so nothing is ever there twice, and a bucket without `done.json` is not done.
"""

from __future__ import annotations

import json
import resource
import time
from dataclasses import dataclass, replace
from datetime import datetime

import duckdb
import numpy as np

from pricing_lab.activity.stream import replay_activity
from pricing_lab.catalog.model import CreditCurrency
from pricing_lab.ledger import ReplayInput, replay
from pricing_lab.ledger.balances import feature_summary
from pricing_lab.ledger.model import Enforcement
from pricing_lab.scale.buckets import (
    ROW_GROUP_ROWS,
    BucketInputs,
    Manifest,
    bucket_folder,
    read_bucket_inputs,
    read_job_header,
    result_path,
)
from pricing_lab.scale.storage import Store
from pricing_lab.scale.workers import duckdb_config
from pricing_lab.simulation.margin import recognised_revenue
from pricing_lab.simulation.simulate import plan_summary
from pricing_lab.timeutil import to_micros

TIME_WINDOWS = 4096  # the merge's grid over the horizon; consecutive windows fill a row group
DONE = "done.json"


@dataclass(frozen=True, slots=True)
class BucketTask:
    """Replay bucket `bucket` of the job stored at `store`."""

    store: Store
    bucket: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BucketDone:
    """What a finished bucket reports: its size, time (wall and CPU of the process that ran
    it: every thread's) and that process's peak memory so far."""

    bucket: int
    consumptions: int
    entries: int
    seconds: float
    cpu_seconds: float
    peak_memory: int  # bytes: the peak resident size of the process that ran it


def time_grid(start: datetime, until: datetime) -> np.ndarray:
    """Window bounds for the merge: TIME_WINDOWS − 1 instants evenly over the horizon."""
    lo, hi = to_micros(start), to_micros(until)
    return np.unique(np.linspace(lo, hi, TIME_WINDOWS + 1, dtype=np.float64)[1:-1].astype(np.int64))


def bucket_input(
    manifest: Manifest, currencies: tuple[CreditCurrency, ...], inputs: BucketInputs
) -> ReplayInput:
    """The replay input of one bucket's tables with the job's horizon and settings."""
    enforcement: Enforcement = manifest.enforcement  # type: ignore[assignment]
    return ReplayInput(
        currencies=currencies,
        grants=inputs.grants,
        recurring=inputs.recurring,
        auto_recharges=inputs.auto_recharges,
        consumptions=inputs.consumptions,
        enforcement=enforcement,
        start=manifest.start,
        until=manifest.until,
        scenario=manifest.scenario,
    )


def replay_bucket(task: BucketTask) -> BucketDone:
    """Replay one bucket and write its results (see the module docstring)."""
    began, began_cpu = time.perf_counter(), time.process_time()
    store = task.store
    manifest, currencies = read_job_header(store)
    inputs = read_bucket_inputs(store, task.bucket)
    consumptions = inputs.consumptions.height
    replayed = replay(
        bucket_input(manifest, currencies, inputs),
        engine=manifest.engine,  # type: ignore[arg-type]
    )
    # The costed consumptions are not needed past the replay: let go of them before the outputs
    # are derived (a task's peak is there).
    inputs = replace(inputs, consumptions=inputs.consumptions.clear())
    replay_input = bucket_input(manifest, currencies, inputs)
    ledger = replayed.ledger
    with duckdb.connect(config=duckdb_config()) as con:
        con.execute("SET enable_progress_bar = false")  # a task prints nothing (run_all reports)
        revenue = recognised_revenue(
            con,
            ledger,
            grants=inputs.grants,
            currencies=currencies,
            subscriptions=inputs.subscriptions,
        )
    tables = {
        "ledger": ledger,
        "grants": replayed.grants,
        "denied_events": replayed.denied_events,
        "balances": replayed.balances,
        "summary": replayed.summary,
        "plan_summary": plan_summary(ledger, inputs.subscriptions, balances=replayed.balances),
        "feature_totals": feature_summary(ledger),
        "revenue": revenue,
    }
    if manifest.activity is not None:
        tables["activity"] = replay_activity(replayed, replay_input, manifest.activity)
    micros = ledger["timestamp"].dt.epoch("us").to_numpy()
    bounds = np.searchsorted(micros, time_grid(manifest.start, manifest.until), side="left")
    window_rows = np.diff(np.concatenate([[0], bounds, [len(micros)]]))
    store.remove(f"results/{bucket_folder(task.bucket)}")  # what an earlier attempt left
    for name, frame in tables.items():
        store.write_frame(
            result_path(task.bucket, f"{name}.parquet"), frame, row_group_rows=ROW_GROUP_ROWS
        )
    done = BucketDone(
        bucket=task.bucket,
        consumptions=consumptions,
        entries=ledger.height,
        seconds=time.perf_counter() - began,
        cpu_seconds=time.process_time() - began_cpu,
        peak_memory=_peak_memory(),
    )
    record = {"entries": done.entries, "window_rows": [int(n) for n in window_rows]}
    store.write_text(result_path(task.bucket, DONE), json.dumps(record) + "\n")
    return done


@dataclass(frozen=True, slots=True, kw_only=True)
class Finished:
    """A finished bucket's `done.json`: its ledger's entries and rows per merge window."""

    entries: int
    window_rows: tuple[int, ...]


def _peak_memory() -> int:
    """This process's peak resident memory: `VmHWM` on Linux (`ru_maxrss` would carry the
    peak of the parent a spawned worker was started from)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def read_done(store: Store, bucket: int) -> Finished | None:
    """A bucket's `done.json`, or None when the bucket has not finished."""
    path = result_path(bucket, DONE)
    if not store.exists(path):
        return None
    record = json.loads(store.read_text(path))
    return Finished(entries=int(record["entries"]), window_rows=tuple(record["window_rows"]))
