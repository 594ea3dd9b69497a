"""The merge: every bucket's results into the files `simulate` writes, byte for byte.

Buckets hold customers by hash, not by id range, so the ledger merge orders what it takes from
the buckets by time and then customer id; one customer's entries at one instant all come from
its one bucket, already in the customer's own order, and a stable sort keeps that order — the
ledger order of `ledger.api.chronological`. The ledger is merged window by window of the time
grid each bucket counted its rows in (`bucket_replay.time_grid`), so memory holds about a row
group's worth per bucket, and `entry_id` is numbered across the whole ledger. Balances and
denied events are sorted into customer order the same stable way; totals per currency, feature
and plan add up (no customer is in two buckets), money at the whole replay's decimal places.
The activity streams are merged like the ledger (time, then customer) and numbered 1…n; the
margin is the buckets' recognised revenue against the job's costs to serve (`serving.parquet`),
less those of the events the buckets denied, through `margin.margin_table` as a whole replay.
Each name of `simulate.OUTPUT_FILES` has its rule here; one without a rule is refused.
Everything goes through `output_files.TableWriter`, as a replay held in memory does, so the
bytes do not depend on the executor or the bucket count.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from pricing_lab.activity.stream import merged_activity
from pricing_lab.events.ingest import IngestReport
from pricing_lab.ledger import ReplayResult
from pricing_lab.ledger.frames import empty_ledger, ledger_schema
from pricing_lab.output_staging import staged_files
from pricing_lab.scale.bucket_replay import read_done
from pricing_lab.scale.buckets import SERVING, Manifest, result_path
from pricing_lab.scale.storage import Store
from pricing_lab.simulation.cost_to_serve import without
from pricing_lab.simulation.margin import margin_table
from pricing_lab.simulation.output_files import TableWriter, polars_frame, write_table
from pricing_lab.simulation.partitioned import window_batches
from pricing_lab.simulation.simulate import OUTPUT_FILES, SimulationResult, summary_json


def merge_buckets(
    store: Store,
    manifest: Manifest,
    out_dir: str | Path,
    *,
    rejected_events: pl.DataFrame,
    ingest: IngestReport | None = None,
    denied_costs: Callable[[pl.Series], pl.DataFrame] | None = None,
) -> SimulationResult:
    """Merge the finished buckets of the job at `store` into the SPEC §6 files of `out_dir`.

    Returns the result with its ledger on disk. The files are written under hidden names and
    renamed when all are written (`output_staging.staged_files`), so a failure leaves the
    folder's earlier outputs as they were.
    `denied_costs(event_ids)`: the costs to serve of denied events (`serve_costs(only=…)` over
    the events table), taken off the job's costs to serve; needed when a bucket denied events.
    Raises `ValueError` when a bucket has not finished, or when `OUTPUT_FILES` names a file the
    merge has no rule for.
    """
    buckets = range(manifest.buckets)
    finished = [read_done(store, b) for b in buckets]
    done = [record for record in finished if record is not None]
    if len(done) < len(finished):
        missing = [b for b, record in zip(buckets, finished) if record is None]
        raise ValueError(f"buckets not finished: {missing[:10]}")
    money = pl.Decimal(38, manifest.money_scale)

    def tables(name: str) -> list[pl.DataFrame]:
        return [polars_frame(store.read_table(result_path(b, f"{name}.parquet"))) for b in buckets]

    denied = _in_customer_order(tables("denied_events"), ["customer_id"])
    replayed = ReplayResult(
        scenario=manifest.scenario,
        start=manifest.start,
        until=manifest.until,
        ledger=empty_ledger(manifest.scale),
        # One customer's grants are in one bucket, in grant order; cost bases at the whole
        # replay's money scale.
        grants=_in_customer_order(
            [f.with_columns(pl.col("cost_basis").cast(money)) for f in tables("grants")],
            ["customer_id"],
        ),
        denied_events=denied,
        balances=_in_customer_order(
            [f.with_columns(pl.col("breakage").cast(money)) for f in tables("balances")],
            ["customer_id", "currency_id"],
        ),
        summary=_added(
            [
                f.with_columns(pl.col("breakage", "credit_revenue").cast(money))
                for f in tables("summary")
            ],
            by=["currency_id"],
        ),
    )
    folder = Path(out_dir)
    result = SimulationResult(
        replay=replayed,
        rejected_events=rejected_events,
        ingest=ingest,
        plan_summary=_added(tables("plan_summary"), by=["currency_id", "plan_id"]),
        margin=_margin(store, tables("revenue"), denied, denied_costs),
        written_to=folder,
        ledger_on_disk=True,
        ledger_entries=sum(record.entries for record in done),
        feature_totals=_added(tables("feature_totals"), by=["currency_id", "feature_id"]),
        activity=None if manifest.activity is None else _activity(tables("activity")),
    )
    counts = np.array([record.window_rows for record in done], dtype=np.int64)

    def table(frame: pl.DataFrame | None) -> Callable[[Path], object] | None:
        return None if frame is None else lambda path: write_table(frame, path)

    # Every output file a replay writes, by name: None for one this replay does not write
    # (no activity stream asked for). A name without a rule stops the merge before it writes.
    writers: dict[str, Callable[[Path], object] | None] = {
        "ledger.parquet": lambda path: _merge_ledger(store, manifest, counts, path),
        "grants.parquet": table(result.grants),
        "denied_events.parquet": table(result.denied_events),
        "rejected_events.parquet": table(result.rejected_events),
        "balances.parquet": table(result.balances),
        "activity.parquet": table(result.activity),
        "margin.parquet": table(result.margin),
        "summary.json": lambda path: path.write_text(
            summary_json(result.summary_dict()), encoding="utf-8"
        ),
    }
    unknown = [name for name in OUTPUT_FILES if name not in writers]
    if unknown:
        raise ValueError(f"the bucket merge has no rule for output file(s) {', '.join(unknown)}")
    chosen = {folder / name: writers[name] for name in OUTPUT_FILES if writers[name] is not None}
    with staged_files(chosen) as staged:
        for path, write in chosen.items():
            assert write is not None
            write(staged.twin(path))
    return result


def _margin(
    store: Store,
    revenue: list[pl.DataFrame],
    denied: pl.DataFrame,
    denied_costs: Callable[[pl.Series], pl.DataFrame] | None,
) -> pl.DataFrame:
    """The whole replay's `margin_table`: the buckets' recognised revenue against the job's
    costs to serve, less those of the events the buckets denied (as `replay_margin` does)."""
    serving = polars_frame(store.read_table(SERVING))
    if denied.height:
        if denied_costs is None:
            raise ValueError(
                f"the buckets denied {denied.height} event(s): their costs to serve are needed "
                "to merge the margin (denied_costs)"
            )
        serving = without(serving, denied_costs(denied["event_id"]))
    filled = [f for f in revenue if f.height] or revenue[:1]
    return margin_table(pl.concat(filled, how="vertical_relaxed"), serving)


def _activity(streams: list[pl.DataFrame]) -> pl.DataFrame:
    """The buckets' activity streams as the whole replay's: in time order, at one instant in
    customer order (one customer's events keep their bucket's order), `activity_id` 1…n."""
    filled = [f for f in streams if f.height] or streams[:1]
    stacked = pl.concat(filled, how="vertical_relaxed")
    return merged_activity([stacked.sort(["timestamp", "customer_id"], maintain_order=True)])


def _in_customer_order(frames: list[pl.DataFrame], by: list[str]) -> pl.DataFrame:
    """The buckets' rows in customer order; one customer's rows keep their bucket's order."""
    return pl.concat(frames).sort(by, maintain_order=True)


def _added(frames: list[pl.DataFrame], *, by: list[str]) -> pl.DataFrame:
    """Totals of several buckets added up per `by` (every other column is a sum)."""
    filled = [f for f in frames if f.height]
    if not filled:
        return frames[0]
    return pl.concat(filled).group_by(by).agg(pl.exclude(by).sum()).sort(by)


def _merge_ledger(store: Store, manifest: Manifest, counts: np.ndarray, path: Path) -> None:
    """The buckets' ledgers, merged into ledger order and numbered, into `path`."""
    schema = ledger_schema(manifest.scale)
    readers = [_BucketLedger(store, b) for b in range(manifest.buckets)]
    next_id = 1
    with TableWriter(path, schema) as writer:
        for windows in window_batches(counts.sum(axis=0)):
            taken = [reader.take(int(counts[b, windows].sum())) for b, reader in enumerate(readers)]
            pieces = [polars_frame(t) for t in taken if t.num_rows]
            if not pieces:
                continue
            merged = pl.concat(pieces).sort(["timestamp", "customer_id"], maintain_order=True)
            merged = merged.with_columns(
                pl.Series("entry_id", np.arange(next_id, next_id + merged.height, dtype=np.int64))
            ).cast(schema)
            next_id += merged.height
            writer.write(merged)


class _BucketLedger:
    """One bucket's ledger file read front to back, any number of rows at a time."""

    def __init__(self, store: Store, bucket: int) -> None:
        self._file = store.parquet_file(result_path(bucket, "ledger.parquet"))
        self._batches: Iterator[Any] = self._file.iter_batches()
        self._held = self._file.schema_arrow.empty_table()

    def take(self, rows: int) -> pa.Table:
        pieces = []
        while rows > 0:
            if self._held.num_rows == 0:
                self._held = pa.Table.from_batches([next(self._batches)])
            piece = self._held.slice(0, rows)
            self._held = self._held.slice(piece.num_rows)
            pieces.append(piece)
            rows -= piece.num_rows
        return pa.concat_tables(pieces) if pieces else self._held.slice(0, 0)
