"""A replay over customer buckets: write the buckets, run them on an executor, merge the files.

`simulate_in_buckets(...)` is `simulate(...).write(out_dir)` for replays spread over processes
or machines. Its three steps are public for callers that need them apart:

1. `write_buckets` — checks the customer inputs, counts events per customer and names any
   customer too big for one task's memory (before anything runs), chooses the bucket count,
   costs the events (a group of buckets at a time, so the costed table is never whole in
   memory), writes each bucket's inputs, decides the horizon and every other replay-wide value
   and writes them in the manifest (`buckets`), and the costs to serve of the events costing
   did not reject (`margin.served_costs`, in DuckDB over the events table: the merge takes off
   those of the events the buckets deny and adds the buckets' recognised revenue to them).
2. `run_buckets` — one `bucket_replay.replay_bucket` task per bucket on an executor (in-process,
   a local process pool or Ray), failed buckets retried, progress as buckets done / total.
3. `merge.merge_buckets` — the output files, byte for byte those of a replay held in memory.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl

from pricing_lab.activity.stream import DEFAULT_ACTIVITY, ActivityOptions
from pricing_lab.catalog.model import Catalog
from pricing_lab.errors import InputError, ValidationError
from pricing_lab.events.ingest import IngestReport, quote_ident
from pricing_lab.ledger import ReplayInput, recurring_entitlements
from pricing_lab.ledger.balances import money_scale
from pricing_lab.ledger.inputs import default_horizon, prepare
from pricing_lab.ledger.model import Enforcement
from pricing_lab.outputs import scenario_folder_name
from pricing_lab.scale.bucket_replay import BucketDone, BucketTask, replay_bucket
from pricing_lab.scale.buckets import (
    ROW_GROUP_ROWS,
    SERVING,
    Manifest,
    bucket_folder,
    bucket_of,
    customer_hash,
    write_consumptions,
    write_customer_records,
    write_job_header,
)
from pricing_lab.scale.executors import Executor, LocalExecutor, Progress, run_all
from pricing_lab.scale.merge import merge_buckets
from pricing_lab.scale.sizing import (
    AUTO,
    AUTO_TASK_MEMORY,
    BYTES_PER_EVENT,
    DEFAULT_TASK_MEMORY,
    TASK_BASE_MEMORY,
)
from pricing_lab.scale.storage import Store
from pricing_lab.simulation.cost_to_serve import serve_costs
from pricing_lab.simulation.costing import REJECTED_COLUMNS, Costing, check_event_ids, cost_events
from pricing_lab.simulation.customers import CustomerInputs
from pricing_lab.simulation.margin import served_costs
from pricing_lab.simulation.partitioned import input_customer_ids
from pricing_lab.simulation.simulate import (
    SimulationResult,
    customer_problems,
    unusable_values_rejected,
    with_ingest_rejected,
)
from pricing_lab.timeutil import as_utc

EVENTS_PER_COSTING = 2_000_000  # events costed at once while the buckets are written
_BUCKET_EVENTS = "__bucket_events"
_BUCKET_CUSTOMERS = "__bucket_customers"


def task_memory_needed(events: int) -> int:
    """Bytes a task replaying `events` events is expected to need at its peak."""
    return TASK_BASE_MEMORY + events * BYTES_PER_EVENT


@dataclass(frozen=True, slots=True, kw_only=True)
class BucketJob:
    """Buckets written and ready to run: where they are, the manifest, events per bucket, and
    the events rejected while reading and costing (they belong to no bucket)."""

    store: Store
    manifest: Manifest
    bucket_events: tuple[int, ...]
    rejected_events: pl.DataFrame
    ingest: IngestReport | None = None

    @property
    def tasks(self) -> list[BucketTask]:
        return [BucketTask(self.store, b) for b in range(self.manifest.buckets)]

    @property
    def task_memory(self) -> list[int]:
        """Bytes each bucket's task asks its executor for."""
        return [task_memory_needed(n) for n in self.bucket_events]


def events_per_bucket(task_memory: int = DEFAULT_TASK_MEMORY) -> int:
    """The events of a bucket `auto` aims at on average: half what a task of AUTO_TASK_MEMORY
    (or of `task_memory`, if less) replays by the memory model."""
    budget = min(task_memory, AUTO_TASK_MEMORY) - TASK_BASE_MEMORY
    return max(1, budget // BYTES_PER_EVENT // 2)


def bucket_count(
    events_per_customer: dict[str | None, int],
    *,
    buckets: int = AUTO,
    parallelism: int = 1,
    task_memory: int = DEFAULT_TASK_MEMORY,
) -> int:
    """The number of buckets: `buckets`, or with AUTO enough for `events_per_bucket` events
    each on average, and at least two per parallel task. Raises `InputError` naming every
    customer whose events alone need more than `task_memory` (one customer is never split)."""
    too_big = sorted(
        (
            (count, customer)
            for customer, count in events_per_customer.items()
            if task_memory_needed(count) > task_memory
        ),
        key=lambda pair: (-pair[0], str(pair[1])),
    )
    if too_big:
        named = ", ".join(f"{customer!r} ({count:,} events)" for count, customer in too_big[:5])
        more = f" and {len(too_big) - 5} more" if len(too_big) > 5 else ""
        raise InputError(
            f"{len(too_big)} customer(s) too big for one task's memory of "
            f"{task_memory / (1 << 30):.3g} GiB (about {BYTES_PER_EVENT} bytes per event plus "
            f"{TASK_BASE_MEMORY >> 20} MiB): {named}{more}; give tasks more memory"
        )
    if buckets > 0:
        return buckets
    total = sum(events_per_customer.values())
    count = max(1, math.ceil(total / events_per_bucket(task_memory)), 2 * parallelism)
    return _apart(events_per_customer, count, limit=min(task_memory, AUTO_TASK_MEMORY))


def _apart(events_per_customer: dict[str | None, int], count: int, *, limit: int) -> int:
    """`count`, or the smallest larger count (up to 4×) whose every bucket fits a task of
    `limit` bytes by the memory model: customers hash into buckets unevenly, and two big ones
    may share one. When none fits, the count up to 4× whose largest bucket is smallest; when
    the biggest customer alone passes `limit`, `count` (its bucket cannot fit)."""
    if not events_per_customer:
        return count
    hashes = np.array(
        [0 if c is None else customer_hash(c) for c in events_per_customer], dtype=np.uint64
    )
    events = np.array(list(events_per_customer.values()), dtype=np.int64)
    if task_memory_needed(int(events.max())) > limit:
        return count
    best, smallest = count, None
    for candidate in range(count, 4 * count + 1):
        largest = int(np.bincount(hashes % np.uint64(candidate), weights=events).max())
        if task_memory_needed(largest) <= limit:
            return candidate
        if smallest is None or largest < smallest:
            best, smallest = candidate, largest
    return best


def write_buckets(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    customers: CustomerInputs,
    *,
    store: Store,
    buckets: int = AUTO,
    parallelism: int = 1,
    task_memory: int = DEFAULT_TASK_MEMORY,
    events: str = "events",
    ingest: IngestReport | None = None,
    enforcement: Enforcement = "overdraft",
    start: datetime | None = None,
    until: datetime | None = None,
    scenario: str = "base",
    engine: str = "fast",
    costing: Costing | None = None,
    activity: ActivityOptions | None = DEFAULT_ACTIVITY,
    serving: pl.DataFrame | None = None,
) -> BucketJob:
    """Cost the events of table `events` and write the buckets of a replay under `store` (see
    the module docstring); `costing`: the events already costed (a comparison costs once);
    `activity` and `serving` as in `simulate`."""
    problems = customer_problems(customers, catalog)
    if problems:
        raise ValidationError(problems, source="customers")
    try:
        check_event_ids(con, events)
        counted = con.execute(
            f"SELECT customer_id, count(*) FROM {quote_ident(events)} GROUP BY customer_id"
        ).fetchall()
    except duckdb.Error as exc:
        raise InputError(f"reading table {events!r} failed: {exc}") from None
    per_customer: dict[str | None, int] = {customer: int(n) for customer, n in counted}
    count = bucket_count(
        per_customer, buckets=buckets, parallelism=parallelism, task_memory=task_memory
    )
    recurring = recurring_entitlements(customers.subscriptions, catalog)
    ids = {c for c in per_customer if c is not None} | input_customer_ids(customers)
    bucket_by_id = {customer: bucket_of(customer, count) for customer in sorted(ids)}
    bucket_events = [0] * count
    for customer, n in per_customer.items():
        bucket_events[bucket_by_id.get(customer, 0) if customer is not None else 0] += n
    members: list[list[str]] = [[] for _ in range(count)]
    for customer, bucket in bucket_by_id.items():
        members[bucket].append(customer)

    costed = _BucketWriter(store=store, bucket_by_id=bucket_by_id)
    if costing is not None:
        costed.add(costing, range(count))
    else:
        for group in _costing_groups(bucket_events):
            group_customers = [c for b in group for c in members[b]]
            costed.add(
                _cost_group(con, catalog, customers, group_customers, 0 in group, events),
                group,
            )
    rejected = costed.rejected(several_groups=costing is None)

    whole = ReplayInput(
        currencies=catalog.currencies,
        grants=customers.grants,
        recurring=recurring,
        auto_recharges=customers.auto_recharges,
        enforcement=enforcement,
        start=start,
        until=until,
        scenario=scenario,
    )
    horizon_start, horizon_until = default_horizon(whole, costed.first, costed.last)
    # Every problem of the customer inputs at once, and the decimal places of the whole replay.
    prepared = prepare(
        ReplayInput(
            currencies=whole.currencies,
            grants=whole.grants,
            recurring=whole.recurring,
            auto_recharges=whole.auto_recharges,
            enforcement=enforcement,
            start=horizon_start,
            until=horizon_until,
            scenario=scenario,
        )
    )
    manifest = Manifest(
        buckets=count,
        start=prepared.start,
        until=prepared.until,
        enforcement=enforcement,
        scenario=scenario,
        engine=engine,
        scale=prepared.scale,
        money_scale=money_scale(prepared),
        activity=activity,
    )
    served = served_costs(
        con,
        catalog,
        customers.subscriptions,
        not_served=rejected["event_id"],
        events=events,
        start=prepared.start,
        until=prepared.until,
        serving=serving,
    )
    store.write_table(
        SERVING,
        served.to_arrow(compat_level=pl.CompatLevel.oldest()),
        row_group_rows=ROW_GROUP_ROWS,
    )
    costed.write_empty(count)
    for bucket in range(count):
        inside = set(members[bucket])
        write_customer_records(
            store,
            bucket,
            grants=(g for g in customers.grants if g.customer_id in inside),
            recurring=(r for r in recurring if r.customer_id in inside),
            auto_recharges=(r for r in customers.auto_recharges if r.customer_id in inside),
            subscriptions=(s for s in customers.subscriptions if s.customer_id in inside),
        )
    write_job_header(store, manifest, catalog.currencies)
    return BucketJob(
        store=store,
        manifest=manifest,
        bucket_events=tuple(bucket_events),
        rejected_events=with_ingest_rejected(con, ingest, rejected),
        ingest=ingest,
    )


def run_buckets(
    job: BucketJob,
    executor: Executor,
    *,
    progress: Progress | None = None,
    replay: Callable[[BucketTask], BucketDone] = replay_bucket,
) -> list[BucketDone]:
    """Replay every bucket of `job` on `executor` (failed buckets are tried again);
    `progress(done, total)` counts buckets. `replay`: the task function (a wrapper of
    `replay_bucket`, e.g. one that records or injects failures)."""
    return run_all(
        executor,
        replay,
        job.tasks,
        memory=job.task_memory,
        progress=progress,
        describe=lambda task: bucket_folder(task.bucket),
    )


def simulate_in_buckets(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    customers: CustomerInputs | None = None,
    *,
    out_dir: str | Path,
    executor: Executor | None = None,
    buckets: int = AUTO,
    work_dir: str | None = None,
    task_memory: int = DEFAULT_TASK_MEMORY,
    events: str = "events",
    ingest: IngestReport | None = None,
    enforcement: Enforcement = "overdraft",
    start: datetime | None = None,
    until: datetime | None = None,
    scenario: str = "base",
    engine: str = "fast",
    progress: Progress | None = None,
    costing: Costing | None = None,
    activity: ActivityOptions | None = DEFAULT_ACTIVITY,
    serving: pl.DataFrame | None = None,
) -> SimulationResult:
    """`simulate(...)` then `.write(out_dir)`, with the customers in buckets run by `executor`
    (default: in this process). The files are byte for byte the same whatever the executor and
    the bucket count.

    `work_dir`: where the buckets are written, in `work_dir/SCENARIO/` (a folder or an
    object-storage URI every worker can read, e.g. `s3://bucket/prefix`; left there). Without
    it they go to a temporary folder inside `out_dir`, removed at the end. `task_memory`: bytes
    one task may use; a customer needing more is named before anything runs. Returns the result
    with its ledger on disk (like `partitioned.simulate_partitioned`).
    """
    customers = customers if customers is not None else CustomerInputs()
    ingest, costing = unusable_values_rejected(con, catalog, ingest, events=events, costing=costing)
    runner = executor if executor is not None else LocalExecutor()
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".buckets-") as scratch:
        # Under `work_dir` each scenario has its own folder: a comparison's do not collide.
        own = scenario_folder_name(scenario)
        store = Store.at(scratch if work_dir is None else f"{work_dir.rstrip('/')}/{own}")
        store.create()
        job = write_buckets(
            con,
            catalog,
            customers,
            store=store,
            buckets=buckets,
            parallelism=runner.parallelism,
            task_memory=task_memory,
            events=events,
            ingest=ingest,
            enforcement=enforcement,
            start=start,
            until=until,
            scenario=scenario,
            engine=engine,
            costing=costing,
            activity=activity,
            serving=serving,
        )
        run_buckets(job, runner, progress=progress)

        def not_served_costs(denied: pl.Series) -> pl.DataFrame:
            return serve_costs(
                con,
                catalog,
                customers.subscriptions,
                events=events,
                start=job.manifest.start,
                until=job.manifest.until,
                only=denied,
            )

        return merge_buckets(
            store,
            job.manifest,
            folder,
            rejected_events=job.rejected_events,
            ingest=ingest,
            denied_costs=not_served_costs,
        )


def in_buckets(
    executor: Executor,
    folder_of: Callable[[str], Path],
    bucket_options: Mapping[str, Any] | None = None,
) -> Callable[..., SimulationResult]:
    """A stand-in for `simulate` (same arguments) that replays in buckets on `executor` and
    writes the files into `folder_of(scenario)`: how `compare` runs its scenarios on an
    executor. `shared` (work shared between replays in one process) does not apply."""

    def replay_scenario(
        con: duckdb.DuckDBPyConnection,
        catalog: Catalog,
        customers: CustomerInputs | None = None,
        *,
        scenario: str = "base",
        shared: object = None,
        **settings: Any,
    ) -> SimulationResult:
        return simulate_in_buckets(
            con,
            catalog,
            customers,
            out_dir=folder_of(scenario),
            executor=executor,
            scenario=scenario,
            **(dict(bucket_options or {}) | settings),
        )

    return replay_scenario


def _costing_groups(bucket_events: Sequence[int]) -> list[list[int]]:
    """Consecutive buckets grouped to about EVENTS_PER_COSTING events each."""
    groups: list[list[int]] = [[]]
    held = 0
    for bucket, n in enumerate(bucket_events):
        if groups[-1] and held + n > EVENTS_PER_COSTING:
            groups.append([])
            held = 0
        groups[-1].append(bucket)
        held += n
    return groups


def _cost_group(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    customers: CustomerInputs,
    group_customers: list[str],
    with_null_customers: bool,
    events: str,
) -> Costing:
    """The costing of the events of `group_customers` (and of events without a customer)."""
    inside = set(group_customers)
    subscriptions = [s for s in customers.subscriptions if s.customer_id in inside]
    con.register(_BUCKET_CUSTOMERS, pl.DataFrame({"customer_id": group_customers}).to_arrow())
    nulls = " OR customer_id IS NULL" if with_null_customers else ""
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {_BUCKET_EVENTS} AS SELECT * FROM {quote_ident(events)} "
            f"WHERE customer_id IN (SELECT customer_id FROM {_BUCKET_CUSTOMERS}){nulls}"
        )
        return cost_events(con, catalog, subscriptions, events=_BUCKET_EVENTS)
    finally:
        con.unregister(_BUCKET_CUSTOMERS)
        con.execute(f"DROP TABLE IF EXISTS {_BUCKET_EVENTS}")


class _BucketWriter:
    """Writes costed consumptions into their buckets; keeps the rejected events and the first
    and last costed event time."""

    def __init__(self, *, store: Store, bucket_by_id: dict[str, int]) -> None:
        self.store = store
        self.bucket_by_id = bucket_by_id
        self.first: datetime | None = None
        self.last: datetime | None = None
        self._rejected: list[pl.DataFrame] = []
        self._schema: pl.Schema | None = None
        self._written: set[int] = set()

    def add(self, costing: Costing, buckets: Iterable[int]) -> None:
        frame = costing.consumptions
        self._schema = frame.schema
        self._rejected.append(costing.rejected)
        if frame.height:
            times = frame["timestamp"]
            first, last = as_utc(times.min()), as_utc(times.max())  # type: ignore[arg-type]
            self.first = first if self.first is None else min(self.first, first)
            self.last = last if self.last is None else max(self.last, last)
        bucket = pl.col("customer_id").replace_strict(
            self.bucket_by_id, default=0, return_dtype=pl.Int32
        )
        parts = frame.with_columns(bucket.alias("__bucket")).partition_by(
            "__bucket", as_dict=True, maintain_order=True, include_key=False
        )
        for bucket_index in buckets:
            part = parts.get((bucket_index,), frame.clear())
            write_consumptions(self.store, bucket_index, part)
            self._written.add(bucket_index)

    def write_empty(self, count: int) -> None:
        """An empty consumptions file for every bucket nothing was written to."""
        schema = self._schema if self._schema is not None else pl.Schema()
        for bucket in range(count):
            if bucket not in self._written:
                write_consumptions(self.store, bucket, pl.DataFrame(schema=schema))

    def rejected(self, *, several_groups: bool) -> pl.DataFrame:
        """The costing's rejected events, in costing's order (customer, time, event id)."""
        frames = [f for f in self._rejected if f.height] or [pl.DataFrame(schema=REJECTED_COLUMNS)]
        stacked = pl.concat(frames)
        if several_groups and len(frames) > 1:
            return stacked.sort(["customer_id", "timestamp", "event_id"], maintain_order=True)
        return stacked
