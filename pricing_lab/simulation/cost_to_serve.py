"""Cost to serve: each served event × the unit cost of every feature it matches, in DuckDB, exactly.

A metered feature's `cost` (SPEC §6) is a list of dated formulas giving money per event; the entry
in force at the event's time applies. The cost of one event and feature is that formula over the
event's dimensions, at 12 decimal places (the formula language's working scale), never rounded
further. A null or negative cost never rejects the event: it is counted as *unknown* (events and
share reported) and left out of the sums.

Every event of the events table that matches a costed feature's meter is costed, whether or not a
credit rate prices it for that customer (serving it costs us either way), except the events the
replay did not serve: those rejected (by ingestion or formulas) and, in `block` mode, those denied,
passed as `excluded`, and those outside the replay's horizon. Each cost is placed on the plan of
the customer's subscription at the event's time and the credit currency of the rate that priced
it there (null when none did), the keys the margin tables use. The result is aggregated in DuckDB:
one row per customer, plan, feature and currency.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import duckdb
import polars as pl

from pricing_lab.catalog.model import Catalog, Feature
from pricing_lab.errors import InputError
from pricing_lab.events.ingest import quote_ident, quote_literal
from pricing_lab.events.meters import event_meters
from pricing_lab.formula import Formula
from pricing_lab.ledger.model import Subscription
from pricing_lab.simulation.costing import NO_PLAN, ResolvedRate, resolve_rates, subscriptions_frame
from pricing_lab.timeutil import naive_utc

NO_PLAN_NAME = "(none)"  # the plan of usage by a customer without a subscription at that time
MONEY = pl.Decimal(38, 12)  # costs to serve: money at the formula language's working scale
SERVING_SCHEMA = pl.Schema(
    {
        "customer_id": pl.String(),
        "plan_id": pl.String(),
        "feature_id": pl.String(),
        "currency_id": pl.String(),
        "events": pl.Int64(),
        "unknown_cost_events": pl.Int64(),
        "cost_to_serve": MONEY,
    }
)
_SUBSCRIPTIONS = "__serving_subscriptions"
_LISTED = "__serving_event_ids"


def costed_features(catalog: Catalog) -> tuple[Feature, ...]:
    """The catalog's features with a cost to serve, in feature id order."""
    return tuple(sorted((f for f in catalog.features if f.cost), key=lambda f: f.id))


def cost_sql(feature: Feature, column_types: dict[str, str]) -> str:
    """DuckDB SQL of one event's cost to serve for `feature` (DECIMAL(38, 12), null where no
    entry is in force): the entry with the latest `from` at or before the event's `timestamp`."""
    branches = []
    fallback = "CAST(NULL AS DECIMAL(38, 12))"
    for entry in feature.cost:
        sql = Formula.parse(entry.formula).to_duckdb_sql(column_types)
        if entry.valid_from is None:
            fallback = sql
        else:
            start = naive_utc(entry.valid_from).isoformat(sep=" ")
            branches.append(f"WHEN timestamp >= TIMESTAMP {quote_literal(start)} THEN {sql}")
    if not branches:
        return fallback
    return f"CAST(CASE {' '.join(reversed(branches))} ELSE {fallback} END AS DECIMAL(38, 12))"


def serve_costs(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    subscriptions: Sequence[Subscription] = (),
    *,
    events: str = "events",
    start: datetime | None = None,
    until: datetime | None = None,
    excluded: pl.Series | None = None,
    only: pl.Series | None = None,
) -> pl.DataFrame:
    """The cost to serve the events of table `events`, per customer, plan, feature and currency
    (`SERVING_SCHEMA`): events, events of unknown cost, and the exact sum of the known costs.

    `start` / `until` bound the events served (`[start, until)`, the replay's horizon); the event
    ids in `excluded` were not served (rejected or denied); with `only`, just the events with
    those ids are costed. Sorted on the four keys.
    """
    features = costed_features(catalog)
    if not features:
        return pl.DataFrame(schema=SERVING_SCHEMA)
    meters = {m.feature_id: m for m in event_meters(con, catalog, events=events)}
    features = tuple(f for f in features if f.id in meters)  # reported usage is not replayed
    if not features:
        return pl.DataFrame(schema=SERVING_SCHEMA)
    relation = con.table(events)
    column_types = {name: str(kind) for name, kind in zip(relation.columns, relation.types)}
    currencies = _rate_currencies(catalog, subscriptions, features)
    table = subscriptions_frame(subscriptions).drop("addons")
    table = table.with_columns(
        pl.Series(f"__currency_{f.id}", currencies[f.id][1], dtype=pl.String) for f in features
    )
    where = []
    if start is not None:
        where.append(f"timestamp >= TIMESTAMP {quote_literal(naive_utc(start).isoformat(sep=' '))}")
    if until is not None:
        where.append(f"timestamp < TIMESTAMP {quote_literal(naive_utc(until).isoformat(sep=' '))}")
    e = quote_ident(events)
    source = f"SELECT * FROM {e}"
    listed = only if only is not None else excluded
    if only is not None:
        source = f"SELECT * FROM {e} SEMI JOIN {_LISTED} AS x ON x.event_id = {e}.event_id"
    elif excluded is not None and len(excluded):
        source = f"SELECT * FROM {e} ANTI JOIN {_LISTED} AS x ON x.event_id = {e}.event_id"
    parts = []
    for feature in features:
        default_currency = currencies[feature.id][0]
        condition = " AND ".join([f"({meters[feature.id].condition})", *where])
        parts.append(
            f"""
            SELECT ev.customer_id,
                   coalesce(s.plan_id, {quote_literal(NO_PLAN_NAME)}) AS plan_id,
                   {quote_literal(feature.id)} AS feature_id,
                   CASE WHEN s.subscription_index IS NULL
                        THEN CAST({_literal(default_currency)} AS VARCHAR)
                        ELSE s.{quote_ident(f"__currency_{feature.id}")} END AS currency_id,
                   {cost_sql(feature, column_types)} AS cost
            FROM ({source}) AS ev
            LEFT JOIN {_SUBSCRIPTIONS} AS s ON s.customer_id = ev.customer_id
                AND ev.timestamp >= s.start AND (s."end" IS NULL OR ev.timestamp < s."end")
            WHERE {condition}
            """
        )
    sql = f"""
        SELECT customer_id, plan_id, feature_id, currency_id,
               count(*) AS events,
               count(*) FILTER (WHERE cost IS NULL OR cost < 0) AS unknown_cost_events,
               coalesce(sum(cost) FILTER (WHERE cost >= 0), 0) AS cost_to_serve
        FROM ({" UNION ALL ".join(parts)})
        GROUP BY ALL
        ORDER BY customer_id, plan_id, feature_id, currency_id NULLS FIRST
    """
    con.register(_SUBSCRIPTIONS, table.to_arrow())
    ids = pl.Series("event_id", [], pl.String) if listed is None else listed.cast(pl.String)
    con.register(_LISTED, pl.DataFrame({"event_id": ids}).to_arrow())
    try:
        frame = con.sql(sql).pl()
    except duckdb.Error as exc:
        raise InputError(f"computing the cost to serve failed: {exc}") from None
    finally:
        con.unregister(_SUBSCRIPTIONS)
        con.unregister(_LISTED)
    return frame.cast(SERVING_SCHEMA)


def without(serving: pl.DataFrame, taken: pl.DataFrame) -> pl.DataFrame:
    """`serving` less the costs to serve in `taken` (a part of the same events), row by row;
    rows left with no events are dropped."""
    if taken.is_empty():
        return serving
    keys = ["customer_id", "plan_id", "feature_id", "currency_id"]
    figures = ["events", "unknown_cost_events", "cost_to_serve"]
    less = taken.select(*keys, *(pl.col(name).alias(f"__{name}") for name in figures))
    joined = serving.join(less, on=keys, how="left", nulls_equal=True, maintain_order="left")
    return (
        joined.with_columns(
            (pl.col(name) - pl.col(f"__{name}").fill_null(0)).alias(name) for name in figures
        )
        .filter(pl.col("events") > 0)
        .select(serving.columns)
        .cast(SERVING_SCHEMA)
    )


def _literal(value: str | None) -> str:
    return "NULL" if value is None else quote_literal(value)


def _rate_currencies(
    catalog: Catalog, subscriptions: Sequence[Subscription], features: Sequence[Feature]
) -> dict[str, tuple[str | None, list[str | None]]]:
    """Per feature: the currency of the rate pricing it without a subscription, and during each
    subscription (its plan's rate first, then its add-ons' in order, as costing chooses)."""
    by_key: dict[str, dict[str, ResolvedRate]] = {}
    for rate in resolve_rates(catalog):
        by_key.setdefault(rate.plan_key, {}).setdefault(rate.feature_id, rate)

    def currency(keys: Sequence[str], feature_id: str) -> str | None:
        for key in keys:
            rate = by_key.get(key, {}).get(feature_id)
            if rate is not None:
                return rate.currency_id
        return None

    offers = [(s.plan_id, *(f"addon:{a}" for a in s.addons)) for s in subscriptions]
    result = {}
    for feature in features:
        # Thousands of subscriptions share a few plans and add-on sets.
        by_offer = {keys: currency(keys, feature.id) for keys in set(offers)}
        result[feature.id] = (
            currency((NO_PLAN,), feature.id),
            [by_offer[keys] for keys in offers],
        )
    return result
