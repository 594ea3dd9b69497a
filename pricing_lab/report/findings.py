"""What a comparison says, as tables: the headline per scenario, whose run-out changes, who is at
risk. Plain functions from a `Comparison` to Polars frames; the report, the command line and the
notebook views all show these same tables.
"""

from __future__ import annotations

from decimal import Decimal

import polars as pl

from pricing_lab.simulation.scenarios import Comparison

ZERO = Decimal(0)

# Kinds of run-out change, in the order the report lists them (new run-outs first).
NEWLY_RUNS_OUT = "newly runs out"
RUNS_OUT_EARLIER = "runs out earlier"
RUNS_OUT_LATER = "runs out later"
NO_LONGER_RUNS_OUT = "no longer runs out"
CHANGE_ORDER = (NEWLY_RUNS_OUT, RUNS_OUT_EARLIER, RUNS_OUT_LATER, NO_LONGER_RUNS_OUT)
NO_PLAN = "(none)"

_SUMMARY_FIGURES = ("consumed", "credit_revenue", "breakage", "rolled_over")


def scenario_order(comparison: Comparison) -> list[str]:
    """The base first, then the other scenarios in the order they were replayed."""
    names = list(comparison.results)
    return [comparison.base] + [name for name in names if name != comparison.base]


def headlines(comparison: Comparison) -> pl.DataFrame:
    """One row per scenario and credit currency: what changes against the base.

    Columns: `scenario`, `currency_id`, `price_currency` (the money credits are priced in),
    `consumed` (credits), `credit_revenue`, `recharge_revenue` and `breakage` (money; credit
    revenue is every paid credit × its cost basis, recharge revenue the auto-recharged part of
    it), `rolled_over` (credits carried into a next period, SPEC §5), `customers_run_out`,
    `newly_run_out` and `no_longer_run_out` (customers, against the base), `events_denied`, and for
    each figure `*_change`, the scenario's value minus the base's (`consumed_change_pct` in
    percent, null when the base consumed nothing). The base comes first.
    """
    order = scenario_order(comparison)
    summaries = [
        comparison.result(name)
        .summary.select("currency_id", *_SUMMARY_FIGURES)
        .with_columns(pl.lit(name).alias("scenario"))
        for name in order
    ]
    money = pl.concat(summaries, how="vertical_relaxed")
    people = comparison.customers.group_by("scenario", "currency_id").agg(
        pl.col("runout_at").is_not_null().sum().cast(pl.Int64).alias("customers_run_out"),
        (pl.col("runout_at").is_not_null() & pl.col("base_runout_at").is_null())
        .sum()
        .cast(pl.Int64)
        .alias("newly_run_out"),
        (pl.col("runout_at").is_null() & pl.col("base_runout_at").is_not_null())
        .sum()
        .cast(pl.Int64)
        .alias("no_longer_run_out"),
        pl.col("events_denied").sum().cast(pl.Int64),
        pl.col("recharge_revenue").sum(),
    )
    currencies = pl.concat(
        [money.select("currency_id"), people.select("currency_id")], how="vertical_relaxed"
    ).unique()
    grid = pl.DataFrame({"scenario": order}, schema={"scenario": pl.String}).join(
        currencies, how="cross"
    )
    counts = ["customers_run_out", "newly_run_out", "no_longer_run_out", "events_denied"]
    table = (
        grid.join(money, on=["scenario", "currency_id"], how="left")
        .join(people, on=["scenario", "currency_id"], how="left")
        .with_columns(
            pl.col(*_SUMMARY_FIGURES, "recharge_revenue").fill_null(ZERO),
            pl.col(*counts).fill_null(0),
        )
    )
    changed = [
        "consumed",
        "credit_revenue",
        "recharge_revenue",
        "breakage",
        "rolled_over",
        "customers_run_out",
        "events_denied",
    ]
    base = table.filter(pl.col("scenario") == comparison.base).select(
        "currency_id", *(pl.col(name).alias(f"base_{name}") for name in changed)
    )
    prices = comparison.price_currencies
    order_index = {name: index for index, name in enumerate(order)}
    return (
        table.join(base, on="currency_id", how="left")
        .with_columns(
            *(
                pl.when(pl.col("scenario") != comparison.base)
                .then(pl.col(name) - pl.col(f"base_{name}").fill_null(0))
                .alias(f"{name}_change")
                for name in changed
            ),
            pl.when((pl.col("base_consumed") > 0) & (pl.col("scenario") != comparison.base))
            .then(
                (pl.col("consumed").cast(pl.Float64) / pl.col("base_consumed").cast(pl.Float64))
                * 100.0
                - 100.0
            )
            .alias("consumed_change_pct"),
            pl.col("currency_id")
            .replace_strict(prices, default="", return_dtype=pl.String)
            .alias("price_currency"),
            pl.col("scenario").replace_strict(order_index, return_dtype=pl.Int64).alias("__order"),
        )
        .sort("__order", "currency_id")
        .select(
            "scenario",
            "currency_id",
            "price_currency",
            "consumed",
            "consumed_change",
            "consumed_change_pct",
            "credit_revenue",
            "credit_revenue_change",
            "recharge_revenue",
            "recharge_revenue_change",
            "breakage",
            "breakage_change",
            "rolled_over",
            "rolled_over_change",
            "customers_run_out",
            "customers_run_out_change",
            "newly_run_out",
            "no_longer_run_out",
            "events_denied",
            "events_denied_change",
        )
    )


def runout_changes(comparison: Comparison) -> pl.DataFrame:
    """The customers whose run-out differs from the base's, per scenario: who newly runs out,
    who runs out earlier or later, who no longer runs out.

    One row per scenario, customer and currency: `change` (one of CHANGE_ORDER), `plan`,
    `base_runout_at`, `runout_at`, `runout_shift_days` (negative: earlier; null when either
    never runs out), `consumed` and `consumed_change`. New run-outs come first, each kind by the
    time credits run out, then by customer.
    """
    rows = comparison.customers.filter(
        (pl.col("scenario") != comparison.base)
        & (
            pl.col("runout_at").is_null().ne(pl.col("base_runout_at").is_null())
            | (pl.col("runout_at") != pl.col("base_runout_at"))
        )
    )
    change = (
        pl.when(pl.col("base_runout_at").is_null())
        .then(pl.lit(NEWLY_RUNS_OUT))
        .when(pl.col("runout_at").is_null())
        .then(pl.lit(NO_LONGER_RUNS_OUT))
        .when(pl.col("runout_at") < pl.col("base_runout_at"))
        .then(pl.lit(RUNS_OUT_EARLIER))
        .otherwise(pl.lit(RUNS_OUT_LATER))
    )
    rank = {name: index for index, name in enumerate(CHANGE_ORDER)}
    order = {name: index for index, name in enumerate(scenario_order(comparison))}
    return (
        rows.with_columns(
            change.alias("change"),
            pl.col("customer_id")
            .replace_strict(dict(comparison.plans), default=NO_PLAN, return_dtype=pl.String)
            .alias("plan"),
        )
        .with_columns(
            pl.col("change").replace_strict(rank, return_dtype=pl.Int64).alias("__rank"),
            pl.col("scenario").replace_strict(order, return_dtype=pl.Int64).alias("__order"),
            pl.coalesce("runout_at", "base_runout_at").alias("__when"),
        )
        .sort("__order", "__rank", "__when", "customer_id", "currency_id")
        .select(
            "scenario",
            "customer_id",
            "currency_id",
            "plan",
            "change",
            "base_runout_at",
            "runout_at",
            "runout_shift_days",
            "consumed",
            "consumed_change",
        )
    )


def customers_at_risk(comparison: Comparison, *, limit: int = 9) -> list[tuple[str, str]]:
    """Up to `limit` (customer, currency) pairs that run out in some scenario: first those whose
    run-out changes (new run-outs first, as in `runout_changes`), then the others that run out,
    earliest first."""
    changed = runout_changes(comparison).select("customer_id", "currency_id")
    others = (
        comparison.customers.filter(pl.col("runout_at").is_not_null())
        .group_by("customer_id", "currency_id")
        .agg(pl.col("runout_at").min())
        .sort("runout_at", "customer_id", "currency_id")
        .select("customer_id", "currency_id")
    )
    ordered = pl.concat([changed, others]).unique(maintain_order=True)
    return [(row[0], row[1]) for row in ordered.head(limit).iter_rows()]


_MARGIN_FIGURES = (
    "revenue",
    "breakage",
    "cost_to_serve",
    "gross_margin",
    "margin_share_pct",
    "negative_margin_customers",
)


def margin_currency(comparison: Comparison) -> str:
    """The money margins are in: the credit currencies' one price currency ("" when several,
    which a catalog with costs to serve refuses)."""
    prices = set(comparison.price_currencies.values())
    return prices.pop() if len(prices) == 1 else ""


def margin_headlines(comparison: Comparison) -> pl.DataFrame:
    """One row per scenario (the base first): revenue recognised, breakage, cost to serve and gross
    margin (money), `margin_share_pct` (percent of revenue + breakage, null when nothing was
    recognised), `unknown_cost_events`, `negative_margin_customers`, and for each figure
    `*_change`, the scenario's value minus the base's (null for the base; the share's change in
    percentage points). Empty when the comparison has no margin."""
    totals = comparison.margin_totals
    if totals.is_empty():
        return totals
    order = {name: i for i, name in enumerate(scenario_order(comparison))}
    frame = totals.with_columns((pl.col("margin_share") * 100.0).alias("margin_share_pct"))
    base = frame.filter(pl.col("scenario") == comparison.base).select(
        pl.col(name).alias(f"__base_{name}") for name in _MARGIN_FIGURES
    )
    is_base = pl.col("scenario") == comparison.base
    return (
        frame.join(base, how="cross")
        .with_columns(
            pl.when(~is_base).then(pl.col(name) - pl.col(f"__base_{name}")).alias(f"{name}_change")
            for name in _MARGIN_FIGURES
        )
        .with_columns(
            pl.col("scenario").replace_strict(order, return_dtype=pl.Int64).alias("__order")
        )
        .sort("__order")
        .select(
            "scenario",
            *(c for name in _MARGIN_FIGURES for c in (name, f"{name}_change")),
            "unknown_cost_events",
        )
    )


def negative_margins(comparison: Comparison) -> pl.DataFrame:
    """The customers whose gross margin is below 0, per scenario (the base first, worst first
    within a scenario, then by id), with their plan and the change of their margin against the
    base."""
    margin = comparison.margin
    if margin.is_empty():  # no rows: the same columns, `plan` included (the report names it)
        return margin.head(0).with_columns(pl.lit(None, pl.String).alias("plan")).head(0)
    order = {name: i for i, name in enumerate(scenario_order(comparison))}
    return (
        margin.filter(pl.col("gross_margin") < 0)
        .with_columns(
            pl.col("customer_id")
            .replace_strict(dict(comparison.plans), default=NO_PLAN, return_dtype=pl.String)
            .alias("plan"),
            pl.col("scenario").replace_strict(order, return_dtype=pl.Int64).alias("__order"),
        )
        .sort("__order", "gross_margin", "customer_id")
        .drop("__order")
    )


def activity_totals(comparison: Comparison) -> pl.DataFrame:
    """How many activity notifications of each kind customers would receive, per scenario
    (`Comparison.activity`, SPEC §6 "Credit activity"): `scenario`, `kind`, `events`,
    `events_change` (against the base), `customers` (receiving at least one), `most_to_one`
    (the most one customer receives). Every scenario has a row for every kind any scenario sends
    (0 when it sends none); scenarios in the comparison's order, kinds in SPEC §6 order."""
    from pricing_lab.activity.stream import KINDS

    counts = comparison.activity
    if counts.is_empty():
        return pl.DataFrame(
            schema={"scenario": pl.String, "kind": pl.String, "events": pl.Int64,
                    "events_change": pl.Int64, "customers": pl.Int64, "most_to_one": pl.Int64}
        )  # fmt: skip
    per_kind = counts.group_by("scenario", "kind").agg(
        pl.col("events").sum().cast(pl.Int64),
        pl.col("customer_id").n_unique().cast(pl.Int64).alias("customers"),
        pl.col("events").max().cast(pl.Int64).alias("most_to_one"),
    )
    sent = set(per_kind["kind"].to_list())
    kinds = [k for k in KINDS if k in sent] + sorted(sent.difference(KINDS))
    grid = pl.DataFrame({"scenario": scenario_order(comparison)}).join(
        pl.DataFrame({"kind": kinds}, schema={"kind": pl.String}), how="cross"
    )
    frame = grid.join(per_kind, on=["scenario", "kind"], how="left", maintain_order="left")
    frame = frame.with_columns(pl.col("events", "customers", "most_to_one").fill_null(0))
    base = frame.filter(pl.col("scenario") == comparison.base).select(
        "kind", pl.col("events").alias("__base")
    )
    return (
        frame.join(base, on="kind", how="left", maintain_order="left")
        .with_columns(
            pl.when(pl.col("scenario") == comparison.base)
            .then(None)
            .otherwise(pl.col("events") - pl.col("__base").fill_null(0))
            .alias("events_change")
        )
        .select("scenario", "kind", "events", "events_change", "customers", "most_to_one")
    )


def activity_changes(comparison: Comparison) -> pl.DataFrame:
    """Per scenario other than the base, customer and kind: the notifications the customer
    would receive (`events`), in the base (`base_events`) and the change, for every pair that
    differs; the largest changes first (then scenario order, customer, kinds in SPEC §6 order)."""
    counts = comparison.activity
    columns = ["scenario", "customer_id", "kind", "events", "base_events", "events_change"]
    none = pl.DataFrame(schema={c: pl.String if c in columns[:3] else pl.Int64 for c in columns})
    if counts.is_empty():
        return none
    base = counts.filter(pl.col("scenario") == comparison.base).select(
        "customer_id", "kind", pl.col("events").alias("base_events")
    )
    from pricing_lab.activity.stream import KINDS

    order = {name: index for index, name in enumerate(scenario_order(comparison))}
    rank = {kind: index for index, kind in enumerate(KINDS)}
    rows = []
    for name in scenario_order(comparison)[1:]:
        mine = counts.filter(pl.col("scenario") == name).select("customer_id", "kind", "events")
        rows.append(
            mine.join(base, on=["customer_id", "kind"], how="full", coalesce=True).select(
                pl.lit(name).alias("scenario"),
                "customer_id",
                "kind",
                pl.col("events").fill_null(0).cast(pl.Int64),
                pl.col("base_events").fill_null(0).cast(pl.Int64),
            )
        )
    if not rows:
        return none
    return (
        pl.concat(rows)
        .with_columns((pl.col("events") - pl.col("base_events")).alias("events_change"))
        .filter(pl.col("events_change") != 0)
        .with_columns(
            pl.col("events_change").abs().alias("__size"),
            pl.col("scenario").replace_strict(order, return_dtype=pl.Int64).alias("__order"),
            pl.col("kind").replace_strict(rank, default=len(rank)).alias("__rank"),
        )
        .sort(
            ["__size", "__order", "customer_id", "__rank", "kind"],
            descending=[True, False, False, False, False],
        )
        .select(columns)
    )


def forecast_at_risk(forecast: pl.DataFrame, worth: pl.DataFrame | None = None) -> pl.DataFrame:
    """Who may run out within a `forecast`'s horizon: its rows with a chance of running out, the
    first p50 first (`run_out_ranking`), with `run_out_pct` (the probability in percent) and,
    when `worth` is given (one row per customer: `customer_id` and margin figures such as
    `margin_by(margin, ["customer_id"])`), those figures beside each row (null for a customer
    without margin). A forecast per scenario (a `scenario` column, as `forecast_scenarios`
    gives) is ranked within each scenario, scenarios in their order of appearance; its `worth`
    then has a row per scenario and customer."""
    # Imported here: the forecast package loads its compiled kernel, which a report without a
    # forecast does not need.
    from pricing_lab.forecast import run_out_ranking

    if "scenario" in forecast.columns:
        names = forecast["scenario"].unique(maintain_order=True).to_list()
        parts = [run_out_ranking(forecast.filter(pl.col("scenario") == n)) for n in names]
        ranked = pl.concat(parts) if parts else forecast.clear()
    else:
        ranked = run_out_ranking(forecast)
    ranked = ranked.with_columns((pl.col("run_out_probability") * 100.0).alias("run_out_pct"))
    if worth is None:
        return ranked
    keys = [k for k in ("scenario", "customer_id") if k in ranked.columns and k in worth.columns]
    figures = [c for c in ("revenue", "breakage", "cost_to_serve", "gross_margin") if c in worth]
    return ranked.join(worth.select(*keys, *figures), on=keys, how="left", maintain_order="left")
