"""Costing: matched usage × credit rates → each event's cost per feature, in DuckDB, exactly.

For every accepted event and every metered feature it matches (`pricing_lab.events.meters`), the
rate in force is the one of the customer's plan at the event's time (the default rates when the
customer has no subscription then; an add-on's rate when the plan has none for that feature). The
cost is the rate's formula over the event's dimensions, or `per_unit × quantity` for per-unit rates
(compiled through the same formula language, so both follow one decimal rule), then rounded to
the currency's precision with its rounding mode (SPEC §2), feature by feature.

An event with a null or negative cost for any matched feature is rejected as a whole
(`formula_null` / `formula_negative`, SPEC §3/§4); the others become the long consumption table the
ledger engines read (event_id, customer_id, timestamp, feature_id, currency_id, cost).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

import duckdb
import polars as pl

from pricing_lab.catalog.model import Catalog, CreditRate
from pricing_lab.errors import InputError, Problem, ValidationError
from pricing_lab.events.ingest import quote_ident, quote_literal
from pricing_lab.formula import Formula
from pricing_lab.ledger.model import Subscription
from pricing_lab.money import Rounding
from pricing_lab.timeutil import naive_utc

NO_PLAN = ""  # plan key of the default rates (customers without a subscription)
QUANTITY = "__quantity"  # the matched meter value, visible to per-unit rates only

REJECTED_COLUMNS = {
    "source_row": pl.Int64,
    "event_id": pl.String,
    "customer_id": pl.String,
    "event_name": pl.String,
    "timestamp": pl.String,
    "reason": pl.String,
    "detail": pl.String,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedRate:
    """One credit rate as the costing query uses it: which plan, feature, currency and formula."""

    plan_key: str
    feature_id: str
    currency_id: str
    formula: Formula
    source: str  # where it came from, e.g. "plans[pro].credit_rates[llm_chat]"


@dataclass(frozen=True, slots=True, kw_only=True)
class Costing:
    """The result of costing: consumptions for the engines and the events rejected by formulas."""

    consumptions: pl.DataFrame  # one row per event and feature; ordered by customer, time, event
    rejected: pl.DataFrame  # REJECTED_COLUMNS


def rate_formula(rate: CreditRate) -> Formula:
    """The formula a rate burns credits with: its own text, or `per_unit × quantity`."""
    if rate.mode == "formula":
        if rate.formula is None:
            raise InputError(f"credit rate for {rate.feature!r} has mode formula but no formula")
        return Formula.parse(rate.formula)
    if rate.per_unit is None:
        raise InputError(f"credit rate for {rate.feature!r} has mode per_unit but no per_unit")
    return Formula.parse(f"{_plain(rate.per_unit)} * `{QUANTITY}`")


def _plain(value: Decimal) -> str:
    text = format(value, "f")
    return text if not text.startswith("-") else f"(0 {text[0]} {text[1:]})"


def resolve_rates(catalog: Catalog) -> tuple[ResolvedRate, ...]:
    """Every credit rate of the catalog with its plan key and currency resolved.

    Add-on rates are keyed `addon:<id>`; they apply to a subscriber of the add-on for features
    its plan has no rate for. Problems (unknown currency, several currencies and none named) are
    all reported at once.
    """
    problems: list[Problem] = []
    single = catalog.currencies[0].id if len(catalog.currencies) == 1 else None
    known = {c.id for c in catalog.currencies}
    resolved: list[ResolvedRate] = []

    def add(plan_key: str, rate: CreditRate, where: str) -> None:
        currency = rate.currency or single
        if currency is None or currency not in known:
            problems.append(Problem(path=where, message=f"no credit currency {currency!r}"))
            return
        try:
            formula = rate_formula(rate)
        except InputError as exc:
            problems.append(Problem(path=where, message=str(exc)))
            return
        resolved.append(
            ResolvedRate(
                plan_key=plan_key,
                feature_id=rate.feature,
                currency_id=currency,
                formula=formula,
                source=where,
            )
        )

    for rate in catalog.default_credit_rates:
        add(NO_PLAN, rate, f"default_credit_rates[{rate.feature}]")
    for plan in catalog.plans:
        for rate in plan.credit_rates:
            add(plan.id, rate, f"plans[{plan.id}].credit_rates[{rate.feature}]")
    for addon in catalog.addons:
        for rate in addon.credit_rates:
            add(f"addon:{addon.id}", rate, f"addons[{addon.id}].credit_rates[{rate.feature}]")
    if problems:
        raise ValidationError(problems, source="credit rates")
    return tuple(resolved)


def subscriptions_frame(subscriptions: Iterable[Subscription]) -> pl.DataFrame:
    """Subscriptions as a table for the costing join (one row per subscription)."""
    rows = [
        {
            "subscription_index": index,
            "customer_id": s.customer_id,
            "plan_id": s.plan_id,
            "addons": list(s.addons),
            "start": naive_utc(s.start),
            "end": None if s.end is None else naive_utc(s.end),
        }
        for index, s in enumerate(subscriptions)
    ]
    return pl.DataFrame(
        rows,
        schema={
            "subscription_index": pl.Int64,
            "customer_id": pl.String,
            "plan_id": pl.String,
            "addons": pl.List(pl.String),
            "start": pl.Datetime("us"),
            "end": pl.Datetime("us"),
        },
    )


def overlapping_subscriptions(subscriptions: Sequence[Subscription]) -> list[Problem]:
    """A customer has at most one subscription at a time: overlaps are problems."""
    problems: list[Problem] = []
    by_customer: dict[str, list[Subscription]] = {}
    for subscription in subscriptions:
        by_customer.setdefault(subscription.customer_id, []).append(subscription)
    for customer, items in sorted(by_customer.items()):
        items.sort(key=lambda s: s.start)
        for before, after in itertools.pairwise(items):
            if before.end is None or before.end > after.start:
                problems.append(
                    Problem(
                        path=f"subscriptions[{after.subscription_id}]",
                        message=f"overlaps subscription {before.subscription_id!r} of {customer!r}",
                    )
                )
    return problems


def cost_events(
    con: duckdb.DuckDBPyConnection,
    matched: str,
    catalog: Catalog,
    subscriptions: Sequence[Subscription] = (),
    *,
    events: str = "events",
) -> Costing:
    """Cost every event of table `events` using the matched-usage relation named `matched`.

    `matched` has columns (event_id, customer_id, timestamp, feature_id, quantity). Returns the
    consumption table for the engines (every accepted event appears, an event with no cost as one
    row with null feature) and the events rejected by their formulas.
    """
    problems = overlapping_subscriptions(subscriptions)
    if problems:
        raise ValidationError(problems, source="subscriptions")
    rates = resolve_rates(catalog)
    currencies = {c.id: c for c in catalog.currencies}
    column_types = _column_types(con, events)
    column_types[QUANTITY] = "DECIMAL(38,12)"
    subscription_rates, default_rates = _rate_tables(rates, subscriptions)
    con.register("__subscriptions", subscriptions_frame(subscriptions).to_arrow())
    con.register("__subscription_rates", subscription_rates.to_arrow())
    con.register("__default_rates", default_rates.to_arrow())
    con.register("__rates", _rates_frame(rates).to_arrow())

    raw_cost = _case("w.__rate_index", [r.formula.to_duckdb_sql(column_types) for r in rates])
    scale = max((c.precision for c in currencies.values()), default=0)
    rounded_cost = _case(
        "c.__currency_id",
        [
            _rounded_cost_sql("c.__raw_cost", c.precision, c.rounding, scale)
            for c in currencies.values()
        ],
        keys=[quote_literal(c) for c in currencies],
    )
    e = quote_ident(events)
    try:
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE __costed AS
            WITH with_rate AS (
                SELECT m.event_id AS __event_id, m.feature_id AS __feature_id,
                       CAST(m.quantity AS DECIMAL(38, 12)) AS {QUANTITY},
                       coalesce(sr.rate_index, dr.rate_index) AS __rate_index, ev.*
                FROM ({matched}) AS m
                JOIN {e} AS ev ON ev.event_id = m.event_id
                LEFT JOIN __subscriptions AS s
                  ON s.customer_id = ev.customer_id
                 AND ev.timestamp >= s.start AND (s."end" IS NULL OR ev.timestamp < s."end")
                LEFT JOIN __subscription_rates AS sr
                  ON sr.subscription_index = s.subscription_index
                 AND sr.feature_id = m.feature_id
                LEFT JOIN __default_rates AS dr
                  ON s.subscription_index IS NULL AND dr.feature_id = m.feature_id
            )
            SELECT w.__event_id, w.__feature_id, r.currency_id AS __currency_id,
                   {raw_cost} AS __raw_cost
            FROM with_rate w JOIN __rates r ON r.rate_index = w.__rate_index
            """
        )
        con.execute(
            """
            CREATE OR REPLACE TEMP TABLE __bad AS
            SELECT __event_id AS event_id,
                   CASE WHEN bool_or(__raw_cost IS NULL) THEN 'formula_null'
                        ELSE 'formula_negative' END AS reason,
                   string_agg(__feature_id || ' costs '
                              || coalesce(CAST(__raw_cost AS VARCHAR), 'null'), '; '
                              ORDER BY __feature_id)
                     FILTER (WHERE __raw_cost IS NULL OR __raw_cost < 0) AS detail
            FROM __costed GROUP BY __event_id
            HAVING bool_or(__raw_cost IS NULL OR __raw_cost < 0)
            """
        )
        rejected = con.sql(
            f"""
            SELECT CAST(NULL AS BIGINT) AS source_row, ev.event_id, ev.customer_id,
                   ev.event_name, strftime(ev.timestamp, '%Y-%m-%dT%H:%M:%S.%fZ') AS timestamp,
                   b.reason, b.detail
            FROM __bad b JOIN {e} ev ON ev.event_id = b.event_id
            ORDER BY ev.customer_id, ev.timestamp, ev.event_id
            """
        ).pl()
        consumptions = con.sql(
            f"""
            SELECT ev.event_id, ev.customer_id, ev.timestamp,
                   c.__feature_id AS feature_id, c.__currency_id AS currency_id,
                   {rounded_cost} AS cost
            FROM {e} ev
            LEFT JOIN __costed c ON c.__event_id = ev.event_id
            ANTI JOIN __bad b ON b.event_id = ev.event_id
            ORDER BY ev.customer_id, ev.timestamp, ev.event_id, c.__feature_id
            """
        ).pl()
    except duckdb.Error as exc:
        raise InputError(f"costing events failed: {exc}") from None
    finally:
        for name in ("__subscriptions", "__subscription_rates", "__default_rates", "__rates"):
            con.unregister(name)
        con.execute("DROP TABLE IF EXISTS __costed; DROP TABLE IF EXISTS __bad")
    consumptions = consumptions.with_columns(pl.col("timestamp").dt.replace_time_zone("UTC"))
    return Costing(
        consumptions=consumptions,
        rejected=rejected.cast(REJECTED_COLUMNS),
    )


def _rate_tables(
    rates: Sequence[ResolvedRate], subscriptions: Sequence[Subscription]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Which rate each subscription (plan first, then its add-ons in order) and no subscription
    uses per feature."""
    by_key: dict[str, dict[str, int]] = {}
    for index, rate in enumerate(rates):
        by_key.setdefault(rate.plan_key, {}).setdefault(rate.feature_id, index)
    rows: list[tuple[int, str, int]] = []
    for sub_index, subscription in enumerate(subscriptions):
        chosen: dict[str, int] = {}
        for key in [subscription.plan_id, *(f"addon:{a}" for a in subscription.addons)]:
            for feature, index in by_key.get(key, {}).items():
                chosen.setdefault(feature, index)
        rows.extend((sub_index, feature, index) for feature, index in sorted(chosen.items()))
    subscription_rates = pl.DataFrame(
        rows,
        schema={"subscription_index": pl.Int64, "feature_id": pl.String, "rate_index": pl.Int32},
        orient="row",
    )
    defaults = sorted(by_key.get(NO_PLAN, {}).items())
    default_rates = pl.DataFrame(
        defaults, schema={"feature_id": pl.String, "rate_index": pl.Int32}, orient="row"
    )
    return subscription_rates, default_rates


def _rates_frame(rates: Sequence[ResolvedRate]) -> pl.DataFrame:
    return pl.DataFrame(
        {"rate_index": list(range(len(rates))), "currency_id": [r.currency_id for r in rates]},
        schema={"rate_index": pl.Int32, "currency_id": pl.String},
    )


def _column_types(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    relation = con.table(table)
    return {name: str(kind) for name, kind in zip(relation.columns, relation.types)}


def _case(subject: str, branches: Sequence[str], keys: Sequence[str] | None = None) -> str:
    if not branches:
        return "CAST(NULL AS DECIMAL(38, 12))"
    labels = keys if keys is not None else [str(i) for i in range(len(branches))]
    whens = " ".join(f"WHEN {k} THEN ({b})" for k, b in zip(labels, branches))
    return f"CASE {subject} {whens} END"


def _rounded_cost_sql(column: str, precision: int, rounding: Rounding, scale: int) -> str:
    """`column` rounded to `precision` places (SPEC §2 rounding), as DECIMAL(38, scale), exactly."""
    scaled = f"({column} * CAST('1{'0' * precision}' AS DECIMAL({precision + 1}, 0)))"
    if rounding == "half_up":
        units = f"round({scaled}, 0)"  # costs kept are >= 0: half away from zero is half up
    elif rounding == "up":
        units = f"ceil({scaled})"
    else:
        units = f"floor({scaled})"
    step = "1" if precision == 0 else f"0.{'0' * (precision - 1)}1"
    return (
        f"CAST(CAST({units} AS DECIMAL(38, 0)) * CAST('{step}' AS DECIMAL({precision + 1}, "
        f"{precision})) AS DECIMAL(38, {scale}))"
    )
