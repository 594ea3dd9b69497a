"""A costing plan (`pricing_lab.events.plugins.CostingPlan`) as one Snowflake query.

The query reads the events table or query once and returns its rows with the plan's kept
columns, one BOOLEAN match column per meter (never null: every filter holds) and one
NUMBER(38, 12) raw-cost column per rate (the formula, for the events of the meter's name it
matches; null for the others). The filters follow `pricing_lab.events.meters.filter_sql` rule by
rule for the column kinds the plan gives (integers and decimals compare numerically, text as
text, booleans as booleans; a dimension the source lacks is null); the formulas are
`pricing_lab.formula.snowflake_sql`'s.

With `plan.stay` the rows ingestion certainly accepts (`accepted_sql`), whose event id occurs once
and that no meter matches stay in the warehouse, but for each customer's earliest and latest; the
others leave in the order `SEQ8()` numbered them, with that number (`plugins.ROW_COLUMN`) and
the count kept back (`plugins.STAYED_COLUMN`). A row rejected for a missing field or an unknown
customer (`rejection_sql`, worded as `events.ingest` words it) leaves with its required fields,
reason and detail only.
"""

from __future__ import annotations

from collections.abc import Mapping

from pricing_lab.catalog.model import MeterFilter
from pricing_lab.events.plugins import (
    DETAIL_COLUMN,
    REASON_COLUMN,
    ROW_COLUMN,
    STAYED_COLUMN,
    CostingPlan,
    PlanColumn,
    PlanMeter,
    PlanRate,
    StayRule,
)
from pricing_lab.formula.snowflake_sql import to_snowflake_sql
from pricing_lab.formula.sql_base import quote_identifier, quote_string

WORKING = "NUMBER(38, 12)"


def costing_sql(
    statement: str, names: Mapping[str, str], plan: CostingPlan, customers: str | None = None
) -> str:
    """The query running `plan` over `statement`'s rows. `names`: each column's name as the
    plan knows it (the source's, lower-cased when Snowflake folded it) → its Snowflake name;
    `customers`: the table of known customer ids (column `customer_id`) a `plan.stay` with a
    customer list reads."""
    renamed = ", ".join(
        f"{quote_identifier(original)} AS {quote_identifier(name)}"
        for name, original in names.items()
    )
    event_name = next(name for name in names if name.lower() == "event_name")
    matches = {m.column: meter_sql(m, plan.columns) for m in plan.meters}
    events = f"(SELECT {renamed} FROM ({statement}))"
    if plan.stay is None:
        selected = [quote_identifier(name) for name in plan.keep]
        selected += [f"{sql} AS {quote_identifier(column)}" for column, sql in matches.items()]
        selected += [
            f"{rate_sql(rate, event_name, matches[rate.meter_column], plan.columns)} "
            f"AS {quote_identifier(rate.column)}"
            for rate in plan.rates
        ]
        return f"SELECT {', '.join(selected)} FROM {events} AS __events"
    stay = plan.stay
    # A row rejected here leaves with the required fields, its reason and its detail only.
    reason, detail = quote_identifier(REASON_COLUMN), quote_identifier(DETAIL_COLUMN)
    required = set(stay.columns.values())

    def unless_rejected(sql: str) -> str:
        return f"IFF({reason} IS NULL, {sql}, NULL)"

    selected = [
        quote_identifier(name)
        if name in required
        else f"{unless_rejected(quote_identifier(name))} AS {quote_identifier(name)}"
        for name in plan.keep
    ]
    selected += [
        f"{unless_rejected(sql)} AS {quote_identifier(column)}" for column, sql in matches.items()
    ]
    selected += [
        f"{unless_rejected(rate_sql(rate, event_name, matches[rate.meter_column], plan.columns))}"
        f" AS {quote_identifier(rate.column)}"
        for rate in plan.rates
    ]
    why, what = rejection_sql(stay, customers)
    events = f"(SELECT *, {why} AS {reason}, {what} AS {detail} FROM {events})"
    matched = " OR ".join(
        f"({quote_identifier(stay.columns['event_name'])} = {quote_string(m.event_name)} "
        f"AND {matches[m.column]})"
        for m in plan.meters
    )
    candidate = f"{accepted_sql(stay, customers)} AND NOT ({matched or 'FALSE'})"
    if not stay.keep_back:
        candidate = "FALSE"
    event_id = quote_identifier(stay.columns["event_id"])
    customer = quote_identifier(stay.columns["customer_id"])
    ts = quote_identifier(stay.columns["timestamp"])
    # Rows numbered in one order (SEQ8 alone may leave gaps), which the result keeps.
    numbered = (
        f"SELECT *, ROW_NUMBER() OVER (ORDER BY __seq) AS {quote_identifier(ROW_COLUMN)}, "
        f"COUNT(*) OVER (PARTITION BY {event_id}) AS __copies "
        f"FROM (SELECT *, SEQ8() AS __seq FROM {events})"
    )
    row = quote_identifier(ROW_COLUMN)
    flagged = (
        f"SELECT *, ROW_NUMBER() OVER (PARTITION BY {customer}, __candidate "
        f"ORDER BY {ts}, {row}) AS __first, ROW_NUMBER() OVER (PARTITION BY {customer}, "
        f"__candidate ORDER BY {ts} DESC, {row} DESC) AS __last "
        f"FROM (SELECT *, ({candidate}) AND __copies = 1 AS __candidate FROM ({numbered}))"
    )
    staying = "__candidate AND __first > 1 AND __last > 1"
    counted = (
        f"SELECT *, {staying} AS __stays, CAST(SUM(IFF({staying}, 1, 0)) OVER () AS BIGINT) "
        f"AS {quote_identifier(STAYED_COLUMN)} FROM ({flagged})"
    )
    selected += [row, quote_identifier(STAYED_COLUMN), reason, detail]
    return (
        f"SELECT {', '.join(selected)} FROM ({counted}) AS __events WHERE NOT __stays "
        f"ORDER BY {row}"
    )


# The supported time range (`limits.TIMESTAMP_MIN` / `TIMESTAMP_END`) less one day at
# each end: a row near an end leaves and is checked locally.
_CERTAIN_FROM = "1900-01-02 00:00:00"
_CERTAIN_UNTIL = "2199-12-31 00:00:00"


def rejection_sql(stay: StayRule, customers: str | None) -> tuple[str, str]:
    """The reason and detail of the rows rejected in the warehouse, as `events.ingest` words
    them (null for the others): `missing_field` always (the first reason a row of a table can
    have), `unknown_customer` when no field is missing and the time is certainly in range (else
    `bad_timestamp`, checked locally, could come first)."""
    blanks = []
    for field in ("event_id", "customer_id", "event_name", "timestamp"):
        column = quote_identifier(stay.columns[field])
        blank = f"{column} IS NULL"
        if stay.kinds[field] == "text":  # null, or nothing but spaces (DuckDB's trim)
            blank = f"({blank} OR LTRIM({column}, ' ') = '')"
        blanks.append((field, blank))
    missing = " OR ".join(blank for _, blank in blanks)
    # ', a, b' less its leading separator
    named = " || ".join(f"IFF({blank}, {quote_string(', ' + f)}, '')" for f, blank in blanks)
    cases = [(f"({missing})", "'missing_field'", f"'missing ' || SUBSTR({named}, 3)")]
    if stay.customers is not None and customers is not None:
        customer = f"CAST({quote_identifier(stay.columns['customer_id'])} AS VARCHAR)"
        cases.append(
            (
                f"{_in_time_sql(stay)} AND {customer} NOT IN (SELECT customer_id FROM {customers})",
                "'unknown_customer'",
                f"'customer ' || {customer} || ' is not in the customer list'",
            )
        )
    reason = "CASE " + " ".join(f"WHEN {c} THEN {r}" for c, r, _ in cases) + " END"
    detail = "CASE " + " ".join(f"WHEN {c} THEN {d}" for c, _, d in cases) + " END"
    return reason, detail


def _in_time_sql(stay: StayRule) -> str:
    column = quote_identifier(stay.columns["timestamp"])
    return (
        f"({column} >= {quote_string(_CERTAIN_FROM)}::TIMESTAMP_NTZ AND "
        f"{column} < {quote_string(_CERTAIN_UNTIL)}::TIMESTAMP_NTZ)"
    )


def accepted_sql(stay: StayRule, customers: str | None) -> str:
    """A condition true only for rows `events.ingest` accepts whatever the other rows are (no
    missing field, a time in range, a known customer; duplicate ids are the caller's)."""
    tests = []
    for field, kind in stay.kinds.items():
        column = quote_identifier(stay.columns[field])
        if kind == "text":
            blank = f"{column} = '' OR STARTSWITH({column}, ' ')"
            tests.append(f"{column} IS NOT NULL AND NOT ({blank})")
        elif kind == "integer":
            tests.append(f"{column} IS NOT NULL")
        else:
            tests.append(_in_time_sql(stay))
    if stay.customers is not None:
        if customers is None:
            return "FALSE"
        customer = quote_identifier(stay.columns["customer_id"])
        tests.append(f"CAST({customer} AS VARCHAR) IN (SELECT customer_id FROM {customers})")
    return "(" + " AND ".join(f"({t})" for t in tests) + ")"


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
