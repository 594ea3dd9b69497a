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

One query reads the events table once per events-sourced meter (`events.meters.event_meters`, the
conditions `match_events` uses; reported usage is not costed), joins the subscriptions only for
features whose rate differs between plans, and adds one null-feature row per event costed for no
feature. Plans sharing a rate share its compiled formula; costs are rounded in 64-bit decimals when
they are small enough, and sorted on a customer rank rather than the customer id text.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

import duckdb
import polars as pl

from pricing_lab.catalog.model import Catalog, CreditRate
from pricing_lab.errors import InputError, Problem, ValidationError
from pricing_lab.events.ingest import quote_ident, quote_literal
from pricing_lab.events.meters import EventMeter, event_meters
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


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureCosting:
    """How one events-sourced feature is costed: its meter and the rate variants in force.

    A variant is one distinct (currency, formula SQL) pair; plans sharing a rate share a variant.
    `dimensions`: the events table's columns the variants' formulas read.
    `default_variant` applies without a subscription, `subscription_variants[i]` during
    subscription i; None means no rate there (the event costs nothing for this feature).
    """

    meter: EventMeter
    variants: tuple[tuple[str, str], ...]
    dimensions: tuple[str, ...]
    default_variant: int | None
    subscription_variants: tuple[int | None, ...]

    @property
    def column(self) -> str:
        """The column of `__subscriptions` holding each subscription's variant."""
        return f"__variant_{self.meter.feature_id}"

    @property
    def same_everywhere(self) -> bool:
        """True when every customer at every time uses the default variant."""
        return all(v == self.default_variant for v in self.subscription_variants)

    @property
    def never_costed(self) -> bool:
        """True when no customer has a rate for the feature at any time."""
        return self.default_variant is None and self.same_everywhere

    @property
    def costed_everywhere(self) -> bool:
        """True when every customer has a rate for the feature at every time."""
        return self.default_variant is not None and None not in self.subscription_variants


def cost_events(
    con: duckdb.DuckDBPyConnection,
    matched: str,
    catalog: Catalog,
    subscriptions: Sequence[Subscription] = (),
    *,
    events: str = "events",
) -> Costing:
    """Cost every event of table `events` for every events-sourced meter it matches.

    Returns the consumption table for the engines (every accepted event appears, an event with no
    cost as one row with null feature) and the events rejected by their formulas. Events are
    matched straight from table `events` with the catalog's meters (`events.meters.event_meters`,
    the conditions `match_events` uses), so `matched` — the matched-usage SQL callers used to
    pass — is no longer read. Raises `InputError` when an event id is missing or not unique.
    """
    del matched  # the meters are applied to `events` directly (see the docstring)
    problems = overlapping_subscriptions(subscriptions)
    if problems:
        raise ValidationError(problems, source="subscriptions")
    rates = resolve_rates(catalog)
    meters = event_meters(con, catalog, events=events)
    try:
        column_types = _column_types(con, events)
        check_event_ids(con, events)
    except duckdb.Error as exc:
        raise InputError(f"costing events failed: {exc}") from None
    features = _feature_costings(rates, subscriptions, meters, column_types)
    currencies = {c.id: c for c in catalog.currencies}
    scale = max((c.precision for c in currencies.values()), default=0)
    rounded_cost = _case(
        "__currency_id",
        [
            _rounded_cost_sql("__raw_cost", c.precision, c.rounding, scale)
            for c in currencies.values()
        ],
        kind=f"DECIMAL(38, {scale})",
        keys=[quote_literal(c) for c in currencies],
    )
    con.register("__subscriptions", _subscriptions_table(subscriptions, features).to_arrow())
    try:
        # Materialized first: the sort below is cheaper on a stored table than inside the
        # pipeline, and the rejected events are found in it without working the costs out again.
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE __costed AS
            SELECT c.*, {rounded_cost} AS __cost, o.__customer_rank
            FROM ({_costed_sql(features, events)}) AS c
            LEFT JOIN ({_customer_order_sql(events)}) AS o ON o.customer_id = c.customer_id
            """
        )
        con.execute(
            """
            CREATE OR REPLACE TEMP TABLE __bad AS
            SELECT event_id,
                   CASE WHEN bool_or(__raw_cost IS NULL) THEN 'formula_null'
                        ELSE 'formula_negative' END AS reason,
                   string_agg(__feature_id || ' costs '
                              || coalesce(CAST(__raw_cost AS VARCHAR), 'null'), '; '
                              ORDER BY __feature_id) AS detail
            FROM __costed
            WHERE __feature_id IS NOT NULL AND (__raw_cost IS NULL OR __raw_cost < 0)
            GROUP BY event_id
            """
        )
        any_rejected = bool(con.execute("SELECT count(*) FROM __bad").fetchall()[0][0])
        accepted = "ANTI JOIN __bad AS b ON b.event_id = c.event_id" if any_rejected else ""
        consumptions = _fetch(
            con,
            f"""
            SELECT c.event_id, c.customer_id, c.timestamp, c.__feature_id AS feature_id,
                   c.__currency_id AS currency_id, c.__cost AS cost
            FROM __costed AS c {accepted}
            ORDER BY c.__customer_rank, c.timestamp, c.event_id, c.__feature_rank
            """,
        )
        rejected = (
            _fetch(
                con,
                f"""
                SELECT CAST(NULL AS BIGINT) AS source_row, ev.event_id, ev.customer_id,
                       ev.event_name,
                       strftime(ev.timestamp, '%Y-%m-%dT%H:%M:%S.%fZ') AS timestamp,
                       b.reason, b.detail
                FROM __bad AS b JOIN {quote_ident(events)} AS ev ON ev.event_id = b.event_id
                ORDER BY ev.customer_id, ev.timestamp, ev.event_id
                """,
            )
            if any_rejected
            else pl.DataFrame(schema=REJECTED_COLUMNS)
        )
    except duckdb.Error as exc:
        raise InputError(f"costing events failed: {exc}") from None
    finally:
        con.unregister("__subscriptions")
        con.execute("DROP TABLE IF EXISTS __costed; DROP TABLE IF EXISTS __bad")
    return Costing(
        consumptions=consumptions.with_columns(pl.col("timestamp").dt.replace_time_zone("UTC")),
        rejected=rejected.cast(pl.Schema(REJECTED_COLUMNS)),
    )


def check_event_ids(con: duckdb.DuckDBPyConnection, events: str = "events") -> None:
    """Raise `InputError` unless every row of table `events` has its own event id.

    The ledger engines rely on one customer and timestamp per event id; ingestion already
    rejects duplicates, but costing can be given any table. Distinct 64-bit hashes are counted
    first (cheaper than the text); only when they fall short are the ids themselves compared.
    """
    e = quote_ident(events)
    [(rows, with_id, distinct_hashes)] = con.execute(
        f"SELECT count(*), count(event_id), count(DISTINCT hash(event_id)) FROM {e}"
    ).fetchall()
    if with_id != rows:
        raise InputError(f"table {events!r}: {rows - with_id} events have no event_id")
    if distinct_hashes == rows:
        return
    duplicated = con.execute(
        f"SELECT event_id, count(*) OVER () FROM {e} GROUP BY event_id HAVING count(*) > 1 "
        "ORDER BY event_id LIMIT 5"
    ).fetchall()
    if duplicated:
        raise InputError(
            f"table {events!r}: {duplicated[0][1]} event ids appear more than once, e.g. "
            + ", ".join(repr(str(row[0])) for row in duplicated)
        )


def _feature_costings(
    rates: Sequence[ResolvedRate],
    subscriptions: Sequence[Subscription],
    meters: Sequence[EventMeter],
    column_types: Mapping[str, str],
) -> list[FeatureCosting]:
    """Which rate variant each subscription (its plan first, then its add-ons in order) and no
    subscription uses, feature by feature."""
    by_key: dict[str, dict[str, int]] = {}
    for index, rate in enumerate(rates):
        by_key.setdefault(rate.plan_key, {}).setdefault(rate.feature_id, index)
    chosen_by_plan: dict[tuple[str, ...], dict[str, int]] = {}
    for subscription in subscriptions:
        keys = (subscription.plan_id, *(f"addon:{a}" for a in subscription.addons))
        if keys not in chosen_by_plan:
            chosen: dict[str, int] = {}
            for key in keys:
                for feature, index in by_key.get(key, {}).items():
                    chosen.setdefault(feature, index)
            chosen_by_plan[keys] = chosen
    chosen_per_subscription = [
        chosen_by_plan[(s.plan_id, *(f"addon:{a}" for a in s.addons))] for s in subscriptions
    ]
    defaults = by_key.get(NO_PLAN, {})
    formula_types = {**column_types, QUANTITY: "DECIMAL(38,12)"}
    result = []
    for meter in meters:
        feature = meter.feature_id
        in_force = {defaults.get(feature), *(c.get(feature) for c in chosen_per_subscription)}
        variants: dict[tuple[str, str], int] = {}
        variant_of: dict[int | None, int | None] = {None: None}
        dimensions: set[str] = set()
        for rate_index in sorted(i for i in in_force if i is not None):
            rate = rates[rate_index]
            dimensions.update(d for d in rate.formula.dimensions if d in column_types)
            variant = (rate.currency_id, rate.formula.to_duckdb_sql(formula_types))
            variant_of[rate_index] = variants.setdefault(variant, len(variants))
        result.append(
            FeatureCosting(
                meter=meter,
                variants=tuple(variants),
                dimensions=tuple(sorted(dimensions)),
                default_variant=variant_of[defaults.get(feature)],
                subscription_variants=tuple(
                    variant_of[c.get(feature)] for c in chosen_per_subscription
                ),
            )
        )
    return result


def _subscriptions_table(
    subscriptions: Sequence[Subscription], features: Sequence[FeatureCosting]
) -> pl.DataFrame:
    """Subscriptions for the costing join, with the rate variant of each feature."""
    frame = subscriptions_frame(subscriptions).drop("addons")
    return frame.with_columns(
        pl.Series(f.column, f.subscription_variants, dtype=pl.Int32) for f in features
    )


_SUBSCRIPTION_JOIN = (
    "LEFT JOIN __subscriptions AS s ON s.customer_id = ev.customer_id "
    'AND ev.timestamp >= s.start AND (s."end" IS NULL OR ev.timestamp < s."end")'
)
_EVENT_COLUMNS = ("event_id", "customer_id", "timestamp")


def _costed_sql(features: Sequence[FeatureCosting], events: str) -> str:
    """Rows (event_id, customer_id, timestamp, __feature_id, __feature_rank, __currency_id,
    __raw_cost): one per event and feature it matches and has a rate for, one with null feature
    for the other events. `__feature_rank` orders the features as their ids do."""
    e = quote_ident(events)
    parts = [
        _feature_sql(feature, rank, e)
        for rank, feature in enumerate(features)
        if not feature.never_costed
    ]
    parts.append(_uncosted_sql(features, e))
    return " UNION ALL ".join(parts)


def _feature_sql(feature: FeatureCosting, rank: int, e: str) -> str:
    meter = feature.meter
    dimensions = [d for d in feature.dimensions if d not in _EVENT_COLUMNS]
    columns = ", ".join(quote_ident(c) for c in (*_EVENT_COLUMNS, *dimensions))
    matching = (
        f"SELECT {columns}, CAST({meter.quantity} AS DECIMAL(38, 12)) AS {quote_ident(QUANTITY)} "
        f"FROM {e} WHERE {meter.condition}"
    )
    currency = _case("__variant", [quote_literal(c) for c, _sql in feature.variants], "VARCHAR")
    raw_cost = _case("__variant", [sql for _c, sql in feature.variants])
    if feature.same_everywhere:
        with_variant = f"SELECT *, {feature.default_variant} AS __variant FROM ({matching})"
    else:
        with_variant = (
            f"SELECT ev.*, {_variant_sql(feature)} AS __variant "
            f"FROM ({matching}) AS ev {_SUBSCRIPTION_JOIN}"
        )
    return (
        f"SELECT event_id, customer_id, timestamp, {quote_literal(meter.feature_id)} AS "
        f"__feature_id, CAST({rank} AS SMALLINT) AS __feature_rank, {currency} AS __currency_id, "
        f"{raw_cost} AS __raw_cost "
        f"FROM ({with_variant}) WHERE __variant IS NOT NULL"
    )


def _variant_sql(feature: FeatureCosting) -> str:
    default = "NULL" if feature.default_variant is None else str(feature.default_variant)
    return (
        f"CASE WHEN s.subscription_index IS NULL THEN CAST({default} AS INTEGER) "
        f"ELSE s.{quote_ident(feature.column)} END"
    )


def _uncosted_sql(features: Sequence[FeatureCosting], e: str) -> str:
    """Events matching no feature they have a rate for, as one row with null feature.

    A meter condition that is NULL does not match (as in the meter's WHERE)."""
    nulls = (
        "CAST(NULL AS VARCHAR) AS __feature_id, CAST(NULL AS SMALLINT) AS __feature_rank, "
        "CAST(NULL AS VARCHAR) AS __currency_id, "
        "CAST(NULL AS DECIMAL(38, 12)) AS __raw_cost"
    )
    always = [f for f in features if f.costed_everywhere]
    sometimes = [f for f in features if not f.costed_everywhere and not f.never_costed]
    costed_always = " OR ".join(f"coalesce({f.meter.condition}, FALSE)" for f in always)
    where = f"NOT ({costed_always})" if always else "TRUE"
    if not sometimes:
        return f"SELECT event_id, customer_id, timestamp, {nulls} FROM {e} WHERE {where}"
    flags = ", ".join(
        f"coalesce({f.meter.condition}, FALSE) AS __matches_{i}" for i, f in enumerate(sometimes)
    )
    costed_sometimes = " OR ".join(
        f"(ev.__matches_{i} AND {_variant_sql(f)} IS NOT NULL)" for i, f in enumerate(sometimes)
    )
    return (
        f"SELECT ev.event_id, ev.customer_id, ev.timestamp, {nulls} "
        f"FROM (SELECT event_id, customer_id, timestamp, {flags} FROM {e} "
        f"WHERE {where}) AS ev {_SUBSCRIPTION_JOIN} WHERE NOT ({costed_sometimes})"
    )


def _customer_order_sql(events: str) -> str:
    """Each customer of table `events` with its rank in customer id order: sorting on the rank
    is much cheaper than on the text."""
    return (
        "SELECT customer_id, row_number() OVER (ORDER BY customer_id) AS __customer_rank "
        f"FROM (SELECT DISTINCT customer_id FROM {quote_ident(events)})"
    )


def _fetch(con: duckdb.DuckDBPyConnection, sql: str) -> pl.DataFrame:
    frame = con.sql(sql).pl()
    assert isinstance(frame, pl.DataFrame)
    return frame


def _column_types(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    relation = con.table(table)
    return {name: str(kind) for name, kind in zip(relation.columns, relation.types)}


def _case(
    subject: str,
    branches: Sequence[str],
    kind: str = "DECIMAL(38, 12)",
    keys: Sequence[str] | None = None,
) -> str:
    """`CASE subject WHEN key THEN branch … END` as `kind` (keys 0, 1, … by default; a single
    default-keyed branch needs no CASE)."""
    if not branches:
        return f"CAST(NULL AS {kind})"
    if len(branches) == 1 and keys is None:
        return f"CAST(({branches[0]}) AS {kind})"
    labels = keys if keys is not None else [str(i) for i in range(len(branches))]
    whens = " ".join(f"WHEN {k} THEN ({b})" for k, b in zip(labels, branches))
    return f"CAST(CASE {subject} {whens} END AS {kind})"


def _rounded_cost_sql(column: str, precision: int, rounding: Rounding, scale: int) -> str:
    """`column` (DECIMAL(38, 12)) rounded to `precision` places (SPEC §2 rounding), as
    DECIMAL(38, {scale}), exactly.

    128-bit decimal arithmetic is slow in DuckDB, so a cost below 10^(6 - precision) in size (a
    value times 10^precision then fits DECIMAL(18, 12), 64-bit) is rounded in 64 bits; the same
    steps, the same result.
    """
    exact = _rounding_steps_sql(column, precision, rounding, 38)
    if precision >= _SMALL_DIGITS:
        return f"CAST({exact} AS DECIMAL(38, {scale}))"
    bound = f"CAST('1{'0' * (_SMALL_DIGITS - precision)}' AS DECIMAL(38, 0))"
    small = _rounding_steps_sql(f"CAST({column} AS DECIMAL(18, 12))", precision, rounding, 18)
    return (
        f"CAST(CASE WHEN {column} < {bound} AND {column} > -{bound} THEN {small} "
        f"ELSE {exact} END AS DECIMAL(38, {scale}))"
    )


_SMALL_DIGITS = 6  # integer digits of DECIMAL(18, 12)


def _rounding_steps_sql(value: str, precision: int, rounding: Rounding, width: int) -> str:
    """`value` × 10^precision to a whole number (half up, up or down), then × 10^-precision, in
    decimals `width` digits wide."""
    scaled = f"({value} * CAST('1{'0' * precision}' AS DECIMAL({precision + 1}, 0)))"
    if rounding == "half_up":
        units = f"round({scaled}, 0)"  # costs kept are >= 0: half away from zero is half up
    elif rounding == "up":
        units = f"ceil({scaled})"
    else:
        units = f"floor({scaled})"
    step = "1" if precision == 0 else f"0.{'0' * (precision - 1)}1"
    return (
        f"(CAST({units} AS DECIMAL({width}, 0)) * CAST('{step}' AS DECIMAL({precision + 1}, "
        f"{precision})))"
    )
