"""Target tables of the Snowflake export (SPEC §7): names, columns, Snowflake types and keys.

A `TableSpec` is a table definition; `spec.bind(frame)` gives the generic `ExportTable` the load
job (`connectors.snowflake.export`) takes: a name, typed columns, a key, the rows (a pyarrow Table
or a Polars DataFrame) and, for incremental tables, a watermark column. The load job knows nothing
of catalogs or ledgers: any source that produces `ExportTable`s can be exported.

Amounts are `NUMBER(38, 12)` (the catalog store's scale; ledger amounts have the currency's
precision, at most 12 places), written to Parquet as decimal128 so they land as NUMBER — never
FLOAT. Timestamps are `TIMESTAMP_NTZ(6)` holding UTC. The tables are documented in
docs/snowflake-export.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from pricing_lab import outputs
from pricing_lab.errors import Problem, ValidationError
from pricing_lab.outputs import OutputFile

TypeKind = Literal["NUMBER", "VARCHAR", "BOOLEAN", "TIMESTAMP_NTZ"]
AMOUNT_SCALE = 12
NUMBER_PRECISION = 38


@dataclass(frozen=True, slots=True, kw_only=True)
class SnowflakeType:
    """A column type of the export: NUMBER(38, scale), VARCHAR, BOOLEAN or TIMESTAMP_NTZ(6)."""

    kind: TypeKind
    scale: int = 0

    @property
    def sql(self) -> str:
        """The type as written in DDL, e.g. `NUMBER(38, 12)`."""
        if self.kind == "NUMBER":
            return f"NUMBER({NUMBER_PRECISION}, {self.scale})"
        if self.kind == "TIMESTAMP_NTZ":
            return "TIMESTAMP_NTZ(6)"
        return self.kind

    @property
    def arrow(self) -> pa.DataType:
        """The Parquet/Arrow type the column is written as (decimal128 for every NUMBER)."""
        if self.kind == "NUMBER":
            return pa.decimal128(NUMBER_PRECISION, self.scale)
        if self.kind == "TIMESTAMP_NTZ":
            return pa.timestamp("us")
        if self.kind == "BOOLEAN":
            return pa.bool_()
        return pa.string()

    def same_as(self, data_type: str, scale: int | None) -> bool:
        """Whether a column Snowflake describes (INFORMATION_SCHEMA.COLUMNS) has this type."""
        described = data_type.upper()
        if self.kind == "NUMBER":
            return described in {"NUMBER", "DECIMAL", "NUMERIC"} and (scale or 0) == self.scale
        if self.kind == "VARCHAR":
            return described in {"TEXT", "VARCHAR", "STRING"}
        if self.kind == "TIMESTAMP_NTZ":
            return described in {"TIMESTAMP_NTZ", "TIMESTAMP", "DATETIME"}
        return described == self.kind


INTEGER = SnowflakeType(kind="NUMBER", scale=0)
AMOUNT = SnowflakeType(kind="NUMBER", scale=AMOUNT_SCALE)
VARCHAR = SnowflakeType(kind="VARCHAR")
BOOLEAN = SnowflakeType(kind="BOOLEAN")
TIMESTAMP = SnowflakeType(kind="TIMESTAMP_NTZ")


@dataclass(frozen=True, slots=True, kw_only=True)
class Column:
    """One column of a target table. `name` is lower case here and upper case in Snowflake."""

    name: str
    type: SnowflakeType
    description: str = ""

    @property
    def sql_name(self) -> str:
        return self.name.upper()


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportTable:
    """One table to export: its definition and its rows.

    `key` names the columns a row is matched on in MERGE (unique and not null in `frame`).
    `incremental` names a watermark column: only rows above the last successful export's
    watermark move (per value of the `partition` columns, when given); None exports the whole
    frame and relies on MERGE to change only what differs.
    """

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    frame: Any  # pa.Table | pl.DataFrame
    incremental: str | None = None
    partition: tuple[str, ...] = ()
    description: str = ""

    @property
    def sql_name(self) -> str:
        return self.name.upper()

    @property
    def staging_name(self) -> str:
        return f"{self.sql_name}__STAGING"

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    def signature(self) -> str:
        """A text that changes whenever the table's definition changes (part of content hashes)."""
        parts = [self.name, ",".join(self.key), self.incremental or "", ",".join(self.partition)]
        parts += [f"{c.name}:{c.type.sql}" for c in self.columns]
        return "|".join(parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class TableSpec:
    """A target table definition without rows; `bind(frame)` makes the `ExportTable`."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    incremental: str | None = None
    partition: tuple[str, ...] = ()
    description: str = ""

    def bind(self, frame: Any) -> ExportTable:
        return ExportTable(
            name=self.name,
            columns=self.columns,
            key=self.key,
            frame=frame,
            incremental=self.incremental,
            partition=self.partition,
            description=self.description,
        )


def _cols(
    *columns: tuple[str, SnowflakeType] | tuple[str, SnowflakeType, str],
) -> tuple[Column, ...]:
    return tuple(
        Column(name=c[0], type=c[1], description=c[2] if len(c) > 2 else "") for c in columns
    )


_VERSIONED = (("version", INTEGER), ("published_at", TIMESTAMP))
_PRICE = (("price_amount", AMOUNT), ("price_cadence", VARCHAR), ("price_currency", VARCHAR))

FEATURES = TableSpec(
    name="features",
    description="Every version of every feature.",
    key=("feature_id", "version"),
    columns=_cols(
        ("feature_id", VARCHAR),
        *_VERSIONED,
        ("status", VARCHAR, "current status of the feature (active or archived)"),
        ("name", VARCHAR),
        ("description", VARCHAR),
        ("type", VARCHAR),
        ("metadata", VARCHAR, "JSON object of strings"),
        ("unit_singular", VARCHAR),
        ("unit_plural", VARCHAR),
        ("display_unit_singular", VARCHAR),
        ("display_unit_plural", VARCHAR),
        ("display_unit_factor", AMOUNT),
        ("meter_source", VARCHAR),
        ("meter_event_name", VARCHAR),
        ("meter_aggregation", VARCHAR),
        ("meter_dimension", VARCHAR),
        ("meter_filters", VARCHAR, "JSON list of filters"),
    ),
)
FEATURE_COSTS = TableSpec(
    name="feature_costs",
    description=(
        "Cost to serve of each feature version (docs/margin.md): its dated cost formulas, in order."
    ),
    key=("feature_id", "version", "position"),
    columns=_cols(
        ("feature_id", VARCHAR),
        ("version", INTEGER),
        ("position", INTEGER),
        ("valid_from", TIMESTAMP, "in force from (UTC); null: from the start"),
        ("formula", VARCHAR, "money per event, in the formula language"),
    ),
)
FEATURE_GROUPS = TableSpec(
    name="feature_groups",
    description="Every version of every feature group.",
    key=("group_id", "version"),
    columns=_cols(
        ("group_id", VARCHAR),
        *_VERSIONED,
        ("status", VARCHAR),
        ("name", VARCHAR),
        ("description", VARCHAR),
    ),
)
FEATURE_GROUP_MEMBERS = TableSpec(
    name="feature_group_members",
    description="The features of each feature group version, in order.",
    key=("group_id", "version", "position"),
    columns=_cols(
        ("group_id", VARCHAR), ("version", INTEGER), ("position", INTEGER), ("feature_id", VARCHAR)
    ),
)
PLANS = TableSpec(
    name="plans",
    description="Every version of every plan.",
    key=("plan_id", "version"),
    columns=_cols(
        ("plan_id", VARCHAR),
        *_VERSIONED,
        ("status", VARCHAR),
        ("name", VARCHAR),
        ("description", VARCHAR),
        *_PRICE,
    ),
)
ADDONS = TableSpec(
    name="addons",
    description="Every version of every add-on.",
    key=("addon_id", "version"),
    columns=_cols(
        ("addon_id", VARCHAR),
        *_VERSIONED,
        ("status", VARCHAR),
        ("name", VARCHAR),
        ("description", VARCHAR),
        *_PRICE,
    ),
)
ENTITLEMENTS = TableSpec(
    name="entitlements",
    description="Entitlements of each plan / add-on version, in order.",
    key=("owner_kind", "owner_id", "version", "position"),
    columns=_cols(
        ("owner_kind", VARCHAR, "plan or addon"),
        ("owner_id", VARCHAR),
        ("version", INTEGER),
        ("position", INTEGER),
        ("kind", VARCHAR),
        ("feature_id", VARCHAR),
        ("group_id", VARCHAR),
        ("value", AMOUNT),
        ("usage_limit", AMOUNT),
        ("period", VARCHAR),
        ("currency_id", VARCHAR),
        ("amount", AMOUNT),
        ("cadence", VARCHAR),
        ("rollover_max_amount", AMOUNT, "credit entitlements: rollover cap in credits"),
        ("rollover_max_percent", AMOUNT, "credit entitlements: rollover cap in % of amount"),
    ),
)
CREDIT_CURRENCIES = TableSpec(
    name="credit_currencies",
    description="Every version of every credit currency.",
    key=("currency_id", "version"),
    columns=_cols(
        ("currency_id", VARCHAR),
        *_VERSIONED,
        ("name", VARCHAR),
        ("unit_price", AMOUNT),
        ("price_currency", VARCHAR),
        ("precision", INTEGER),
        ("rounding", VARCHAR),
    ),
)
CREDIT_RATES = TableSpec(
    name="credit_rates",
    description="Credit rates of each plan / add-on version and of the default rate sets.",
    key=("owner_kind", "owner_id", "version", "position"),
    columns=_cols(
        ("owner_kind", VARCHAR, "plan, addon or default"),
        ("owner_id", VARCHAR),
        ("version", INTEGER),
        ("position", INTEGER),
        ("feature_id", VARCHAR),
        ("mode", VARCHAR),
        ("per_unit", AMOUNT),
        ("formula", VARCHAR),
        ("currency_id", VARCHAR),
    ),
)


def snowflake_type(dtype: Any) -> SnowflakeType:
    """The export's column type for a Polars type that `pricing_lab.outputs` declares: the one
    type map between the project's files and Snowflake (decimals are amounts, never floats)."""
    kind = dtype if isinstance(dtype, type) else type(dtype)
    if issubclass(kind, pl.Decimal):
        return AMOUNT
    if issubclass(kind, pl.Boolean):
        return BOOLEAN
    if kind in (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64):
        return INTEGER
    if issubclass(kind, pl.Datetime | pl.Date):
        return TIMESTAMP
    if issubclass(kind, pl.String):
        return VARCHAR
    raise TypeError(f"no exact Snowflake column type for {dtype} (floats are never exported)")


def result_spec(output: OutputFile) -> TableSpec:
    """The target table of one replay output file: its columns (mapped by `snowflake_type`)
    after `replay_id` and `scenario`, keyed on those two and the output's own key."""
    columns = [Column(name="replay_id", type=VARCHAR, description="results folder or caller's id")]
    columns.append(Column(name="scenario", type=VARCHAR))
    if output.row_number is not None:
        columns.append(
            Column(name=output.row_number, type=INTEGER, description="1, 2, … in file order")
        )
    columns += [
        Column(name=name, type=snowflake_type(dtype))
        for name, dtype in output.columns.items()
        if name != "scenario"
    ]
    own_key = output.key or ((output.row_number,) if output.row_number else ())
    return TableSpec(
        name=output.name,
        description=output.description,
        key=("replay_id", "scenario", *own_key),
        columns=tuple(columns),
        incremental=output.incremental,
        partition=("replay_id", "scenario") if output.incremental else (),
    )


# The tables of a replay's output files, one per `pricing_lab.outputs.REPLAY_FILES` entry.
OUTPUT_SPECS: dict[str, TableSpec] = {o.name: result_spec(o) for o in outputs.REPLAY_FILES}
GRANTS = OUTPUT_SPECS[outputs.GRANTS.name]
LEDGER_ENTRIES = OUTPUT_SPECS[outputs.LEDGER.name]
REPLAY_SUMMARIES = TableSpec(
    name="replay_summaries",
    description="Replay summary figures in long form: one row per (level, id, currency, metric).",
    key=("replay_id", "scenario", "level", "level_id", "currency_id", "metric"),
    columns=_cols(
        ("replay_id", VARCHAR),
        ("scenario", VARCHAR),
        ("level", VARCHAR, "total, feature, plan or customer"),
        ("level_id", VARCHAR, "the feature / plan / customer id ('' for total)"),
        ("currency_id", VARCHAR, "'' when the metric has no currency"),
        ("metric", VARCHAR, "e.g. consumed, breakage, credit_revenue"),
        ("value", AMOUNT),
    ),
)
SCENARIO_COMPARISONS = TableSpec(
    name="scenario_comparisons",
    description="What changes between a base and another scenario, per customer and feature.",
    key=("comparison_id", "scenario", "customer_id", "feature_id", "currency_id", "metric"),
    columns=_cols(
        ("comparison_id", VARCHAR),
        ("base_scenario", VARCHAR),
        ("scenario", VARCHAR),
        ("customer_id", VARCHAR, "'' for all customers"),
        ("feature_id", VARCHAR, "'' for all features"),
        ("currency_id", VARCHAR, "'' when the metric has no currency"),
        ("metric", VARCHAR),
        ("base_value", AMOUNT),
        ("scenario_value", AMOUNT),
        ("delta", AMOUNT),
        ("base_time", TIMESTAMP, "for time metrics (credits run out)"),
        ("scenario_time", TIMESTAMP),
    ),
)

CATALOG_SPECS: tuple[TableSpec, ...] = (
    FEATURES,
    FEATURE_COSTS,
    FEATURE_GROUPS,
    FEATURE_GROUP_MEMBERS,
    PLANS,
    ADDONS,
    ENTITLEMENTS,
    CREDIT_CURRENCIES,
    CREDIT_RATES,
)
RESULT_SPECS: tuple[TableSpec, ...] = (
    *OUTPUT_SPECS.values(),
    REPLAY_SUMMARIES,
    SCENARIO_COMPARISONS,
)
TABLE_SPECS: dict[str, TableSpec] = {s.name: s for s in (*CATALOG_SPECS, *RESULT_SPECS)}

# Bookkeeping tables the load job owns (created in the target schema, documented in the docs).
EXPORT_RUNS = "EXPORT_RUNS"
EXPORT_RUN_TABLES = "EXPORT_RUN_TABLES"
EXPORT_LOCK = "EXPORT_LOCK"
BOOKKEEPING_DDL: dict[str, str] = {
    EXPORT_RUNS: (
        "RUN_ID VARCHAR, RUN_SEQ NUMBER(38, 0), PREVIOUS_RUN_ID VARCHAR, "
        "STARTED_AT TIMESTAMP_NTZ(6), FINISHED_AT TIMESTAMP_NTZ(6), STATUS VARCHAR, "
        "TABLES VARCHAR, ROWS_EXPORTED NUMBER(38, 0), ROWS_INSERTED NUMBER(38, 0), "
        "ROWS_UPDATED NUMBER(38, 0), BYTES NUMBER(38, 0), HOST VARCHAR"
    ),
    EXPORT_RUN_TABLES: (
        "RUN_ID VARCHAR, TABLE_NAME VARCHAR, CONTENT_HASH VARCHAR, ROWS_EXPORTED NUMBER(38, 0), "
        "ROWS_INSERTED NUMBER(38, 0), ROWS_UPDATED NUMBER(38, 0), BYTES NUMBER(38, 0), "
        "FILES NUMBER(38, 0), COLUMNS_ADDED VARCHAR, WATERMARK VARCHAR"
    ),
    EXPORT_LOCK: (
        "LOCK_NAME VARCHAR, HOLDER VARCHAR, HOLDER_INFO VARCHAR, "
        "ACQUIRED_AT TIMESTAMP_NTZ(6), EXPIRES_AT TIMESTAMP_NTZ(6)"
    ),
}


def as_arrow(frame: Any) -> pa.Table:
    """A pyarrow Table from a pyarrow Table or a Polars DataFrame."""
    if isinstance(frame, pa.Table):
        return frame
    to_arrow = getattr(frame, "to_arrow", None)
    if to_arrow is None:
        raise TypeError(
            "an export frame must be a pyarrow Table or a Polars DataFrame, "
            f"not {type(frame).__name__}"
        )
    result = to_arrow()
    if not isinstance(result, pa.Table):  # pragma: no cover - defensive
        raise TypeError("to_arrow() did not return a pyarrow Table")
    return result


def _convert_column(
    values: pa.ChunkedArray, column: Column, table: str, problems: list[Problem]
) -> pa.ChunkedArray | None:
    target = column.type.arrow
    source = values.type
    path = f"{table}.{column.name}"
    if pa.types.is_dictionary(source):
        values = values.cast(source.value_type)
        source = values.type
    if column.type.kind == "NUMBER":
        if pa.types.is_floating(source):
            problems.append(
                Problem(
                    path=path,
                    message=f"is {source}: amounts must be decimal or integer, never float",
                )
            )
            return None
        if not (
            pa.types.is_decimal(source)
            or pa.types.is_integer(source)
            or pa.types.is_string(source)
            or pa.types.is_large_string(source)
            or pa.types.is_null(source)
        ):
            problems.append(Problem(path=path, message=f"is {source}, expected a number"))
            return None
        try:
            return values.cast(target, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            problems.append(
                Problem(
                    path=path,
                    message=f"does not fit {column.type.sql} exactly ({exc}); "
                    "values are never rounded on export",
                )
            )
            return None
    if column.type.kind == "TIMESTAMP_NTZ":
        if pa.types.is_timestamp(source) and source.tz is not None:
            values = pc.cast(values, pa.timestamp(source.unit, tz="UTC")).cast(
                pa.timestamp(source.unit)
            )
        elif not (
            pa.types.is_timestamp(source) or pa.types.is_null(source) or pa.types.is_date(source)
        ):
            problems.append(Problem(path=path, message=f"is {source}, expected a timestamp"))
            return None
        try:
            return values.cast(target, safe=True)
        except pa.ArrowInvalid as exc:
            problems.append(Problem(path=path, message=f"cannot be written as microseconds: {exc}"))
            return None
    try:
        return values.cast(target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        problems.append(
            Problem(path=path, message=f"is {source}, expected {column.type.sql} ({exc})")
        )
        return None


def to_arrow(table: ExportTable) -> pa.Table:
    """The rows of `table` in its column order and Arrow types, sorted by key.

    Column names match case-insensitively; a column the frame lacks is an error for a key column
    and NULL otherwise. Raises `ValidationError` listing every problem: missing key columns,
    floats where amounts are expected, values that do not fit NUMBER(38, s) exactly, null or
    duplicate keys.
    """
    source = as_arrow(table.frame)
    by_name = {name.lower(): index for index, name in enumerate(source.column_names)}
    problems: list[Problem] = []
    arrays: list[pa.ChunkedArray] = []
    for column in table.columns:
        index = by_name.get(column.name.lower())
        if index is None:
            if column.name in table.key or column.name == table.incremental:
                problems.append(
                    Problem(path=f"{table.name}.{column.name}", message="column is missing")
                )
                continue
            arrays.append(pa.chunked_array([pa.nulls(source.num_rows, column.type.arrow)]))
            continue
        converted = _convert_column(source.column(index), column, table.name, problems)
        if converted is not None:
            arrays.append(converted)
    if problems:
        raise ValidationError(problems, source=f"export table {table.name}")
    result = pa.Table.from_arrays(arrays, names=[c.sql_name for c in table.columns])
    key_names = [table.column(k).sql_name for k in table.key]
    for name in key_names:
        nulls = result.column(name).null_count
        if nulls:
            problems.append(
                Problem(path=f"{table.name}.{name.lower()}", message=f"{nulls} null key value(s)")
            )
    if problems:
        raise ValidationError(problems, source=f"export table {table.name}")
    if result.num_rows:
        result = result.sort_by([(name, "ascending") for name in key_names])
        duplicates = result.group_by(key_names).aggregate([([], "count_all")])
        repeated = duplicates.filter(pc.greater(duplicates.column("count_all"), 1))
        if repeated.num_rows:
            first = {k: repeated.column(k)[0].as_py() for k in key_names}
            raise ValidationError(
                [
                    Problem(
                        path=f"{table.name}",
                        message=f"{repeated.num_rows} key value(s) appear more than once "
                        f"(key {', '.join(table.key)}), e.g. {first}",
                    )
                ],
                source=f"export table {table.name}",
            )
    return result.combine_chunks()


def content_digest(table: ExportTable, parquet_bytes: Iterable[bytes]) -> str:
    """SHA-256 of a table's definition and the Parquet files written for it."""
    digest = hashlib.sha256(table.signature().encode())
    for chunk in parquet_bytes:
        digest.update(len(chunk).to_bytes(8, "big"))
        digest.update(chunk)
    return digest.hexdigest()


def specs_by_name(names: Sequence[str] | None) -> list[TableSpec]:
    """The specs named (all of them for None); raises `ValidationError` for unknown names."""
    if names is None:
        return list(TABLE_SPECS.values())
    unknown = [n for n in names if n not in TABLE_SPECS]
    if unknown:
        raise ValidationError(
            [
                Problem(
                    path="--tables",
                    message=f"unknown table {name!r}; known: {', '.join(TABLE_SPECS)}",
                )
                for name in unknown
            ]
        )
    return [TABLE_SPECS[n] for n in names]


def frame_columns(frame: pl.DataFrame | pa.Table) -> list[str]:
    """Column names of a Polars DataFrame or pyarrow Table."""
    return list(as_arrow(frame).column_names)


def describe_columns(columns: Sequence[Column]) -> Mapping[str, str]:
    """Column name → Snowflake DDL type, in order (for docs and dry-run output)."""
    return {c.sql_name: c.type.sql for c in columns}


__all__ = [
    "AMOUNT",
    "BOOLEAN",
    "CATALOG_SPECS",
    "INTEGER",
    "RESULT_SPECS",
    "TABLE_SPECS",
    "TIMESTAMP",
    "VARCHAR",
    "Column",
    "ExportTable",
    "SnowflakeType",
    "TableSpec",
    "content_digest",
    "specs_by_name",
    "to_arrow",
]
