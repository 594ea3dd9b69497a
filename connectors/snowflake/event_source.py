"""Usage events read straight from Snowflake: `--events snowflake:DB.SCHEMA.TABLE` or
`--events "snowflake:SELECT …"` (the `snowflake` source of the `pricing_lab.event_sources`
entry-point group, registered in pyproject.toml).

The connection is the export's: key-pair (SNOWFLAKE_JWT) login with credentials from SNOWFLAKE_*
environment variables or connections.toml (`config.resolve_credentials`), the passphrase from
SNOWFLAKE_PRIVATE_KEY_FILE_PWD or a prompt. The table or query's rows come back as Arrow batches
(`fetch_arrow_batches`), and pricing_lab checks them like a file's rows (every rejected row
reported with its reason), costs them and replays them. Column names Snowflake folded to upper
case (unquoted identifiers: EVENT_ID) are given back in lower case (event_id).

What this does not do yet (docs/scale-out.md): evaluate meters and rates in the warehouse and
unload only costed consumptions as Parquet buckets (`COPY INTO @stage … PARTITION BY`); all events
of the table or query leave the warehouse.
"""

from __future__ import annotations

import re

import pyarrow as pa

from pricing_lab.errors import InputError

_PART = r'(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+")'
_TABLE = re.compile(rf"{_PART}(?:\.{_PART}){{0,2}}")
_QUERY = re.compile(r"\s*(SELECT|WITH)\b", re.IGNORECASE)


def events_statement(spec: str) -> str:
    """The SQL reading `spec`: a query as it is, or every row of a (qualified) table name."""
    if _QUERY.match(spec):
        return spec
    if _TABLE.fullmatch(spec.strip()):
        return f"SELECT * FROM {spec.strip()}"
    raise InputError(
        f"snowflake:{spec}: not a table name (DB.SCHEMA.TABLE) nor a query (SELECT … / WITH …)"
    )


def read_events(spec: str) -> pa.Table:
    """The rows of the table or query `spec` as one Arrow table (the entry point)."""
    from connectors.snowflake.auth import SESSION_PARAMETERS, connect
    from connectors.snowflake.cli import passphrase_prompt
    from connectors.snowflake.config import resolve_credentials
    from connectors.snowflake.errors import SnowflakeDriverError

    statement = events_statement(spec)
    credentials = resolve_credentials()
    connection = connect(
        credentials, prompt=passphrase_prompt(), session_parameters=SESSION_PARAMETERS
    )
    try:
        cursor = connection.cursor()
        try:
            cursor.execute(statement)
        except Exception as exc:  # the driver's ProgrammingError: unknown table, bad SQL
            raise InputError(f"snowflake:{spec}: {exc}") from None
        names = [_column_name(d[0]) for d in cursor.description]
        parts = [part for part in cursor.fetch_arrow_batches() if part.num_rows]
    except InputError:
        raise
    except Exception as exc:
        raise SnowflakeDriverError(f"reading snowflake:{spec} failed: {exc}") from None
    finally:
        connection.close()
    if not parts:
        return pa.table({name: pa.array([], pa.string()) for name in names})
    return pa.concat_tables(parts).rename_columns(names)


def _column_name(name: str) -> str:
    return name.lower() if name.isupper() else name
