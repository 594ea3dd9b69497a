"""Usage event ingestion (SPEC §4): read, type, validate and store events in DuckDB, losing nothing.

Every input row ends up either in the events table or in the rejected table with a reason; the
counts are returned in an `IngestReport` and checked. All work is DuckDB SQL: rows never become
Python objects, so files of tens of millions of rows load at close to DuckDB's own speed.

Rules where the spec is silent are listed in docs/events.md; the main ones:
- required columns are found case-insensitively (DuckDB identifiers are case-insensitive);
- ids are text; integer id columns are converted to their decimal text;
- one reason per rejected row, the first that applies in `REJECTION_ORDER`;
- duplicates are looked for among rows that pass every other check: the first such row wins;
- the rows of a warehouse source that it kept back, certainly accepted and matching no meter
  (`events.plugins.StayRule`), count as read and accepted; the rows it sent carry their place
  among all rows (`plugins.ROW_COLUMN`), reported as `source_row`.
"""

from __future__ import annotations

import codecs
import csv
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import duckdb

from pricing_lab.errors import InputError, InvariantViolation
from pricing_lab.events.plugins import DETAIL_COLUMN, REASON_COLUMN, ROW_COLUMN, STAYED_COLUMN
from pricing_lab.limits import TIMESTAMP_END, TIMESTAMP_MIN

if TYPE_CHECKING:
    from pricing_lab.catalog.model import Meter

SourceFormat = Literal["parquet", "csv", "ndjson", "table", "query"]
EventSource = str | Path | duckdb.DuckDBPyRelation | Any  # Any: a Polars DataFrame or Arrow table

REQUIRED_EVENT_COLUMNS = ("event_id", "customer_id", "event_name", "timestamp")
REQUIRED_REPORTED_COLUMNS = ("customer_id", "feature_id", "timestamp", "quantity")
PROPERTIES_COLUMN = "properties"
# The stored tables' own column: the 1-based input row (the line number for NDJSON), so every
# row, accepted or rejected, leads back to its place in the input. An input column of that name
# is kept as `input.source_row`.
SOURCE_ROW_COLUMN = "source_row"
INPUT_PREFIX = "input."


# A rejected row carries one reason: the first of these that applies, so the reason is stable.
REJECTION_ORDER = (
    "malformed_json",  # NDJSON only: the line is not a JSON object
    "missing_field",
    "bad_value",  # a required field of the wrong JSON type, bad properties JSON, bad quantity
    "bad_timestamp",
    "unknown_feature",  # reported usage only, when feature ids are given
    "unknown_customer",  # only when a customer list is given
    "duplicate_event_id",  # events only
)

QUANTITY_TYPE = "DECIMAL(38, 12)"
SUFFIX_FORMATS: Mapping[str, SourceFormat] = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".json": "ndjson",
}
_TEXT_TYPES = ("VARCHAR", "JSON")
_INTEGER_TYPES = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
)
# ISO 8601 date or date-time with an optional UTC offset (Z, UTC, ±HH, ±HHMM, ±HH:MM).
_TIMESTAMP_PATTERN = (
    r"^\s*(\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?)\s*"
    r"(?:([zZ]|UTC)|([+-])(\d{2}):?(\d{2})?)?\s*$"
)
_CSV_LINE = re.compile(r"CSV Error on Line: (\d+)")


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestReport:
    """What one ingestion read, kept and rejected. `accepted + rejected == rows_read` always.

    Ingestion checks what needs no catalog; the meter values a catalog reads as numbers are
    checked later, against that catalog (`meters.reject_unusable_values`, which `simulate` and
    `compare` call): an event whose value is not a usable number moves from `table` to
    `rejected_table` as `bad_value`, and the report it returns counts it there."""

    source: str
    table: str
    rejected_table: str
    rows_read: int
    accepted: int
    rejected: int
    rejected_by_reason: Mapping[str, int] = field(default_factory=dict)
    dimensions: tuple[str, ...] = ()
    # The column whose values ingestion left distinct in `table` (`event_id` for events: the
    # first of duplicated ids is kept); None when rows may repeat (reported usage).
    unique_column: str | None = None
    # The meters whose values `meters.reject_unusable_values` has checked in `table` (the events
    # whose value is not a usable number moved to `rejected_table`): not checked a second time.
    checked_meters: frozenset[Meter] = field(default_factory=frozenset, repr=False)

    def counts(self) -> str:
        """`N read, M accepted, K rejected`, as the commands print it."""
        return f"{self.rows_read:,} read, {self.accepted:,} accepted, {self.rejected:,} rejected"

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view (for `--json` output and logs)."""
        return {
            "source": self.source,
            "table": self.table,
            "rejected_table": self.rejected_table,
            "rows_read": self.rows_read,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "rejected_by_reason": dict(self.rejected_by_reason),
            "dimensions": list(self.dimensions),
        }


def quote_ident(name: str) -> str:
    """`name` as a DuckDB quoted identifier (embedded double quotes doubled)."""
    if "\x00" in name:
        raise InputError(f"identifier {name!r} contains a NUL character")
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """`value` as a DuckDB string literal (single quotes doubled; no other escapes exist)."""
    if "\x00" in value:
        raise InputError(f"value {value!r} contains a NUL character")
    return "'" + value.replace("'", "''") + "'"


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def ingest_events(
    con: duckdb.DuckDBPyConnection,
    source: EventSource,
    *,
    format: SourceFormat | None = None,
    table: str = "events",
    rejected_table: str = "rejected_events",
    customers: Iterable[str] | str | None = None,
    csv_delimiter: str = ",",
) -> IngestReport:
    """Read usage events from `source` into `table`, rejected rows into `rejected_table`.

    `source` is a file path (format from the suffix: .parquet, .csv, .ndjson/.jsonl/.json, or
    `format=`), a table name (`format="table"`), SQL text (`format="query"`), a DuckDB relation
    of `con`, or a Polars DataFrame / Arrow table. Both output tables are replaced.

    `table` gets `event_id, customer_id, event_name, timestamp` (VARCHAR ×3, TIMESTAMP naive UTC,
    µs) and then one column per dimension (every other input column; keys of a `properties` JSON
    object become columns). `rejected_table` gets `source_row` (1-based row — line number for
    NDJSON), the four required fields as raw text, `reason` and `detail`.

    `customers`: the known customer ids (an iterable, or the name of a table with a `customer_id`
    column); events of other customers are rejected as `unknown_customer`.

    Raises `InputError` for whole-file problems (missing file or required column, empty or
    unreadable file, non-UTF-8 or ragged CSV), naming the file and the problem.
    """
    with _Session(con) as session:
        src, stayed, given = session.warehouse_rows(
            session.open(source, format, csv_delimiter=csv_delimiter)
        )
        columns = _event_columns(session, src)
        if given:
            columns = _with_given_reasons(columns)
        customer_sql = session.customer_set(customers)
        report = session.validate_and_store(
            src,
            columns,
            table=table,
            rejected_table=rejected_table,
            customer_sql=customer_sql,
            feature_sql=None,
            dedupe_on="event_id",
            given_reasons=given,
        )
    if not stayed:
        return report
    return replace(report, rows_read=report.rows_read + stayed, accepted=report.accepted + stayed)


def ingest_reported_usage(
    con: duckdb.DuckDBPyConnection,
    source: EventSource,
    *,
    format: SourceFormat | None = None,
    table: str = "reported_usage",
    rejected_table: str = "rejected_reported_usage",
    customers: Iterable[str] | str | None = None,
    features: Iterable[str] | None = None,
    csv_delimiter: str = ",",
) -> IngestReport:
    """Read reported usage rows (`customer_id, feature_id, timestamp, quantity`) into `table`.

    Same sources and validation discipline as `ingest_events`. `quantity` becomes
    DECIMAL(38, 12); a quantity that is not a number, negative, or has more than 12 decimal
    places is rejected as `bad_value`. `features`: the ids of features with a reported meter;
    rows naming another feature are rejected as `unknown_feature`. Other columns are ignored.
    Rows are not de-duplicated (reported usage has no idempotency key).
    """
    with _Session(con) as session:
        src = session.open(source, format, csv_delimiter=csv_delimiter)
        columns = _reported_columns(session, src)
        customer_sql = session.customer_set(customers)
        feature_sql = session.value_set("features", features) if features is not None else None
        return session.validate_and_store(
            src,
            columns,
            table=table,
            rejected_table=rejected_table,
            customer_sql=customer_sql,
            feature_sql=feature_sql,
            dedupe_on=None,
        )


# --------------------------------------------------------------------------------------------
# Reading a source into a uniform shape
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Source:
    """A readable source: `from_sql` yields the columns in `types`, in input order, and
    `row_sql`, the 1-based input row (the line number for NDJSON)."""

    label: str
    from_sql: str
    row_sql: str
    types: Mapping[str, str]  # column name (as in the source) → DuckDB type
    json_object: str | None = None  # NDJSON: the SQL expression of each line's JSON object
    all_text: bool = False  # CSV: every column arrived as VARCHAR; dimensions get inferred types


@dataclass(frozen=True, slots=True, kw_only=True)
class _Column:
    """One output column: its name, SQL expression over the source, and SQL type."""

    name: str
    sql: str
    # Required fields only. `raw_sql`: the field's text, carried for every row (the missing and
    # invalid checks read it); `src_sql`: the typed source value, carried as it is and turned
    # into text for rejected rows only; neither: the output cast to text. `missing_sql` and
    # `invalid_sql`: when the field counts as missing, when it is invalid.
    raw_sql: str | None = None
    src_sql: str | None = None
    missing_sql: str | None = None
    invalid_sql: str | None = None

    @property
    def raw_ref(self) -> str:
        """The field's raw text, over the work query's columns."""
        if self.raw_sql is not None:
            return quote_ident("__raw_" + self.name)
        if self.src_sql is not None:
            return f"CAST({quote_ident('__src_' + self.name)} AS VARCHAR)"
        return f"CAST({quote_ident(self.name)} AS VARCHAR)"

    @property
    def raw_source_sql(self) -> str:
        """The field's raw text, over the source's columns."""
        if self.raw_sql is not None:
            return self.raw_sql
        return f"CAST({self.src_sql or self.sql} AS VARCHAR)"

    @property
    def missing_ref(self) -> str:
        return self.missing_sql or _blank_sql(quote_ident(self.name))


@dataclass(frozen=True, slots=True, kw_only=True)
class _Columns:
    """Output columns and row problems, in `REJECTION_ORDER`, as (reason, condition, detail)."""

    required: tuple[_Column, ...]
    dimensions: tuple[_Column, ...]
    problems: tuple[tuple[str, str, str], ...]
    aux: tuple[_Column, ...] = ()  # source-level values the problem conditions look at


class _Session:
    """Temporary objects of one ingestion, dropped at the end whatever happens."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.tag = uuid.uuid4().hex[:12]
        self.temp_tables: list[str] = []
        self.temp_views: list[str] = []

    def __enter__(self) -> _Session:
        return self

    def __exit__(self, *exc: object) -> None:
        for name in self.temp_views:
            self.con.execute(f"DROP VIEW IF EXISTS {quote_ident(name)}")
        for name in self.temp_tables:
            self.con.execute(f"DROP TABLE IF EXISTS {quote_ident(name)}")

    def temp_name(self, role: str) -> str:
        return f"__pricing_lab_{role}_{self.tag}"

    def sql(self, query: str, label: str = "") -> list[tuple[Any, ...]]:
        try:
            return self.con.execute(query).fetchall()
        except duckdb.Error as exc:
            raise read_error(label, exc) from exc

    # ---- sources ----------------------------------------------------------------------------

    def open(self, source: EventSource, fmt: SourceFormat | None, *, csv_delimiter: str) -> _Source:
        if isinstance(source, duckdb.DuckDBPyRelation):
            view = self.temp_name("relation")
            source.create_view(view, replace=True)
            self.temp_views.append(view)
            return self._materialize(f"SELECT * FROM {quote_ident(view)}", "relation")
        if not isinstance(source, str | Path):
            view = self.temp_name("frame")
            try:
                self.con.register(view, source)
            except Exception as exc:
                raise InputError(
                    f"cannot read events from a {type(source).__name__}: {exc}"
                ) from exc
            self.temp_views.append(view)
            return self._materialize(f"SELECT * FROM {quote_ident(view)}", "data frame")
        if fmt == "table":
            name = str(source)
            return self._materialize(f"SELECT * FROM {_table_ref(name)}", f"table {name}")
        if fmt == "query":
            return self._materialize(str(source), "query")
        path = Path(source)
        if path.is_dir():  # before its (missing) suffix: say what it is
            raise InputError(f"{path}: is a folder, not an events file (.parquet, .csv, .ndjson)")
        if fmt is None:
            fmt = SUFFIX_FORMATS.get(path.suffix.lower())
            if fmt is None:
                known = ", ".join(SUFFIX_FORMATS)
                raise InputError(
                    f"{path}: unknown file type {path.suffix!r} (known: {known}; from Python, "
                    "format= names the type)"
                )
        if not path.exists():
            raise InputError(f"{path}: file not found")
        if not path.is_file():
            raise InputError(f"{path}: not a file")
        if path.stat().st_size == 0:
            raise InputError(f"{path}: the file is empty")
        if fmt == "parquet":
            return self._parquet(path)
        if fmt == "csv":
            return self._csv(path, csv_delimiter)
        if fmt == "ndjson":
            return self._ndjson(path)
        raise InputError(f"unknown source format {fmt!r}")

    def _materialize(self, select_sql: str, label: str) -> _Source:
        name = self.temp_name("raw")
        self.sql(f"CREATE TEMP TABLE {quote_ident(name)} AS {select_sql}", label)
        self.temp_tables.append(name)
        # A fresh table's row ids count from 0 in insertion order, which is the input order.
        return _Source(
            label=label,
            from_sql=quote_ident(name),
            row_sql="rowid + 1",
            types=self._describe(f"SELECT * FROM {quote_ident(name)}", label),
        )

    def _describe(self, select_sql: str, label: str) -> dict[str, str]:
        rows = self.sql(f"DESCRIBE {select_sql}", label)
        return {str(r[0]): str(r[1]) for r in rows}

    def _parquet(self, path: Path) -> _Source:
        import pyarrow.parquet as pq  # the file's own column names (its footer only)

        reader = f"read_parquet({quote_literal(str(path))})"
        types = self._describe(f"SELECT * FROM {reader}", str(path))
        # DuckDB reads a repeated name as `name_1`: which of the two columns is meant (two
        # `customer_id`s) cannot be told, so the file is refused, as a CSV header would be.
        repeated = _repeated_name(pq.read_schema(path).names)
        if repeated is not None:
            raise InputError(f"{path}: the file has two columns named {repeated!r}")
        if any(c.lower() == "file_row_number" for c in types):  # the reader's own name is taken
            return self._materialize(f"SELECT * FROM {reader}", str(path))
        numbered = f"read_parquet({quote_literal(str(path))}, file_row_number = true)"
        return _Source(
            label=str(path), from_sql=numbered, row_sql="file_row_number + 1", types=types
        )

    def _csv(self, path: Path, delimiter: str) -> _Source:
        header = _csv_header(path, delimiter)
        columns = "{" + ", ".join(f"{quote_literal(c)}: 'VARCHAR'" for c in header) + "}"
        reader = (
            f"read_csv({quote_literal(str(path))}, columns = {columns}, header = true, "
            f"auto_detect = false, delim = {quote_literal(delimiter)}, quote = '\"', "
            "escape = '\"', strict_mode = true)"
        )
        src = self._materialize(f"SELECT * FROM {reader}", str(path))
        return _Source(
            label=str(path), from_sql=src.from_sql, row_sql=src.row_sql, types=src.types,
            all_text=True,
        )  # fmt: skip

    def _ndjson(self, path: Path) -> _Source:
        reader = (
            f"read_csv({quote_literal(str(path))}, columns = {{'line': 'VARCHAR'}}, "
            "header = false, auto_detect = false, delim = '\x1e', quote = '', escape = '', "
            "strict_mode = false)"
        )
        _check_utf8(path)
        name = self.temp_name("lines")
        # Blank lines are not rows; `source_row` stays the line number in the file.
        self.sql(f"CREATE TEMP TABLE {quote_ident(name)} AS SELECT line FROM {reader}", str(path))
        self.temp_tables.append(name)
        # A line of nothing but ASCII white space (spaces, tabs, CR, VT, FF) is blank; a byte
        # order mark before the first line is not part of it.
        blank = "chr(32) || chr(9) || chr(13) || chr(11) || chr(12)"
        text = "CASE WHEN line_number = 1 THEN ltrim(line, chr(65279)) ELSE line END"
        lines = (
            "(SELECT line_number, CASE WHEN json_valid(line) AND json_type(CAST(line AS JSON)) "
            "= 'OBJECT' THEN CAST(line AS JSON) END AS obj FROM (SELECT line_number, "
            f"{text} AS line FROM (SELECT rowid + 1 AS line_number, line FROM "
            f"{quote_ident(name)})) WHERE trim(coalesce(line, ''), {blank}) <> '')"
        )
        return _Source(
            label=str(path),
            from_sql=lines,
            row_sql="line_number",
            types={},
            json_object="obj",
        )

    def warehouse_rows(self, src: _Source) -> tuple[_Source, int, bool]:
        """`src` read as rows a warehouse source sent (`plugins.ROW_COLUMN` numbering them among
        all its rows, `plugins.STAYED_COLUMN` counting the rows it kept back), that count, and
        whether it gives rows rejected there (`plugins.REASON_COLUMN`, `DETAIL_COLUMN`); any
        other source as it is, 0 and False."""
        if ROW_COLUMN not in src.types or STAYED_COLUMN not in src.types:
            return src, 0, False
        [(stayed,)] = self.sql(
            f"SELECT max({quote_ident(STAYED_COLUMN)}) FROM {src.from_sql}", src.label
        )
        given = REASON_COLUMN in src.types and DETAIL_COLUMN in src.types
        own = (ROW_COLUMN, STAYED_COLUMN, REASON_COLUMN, DETAIL_COLUMN)
        types = {k: v for k, v in src.types.items() if k not in own}
        src = replace(src, row_sql=quote_ident(ROW_COLUMN), types=types)
        return src, int(stayed or 0), given

    # ---- reference sets ---------------------------------------------------------------------

    def customer_set(self, customers: Iterable[str] | str | None) -> str | None:
        if customers is None:
            return None
        if isinstance(customers, str):
            return f"SELECT CAST(customer_id AS VARCHAR) FROM {_table_ref(customers)}"
        return self.value_set("customers", customers)

    def value_set(self, role: str, values: Iterable[str]) -> str:
        import pyarrow as pa

        name = self.temp_name(role)
        arrow = pa.table({"value": pa.array([str(v) for v in values], pa.string())})
        view = name + "_arrow"
        self.con.register(view, arrow)
        self.temp_views.append(view)
        self.sql(f"CREATE TEMP TABLE {quote_ident(name)} AS SELECT value FROM {quote_ident(view)}")
        self.temp_tables.append(name)
        return f"SELECT value FROM {quote_ident(name)}"

    # ---- validation -------------------------------------------------------------------------

    def validate_and_store(
        self,
        src: _Source,
        columns: _Columns,
        *,
        table: str,
        rejected_table: str,
        customer_sql: str | None,
        feature_sql: str | None,
        dedupe_on: str | None,
        given_reasons: bool = False,
    ) -> IngestReport:
        problems = list(columns.problems)
        if feature_sql is not None:
            problems.append(
                (
                    "unknown_feature",
                    f"feature_id NOT IN ({feature_sql})",
                    "'feature ' || feature_id || ' has no reported meter in the catalog'",
                )
            )
        if customer_sql is not None:
            problems.append(
                (
                    "unknown_customer",
                    f"customer_id NOT IN ({customer_sql})",
                    "'customer ' || customer_id || ' is not in the customer list'",
                )
            )
        reason = (
            "CASE " + " ".join(f"WHEN {c} THEN {quote_literal(r)}" for r, c, _ in problems) + " END"
        )
        detail = "CASE " + " ".join(f"WHEN {c} THEN {d}" for _, c, d in problems) + " END"
        if given_reasons:  # rows a warehouse rejected: its reason and detail, not checked again
            reason = f"coalesce({_GIVEN_REASON}, {reason})"
            detail = f"CASE WHEN {_GIVEN_REASON} IS NOT NULL THEN {_GIVEN_DETAIL} ELSE {detail} END"

        work = self.temp_name("work")
        self.temp_tables.append(work)
        row = quote_ident(SOURCE_ROW_COLUMN)
        inner = ", ".join(
            [f"{c.sql} AS {quote_ident(c.name)}" for c in columns.required]
            + [f"CAST({src.row_sql} AS BIGINT) AS {row}"]
            + [
                f"{c.raw_sql} AS {quote_ident('__raw_' + c.name)}"
                for c in columns.required
                if c.raw_sql is not None
            ]
            + [
                f"{c.src_sql} AS {quote_ident('__src_' + c.name)}"
                for c in columns.required
                if c.src_sql is not None
            ]
            + [f"{c.sql} AS {quote_ident(c.name)}" for c in columns.dimensions]
            + [f"{c.sql} AS {quote_ident(c.name)}" for c in columns.aux]
        )
        keep = ", ".join(
            [quote_ident(c.name) for c in columns.required]
            + [row]
            + [quote_ident(c.name) for c in columns.dimensions]
        )
        raws = ", ".join(
            f"CASE WHEN __reason IS NOT NULL THEN {c.raw_ref} END "
            f"AS {quote_ident('__raw_' + c.name)}"
            for c in columns.required
        )
        self.sql(
            f"CREATE TABLE {quote_ident(work)} AS SELECT {keep}, __reason, "
            f"CASE WHEN __reason IS NOT NULL THEN {detail} END AS __detail, {raws} "
            f"FROM (SELECT *, {reason} AS __reason FROM (SELECT {inner} FROM {src.from_sql}))",
            src.label,
        )
        if dedupe_on is not None:
            self._mark_duplicates(src, columns, work, quote_ident(dedupe_on))
        rejected_cols = ", ".join(
            f"{quote_ident('__raw_' + c.name)} AS {quote_ident(c.name)}" for c in columns.required
        )
        self.sql(f"DROP TABLE IF EXISTS {_table_ref(rejected_table)}")
        self.sql(
            f"CREATE TABLE {_table_ref(rejected_table)} AS SELECT {row}, {rejected_cols}, "
            "__reason AS reason, __detail AS detail "
            f"FROM {quote_ident(work)} WHERE __reason IS NOT NULL ORDER BY {row}"
        )
        if customer_sql is not None:
            self._suggest_customers(rejected_table, customer_sql)
        counts = dict(
            self.sql(
                f"SELECT coalesce(__reason, ''), count(*) FROM {quote_ident(work)} GROUP BY ALL"
            )
        )
        rows_read = sum(int(n) for n in counts.values())
        accepted = int(counts.pop("", 0))
        by_reason = {r: int(counts[r]) for r in REJECTION_ORDER if r in counts}
        if accepted != rows_read:
            self.sql(f"DELETE FROM {quote_ident(work)} WHERE __reason IS NOT NULL")
        for extra in ["__reason", "__detail"] + ["__raw_" + c.name for c in columns.required]:
            self.sql(f"ALTER TABLE {quote_ident(work)} DROP COLUMN {quote_ident(extra)}")
        self.sql(f"DROP TABLE IF EXISTS {_table_ref(table)}")
        self.sql(f"ALTER TABLE {quote_ident(work)} RENAME TO {quote_ident(_last_part(table))}")
        self.temp_tables.remove(work)
        stored = int(self.sql(f"SELECT count(*) FROM {_table_ref(table)}")[0][0])
        rejected = int(self.sql(f"SELECT count(*) FROM {_table_ref(rejected_table)}")[0][0])
        if stored != accepted or stored + rejected != rows_read:
            raise InvariantViolation(
                f"{src.label}: ingestion lost rows: read {rows_read}, stored {stored}, "
                f"rejected {rejected}"
            )
        return IngestReport(
            source=src.label,
            table=table,
            rejected_table=rejected_table,
            rows_read=rows_read,
            accepted=accepted,
            rejected=rejected,
            rejected_by_reason=by_reason,
            dimensions=tuple(c.name for c in columns.dimensions),
            unique_column=dedupe_on,
        )

    def _suggest_customers(self, rejected_table: str, customer_sql: str) -> None:
        """An unknown customer id that is a known one in another case says so in its detail."""
        self.sql(
            f"UPDATE {_table_ref(rejected_table)} AS r SET detail = r.detail || ' (did you mean ' "
            "|| k.v || '? customer ids are case-sensitive)' FROM (SELECT lower(v) AS l, min(v) "
            f"AS v FROM ({customer_sql}) AS c(v) GROUP BY 1) AS k "
            "WHERE r.reason = 'unknown_customer' AND lower(r.customer_id) = k.l"
        )

    def _mark_duplicates(self, src: _Source, columns: _Columns, work: str, key: str) -> None:
        # Group by the 64-bit hash first (cheap), then compare the real keys of colliding hashes.
        dups = self.temp_name("dups")
        self.temp_tables.append(dups)
        table = quote_ident(work)
        row = quote_ident(SOURCE_ROW_COLUMN)
        self.sql(
            f"CREATE TEMP TABLE {quote_ident(dups)} AS SELECT {key} AS k, "
            f"min({row}) AS first_row FROM {table} WHERE __reason IS NULL AND "
            f"hash({key}) IN (SELECT h FROM (SELECT hash({key}) AS h FROM {table} "
            "WHERE __reason IS NULL GROUP BY h HAVING count(*) > 1)) "
            f"GROUP BY {key} HAVING count(*) > 1",
            src.label,
        )
        if not self.sql(f"SELECT count(*) FROM {quote_ident(dups)}")[0][0]:
            return
        self.sql(
            f"UPDATE {table} AS w SET __reason = 'duplicate_event_id', "
            f"__detail = 'event_id first seen at row ' || d.first_row "
            f"FROM {quote_ident(dups)} AS d "
            f"WHERE w.__reason IS NULL AND w.{key} = d.k AND w.{row} <> d.first_row",
            src.label,
        )
        # Duplicates were accepted rows until now: their raw text is read again from the source.
        raws = ", ".join(
            f"{c.raw_source_sql} AS {quote_ident('__raw_' + c.name)}" for c in columns.required
        )
        fill = ", ".join(
            f"{quote_ident('__raw_' + c.name)} = s.{quote_ident('__raw_' + c.name)}"
            for c in columns.required
        )
        self.sql(
            f"UPDATE {table} AS w SET {fill} FROM (SELECT {src.row_sql} AS __row, {raws} "
            f"FROM {src.from_sql} WHERE {src.row_sql} IN (SELECT {row} FROM {table} "
            "WHERE __reason = 'duplicate_event_id')) AS s "
            f"WHERE w.{row} = s.__row AND w.__reason = 'duplicate_event_id'",
            src.label,
        )


# --------------------------------------------------------------------------------------------
# Column plans for events and reported usage
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _JsonKey:
    """One key of the JSON objects of a column, over all rows; spellings that differ only in
    case are one key (DuckDB names are case-insensitive, so they could not be two columns)."""

    name: str  # the spelling most rows use; on a tie, the first in code point order
    spellings: tuple[str, ...]
    kinds: frozenset[str]  # JSON types seen, NULL left out
    scale: int  # the most decimal places of its numbers
    exponent: bool  # a number written in exponent form
    int_digits: int  # the most integer digits of its numbers

    def pick(self, json_sql: str, function: str) -> str:
        """`function(json, pointer)` of the row's spelling that holds a value (not JSON null)."""
        return _json_pick(json_sql, self.spellings, function)

    def conflict(self, json_sql: str, aux: list[_Column]) -> tuple[str, str, str] | None:
        """`bad_value` for a row in which two spellings hold different values (its test is an
        `aux` column)."""
        if len(self.spellings) < 2:
            return None
        values = ", ".join(
            f"json_extract_string({json_sql}, {_json_path(s)})" for s in self.spellings
        )
        flag = f"__case_conflict_{len(aux)}"
        aux.append(
            _Column(
                name=flag,
                sql=f"len(list_distinct([{values}])) > 1",  # list_distinct leaves nulls out
            )
        )
        quoted = [repr(s) for s in self.spellings]
        names = ", ".join(quoted[:-1]) + " and " + quoted[-1]
        message = f"keys {names} differ only in case and hold different values"
        return ("bad_value", quote_ident(flag), quote_literal(message))


def _json_pick(json_sql: str, spellings: Sequence[str], function: str) -> str:
    if len(spellings) == 1:
        return f"{function}({json_sql}, {_json_path(spellings[0])})"
    choices = ", ".join(
        f"CASE WHEN json_type({json_sql}, {_json_path(s)}) <> 'NULL' "
        f"THEN {function}({json_sql}, {_json_path(s)}) END"
        for s in spellings
    )
    return f"coalesce({choices})"


def _json_path(key: str) -> str:
    return quote_literal("/" + _pointer(key))


def _json_keys(session: _Session, src: _Source, json_sql: str) -> dict[str, _JsonKey]:
    """The keys of the JSON objects in `json_sql` over every row, by lower-case name, in order."""
    rows = session.sql(
        "SELECT e.key, list(DISTINCT e.type), count(*), "
        "max(CASE WHEN e.type = 'DOUBLE' THEN length(split_part(CAST(e.value AS VARCHAR), '.', 2))"
        " END), "
        "bool_or(e.type = 'DOUBLE' AND regexp_matches(CAST(e.value AS VARCHAR), '[eE]')), "
        "max(CASE WHEN e.type IN ('BIGINT', 'UBIGINT', 'DOUBLE') THEN "
        "length(split_part(ltrim(CAST(e.value AS VARCHAR), '-'), '.', 1)) END) "
        f"FROM (SELECT {json_sql} AS __j FROM {src.from_sql}) AS s, json_each(s.__j) AS e "
        "WHERE s.__j IS NOT NULL GROUP BY e.key ORDER BY e.key",
        src.label,
    )
    groups: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        groups.setdefault(str(row[0]).lower(), []).append(row)
    keys = {}
    for lower, members in groups.items():
        members.sort(key=lambda r: (-int(r[2]), str(r[0])))
        keys[lower] = _JsonKey(
            name=str(members[0][0]),
            spellings=tuple(str(r[0]) for r in members),
            kinds=frozenset(str(t) for r in members for t in r[1]) - {"NULL"},
            scale=max(int(r[3] or 0) for r in members),
            exponent=any(bool(r[4]) for r in members),
            int_digits=max(int(r[5] or 0) for r in members),
        )
    return dict(sorted(keys.items(), key=lambda item: item[1].name))


@dataclass(frozen=True, slots=True, kw_only=True)
class _Fields:
    """Where each required field is read: a source column, or NDJSON keys (any spelling)."""

    src: _Source
    columns: Mapping[str, str]  # field → source column (tables, CSV, Parquet)
    keys: Mapping[str, _JsonKey]  # lower-case key → key (NDJSON)

    def spellings(self, name: str) -> tuple[str, ...]:
        key = self.keys.get(name)
        return key.spellings if key is not None else (name,)

    def json(self, name: str, function: str) -> str:
        assert self.src.json_object is not None
        return _json_pick(self.src.json_object, self.spellings(name), function)


def _separator_hint(src: _Source) -> str:
    """For a CSV file read as one column whose name holds another separator (an export with
    `;` or tabs, as spreadsheets in many locales write): what to do about it."""
    if not src.all_text or len(src.types) != 1:
        return ""
    [name] = src.types
    for separator, said in ((";", "';'"), ("\t", "tabs"), ("|", "'|'")):
        if separator in name:
            return (
                f"; the header looks separated by {said}, but CSV files are read with ',': save "
                f"the file comma-separated (from Python: csv_delimiter={separator!r})"
            )
    return ""


def _fields(session: _Session, src: _Source, names: Sequence[str]) -> _Fields:
    """The required fields' places; InputError when a table lacks a required column.

    Names are matched case-insensitively, in NDJSON keys as in column names."""
    if src.json_object is not None:
        return _Fields(src=src, columns={}, keys=_json_keys(session, src, src.json_object))
    by_lower = {c.lower(): c for c in src.types}
    missing = [n for n in names if n not in by_lower]
    if missing:
        found = ", ".join(src.types) or "none"
        noun = "column" if len(missing) == 1 else "columns"
        raise InputError(
            f"{src.label}: missing required {noun} {', '.join(missing)} (columns found: {found})"
            + _separator_hint(src)
        )
    return _Fields(src=src, columns={n: by_lower[n] for n in names}, keys={})


_GIVEN_REASON = quote_ident("__given_reason")
_GIVEN_DETAIL = quote_ident("__given_detail")


def _with_given_reasons(columns: _Columns) -> _Columns:
    """`columns` carrying a warehouse source's reason and detail of the rows it rejected."""
    given = (
        _Column(name="__given_reason", sql=quote_ident(REASON_COLUMN)),
        _Column(name="__given_detail", sql=quote_ident(DETAIL_COLUMN)),
    )
    return replace(columns, aux=(*columns.aux, *given))


def _malformed_json(src: _Source, aux: list[_Column]) -> list[tuple[str, str, str]]:
    if src.json_object is None:
        return []
    aux.append(_Column(name="__obj", sql=src.json_object))
    return [("malformed_json", "__obj IS NULL", "'the line is not a JSON object'")]


def _key_conflicts(
    fields: _Fields, names: Sequence[str], aux: list[_Column]
) -> list[tuple[str, str, str]]:
    """NDJSON: a required field given twice in one line, in spellings with different values."""
    if fields.src.json_object is None:
        return []
    conflicts = (
        fields.keys[n].conflict(fields.src.json_object, aux) for n in names if n in fields.keys
    )
    return [c for c in conflicts if c is not None]


def _event_columns(session: _Session, src: _Source) -> _Columns:
    fields = _fields(session, src, REQUIRED_EVENT_COLUMNS)
    aux: list[_Column] = []
    problems = _malformed_json(src, aux)
    required: list[_Column] = []
    for name in ("event_id", "customer_id", "event_name"):
        required.append(_text_field(fields, name))
    ts = _timestamp_field(fields, "timestamp")
    required.append(ts)
    problems.append(_missing_problem(required))
    problems.extend(_key_conflicts(fields, (*REQUIRED_EVENT_COLUMNS, PROPERTIES_COLUMN), aux))
    problems.extend(_json_type_problems(fields, ("event_id", "customer_id", "event_name"), aux))
    reserved = {c.lower() for c in REQUIRED_EVENT_COLUMNS} | {PROPERTIES_COLUMN}
    taken = reserved | {SOURCE_ROW_COLUMN}
    dimensions: list[_Column] = []
    props: str | None = None
    if src.json_object is None:
        for col in src.types:
            if col.lower() in reserved:
                continue
            dimensions.append(_Column(name=col, sql=quote_ident(col)))
        if src.all_text:
            dimensions = _typed_text_columns(session, src, dimensions)
        else:
            dimensions = [_without_null_type(src, d) for d in dimensions]
        dimensions = [_renamed(src, d, taken, INPUT_PREFIX) for d in dimensions]
        prop_col = next((c for c in src.types if c.lower() == PROPERTIES_COLUMN), None)
        if prop_col is not None:
            props = _properties_json(src, prop_col)
    else:
        top_keys = {k: v for k, v in fields.keys.items() if k not in reserved}
        top, conflicts = _json_columns(
            src, src.json_object, top_keys, aux, taken=taken, clash_prefix=INPUT_PREFIX
        )
        dimensions.extend(top)
        problems.extend(conflicts)
        if PROPERTIES_COLUMN in fields.keys:
            props = fields.json(PROPERTIES_COLUMN, "json_extract")
    if props is not None:
        aux.append(_Column(name="__props_type", sql=f"json_type({props})"))
        problems.append(
            (
                "bad_value",
                "__props_type IS NOT NULL AND __props_type NOT IN ('OBJECT', 'NULL')",
                "'properties is not a JSON object'",
            ),
        )
        objects = f"CASE WHEN json_type({props}) = 'OBJECT' THEN {props} END"
        flat, conflicts = _json_columns(
            src,
            objects,
            _json_keys(session, src, objects),
            aux,
            taken=taken,
            clash_prefix=PROPERTIES_COLUMN + ".",
        )
        dimensions.extend(flat)
        problems.extend(conflicts)
    problems.append(_bad_timestamp_problem(ts))
    return _Columns(
        required=tuple(required),
        dimensions=tuple(dimensions),
        problems=tuple(problems),
        aux=tuple(aux),
    )


def _reported_columns(session: _Session, src: _Source) -> _Columns:
    fields = _fields(session, src, REQUIRED_REPORTED_COLUMNS)
    aux: list[_Column] = []
    problems = _malformed_json(src, aux)
    required = [
        _text_field(fields, "customer_id"),
        _text_field(fields, "feature_id"),
        _timestamp_field(fields, "timestamp"),
    ]
    quantity = _quantity_field(fields)
    required.append(quantity)
    problems.append(_missing_problem(required))
    problems.extend(_key_conflicts(fields, REQUIRED_REPORTED_COLUMNS, aux))
    problems.extend(_json_type_problems(fields, ("customer_id", "feature_id"), aux))
    raw_q = quantity.raw_ref
    problems.append(
        (
            "bad_value",
            "quantity IS NULL OR quantity < 0",
            f"CASE WHEN quantity IS NULL THEN 'quantity is not a decimal number with at most 12 "
            f"decimal places: ' || {raw_q} ELSE 'quantity is negative: ' || {raw_q} END",
        )
    )
    problems.append(_bad_timestamp_problem(required[2]))
    return _Columns(
        required=tuple(required), dimensions=(), problems=tuple(problems), aux=tuple(aux)
    )


def _text_field(fields: _Fields, name: str) -> _Column:
    src = fields.src
    if src.json_object is not None:
        return _Column(name=name, sql=fields.json(name, "json_extract_string"))
    column = fields.columns[name]
    typ = src.types[column]
    if typ not in _TEXT_TYPES and typ not in _INTEGER_TYPES:
        raise InputError(
            f"{src.label}: column {column} has type {typ}; expected text or integer ids"
        )
    return _Column(name=name, sql=f"CAST({quote_ident(column)} AS VARCHAR)")


def _timestamp_field(fields: _Fields, name: str) -> _Column:
    src = fields.src
    if src.json_object is not None:
        raw = fields.json(name, "json_extract_string")
        ref = f"CASE WHEN {fields.json(name, 'json_type')} = 'VARCHAR' THEN {raw} END"
        return _Column(
            name=name,
            sql=_parse_timestamp_sql(ref),
            raw_sql=raw,
            missing_sql=_blank_sql(f"__raw_{name}"),
        )
    column = fields.columns[name]
    typ = src.types[column]
    ref = quote_ident(column)
    output = quote_ident(name)
    if typ in _TEXT_TYPES:
        return _Column(
            name=name,
            sql=_parse_timestamp_sql(ref),
            raw_sql=ref,
            missing_sql=_blank_sql(f"__raw_{name}"),
        )
    if typ == "TIMESTAMP":
        return _Column(
            name=name,
            sql=ref,
            missing_sql=f"{output} IS NULL",
            invalid_sql=f"NOT {_in_range_sql(output)}",
        )
    if typ in ("TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S", "DATE"):
        sql = f"TRY_CAST({ref} AS TIMESTAMP)"  # a DATE can lie beyond TIMESTAMP's range
    elif typ == "TIMESTAMP WITH TIME ZONE":
        sql = f"timezone('UTC', {ref})"
    else:
        raise InputError(
            f"{src.label}: column {column} has type {typ}; expected a timestamp or ISO 8601 text"
        )
    # Values out of range (infinite ones too) stay until their row is rejected as bad_timestamp.
    return _Column(
        name=name,
        sql=sql,
        src_sql=ref,
        missing_sql=f"{quote_ident('__src_' + name)} IS NULL",
        invalid_sql=f"{output} IS NULL OR NOT {_in_range_sql(output)}",
    )


def _in_range_sql(timestamp: str) -> str:
    """SQL: `timestamp` lies in the supported range [TIMESTAMP_MIN, TIMESTAMP_END)."""
    return (
        f"({timestamp} >= TIMESTAMP {quote_literal(TIMESTAMP_MIN)} AND "
        f"{timestamp} < TIMESTAMP {quote_literal(TIMESTAMP_END)})"
    )


def _parse_timestamp_sql(text: str, *, bounded: bool = True) -> str:
    """SQL turning ISO 8601 text into a naive UTC TIMESTAMP, or NULL when it does not parse
    (or, `bounded`, when it lies outside the supported range)."""
    m = f"regexp_extract({text}, {quote_literal(_TIMESTAMP_PATTERN)}, ['b', 'z', 's', 'h', 'm'])"
    b = f"{m}.b"
    s = f"{m}.s"
    h = f"{m}.h"
    mm = f"coalesce(nullif({m}.m, ''), '0')"
    value = (
        f"try_cast(nullif({b}, '') AS TIMESTAMP) - CASE WHEN {s} = '' THEN INTERVAL 0 MINUTE "
        f"WHEN try_cast({h} AS INTEGER) > 23 OR try_cast({mm} AS INTEGER) > 59 THEN NULL "
        f"ELSE (CASE {s} WHEN '-' THEN -1 ELSE 1 END) * (try_cast({h} AS INTEGER) * 60 + "
        f"try_cast({mm} AS INTEGER)) * INTERVAL 1 MINUTE END"
    )
    keep = _in_range_sql(value) if bounded else f"isfinite({value})"
    return f"CASE WHEN {keep} THEN {value} END"


def _bad_timestamp_problem(ts: _Column) -> tuple[str, str, str]:
    """`bad_timestamp`: text that is not an ISO 8601 timestamp, or a time outside the range."""
    raw = f"coalesce({ts.raw_ref}, '')"
    if ts.raw_sql is not None:  # text: parsed again without the range, to say which it is
        parses = (
            f"{_parse_timestamp_sql(quote_ident('__raw_' + ts.name), bounded=False)} IS NOT NULL"
        )
    else:
        parses = f"isfinite({quote_ident(ts.name)})"
    outside = (
        f"outside the supported range {TIMESTAMP_MIN[:10]} to {TIMESTAMP_END[:10]} (exclusive, "
        "UTC): "
    )
    detail = (
        f"CASE WHEN coalesce({parses}, FALSE) THEN {quote_literal(outside)} "
        f"ELSE 'not a timestamp: ' END || {raw}"
    )
    return ("bad_timestamp", ts.invalid_sql or f"{quote_ident(ts.name)} IS NULL", detail)


def _quantity_field(fields: _Fields) -> _Column:
    src = fields.src
    missing = _blank_sql("__raw_quantity")
    if src.json_object is not None:
        raw = fields.json("quantity", "json_extract_string")
        kinds = "('UBIGINT', 'BIGINT', 'DOUBLE', 'VARCHAR')"
        text = f"CASE WHEN {fields.json('quantity', 'json_type')} IN {kinds} THEN {raw} END"
        sql = _exact_decimal_sql(text)
        return _Column(name="quantity", sql=sql, raw_sql=raw, missing_sql=missing)
    column = fields.columns["quantity"]
    typ = src.types[column]
    ref = quote_ident(column)
    raw = f"CAST({ref} AS VARCHAR)"
    if typ in _TEXT_TYPES:
        return _Column(
            name="quantity", sql=_exact_decimal_sql(ref), raw_sql=ref, missing_sql=missing
        )
    if typ in _INTEGER_TYPES or typ.startswith("DECIMAL") or typ in ("DOUBLE", "FLOAT"):
        return _Column(
            name="quantity", sql=_exact_decimal_sql(raw), raw_sql=raw, missing_sql=missing
        )
    raise InputError(f"{src.label}: column {column} has type {typ}; expected a number")


def _exact_decimal_sql(text: str) -> str:
    """Text → DECIMAL(38, 12) when it is a plain decimal with ≤ 12 places, else NULL."""
    return (
        f"CASE WHEN regexp_full_match(trim({text}), '[+-]?\\d{{1,26}}(\\.\\d{{0,12}})?') "
        f"THEN CAST(trim({text}) AS {QUANTITY_TYPE}) END"
    )


def _missing_problem(required: Sequence[_Column]) -> tuple[str, str, str]:
    """`missing_field` when a required field is null or blank; the detail names every one."""
    tests = [(c.name, c.missing_ref) for c in required]
    cond = " OR ".join(t for _, t in tests)
    detail = (
        "'missing ' || concat_ws(', ', "
        + ", ".join(f"CASE WHEN {t} THEN {quote_literal(n)} END" for n, t in tests)
        + ")"
    )
    return ("missing_field", cond, detail)


def _json_type_problems(
    fields: _Fields, names: Sequence[str], aux: list[_Column]
) -> list[tuple[str, str, str]]:
    """NDJSON: id fields must be JSON strings or integers."""
    if fields.src.json_object is None:
        return []
    out = []
    for name in names:
        typ = f"__type_{name}"
        aux.append(_Column(name=typ, sql=fields.json(name, "json_type")))
        out.append(
            (
                "bad_value",
                f"{typ} NOT IN ('VARCHAR', 'BIGINT', 'UBIGINT')",
                f"{quote_literal(name + ' must be a string, not ')} || {typ}",
            )
        )
    return out


def _properties_json(src: _Source, column: str) -> str:
    typ = src.types[column]
    ref = quote_ident(column)
    if typ in _TEXT_TYPES:
        return f"CASE WHEN json_valid({ref}) THEN CAST({ref} AS JSON) ELSE to_json({ref}) END"
    if typ.startswith("STRUCT") or typ.startswith("MAP"):
        return f"to_json({ref})"
    if typ == _NULL_TYPE:
        return "CAST(NULL AS JSON)"
    raise InputError(
        f"{src.label}: column {column} has type {typ}; expected a JSON object (text) or a struct"
    )


# An input column with no values at all (every CSV field empty, Arrow's null type, an NDJSON
# key that is always null) is stored as this type: numeric, so any meter or formula can read it,
# and every value is null, so no comparison or aggregate differs from any other type's.
EMPTY_COLUMN_TYPE = "BIGINT"
_NULL_TYPE = '"NULL"'


def _without_null_type(src: _Source, column: _Column) -> _Column:
    if src.types.get(column.name) != _NULL_TYPE:
        return column
    return _Column(name=column.name, sql=f"CAST({column.sql} AS {EMPTY_COLUMN_TYPE})")


def _renamed(src: _Source, column: _Column, taken: set[str], prefix: str) -> _Column:
    """`column`, renamed `prefix + name` when its name is `taken` (case-insensitively)."""
    name = column.name
    if name.lower() in taken:
        name = prefix + name
        if name.lower() in taken:
            raise InputError(
                f"{src.label}: column {column.name!r} clashes with columns {column.name!r} and "
                f"{name!r}"
            )
    taken.add(name.lower())
    return _Column(name=name, sql=column.sql)


def _typed_text_columns(
    session: _Session, src: _Source, columns: Sequence[_Column]
) -> list[_Column]:
    """CSV dimensions arrive as text: give each the narrowest exact type all its values fit."""
    if not columns:
        return []
    stats = []
    for i, c in enumerate(columns):
        ref = c.sql
        stats.append(
            f"count({ref}) AS n{i}, "
            f"count(*) FILTER (regexp_full_match({ref}, '-?(0|[1-9]\\d{{0,17}})')) AS i{i}, "
            f"count(*) FILTER (regexp_full_match({ref}, '-?(0|[1-9]\\d{{0,25}})(\\.\\d{{1,12}})?'))"
            f" AS d{i}, max(length(split_part({ref}, '.', 2))) FILTER "
            f"(regexp_full_match({ref}, '-?(0|[1-9]\\d{{0,25}})(\\.\\d{{1,12}})?')) AS s{i}, "
            f"count(*) FILTER (lower({ref}) IN ('true', 'false')) AS b{i}"
        )
    row = session.sql(f"SELECT {', '.join(stats)} FROM {src.from_sql}", src.label)[0]
    typed = []
    for i, c in enumerate(columns):
        n, ints, decs, scale, bools = row[5 * i : 5 * i + 5]
        if n == 0:
            sql = f"CAST({c.sql} AS {EMPTY_COLUMN_TYPE})"
        elif ints == n:
            sql = f"CAST({c.sql} AS BIGINT)"
        elif decs == n:
            sql = f"CAST({c.sql} AS DECIMAL(38, {int(scale or 0)}))"
        elif bools == n:
            sql = f"CAST(lower({c.sql}) AS BOOLEAN)"
        else:
            sql = c.sql
        typed.append(_Column(name=c.name, sql=sql))
    return typed


def _json_columns(
    src: _Source,
    json_sql: str,
    keys: Mapping[str, _JsonKey],
    aux: list[_Column],
    *,
    taken: set[str],
    clash_prefix: str,
) -> tuple[list[_Column], list[tuple[str, str, str]]]:
    """One column per key of the JSON objects in `json_sql`, with an exact SQL type per key, and
    the `bad_value` problems of rows holding two spellings of a key with different values.

    A key whose name is already `taken` (case-insensitively, as DuckDB compares names) is
    renamed `clash_prefix + name`.
    """
    columns = []
    problems = []
    for key in keys.values():
        text = key.pick(json_sql, "json_extract_string")
        kinds = key.kinds
        if not kinds:
            sql = f"CAST(NULL AS {EMPTY_COLUMN_TYPE})"
        elif kinds <= {"BIGINT", "UBIGINT"} and key.int_digits <= 18:
            sql = f"try_cast({text} AS BIGINT)"
        elif kinds <= {"BIGINT", "UBIGINT", "DOUBLE"}:
            places = min(key.scale, 18)
            if key.exponent or key.int_digits + places > 38:
                sql = f"try_cast({text} AS DOUBLE)"  # the one case exact decimals cannot hold
            else:
                sql = f"try_cast({text} AS DECIMAL(38, {places}))"
        elif kinds == {"BOOLEAN"}:
            sql = f"try_cast({text} AS BOOLEAN)"
        elif kinds == {"VARCHAR"}:
            sql = text
        else:  # mixed kinds, objects or arrays: the JSON text (strings unquoted)
            sql = (
                f"CASE WHEN {key.pick(json_sql, 'json_type')} = 'VARCHAR' THEN {text} "
                f"ELSE CAST({key.pick(json_sql, 'json_extract')} AS VARCHAR) END"
            )
        columns.append(_renamed(src, _Column(name=key.name, sql=sql), taken, clash_prefix))
        conflict = key.conflict(json_sql, aux)
        if conflict is not None:
            problems.append(conflict)
    return columns, problems


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _blank_sql(ref: str) -> str:
    """SQL: `ref` is null, empty or only spaces (trimming only strings that start with one)."""
    return f"({ref} IS NULL OR {ref} = '' OR (prefix({ref}, ' ') AND trim({ref}) = ''))"


def _pointer(key: str) -> str:
    """A JSON key as one JSON-pointer step (RFC 6901 escaping)."""
    return key.replace("~", "~0").replace("/", "~1")


def _table_ref(name: str) -> str:
    """A table name, optionally `schema.table`, quoted part by part."""
    return ".".join(quote_ident(p) for p in name.split("."))


def _last_part(name: str) -> str:
    return name.split(".")[-1]


def _check_utf8(path: Path) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                line += chunk[: exc.start].count(b"\n")
                raise InputError(f"{path}: not UTF-8 text (line {line})") from exc
            line += chunk.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: not UTF-8 text (truncated at the end)") from exc


def _csv_header(path: Path, delimiter: str) -> list[str]:
    with path.open("rb") as handle:
        first = handle.readline()
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (line 1)") from exc
    header = next(csv.reader([text.rstrip("\r\n")], delimiter=delimiter), [])
    if not header or all(not h.strip() for h in header):
        raise InputError(f"{path}: the first line holds no column names")
    blank = [i + 1 for i, h in enumerate(header) if not h.strip()]
    if blank:
        raise InputError(f"{path}: column {blank[0]} of the header has no name")
    repeated = _repeated_name(header)
    if repeated is not None:
        raise InputError(f"{path}: the header names column {repeated!r} twice")
    return header


def _repeated_name(names: list[str]) -> str | None:
    """The first column name that repeats an earlier one, ignoring case (DuckDB's identifiers
    ignore case), or None."""
    seen: set[str] = set()
    for name in names:
        if name.lower() in seen:
            return name
        seen.add(name.lower())
    return None


def read_error(label: str, exc: duckdb.Error) -> InputError:
    """A DuckDB error while reading a source, as one clear message naming the source."""
    text = str(exc)
    head = f"{label}: " if label else ""
    line = _CSV_LINE.search(text)
    where = f"line {line.group(1)}: " if line else ""
    if "Invalid unicode" in text or "not utf-8" in text.lower():
        return InputError(f"{head}{where}not UTF-8 text")
    found = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", text)
    if found:
        return InputError(
            f"{head}{where}ragged row: expected {found.group(1)} fields, found {found.group(2)}"
        )
    reason = _csv_reason(text)
    if reason is not None:  # e.g. "Value with unterminated quote found."
        return InputError(f"{head}{where}{reason[0].lower()}{reason[1:].rstrip('.')}")
    first = next((t for t in text.splitlines() if t.strip()), text)
    first = re.sub(r"^[A-Za-z ]+Error: ", "", first)
    return InputError(f"{head}{where}cannot read: {first}")


def _csv_reason(text: str) -> str | None:
    """The reason DuckDB's CSV reader gives on the first line after the offending line."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Original Line:")]
    if not starts:
        return None
    return next((line.strip() for line in lines[starts[0] + 1 :] if line.strip()), None)
