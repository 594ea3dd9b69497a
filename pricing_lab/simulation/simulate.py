"""One replay end to end: events in DuckDB → matched features → costs → ledger engine → outputs.

`simulate` is what `pricing-lab simulate` and the notebooks call. It reads nothing row by row in
Python: matching and costing are DuckDB queries, the engine works on columnar arrays. The outputs
(SPEC §6) are Polars DataFrames and, with `SimulationResult.write`, the files `ledger.parquet`,
`denied_events.parquet`, `rejected_events.parquet`, `balances.parquet`, `activity.parquet` and
`summary.json`, identical
byte for byte for the same inputs in any row order.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from pricing_lab.activity.stream import DEFAULT_ACTIVITY, ActivityOptions, replay_activity
from pricing_lab.catalog.model import Catalog
from pricing_lab.errors import PricingLabError, Problem, ValidationError
from pricing_lab.events.ingest import IngestReport
from pricing_lab.events.meters import reject_unusable_values
from pricing_lab.ledger import ReplayInput, ReplayResult, recurring_entitlements, replay
from pricing_lab.ledger.balances import feature_summary, with_entries
from pricing_lab.ledger.frames import TIMESTAMP
from pricing_lab.ledger.model import Enforcement, Subscription
from pricing_lab.output_staging import staged_outputs
from pricing_lab.simulation.costing import REJECTED_COLUMNS, Costing, cost_events
from pricing_lab.simulation.customers import CustomerInputs
from pricing_lab.simulation.margin import empty_margin, margin_summary, replay_margin
from pricing_lab.simulation.output_files import write_table
from pricing_lab.timeutil import as_utc

Progress = Callable[[int, int], None]
NO_PLAN_NAME = "(none)"  # plan of ledger entries of a customer without a subscription then
LEDGER_FILE = "ledger.parquet"
OUTPUT_FILES = (
    LEDGER_FILE,
    "grants.parquet",
    "denied_events.parquet",
    "rejected_events.parquet",
    "balances.parquet",
    "activity.parquet",
    "margin.parquet",
    "summary.json",
)


class LedgerOnDisk(PricingLabError):
    """`SimulationResult.ledger` of a result whose ledger is not in memory but in a file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        where = f"in {path}" if path is not None else "on disk, in a folder it does not name"
        super().__init__(
            f"this result's ledger is not held in memory but {where}: "
            "call result.read_ledger() to read it (or scan that Parquet file)"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulationResult:
    """A replay's outputs plus the events rejected on the way (ingestion and formulas)."""

    replay: ReplayResult
    rejected_events: pl.DataFrame
    ingest: IngestReport | None = None
    plan_summary: pl.DataFrame = field(default_factory=pl.DataFrame)
    margin: pl.DataFrame = field(default_factory=empty_margin)  # `simulation.margin`
    # Where the outputs were already written (`written`): `write` to the same folder does nothing,
    # and with `ledger_on_disk` the ledger is not held in memory: `read_ledger()` reads it there.
    written_to: Path | None = None
    ledger_on_disk: bool = False
    # Totals of a ledger that was never held whole (a partitioned replay): its entry count and
    # `feature_summary`, so the summary does not read the ledger back.
    ledger_entries: int | None = None
    feature_totals: pl.DataFrame | None = None
    # The credit activity stream (SPEC §6; None: the replay was asked for none).
    activity: pl.DataFrame | None = None

    @property
    def scenario(self) -> str:
        return self.replay.scenario

    def __repr__(self) -> str:
        from pricing_lab.report.views import simulation_text

        return simulation_text(self)

    def _repr_html_(self) -> str:
        from pricing_lab.report.views import simulation_html

        return simulation_html(self)

    @property
    def ledger(self) -> pl.DataFrame:
        """The ledger held in memory (SPEC §6). A result whose ledger was left on disk (a
        partitioned replay, a comparison's other scenarios) has none: this raises
        `LedgerOnDisk`, and `read_ledger()` reads it from there."""
        if self.ledger_on_disk:
            raise LedgerOnDisk(self.ledger_path)
        return self.replay.ledger

    @property
    def ledger_path(self) -> Path | None:
        """Where the ledger was written (`written_to/ledger.parquet`), None before `write`."""
        return None if self.written_to is None else self.written_to / LEDGER_FILE

    def read_ledger(self) -> pl.DataFrame:
        """The whole ledger: the one in memory, or the one on disk read from `ledger_path`."""
        if not self.ledger_on_disk:
            return self.replay.ledger
        if self.ledger_path is None:
            raise LedgerOnDisk(None)
        return pl.read_parquet(self.ledger_path)

    @property
    def grants(self) -> pl.DataFrame:
        """The grants the replay used (SPEC §6; `ledger.frames.grants_schema`)."""
        return self.replay.grants

    @property
    def denied_events(self) -> pl.DataFrame:
        return self.replay.denied_events

    @property
    def balances(self) -> pl.DataFrame:
        return self.replay.balances

    @property
    def summary(self) -> pl.DataFrame:
        return self.replay.summary

    def written(self, folder: str | Path, *, keep_ledger: bool = True) -> SimulationResult:
        """This result after `write(folder)`. With `keep_ledger=False` the ledger leaves memory;
        `read_ledger()` reads it back from `folder/ledger.parquet` (what a comparison of many
        scenarios over tens of millions of events needs to fit in memory)."""
        replay = (
            self.replay if keep_ledger else replace(self.replay, ledger=self.replay.ledger.clear())
        )
        return replace(self, replay=replay, written_to=Path(folder), ledger_on_disk=not keep_ledger)

    def summary_dict(self, ledger: pl.DataFrame | None = None) -> dict[str, Any]:
        """The summary as JSON-ready data: decimals as strings, exact (`ledger`: this result's
        ledger when the caller already holds it, so that one on disk is read once)."""
        if self.ledger_entries is not None and self.feature_totals is not None:
            entries, features = self.ledger_entries, self.feature_totals
        else:
            if ledger is None:
                ledger = self.read_ledger()
            entries, features = ledger.height, feature_summary(ledger)
        rejected_by_reason = (
            self.rejected_events.group_by("reason").len().sort("reason").iter_rows()
            if self.rejected_events.height
            else []
        )
        ingest = self.ingest.to_dict() if self.ingest is not None else None
        return {
            "scenario": self.scenario,
            "start": _json_value(self.replay.start),
            "until": _json_value(self.replay.until),
            "events": {
                "read": ingest["rows_read"] if ingest else None,
                "rejected": self.rejected_events.height,
                "rejected_by_reason": {reason: count for reason, count in rejected_by_reason},
                "denied": self.denied_events.height,
            },
            "ledger_entries": entries,
            "currencies": _json_rows(self.summary),
            "features": _json_rows(features),
            "plans": _json_rows(self.plan_summary),
            "margin": margin_summary(self.margin),
        }

    def write(self, out_dir: str | Path) -> list[Path]:
        """Write the SPEC §6 output files into `out_dir` (created if missing); returns the paths.

        All or nothing (`output_staging.staged_outputs`): the files are written into a staging
        folder inside `out_dir` and moved into place once every one is written, so a write that
        fails part-way (a full disk, an unwritable file) leaves the folder's earlier files as they
        were and no new file. Other files in `out_dir` are left alone. A result whose outputs are
        already there (`written(out_dir)`) is not written again."""
        folder = Path(out_dir)
        if self.written_to is not None and self.written_to.resolve() == folder.resolve():
            return [folder / name for name in OUTPUT_FILES]
        with staged_outputs(folder) as staged:
            written = self._write_files(staged.folder)
        return [staged.final(path) for path in written]

    def _write_files(self, folder: Path) -> list[Path]:
        """Write the output files into `folder`, which exists; returns their paths."""
        frames = {
            "grants.parquet": self.grants,
            "denied_events.parquet": self.denied_events,
            "rejected_events.parquet": self.rejected_events,
            "balances.parquet": self.balances,
            "margin.parquet": self.margin,
        }
        ledger_path = folder / LEDGER_FILE
        paths = [ledger_path]
        ledger: pl.DataFrame | None = None
        if self.ledger_on_disk:
            # Written already, through the same writer: the file is copied, not encoded again.
            if self.ledger_path is None:
                raise LedgerOnDisk(None)
            shutil.copyfile(self.ledger_path, ledger_path)
            if self.ledger_entries is None:
                ledger = self.read_ledger()
        else:
            ledger = self.ledger
        # The summary's aggregations run while the Parquet files are encoded: both release the
        # GIL, so they overlap on a second core.
        with ThreadPoolExecutor(max_workers=1) as pool:
            summary = pool.submit(self.summary_dict, ledger)
            if not self.ledger_on_disk:
                assert ledger is not None
                write_table(ledger, ledger_path)
            if self.activity is not None:
                frames["activity.parquet"] = self.activity
            for name, frame in frames.items():
                paths.append(write_table(frame, folder / name))
            summary_path = folder / "summary.json"
            summary_path.write_text(summary_json(summary.result()), encoding="utf-8")
        paths.append(summary_path)
        return paths


def summary_json(summary: dict[str, Any]) -> str:
    """The text of `summary.json` for `SimulationResult.summary_dict()`."""
    return json.dumps(summary, indent=2, sort_keys=True) + "\n"


def _json_rows(frame: pl.DataFrame) -> list[dict[str, object]]:
    return [
        {key: _json_value(value) for key, value in row.items()}
        for row in frame.iter_rows(named=True)
    ]


def plan_summary(
    ledger: pl.DataFrame,
    subscriptions: Sequence[Subscription],
    *,
    balances: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Credits per currency and plan (SPEC §6 "the same per plan").

    Each ledger entry counts for the plan the customer was subscribed to at the entry's time
    (`(none)` without a subscription): granted, consumed, expired, voided and rolled-over
    credits (granted counts rollover grants too, as in the balances), and the number of
    customers with entries under that plan.

    `balances` (the same replay's `balances_table`) spares most of the work: a customer without
    a subscription, or with one subscription spanning the whole ledger, has every entry under
    one plan, so its balances rows hold its totals. Only the other customers' entries are placed
    one by one.
    """
    spans = _subscription_spans(subscriptions)
    if balances is None or ledger.height == 0:
        return _per_plan(_per_customer(_placed(ledger, spans)))
    times = ledger["timestamp"]
    first, last = times.min(), times.max()
    only_span = spans.group_by("customer_id").agg(
        pl.len().alias("__spans"), pl.col("plan_id", "start", "end").first()
    )
    keys = ["customer_id", "currency_id"]
    plan_of = balances.join(only_span, on="customer_id", how="left").with_columns(
        pl.when(pl.col("__spans").is_null())
        .then(pl.lit(NO_PLAN_NAME))
        .when(
            (pl.col("__spans") == 1)
            & (pl.col("start") <= first)
            & (pl.col("end").is_null() | (pl.col("end") > last))
        )
        .then(pl.col("plan_id"))
        .alias("plan_id")
    )
    # A balances row may stand for denied events alone: no entries, so no customer of the plan.
    settled = with_entries(plan_of.filter(pl.col("plan_id").is_not_null()), ledger)
    placed = [settled.select(*keys, "plan_id", *_PLAN_TOTALS)]
    others = plan_of.filter(pl.col("plan_id").is_null()).select("customer_id").unique()
    if others.height:
        entries = ledger.join(others, on="customer_id", how="semi", maintain_order="left")
        placed.append(_per_customer(_placed(entries, spans)))
    return _per_plan(pl.concat(placed))


# name: sign (credits as positive amounts)
_PLAN_TOTALS = {"granted": 1, "consumed": -1, "expired": -1, "voided": -1, "rolled_over": -1}


def _subscription_spans(subscriptions: Sequence[Subscription]) -> pl.DataFrame:
    schema: dict[str, pl.DataType] = {
        "customer_id": pl.String(),
        "plan_id": pl.String(),
        "start": TIMESTAMP,
        "end": TIMESTAMP,
    }
    return pl.DataFrame(
        [
            {
                "customer_id": s.customer_id,
                "plan_id": s.plan_id,
                "start": as_utc(s.start),
                "end": None if s.end is None else as_utc(s.end),
            }
            for s in subscriptions
        ],
        schema=schema,
    ).sort("start")


def _placed(ledger: pl.DataFrame, spans: pl.DataFrame) -> pl.DataFrame:
    """The entries of `ledger` with `plan_id`: the customer's plan at the entry's time."""
    entries = ledger.select("customer_id", "currency_id", "timestamp", "entry_type", "amount")
    if entries["timestamp"].is_sorted():  # the ledger order is chronological: no sort needed
        entries = entries.with_columns(pl.col("timestamp").set_sorted())
    else:
        entries = entries.sort("timestamp")
    return entries.join_asof(
        spans,
        left_on="timestamp",
        right_on="start",
        by="customer_id",
        strategy="backward",
        check_sortedness=False,  # both sides are sorted on the time column just above
    ).with_columns(
        pl.when(pl.col("end").is_null() | (pl.col("timestamp") < pl.col("end")))
        .then(pl.col("plan_id"))
        .otherwise(None)
        .fill_null(NO_PLAN_NAME)
        .alias("plan_id")
    )


def _per_customer(placed: pl.DataFrame) -> pl.DataFrame:
    """Totals per customer, currency and plan of placed entries (credits as positive amounts)."""
    return placed.group_by("customer_id", "currency_id", "plan_id").agg(
        (sign * pl.col("amount").filter(pl.col("entry_type") == name.upper()).sum()).alias(name)
        for name, sign in _PLAN_TOTALS.items()
    )


def _per_plan(per_customer: pl.DataFrame) -> pl.DataFrame:
    return (
        per_customer.group_by("currency_id", "plan_id")
        .agg(
            pl.col("customer_id").n_unique().cast(pl.Int64).alias("customers"),
            *(pl.col(name).sum() for name in _PLAN_TOTALS),
        )
        .sort("currency_id", "plan_id")
    )


def _json_value(value: object) -> object:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def cost(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    customers: CustomerInputs,
    *,
    events: str = "events",
) -> Costing:
    """Match and cost the events of table `events` (see `costing.cost_events`)."""
    return cost_events(con, catalog, customers.subscriptions, events=events)


def simulate(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    customers: CustomerInputs | None = None,
    *,
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
    """Replay the events of table `events` through `catalog` and the customers' grants (SPEC §5/6).

    `costing` reuses an earlier costing of the same events (scenario comparisons cost once per
    distinct set of rates). Rejected events are those of ingestion (when `ingest`, the report of
    the ingestion that filled `events`, is given) and those whose formulas gave a null or
    negative cost. With `ingest`, an event whose meter value is not a usable number (text that
    is not a number, NaN, infinite) is first moved to the rejected events as `bad_value`, as the
    commands do (`unusable_values_rejected`); `SimulationResult.ingest` counts it.
    `activity`: how the credit activity stream is derived (`ActivityOptions`: low-balance
    thresholds, ending-soon days); None derives none. `serving`: the costs to serve of every event
    in the horizon, computed earlier (`cost_to_serve.serve_costs`; those of events not served are
    taken off from table `events`).
    """
    customers = customers if customers is not None else CustomerInputs()
    problems = customer_problems(customers, catalog)
    if problems:
        raise ValidationError(problems, source="customers")
    ingest, costing = unusable_values_rejected(con, catalog, ingest, events=events, costing=costing)
    costed = costing if costing is not None else cost(con, catalog, customers, events=events)
    replay_input = ReplayInput(
        currencies=catalog.currencies,
        grants=customers.grants,
        recurring=recurring_entitlements(customers.subscriptions, catalog),
        auto_recharges=customers.auto_recharges,
        consumptions=costed.consumptions,
        enforcement=enforcement,
        start=start,
        until=until,
        scenario=scenario,
    )
    result = replay(replay_input, engine=engine, progress=progress)  # type: ignore[arg-type]
    plans = plan_summary(result.ledger, customers.subscriptions, balances=result.balances)
    margin = replay_margin(
        con,
        catalog,
        result.ledger,
        grants=customers.grants,
        subscriptions=customers.subscriptions,
        not_served=pl.concat([costed.rejected["event_id"], result.denied_events["event_id"]]),
        events=events,
        start=result.start,
        until=result.until,
        serving=serving,
    )
    return SimulationResult(
        replay=result,
        rejected_events=with_ingest_rejected(con, ingest, costed.rejected),
        ingest=ingest,
        plan_summary=plans,
        activity=None if activity is None else replay_activity(result, replay_input, activity),
        margin=margin,
    )


def unusable_values_rejected(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    ingest: IngestReport | None,
    *,
    events: str = "events",
    costing: Costing | None = None,
) -> tuple[IngestReport | None, Costing | None]:
    """`ingest` after `meters.reject_unusable_values` for `catalog`'s meters, and `costing`.

    When `ingest` reports on table `events`, the events whose meter value is not a usable number
    move to its rejected table as `bad_value` (SPEC §4: every row accepted or rejected with a
    reason), so a replay neither counts them as no usage nor costs them. Once per meter: a
    report whose `checked_meters` hold the catalog's is returned as it is (the commands check on
    reading; `compare` checks once for every scenario). `costing` is returned as None, to be
    made again, when it was made before events just moved out of the table.
    """
    if ingest is None or ingest.table != events:
        return ingest, costing
    checked = reject_unusable_values(con, catalog, ingest)
    if costing is not None and checked.rejected != ingest.rejected:
        costing = None
    return checked, costing


def customer_problems(customers: CustomerInputs, catalog: Catalog) -> list[Problem]:
    """What the customer inputs name that the catalog does not have: plans, add-ons, currencies.

    Each problem names the record by its id, e.g. `subscriptions[acme:0].plan_id`.
    """
    plans = {p.id for p in catalog.plans}
    addons = {a.id for a in catalog.addons}
    currencies = {c.id for c in catalog.currencies}
    problems: list[Problem] = []
    for subscription in customers.subscriptions:
        here = f"subscriptions[{subscription.subscription_id}]"
        if subscription.plan_id not in plans:
            problems.append(
                Problem(path=f"{here}.plan_id", message=f"unknown plan {subscription.plan_id!r}")
            )
        for addon in subscription.addons:
            if addon not in addons:
                problems.append(Problem(path=f"{here}.addons", message=f"unknown add-on {addon!r}"))
    for grant in customers.grants:
        if grant.currency_id not in currencies:
            problems.append(
                Problem(
                    path=f"grants[{grant.grant_id}].currency_id",
                    message=f"unknown currency {grant.currency_id!r}",
                )
            )
    for recharge in customers.auto_recharges:
        if recharge.currency_id not in currencies:
            problems.append(
                Problem(
                    path=f"auto_recharge[{recharge.customer_id}].currency_id",
                    message=f"unknown currency {recharge.currency_id!r}",
                )
            )
    return problems


def with_ingest_rejected(
    con: duckdb.DuckDBPyConnection, ingest: IngestReport | None, rejected: pl.DataFrame
) -> pl.DataFrame:
    """`rejected` (costing's rejections) with the rows the ingestion `ingest` rejected, sorted on
    reason, source row and event id; `rejected` as it is without an ingestion report."""
    if ingest is None:
        return rejected
    ingest_rejected = con.table(ingest.rejected_table).pl()
    return pl.concat([_rejected_frame(ingest_rejected), rejected], how="vertical_relaxed").sort(
        ["reason", "source_row", "event_id"], nulls_last=True
    )


def _rejected_frame(frame: pl.DataFrame) -> pl.DataFrame:
    columns = [
        pl.col(name).cast(dtype) if name in frame.columns else pl.lit(None, dtype).alias(name)
        for name, dtype in REJECTED_COLUMNS.items()
    ]
    return frame.select(columns)
