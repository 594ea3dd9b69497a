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

import bisect
import contextlib
import difflib
import itertools
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from pricing_lab import small_pages
from pricing_lab.catalog.model import Catalog, CreditCurrency, CreditRate
from pricing_lab.errors import InputError, Problem, ValidationError
from pricing_lab.events.ingest import SOURCE_ROW_COLUMN, quote_ident, quote_literal
from pricing_lab.events.meters import EventMeter, event_meters
from pricing_lab.events.warehouse_costing import warehouse_costed
from pricing_lab.formula import Formula
from pricing_lab.formula.ast import Arithmetic, Call, Dimension, Negate, Node, Number, children
from pricing_lab.formula.duckdb_sql import out_of_range_sql
from pricing_lab.ledger.model import Subscription
from pricing_lab.money import Rounding, normalized
from pricing_lab.outputs import REJECTED_EVENTS
from pricing_lab.simulation.output_files import polars_frame
from pricing_lab.timeutil import naive_utc

NO_PLAN = ""  # plan key of the default rates (customers without a subscription)
QUANTITY = "__quantity"  # the matched meter value, visible to per-unit rates only

_SPLIT_BATCH_ROWS = 1 << 20  # costed rows read at a time when split by span (`_split_by_span`)
# The rejected events' columns, as `rejected_events.parquet` holds them (`outputs.REJECTED_EVENTS`).
REJECTED_COLUMNS = dict(REJECTED_EVENTS.columns)


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
    price: Node = Number(value=normalized(rate.per_unit.copy_abs()))
    if rate.per_unit < 0:
        price = Negate(operand=price)  # literals are never negative: the parser's tree for -x
    return Formula(Arithmetic(op="*", left=price, right=Dimension(name=QUANTITY)))


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
    items = list(subscriptions)
    naive: dict[datetime, datetime] = {}  # thousands of subscriptions share a few start times

    def plain(value: datetime) -> datetime:
        if value not in naive:
            naive[value] = naive_utc(value)
        return naive[value]

    return pl.DataFrame(
        {
            "subscription_index": range(len(items)),
            "customer_id": [s.customer_id for s in items],
            "plan_id": [s.plan_id for s in items],
            # Built by Arrow: Polars makes one Series per list from Python lists (slow).
            "addons": pl.Series(
                pa.array([list(s.addons) for s in items], type=pa.list_(pa.string()))
            ),
            "start": [plain(s.start) for s in items],
            "end": [None if s.end is None else plain(s.end) for s in items],
        },
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

    A variant is one distinct (currency, formula SQL) pair per rate set costed together (a single
    pair for one catalog); plans sharing a rate share a variant.
    `dimensions`: the events table's columns the variants' formulas read.
    `default_variant` applies without a subscription, `subscription_variants[i]` during
    subscription i; None means no rate there (the event costs nothing for this feature).
    """

    meter: EventMeter
    variants: tuple[tuple[tuple[str, str], ...], ...]
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
    catalog: Catalog,
    subscriptions: Sequence[Subscription] = (),
    *,
    events: str = "events",
) -> Costing:
    """Cost every event of table `events` for every events-sourced meter it matches.

    Returns the consumption table for the engines (every accepted event appears, an event with no
    cost as one row with null feature) and the events rejected by their formulas. Events are
    matched straight from table `events` with the catalog's meters (`events.meters.event_meters`,
    the conditions `match_events` uses). Raises `InputError` when an event id is missing or not
    unique.
    """
    [costing] = cost_events_many(con, [catalog], [subscriptions], events=events)
    return costing


def cost_events_many(
    con: duckdb.DuckDBPyConnection,
    catalogs: Sequence[Catalog],
    subscriptions_per_catalog: Sequence[Sequence[Subscription]],
    *,
    events: str = "events",
) -> list[Costing]:
    """Cost the events of table `events` under several catalogs (rate sets) at once.

    `result[i]` is exactly what `cost_events(con, catalogs[i], subscriptions_per_catalog[i])`
    returns. Rate sets yielding the same rows share one pass over the events: same
    subscriptions, meters and currencies, and a rate for the same features in the same plans,
    add-ons and defaults (otherwise an event could be costed for a feature in one set and be a
    null-feature row in another). A shared pass reads, joins and sorts once and computes one
    cost column per rate set; the costings then share their event columns (no copy). An event
    rejected under one rate set is removed from that set's consumptions only.
    """
    check_event_ids(con, events)
    with costed_events(con, catalogs, subscriptions_per_catalog, events=events) as costings:
        return costings(None)


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerSpan:
    """The customers with ids from `first` to `last` (both included); with `null_customer`,
    also the events without a customer id."""

    first: str
    last: str
    null_customer: bool = False

    def sql(self, column: str) -> str:
        """The condition that a row's `column` is in the span."""
        inside = f"{column} BETWEEN {quote_literal(self.first)} AND {quote_literal(self.last)}"
        return f"({column} IS NULL OR {inside})" if self.null_customer else f"({inside})"

    def expr(self, column: str) -> pl.Expr:
        """The same condition (`sql`) as a Polars expression."""
        inside = pl.col(column).is_between(pl.lit(self.first), pl.lit(self.last))
        return (inside | pl.col(column).is_null()) if self.null_customer else inside


CostingsOf = Callable[[CustomerSpan | None], list[Costing]]


@contextmanager
def costed_events(
    con: duckdb.DuckDBPyConnection,
    catalogs: Sequence[Catalog],
    subscriptions_per_catalog: Sequence[Sequence[Subscription]],
    *,
    events: str = "events",
    spans: Sequence[CustomerSpan] = (),
    scratch: Path | None = None,
) -> Iterator[CostingsOf]:
    """The events of table `events` matched and costed once (as `cost_events_many`), handed out
    per span of customers: `costings(span)` is `cost_events_many` over the span's events only,
    `costings(None)` over all of them.

    A replay in customer ranges costs the whole table in one pass and takes each range's rows,
    already rounded and checked, instead of copying and costing each range's events apart. The
    costed rows live in DuckDB temporary tables until the block ends. The event ids must be
    distinct: the caller checks them first (`check_event_ids`) unless ingestion made them so.

    `spans` (disjoint, in customer id order): the spans that will be asked for, each once. The
    costing query's rows then go straight into one file per span under `scratch` (a temporary
    folder in it; the system's when None) instead of a DuckDB table: read span by span, every
    span would scan the whole table (under a partitioned replay's memory cap, from DuckDB's
    spill files), so the reads would grow with the number of spans times the number of events.
    """
    if len(catalogs) != len(subscriptions_per_catalog):
        raise ValueError("cost_events_many: one subscription list per catalog")
    prepared = []
    checked: set[tuple[Subscription, ...]] = set()
    for catalog, given in zip(catalogs, subscriptions_per_catalog):
        subscriptions = tuple(given)
        if subscriptions not in checked:
            problems = overlapping_subscriptions(subscriptions)
            if problems:
                raise ValidationError(problems, source="subscriptions")
            checked.add(subscriptions)
        rates = resolve_rates(catalog)
        prepared.append((catalog, subscriptions, rates, event_meters(con, catalog, events=events)))
    try:
        column_types = _column_types(con, events)
    except duckdb.Error as exc:
        raise InputError(f"costing events failed: {exc}") from None
    groups: dict[tuple[Any, ...], list[int]] = {}
    rate_sets: list[list[FeatureCosting]] = []
    for index, (catalog, subscriptions, rates, meters) in enumerate(prepared):
        # Meters and rates a warehouse source already evaluated read its columns instead.
        rates, meters = warehouse_costed(catalog, rates, meters, column_types)
        features = _feature_costings(rates, subscriptions, meters, column_types)
        rate_sets.append(features)
        currencies = tuple((c.id, c.precision, c.rounding) for c in catalog.currencies)
        groups.setdefault((subscriptions, meters, currencies, _rated_where(features)), []).append(
            index
        )
    tables: list[tuple[list[int], _Costed]] = []
    try:
        with contextlib.ExitStack() as stack:
            folder = (
                Path(stack.enter_context(tempfile.TemporaryDirectory(dir=scratch)))
                if len(spans) > 1
                else None
            )
            for number, members in enumerate(groups.values()):
                catalog, subscriptions, _rates, _meters = prepared[members[0]]
                built = _build_costed(
                    con,
                    [rate_sets[i] for i in members],
                    subscriptions,
                    catalog.currencies,
                    events,
                    traceable=SOURCE_ROW_COLUMN in column_types,
                    name=f"__costed_{number}",
                    spans=spans,
                    folder=None if folder is None else folder / str(number),
                )
                tables.append((members, built))

            def costings(span: CustomerSpan | None) -> list[Costing]:
                results: dict[int, Costing] = {}
                for members, built in tables:
                    if built.files is None:
                        rows, rejected = _costed_rows(con, built.tables, span), None
                    else:
                        rows, rejected = built.files.take(span)
                    rows = built.rejections.applied(rows)
                    results.update(
                        zip(members, _costings_of(con, built.tables, span, rows, rejected))
                    )
                return [results[i] for i in range(len(catalogs))]

            yield costings
    finally:
        for _members, built in tables:
            _drop(con, built.tables.costed, built.tables.bad, built.tables.customers)


def _rated_where(features: Sequence[FeatureCosting]) -> tuple[Any, ...]:
    """Where each feature has a rate at all (without a subscription, in each subscription): two
    rate sets with the same answer cost the same (event, feature) rows."""
    return tuple(
        (f.meter, f.default_variant is None, tuple(v is None for v in f.subscription_variants))
        for f in features
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class _CostedTables:
    """Rate sets costed in one pass (`_build_costed`): the DuckDB tables holding the costed rows
    (`costed`) and the events rejected in some set (`bad`), and what reading them needs."""

    costed: str
    bad: str
    customers: str  # each customer id of the events with its rank in id order
    events: str
    sets: int
    currency_columns: tuple[str, ...]
    currency_ids: tuple[str, ...]  # the catalog's currencies, numbered as read
    feature_ids: tuple[str, ...]  # by `__feature_rank`
    rejected_counts: tuple[int, ...]
    everywhere: int  # events rejected in every set
    source_row: str

    def flagged(self) -> list[int]:
        """The sets rejecting events another set keeps: their rows are flagged, not removed."""
        return [k for k in range(self.sets) if self.rejected_counts[k] > self.everywhere]


def _build_costed(
    con: duckdb.DuckDBPyConnection,
    rate_sets: Sequence[Sequence[FeatureCosting]],
    subscriptions: Sequence[Subscription],
    currencies: Sequence[CreditCurrency],
    events: str,
    *,
    traceable: bool,
    name: str,
    spans: Sequence[CustomerSpan] = (),
    folder: Path | None = None,
) -> _Costed:
    """Cost the rate sets in one query into temporary tables `name` and `name`_bad: the rate
    sets cost the same rows (see `_rated_where`), each in its own raw-cost, cost and (when they
    differ) currency column. `traceable`: the events table has ingestion's `source_row`, copied
    to the rejected rows. The caller drops the tables.

    With `folder`, the costed rows are not stored in DuckDB but streamed from the costing query
    into a file per span of `spans` under `folder` (`_split_by_span`); the rejected events are
    found in the rows with a problem, kept aside as they pass."""
    features = _joint_features(rate_sets)
    sets = range(len(rate_sets))
    shared_currency = all(
        len({currency for currency, _sql in variant}) == 1
        for feature in features
        for variant in feature.variants
    )
    currency_columns = ["__currency_id" if shared_currency else f"__currency_id_{k}" for k in sets]
    scale = max((c.precision for c in currencies), default=0)
    rounded_costs = ", ".join(
        _case(
            currency_columns[k],
            [
                _rounded_cost_sql(f"__raw_cost_{k}", c.precision, c.rounding, scale)
                for c in currencies
            ],
            kind=f"DECIMAL(38, {scale})",
            keys=[quote_literal(c.id) for c in currencies],
        )
        + f" AS __cost_{k}"
        for k in sets
    )
    costed, bad = quote_ident(name), quote_ident(f"{name}_bad")
    customers = quote_ident(f"{name}_customers")
    con.register("__subscriptions", _subscriptions_table(subscriptions, features).to_arrow())
    built = _CostedTables(
        costed=costed,
        bad=bad,
        customers=customers,
        events=events,
        sets=len(rate_sets),
        currency_columns=tuple(currency_columns),
        currency_ids=tuple(c.id for c in currencies),
        feature_ids=tuple(f.meter.feature_id for f in features),
        rejected_counts=(0,) * len(rate_sets),  # until the rejected events are known
        everywhere=0,
        source_row="ev.source_row" if traceable else "CAST(NULL AS BIGINT)",
    )
    limit = f"CAST('{cost_limit(scale)}' AS DECIMAL(38, 0))"
    too_big = [f"(__out_of_range_{k} OR __cost_{k} >= {limit})" for k in sets]
    problem = [
        f"(__raw_cost_{k} IS NULL OR __raw_cost_{k} < 0 OR __cost_{k} >= {limit})" for k in sets
    ]
    split: tuple[tuple[Path, ...], pa.Table] | None = None
    try:
        # A span reads the customer, feature and currency of its rows as numbers, and their ids
        # once each. Stored, the rows are read again per span (`_costed_rows`); split, they are
        # read once, as the costing query makes them.
        con.execute(f"CREATE OR REPLACE TEMP TABLE {customers} AS {_customer_order_sql(events)}")
        rows = f"""
            SELECT c.*, {rounded_costs}, o.__customer_rank
            FROM ({_costed_sql(features, events, len(rate_sets), shared_currency)}) AS c
            LEFT JOIN {customers} AS o ON o.customer_id = c.customer_id
            """
        if folder is None:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {costed} AS {rows}")
            problems = costed
        else:
            split = _split_by_span(con, built, f"({rows})", " OR ".join(problem), spans, folder)
            con.register(_PROBLEMS, split[1])
            problems = _PROBLEMS
        per_set = ", ".join(
            f"bool_or({problem[k]}) AS __bad_{k}, "
            f"CASE WHEN bool_or({too_big[k]}) THEN 'cost_out_of_range' "
            f"WHEN bool_or(__raw_cost_{k} IS NULL) THEN 'formula_null' "
            f"ELSE 'formula_negative' END AS __reason_{k}, "
            f"string_agg({_rejection_detail_sql(k, limit)}, '; ' ORDER BY __feature_id) "
            f"FILTER (WHERE {problem[k]}) AS __detail_{k}"
            for k in sets
        )
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE {bad} AS
            SELECT event_id, {per_set}
            FROM {problems}
            WHERE __feature_id IS NOT NULL AND ({" OR ".join(problem)})
            GROUP BY event_id
            """
        )
        in_every_set = " AND ".join(f"__bad_{k}" for k in sets)
        counts = con.execute(
            "SELECT "
            + ", ".join(f"count(*) FILTER (WHERE __bad_{k})" for k in sets)
            + f", count(*) FILTER (WHERE {in_every_set}) FROM {bad}"
        ).fetchall()[0]
        built = replace(
            built, rejected_counts=tuple(int(n) for n in counts[:-1]), everywhere=int(counts[-1])
        )
        made = _Costed(
            tables=built,
            rejections=_rejections(con, built),
            files=None if split is None else _span_files(con, built, spans, split[0]),
        )
    except BaseException as exc:
        _drop(con, costed, bad, customers)
        if isinstance(exc, duckdb.Error):
            raise InputError(f"costing events failed: {exc}") from None
        raise
    finally:
        con.unregister("__subscriptions")
        if split is not None:
            con.unregister(_PROBLEMS)
    return made


def _drop(con: duckdb.DuckDBPyConnection, *tables: str) -> None:
    for table in tables:
        con.execute(f"DROP TABLE IF EXISTS {table}")


def _costed_rows_sql(built: _CostedTables, source: str, within: str = "", extra: str = "") -> str:
    """The costed rows of `source` (`built`'s table, or the query that makes it) as the engines'
    costings read them (`_costings_of`): event_id, timestamp, the currency column(s) as codes
    (`_CostedTables.currency_ids`), one cost per set, the customer's and the feature's rank;
    then `extra`. The rejected events are taken out after (`_Rejections.applied`)."""
    sets = range(built.sets)
    # Customer, feature and currency ids are read as numbers and made text once the rows are in
    # order: the text of every row is then built once, not read, converted and gathered.
    currency_codes = {
        column: _case(
            f"c.{column}",
            [str(i) for i in range(len(built.currency_ids))],
            "USMALLINT",
            keys=[quote_literal(c) for c in built.currency_ids],
        )
        for column in dict.fromkeys(built.currency_columns)
    }
    codes = ", ".join(f"{sql} AS {column}" for column, sql in currency_codes.items())
    costs = ", ".join(f"c.__cost_{k}" for k in sets)
    return f"""
        SELECT c.event_id, c.timestamp, {codes}, {costs}, c.__customer_rank,
               c.__feature_rank{extra}
        FROM {source} AS c
        {within}
        """


def _costed_rows(
    con: duckdb.DuckDBPyConnection, built: _CostedTables, span: CustomerSpan | None
) -> pa.Table:
    """The costed rows (`_costed_rows_sql`) of the customers in `span` (all without one)."""
    within = "" if span is None else f"WHERE {span.sql('c.customer_id')}"
    try:
        return con.sql(_costed_rows_sql(built, built.costed, within)).to_arrow_table()
    except duckdb.Error as exc:
        raise InputError(f"costing events failed: {exc}") from None


@dataclass(frozen=True, slots=True)
class _Rejections:
    """What the costed rows need from the rejected events (`_rejections`): the rows of an event
    rejected in every rate set leave; in a set that rejects events another set keeps, the rows
    of the events it rejects are flagged `__rejected_k` (left out of that set's frame only)."""

    everywhere: pa.Array  # ids of the events rejected in every set
    flagged: dict[int, pa.Array]  # per such set k: the ids it rejects

    def applied(self, rows: pa.Table) -> pa.Table:
        """`rows` (`_costed_rows_sql`) without the events rejected everywhere, with the flags."""
        if len(self.everywhere):
            kept = pc.invert(pc.is_in(rows.column("event_id"), value_set=self.everywhere))
            rows = rows.filter(kept)
        at = rows.schema.get_field_index("__customer_rank")
        for k, ids in self.flagged.items():
            flags = pc.is_in(rows.column("event_id"), value_set=ids)
            rows = rows.add_column(at, f"__rejected_{k}", flags)
            at += 1
        return rows


def _rejections(con: duckdb.DuckDBPyConnection, built: _CostedTables) -> _Rejections:
    """The rejected events of `built` (its `bad` table) as the costed rows need them."""
    if not any(built.rejected_counts):
        return _Rejections(everywhere=pa.array([], pa.string()), flagged={})
    sets = range(built.sets)
    bad = pl.from_arrow(con.sql(f"SELECT * FROM {built.bad}").to_arrow_table())
    assert isinstance(bad, pl.DataFrame)
    return _Rejections(
        everywhere=bad.filter(pl.all_horizontal(f"__bad_{k}" for k in sets))["event_id"].to_arrow(),
        flagged={k: bad.filter(f"__bad_{k}")["event_id"].to_arrow() for k in built.flagged()},
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class _Costed:
    """Rate sets costed in one pass (`_build_costed`): its tables, its rejected events and,
    when split by span, the spans' files."""

    tables: _CostedTables
    rejections: _Rejections
    files: _SpanFiles | None


@dataclass(frozen=True, slots=True)
class _SpanFiles:
    """The costed rows of each span in a file of its own (`_split_by_span`), and the rejected
    events of all spans."""

    spans: tuple[CustomerSpan, ...]
    paths: tuple[Path, ...]
    rejected: list[pl.DataFrame]  # per rate set, of all spans (few rows: read once)

    def take(self, span: CustomerSpan | None) -> tuple[pa.Table, list[pl.DataFrame]]:
        """The costed rows (`_costed_rows_sql`) and, per rate set, the rejected events of
        `span` (one of the spans split, asked for once: its file goes)."""
        if span not in self.spans:
            raise ValueError(f"costings: {span} is not one of the spans the rows were split into")
        path = self.paths[self.spans.index(span)]
        with pa.OSFile(str(path)) as source:
            rows = pa.ipc.open_file(source, memory_pool=small_pages.ARROW_POOL).read_all()
        path.unlink()
        return rows, [frame.filter(span.expr("customer_id")) for frame in self.rejected]


# The rows with a problem, kept aside while the costed rows are split (`_split_by_span`), as a
# table the rejected events are found in.
_PROBLEMS = "__costing_problems"


def _split_by_span(
    con: duckdb.DuckDBPyConnection,
    built: _CostedTables,
    rows: str,
    problem: str,
    spans: Sequence[CustomerSpan],
    folder: Path,
) -> tuple[tuple[Path, ...], pa.Table]:
    """The costed rows of query `rows` (`_build_costed`'s, of `built`), each into the file of
    its customer's span (rows without a customer: the span with `null_customer`; rows of no
    span are left out). Returns the files and the rows where `problem` holds: what the
    rejected events are found in."""
    ranks = con.execute(
        f"SELECT customer_id, __customer_rank FROM {built.customers} "
        "WHERE customer_id IS NOT NULL ORDER BY __customer_rank"
    ).fetchall()
    ids = [customer for customer, _rank in ranks]
    if any(a.last >= b.first for a, b in itertools.pairwise(spans)):
        raise ValueError("costings: spans must be disjoint and in customer id order")
    # Customer ranks follow ids: a span holds the ranks from its first id's to its last id's.
    # span_of[1 + rank − base]: the span of a rank, −1 for none; span_of[0]: of no customer.
    # Small integers, so that NumPy's stable sort of them is a radix sort.
    span_of = np.full(len(ids) + 1, -1, dtype=np.int16 if len(spans) < 2**15 else np.int32)
    for index, span in enumerate(spans):
        span_of[
            1 + bisect.bisect_left(ids, span.first) : 1 + bisect.bisect_right(ids, span.last)
        ] = index
    span_of[0] = next((i for i, s in enumerate(spans) if s.null_customer), -1)
    base = int(ranks[0][1]) if ranks else 0
    folder.mkdir()
    paths = tuple(folder / f"span-{i:05d}.arrow" for i in range(len(spans)))
    options = pa.ipc.IpcWriteOptions(compression="lz4")
    kept = ["event_id", "__feature_id"]
    kept += [f"__{c}_{k}" for k in range(built.sets) for c in ("raw_cost", "out_of_range", "cost")]
    # A problem row's columns, null on the others.
    aside = "".join(f", CASE WHEN __problem THEN c.{c} END AS __aside_{c}" for c in kept)
    query = _costed_rows_sql(
        built,
        f"(SELECT *, __feature_id IS NOT NULL AND ({problem}) AS __problem FROM {rows})",
        extra=f", c.__problem{aside}",
    )
    problems: list[pa.Table] = []
    reader = con.sql(query).to_arrow_reader(_SPLIT_BATCH_ROWS)
    with contextlib.ExitStack() as files:
        files.callback(reader.close)  # an open result would hold the connection
        names = [
            n for n in reader.schema.names if n != "__problem" and not n.startswith("__aside_")
        ]
        schema = pa.schema([reader.schema.field(name) for name in names])
        writers = [
            files.enter_context(pa.ipc.new_file(str(path), schema, options=options))
            for path in paths
        ]
        aside_names = [f"__aside_{c}" for c in kept]

        def write(grouped: pa.RecordBatch, counts: list[int]) -> None:
            start = counts[0]  # rows of no span come first: left out
            for writer, taken in zip(writers, counts[1:], strict=True):
                if taken:
                    writer.write_batch(grouped.slice(start, taken))
                start += taken

        # Each batch is compressed and written on a thread of its own while DuckDB makes the
        # next (both release the GIL); one batch at a time.
        writing = files.enter_context(ThreadPoolExecutor(max_workers=1))
        written: Future[None] | None = None
        for batch in reader:
            flagged = pc.coalesce(
                batch.column("__problem"), False, memory_pool=small_pages.ARROW_POOL
            )
            if pc.any(flagged).as_py():
                problems.append(
                    pa.Table.from_batches(
                        [batch.filter(flagged).select(aside_names)]
                    ).rename_columns(kept)
                )
            batch = batch.select(names)
            rank = pc.coalesce(
                batch.column("__customer_rank"), base - 1, memory_pool=small_pages.ARROW_POOL
            ).to_numpy()
            span = span_of[rank - (base - 1)]
            order = np.argsort(span, kind="stable")
            counts = np.bincount(span + 1, minlength=len(spans) + 1)
            grouped = pc.take(batch, pa.array(order), memory_pool=small_pages.ARROW_POOL)
            if written is not None:
                written.result()
            written = writing.submit(write, grouped, counts.tolist())
        if written is not None:
            written.result()
        empty = pa.schema([reader.schema.field(f"__aside_{c}").with_name(c) for c in kept])
    return paths, pa.concat_tables(problems) if problems else empty.empty_table()


def _span_files(
    con: duckdb.DuckDBPyConnection,
    built: _CostedTables,
    spans: Sequence[CustomerSpan],
    paths: tuple[Path, ...],
) -> _SpanFiles:
    """The files of the costed rows split by span, with the rejected events of all spans."""
    return _SpanFiles(spans=tuple(spans), paths=paths, rejected=_rejected_rows(con, built, None))


def _rejected_rows(
    con: duckdb.DuckDBPyConnection, built: _CostedTables, span: CustomerSpan | None
) -> list[pl.DataFrame]:
    """Per rate set of `built`, the events it rejects of the customers in `span` (all without
    one), as `rejected_events.parquet` holds them, in customer, time and event id order."""
    within = "" if span is None else f"AND {span.sql('ev.customer_id')}"
    return [
        _fetch(
            con,
            f"""
            SELECT {built.source_row} AS source_row, ev.event_id, ev.customer_id,
                   ev.event_name,
                   strftime(ev.timestamp, '%Y-%m-%dT%H:%M:%S.%fZ') AS timestamp,
                   b.__reason_{k} AS reason, b.__detail_{k} AS detail
            FROM {built.bad} AS b JOIN {quote_ident(built.events)} AS ev
                ON ev.event_id = b.event_id
            WHERE b.__bad_{k} {within}
            ORDER BY ev.customer_id, ev.timestamp, ev.event_id
            """,
        )
        if built.rejected_counts[k]
        else pl.DataFrame(schema=REJECTED_COLUMNS)
        for k in range(built.sets)
    ]


def _costings_of(
    con: duckdb.DuckDBPyConnection,
    built: _CostedTables,
    span: CustomerSpan | None,
    rows: pa.Table,
    rejected: list[pl.DataFrame] | None = None,
) -> list[Costing]:
    """One costing per rate set of `built`, of the customers in `span` (all without one), from
    their costed `rows` (`_costed_rows_sql`) and, per set, their `rejected` events (read here
    when not given)."""
    sets = range(built.sets)
    flagged = built.flagged()
    currency_codes = dict.fromkeys(built.currency_columns)
    within = "" if span is None else f"WHERE {span.sql('c.customer_id')}"
    try:
        customers = _fetch(
            con,
            f"SELECT __customer_rank, customer_id FROM {built.customers} AS c "
            f"WHERE c.customer_id IS NOT NULL {within.replace('WHERE', 'AND')} "
            "ORDER BY __customer_rank",
        )
        # Sorted here, not by DuckDB: DuckDB's sort must hold pinned memory that grows with the
        # rows sorted, and under a partitioned replay's memory cap (`partitioned.DUCKDB_MEMORY`)
        # it fails for a range of a few million rows; the range is in memory anyway. Arrow's
        # `take` gathers across the rows' chunks into one chunk per column.
        ordered = polars_frame(
            pc.take(rows, _engine_order(rows), memory_pool=small_pages.ARROW_POOL)
        )
        del rows
        frame = ordered.select(
            "event_id",
            _by_rank(customers, ordered["__customer_rank"]).alias("customer_id"),
            pl.col("timestamp").dt.replace_time_zone("UTC"),
            pl.Series(built.feature_ids, dtype=pl.String)
            .gather(ordered["__feature_rank"])
            .alias("feature_id"),
            *(
                pl.Series(built.currency_ids, dtype=pl.String).gather(ordered[column]).alias(column)
                for column in currency_codes
            ),
            *(f"__cost_{k}" for k in sets),
            *(f"__rejected_{k}" for k in flagged),
        )
        del ordered
        rejected = _rejected_rows(con, built, span) if rejected is None else rejected
    except duckdb.Error as exc:
        raise InputError(f"costing events failed: {exc}") from None
    costings = []
    for k in sets:
        columns: list[str | pl.Expr] = [
            "event_id",
            "customer_id",
            "timestamp",
            "feature_id",
            pl.col(built.currency_columns[k]).alias("currency_id"),
            pl.col(f"__cost_{k}").alias("cost"),
        ]
        if k in flagged:
            consumptions = (
                frame.select(*columns, f"__rejected_{k}")
                .filter(~pl.col(f"__rejected_{k}"))
                .drop(f"__rejected_{k}")
            )
        else:
            consumptions = frame.select(columns)  # shares the columns of `frame`
        costings.append(
            Costing(
                consumptions=consumptions,
                rejected=rejected[k].cast(pl.Schema(REJECTED_COLUMNS)),
            )
        )
    return costings


def _by_rank(customers: pl.DataFrame, ranks: pl.Series) -> pl.Series:
    """The customer id of each rank in `ranks` (null for null), from `customers`
    (`__customer_rank`, `customer_id`: the span's customers, whose ranks follow one another)."""
    if customers.is_empty():
        return pl.Series(values=[None] * len(ranks), dtype=pl.String)
    first = int(customers["__customer_rank"][0])
    assert int(customers["__customer_rank"][-1]) - first + 1 == customers.height
    return customers["customer_id"].gather(ranks - first)


def _engine_order(rows: pa.Table) -> pa.Array:
    """The row order of costed rows (`__customer_rank`, `timestamp`, `event_id`,
    `__feature_rank`): the engines' order (`ledger.order.EVENT_SORT_COLUMNS`, the ranks standing
    for the customer and feature ids they follow), customers without an id last.

    When no two events of one customer share a time, whole numbers decide it: the customer's
    rank, the time and the feature's rank (an event's rows share its customer and time; an event
    without a costed feature has one row, with null feature), sorted here as one 64-bit key
    where they fit. That costs a fraction of sorting the rows with their text in DuckDB (under
    its memory cap). When two events of one customer share a time, the event ids decide, and
    the rows are sorted on all four columns. Worked in Polars, whose buffers are on 4 KiB pages
    (`small_pages`)."""

    keys = ("__customer_rank", "timestamp", "event_id", "__feature_rank")

    def by_text() -> pa.Array:
        frame = polars_frame(rows.select(keys))
        return frame.select(pl.arg_sort_by(*keys, nulls_last=True)).to_series().to_arrow()

    if rows.num_rows < 2 or rows.column("timestamp").null_count:
        return by_text()
    rank = pl.col("__customer_rank")
    numbers = polars_frame(rows.select(["__customer_rank", "timestamp", "__feature_rank"])).select(
        rank.fill_null(rank.max().fill_null(0) + 1).cast(pl.Int64).alias("rank"),
        pl.col("timestamp").dt.epoch("us").alias("time"),
        (pl.col("__feature_rank").fill_null(-1).cast(pl.Int64) + 1).alias("feature"),
    )
    numbers = numbers.with_columns(pl.col("rank", "time") - pl.col("rank", "time").min())
    bits = [int(value).bit_length() for value in numbers.max().row(0)]
    if sum(bits) > 63:  # the three do not fit one 64-bit key: sorted as three keys
        order = numbers.select(pl.arg_sort_by("rank", "time", "feature")).to_series()
    else:
        shifts = (bits[1] + bits[2], bits[2], 0)
        terms = [
            pl.col(name) * (1 << shift)
            for name, shift, width in zip(numbers.columns, shifts, bits, strict=True)
            if width  # a column of one value adds nothing (and rank 0 · 2^63 would not fit)
        ]
        key = pl.sum_horizontal(terms) if terms else pl.col("feature")  # all rows alike
        order = numbers.select(key.arg_sort()).to_series()
    # Rows j whose customer and time are those of row j − 1, in that order.
    ordered = numbers.select(pl.col("rank", "time").gather(order))
    together = ordered.select(
        ((pl.col("rank") == pl.col("rank").shift(1)) & (pl.col("time") == pl.col("time").shift(1)))
        .arg_true()
        .alias("j")
    ).to_series()
    if together.len():
        events = rows.column("event_id")
        before, after = order.gather(together - 1).to_arrow(), order.gather(together).to_arrow()
        if not events.take(before).equals(events.take(after)):
            return by_text()
    return order.to_arrow()


def dimension_problems(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, *, events: str = "events"
) -> list[Problem]:
    """Dimensions that the catalog's meters and credit rates read but table `events` lacks.

    Only features whose meter's event name occurs in the events are checked (a day without image
    requests may lack the image columns); names match case-insensitively, as columns do; `is_null`
    and `is_not_null` filters may name an absent dimension on purpose, and so may a formula
    that gives it a fallback (`required_dimensions`). Each problem suggests the
    closest column names ("did you mean …"). A run with such a problem would reject or leave
    unmatched every event of the feature.
    """
    columns = {name.lower(): name for name in _column_types(con, events)}
    names = {
        str(row[0])
        for row in con.execute(f"SELECT DISTINCT event_name FROM {quote_ident(events)}").fetchall()
    }
    problems: list[Problem] = []

    def check(path: str, dimension: str) -> None:
        if dimension.lower() in columns or dimension == QUANTITY:
            return
        close = difflib.get_close_matches(dimension.lower(), list(columns), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(columns[c]) for c in close)}?" if close else ""
        problems.append(
            Problem(path=path, message=f"the events have no dimension {dimension!r}{hint}")
        )

    metered = {}
    for feature in catalog.features:
        meter = feature.meter
        if meter is None or meter.source != "events" or meter.event_name not in names:
            continue
        metered[feature.id] = feature
        where = f"features[{feature.id}].meter"
        if meter.aggregation != "count" and meter.dimension:
            check(f"{where}.dimension", meter.dimension)
        for index, flt in enumerate(meter.filters):
            if flt.operator not in ("is_null", "is_not_null"):
                check(f"{where}.filters[{index}]", flt.dimension)
    for rate in resolve_rates(catalog):
        if rate.feature_id in metered:
            for dimension in sorted(required_dimensions(rate.formula.tree)):
                check(f"{rate.source}.formula", dimension)
    return problems


def required_dimensions(node: Node) -> set[str]:
    """The dimensions a formula needs: all it reads except those only given a fallback, as an
    argument of `coalesce` before its last one (`coalesce(pages, 1)` works without `pages`)."""
    if isinstance(node, Dimension):
        return {node.name}
    if isinstance(node, Call) and node.name == "coalesce":
        return required_dimensions(node.args[-1])
    found: set[str] = set()
    for child in children(node):
        found |= required_dimensions(child)
    return found


def check_dimensions(
    con: duckdb.DuckDBPyConnection,
    catalogs: Mapping[str, Catalog],
    *,
    events: str = "events",
    source: str = "events",
) -> None:
    """Raise `ValidationError` listing `dimension_problems` of every catalog (named, e.g. by
    scenario: their paths start with the name when there are several)."""
    problems = []
    for name, catalog in catalogs.items():
        for problem in dimension_problems(con, catalog, events=events):
            path = f"{name}: {problem.path}" if len(catalogs) > 1 else problem.path
            problems.append(Problem(path=path, message=problem.message))
    if problems:
        raise ValidationError(dict.fromkeys(problems), source=f"{source}: catalog dimensions")


def cost_limit(scale: int) -> int:
    """The smallest cost rejected as `cost_out_of_range` when the finest currency precision is
    `scale`: the ledger keeps amounts as 64-bit integers of 10^-scale, so one event's cost stays
    below 10^(18 - scale) (10^16 credits at precision 2) and cannot wrap them by itself."""
    return 10 ** (18 - scale)


def _rejection_detail_sql(k: int, limit: str) -> str:
    """What is wrong with one feature's cost in rate set `k`, for the rejected row's detail."""
    return (
        f"CASE WHEN __out_of_range_{k} THEN __feature_id || ': a value is infinite, NaN or "
        "beyond the exact decimal range (10^26)' "
        f"WHEN __cost_{k} >= {limit} THEN __feature_id || ' costs ' || "
        f"CAST(__cost_{k} AS VARCHAR) || ', at or above the limit of ' || "
        f"CAST({limit} AS VARCHAR) || ' per event' "
        f"ELSE __feature_id || ' costs ' || coalesce(CAST(__raw_cost_{k} AS VARCHAR), 'null') END"
    )


def check_event_ids(con: duckdb.DuckDBPyConnection, events: str = "events") -> None:
    """Raise `InputError` unless every row of table `events` has its own event id.

    The ledger engines rely on one customer and timestamp per event id; ingestion already
    rejects duplicates, but costing can be given any table: `cost_events_many` checks, and
    `costed_events` leaves it to its caller. Distinct 64-bit hashes are counted
    first (cheaper than the text); only when they fall short are the ids themselves compared.
    """
    e = quote_ident(events)
    try:
        [(rows, with_id, distinct_hashes)] = con.execute(
            f"SELECT count(*), count(event_id), count(DISTINCT hash(event_id)) FROM {e}"
        ).fetchall()
    except duckdb.Error as exc:
        raise InputError(f"costing events failed: {exc}") from None
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
            columns = rate.formula.dimension_columns(column_types)
            types = formula_types | {name: column_types[c] for name, c in columns.items()}
            dimensions.update(columns.values())
            variant = (rate.currency_id, rate.formula.to_duckdb_sql(types))
            variant_of[rate_index] = variants.setdefault(variant, len(variants))
        result.append(
            FeatureCosting(
                meter=meter,
                variants=tuple((variant,) for variant in variants),
                dimensions=tuple(sorted(dimensions)),
                default_variant=variant_of[defaults.get(feature)],
                subscription_variants=tuple(
                    variant_of[c.get(feature)] for c in chosen_per_subscription
                ),
            )
        )
    return result


def _joint_features(rate_sets: Sequence[Sequence[FeatureCosting]]) -> list[FeatureCosting]:
    """The features of several rate sets rated in the same places (`_rated_where`) as one list:
    a joint variant is one combination of the sets' variants, with each set's (currency, SQL)."""
    if len(rate_sets) == 1:
        return list(rate_sets[0])
    joint = []
    for per_set in zip(*rate_sets, strict=True):
        first = per_set[0]
        combinations: dict[tuple[int, ...], int] = {}
        default = _joint_variant(combinations, [f.default_variant for f in per_set])
        during = tuple(
            _joint_variant(combinations, chosen)
            for chosen in zip(*(f.subscription_variants for f in per_set), strict=True)
        )
        joint.append(
            FeatureCosting(
                meter=first.meter,
                variants=tuple(
                    tuple(f.variants[v][0] for f, v in zip(per_set, key, strict=True))
                    for key in combinations
                ),
                dimensions=tuple(sorted({d for f in per_set for d in f.dimensions})),
                default_variant=default,
                subscription_variants=during,
            )
        )
    return joint


def _joint_variant(
    combinations: dict[tuple[int, ...], int], chosen: Sequence[int | None]
) -> int | None:
    """The joint variant of one combination of the sets' variants (numbered as first seen);
    None when the sets have no rate there (they all have one or none, see `_rated_where`)."""
    if chosen[0] is None:
        return None
    key = tuple(v for v in chosen if v is not None)
    return combinations.setdefault(key, len(combinations))


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


def _costed_sql(
    features: Sequence[FeatureCosting], events: str, rate_sets: int, shared_currency: bool
) -> str:
    """Rows (event_id, customer_id, timestamp, __feature_id, __feature_rank, per rate set k
    __currency_id_k (one __currency_id when `shared_currency`) and __raw_cost_k): one per event
    and feature it matches and has a rate for, one with null feature for the other events.
    `__feature_rank` orders the features as their ids do."""
    e = quote_ident(events)
    parts = [
        _feature_sql(feature, rank, e, rate_sets, shared_currency)
        for rank, feature in enumerate(features)
        if not feature.never_costed
    ]
    parts.append(_uncosted_sql(features, e, rate_sets, shared_currency))
    return " UNION ALL ".join(parts)


def _feature_sql(
    feature: FeatureCosting, rank: int, e: str, rate_sets: int, shared_currency: bool
) -> str:
    meter = feature.meter
    dimensions = [d for d in feature.dimensions if d not in _EVENT_COLUMNS]
    columns = ", ".join(quote_ident(c) for c in (*_EVENT_COLUMNS, *dimensions))
    matching = (
        f"SELECT {columns}, CAST({meter.quantity} AS DECIMAL(38, 12)) AS {quote_ident(QUANTITY)}, "
        f"{meter.out_of_range} AS __quantity_out_of_range FROM {e} WHERE {meter.condition}"
    )
    sets = range(rate_sets)
    currencies = ", ".join(
        _case("__variant", [quote_literal(v[k][0]) for v in feature.variants], "VARCHAR")
        + (" AS __currency_id" if shared_currency else f" AS __currency_id_{k}")
        for k in (sets[:1] if shared_currency else sets)
    )
    # A value beyond the exact decimal range fails the row's cost, never the query: TRY makes
    # it NULL, and the flag tells it from a formula that is null.
    costs = [_case("__variant", [v[k][1] for v in feature.variants]) for k in sets]
    raw_costs = ", ".join(f"TRY({cost}) AS __raw_cost_{k}" for k, cost in zip(sets, costs))
    out_of_range = ", ".join(
        f"CASE WHEN __raw_cost_{k} IS NULL THEN __quantity_out_of_range OR "
        f"{out_of_range_sql(cost)} ELSE FALSE END AS __out_of_range_{k}"
        for k, cost in zip(sets, costs)
    )
    raw_names = ", ".join(f"__raw_cost_{k}" for k in sets)
    if feature.same_everywhere:
        with_variant = f"SELECT *, {feature.default_variant} AS __variant FROM ({matching})"
    else:
        with_variant = (
            f"SELECT ev.*, {_variant_sql(feature)} AS __variant "
            f"FROM ({matching}) AS ev {_SUBSCRIPTION_JOIN}"
        )
    return (
        f"SELECT event_id, customer_id, timestamp, {quote_literal(meter.feature_id)} AS "
        f"__feature_id, CAST({rank} AS SMALLINT) AS __feature_rank, {currencies}, {raw_names}, "
        f"{out_of_range} FROM (SELECT *, {raw_costs} FROM ({with_variant}) "
        "WHERE __variant IS NOT NULL)"
    )


def _variant_sql(feature: FeatureCosting) -> str:
    default = "NULL" if feature.default_variant is None else str(feature.default_variant)
    return (
        f"CASE WHEN s.subscription_index IS NULL THEN CAST({default} AS INTEGER) "
        f"ELSE s.{quote_ident(feature.column)} END"
    )


def _uncosted_sql(
    features: Sequence[FeatureCosting], e: str, rate_sets: int, shared_currency: bool
) -> str:
    """Events matching no feature they have a rate for, as one row with null feature.

    A meter condition that is NULL does not match (as in the meter's WHERE)."""
    sets = range(rate_sets)
    currencies = (
        ["CAST(NULL AS VARCHAR) AS __currency_id"]
        if shared_currency
        else [f"CAST(NULL AS VARCHAR) AS __currency_id_{k}" for k in sets]
    )
    raw_costs = [f"CAST(NULL AS DECIMAL(38, 12)) AS __raw_cost_{k}" for k in sets]
    out_of_range = [f"FALSE AS __out_of_range_{k}" for k in sets]
    nulls = ", ".join(
        [
            "CAST(NULL AS VARCHAR) AS __feature_id",
            "CAST(NULL AS SMALLINT) AS __feature_rank",
            *currencies,
            *raw_costs,
            *out_of_range,
        ]
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
