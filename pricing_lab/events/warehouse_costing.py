"""Costing in the warehouse: which meters and rates a warehouse source evaluates, and how the
local costing reads what it computed.

`costing_plan` turns the catalogs (the base and each scenario) and the source's columns into a
`plugins.CostingPlan`: every events-sourced meter whose filters the warehouse reads exactly as
`events.meters.filter_sql` does, and every credit rate whose formula it evaluates exactly as
`formula.duckdb_sql` does, each named by a column derived from its definition (a hash), so the
same meter or rate finds its column again whatever catalog object carries it. What stays local,
and why (docs/scale-out.md, "Usage straight from the warehouse"):

- every check of SPEC §4 (missing fields, timestamps, duplicate ids, unknown customers, unusable
  meter values) of the rows that leave, so rejected rows are counted and reasoned by the one
  implementation; the warehouse keeps back only rows it can tell ingestion accepts and no meter
  matches (`_stay_rule`, `plugins.StayRule`), counted, and words the reason and detail of the
  rows it can tell ingestion rejects for a missing field or an unknown customer;
- which rate applies (the customer's subscription at the event's time), the rounding to the
  currency's precision and the cost rejections (`formula_null`, `formula_negative`,
  `cost_out_of_range`), from the warehouse's raw costs;
- filters on floating-point columns, a text column compared with a number, `contains` & co. on
  a non-text column, and formulas with `/`, `ceil` or `floor` (the stand-in computes them in
  floating point) or reading a column that is not an integer or a decimal of at most 12
  places: evaluated locally as before.

Only the columns pricing_lab still reads leave the warehouse: the four required ones and the
dimensions the catalogs' meters, rates and unit costs name (the usage reports, the cost to serve
and the checks read them); all columns when the source has a `properties` or `source_row` column
or lacks a named dimension (then the local error names the close matches as for a file).

`warehouse_costed` is the costing's side: it swaps a meter's condition for its match column and a
rate's formula for its cost column wherever the events table has them.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

import duckdb
import pyarrow as pa

from pricing_lab.catalog.model import Catalog, Feature, MeterFilter
from pricing_lab.errors import InputError, ValidationError
from pricing_lab.events.ingest import REQUIRED_EVENT_COLUMNS, quote_ident, quote_literal
from pricing_lab.events.meters import EventMeter, filter_number, filter_text
from pricing_lab.events.plugins import (
    CostingPlan,
    PlanColumn,
    PlanMeter,
    PlanRate,
    StayRule,
    column_kinds,
)
from pricing_lab.formula import Formula
from pricing_lab.formula.ast import (
    Arithmetic,
    Call,
    Comparison,
    Dimension,
    Logical,
    Negate,
    Node,
    Not,
    Number,
    children,
    dimensions,
)
from pricing_lab.formula.render import render

if TYPE_CHECKING:
    from pricing_lab.simulation.costing import ResolvedRate
    from pricing_lab.simulation.customers import CustomerInputs

MATCH_PREFIX = "__warehouse_match_"
COST_PREFIX = "__warehouse_cost_"

_NUMERIC_KINDS = ("integer", "decimal")
# Functions the warehouse evaluates exactly as DuckDB does. Left out, like `/`: `ceil` and
# `floor`, exact on Snowflake but computed through floating point by the stand-in.
_FUNCTIONS = frozenset({"min", "max", "abs", "round", "if", "coalesce"})


def meter_column(feature: Feature) -> str:
    """The match column of a feature's meter, named by its definition."""
    return MATCH_PREFIX + _digest(feature.id, repr(feature.meter))


def rate_column(feature: Feature, currency_id: str, formula: Formula) -> str:
    """The raw-cost column of one rate of `feature` (its meter, currency and formula)."""
    return COST_PREFIX + _digest(feature.id, repr(feature.meter), currency_id, render(formula.tree))


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:20]


# --------------------------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------------------------


def costing_plan(
    catalogs: Sequence[Catalog], schema: pa.Schema, *, customers: Sequence[str] | None = None
) -> CostingPlan:
    """What the warehouse can evaluate of `catalogs` over a source of columns `schema` (as the
    source gives them back), which columns must still leave it, and which rows may stay
    (`_stay_rule`; `customers`: the known customer ids when a customer list is given)."""
    from pricing_lab.simulation.costing import QUANTITY, resolve_rates

    types = _duckdb_types(schema)
    by_lower = {name.lower(): name for name in types}
    everything = CostingPlan(keep=tuple(types), columns={}, meters=(), rates=())
    if "properties" in by_lower or "source_row" in by_lower:
        return everything  # ingestion makes columns of its own there
    if any(name not in by_lower for name in REQUIRED_EVENT_COLUMNS):
        return everything  # ingestion names the missing column
    try:
        resolved = [resolve_rates(catalog) for catalog in catalogs]
    except (InputError, ValidationError):
        return everything  # the local costing reports the catalog's problem
    kinds = column_kinds(types)
    meters: dict[str, PlanMeter] = {}
    rates: dict[str, PlanRate] = {}
    read: dict[str, PlanColumn] = {}
    every_meter = True  # every events-sourced meter is evaluated in the warehouse
    for catalog, catalog_rates in zip(catalogs, resolved, strict=True):
        by_id = {f.id: f for f in catalog.features}
        for feature in catalog.features:
            if feature.meter is None or feature.meter.source != "events":
                continue
            planned = _plan_meter(feature, by_lower, kinds)
            every_meter = every_meter and planned is not None
            if planned is not None:
                meters[planned.column] = planned
                read.update(_filter_columns(planned.filters, kinds))
        for rate in catalog_rates:
            owner = by_id.get(rate.feature_id)
            if owner is None or owner.meter is None or meter_column(owner) not in meters:
                continue
            assert owner.meter.event_name is not None
            quantity = _quantity(owner, by_lower, kinds)
            if quantity is None:
                continue
            tree = _with_dimensions(rate.formula.tree, {QUANTITY: quantity})
            columns = _formula_columns(tree, by_lower, kinds)
            if columns is None:
                continue
            column = rate_column(owner, rate.currency_id, rate.formula)
            rates[column] = PlanRate(
                feature_id=owner.id,
                column=column,
                event_name=owner.meter.event_name,
                meter_column=meter_column(owner),
                # named as the source's columns (formulas match them case-insensitively)
                formula=_with_dimensions(
                    tree, {d: Dimension(name=by_lower[d.lower()]) for d in dimensions(tree)}
                ),
            )
            read.update(columns)
    named, required = _named_dimensions(catalogs, resolved)
    if any(name.lower() not in by_lower for name in required - {QUANTITY}):
        keep = tuple(types)  # a dimension is missing: the local check names the close ones
    else:
        wanted = {c.lower() for c in REQUIRED_EVENT_COLUMNS} | {n.lower() for n in named}
        keep = tuple(name for name in types if name.lower() in wanted)
    return CostingPlan(
        keep=keep,
        columns=read,
        meters=tuple(meters.values()),
        rates=tuple(rates.values()),
        stay=_stay_rule(types, by_lower, customers, keep_back=every_meter),
    )


# The DuckDB types of each required field whose values the warehouse can tell for certain that
# ingestion accepts (`plugins.StayRule`): ids as text or integers, names as text, times without
# a zone. Other types (a text timestamp, a time with a zone): no row stays.
_STAY_KINDS: Mapping[str, Literal["text", "integer", "timestamp"]] = {
    "VARCHAR": "text",
    **dict.fromkeys(("TINYINT", "SMALLINT", "INTEGER", "BIGINT"), "integer"),
    **dict.fromkeys(("TIMESTAMP", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S"), "timestamp"),
}
_STAY_FIELDS = {
    "event_id": ("text", "integer"),
    "customer_id": ("text", "integer"),
    "event_name": ("text",),
    "timestamp": ("timestamp",),
}


def _stay_rule(
    types: Mapping[str, str],
    by_lower: Mapping[str, str],
    customers: Sequence[str] | None,
    *,
    keep_back: bool,
) -> StayRule | None:
    """Which rows may stay in the warehouse (with `keep_back`: every events-sourced meter is
    evaluated there) or be rejected there, or None when its SQL cannot tell for certain how
    ingestion judges a row (`_STAY_KINDS`)."""
    kinds: dict[str, Literal["text", "integer", "timestamp"]] = {}
    for name, wanted in _STAY_FIELDS.items():
        kind = _STAY_KINDS.get(types[by_lower[name]].upper())
        if kind is None or kind not in wanted:
            return None
        kinds[name] = kind
    return StayRule(
        columns={name: by_lower[name] for name in _STAY_FIELDS},
        kinds=kinds,
        customers=None if customers is None else tuple(str(c) for c in customers),
        keep_back=keep_back,
    )


def _named_dimensions(
    catalogs: Sequence[Catalog], resolved: Sequence[Sequence[ResolvedRate]]
) -> tuple[set[str], set[str]]:
    """The dimensions the catalogs' meters, rates and unit costs read (kept where the source
    has them: the usage report, the cost to serve and the checks read them locally), and those
    `costing.dimension_problems` reports when the source lacks them."""
    from pricing_lab.simulation.costing import required_dimensions

    named: set[str] = set()
    required: set[str] = set()
    for catalog, catalog_rates in zip(catalogs, resolved, strict=True):
        for feature in catalog.features:
            meter = feature.meter
            if meter is None or meter.source != "events":
                continue
            for flt in meter.filters:
                named.add(flt.dimension)
                if flt.operator not in ("is_null", "is_not_null"):
                    required.add(flt.dimension)
            if meter.dimension:
                named.add(meter.dimension)
                required.add(meter.dimension)
            for cost in feature.cost:
                named.update(_formula_dimensions(cost.formula))
        for rate in catalog_rates:
            named.update(rate.formula.dimensions)
            required.update(required_dimensions(rate.formula.tree))
    return named, required


def _duckdb_types(schema: pa.Schema) -> dict[str, str]:
    """The DuckDB type of each column, as ingestion sees an Arrow table of that schema."""
    relation = duckdb.connect().from_arrow(schema.empty_table())
    return {name: str(kind) for name, kind in zip(relation.columns, relation.types)}


def _plan_meter(
    feature: Feature, by_lower: Mapping[str, str], kinds: Mapping[str, PlanColumn]
) -> PlanMeter | None:
    """The meter as the warehouse evaluates it, or None when a filter must stay local."""
    meter = feature.meter
    assert meter is not None
    if meter.event_name is None:
        return None
    filters = []
    for flt in meter.filters:
        planned = _plan_filter(flt, by_lower, kinds)
        if planned is None:
            return None
        filters.append(planned)
    return PlanMeter(
        feature_id=feature.id,
        column=meter_column(feature),
        event_name=meter.event_name,
        filters=tuple(filters),
    )


def _plan_filter(
    flt: MeterFilter, by_lower: Mapping[str, str], kinds: Mapping[str, PlanColumn]
) -> MeterFilter | None:
    """The filter with its dimension named as the source column and its values written as the
    column's kind reads them (`events.meters.filter_sql`'s rules), or None when the warehouse
    would not read it alike. A dimension the source lacks is left as it is (null for every
    event); values are plain text: decimals, `true`/`false`, or the text compared."""
    name = by_lower.get(flt.dimension.lower())
    op = flt.operator
    if name is None or op in ("is_null", "is_not_null"):
        if name is not None and name not in kinds:
            return None
        return replace(flt, dimension=name or flt.dimension, value=None)
    column = kinds.get(name)
    if column is None:
        return None
    values = flt.value if isinstance(flt.value, tuple) else (flt.value,)
    if op in ("contains", "starts_with", "ends_with"):
        if column.kind != "text":
            return None
        return replace(flt, dimension=name, value=(filter_text(flt.value),))
    if op in ("equals", "not_equals", "in"):
        if column.kind in _NUMERIC_KINDS:
            texts = [n for n in (filter_number(v) for v in values) if n is not None]
        elif column.kind == "boolean":
            texts = [b for b in (_as_boolean(v) for v in values) if b is not None]
        else:
            texts = [filter_text(v) for v in values if v is not None]
        return replace(flt, dimension=name, value=tuple(texts))
    if column.kind in _NUMERIC_KINDS:
        number = filter_number(flt.value)
        return replace(flt, dimension=name, value=() if number is None else (number,))
    if column.kind == "text" and not isinstance(flt.value, Decimal | int | float):
        return replace(flt, dimension=name, value=(filter_text(flt.value),))
    return None  # a text dimension compared with a number: DuckDB's TRY_CAST rules


def _filter_columns(
    filters: Iterable[MeterFilter], kinds: Mapping[str, PlanColumn]
) -> dict[str, PlanColumn]:
    return {f.dimension: kinds[f.dimension] for f in filters if f.dimension in kinds}


def _quantity(
    feature: Feature, by_lower: Mapping[str, str], kinds: Mapping[str, PlanColumn]
) -> Node | None:
    """The meter's per-event value as a formula node, or None when it must stay local."""
    meter = feature.meter
    assert meter is not None
    if meter.aggregation in ("count", "count_unique"):
        return Number(value=Decimal(1))
    name = by_lower.get((meter.dimension or "").lower())
    if name is None or name not in kinds or kinds[name].kind not in _NUMERIC_KINDS:
        return None
    return Dimension(name=name)


def _with_dimensions(node: Node, replacements: Mapping[str, Node]) -> Node:
    """`node` with each dimension named in `replacements` replaced."""
    if isinstance(node, Dimension):
        return replacements.get(node.name, node)
    if isinstance(node, Negate | Not):
        return replace(node, operand=_with_dimensions(node.operand, replacements))
    if isinstance(node, Arithmetic | Comparison | Logical):
        left = _with_dimensions(node.left, replacements)
        return replace(node, left=left, right=_with_dimensions(node.right, replacements))
    if isinstance(node, Call):
        return replace(node, args=tuple(_with_dimensions(a, replacements) for a in node.args))
    return node


def _formula_columns(
    tree: Node, by_lower: Mapping[str, str], kinds: Mapping[str, PlanColumn]
) -> dict[str, PlanColumn] | None:
    """The numeric columns the formula reads, or None when it must be evaluated locally."""
    if not _exact_everywhere(tree):
        return None
    found = {}
    for name in dimensions(tree):
        column = by_lower.get(name.lower())
        if column is None or column not in kinds or kinds[column].kind not in _NUMERIC_KINDS:
            return None
        found[column] = kinds[column]
    return found


def _exact_everywhere(node: Node) -> bool:
    """No division, no text comparison: the warehouse computes the same exact decimals."""
    if isinstance(node, Arithmetic) and node.op == "/":
        return False
    if isinstance(node, Call) and node.name not in _FUNCTIONS:
        return False
    if not isinstance(
        node, Number | Dimension | Negate | Arithmetic | Comparison | Logical | Not | Call
    ):
        return False
    return all(_exact_everywhere(child) for child in children(node))


def _formula_dimensions(text: str) -> tuple[str, ...]:
    try:
        return Formula.parse(text).dimensions
    except Exception:  # a bad unit-cost formula is the catalog check's to report
        return ()


def _as_boolean(value: object) -> str | None:
    return {"true": "true", "false": "false"}.get(filter_text(value).strip().lower())


# --------------------------------------------------------------------------------------------
# The costing's side
# --------------------------------------------------------------------------------------------


def warehouse_costed(
    catalog: Catalog,
    rates: Sequence[ResolvedRate],
    meters: Sequence[EventMeter],
    column_types: Mapping[str, str],
) -> tuple[tuple[ResolvedRate, ...], tuple[EventMeter, ...]]:
    """`rates` and `meters` reading the warehouse's columns wherever the events table has them:
    a meter matches the events of its name whose match column is true (the filters are never
    null, so this is the meter's condition), a rate's formula is its cost column."""
    if not any(name.startswith((MATCH_PREFIX, COST_PREFIX)) for name in column_types):
        return tuple(rates), tuple(meters)
    features = {f.id: f for f in catalog.features}
    new_meters = []
    for meter in meters:
        feature = features[meter.feature_id]
        column = meter_column(feature)
        if column in column_types and feature.meter is not None:
            named = f"event_name = {quote_literal(feature.meter.event_name or '')}"
            meter = replace(meter, condition=f"({named} AND {quote_ident(column)})")
        new_meters.append(meter)
    new_rates = []
    for rate in rates:
        owner = features.get(rate.feature_id)
        if owner is not None:
            column = rate_column(owner, rate.currency_id, rate.formula)
            if column in column_types:
                rate = replace(rate, formula=Formula(Dimension(name=column)))
        new_rates.append(rate)
    return tuple(new_rates), tuple(new_meters)


def scenario_catalogs(
    args: argparse.Namespace, catalog: Catalog, customers: CustomerInputs
) -> list[Catalog]:
    """The catalog, then each scenario's (`compare --scenarios`): the rates a replay costs."""
    path = getattr(args, "scenarios", None)
    if path is None:
        return [catalog]
    from pricing_lab.simulation.scenarios import load_scenarios

    _base, scenarios = load_scenarios(path)
    return [catalog, *(s.apply(catalog, customers)[0] for s in scenarios)]
