"""Event meters (SPEC §2): match events to metered features, aggregate usage, display units.

`match_events` turns the events table (and reported usage) into `matched_usage` rows, one per
(event, matching feature), with the meter's per-event value as `quantity`:
1 for `count` and `count_unique`, the dimension's value for `sum`, `max`, `min` and `avg`.
`aggregate_usage` aggregates them per customer, feature and period with the meter's aggregation,
and converts to the display unit (billing quantities round **up** to a whole display unit).

All generated SQL quotes identifiers and renders values as escaped literals (strings with quotes
doubled, numbers validated as plain decimals), so catalog text can never inject SQL. Arithmetic is
exact: quantities are DECIMAL(38, 12); averages and display conversions use integer arithmetic
on 10⁻¹² units, never floating point.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_CEILING, Decimal, localcontext
from typing import Literal

import duckdb

from pricing_lab.catalog.model import Catalog, DisplayUnit, Feature, MeterFilter
from pricing_lab.errors import InputError
from pricing_lab.events.ingest import (
    QUANTITY_TYPE,
    REJECTION_ORDER,
    SOURCE_ROW_COLUMN,
    IngestReport,
    quote_ident,
    quote_literal,
)
from pricing_lab.formula.decimal_eval import NUMERIC_TEXT_PATTERN
from pricing_lab.money import normalized
from pricing_lab.timeutil import naive_utc

CalendarPeriod = Literal["day", "week", "month", "total"]
MATCHED_COLUMNS = (
    "event_id",
    "customer_id",
    "timestamp",
    "feature_id",
    "quantity",
    "unique_value",
)
SCALE = 12
_UNIT = 10**SCALE
_NUMERIC_TYPE = re.compile(
    r"(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT|"
    r"FLOAT|DOUBLE|DECIMAL.*|\"NULL\")\Z"  # "NULL": a column without values (Arrow's null type)
)
_PLAIN_NUMBER = re.compile(r"-?\d+(\.\d+)?\Z")
_EMPTY_MATCHED = (
    "SELECT CAST(NULL AS VARCHAR) AS event_id, CAST(NULL AS VARCHAR) AS customer_id, "
    f"CAST(NULL AS TIMESTAMP) AS timestamp, CAST(NULL AS VARCHAR) AS feature_id, "
    f"CAST(NULL AS {QUANTITY_TYPE}) AS quantity, CAST(NULL AS VARCHAR) AS unique_value "
    "WHERE FALSE"
)


def metered_features(catalog: Catalog) -> tuple[Feature, ...]:
    """The catalog's features that have a meter, in feature id order (archived ones included)."""
    return tuple(sorted((f for f in catalog.features if f.meter is not None), key=lambda f: f.id))


def billable_quantity(usage: Decimal, unit: DisplayUnit | None) -> Decimal:
    """Usage in the display unit for billing: `ceil(usage / factor)` (0.02 GB → 1 GB)."""
    if unit is None:
        return usage
    with localcontext() as ctx:
        ctx.prec = 80
        return (usage / unit.factor).to_integral_value(rounding=ROUND_CEILING)


# --------------------------------------------------------------------------------------------
# Matching
# --------------------------------------------------------------------------------------------


def match_events(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    *,
    events: str = "events",
    reported: str | None = "reported_usage",
    table: str | None = None,
) -> duckdb.DuckDBPyRelation:
    """Rows `(event_id, customer_id, timestamp, feature_id, quantity, unique_value)`.

    One row per event and metered feature whose event name and filters it satisfies (an event can
    match several features). `quantity` (DECIMAL(38, 12)) is 1 for count / count_unique meters and
    the dimension's value otherwise (NULL when the event lacks it); `unique_value` is the
    dimension's value as text for count_unique. Reported meters read `reported` rows (their
    `event_id` is `reported:<row>`); a missing `reported` table means no reported usage.
    `table`: also store the rows in this table (replaced). Raises `InputError` when a meter
    aggregates a dimension that is not numeric.
    """
    sql = matched_usage_sql(con, catalog, events=events, reported=reported)
    if table is not None:
        con.execute(f"CREATE OR REPLACE TABLE {quote_ident(table)} AS {sql}")
        return con.table(table)
    return con.sql(sql)


def matched_usage_sql(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    *,
    events: str = "events",
    reported: str | None = "reported_usage",
) -> str:
    """The SQL query behind `match_events` (for embedding in larger queries)."""
    features = metered_features(catalog)
    parts: list[str] = []
    event_features = [f for f in features if f.meter and f.meter.source == "events"]
    reported_features = [f for f in features if f.meter and f.meter.source == "reported"]
    if event_features:
        columns = _columns(con, events)
        if columns is None:
            raise InputError(f"no events table {events!r}: ingest events first")
        for feature in event_features:
            parts.append(_event_feature_sql(feature, events, columns))
    if reported_features and reported is not None:
        columns = _columns(con, reported)
        if columns is not None:
            for feature in reported_features:
                parts.append(_reported_feature_sql(feature, reported, columns))
    if not parts:
        return _EMPTY_MATCHED
    return " UNION ALL ".join(parts)


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, tuple[str, str]] | None:
    """Lower-case column name → (name, type), or None when the table does not exist."""
    try:
        rows = con.execute(f"DESCRIBE {quote_ident(table)}").fetchall()
    except duckdb.CatalogException:
        return None
    return {str(r[0]).lower(): (str(r[0]), str(r[1])) for r in rows}


@dataclass(frozen=True, slots=True, kw_only=True)
class EventMeter:
    """The SQL of one events-sourced meter over the events table's own columns.

    `condition` holds for the events the meter matches; it is NULL (no match, as in a WHERE) for
    an event without an event name. `quantity` is the meter's per-event value, DECIMAL(38, 12)
    (the `quantity` column of `match_events`); `out_of_range` holds where the dimension has a
    value beyond that type (10^26), for which `quantity` is NULL.
    """

    feature_id: str
    condition: str
    quantity: str
    out_of_range: str = "FALSE"


def event_meters(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, *, events: str = "events"
) -> tuple[EventMeter, ...]:
    """The catalog's events-sourced meters as SQL over table `events`, in feature id order.

    The same conditions and quantities `match_events` uses, for queries that read the events
    table directly. Raises `InputError` when the table is missing (and there are such meters) or
    a meter aggregates a dimension that is not numeric.
    """
    features = [f for f in metered_features(catalog) if f.meter and f.meter.source == "events"]
    if not features:
        return ()
    columns = _columns(con, events)
    if columns is None:
        raise InputError(f"no events table {events!r}: ingest events first")
    meters = []
    for feature in features:
        quantity, _unique = _per_event_value(feature, columns)
        meters.append(
            EventMeter(
                feature_id=feature.id,
                condition=_event_condition_sql(feature, columns),
                quantity=quantity,
                out_of_range=_out_of_range_sql(feature, columns),
            )
        )
    return tuple(meters)


def _event_condition_sql(feature: Feature, columns: Mapping[str, tuple[str, str]]) -> str:
    meter = feature.meter
    assert meter is not None
    conditions = [f"event_name = {quote_literal(meter.event_name or '')}"]
    conditions += [filter_sql(f, columns) for f in meter.filters]
    return " AND ".join(conditions)


def _event_feature_sql(
    feature: Feature, events: str, columns: Mapping[str, tuple[str, str]]
) -> str:
    quantity, unique = _per_event_value(feature, columns)
    return (
        "SELECT CAST(event_id AS VARCHAR) AS event_id, CAST(customer_id AS VARCHAR) AS "
        f"customer_id, CAST(timestamp AS TIMESTAMP) AS timestamp, "
        f"{quote_literal(feature.id)} AS feature_id, {quantity} AS quantity, "
        f"{unique} AS unique_value FROM {quote_ident(events)} "
        f"WHERE {_event_condition_sql(feature, columns)}"
    )


def _per_event_value(feature: Feature, columns: Mapping[str, tuple[str, str]]) -> tuple[str, str]:
    meter = feature.meter
    assert meter is not None
    one = f"CAST(1 AS {QUANTITY_TYPE})"
    if meter.aggregation == "count":
        return one, "CAST(NULL AS VARCHAR)"
    dimension = meter.dimension or ""
    found = columns.get(dimension.lower())
    if meter.aggregation == "count_unique":
        if found is None:
            return one, "CAST(NULL AS VARCHAR)"
        return one, f"CAST({quote_ident(found[0])} AS VARCHAR)"
    if found is None:
        return f"CAST(NULL AS {QUANTITY_TYPE})", "CAST(NULL AS VARCHAR)"
    return _number_sql(feature, *found), "CAST(NULL AS VARCHAR)"


def _number_sql(feature: Feature, name: str, typ: str) -> str:
    """A dimension as the meter's DECIMAL(38, 12) value: NULL where it is not a number in that
    range (text that is not a plain number, NaN, infinite, 10^26 or more); `_unusable_sql`
    tells such a value from a null one."""
    column = quote_ident(name)
    if typ in ("VARCHAR", "JSON"):  # a text column: one odd value made the whole column text
        numeric = f"regexp_full_match(trim({column}), {quote_literal(NUMERIC_TEXT_PATTERN)})"
        return f"TRY_CAST(CASE WHEN {numeric} THEN trim({column}) END AS {QUANTITY_TYPE})"
    if not _NUMERIC_TYPE.match(typ):
        assert feature.meter is not None
        raise InputError(
            f"feature {feature.id}: {feature.meter.aggregation} needs a numeric dimension, but "
            f"{name} is {typ}"
        )
    return f"TRY_CAST({column} AS {QUANTITY_TYPE})"


def _value_column(
    feature: Feature, columns: Mapping[str, tuple[str, str]]
) -> tuple[str, str] | None:
    meter = feature.meter
    assert meter is not None
    if meter.aggregation in ("count", "count_unique"):
        return None
    return columns.get((meter.dimension or "").lower())


def _out_of_range_sql(feature: Feature, columns: Mapping[str, tuple[str, str]]) -> str:
    """SQL: the event's meter value exists but is not a number in DECIMAL(38, 12)'s range."""
    found = _value_column(feature, columns)
    if found is None or _always_fits(found[1]):
        return "FALSE"
    return f"({quote_ident(found[0])} IS NOT NULL AND {_number_sql(feature, *found)} IS NULL)"


_FITTING_TYPES = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"}
    | {'"NULL"'}
)


def _always_fits(typ: str) -> bool:
    """Every value of the type is a number below 10^26 (the TRY_CAST cannot fail)."""
    if typ in _FITTING_TYPES:
        return True
    scale = re.fullmatch(r"DECIMAL\((\d+),\s*(\d+)\)", typ)
    return scale is not None and int(scale.group(1)) - int(scale.group(2)) <= 26


def reject_unusable_values(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, report: IngestReport
) -> IngestReport:
    """Move the events whose meter value is not a usable number to the rejected table.

    A `sum`, `max`, `min` or `avg` meter reads its dimension as DECIMAL(38, 12); an event it
    matches whose value is text that is not a number, NaN, infinite or 10^26 or more is rejected
    as `bad_value` (naming the feature and the value) instead of counting as no usage. Returns
    the report with the counts of its rejected table and the catalog's meters in
    `checked_meters`: meters the report says were checked are not checked again, so a second
    call (the commands check before `simulate`, which checks too) reads nothing. `timestamp` of
    these rows is the stored UTC time as text.
    """
    features = [
        f
        for f in metered_features(catalog)
        if f.meter is not None
        and f.meter.source == "events"
        and f.meter not in report.checked_meters
    ]
    if not features:
        return report
    columns = _columns(con, report.table)
    if columns is None:
        return report
    checks = []
    for feature in features:
        unusable = _out_of_range_sql(feature, columns)
        if unusable == "FALSE":
            continue
        found = _value_column(feature, columns)
        assert found is not None
        condition = f"(coalesce({_event_condition_sql(feature, columns)}, FALSE) AND {unusable})"
        detail = (
            f"{quote_literal(f'{feature.id}: {found[0]} is not a number below 10^26: ')} || "
            f"CAST({quote_ident(found[0])} AS VARCHAR)"
        )
        checks.append((condition, detail))
    meters = frozenset(f.meter for f in features if f.meter is not None)
    checked = replace(report, checked_meters=report.checked_meters | meters)
    if not checks:
        return checked
    events, rejected = quote_ident(report.table), quote_ident(report.rejected_table)
    bad = " OR ".join(c for c, _ in checks)
    found_rows = con.execute(f"SELECT count(*) FROM {events} WHERE {bad}").fetchall()[0][0]
    if found_rows:
        detail = (
            "concat_ws('; ', " + ", ".join(f"CASE WHEN {c} THEN {d} END" for c, d in checks) + ")"
        )
        row = f"{quote_ident(SOURCE_ROW_COLUMN)}" if SOURCE_ROW_COLUMN in columns else "NULL"
        con.execute(
            f"CREATE OR REPLACE TABLE {rejected} AS SELECT * FROM (SELECT * FROM {rejected} "
            f"UNION ALL SELECT CAST({row} AS BIGINT), event_id, customer_id, event_name, "
            "strftime(timestamp, '%Y-%m-%dT%H:%M:%S.%fZ'), 'bad_value', "
            f"{detail} FROM {events} WHERE {bad}) ORDER BY source_row"
        )
        con.execute(f"DELETE FROM {events} WHERE {bad}")
    # Counted from the rejected table: right even for a report older than an earlier check.
    counts = dict(con.execute(f"SELECT reason, count(*) FROM {rejected} GROUP BY ALL").fetchall())
    by_reason = {r: int(counts.pop(r)) for r in REJECTION_ORDER if r in counts}
    by_reason |= {str(r): int(n) for r, n in sorted(counts.items(), key=lambda c: str(c[0]))}
    total = sum(by_reason.values())
    return replace(
        checked,
        accepted=report.rows_read - total,
        rejected=total,
        rejected_by_reason=by_reason,
    )


def _reported_feature_sql(
    feature: Feature, reported: str, columns: Mapping[str, tuple[str, str]]
) -> str:
    meter = feature.meter
    assert meter is not None
    if meter.aggregation in ("count", "count_unique"):
        quantity = f"CAST(1 AS {QUANTITY_TYPE})"
    else:
        quantity = f"CAST(quantity AS {QUANTITY_TYPE})"
    unique = (
        "CAST(quantity AS VARCHAR)"
        if meter.aggregation == "count_unique"
        else "CAST(NULL AS VARCHAR)"
    )
    # The input row when ingestion stored it, else the row of the table.
    row = quote_ident(SOURCE_ROW_COLUMN) if SOURCE_ROW_COLUMN in columns else "rowid + 1"
    return (
        f"SELECT 'reported:' || CAST({row} AS VARCHAR) AS event_id, "
        "CAST(customer_id AS VARCHAR) AS customer_id, CAST(timestamp AS TIMESTAMP) AS timestamp, "
        f"{quote_literal(feature.id)} AS feature_id, {quantity} AS quantity, "
        f"{unique} AS unique_value FROM {quote_ident(reported)} "
        f"WHERE feature_id = {quote_literal(feature.id)}"
    )


# --------------------------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------------------------


def filter_sql(flt: MeterFilter, columns: Mapping[str, tuple[str, str]]) -> str:
    """A SQL condition (never NULL) for one meter filter over the events table's columns.

    Rules: a dimension the table lacks is null for every event. `not_equals` holds for a null
    dimension (null is not the value); every other operator but `is_null` fails on null. A
    numeric dimension compares numerically (a value that is not a number never equals it); a
    text dimension compares as text, except `gt/gte/lt/lte` with a number, which compare the
    dimension's numeric value (non-numeric text fails). `contains/starts_with/ends_with` look at
    the dimension as text, case-sensitively.
    """
    op = flt.operator
    found = columns.get(flt.dimension.lower())
    if found is None:
        return "TRUE" if op in ("is_null", "not_equals") else "FALSE"
    name, typ = found
    col = quote_ident(name)
    if op == "is_null":
        return f"({col} IS NULL)"
    if op == "is_not_null":
        return f"({col} IS NOT NULL)"
    numeric = bool(_NUMERIC_TYPE.match(typ))
    boolean = typ == "BOOLEAN"
    text = f"CAST({col} AS VARCHAR)"
    if op in ("contains", "starts_with", "ends_with"):
        func = {"contains": "contains", "starts_with": "starts_with", "ends_with": "suffix"}[op]
        return f"coalesce({func}({text}, {quote_literal(filter_text(flt.value))}), FALSE)"
    if op in ("equals", "not_equals", "in"):
        values = flt.value if isinstance(flt.value, tuple) else (flt.value,)
        if numeric:
            literals = [n for n in (_as_number(v) for v in values) if n is not None]
            target = col
        elif boolean:
            literals = [b for b in (_as_boolean(v) for v in values) if b is not None]
            target = col
        else:
            literals = [quote_literal(filter_text(v)) for v in values if v is not None]
            target = text
        if op == "not_equals":
            if not literals:
                return "TRUE"
            return f"({target} IS DISTINCT FROM {literals[0]})"
        if not literals:
            return "FALSE"
        if op == "equals":
            return f"coalesce({target} = {literals[0]}, FALSE)"
        return f"coalesce({target} IN ({', '.join(literals)}), FALSE)"
    symbol = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
    number = _as_number(flt.value)
    if numeric:
        if number is None:
            return "FALSE"
        return f"coalesce({col} {symbol} {number}, FALSE)"
    if isinstance(flt.value, Decimal | int | float) and number is not None:
        return f"coalesce(try_cast({text} AS DECIMAL(38, {SCALE})) {symbol} {number}, FALSE)"
    return f"coalesce({text} {symbol} {quote_literal(filter_text(flt.value))}, FALSE)"


def filter_text(value: object) -> str:
    """A filter value as the text a text column is compared with."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def filter_number(value: object) -> str | None:
    """A filter value as plain decimal text (`-12.5`), or None when it is not a number."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, Decimal | int | float):
        text = format(Decimal(str(value)), "f")
    else:
        text = str(value).strip()
    return text if _PLAIN_NUMBER.match(text) else None


def _as_number(value: object) -> str | None:
    """A validated plain decimal literal, or None when `value` is not a number."""
    text = filter_number(value)
    if text is None:
        return None
    return f"CAST({quote_literal(text)} AS DECIMAL(38, {min(SCALE, _scale(text))}))"


def _scale(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


def _as_boolean(value: object) -> str | None:
    text = filter_text(value).strip().lower()
    return {"true": "TRUE", "false": "FALSE"}.get(text)


# --------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------


def features_sql(catalog: Catalog) -> str:
    """A VALUES query of (feature_id, aggregation, display_unit, factor_num, factor_scale).

    The display factor is factor_num / factor_scale, both integers (factor_scale a power of 10).
    """
    rows = []
    for f in metered_features(catalog):
        assert f.meter is not None
        unit = f.display_unit
        if unit is not None:
            num, scale = _integer_ratio(unit.factor)
            rows.append(
                f"({quote_literal(f.id)}, {quote_literal(f.meter.aggregation)}, "
                f"{quote_literal(unit.plural)}, CAST({num} AS HUGEINT), "
                f"CAST({10**scale} AS HUGEINT))"
            )
        else:
            rows.append(
                f"({quote_literal(f.id)}, {quote_literal(f.meter.aggregation)}, "
                "CAST(NULL AS VARCHAR), CAST(NULL AS HUGEINT), CAST(NULL AS HUGEINT))"
            )
    if not rows:
        return (
            "SELECT CAST(NULL AS VARCHAR) AS feature_id, CAST(NULL AS VARCHAR) AS aggregation, "
            "CAST(NULL AS VARCHAR) AS display_unit, CAST(NULL AS HUGEINT) AS factor_num, "
            "CAST(NULL AS HUGEINT) AS factor_scale WHERE FALSE"
        )
    return (
        "SELECT * FROM (VALUES " + ", ".join(rows) + ") AS f(feature_id, aggregation, "
        "display_unit, factor_num, factor_scale)"
    )


def _integer_ratio(factor: Decimal) -> tuple[int, int]:
    """`factor` = num / 10**scale with integers (factor > 0)."""
    if factor <= 0:
        raise InputError(f"display unit factor must be > 0, not {factor}")
    _sign, digits, exponent = normalized(factor).as_tuple()
    num = int("".join(map(str, digits)))
    assert isinstance(exponent, int)
    if exponent >= 0:
        return num * 10**exponent, 0
    return num, -exponent


def units_sql(decimal_expr: str) -> str:
    """DECIMAL(38, 12) → exact HUGEINT count of 10⁻¹² units."""
    return (
        f"(CAST(floor({decimal_expr}) AS HUGEINT) * {_UNIT} + "
        f"CAST(({decimal_expr} - floor({decimal_expr})) * {_UNIT} AS HUGEINT))"
    )


def from_units_sql(units_expr: str) -> str:
    """HUGEINT count of 10⁻¹² units → exact DECIMAL(38, 12) (via its decimal text)."""
    return (
        f"CAST((CASE WHEN {units_expr} < 0 THEN '-' ELSE '' END) || "
        f"CAST(abs({units_expr}) // {_UNIT} AS VARCHAR) || '.' || "
        f"lpad(CAST(abs({units_expr}) % {_UNIT} AS VARCHAR), {SCALE}, '0') AS {QUANTITY_TYPE})"
    )


def _div_half_up(num: str, den: str) -> str:
    """Integer num / den (den > 0) rounded half away from zero."""
    return f"(sign({num}) * ((2 * abs({num}) + {den}) // (2 * {den})))"


def _div_ceil(num: str, den: str) -> str:
    """Integer ceil(num / den) for den > 0."""
    return f"(CASE WHEN {num} >= 0 THEN ({num} + {den} - 1) // {den} ELSE -((-{num}) // {den}) END)"


def aggregate_sql(matched_sql: str, features: str, keys: Sequence[str]) -> str:
    """Aggregate matched rows (with extra grouping columns `keys`) per the meter's aggregation.

    Output: keys…, customer_id, feature_id, events, usage, display_unit, display_usage,
    billable_usage. `usage` is in the meter's unit; `display_usage` = usage / factor (exact, 12
    places, half up); `billable_usage` = ceil(usage / factor), a whole display unit (equal to
    `usage` rounded up to a whole unit when the feature has no display unit).
    """
    key_list = "".join(f"m.{quote_ident(k)}, " for k in keys)
    key_out = "".join(f"{quote_ident(k)}, " for k in keys)
    total = units_sql("sum(m.quantity)")
    n = "count(m.quantity)"
    avg = f"CASE WHEN {n} = 0 THEN NULL ELSE {from_units_sql(_div_half_up(total, n))} END"
    usage = (
        "CASE f.aggregation "
        f"WHEN 'count' THEN CAST(count(*) AS {QUANTITY_TYPE}) "
        f"WHEN 'count_unique' THEN CAST(count(DISTINCT m.unique_value) AS {QUANTITY_TYPE}) "
        "WHEN 'sum' THEN sum(m.quantity) WHEN 'max' THEN max(m.quantity) "
        f"WHEN 'min' THEN min(m.quantity) WHEN 'avg' THEN {avg} END"
    )
    u = units_sql("usage")
    scaled = f"({u} * factor_scale)"
    den = f"(factor_num * {_UNIT})"
    display = (
        f"CASE WHEN factor_num IS NULL THEN usage ELSE "
        f"{from_units_sql(_div_half_up(scaled, 'factor_num'))} END"
    )
    billable = (
        f"CAST(CASE WHEN factor_num IS NULL THEN ceil(usage) ELSE {_div_ceil(scaled, den)} END "
        "AS DECIMAL(38, 0))"
    )
    return (
        f"SELECT {key_out}customer_id, feature_id, events, usage, display_unit, "
        f"CASE WHEN usage IS NULL THEN NULL ELSE {display} END AS display_usage, "
        f"CASE WHEN usage IS NULL THEN NULL ELSE {billable} END AS billable_usage FROM ("
        f"SELECT {key_list}m.customer_id, m.feature_id, count(*) AS events, "
        f"CAST({usage} AS {QUANTITY_TYPE}) AS usage, f.display_unit, f.factor_num, "
        f"f.factor_scale FROM ({matched_sql}) AS m JOIN ({features}) AS f USING (feature_id) "
        f"GROUP BY {key_list}m.customer_id, m.feature_id, f.aggregation, f.display_unit, "
        "f.factor_num, f.factor_scale)"
    )


def aggregate_usage(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    *,
    matched: duckdb.DuckDBPyRelation | str | None = None,
    period: CalendarPeriod = "month",
    start: datetime | None = None,
    end: datetime | None = None,
    events: str = "events",
    reported: str | None = "reported_usage",
) -> duckdb.DuckDBPyRelation:
    """Usage per customer, feature and UTC calendar period (`day`, ISO `week` from Monday,
    `month`, or `total`), aggregated with each meter's aggregation.

    `matched`: a `match_events` relation or table name (default: match `events` now). Only
    usage in `[start, end)` counts when given. Columns: period_start, period_end, customer_id,
    feature_id, events, usage, display_unit, display_usage, billable_usage (see `aggregate_sql`).
    """
    if matched is None:
        source = matched_usage_sql(con, catalog, events=events, reported=reported)
    elif isinstance(matched, str):
        source = f"SELECT * FROM {quote_ident(matched)}"
    else:
        view = "__pricing_lab_matched_view"
        matched.create_view(view, replace=True)
        source = f"SELECT * FROM {quote_ident(view)}"
    where = []
    if start is not None:
        where.append(f"timestamp >= {_timestamp_literal(start)}")
    if end is not None:
        where.append(f"timestamp < {_timestamp_literal(end)}")
    condition = f" WHERE {' AND '.join(where)}" if where else ""
    if period == "total":
        first = _timestamp_literal(start) if start is not None else "CAST(NULL AS TIMESTAMP)"
        last = _timestamp_literal(end) if end is not None else "CAST(NULL AS TIMESTAMP)"
        bounds = f"{first} AS period_start, {last} AS period_end"
    else:
        step = {"day": "INTERVAL 1 DAY", "week": "INTERVAL 7 DAY", "month": "INTERVAL 1 MONTH"}
        if period not in step:
            raise InputError(f"unknown period {period!r}: use day, week, month or total")
        trunc = f"date_trunc('{period}', timestamp)"
        bounds = (
            f"CAST({trunc} AS TIMESTAMP) AS period_start, "
            f"CAST({trunc} + {step[period]} AS TIMESTAMP) AS period_end"
        )
    periods = f"SELECT *, {bounds} FROM ({source}){condition}"
    sql = aggregate_sql(periods, features_sql(catalog), ["period_start", "period_end"])
    return con.sql(f"{sql} ORDER BY customer_id, feature_id, period_start")


def _timestamp_literal(value: datetime) -> str:
    return f"CAST({quote_literal(naive_utc(value).isoformat(sep=' '))} AS TIMESTAMP)"
