"""A costing plan (`pricing_lab.events.plugins.CostingPlan`) as one Snowflake query.

The query reads the events table or query once and returns every row with the plan's kept
columns, one BOOLEAN match column per meter (never null: every filter holds) and one
NUMBER(38, 12) raw-cost column per rate (the formula, for the events of the meter's name it
matches; null for the others). The filters follow `pricing_lab.events.meters.filter_sql` rule by
rule for the column kinds the plan gives (integers and decimals compare numerically, text as
text, booleans as booleans; a dimension the source lacks is null); the formulas are
`pricing_lab.formula.snowflake_sql`'s.
"""

from __future__ import annotations

from collections.abc import Mapping

from pricing_lab.catalog.model import MeterFilter
from pricing_lab.events.plugins import CostingPlan, PlanColumn, PlanMeter, PlanRate
from pricing_lab.formula.snowflake_sql import to_snowflake_sql
from pricing_lab.formula.sql_base import quote_identifier, quote_string

WORKING = "NUMBER(38, 12)"


def costing_sql(statement: str, names: Mapping[str, str], plan: CostingPlan) -> str:
    """The query running `plan` over `statement`'s rows. `names`: each column's name as the
    plan knows it (the source's, lower-cased when Snowflake folded it) → its Snowflake name."""
    renamed = ", ".join(
        f"{quote_identifier(original)} AS {quote_identifier(name)}"
        for name, original in names.items()
    )
    event_name = next(name for name in names if name.lower() == "event_name")
    matches = {m.column: meter_sql(m, plan.columns) for m in plan.meters}
    selected = [quote_identifier(name) for name in plan.keep]
    selected += [f"{sql} AS {quote_identifier(column)}" for column, sql in matches.items()]
    selected += [
        f"{rate_sql(rate, event_name, matches[rate.meter_column], plan.columns)} "
        f"AS {quote_identifier(rate.column)}"
        for rate in plan.rates
    ]
    return f"SELECT {', '.join(selected)} FROM (SELECT {renamed} FROM ({statement})) AS __events"


def meter_sql(meter: PlanMeter, columns: Mapping[str, PlanColumn]) -> str:
    """TRUE where every filter of the meter holds (never null)."""
    if not meter.filters:
        return "TRUE"
    return "(" + " AND ".join(filter_sql(f, columns) for f in meter.filters) + ")"


def rate_sql(rate: PlanRate, event_name: str, match: str, columns: Mapping[str, PlanColumn]) -> str:
    """The rate's formula for the events its meter matches (`event_name`: the column of the
    events' names), NUMBER(38, 12); null elsewhere."""
    types = {name: column.type for name, column in columns.items()}
    formula = to_snowflake_sql(rate.formula, types)
    named = f"{quote_identifier(event_name)} = {quote_string(rate.event_name)}"
    return f"CAST(IFF({named} AND {match}, {formula}, NULL) AS {WORKING})"


def filter_sql(flt: MeterFilter, columns: Mapping[str, PlanColumn]) -> str:
    """One planned filter as a Snowflake condition that is never null.

    The plan wrote the filter's values as the column's kind reads them (`value` a tuple of
    texts), or left the dimension as it is when the source lacks it."""
    op = flt.operator
    column = columns.get(flt.dimension)
    if column is None:
        return "TRUE" if op in ("is_null", "not_equals") else "FALSE"
    col = quote_identifier(column.name)
    if op == "is_null":
        return f"({col} IS NULL)"
    if op == "is_not_null":
        return f"({col} IS NOT NULL)"
    values = flt.value if isinstance(flt.value, tuple) else ()
    literals = [_literal(str(v), column) for v in values]
    if op in ("contains", "starts_with", "ends_with"):
        function = {"contains": "CONTAINS", "starts_with": "STARTSWITH", "ends_with": "ENDSWITH"}
        return f"COALESCE({function[op]}({col}, {literals[0]}), FALSE)"
    if op == "not_equals":
        return f"({col} IS DISTINCT FROM {literals[0]})" if literals else "TRUE"
    if not literals:
        return "FALSE"
    if op == "equals":
        return f"COALESCE({col} = {literals[0]}, FALSE)"
    if op == "in":
        return f"COALESCE({col} IN ({', '.join(literals)}), FALSE)"
    symbol = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
    return f"COALESCE({col} {symbol} {literals[0]}, FALSE)"


def _literal(text: str, column: PlanColumn) -> str:
    if column.kind in ("integer", "decimal"):
        places = len(text.partition(".")[2])
        return f"CAST({quote_string(text)} AS NUMBER(38, {min(12, places)}))"
    if column.kind == "boolean":
        return "TRUE" if text == "true" else "FALSE"
    return quote_string(text)
