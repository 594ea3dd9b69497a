"""Altair charts of replay and scenario results, built from data aggregated to the chart's grain.

Every function takes Polars frames with the SPEC §5/§6 column names, aggregates first (a day or an
hour per point, a bounded number of customers) and returns an `alt.Chart`. Amounts are converted to
floats only here, for drawing; the numbers themselves stay exact decimals everywhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import altair as alt
import polars as pl

Grain = Literal["1h", "1d", "1w", "1mo"]

# A chart never carries more than this many rows, nor a line more than POINTS_PER_SERIES points.
MAX_POINTS = 5_000
POINTS_PER_SERIES = 400
DEFAULT_CUSTOMERS = 8

CONSUMPTION_TYPES = ("CONSUMED",)


def _as_float(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.Float64)


def _auto_grain(timestamps: pl.Series, series_count: int) -> Grain:
    """The finest grain that keeps each of `series_count` lines under POINTS_PER_SERIES points and
    all of them under MAX_POINTS.

    The points of a line are at most the distinct time buckets of all the timestamps (buckets
    aligned like `group_by_dynamic`'s windows), so the count is exact, not estimated from the span.
    """
    values = timestamps.drop_nulls()
    if values.is_empty():
        return "1d"
    grains: tuple[Grain, ...] = ("1h", "1d", "1w")
    for grain in grains:
        points = values.dt.truncate(grain).n_unique()
        if points <= POINTS_PER_SERIES and points * max(series_count, 1) <= MAX_POINTS:
            return grain
    return "1mo"


def top_customers(ledger: pl.DataFrame, count: int = DEFAULT_CUSTOMERS) -> list[str]:
    """The customers that consumed the most credits, largest first (ties by id)."""
    consumed = (
        ledger.filter(pl.col("entry_type").is_in(CONSUMPTION_TYPES))
        .group_by("customer_id")
        .agg((-pl.col("amount")).sum().alias("consumed"))
        .sort(["consumed", "customer_id"], descending=[True, False])
    )
    return consumed["customer_id"].head(count).to_list()


def balance_over_time(
    ledger: pl.DataFrame,
    customers: Sequence[str] | None = None,
    *,
    currency: str | None = None,
    grain: Grain | None = None,
) -> alt.Chart:
    """Balance of chosen customers over time: the last balance in each time bucket, one line each.

    By default the customers are the eight largest consumers, and the grain is the finest that keeps
    the chart under MAX_POINTS points.
    """
    chosen = list(customers) if customers is not None else top_customers(ledger)
    data = ledger.filter(pl.col("customer_id").is_in(chosen))
    if currency is not None:
        data = data.filter(pl.col("currency_id") == currency)
    step = grain or _auto_grain(data["timestamp"], len(chosen))
    points = (
        data.sort(["customer_id", "currency_id", "entry_id"])
        .group_by_dynamic("timestamp", every=step, group_by=["customer_id", "currency_id"])
        .agg(pl.col("balance_after").last().alias("balance"))
        .with_columns(_as_float("balance"))
        .sort(["customer_id", "currency_id", "timestamp"])
    )
    return (
        alt.Chart(points, title="Credit balance over time")
        .mark_line(interpolate="step-after", point=False)
        .encode(
            x=alt.X("timestamp:T", title="time (UTC)"),
            y=alt.Y("balance:Q", title="balance (credits)"),
            color=alt.Color("customer_id:N", title="customer"),
            strokeDash=alt.StrokeDash("currency_id:N", title="currency"),
            tooltip=["customer_id:N", "currency_id:N", "timestamp:T", "balance:Q"],
        )
    )


def burn_per_feature(ledger: pl.DataFrame, *, grain: Grain | None = None) -> alt.Chart:
    """Credits consumed per feature over time, stacked, one bar per time bucket."""
    consumed = ledger.filter(pl.col("entry_type").is_in(CONSUMPTION_TYPES))
    features = consumed["feature_id"].n_unique()
    step = grain or _auto_grain(consumed["timestamp"], features)
    points = (
        consumed.sort("timestamp")
        .group_by_dynamic("timestamp", every=step, group_by=["feature_id"])
        .agg((-pl.col("amount")).sum().alias("credits"))
        .with_columns(_as_float("credits"))
        .sort(["timestamp", "feature_id"])
    )
    return (
        alt.Chart(points, title="Credits burned per feature")
        .mark_area()
        .encode(
            x=alt.X("timestamp:T", title="time (UTC)"),
            y=alt.Y("credits:Q", stack=True, title="credits consumed"),
            color=alt.Color("feature_id:N", title="feature"),
            tooltip=["feature_id:N", "timestamp:T", "credits:Q"],
        )
    )


def change_distribution(
    comparison: pl.DataFrame, *, measure: str = "consumed_change_pct", bins: int = 40
) -> alt.Chart:
    """Histogram of the per-customer change between each scenario and the base.

    `comparison` has one row per customer and scenario with the column named by `measure`
    (by default the percent change of credits consumed against the base).
    """
    data = (
        comparison.filter(pl.col(measure).is_not_null())
        .select("scenario", pl.col(measure).cast(pl.Float64).alias("change"))
        .filter(pl.col("change").is_finite())
    )
    counts = _histogram(data, "change", bins)
    return (
        alt.Chart(counts, title="Per-customer change against the base")
        .mark_bar(opacity=0.7)
        .encode(
            x=alt.X("bin_start:Q", bin="binned", title=measure.replace("_", " ")),
            x2="bin_end:Q",
            y=alt.Y("customers:Q", title="customers", stack=None),
            color=alt.Color("scenario:N"),
            tooltip=["scenario:N", "bin_start:Q", "bin_end:Q", "customers:Q"],
        )
    )


def runout_shift(comparison: pl.DataFrame, *, bins: int = 40) -> alt.Chart:
    """Histogram of how many days earlier (negative) or later credits run out than in the base.

    Uses `runout_shift_days` (one row per customer and scenario; null when either never ran out).
    """
    data = comparison.filter(pl.col("runout_shift_days").is_not_null()).select(
        "scenario", pl.col("runout_shift_days").cast(pl.Float64).alias("shift")
    )
    counts = _histogram(data, "shift", bins)
    return (
        alt.Chart(counts, title="Run-out date shift against the base (days)")
        .mark_bar(opacity=0.7)
        .encode(
            x=alt.X("bin_start:Q", bin="binned", title="days (negative: runs out earlier)"),
            x2="bin_end:Q",
            y=alt.Y("customers:Q", title="customers", stack=None),
            color=alt.Color("scenario:N"),
            tooltip=["scenario:N", "bin_start:Q", "bin_end:Q", "customers:Q"],
        )
    )


def revenue_and_breakage(scenario_totals: pl.DataFrame) -> alt.Chart:
    """Recharge revenue and breakage per scenario, side by side (money, not credits).

    `scenario_totals` has one row per scenario with `recharge_revenue` and `breakage`.
    """
    data = scenario_totals.select(
        "scenario",
        _as_float("recharge_revenue").alias("recharge revenue"),
        _as_float("breakage").alias("breakage"),
    ).unpivot(index="scenario", variable_name="measure", value_name="money")
    return (
        alt.Chart(data, title="Recharge revenue and breakage per scenario")
        .mark_bar()
        .encode(
            x=alt.X("scenario:N", title=None),
            xOffset="measure:N",
            y=alt.Y("money:Q", title="money"),
            color=alt.Color("measure:N", title=None),
            tooltip=["scenario:N", "measure:N", "money:Q"],
        )
    )


def _histogram(data: pl.DataFrame, column: str, bins: int) -> pl.DataFrame:
    """Counts per scenario in `bins` equal-width bins shared by all scenarios."""
    schema = {"scenario": pl.String, "bin_start": pl.Float64, "bin_end": pl.Float64}
    if data.is_empty():
        return pl.DataFrame(schema=schema | {"customers": pl.UInt32})
    low = float(data[column].min())  # type: ignore[arg-type]
    high = float(data[column].max())  # type: ignore[arg-type]
    width = (high - low) / bins if high > low else 1.0
    return (
        data.with_columns(
            ((pl.col(column) - low) / width).floor().clip(0, bins - 1).cast(pl.Int64).alias("bin")
        )
        .group_by("scenario", "bin")
        .agg(pl.len().alias("customers"))
        .with_columns(
            (low + pl.col("bin") * width).alias("bin_start"),
            (low + (pl.col("bin") + 1) * width).alias("bin_end"),
        )
        .select("scenario", "bin_start", "bin_end", "customers")
        .sort("scenario", "bin_start")
    )
