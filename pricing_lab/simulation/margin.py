"""Margin (SPEC §6): revenue recognised from consumption and breakage against the cost to serve.

From a replay's ledger, the cost basis of its grants and the costs to serve (`cost_to_serve`):

* **revenue** recognised from consumption: each `CONSUMED` entry's credits × the cost basis of the
  grant drawn. Consumption from the OVERDRAFT grant is recognised when its debt is settled, at the
  settling grant's cost basis (its `CONSUMPTION_TRANSFER_SOURCE` entry), oldest debt first: the
  first credits settled pay for the first credits consumed on overdraft, so settled revenue keeps
  the feature of the consumption it pays for. Debt never settled is never recognised.
* **breakage**: expired credits × their grant's cost basis, at expiry (no feature).
* **cost to serve**: the served events' unit costs (unknown costs counted, not summed).
* **gross margin** = revenue + breakage − cost to serve; **margin share** = gross margin ÷
  (revenue + breakage), null when nothing was recognised.

Cost bases: input grants as given, RECURRING (and rollover) grants 0, auto-recharge grants the
currency's unit price, the OVERDRAFT grant none (its consumption waits for settlement). Every
amount is an exact decimal; each figure is placed on the customer's plan at the time it is
recognised (`(none)` without a subscription). The detail table (`margin_table`) has one row per
customer, currency, feature and plan that consumed, served or broke credits (a row of zeros for
consumption all on overdraft never settled); `margin_by` adds it up to any grain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal

import duckdb
import polars as pl

from pricing_lab.catalog.model import Catalog, CreditCurrency
from pricing_lab.events.ingest import quote_literal
from pricing_lab.ledger.model import Grant, Subscription
from pricing_lab.money import decimal_places
from pricing_lab.simulation.cost_to_serve import (
    MONEY,
    NO_PLAN_NAME,
    SERVING_SCHEMA,
    query_over,
    serve_costs,
    without,
)
from pricing_lab.simulation.costing import subscriptions_frame

KEYS = ("customer_id", "currency_id", "feature_id", "plan_id")
MONEY_COLUMNS = ("revenue", "breakage", "cost_to_serve", "gross_margin")
COUNT_COLUMNS = ("events", "unknown_cost_events")
_LEDGER = "__margin_ledger"
_BASES = "__margin_bases"
_OVERDRAWN_TABLE = "__margin_overdrawn"
_SETTLING = "__margin_settling"


def recognised_revenue(
    con: duckdb.DuckDBPyConnection,
    ledger: pl.DataFrame,
    *,
    grants: Sequence[Grant],
    currencies: Sequence[CreditCurrency],
    subscriptions: Sequence[Subscription] = (),
) -> pl.DataFrame:
    """Revenue recognised from consumption and breakage (money) per customer, currency, feature
    and plan, from a replay's ledger; `grants` are the replay's input grants (their cost bases).
    Breakage rows have a null feature.

    Credits are first added up per grant (and customer, feature, plan) in Polars, so the exact
    products credits × cost basis are taken on a small table (in DuckDB, which refuses an
    overflow). Only overdraft consumption and its settlements, few rows, are matched one by one.
    The ledger is read by lazy queries naming the few columns each needs: no copy of its rows.
    """
    entries = ledger.lazy()
    # The engines write entries in order: only an unordered ledger's overdraft rows are sorted.
    settled = _settled(con, entries, in_order=ledger["entry_id"].is_sorted())
    per_grant = _per_grant_and_plan(_recognised_directly(entries), settled, subscriptions)
    bases_and_prices = {g.cost_basis for g in grants} | {c.unit_price for c in currencies}
    places = max((decimal_places(value) for value in bases_and_prices), default=0)
    credits_type = per_grant.schema["credits"]
    assert isinstance(credits_type, pl.Decimal)
    money = f"DECIMAL(38, {max((credits_type.scale or 0) + places, MONEY.scale or 0)})"
    bases = pl.DataFrame(
        {
            "grant_id": [g.grant_id for g in grants if g.cost_basis != 0],
            "cost_basis": [g.cost_basis for g in grants if g.cost_basis != 0],
        },
        schema={"grant_id": pl.String, "cost_basis": pl.Decimal(38, places)},
    )
    prices = " ".join(
        f"WHEN {quote_literal(c.id)} THEN CAST({quote_literal(str(c.unit_price))} AS "
        f"DECIMAL(38, {places}))"
        for c in currencies
    )
    unit_price = f"CASE g.currency_id {prices} END" if prices else "NULL"
    sql = f"""
        WITH valued AS (
            SELECT g.*, CAST(g.credits * CAST(
                       CASE WHEN g.grant_source = 'auto_recharge' THEN {unit_price}
                            ELSE coalesce(b.cost_basis, 0) END AS DECIMAL(38, {places}))
                       AS {money}) AS money
            FROM {_LEDGER} AS g LEFT JOIN {_BASES} AS b ON b.grant_id = g.grant_id
        )
        SELECT customer_id, currency_id, feature_id, plan_id,
               CAST(coalesce(sum(money) FILTER (WHERE is_revenue), 0) AS {money}) AS revenue,
               CAST(coalesce(sum(money) FILTER (WHERE NOT is_revenue), 0) AS {money}) AS breakage
        FROM valued
        GROUP BY ALL
    """
    return query_over(con, sql, {_LEDGER: per_grant, _BASES: bases}, what="the margin")


# The columns of a recognised row: credits (positive) taken from a grant at a time (UTC), revenue
# with the feature consumed or breakage (no feature).
_ROW = ["customer_id", "currency_id", "feature_id", "timestamp", "grant_id", "grant_source"]
_CONSUMED = pl.col("entry_type") == "CONSUMED"
_OVERDRAWN = _CONSUMED & (pl.col("grant_type") == "OVERDRAFT")


def _recognised_directly(entries: pl.LazyFrame) -> pl.LazyFrame:
    """The rows recognised at their entry: consumption from grants other than the OVERDRAFT
    grant (revenue) and expiries (breakage, without a feature). Consumption from the OVERDRAFT
    grant comes as 0 credits (its revenue waits for settlement, `_settled`): every customer,
    currency, feature and plan that consumed has a margin row, one whose consumption was all
    overdraft never settled with revenue 0."""
    expired = pl.col("entry_type") == "EXPIRED"
    return entries.filter(_CONSUMED | expired).select(
        "customer_id",
        "currency_id",
        pl.when(_CONSUMED).then(pl.col("feature_id")).alias("feature_id"),
        *_ROW[3:],
        pl.when(_OVERDRAWN).then(pl.lit(0)).otherwise(-pl.col("amount")).alias("credits"),
        _CONSUMED.alias("is_revenue"),
    )


def _settled(
    con: duckdb.DuckDBPyConnection, entries: pl.LazyFrame, *, in_order: bool
) -> pl.DataFrame:
    """Overdraft consumption recognised at settlement, oldest debt first: per customer and
    currency, the k-th credit settled pays for the k-th credit consumed on overdraft (both in
    ledger order). Rows (`_ROW`, credits, is_revenue): each overlap of a consumption with a
    settlement, with the consumption's feature and the settlement's time and grant. `in_order`:
    the entries are in entry id order."""
    keys = ["customer_id", "currency_id"]
    columns = [
        *_ROW[:3],
        pl.col("timestamp").dt.replace_time_zone("UTC"),
        *_ROW[4:],
        "credits",
        pl.lit(True).alias("is_revenue"),
    ]
    settling = (
        entries.filter(pl.col("entry_type") == "CONSUMPTION_TRANSFER_SOURCE")
        .select(
            "entry_id",
            pl.col("timestamp").dt.replace_time_zone(None),  # DuckDB reads it in no time zone
            *keys,
            "grant_id",
            "grant_source",
            (-pl.col("amount")).alias("credits"),
        )
        .collect()
    )
    totals = settling.group_by(keys).agg(pl.col("credits").sum().alias("__settled"))
    if totals.is_empty():
        return settling.with_columns(pl.lit(None, pl.String).alias("feature_id")).select(columns)
    # Settlements pay the oldest debt first: consumption beyond what a customer's settlements
    # add up to is never recognised, and most overdraft consumption never is. Only the
    # consumption starting below that total is matched (a prefix, so its running sums are the
    # same). A settlement pays debt already there, so no consumption after the last settlement
    # is matched; and none starting at or above the largest total: both bounds are taken first,
    # on the few columns needed, so only a small prefix is joined with the totals.
    reached_before = pl.col("credits").cum_sum().over(keys) - pl.col("credits")
    last, largest = settling["entry_id"].max(), totals["__settled"].max()
    candidates = entries.filter(_OVERDRAWN & (pl.col("entry_id") < last)).select(
        "entry_id", *keys, "feature_id", (-pl.col("amount")).alias("credits")
    )
    if not in_order:
        candidates = candidates.sort("entry_id")
    overdrawn = (
        candidates.filter(reached_before < largest)
        .collect()
        .join(totals, on=keys, how="inner", maintain_order="left")
        .filter(reached_before < pl.col("__settled"))
        .drop("__settled")
    )
    if overdrawn.is_empty():
        return (
            settling.clear()
            .with_columns(pl.lit(None, pl.String).alias("feature_id"))
            .select(columns)
        )
    sql = f"""
        WITH o AS (
            SELECT customer_id, currency_id, feature_id, credits,
                   sum(credits) OVER (PARTITION BY customer_id, currency_id ORDER BY entry_id)
                       AS reached
            FROM {_OVERDRAWN_TABLE}
        ),
        s AS (
            SELECT customer_id, currency_id, timestamp, grant_id, grant_source, credits,
                   sum(credits) OVER (PARTITION BY customer_id, currency_id ORDER BY entry_id)
                       AS reached
            FROM {_SETTLING}
        )
        SELECT s.customer_id, s.currency_id, o.feature_id, s.timestamp, s.grant_id,
               s.grant_source,
               least(o.reached, s.reached) - greatest(o.reached - o.credits, s.reached - s.credits)
                   AS credits
        FROM o JOIN s ON o.customer_id = s.customer_id AND o.currency_id = s.currency_id
         AND o.reached - o.credits < s.reached AND s.reached - s.credits < o.reached
    """
    frame = query_over(
        con, sql, {_OVERDRAWN_TABLE: overdrawn, _SETTLING: settling}, what="the margin"
    )
    return frame.with_columns(pl.col("credits").cast(overdrawn.schema["credits"])).select(columns)


def _per_grant_and_plan(
    direct: pl.LazyFrame, settled: pl.DataFrame, subscriptions: Sequence[Subscription]
) -> pl.DataFrame:
    """The recognised rows (`direct` and `settled`: credits with a UTC `timestamp`) added up per
    customer, currency, feature, grant, revenue or breakage and `plan_id`: the customer's plan at
    each row's time, `(none)` without a subscription then.

    Rows are added up per grant first: a customer with no subscription, or one subscription
    covering all of a group's times, has that group under one plan. Only the customers with
    several subscriptions, or a group crossing a subscription's start or end, are placed row by
    row (an as-of join on the subscription starts), every row of theirs."""
    keys = ["customer_id", "currency_id", "feature_id", "grant_id", "grant_source", "is_revenue"]
    rows = pl.concat([direct, settled.lazy()], how="vertical_relaxed")
    spans = subscriptions_frame(subscriptions).select("customer_id", "plan_id", "start", "end")
    several = spans.group_by("customer_id").len().filter(pl.col("len") > 1).select("customer_id")
    single = spans.join(several, on="customer_id", how="anti")
    groups = (
        rows.group_by(keys)
        .agg(
            pl.col("credits").sum(),
            pl.col("timestamp").min().dt.replace_time_zone(None).alias("__first"),
            pl.col("timestamp").max().dt.replace_time_zone(None).alias("__last"),
        )
        .collect()
        .join(several, on="customer_id", how="anti")
        .join(single, on="customer_id", how="left")
    )
    inside = (pl.col("__first") >= pl.col("start")) & (
        pl.col("end").is_null() | (pl.col("__last") < pl.col("end"))
    )
    outside = pl.col("start").is_null() | (pl.col("__last") < pl.col("start"))
    outside = outside | (pl.col("end").is_not_null() & (pl.col("__first") >= pl.col("end")))
    crossing = groups.filter(~(inside | outside)).select("customer_id").unique()
    placed = groups.join(crossing, on="customer_id", how="anti").select(
        *keys,
        pl.when(inside).then(pl.col("plan_id")).otherwise(pl.lit(NO_PLAN_NAME)).alias("plan_id"),
        "credits",
    )
    one_by_one = pl.concat([several, crossing])
    if one_by_one.is_empty():
        return placed
    many = (
        rows.join(one_by_one.lazy(), on="customer_id", how="semi")
        .with_columns(pl.col("timestamp").dt.replace_time_zone(None))
        .sort("timestamp")
        .collect()
    )
    by_row = many.join_asof(
        spans.join(one_by_one, on="customer_id", how="semi").sort("start"),
        left_on="timestamp",
        right_on="start",
        by="customer_id",
        strategy="backward",
        check_sortedness=False,  # both sides sorted on their time column just above
    ).with_columns(
        pl.when(pl.col("end").is_null() | (pl.col("timestamp") < pl.col("end")))
        .then(pl.col("plan_id"))
        .otherwise(pl.lit(NO_PLAN_NAME))
        .fill_null(NO_PLAN_NAME)
        .alias("plan_id")
    )
    by_row = by_row.group_by(*keys, "plan_id").agg(pl.col("credits").sum())
    return pl.concat([placed, by_row.select(placed.columns)])


def margin_table(revenue: pl.DataFrame, serving: pl.DataFrame) -> pl.DataFrame:
    """Revenue, breakage, cost to serve, gross margin, margin share and the events served (and
    of unknown cost), per customer, currency, feature and plan (`KEYS`), sorted on them.

    `revenue` is `recognised_revenue`'s table, `serving` `serve_costs`'s. Money columns are
    exact decimals at one scale (at least 12 places); `margin_share` is a float."""
    keys = list(KEYS)
    money = _money_type(revenue, serving)
    served = serving.select(*keys, *COUNT_COLUMNS, "cost_to_serve")
    joined = revenue.join(served, on=keys, how="full", coalesce=True, nulls_equal=True)
    table = joined.select(
        *keys,
        *(
            pl.col(name).fill_null(0).cast(money)
            for name in ("revenue", "breakage", "cost_to_serve")
        ),
        *(pl.col(name).fill_null(0).cast(pl.Int64) for name in COUNT_COLUMNS),
    )
    return _with_margin(table).sort(keys, nulls_last=False)


def margin_by(margin: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    """`margin_table` added up per `keys` (e.g. `["customer_id"]`, `["feature_id"]`,
    `["plan_id"]`; none: one row of totals), with gross margin, margin share and the share of
    events of unknown cost worked out again from the sums. Sorted on `keys`."""
    sums = [pl.col(name).sum() for name in ("revenue", "breakage", "cost_to_serve", *COUNT_COLUMNS)]
    if keys:
        table = margin.group_by(*keys).agg(*sums).sort(list(keys), nulls_last=False)
    else:
        table = margin.select(*sums)
    return _with_margin(table.with_columns(pl.col(*COUNT_COLUMNS).cast(pl.Int64)))


def margin_totals(margin: pl.DataFrame) -> pl.DataFrame:
    """One row: the replay's totals (`margin_by` with no keys)."""
    return margin_by(margin, [])


def negative_margin_customers(margin: pl.DataFrame) -> pl.DataFrame:
    """The customers whose gross margin is below 0, worst first (then by id)."""
    return (
        margin_by(margin, ["customer_id"])
        .filter(pl.col("gross_margin") < 0)
        .sort("gross_margin", "customer_id")
    )


def replay_margin(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    ledger: pl.DataFrame,
    *,
    grants: Sequence[Grant],
    subscriptions: Sequence[Subscription],
    not_served: pl.Series,
    events: str = "events",
    start: datetime | None = None,
    until: datetime | None = None,
    serving: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """The `margin_table` of one replay: its ledger and input `grants`, and the events of table
    `events` it served within `[start, until)` — all but the event ids in `not_served` (those
    its costing rejected and, in `block` mode, those it denied).

    `serving`: `serve_costs` of every event of the replay in the horizon, computed earlier (a
    comparison's scenarios with the same costs share it); the costs of the events not served
    are then computed from table `events` and taken off."""
    served = served_costs(
        con,
        catalog,
        subscriptions,
        not_served=not_served,
        events=events,
        start=start,
        until=until,
        serving=serving,
    )
    revenue = recognised_revenue(
        con, ledger, grants=grants, currencies=catalog.currencies, subscriptions=subscriptions
    )
    return margin_table(revenue, served)


def served_costs(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    subscriptions: Sequence[Subscription],
    *,
    not_served: pl.Series,
    events: str = "events",
    start: datetime | None = None,
    until: datetime | None = None,
    serving: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """The costs to serve of a replay (`replay_margin`'s): the events of table `events` within
    `[start, until)` but those in `not_served`; `serving` as in `replay_margin`."""
    if serving is None:
        return serve_costs(
            con,
            catalog,
            subscriptions,
            events=events,
            start=start,
            until=until,
            excluded=not_served,
        )
    if len(not_served):
        taken = serve_costs(
            con, catalog, subscriptions, events=events, start=start, until=until, only=not_served
        )
        return without(serving, taken)
    return serving


def margin_summary(margin: pl.DataFrame) -> dict[str, object]:
    """The margin part of `summary.json`: totals, per feature and per plan, and the customers
    with a negative margin (how many, and the 20 worst). Decimals are written as text."""
    money = [*MONEY_COLUMNS, *COUNT_COLUMNS, "margin_share", "unknown_cost_share"]

    def rows(frame: pl.DataFrame, keys: Sequence[str]) -> list[dict[str, object]]:
        return [
            {key: _json(value) for key, value in row.items()}
            for row in frame.select(*keys, *money).iter_rows(named=True)
        ]

    negative = negative_margin_customers(margin)
    return {
        "totals": rows(margin_totals(margin), [])[0],
        "features": rows(margin_by(margin, ["feature_id"]), ["feature_id"]),
        "plans": rows(margin_by(margin, ["plan_id"]), ["plan_id"]),
        "negative_margin_customers": negative.height,
        "worst_customers": rows(negative.head(20), ["customer_id"]),
    }


def _json(value: object) -> object:
    if isinstance(value, Decimal):
        return format(value, "f")
    return value


def compare_margins(
    base: str, margins: Mapping[str, pl.DataFrame]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per scenario and customer, and per scenario, the margin and its change against `base`.

    `margins`: each scenario's `margin_table`, by name (the base among them). A customer with
    margin rows in any scenario has a row in each (zeros where it has none). Returns
    (per customer, totals); both sorted on scenario (then customer)."""
    figures = ["revenue", "breakage", "cost_to_serve", "gross_margin"]
    per_customer = pl.concat(
        [
            margin_by(m, ["customer_id"]).select(
                pl.lit(name).alias("scenario"), "customer_id", *figures
            )
            for name, m in margins.items()
        ],
        how="vertical_relaxed",
    )
    grid = pl.DataFrame({"scenario": list(margins)}, schema={"scenario": pl.String}).join(
        per_customer.select("customer_id").unique(), how="cross"
    )
    per_customer = grid.join(per_customer, on=["scenario", "customer_id"], how="left").with_columns(
        pl.col(*figures).fill_null(0)
    )
    base_margin = per_customer.filter(pl.col("scenario") == base).select(
        "customer_id", pl.col("gross_margin").alias("__base")
    )
    per_customer = (
        per_customer.join(base_margin, on="customer_id", how="left")
        .with_columns(
            (pl.col("gross_margin") - pl.col("__base").fill_null(0)).alias("gross_margin_change")
        )
        .drop("__base")
        .with_columns(_share())
        .sort("scenario", "customer_id")
    )
    totals = pl.concat(
        [
            margin_totals(m).select(
                pl.lit(name).alias("scenario"),
                *figures,
                "unknown_cost_events",
                pl.lit(negative_margin_customers(m).height, pl.Int64).alias(
                    "negative_margin_customers"
                ),
            )
            for name, m in margins.items()
        ],
        how="vertical_relaxed",
    )
    base_total = totals.filter(pl.col("scenario") == base)["gross_margin"]
    totals = totals.with_columns(
        (pl.col("gross_margin") - (base_total[0] if len(base_total) else 0)).alias(
            "gross_margin_change"
        ),
        _share(),
    ).sort("scenario")
    return per_customer, totals


def _share() -> pl.Expr:
    recognised = pl.col("revenue") + pl.col("breakage")
    return (
        pl.when(recognised != 0)
        .then(pl.col("gross_margin").cast(pl.Float64) / recognised.cast(pl.Float64))
        .alias("margin_share")
    )


def _with_margin(table: pl.DataFrame) -> pl.DataFrame:
    recognised = pl.col("revenue") + pl.col("breakage")
    return table.with_columns(
        (recognised - pl.col("cost_to_serve")).alias("gross_margin")
    ).with_columns(
        _share(),
        pl.when(pl.col("events") > 0)
        .then(pl.col("unknown_cost_events") / pl.col("events"))
        .alias("unknown_cost_share"),
    )


def _money_type(*frames: pl.DataFrame) -> pl.Decimal:
    scales = [MONEY.scale or 0]
    for frame in frames:
        for dtype in frame.schema.values():
            if isinstance(dtype, pl.Decimal):
                scales.append(dtype.scale or 0)
    return pl.Decimal(38, max(scales))


def empty_margin() -> pl.DataFrame:
    """A margin table without rows."""
    revenue = pl.DataFrame(
        schema={
            "customer_id": pl.String,
            "currency_id": pl.String,
            "feature_id": pl.String,
            "plan_id": pl.String,
            "revenue": MONEY,
            "breakage": MONEY,
        }
    )
    return margin_table(revenue, pl.DataFrame(schema=SERVING_SCHEMA))
