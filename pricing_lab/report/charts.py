"""Altair charts of replay and scenario results, built from data aggregated to the chart's grain.

Every function takes Polars frames with the ledger's and the comparison's column names
(docs/ledger.md, docs/scenarios.md), aggregates first (a day or an hour per point, a bounded number
of customers) and returns an Altair chart. A chart with nothing to draw says so in words instead
of showing empty axes. Counts are drawn with whole-number ticks, money with its currency. Amounts
are converted to floats only here, for drawing; the numbers themselves stay exact decimals
everywhere else.

In a notebook, `enable_offline_rendering()` draws every chart without the network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Literal

import altair as alt
import polars as pl

Grain = Literal["1h", "1d", "1w", "1mo"]

# A chart never carries more than this many rows, nor a line more than POINTS_PER_SERIES points.
MAX_POINTS = 5_000
POINTS_PER_SERIES = 400
DEFAULT_CUSTOMERS = 8

CONSUMPTION_TYPES = ("CONSUMED",)
COUNT_AXIS = alt.Axis(tickMinStep=1, format="d")  # counts of customers: 0, 1, 2, never 0.5
FACET_COLUMNS = 3
BURN_DAILY_FROM = timedelta(days=3)  # burn spans at least this long are drawn per day or coarser


def enable_offline_rendering() -> None:
    """Draw Altair charts as static SVG made in this process (Altair's `svg` renderer, backed by
    `vl-convert`), so they show in JupyterLab and in notebooks exported to HTML with no network:
    Altair's default renderer loads Vega from a CDN when the chart is displayed."""
    alt.renderers.enable("svg")


def no_data(title: str, message: str) -> alt.Chart:
    """A chart-sized note saying why there is nothing to draw (instead of empty axes)."""
    note = pl.DataFrame({"message": [message]})
    return (
        alt.Chart(note, title=title)
        .mark_text(align="center", baseline="middle", fontSize=13, color="#555")
        .encode(text="message:N")
        .properties(width=420, height=60)
    )


def _as_float(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.Float64)


def _auto_grain(timestamps: pl.Series, series_count: int, *, finest: Grain = "1h") -> Grain:
    """The finest grain (no finer than `finest`) that keeps each of `series_count` lines under
    POINTS_PER_SERIES points and all of them under MAX_POINTS.

    The points of a line are at most the distinct time buckets of all the timestamps (buckets
    aligned like `group_by_dynamic`'s windows), so the count is exact, not estimated from the span.
    """
    values = timestamps.drop_nulls()
    if values.is_empty():
        return "1d"
    order: tuple[Grain, ...] = ("1h", "1d", "1w")
    grains = order[order.index(finest) :] if finest in order else ()
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
    normalize: bool = False,
) -> alt.Chart:
    """Balance of chosen customers over time: the last balance in each time bucket, one line each.

    By default the customers are the eight largest consumers, and the grain is the finest that keeps
    the chart under MAX_POINTS points. With `normalize`, each line is drawn as a share of that
    customer's own highest balance, so a customer holding 500 credits reads as well as one
    holding 700,000 (the tooltip keeps the credits).
    """
    chosen = list(customers) if customers is not None else top_customers(ledger)
    points = _balance_points(ledger, chosen, currency=currency, grain=grain)
    if points.is_empty():
        return no_data("Credit balance over time", "No ledger entries for these customers.")
    y = alt.Y("balance:Q", title="balance (credits)")
    tooltip = ["customer_id:N", "currency_id:N", "timestamp:T", _credits_tooltip("balance")]
    if normalize:
        points = _normalized(points, ledger.filter(pl.col("customer_id").is_in(chosen)))
        y = alt.Y("share_of_peak:Q", title="share of the customer's highest balance")
        y = y.axis(format="%")
        tooltip.append(alt.Tooltip("share_of_peak:Q", format=".0%", title="share of peak"))
    return (
        alt.Chart(points, title="Credit balance over time")
        .mark_line(interpolate="step-after", point=False)
        .encode(
            x=alt.X("timestamp:T", title="time (UTC)"),
            y=y,
            color=alt.Color("customer_id:N", title="customer"),
            strokeDash=alt.StrokeDash("currency_id:N", title="currency"),
            tooltip=tooltip,
        )
    )


def runout_balances(
    ledgers: Mapping[str, pl.DataFrame],
    customers: Sequence[tuple[str, str]],
    *,
    grain: Grain | None = None,
) -> alt.FacetChart | alt.Chart:
    """One small panel per (customer, currency): its lowest balance of each time bucket (a day
    for a replay of a few months) in every scenario of `ledgers` (scenario name → ledger), as a
    share of the highest of those balances in any scenario, with a line at zero. Panels share
    one scale (100 % = the customer's own peak) whatever the customer's size; the lowest balance
    shows a run-out that a recharge later the same day would hide.
    """
    title = "Lowest balance of each day, as a share of the customer's highest"
    if not customers:
        return no_data(title, "No customer runs out in any scenario.")
    chosen = pl.DataFrame(
        {"customer_id": [c for c, _ in customers], "currency_id": [c for _, c in customers]},
        schema={"customer_id": pl.String, "currency_id": pl.String},
    )
    frames = []
    for scenario, ledger in ledgers.items():
        entries = ledger.join(chosen, on=["customer_id", "currency_id"], how="semi")
        frames.append(entries.with_columns(pl.lit(scenario).alias("scenario")))
    entries = pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()
    if entries.is_empty():
        return no_data(title, "No ledger entries for the customers at risk.")
    step = grain or _auto_grain(entries["timestamp"], chosen.height * len(ledgers))
    points = _normalized(
        entries.sort("scenario", "customer_id", "currency_id", "entry_id")
        .group_by_dynamic(
            "timestamp", every=step, group_by=["scenario", "customer_id", "currency_id"]
        )
        .agg(pl.col("balance_after").min().alias("balance"))
        .with_columns(_as_float("balance"))
        .sort("scenario", "customer_id", "currency_id", "timestamp"),
        entries,
    ).with_columns(
        (pl.col("customer_id") + pl.lit(" (") + pl.col("currency_id") + pl.lit(")")).alias("panel")
    )
    order = [f"{customer} ({currency})" for customer, currency in customers]
    scenarios = list(ledgers)
    lines = (
        alt.Chart()
        .mark_line(interpolate="step-after")
        .encode(
            x=alt.X("timestamp:T", title="time (UTC)"),
            y=alt.Y("share_of_peak:Q", title="share of highest balance").axis(format="%"),
            color=alt.Color("scenario:N", title="scenario").scale(domain=scenarios),
            strokeDash=alt.StrokeDash("scenario:N", title="scenario").scale(domain=scenarios),
            tooltip=[
                "scenario:N",
                "customer_id:N",
                "timestamp:T",
                _credits_tooltip("balance"),
                alt.Tooltip("share_of_peak:Q", format=".0%", title="share of peak"),
            ],
        )
    )
    zero = alt.Chart().mark_rule(color="#333", strokeWidth=1).encode(y=alt.datum(0))
    return (
        alt.layer(lines, zero, data=points)
        .properties(width=240, height=120)
        .facet(
            facet=alt.Facet("panel:N", title=None, sort=order),
            columns=FACET_COLUMNS,
            title=title,
        )
    )


def _balance_points(
    ledger: pl.DataFrame, customers: Sequence[str], *, currency: str | None, grain: Grain | None
) -> pl.DataFrame:
    data = ledger.filter(pl.col("customer_id").is_in(list(customers)))
    if currency is not None:
        data = data.filter(pl.col("currency_id") == currency)
    step = grain or _auto_grain(data["timestamp"], len(customers))
    return (
        data.sort(["customer_id", "currency_id", "entry_id"])
        .group_by_dynamic("timestamp", every=step, group_by=["customer_id", "currency_id"])
        .agg(pl.col("balance_after").last().alias("balance"))
        .with_columns(_as_float("balance"))
        .sort(["customer_id", "currency_id", "timestamp"])
    )


def _normalized(points: pl.DataFrame, entries: pl.DataFrame) -> pl.DataFrame:
    """`points` with `share_of_peak` = balance / the customer's highest balance after any of its
    `entries` (its largest absolute balance when it never held a positive one)."""
    keys = ["customer_id", "currency_id"]
    peaks = (
        entries.group_by(keys)
        .agg(
            pl.col("balance_after").cast(pl.Float64).max().alias("__high"),
            pl.col("balance_after").cast(pl.Float64).abs().max().alias("__size"),
        )
        .select(
            *keys,
            pl.when(pl.col("__high") > 0)
            .then(pl.col("__high"))
            .otherwise(pl.col("__size"))
            .alias("__peak"),
        )
    )
    return (
        points.join(peaks, on=keys, how="left")
        .with_columns(
            pl.when(pl.col("__peak") > 0)
            .then(pl.col("balance") / pl.col("__peak"))
            .otherwise(0.0)
            .alias("share_of_peak")
        )
        .drop("__peak")
    )


def _credits_tooltip(column: str) -> alt.Tooltip:
    return alt.Tooltip(f"{column}:Q", format=",.2f", title=f"{column} (credits)")


def burn_per_feature(ledger: pl.DataFrame, *, grain: Grain | None = None) -> alt.Chart:
    """Credits consumed per feature over time, stacked, one point per time bucket; a bucket
    without consumption is drawn at zero (the area drops to the axis on idle days)."""
    title = "Credits burned per feature"
    consumed = ledger.filter(pl.col("entry_type").is_in(CONSUMPTION_TYPES))
    if consumed.is_empty():
        return no_data(title, "No credits were consumed.")
    features = consumed["feature_id"].n_unique()
    first, last = consumed["timestamp"].min(), consumed["timestamp"].max()
    assert isinstance(first, datetime) and isinstance(last, datetime)
    # Burn per hour over several days is mostly nights at zero: a day is the finest grain then.
    finest: Grain = "1d" if last - first >= BURN_DAILY_FROM else "1h"
    step = grain or _auto_grain(consumed["timestamp"], features, finest=finest)
    sums = (
        consumed.sort("timestamp")
        .group_by_dynamic("timestamp", every=step, group_by=["feature_id"])
        .agg((-pl.col("amount")).sum().alias("credits"))
        .with_columns(_as_float("credits"))
    )
    first, last = sums["timestamp"].min(), sums["timestamp"].max()
    assert isinstance(first, datetime) and isinstance(last, datetime)
    buckets = pl.Series(
        "timestamp", pl.datetime_range(first, last, interval=step, eager=True)
    ).cast(sums.schema["timestamp"])
    grid = sums.select("feature_id").unique().join(buckets.to_frame(), how="cross")
    points = (
        grid.join(sums, on=["feature_id", "timestamp"], how="left")
        .with_columns(pl.col("credits").fill_null(0.0))
        .select("feature_id", "timestamp", "credits")
        .sort(["timestamp", "feature_id"])
    )
    return (
        alt.Chart(points, title=title)
        .mark_area()
        .encode(
            x=alt.X("timestamp:T", title="time (UTC)"),
            y=alt.Y("credits:Q", stack=True, title="credits consumed"),
            color=alt.Color("feature_id:N", title="feature"),
            tooltip=["feature_id:N", "timestamp:T", _credits_tooltip("credits")],
        )
    )


def change_distribution(
    comparison: pl.DataFrame, *, measure: str = "consumed_change_pct", bins: int = 40
) -> alt.Chart:
    """Histogram of the per-customer change between each scenario and the base.

    `comparison` has one row per customer and scenario with the column named by `measure`
    (by default the percent change of credits consumed against the base).
    """
    title = "Per-customer change against the base"
    data = (
        comparison.filter(pl.col(measure).is_not_null())
        .select("scenario", pl.col(measure).cast(pl.Float64).alias("change"))
        .filter(pl.col("change").is_finite())
    )
    if data.is_empty():
        return no_data(title, "No customer consumed credits in the base and a scenario.")
    axis_title = "change in credits consumed (%)" if measure == "consumed_change_pct" else measure
    return _histogram_chart(_histogram(data, "change", bins), title, axis_title.replace("_", " "))


def runout_shift(comparison: pl.DataFrame, *, bins: int = 40) -> alt.Chart:
    """Histogram of how many days earlier (negative) or later credits run out than in the base.

    Uses `runout_shift_days` (one row per customer and scenario; null when either never ran out).
    """
    title = "Run-out date shift against the base (days)"
    data = comparison.filter(pl.col("runout_shift_days").is_not_null()).select(
        "scenario", pl.col("runout_shift_days").cast(pl.Float64).alias("shift")
    )
    if data.is_empty():
        return no_data(title, "No customer runs out both in the base and in a scenario.")
    counts = _histogram(data, "shift", bins)
    return _histogram_chart(counts, title, "days (negative: runs out earlier)")


def _histogram_chart(counts: pl.DataFrame, title: str, x_title: str) -> alt.Chart:
    """Bars of customers per bin and scenario (`_histogram`'s counts), whole-number counts."""
    return (
        alt.Chart(counts, title=title)
        .mark_bar(opacity=0.7)
        .encode(
            x=alt.X("bin_start:Q", bin="binned", title=x_title),
            x2="bin_end:Q",
            y=alt.Y("customers:Q", title="customers", stack=None, axis=COUNT_AXIS),
            color=alt.Color("scenario:N"),
            tooltip=["scenario:N", "bin_start:Q", "bin_end:Q", "customers:Q"],
        )
    )


def consumed_per_scenario(headlines: pl.DataFrame) -> alt.Chart:
    """Credits consumed per scenario (one bar each; one colour per currency).

    `headlines` has one row per scenario and currency with `consumed` (`findings.headlines`).
    """
    title = "Credits consumed per scenario"
    if headlines.is_empty():
        return no_data(title, "No scenario was replayed.")
    data = headlines.select("scenario", "currency_id", _as_float("consumed"))
    order = list(dict.fromkeys(headlines["scenario"].to_list()))
    return (
        alt.Chart(data, title=title)
        .mark_bar()
        .encode(
            x=alt.X("scenario:N", title=None, sort=order),
            xOffset="currency_id:N",
            y=alt.Y("consumed:Q", title="credits consumed"),
            color=alt.Color("currency_id:N", title="currency"),
            tooltip=["scenario:N", "currency_id:N", _credits_tooltip("consumed")],
        )
    )


def revenue_and_breakage(
    scenario_totals: pl.DataFrame, *, revenue: str = "recharge_revenue", currency: str = ""
) -> alt.Chart:
    """Revenue (by default the recharge revenue) and breakage per scenario, side by side, in
    money (`currency`, e.g. USD, names the axis).

    `scenario_totals` has one row per scenario with the `revenue` column and `breakage`.
    """
    title = f"{revenue.replace('_', ' ').capitalize()} and breakage per scenario"
    if scenario_totals.is_empty():
        return no_data(title, "No scenario was replayed.")
    revenue_label = revenue.replace("_", " ")
    data = scenario_totals.select(
        "scenario",
        _as_float(revenue).alias(revenue_label),
        _as_float("breakage").alias("breakage"),
    ).unpivot(index="scenario", variable_name="measure", value_name="money")
    unit = currency or "money"
    order = list(dict.fromkeys(scenario_totals["scenario"].to_list()))
    return (
        alt.Chart(data, title=title)
        .mark_bar()
        .encode(
            x=alt.X("scenario:N", title=None, sort=order),
            xOffset="measure:N",
            y=alt.Y("money:Q", title=unit).axis(format=",.2f"),
            color=alt.Color("measure:N", title=None),
            tooltip=[
                "scenario:N",
                "measure:N",
                alt.Tooltip("money:Q", format=",.2f", title=unit),
            ],
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


def runout_worth(at_risk: pl.DataFrame, *, currency: str = "", limit: int = 20) -> alt.Chart:
    """What the customers who may run out are worth: one bar per customer (the first run-out at
    the top, at most `limit`) of its gross margin, coloured by its chance of running out.

    `at_risk` has one row per customer and currency with `customer_id`, `run_out_pct` and
    `gross_margin` (`findings.forecast_at_risk` with the customers' margin)."""
    title = "Who may run out, and what they are worth"
    if at_risk.is_empty():
        return no_data(title, "No customer is at risk of running out within the horizon.")
    data = (
        at_risk.head(limit)
        .with_columns(
            (
                pl.col("customer_id") + pl.lit(" · ") + pl.col("currency_id")
                if at_risk["currency_id"].n_unique() > 1
                else pl.col("customer_id")
            ).alias("who")
        )
        .select(
            "who",
            _as_float("gross_margin").fill_null(0.0),
            pl.col("run_out_pct").round(1),
            pl.col("run_out_p50").dt.strftime("%Y-%m-%d %H:%M").fill_null("after the horizon"),
        )
    )
    unit = currency or "money"
    return (
        alt.Chart(data, title=title)
        .mark_bar()
        .encode(
            y=alt.Y("who:N", title=None, sort=data["who"].to_list()),
            x=alt.X("gross_margin:Q", title=f"gross margin ({unit})").axis(format=",.2f"),
            color=alt.Color(
                "run_out_pct:Q", title="chance of running out (%)", scale=alt.Scale(domain=[0, 100])
            ),
            tooltip=[
                alt.Tooltip("who:N", title="customer"),
                alt.Tooltip("gross_margin:Q", format=",.2f", title=unit),
                alt.Tooltip("run_out_pct:Q", format=".1f", title="chance (%)"),
                alt.Tooltip("run_out_p50:N", title="p50 run-out (UTC)"),
            ],
        )
        .properties(width=420)
    )
