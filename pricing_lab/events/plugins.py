"""Event sources from plug-ins: `--events NAME:SPEC` is read by the source a package registers
under the `pricing_lab.event_sources` entry-point group (`snowflake:DB.SCHEMA.TABLE` by
`connectors.snowflake`). pricing_lab itself imports no connector.

A registered source is either
- a function of SPEC returning the raw events as an Arrow table, which `events.ingest` then
  checks like a file's rows; or
- a `WarehouseSource`: an object that can also run a `CostingPlan` where the events live. The
  plan (plain data, built by `events.warehouse_costing`) names the meters' filters and the rates'
  formulas the warehouse can evaluate exactly as pricing_lab would; the source returns the events
  with only the columns pricing_lab still reads, plus one match column per meter and one raw-cost
  column per rate; the rows certainly accepted that match no meter may stay there, counted
  (`StayRule`). pricing_lab then checks those rows and finishes the costing (rate by
  subscription, rounding, rejections) reading the warehouse's columns instead of evaluating the
  filters and formulas again (`warehouse_costing.warehouse_costed`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import pyarrow as pa

from pricing_lab.catalog.model import MeterFilter
from pricing_lab.formula.ast import Node

if TYPE_CHECKING:
    from pricing_lab.catalog.model import Catalog

GROUP = "pricing_lab.event_sources"

ColumnKind = Literal["integer", "decimal", "text", "boolean"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanColumn:
    """A source column a meter or rate reads: its name (as the source gives it back), what it
    holds as pricing_lab sees it, and its exact type (`NUMBER(p, s)`, `BIGINT`, `VARCHAR`,
    `BOOLEAN`)."""

    name: str
    kind: ColumnKind
    type: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanMeter:
    """One events-sourced meter: `column` (BOOLEAN, never null) holds where every filter holds.

    A filter's dimension is a key of `CostingPlan.columns`, or absent from the source (then it
    is null for every event, SPEC §2 / `events.meters.filter_sql`). Its `value` is a tuple of
    plain texts as the column's kind compares them (decimals, `true`/`false`, or text): the
    values that cannot match it are already left out, as `filter_sql` leaves them out."""

    feature_id: str
    column: str
    event_name: str
    filters: tuple[MeterFilter, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanRate:
    """One credit rate: `column` (NUMBER(38, 12)) holds `formula` for the events named
    `event_name` whose meter column is true, and null for the others. The formula's dimensions
    are keys of `CostingPlan.columns` (the meter's per-event value already written in)."""

    feature_id: str
    column: str
    event_name: str
    meter_column: str
    formula: Node


@dataclass(frozen=True, slots=True, kw_only=True)
class StayRule:
    """Which rows stay in the warehouse, counted rather than sent: those ingestion certainly
    accepts (SPEC §4, the checks as `events.ingest` makes them) that match no meter of the plan
    and whose event id occurs once, but for each customer's earliest and latest such row (they
    carry the replay's default horizon and the customer's presence).

    `columns`: each required field's column (named as the plan's columns); `kinds`: how the
    field is checked: `text` (not null, not empty, not starting with a space: a row with a
    blank-looking id leaves and is checked locally), `integer` (not null) or `timestamp` (a time
    without zone inside the supported range, one day's margin at each end). `customers`: the
    known customer ids when a customer list is given (ingestion rejects the others as
    `unknown_customer`). Without `keep_back` (a meter is evaluated locally, so the warehouse
    cannot tell which rows no meter matches) every row leaves; the rows rejected for a missing
    field or an unknown customer are still rejected there (`connectors.snowflake.costing_sql.
    rejection_sql`)."""

    columns: Mapping[str, str]
    kinds: Mapping[str, Literal["text", "integer", "timestamp"]]
    customers: tuple[str, ...] | None
    keep_back: bool = True


# The columns a plan with a `StayRule` adds to the rows that leave: each row's 1-based place
# among all the source's rows (ingestion reports it as `source_row`), and on every row the
# number of rows that stayed (added to the rows read and accepted).
ROW_COLUMN = "__warehouse_row"
STAYED_COLUMN = "__warehouse_stayed"
# And the reason and detail of a row rejected in the warehouse (null for the others), worded as
# ingestion words them; such a row leaves with its required fields only.
REASON_COLUMN = "__warehouse_reason"
DETAIL_COLUMN = "__warehouse_detail"


@dataclass(frozen=True, slots=True, kw_only=True)
class CostingPlan:
    """What a warehouse source evaluates where the events live.

    `keep`: the source columns returned as they are (the required ones and every dimension
    pricing_lab still reads locally), in the source's order; `columns`: the columns meters and
    rates read, by name."""

    keep: tuple[str, ...]
    columns: Mapping[str, PlanColumn]
    meters: tuple[PlanMeter, ...]
    rates: tuple[PlanRate, ...]
    stay: StayRule | None = None


@runtime_checkable
class WarehouseSource(Protocol):
    """A source that can also cost events where they live."""

    def read(self, spec: str) -> pa.Table:
        """Every row and column of `spec` (raises `InputError` for a bad name or query)."""
        ...

    def cost(self, spec: str, plan_for: Callable[[pa.Schema], CostingPlan]) -> pa.Table:
        """Every row of `spec` with the columns of `plan_for(its columns as read gives them)`:
        `plan.keep`, then one column per plan meter and rate; with `plan.stay`, only the rows
        it does not keep in the warehouse, in their order, with `ROW_COLUMN` and
        `STAYED_COLUMN`. Raises `InputError` for a bad name
        or query. When the warehouse cannot run the plan (a value beyond NUMBER(38, 12), which
        pricing_lab rejects row by row but a warehouse query fails on) it returns `read(spec)`:
        the costing then evaluates every meter and rate locally, with the same results."""
        ...


def plugin_events(
    text: str,
    catalogs: Callable[[], Sequence[Catalog]] | None = None,
    customers: Sequence[str] | None = None,
) -> pa.Table | None:
    """The events `text` names through a registered source (`NAME:SPEC`), or None when no
    source is registered under NAME (then `text` is a path).

    With `catalogs` (giving the base and every scenario, asked only for a warehouse source) and
    a `WarehouseSource`, the catalogs' meters and rates are evaluated in the warehouse where
    they can be exactly (`warehouse_costing.costing_plan`), and the rows matching none of them
    that ingestion certainly accepts (`customers`: the known customer ids, when a list is
    given) stay there, counted."""
    name = source_name(text)
    if name is None:
        return None
    spec = text.partition(":")[2]
    for entry in entry_points(group=GROUP, name=name):
        source = entry.load()
        if isinstance(source, WarehouseSource):
            return _warehouse_events(source, spec, catalogs, customers)
        table: pa.Table = source(spec)
        return table
    return None


def source_name(text: str) -> str | None:
    """NAME of a `NAME:SPEC` events text (NAME an identifier), else None (a path)."""
    name, colon, _spec = text.partition(":")
    return name if colon and name.isidentifier() else None


def source_names() -> list[str]:
    """The names the installed event sources are registered under, sorted."""
    return sorted({entry.name for entry in entry_points(group=GROUP)})


def _warehouse_events(
    source: WarehouseSource,
    spec: str,
    catalogs: Callable[[], Sequence[Catalog]] | None,
    customers: Sequence[str] | None,
) -> pa.Table:
    if catalogs is None:
        return source.read(spec)
    from pricing_lab.events.warehouse_costing import costing_plan

    costed = catalogs()
    return source.cost(spec, lambda schema: costing_plan(costed, schema, customers=customers))


def column_kinds(types: Mapping[str, str]) -> dict[str, PlanColumn]:
    """The columns of DuckDB types `types` whose values a warehouse holds exactly alike:
    integers, decimals of at most 12 places, text and booleans (floating point and other types
    are left out: the warehouse would not read them exactly as DuckDB does)."""
    found: dict[str, PlanColumn] = {}
    for name, kind in types.items():
        upper = kind.upper()
        if upper in _INTEGERS:
            found[name] = PlanColumn(name=name, kind="integer", type="BIGINT")
        elif upper.startswith("DECIMAL("):
            precision, _, places = upper[len("DECIMAL(") : -1].partition(",")
            if int(places) <= 12:
                found[name] = PlanColumn(
                    name=name, kind="decimal", type=f"NUMBER({int(precision)}, {int(places)})"
                )
        elif upper == "VARCHAR":
            found[name] = PlanColumn(name=name, kind="text", type="VARCHAR")
        elif upper == "BOOLEAN":
            found[name] = PlanColumn(name=name, kind="boolean", type="BOOLEAN")
    return found


_INTEGERS = frozenset({"TINYINT", "SMALLINT", "INTEGER", "BIGINT"})
