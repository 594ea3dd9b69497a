"""SQL text of the export's load path: DDL, PUT, COPY INTO a staging table, MERGE, bookkeeping.

Pure functions returning Snowflake SQL, so `--dry-run` can print exactly what a run would send.
Identifiers are upper case and double-quoted (columns such as TIMESTAMP or POSITION are keywords).
Every statement was checked against the real Snowflake grammar and against the local fakesnow
0.12.1 server the tests use (named stages, PUT, COPY from Parquet with MATCH_BY_COLUMN_NAME,
MERGE from a subquery; not table stages, INFER_SCHEMA or MERGE inside an explicit transaction).

Fencing: every statement that changes a target or records the run carries `HELD` — the run's
lock check — in its own text, so on Snowflake the check and the change are one statement, one
transaction: a run that lost the lock changes nothing. Staging tables and stage paths are named
by the run's attempt (its lock holder id), so two runs never share one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from connectors.snowflake.tables import BOOKKEEPING_DDL, Column, ExportTable

STAGE_NAME = "PRICING_LAB_EXPORT_STAGE"
LOCK_NAME = "export"
STAGING_MARK = "__STAGING"
# A staging table: <TABLE>__STAGING_<attempt> (or <TABLE>__STAGING, left by exports before fencing).
STAGING_PATTERN = re.compile(r"^(?P<table>.+)__STAGING(?:_(?P<attempt>[0-9A-F]{16}))?$")
# The lock check every fenced statement carries (parameters `lock_name` and `holder`).
HELD = (
    'EXISTS (SELECT 1 FROM "EXPORT_LOCK" AS l WHERE l."LOCK_NAME" = %(lock_name)s '
    'AND l."HOLDER" = %(holder)s)'
)


def ident(name: str) -> str:
    """A quoted upper-case identifier: `ledger_entries` → `"LEDGER_ENTRIES"`."""
    return '"' + name.upper().replace('"', '""') + '"'


def literal(text: str) -> str:
    """A single-quoted SQL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def create_stage() -> str:
    return f"CREATE STAGE IF NOT EXISTS {STAGE_NAME}"


def create_bookkeeping(table: str) -> str:
    return f"CREATE TABLE IF NOT EXISTS {ident(table)} ({BOOKKEEPING_DDL[table]})"


def column_ddl(columns: Sequence[Column]) -> str:
    return ", ".join(f"{ident(c.name)} {c.type.sql}" for c in columns)


def create_table(table: ExportTable) -> str:
    return f"CREATE TABLE IF NOT EXISTS {ident(table.name)} ({column_ddl(table.columns)})"


def add_column(table: ExportTable, column: Column) -> str:
    return f"ALTER TABLE {ident(table.name)} ADD COLUMN {ident(column.name)} {column.type.sql}"


def describe_columns(schema_name: str) -> str:
    """Columns of every table in the export's schema (INFORMATION_SCHEMA.COLUMNS)."""
    return (
        "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, NUMERIC_SCALE "
        f"FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = {literal(schema_name)}"
    )


def staging_name(table: ExportTable, attempt: str) -> str:
    """The attempt's own staging table of `table`, e.g. `LEDGER_ENTRIES__STAGING_0F3A…`."""
    return f"{table.sql_name}{STAGING_MARK}_{attempt.upper()}"


def attempt_path(attempt: str) -> str:
    return f"@{STAGE_NAME}/{attempt}/"


def stage_path(attempt: str, table: ExportTable) -> str:
    return f"{attempt_path(attempt)}{table.name}/"


def put(local_file: str, attempt: str, table: ExportTable) -> str:
    return (
        f"PUT 'file://{local_file}' {stage_path(attempt, table)} "
        "OVERWRITE = TRUE AUTO_COMPRESS = FALSE"
    )


def create_staging(table: ExportTable, attempt: str) -> str:
    # TRANSIENT: no fail-safe storage for a table that lives minutes. Named by attempt, so no
    # other run ever loads into it or replaces it.
    return (
        f"CREATE OR REPLACE TRANSIENT TABLE {ident(staging_name(table, attempt))} "
        f"({column_ddl(table.columns)})"
    )


def copy_into_staging(attempt: str, table: ExportTable) -> str:
    # FORCE: the staging table was just re-created, so loading the attempt's files again is
    # exactly one copy of them (Snowflake's load metadata would otherwise skip files seen before).
    return (
        f"COPY INTO {ident(staging_name(table, attempt))} FROM {stage_path(attempt, table)} "
        "FILE_FORMAT = (TYPE = PARQUET) MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE FORCE = TRUE"
    )


def _key_join(table: ExportTable) -> str:
    return " AND ".join(f"t.{ident(k)} = s.{ident(k)}" for k in table.key)


def _changed(table: ExportTable) -> str | None:
    others = [c for c in table.columns if c.name not in table.key]
    if not others:
        return None
    return " OR ".join(f"NOT EQUAL_NULL(t.{ident(c.name)}, s.{ident(c.name)})" for c in others)


def merge_source(table: ExportTable, attempt: str) -> str:
    """The MERGE source: the attempt's staging rows, one per key, and none at all unless this
    run still holds the lock (`HELD`, checked in the same statement as the change)."""
    keys = ", ".join(f"s.{ident(k)}" for k in table.key)
    return (
        f"(SELECT s.* FROM {ident(staging_name(table, attempt))} AS s WHERE {HELD} "
        f"QUALIFY ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY {keys}) = 1)"
    )


def count_changes(table: ExportTable, attempt: str) -> str:
    """Rows MERGE will insert and update, counted before it runs (the run's recorded plan)."""
    first_key = ident(table.key[0])
    changed = _changed(table)
    updated = f"COUNT_IF(t.{first_key} IS NOT NULL AND ({changed}))" if changed is not None else "0"
    return (
        f"SELECT COUNT_IF(t.{first_key} IS NULL) AS INSERTED, {updated} AS UPDATED "
        f"FROM {merge_source(table, attempt)} AS s LEFT JOIN {ident(table.name)} AS t "
        f"ON {_key_join(table)}"
    )


def merge(table: ExportTable, attempt: str) -> str:
    """MERGE the staging rows into the target: update rows that differ, insert new ones."""
    names = [ident(c.name) for c in table.columns]
    others = [ident(c.name) for c in table.columns if c.name not in table.key]
    changed = _changed(table)
    parts = [
        f"MERGE INTO {ident(table.name)} AS t USING {merge_source(table, attempt)} AS s "
        f"ON {_key_join(table)}"
    ]
    if changed is not None:
        parts.append(
            f"WHEN MATCHED AND ({changed}) THEN UPDATE SET "
            + ", ".join(f"{name} = s.{name}" for name in others)
        )
    parts.append(
        f"WHEN NOT MATCHED THEN INSERT ({', '.join(names)}) "
        f"VALUES ({', '.join('s.' + name for name in names)})"
    )
    return " ".join(parts)


def drop_table(name: str) -> str:
    return f"DROP TABLE IF EXISTS {ident(name)}"


def remove_attempt_files(attempt: str) -> str:
    return f"REMOVE {attempt_path(attempt)}"


LIST_STAGE = f"LIST @{STAGE_NAME}"
TABLES_IN_SCHEMA = (
    "SELECT TABLE_NAME FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = %(schema)s"
)


def render(statement: str, params: dict[str, object] | None) -> str:
    """A statement with its parameters written in as literals (what a dry run prints); a
    parameter not given stays a placeholder."""
    if not params:
        return statement
    return statement % _Literals({k: sql_value(v) for k, v in params.items()})


class _Literals(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return f"%({key})s"


def sql_value(value: object) -> str:
    if value is None:
        return "NULL"
    return str(value) if isinstance(value, int | float) else literal(str(value))


# -- bookkeeping (pyformat parameters, bound by the driver) -------------------------------------

SEED_LOCK = (
    'INSERT INTO "EXPORT_LOCK" ("LOCK_NAME") SELECT %(name)s '
    'WHERE NOT EXISTS (SELECT 1 FROM "EXPORT_LOCK" WHERE "LOCK_NAME" = %(name)s)'
)
ACQUIRE_LOCK = (
    'UPDATE "EXPORT_LOCK" SET "HOLDER" = %(holder)s, "HOLDER_INFO" = %(info)s, '
    '"ACQUIRED_AT" = %(now)s, "EXPIRES_AT" = %(expires)s '
    'WHERE "LOCK_NAME" = %(name)s AND ("HOLDER" IS NULL OR "HOLDER" = %(holder)s '
    'OR "EXPIRES_AT" < %(now)s)'
)
TAKE_OVER_LOCK = (
    'UPDATE "EXPORT_LOCK" SET "HOLDER" = %(holder)s, "HOLDER_INFO" = %(info)s, '
    '"ACQUIRED_AT" = %(now)s, "EXPIRES_AT" = %(expires)s '
    'WHERE "LOCK_NAME" = %(name)s AND "HOLDER" = %(dead)s'
)
READ_LOCK = (
    'SELECT "HOLDER", "HOLDER_INFO", "EXPIRES_AT" FROM "EXPORT_LOCK" WHERE "LOCK_NAME" = %(name)s'
)
RENEW_LOCK = (
    'UPDATE "EXPORT_LOCK" SET "EXPIRES_AT" = %(expires)s '
    'WHERE "LOCK_NAME" = %(name)s AND "HOLDER" = %(holder)s'
)
RELEASE_LOCK = (
    'UPDATE "EXPORT_LOCK" SET "HOLDER" = NULL, "HOLDER_INFO" = NULL, "ACQUIRED_AT" = NULL, '
    '"EXPIRES_AT" = NULL WHERE "LOCK_NAME" = %(name)s AND "HOLDER" = %(holder)s'
)
LAST_RUN = 'SELECT "RUN_ID", "RUN_SEQ" FROM "EXPORT_RUNS" ORDER BY "RUN_SEQ" DESC LIMIT 1'
TABLE_HISTORY = (
    'SELECT t."TABLE_NAME", t."CONTENT_HASH", t."WATERMARK", r."RUN_SEQ" '
    'FROM "EXPORT_RUN_TABLES" AS t JOIN "EXPORT_RUNS" AS r ON r."RUN_ID" = t."RUN_ID"'
)
RUN_PLAN = (
    'SELECT "TABLE_NAME", "ROWS_INSERTED", "ROWS_UPDATED", "COLUMNS_ADDED" '
    'FROM "EXPORT_RUN_TABLES" WHERE "RUN_ID" = %(run_id)s'
)
RECORD_TABLE = (
    'INSERT INTO "EXPORT_RUN_TABLES" ("RUN_ID", "TABLE_NAME", "CONTENT_HASH", "ROWS_EXPORTED", '
    '"ROWS_INSERTED", "ROWS_UPDATED", "BYTES", "FILES", "COLUMNS_ADDED", "WATERMARK") '
    "SELECT %(run_id)s, %(table)s, %(hash)s, %(rows)s, %(inserted)s, %(updated)s, %(bytes)s, "
    "%(files)s, %(columns_added)s, %(watermark)s "
    'WHERE NOT EXISTS (SELECT 1 FROM "EXPORT_RUN_TABLES" '
    f'WHERE "RUN_ID" = %(run_id)s AND "TABLE_NAME" = %(table)s) AND {HELD}'
)
RECORD_RUN = (
    'INSERT INTO "EXPORT_RUNS" ("RUN_ID", "RUN_SEQ", "PREVIOUS_RUN_ID", "STARTED_AT", '
    '"FINISHED_AT", "STATUS", "TABLES", "ROWS_EXPORTED", "ROWS_INSERTED", "ROWS_UPDATED", '
    '"BYTES", "HOST") '
    'SELECT %(run_id)s, (SELECT COALESCE(MAX("RUN_SEQ"), 0) + 1 FROM "EXPORT_RUNS"), '
    "%(previous)s, %(started)s, %(finished)s, 'succeeded', %(tables)s, %(rows)s, %(inserted)s, "
    "%(updated)s, %(bytes)s, %(host)s "
    f'WHERE NOT EXISTS (SELECT 1 FROM "EXPORT_RUNS" WHERE "RUN_ID" = %(run_id)s) AND {HELD}'
)
CURRENT_SCHEMA = "SELECT CURRENT_DATABASE(), CURRENT_SCHEMA()"
