"""Usage events read straight from Snowflake: `--events snowflake:DB.SCHEMA.TABLE` or
`--events "snowflake:SELECT …"` (the `snowflake` source of the `pricing_lab.event_sources`
entry-point group, registered in pyproject.toml).

The connection is the export's: key-pair (SNOWFLAKE_JWT) login with credentials from SNOWFLAKE_*
environment variables or connections.toml (`config.resolve_credentials`), the passphrase from
SNOWFLAKE_PRIVATE_KEY_FILE_PWD or a prompt. Column names Snowflake folded to upper case (unquoted
identifiers: EVENT_ID) are given back in lower case (event_id).

`SOURCE` is a `pricing_lab.events.plugins.WarehouseSource`: `read` returns every row and column as
Arrow batches; `cost` reads one row for the columns' types, asks pricing_lab for its costing plan
and runs it as one query (`costing_sql`): the meters' filters and the rates' formulas are
evaluated in Snowflake and only the columns pricing_lab still reads leave it, with one match
column per meter and one raw-cost column per rate; rows certainly accepted that match no meter
stay there, counted (the known customer ids sent as a temporary table of bound values).
pricing_lab checks the rows (every rejected row reported with its reason) and finishes the
costing from those columns. When the costing query
fails (a value beyond NUMBER(38, 12)), every row and column is read instead, costed locally with
the same results. Not done (docs/scale-out.md): unloading the costed rows as Parquet buckets
(`unload.py` writes the `COPY INTO @stage … PARTITION BY` SQL; the stand-in cannot run it), so the
rows come back as Arrow batches.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa

from connectors.snowflake.auth import Timeouts
from connectors.snowflake.costing_sql import costing_sql
from pricing_lab.errors import InputError
from pricing_lab.events.plugins import CostingPlan
from pricing_lab.formula.sql_base import quote_identifier

_PART = r'(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+")'
_TABLE = re.compile(rf"{_PART}(?:\.{_PART}){{0,2}}")
_QUERY = re.compile(r"\s*(SELECT|WITH)\b", re.IGNORECASE)


def events_statement(spec: str) -> str:
    """The SQL reading `spec`: a query (without a final `;`), or every row of a (qualified)
    table name."""
    if _QUERY.match(spec):
        return re.sub(r"[\s;]+\Z", "", spec)  # wrapped in a subquery when costed
    if _TABLE.fullmatch(spec.strip()):
        return f"SELECT * FROM {spec.strip()}"
    raise InputError(
        f"snowflake:{spec}: not a table name (DB.SCHEMA.TABLE) nor a query (SELECT … / WITH …)"
    )


def read_events(spec: str) -> pa.Table:
    """The rows of the table or query `spec` as one Arrow table."""
    return SOURCE.read(spec)


class SnowflakeEventSource:
    """The `snowflake` source (`pricing_lab.events.plugins.WarehouseSource`)."""

    def read(self, spec: str) -> pa.Table:
        """Every row and column of the table or query `spec`."""
        statement = events_statement(spec)
        with _connection(spec) as cursor:
            names = _execute(cursor, spec, statement)
            return _fetch(cursor, spec, names)

    def cost(self, spec: str, plan_for: Callable[[pa.Schema], CostingPlan]) -> pa.Table:
        """The rows of `spec` with the meters and rates of `plan_for(its columns)` evaluated in
        the warehouse (`costing_sql`); every row and column when the warehouse cannot run the
        plan."""
        statement = events_statement(spec)
        with _connection(spec) as cursor:
            # One row tells the columns' types as the rows will come.
            originals = _execute(cursor, spec, f"SELECT * FROM ({statement}) LIMIT 1", raw=True)
            names = {_column_name(name): name for name in originals}
            plan = plan_for(_fetch(cursor, spec, list(names)).schema)
            if not plan.meters and not plan.rates and len(plan.keep) == len(names):
                _execute(cursor, spec, statement)
                return _fetch(cursor, spec, list(names))
            try:
                customers = _customer_table(cursor, plan)
                cursor.execute(costing_sql(statement, names, plan, customers))
            except Exception as exc:  # e.g. a value beyond NUMBER(38, 12): costed locally
                first_line = (str(exc).strip().splitlines() or ["failed"])[0]
                print(
                    f"pricing-lab: costing in the warehouse failed ({first_line}); reading every "
                    "row and column of snowflake:" + spec,
                    file=sys.stderr,
                )
                _execute(cursor, spec, statement)
                return _fetch(cursor, spec, list(names))
            return _fetch(cursor, spec, [_column_name(d[0]) for d in cursor.description])


SOURCE = SnowflakeEventSource()

CUSTOMERS_TABLE = "__pricing_lab_customers"


def _customer_table(cursor: Any, plan: CostingPlan) -> str | None:
    """The known customer ids of `plan.stay` in a temporary table of the session (bound
    values, not SQL text), or None when the plan has no customer list."""
    if plan.stay is None or plan.stay.customers is None:
        return None
    table = quote_identifier(CUSTOMERS_TABLE)
    cursor.execute(f"CREATE OR REPLACE TEMPORARY TABLE {table} (customer_id VARCHAR)")
    if plan.stay.customers:
        cursor.executemany(f"INSERT INTO {table} VALUES (%s)", [(c,) for c in plan.stay.customers])
    return table


# The driver's `network` timeout is also the longest one statement may run: costing a month of
# a big table takes minutes, not the export's 45 s (auth.Timeouts).
TIMEOUTS = Timeouts(network=3600)


@contextmanager
def _connection(spec: str) -> Iterator[Any]:
    """A cursor of a key-pair connection made as the export makes it; closed at the end."""
    from connectors.snowflake.auth import SESSION_PARAMETERS, connect
    from connectors.snowflake.cli import passphrase_prompt
    from connectors.snowflake.config import resolve_credentials
    from connectors.snowflake.errors import SnowflakeDriverError

    credentials = resolve_credentials()
    # Decimals come as Arrow decimals (exact), not as floating point.
    connection = connect(
        credentials,
        prompt=passphrase_prompt(),
        session_parameters=SESSION_PARAMETERS,
        timeouts=TIMEOUTS,
        arrow_number_to_decimal=True,
    )
    try:
        yield connection.cursor()
    except (InputError, SnowflakeDriverError):
        raise
    except Exception as exc:
        raise SnowflakeDriverError(f"reading snowflake:{spec} failed: {exc}") from None
    finally:
        connection.close()


def _execute(cursor: Any, spec: str, statement: str, *, raw: bool = False) -> list[str]:
    """Run the user's `statement` (a bad name or SQL is bad input); its columns' names."""
    try:
        cursor.execute(statement)
    except Exception as exc:  # the driver's ProgrammingError: unknown table, bad SQL
        first_line = (str(exc).strip().splitlines() or ["failed"])[0]  # not our wrapping SQL
        raise InputError(f"snowflake:{spec}: {first_line}") from None
    return [d[0] if raw else _column_name(d[0]) for d in cursor.description]


def _fetch(cursor: Any, spec: str, names: list[str]) -> pa.Table:
    """The rows of the executed statement as one Arrow table of columns `names`."""
    parts = [part for part in cursor.fetch_arrow_batches() if part.num_rows]
    if not parts:
        return pa.table({name: pa.array([], pa.string()) for name in names})
    return pa.concat_tables(parts).rename_columns(names)


def _column_name(name: str) -> str:
    return name.lower() if name.isupper() else name
