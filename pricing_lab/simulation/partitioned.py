"""Replays bigger than memory: customers in partitions, the ledger merged while it is written.

Customers never share credits (SPEC §5), so replaying the customers of one partition gives
exactly their entries of the whole replay. `simulate_partitioned` splits the customers into
contiguous ranges of customer ids holding about equal numbers of events, costs all events in
one pass (`costing.costed_events`), then replays one range at a time (`simulate` on that range's
costed events, with the whole replay's horizon) and keeps each range's ledger in a temporary
Arrow file. It then merges the ranges into `ledger.parquet`, window
of time by window of time: at one instant a lower range's customers come first, which is the
ledger order (time, customer id, the customer's own order; `ledger.api.chronological`), and
`entry_id` is numbered across the whole ledger. The other outputs are small and combined in
memory: balances and denied events concatenate in customer order, totals add up (no customer is
in two ranges).

The files are byte for byte those of `simulate(...).write(out_dir)`: the same rows through the
same writer (`output_files`). Peak memory is about one range's replay, plus DuckDB's own (its
`memory_limit` setting; DuckDB spills its tables to disk beyond it).
"""

from __future__ import annotations

import bisect
import itertools
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from pricing_lab import small_pages
from pricing_lab.activity.stream import DEFAULT_ACTIVITY, ActivityOptions, merged_activity
from pricing_lab.catalog.model import Catalog
from pricing_lab.errors import InputError, ValidationError
from pricing_lab.events.ingest import IngestReport, quote_ident, quote_literal
from pricing_lab.ledger import ReplayInput, ReplayResult, recurring_entitlements
from pricing_lab.ledger.balances import feature_totals, money_scale
from pricing_lab.ledger.frames import empty_ledger, ledger_schema
from pricing_lab.ledger.inputs import PreparedReplay, default_horizon, prepare
from pricing_lab.ledger.model import (
    AutoRecharge,
    Enforcement,
    Grant,
    RecurringEntitlement,
    Subscription,
)
from pricing_lab.output_staging import staged_files
from pricing_lab.simulation import output_files
from pricing_lab.simulation.cost_to_serve import serve_costs
from pricing_lab.simulation.costing import (
    Costing,
    CostingsOf,
    CustomerSpan,
    check_event_ids,
    costed_events,
)
from pricing_lab.simulation.customers import CustomerInputs
from pricing_lab.simulation.output_files import TableWriter, polars_frame, write_table
from pricing_lab.simulation.simulate import (
    OUTPUT_FILES,
    SimulationResult,
    customer_problems,
    simulate,
    summary_json,
    unusable_values_rejected,
    with_ingest_rejected,
)
from pricing_lab.timeutil import as_utc, to_micros

Progress = Callable[[int, int], None]
# DuckDB's share of memory in `spilling_connection`: beyond it DuckDB spills to disk, so a
# partitioned replay's peak is bounded by its biggest range (the trade-off against read speed is
# measured in benchmarks/README.md).
DUCKDB_MEMORY = "512MB"
TIME_WINDOWS = 4096  # the merge's grid over the horizon; consecutive windows fill a row group
_PART_BATCH_ROWS = 1 << 14  # rows per record batch of a range's temporary ledger file


@dataclass(frozen=True, slots=True)
class CustomerRange:
    """The customers with ids from `first` to `last` (both included) and their event count."""

    first: str
    last: str
    customers: int
    events: int


def customer_ranges(
    con: duckdb.DuckDBPyConnection,
    customers: CustomerInputs,
    partitions: int,
    *,
    events: str = "events",
) -> list[CustomerRange]:
    """At most `partitions` contiguous ranges of customer ids (of the events and of the customer
    inputs) in id order, each with about the same number of events plus customers."""
    counted = dict(
        con.execute(
            f"SELECT customer_id, count(*) FROM {quote_ident(events)} "
            "WHERE customer_id IS NOT NULL GROUP BY customer_id"
        ).fetchall()
    )
    ids = sorted(set(counted) | input_customer_ids(customers))
    if not ids:
        return []
    weights = np.array([counted.get(c, 0) + 1 for c in ids], dtype=np.int64)
    cumulative = np.cumsum(weights)
    targets = cumulative[-1] * np.arange(1, partitions, dtype=np.float64) / partitions
    ends = np.unique(np.minimum(np.searchsorted(cumulative, targets, side="left") + 1, len(ids)))
    bounds = [0, *(int(e) for e in ends if 0 < e < len(ids)), len(ids)]
    return [
        CustomerRange(
            first=ids[lo],
            last=ids[hi - 1],
            customers=hi - lo,
            events=int(cumulative[hi - 1] - (cumulative[lo - 1] if lo else 0)) - (hi - lo),
        )
        for lo, hi in itertools.pairwise(bounds)
    ]


def spilling_connection(
    folder: str | Path, *, memory_limit: str = DUCKDB_MEMORY
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection for replays bigger than memory: its database is a file in `folder`
    (tables live on disk, memory only caches them) and DuckDB uses at most `memory_limit`,
    spilling what else it needs into `folder`.

    An in-memory database under the same cap cannot hold its own tables: ingesting 100M events
    from Parquet failed there, and took 61 s at a 0.61 GiB peak in a file (measured)."""
    place = Path(folder)
    place.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(place / "events.duckdb"))
    con.execute(f"SET memory_limit = {quote_literal(memory_limit)}")
    con.execute(f"SET temp_directory = {quote_literal(str(place / 'spill'))}")
    return con


def input_customer_ids(customers: CustomerInputs) -> set[str]:
    """Every customer id a subscription, grant or auto-recharge setting names."""
    return (
        {s.customer_id for s in customers.subscriptions}
        | {g.customer_id for g in customers.grants}
        | {r.customer_id for r in customers.auto_recharges}
    )


class _OfCustomer(Protocol):
    @property
    def customer_id(self) -> str: ...


Input = TypeVar("Input", bound=_OfCustomer)


@dataclass(frozen=True, slots=True)
class _ByCustomer(Generic[Input]):
    """Customer inputs of one kind cut by range of customer ids: their positions sorted by
    customer id once, so that a range's inputs are found by bisection, not by a pass over
    every customer's inputs per range (ranges × customers)."""

    items: tuple[Input, ...]
    ids: list[str]  # the customer ids, sorted
    positions: list[int]  # the position of each id's input in `items`

    @classmethod
    def of(cls, items: tuple[Input, ...]) -> _ByCustomer[Input]:
        positions = sorted(range(len(items)), key=lambda i: items[i].customer_id)
        return cls(items, [items[i].customer_id for i in positions], positions)

    def within(self, span: CustomerRange) -> tuple[Input, ...]:
        """The inputs of the customers in `span`, in their given order."""
        lo = bisect.bisect_left(self.ids, span.first)
        hi = bisect.bisect_right(self.ids, span.last)
        return tuple(self.items[i] for i in sorted(self.positions[lo:hi]))


@dataclass(frozen=True, slots=True)
class _InputsByCustomer:
    """A replay's customer inputs, cut by range of customer ids (`_ByCustomer`)."""

    customers: CustomerInputs
    subscriptions: _ByCustomer[Subscription]
    grants: _ByCustomer[Grant]
    auto_recharges: _ByCustomer[AutoRecharge]

    @classmethod
    def of(cls, customers: CustomerInputs) -> _InputsByCustomer:
        return cls(
            customers,
            _ByCustomer.of(customers.subscriptions),
            _ByCustomer.of(customers.grants),
            _ByCustomer.of(customers.auto_recharges),
        )

    def within(self, span: CustomerRange) -> CustomerInputs:
        """The inputs of the customers in `span`."""
        return replace(
            self.customers,
            subscriptions=self.subscriptions.within(span),
            grants=self.grants.within(span),
            auto_recharges=self.auto_recharges.within(span),
        )


def simulate_partitioned(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    customers: CustomerInputs | None = None,
    *,
    out_dir: str | Path,
    partitions: int,
    events: str = "events",
    ingest: IngestReport | None = None,
    enforcement: Enforcement = "overdraft",
    start: datetime | None = None,
    until: datetime | None = None,
    scenario: str = "base",
    engine: str = "fast",
    progress: Progress | None = None,
    activity: ActivityOptions | None = DEFAULT_ACTIVITY,
) -> SimulationResult:
    """`simulate(...)` then `.write(out_dir)`, in at most `partitions` customer ranges at a time.

    Returns the result with its ledger on disk (`ledger_on_disk`; the balances, denied and
    rejected events and summaries are in memory). The outputs are written under temporary names
    and renamed when all are complete, so a failure leaves no half-written output file.
    `progress(done, total)` counts customers. Without `start`/`until` the horizon is the SPEC
    default over all events (an earliest or latest event rejected by a formula costs a second
    pass).
    """
    customers = customers if customers is not None else CustomerInputs()
    problems = customer_problems(customers, catalog)
    if problems:
        raise ValidationError(problems, source="customers")
    # As `simulate`: events whose meter value is not a usable number are rejected first.
    ingest, _ = unusable_values_rejected(con, catalog, ingest, events=events)
    try:
        [(first_event, last_event, rows)] = con.execute(
            f"SELECT min(timestamp), max(timestamp), count(*) FROM {quote_ident(events)}"
        ).fetchall()
    except duckdb.Error as exc:
        raise InputError(f"reading table {events!r} failed: {exc}") from None
    if not _ids_made_unique(ingest, events, rows):
        check_event_ids(con, events)
    # No customer id anywhere: one range, of the events without one (the replay refuses them).
    spans = customer_ranges(con, customers, max(1, partitions), events=events) or [
        CustomerRange(first="", last="", customers=0, events=0)
    ]
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    run = _PartitionedRun(
        con=con,
        catalog=catalog,
        customers=customers,
        by_customer=_InputsByCustomer.of(customers),
        recurring=recurring_entitlements(customers.subscriptions, catalog),
        spans=spans,
        events=events,
        enforcement=enforcement,
        scenario=scenario,
        engine=engine,
        progress=progress,
        activity=activity,
    )
    seen = _event_times(first_event), _event_times(last_event)
    for _attempt in range(2):
        horizon = run.horizon(start, until, *seen)
        with tempfile.TemporaryDirectory(dir=folder, prefix=".partitions-") as scratch:
            outcome = run.replay(horizon, Path(scratch))
            # The default horizon follows the costed events: when a formula rejected the first
            # or last event, the ranges ran on a horizon that is not the default one. Again.
            if (start is None and outcome.first_event != seen[0]) or (
                until is None and outcome.last_event != seen[1]
            ):
                seen = outcome.first_event, outcome.last_event
                continue
            return outcome.finish(folder, ingest=ingest, con=con)
    raise AssertionError("the horizon of a partitioned replay did not settle")  # pragma: no cover


def _ids_made_unique(ingest: IngestReport | None, events: str, rows: int) -> bool:
    """Whether table `events` (of `rows` rows) is the one ingestion (`ingest`) stored, rows and
    all, with its event ids made distinct: then they are not checked a second time."""
    return (
        ingest is not None
        and ingest.table == events
        and ingest.unique_column == "event_id"
        and ingest.accepted == rows
    )


def _event_times(value: object) -> datetime | None:
    return as_utc(value) if isinstance(value, datetime) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class _PartitionedRun:
    con: duckdb.DuckDBPyConnection
    catalog: Catalog
    customers: CustomerInputs
    by_customer: _InputsByCustomer
    recurring: tuple[RecurringEntitlement, ...]
    spans: list[CustomerRange]
    events: str
    enforcement: Enforcement
    scenario: str
    engine: str
    progress: Progress | None
    activity: ActivityOptions | None

    def whole_input(self, start: datetime | None, until: datetime | None) -> ReplayInput:
        """The replay's input without consumptions: what every range shares."""
        return ReplayInput(
            currencies=self.catalog.currencies,
            grants=self.customers.grants,
            recurring=self.recurring,
            auto_recharges=self.customers.auto_recharges,
            consumptions=(),
            enforcement=self.enforcement,
            start=start,
            until=until,
            scenario=self.scenario,
        )

    def horizon(
        self,
        start: datetime | None,
        until: datetime | None,
        first_event: datetime | None,
        last_event: datetime | None,
    ) -> tuple[datetime, datetime]:
        return default_horizon(self.whole_input(start, until), first_event, last_event)

    def replay(self, horizon: tuple[datetime, datetime], scratch: Path) -> _Outcome:
        start, until = horizon
        # Every problem of the customer inputs at once, and the money scale of the whole replay.
        whole = prepare(self.whole_input(start, until))
        # The events are matched and costed in one pass, and the costs to serve summed per
        # customer in another; each range then takes its customers' rows.
        with costed_events(
            self.con,
            [self.catalog],
            [self.customers.subscriptions],
            events=self.events,
            spans=[_costing_span(index, span) for index, span in enumerate(self.spans)],
            scratch=scratch,
        ) as costings:
            serving = serve_costs(
                self.con,
                self.catalog,
                self.customers.subscriptions,
                events=self.events,
                start=start,
                until=until,
            )
            return self._replay_ranges(whole, horizon, scratch, costings, serving)

    def _replay_ranges(
        self,
        whole: PreparedReplay,
        horizon: tuple[datetime, datetime],
        scratch: Path,
        costings: CostingsOf,
        serving: pl.DataFrame,
    ) -> _Outcome:
        grid = _time_grid(whole.start, whole.until)
        outcome = _Outcome(
            scratch=scratch,
            scale=whole.scale,
            money=pl.Decimal(38, money_scale(whole)),
            start=whole.start,
            until=whole.until,
            scenario=self.scenario,
        )
        total = sum(span.customers for span in self.spans)
        done = 0
        # A range's ledger file is written on a thread of its own while the next range replays
        # (Arrow's IPC writer and its compression release the GIL); one file at a time, so at
        # most one finished range's ledger is held besides the range replaying.
        with ThreadPoolExecutor(max_workers=1) as files:
            writing: Future[None] | None = None
            for index, span in enumerate(self.spans):
                [costing] = costings(_costing_span(index, span))
                range_serving = serving.filter(_costing_span(index, span).expr("customer_id"))
                result, first, last = self._replay_range(span, horizon, costing, range_serving)
                totals = feature_totals(costing.consumptions, result.replay)
                if writing is not None:
                    writing.result()
                writing = outcome.add(index, result, totals, first, last, grid, files)
                del result  # its ledger is the writer's now: not held once its file is written
                done += span.customers
                if self.progress is not None:
                    self.progress(done, total)
            if writing is not None:
                writing.result()
        return outcome

    def _replay_range(
        self,
        span: CustomerRange,
        horizon: tuple[datetime, datetime],
        costing: Costing,
        serving: pl.DataFrame,
    ) -> tuple[SimulationResult, datetime | None, datetime | None]:
        """The replay of one range's customers, on their costed events (`costing`) and costs to
        serve (`serving`); the first and last time of a costed event."""
        start, until = horizon
        range_customers = self.by_customer.within(span)
        times = costing.consumptions["timestamp"]
        first = times.min() if len(times) else None
        last = times.max() if len(times) else None
        result = simulate(
            self.con,
            self.catalog,
            range_customers,
            # Not read but for the costs to serve of events not served (rejected, denied).
            events=self.events,
            enforcement=self.enforcement,
            start=start,
            until=until,
            scenario=self.scenario,
            engine=self.engine,
            costing=costing,
            activity=self.activity,
            serving=serving,
        )
        return result, _event_times(first), _event_times(last)


def _costing_span(index: int, span: CustomerRange) -> CustomerSpan:
    """The customers of range `span`; the first range also replays the events without one."""
    return CustomerSpan(first=span.first, last=span.last, null_customer=index == 0)


def _time_grid(start: datetime, until: datetime) -> np.ndarray:
    """Window bounds for the merge: TIME_WINDOWS − 1 instants evenly over the horizon."""
    lo, hi = to_micros(start), to_micros(until)
    return np.unique(np.linspace(lo, hi, TIME_WINDOWS + 1, dtype=np.float64)[1:-1].astype(np.int64))


@dataclass(slots=True, kw_only=True)
class _Outcome:
    """What the ranges produced so far: ledger files, the small outputs, the event times."""

    scratch: Path
    scale: int
    money: pl.Decimal
    start: datetime
    until: datetime
    scenario: str
    parts: list[Path] = field(default_factory=list)
    window_rows: list[np.ndarray] = field(default_factory=list)  # per range: rows per window
    results: list[SimulationResult] = field(default_factory=list)
    feature_totals: list[pl.DataFrame] = field(default_factory=list)
    first_event: datetime | None = None
    last_event: datetime | None = None

    def add(
        self,
        index: int,
        result: SimulationResult,
        totals: pl.DataFrame,
        first: datetime | None,
        last: datetime | None,
        grid: np.ndarray,
        files: ThreadPoolExecutor,
    ) -> Future[None]:
        """Range `index`'s outputs: its ledger written to a file by `files` (the write's
        future), the rest kept in memory."""
        ledger = result.ledger
        path = self.scratch / f"range-{index:05d}.arrow"
        writing = files.submit(_write_part, ledger, path)
        micros = ledger["timestamp"].dt.epoch("us")
        bounds = micros.search_sorted(pl.Series(grid), side="left").to_numpy()
        self.window_rows.append(np.diff(np.concatenate([[0], bounds, [len(micros)]])))
        self.parts.append(path)
        self.feature_totals.append(_owned(totals))
        # The range's ledger is on disk now; what stays in memory is small, and owns its text.
        replayed = result.replay
        self.results.append(
            replace(
                result,
                replay=replace(
                    replayed,
                    ledger=ledger.clear(),
                    denied_events=_owned(replayed.denied_events),
                    balances=_owned(replayed.balances),
                    summary=_owned(replayed.summary),
                    grants=_owned(replayed.grants),
                ),
                rejected_events=_owned(result.rejected_events),
                plan_summary=_owned(result.plan_summary),
                activity=None if result.activity is None else _owned(result.activity),
                margin=_owned(result.margin),
            )
        )
        if first is not None:
            self.first_event = first if self.first_event is None else min(self.first_event, first)
        if last is not None:
            self.last_event = last if self.last_event is None else max(self.last_event, last)
        return writing

    def finish(
        self, folder: Path, *, ingest: IngestReport | None, con: duckdb.DuckDBPyConnection
    ) -> SimulationResult:
        """Merge the ranges into the output files of `folder`; the result, ledger on disk."""
        replayed = ReplayResult(
            scenario=self.scenario,
            start=self.start,
            until=self.until,
            ledger=empty_ledger(self.scale),
            grants=_stacked(
                [r.grants.with_columns(pl.col("cost_basis").cast(self.money)) for r in self.results]
            ),
            denied_events=_stacked([r.denied_events for r in self.results]),
            balances=_stacked(
                [r.balances.with_columns(pl.col("breakage").cast(self.money)) for r in self.results]
            ),
            summary=_added(
                [
                    r.summary.with_columns(pl.col("breakage", "credit_revenue").cast(self.money))
                    for r in self.results
                ],
                by=["currency_id"],
            ),
        )
        result = SimulationResult(
            replay=replayed,
            rejected_events=with_ingest_rejected(
                con, ingest, _stacked([r.rejected_events for r in self.results])
            ),
            ingest=ingest,
            plan_summary=_added(
                [r.plan_summary for r in self.results], by=["currency_id", "plan_id"]
            ),
            # Ranges hold consecutive customer ids: stacked in range order, still sorted.
            margin=_stacked([r.margin for r in self.results]),
            written_to=folder,
            ledger_on_disk=True,
            ledger_entries=int(sum(int(rows.sum()) for rows in self.window_rows)),
            feature_totals=_added(self.feature_totals, by=["currency_id", "feature_id"]),
            activity=_activity([r.activity for r in self.results]),
        )
        # Written under hidden names and renamed when all are complete: a failure leaves the
        # folder's earlier outputs as they were.
        names = [n for n in OUTPUT_FILES if n != "activity.parquet" or result.activity is not None]
        with staged_files([folder / name for name in names]) as staged:

            def partial(name: str) -> Path:
                return staged.twin(folder / name)

            self._merge_ledger(partial("ledger.parquet"))
            write_table(result.grants, partial("grants.parquet"))
            write_table(result.denied_events, partial("denied_events.parquet"))
            write_table(result.rejected_events, partial("rejected_events.parquet"))
            write_table(result.balances, partial("balances.parquet"))
            if result.activity is not None:
                write_table(result.activity, partial("activity.parquet"))
            write_table(result.margin, partial("margin.parquet"))
            partial("summary.json").write_text(summary_json(result.summary_dict()), "utf-8")
        return result

    def _merge_ledger(self, path: Path) -> None:
        """The ranges' ledgers, merged into ledger order and numbered, into `path`."""
        readers = [_PartReader(part) for part in self.parts]
        counts = np.stack(self.window_rows)  # there is always at least one range
        next_id = 1
        with TableWriter(path, ledger_schema(self.scale)) as writer:
            entry_id = writer.arrow_schema.get_field_index("entry_id")
            for windows in window_batches(counts.sum(axis=0)):
                taken = [
                    reader.take(int(counts[p, windows].sum())) for p, reader in enumerate(readers)
                ]
                merged = _in_time_order([t for t in taken if t.num_rows])
                numbers = np.arange(next_id, next_id + merged.num_rows, dtype=np.int64)
                merged = merged.set_column(entry_id, "entry_id", pa.array(numbers))
                next_id += merged.num_rows
                writer.write_arrow(_cast(merged, writer.arrow_schema))


def _in_time_order(tables: list[pa.Table]) -> pa.Table:
    """The rows of `tables` (each in time order) in time order, one chunk per column. Stable:
    at one instant the lower range (lower customer ids) stays first. Merged in Arrow: the rows
    are gathered once, straight into the columns written."""
    table = pa.concat_tables(tables)
    if len(tables) == 1:
        return table
    times = polars_frame(table.select(["timestamp"]))
    order = times.select(pl.arg_sort_by("timestamp", maintain_order=True)).to_series()
    return pc.take(table, order.to_arrow(), memory_pool=small_pages.ARROW_POOL)


def _cast(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table.cast(schema)` (the parts' plain strings as the file's string views), column by
    column into buffers on 4 KiB pages (`small_pages`)."""
    columns = [
        pc.cast(column, field.type, memory_pool=small_pages.ARROW_POOL)
        for column, field in zip(table.columns, schema, strict=True)
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _owned(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with text columns of its own. Polars' strings are views into buffers that may be
    shared with much larger columns: a three-row summary grouped from a ledger keeps the whole
    ledger's text buffers alive (~200 MB per million events, measured). A round trip through
    Arrow's plain strings copies only the bytes the rows use."""
    return polars_frame(frame.to_arrow())


def window_batches(rows_per_window: np.ndarray) -> Iterator[slice]:
    """Consecutive windows grouped to hold at least a row group's rows each (the last: the rest)."""
    first, held = 0, 0
    for index, rows in enumerate(rows_per_window):
        held += int(rows)
        if held >= output_files.ROW_GROUP_ROWS:
            yield slice(first, index + 1)
            first, held = index + 1, 0
    if held:
        yield slice(first, len(rows_per_window))


def _write_part(ledger: pl.DataFrame, path: Path) -> None:
    # Plain strings: a string view column would carry its whole shared text buffers into every
    # record batch, and the merge holds many batches at once. Converted a record batch at a
    # time: the conversion's few megabytes are reused from batch to batch, where the whole
    # ledger as plain strings at once would raise a range's peak by its size again and write
    # that much fresh memory.
    options = pa.ipc.IpcWriteOptions(compression="lz4")
    schema = ledger.head(0).to_arrow().schema
    with (
        pa.OSFile(str(path), "wb") as sink,
        pa.ipc.new_file(sink, schema, options=options) as out,
    ):
        for first in range(0, ledger.height, _PART_BATCH_ROWS):
            piece = ledger.slice(first, _PART_BATCH_ROWS).to_arrow()
            out.write_table(piece, max_chunksize=_PART_BATCH_ROWS)


class _PartReader:
    """A range's ledger file read front to back, any number of rows at a time.

    Read, not memory-mapped: the pages of a mapped file stay in the process's resident set
    until it is unmapped, and the merge holds every range's file open to its end, so the
    merge's peak grew with the whole ledger's compressed size (~70 bytes an entry; 7 GB at
    100M events). Read batch by batch, a range costs the batch in hand."""

    def __init__(self, path: Path) -> None:
        self._reader = pa.ipc.open_file(pa.OSFile(str(path)), memory_pool=small_pages.ARROW_POOL)
        self._next_batch = 0
        self._held = self._reader.schema.empty_table()

    def take(self, rows: int) -> pa.Table:
        pieces = []
        while rows > 0:
            if self._held.num_rows == 0:
                batch = self._reader.get_batch(self._next_batch)
                self._next_batch += 1
                self._held = pa.Table.from_batches([batch])
            piece = self._held.slice(0, rows)
            self._held = self._held.slice(piece.num_rows)
            pieces.append(piece)
            rows -= piece.num_rows
        return pa.concat_tables(pieces) if pieces else self._held.slice(0, 0)


def _activity(streams: list[pl.DataFrame | None]) -> pl.DataFrame | None:
    kept = [s for s in streams if s is not None]
    return merged_activity(kept) if kept else None


def _stacked(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """`frames` one after the other (the empty ones only when all are)."""
    filled = [f for f in frames if f.height]
    return pl.concat(filled) if filled else frames[0]


def _added(frames: list[pl.DataFrame], *, by: list[str]) -> pl.DataFrame:
    """Totals of several ranges added up per `by` (every other column is a sum)."""
    filled = [f for f in frames if f.height]
    if not filled:
        return frames[0]
    return pl.concat(filled).group_by(by).agg(pl.exclude(by).sum()).sort(by)
