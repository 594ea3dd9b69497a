"""Usage reports (SPEC §4): usage per customer, feature and period, with reset markers.

A report row is one (customer, feature, period segment). Periods are UTC calendar days, ISO weeks
(from Monday), calendar months, or the subscription's billing periods (monthly from the start,
day of month clamped to the month's last day, SPEC §5). A period is cut where a subscription
starts or ends inside it, so usage restarts at plan changes. `reset_reason` says why usage
restarted at the row's `period_start`:

- `subscription_start` — the customer's first subscription (or a renewal on the same plan) begins;
- `plan_change` — a subscription on a different plan than the previous one begins;
- `period_start` — an ordinary period boundary.

Usage outside every subscription is reported per calendar period (calendar month for `billing`)
with a null `plan_id`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import duckdb
import polars as pl
import pyarrow as pa

from pricing_lab.catalog.model import Catalog
from pricing_lab.errors import InputError, Problem, ValidationError
from pricing_lab.events.ingest import quote_ident, quote_literal
from pricing_lab.events.meters import aggregate_sql, features_sql, matched_usage_sql
from pricing_lab.ledger.calendar import add_months
from pricing_lab.timeutil import MICROSECOND, naive_utc

ReportPeriod = Literal["day", "week", "month", "billing"]
REPORT_PERIODS: tuple[str, ...] = ("day", "week", "month", "billing")
REPORT_COLUMNS = (
    "customer_id",
    "feature_id",
    "plan_id",
    "period_start",
    "period_end",
    "reset_reason",
    "events",
    "usage",
    "display_unit",
    "display_usage",
    "billable_usage",
)
_EARLIEST = datetime(1, 1, 1)
_LATEST = datetime(9999, 12, 31)
_STEP = {"day": "INTERVAL 1 DAY", "week": "INTERVAL 7 DAY", "month": "INTERVAL 1 MONTH"}


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriptionSpan:
    """The simple tabular subscription a usage report needs: who, which plan, when."""

    customer_id: str
    plan_id: str
    start: datetime  # naive UTC
    end: datetime | None = None  # exclusive; None: still running


def read_subscriptions(
    con: duckdb.DuckDBPyConnection, subscriptions: pl.DataFrame | str | Path
) -> tuple[SubscriptionSpan, ...]:
    """Subscriptions from a Polars DataFrame, a DuckDB table name, or a .csv / .parquet file.

    Columns `customer_id, plan_id, start` and optional `end`. Raises `ValidationError` listing
    every bad row (missing values, end not after start, overlapping subscriptions of a customer).
    """
    if isinstance(subscriptions, pl.DataFrame):
        frame = subscriptions
        label = "subscriptions"
    elif isinstance(subscriptions, Path) or (
        isinstance(subscriptions, str)
        and Path(subscriptions).suffix.lower() in (".csv", ".parquet")
    ):
        file = Path(subscriptions)
        if not file.exists():
            raise InputError(f"{file}: file not found")
        reader = "read_parquet" if file.suffix.lower() == ".parquet" else "read_csv"
        try:
            frame = con.sql(f"SELECT * FROM {reader}({quote_literal(str(file))})").pl()
        except duckdb.Error as exc:
            raise InputError(f"{file}: cannot read subscriptions: {exc}") from exc
        label = str(file)
    else:
        try:
            frame = con.sql(f"SELECT * FROM {quote_ident(str(subscriptions))}").pl()
        except duckdb.Error:
            raise InputError(
                f"{subscriptions}: not a subscriptions table; give a .csv or .parquet file "
                "(customer_id, plan_id, start, end) or a DuckDB table name"
            ) from None
        label = str(subscriptions)
    missing = [c for c in ("customer_id", "plan_id", "start") if c not in frame.columns]
    if missing:
        raise InputError(f"{label}: missing subscription column(s) {', '.join(missing)}")
    if "end" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, pl.Datetime("us")).alias("end"))
    # Text that is not a time must not become a missing value: a missing `end` would silently
    # make the subscription open-ended. Each such value is a problem of its row.
    unreadable: dict[int, list[str]] = {}
    for column in ("start", "end"):
        if frame.schema[column] == pl.String:
            raw = frame[column]
            frame = frame.with_columns(pl.col(column).str.to_datetime(time_unit="us", strict=False))
            for index, (text, value) in enumerate(zip(raw, frame[column], strict=True)):
                if value is None and text is not None and text.strip():
                    unreadable.setdefault(index, []).append(f"{column}: not a time: {text!r}")
        elif frame.schema[column] == pl.Date:
            frame = frame.with_columns(pl.col(column).cast(pl.Datetime("us")))
    problems: list[Problem] = []
    spans: list[SubscriptionSpan] = []
    rows = frame.select("customer_id", "plan_id", "start", "end").iter_rows()
    for index, (customer, plan, start, end) in enumerate(rows):
        path = f"row {index + 1}"
        if index in unreadable:
            problems.extend(Problem(path=path, message=m) for m in unreadable[index])
            continue
        if customer is None or plan is None or start is None:
            problems.append(Problem(path=path, message="customer_id, plan_id and start required"))
            continue
        start_utc = _naive_utc(start)
        end_utc = _naive_utc(end) if end is not None else None
        if end_utc is not None and end_utc <= start_utc:
            problems.append(Problem(path=path, message="end must be after start"))
            continue
        spans.append(
            SubscriptionSpan(
                customer_id=str(customer), plan_id=str(plan), start=start_utc, end=end_utc
            )
        )
    spans.sort(key=lambda s: (s.customer_id, s.start))
    for before, after in itertools.pairwise(spans):
        if before.customer_id == after.customer_id and (
            before.end is None or before.end > after.start
        ):
            problems.append(
                Problem(
                    path=f"customer {after.customer_id}",
                    message=f"subscriptions overlap at {after.start.isoformat(sep=' ')}",
                )
            )
    if problems:
        raise ValidationError(problems, source=label)
    return tuple(spans)


def billing_periods(
    span: SubscriptionSpan, until: datetime
) -> list[tuple[datetime, datetime, int]]:
    """Monthly billing periods `(start, end, index)` of a subscription that start before `until`.

    Period i starts at `add_months(start, i)` (day clamped to the month's end, always from the
    original anchor), and ends at the next period start or the subscription's end.
    """
    periods: list[tuple[datetime, datetime, int]] = []
    index = 0
    while True:
        begin = add_months(span.start, index)
        if begin >= until or (span.end is not None and begin >= span.end):
            return periods
        finish = add_months(span.start, index + 1)
        if span.end is not None and span.end < finish:
            finish = span.end
        periods.append((begin, finish, index))
        index += 1


def usage_report(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    *,
    period: ReportPeriod = "month",
    subscriptions: pl.DataFrame | str | Path | Sequence[SubscriptionSpan] | None = None,
    events: str = "events",
    reported: str | None = "reported_usage",
) -> pl.DataFrame:
    """Usage per customer, feature and period segment, as a Polars DataFrame.

    Columns: customer_id, feature_id, plan_id, period_start, period_end (exclusive),
    reset_reason, events (matched rows), usage (meter unit, the meter's aggregation over the
    segment), display_unit, display_usage, billable_usage (whole display units, rounded up).
    Sorted by customer, feature and period start.
    """
    if period not in REPORT_PERIODS:
        raise InputError(f"unknown period {period!r}: use day, week, month or billing")
    if subscriptions is None:
        spans: tuple[SubscriptionSpan, ...] = ()
    elif isinstance(subscriptions, pl.DataFrame | str | Path):
        spans = read_subscriptions(con, subscriptions)
    else:
        spans = tuple(subscriptions)
    matched = matched_usage_sql(con, catalog, events=events, reported=reported)
    last = con.execute(f"SELECT max(timestamp) FROM ({matched})").fetchall()[0][0]
    segments_view = _register_segments(con, spans, period, last)
    calendar = "month" if period == "billing" else period
    trunc = f"CAST(date_trunc('{calendar}', m.timestamp) AS TIMESTAMP)"
    step = _STEP[calendar]
    start_sql = (
        f"CASE WHEN s.customer_id IS NULL THEN {trunc} "
        f"WHEN s.calendar THEN greatest({trunc}, s.seg_start) ELSE s.seg_start END"
    )
    end_sql = (
        f"CASE WHEN s.customer_id IS NULL THEN {trunc} + {step} "
        f"WHEN s.calendar THEN least({trunc} + {step}, s.seg_end) ELSE s.seg_end END"
    )
    segmented = (
        f"SELECT m.*, s.plan_id, CAST({start_sql} AS TIMESTAMP) AS period_start, "
        f"CAST({end_sql} AS TIMESTAMP) AS period_end, "
        f"CASE WHEN s.customer_id IS NOT NULL AND {start_sql} = s.seg_start THEN s.reason "
        "ELSE 'period_start' END AS reset_reason "
        f"FROM ({matched}) AS m LEFT JOIN {quote_ident(segments_view)} AS s "
        "ON m.customer_id = s.customer_id AND m.timestamp >= s.seg_start "
        "AND m.timestamp < s.seg_end"
    )
    keys = ["plan_id", "period_start", "period_end", "reset_reason"]
    sql = aggregate_sql(segmented, features_sql(catalog), keys)
    columns = ", ".join(quote_ident(c) for c in REPORT_COLUMNS)
    try:
        frame = con.sql(
            f"SELECT {columns} FROM ({sql}) ORDER BY customer_id, feature_id, period_start"
        ).pl()
    finally:
        con.unregister(segments_view)
    return frame


def _register_segments(
    con: duckdb.DuckDBPyConnection,
    spans: Sequence[SubscriptionSpan],
    period: str,
    last_event: datetime | None,
) -> str:
    """Register the customers' time segments as a view.

    Each subscription gives one segment (billing: one per billing period) and each gap before,
    between or after a customer's subscriptions one `calendar` segment (no plan) that is cut
    at calendar period boundaries like usage of customers without subscriptions.
    """
    columns = ("customer_id", "plan_id", "seg_start", "seg_end", "reason", "calendar")
    rows: dict[str, list[Any]] = {k: [] for k in columns}

    def add(span: SubscriptionSpan, plan: str | None, begin: datetime, finish: datetime | None,
            reason: str, calendar: bool) -> None:  # fmt: skip
        for key, value in zip(
            columns,
            (span.customer_id, plan, begin, finish or _LATEST, reason, calendar),
            strict=True,
        ):
            rows[key].append(value)

    until = (last_event or datetime(1970, 1, 1)).replace(tzinfo=None) + MICROSECOND
    previous: SubscriptionSpan | None = None
    for span in spans:  # sorted by customer and start
        if previous is None or previous.customer_id != span.customer_id:
            if previous is not None and previous.end is not None:
                add(previous, None, previous.end, None, "subscription_end", True)
            add(span, None, _EARLIEST, span.start, "period_start", True)
            first_reason = "subscription_start"
        else:
            if previous.end is not None and previous.end < span.start:
                add(span, None, previous.end, span.start, "subscription_end", True)
            same = previous.plan_id == span.plan_id
            first_reason = "subscription_start" if same else "plan_change"
        if period == "billing":
            periods = billing_periods(span, max(until, span.start))
            for begin, finish, index in periods:
                reason = first_reason if index == 0 else "period_start"
                add(span, span.plan_id, begin, finish, reason, False)
            if not periods:
                add(span, span.plan_id, span.start, span.end, first_reason, False)
        else:
            add(span, span.plan_id, span.start, span.end, first_reason, True)
        previous = span
    if previous is not None and previous.end is not None:
        add(previous, None, previous.end, None, "subscription_end", True)
    table = pa.table(
        {
            "customer_id": pa.array(rows["customer_id"], pa.string()),
            "plan_id": pa.array(rows["plan_id"], pa.string()),
            "seg_start": pa.array(rows["seg_start"], pa.timestamp("us")),
            "seg_end": pa.array(rows["seg_end"], pa.timestamp("us")),
            "reason": pa.array(rows["reason"], pa.string()),
            "calendar": pa.array(rows["calendar"], pa.bool_()),
        }
    )
    name = "__pricing_lab_report_segments"
    con.register(name, table)
    return name


def _naive_utc(value: Any) -> datetime:
    if not isinstance(value, datetime):
        raise InputError(f"not a timestamp: {value!r}")
    return naive_utc(value)
