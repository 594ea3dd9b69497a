"""Helpers for the export tests: sample tables written by hand, and reading Snowflake back.

Every test exports into its own schema of the shared fakesnow database (behind the JWT login
gateway), so tests never see each other's tables.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

from connectors.snowflake.auth import connect
from connectors.snowflake.config import SnowflakeCredentials
from connectors.snowflake.tables import (
    AMOUNT,
    INTEGER,
    LEDGER_ENTRIES,
    PLANS,
    VARCHAR,
    Column,
    ExportTable,
)
from tests.connectors.snowflake.conftest import PASSPHRASE, TEST_SESSION_PARAMETERS

D = Decimal
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


class SchemaTarget:
    """A connection factory to one schema of the test database (what the export gets), plus a
    separate reading connection for the test's own independent queries."""

    def __init__(self, credentials: SnowflakeCredentials, schema: str) -> None:
        self.schema = schema
        self._credentials = dataclasses.replace(credentials, schema=schema)
        self._reader: Any = None

    def __call__(self) -> Any:
        return connect(self._credentials, session_parameters=TEST_SESSION_PARAMETERS)

    def cursor(self) -> Any:
        if self._reader is None:
            self._reader = self()
        return self._reader.cursor()


def credentials_environment(
    credentials: SnowflakeCredentials, schema: str, home: Path
) -> dict[str, str]:
    """The SNOWFLAKE_* variables a command line run reads to log into the stand-in as
    `credentials` (key file and PASSPHRASE) in `schema`; `home` is a SNOWFLAKE_HOME without a
    connections.toml."""
    assert credentials.private_key_file is not None
    return {
        "SNOWFLAKE_ACCOUNT": credentials.account,
        "SNOWFLAKE_USER": credentials.user,
        "SNOWFLAKE_PRIVATE_KEY_FILE": str(credentials.private_key_file),
        "SNOWFLAKE_PRIVATE_KEY_FILE_PWD": PASSPHRASE,
        "SNOWFLAKE_DATABASE": str(credentials.database),
        "SNOWFLAKE_SCHEMA": schema,
        "SNOWFLAKE_HOST": str(credentials.host),
        "SNOWFLAKE_PORT": str(credentials.port),
        "SNOWFLAKE_PROTOCOL": "http",
        "SNOWFLAKE_HOME": str(home),
    }


def schema_connect(credentials: SnowflakeCredentials, schema: str | None = None) -> SchemaTarget:
    """A connection factory to a fresh schema (or `schema`) of the test database."""
    return SchemaTarget(credentials, schema or f"EXPORT_{uuid.uuid4().hex[:10].upper()}")


def ledger_frame(
    rows: list[tuple[int, str, str, str, str]], *, replay_id: str = "r1", scenario: str = "base"
) -> pl.DataFrame:
    """Ledger rows (entry_id, customer, entry_type, amount, balance_after), one per minute."""
    return pl.DataFrame(
        {
            "replay_id": [replay_id] * len(rows),
            "scenario": [scenario] * len(rows),
            "entry_id": [r[0] for r in rows],
            "timestamp": [T0.replace(minute=r[0] % 60) for r in rows],
            "customer_id": [r[1] for r in rows],
            "currency_id": ["credits"] * len(rows),
            "entry_type": [r[2] for r in rows],
            "grant_id": [f"{r[1]}:g" for r in rows],
            "grant_type": ["PAID"] * len(rows),
            "grant_source": ["top_up"] * len(rows),
            "amount": [D(r[3]) for r in rows],
            "balance_after": [D(r[4]) for r in rows],
            "event_id": [None if r[2] == "GRANTED" else f"e{r[0]}" for r in rows],
            "feature_id": [None if r[2] == "GRANTED" else "chat" for r in rows],
        },
        schema_overrides={"amount": pl.Decimal(38, 2), "balance_after": pl.Decimal(38, 2)},
    )


LEDGER_V1 = [
    (1, "acme", "GRANTED", "100.00", "100.00"),
    (2, "acme", "CONSUMED", "-1.25", "98.75"),
    (3, "acme", "CONSUMED", "-0.75", "98.00"),
]
LEDGER_V2 = [
    *LEDGER_V1,
    (4, "acme", "CONSUMED", "-2.00", "96.00"),
    (5, "acme", "CONSUMED", "-6.00", "90.00"),
]


def plans_frame(pro_price: str = "49.00") -> pl.DataFrame:
    """Two plan versions of `pro` and one of `team` (the store's columns)."""
    return pl.DataFrame(
        {
            "plan_id": ["pro", "pro", "team"],
            "version": [1, 2, 1],
            "published_at": [T0, T0.replace(day=2), T0],
            "status": ["active", "active", "archived"],
            "name": ["Pro", "Pro", "Team"],
            "description": ["", "more credits", ""],
            "price_amount": [D("29.00"), D(pro_price), D("99.00")],
            "price_cadence": ["monthly", "monthly", "yearly"],
            "price_currency": ["USD", "USD", "USD"],
        },
        schema_overrides={"price_amount": pl.Decimal(38, 2)},
    )


def sample_tables(
    *, ledger: list[tuple[int, str, str, str, str]], pro_price: str = "49.00"
) -> list[ExportTable]:
    return [PLANS.bind(plans_frame(pro_price)), LEDGER_ENTRIES.bind(ledger_frame(ledger))]


def custom_table(
    frame: pl.DataFrame, *, note_column: bool = False, amount_type: Any = AMOUNT
) -> ExportTable:
    """A table defined on the spot through the generic interface (not one of the known specs)."""
    columns = [Column(name="id", type=INTEGER), Column(name="amount", type=amount_type)]
    if note_column:
        columns.append(Column(name="note", type=VARCHAR))
    return ExportTable(name="custom_things", columns=tuple(columns), key=("id",), frame=frame)


def fetch(target: SchemaTarget, statement: str) -> list[tuple[Any, ...]]:
    """Rows of a query run on the test's own connection (not the export's)."""
    cursor = target.cursor()
    cursor.execute(statement)
    return [tuple(row) for row in cursor.fetchall()]


def table_names(connect_fn: SchemaTarget) -> set[str]:
    rows = fetch(
        connect_fn,
        "SELECT TABLE_NAME FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = CURRENT_SCHEMA()",
    )
    return {str(r[0]) for r in rows}


# Columns that legitimately differ between two runs (wall-clock times, host).
VOLATILE = {"EXPORT_RUNS": ("STARTED_AT", "FINISHED_AT", "HOST")}


def snapshot(target: SchemaTarget, tables: list[str]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of each table (sorted), without the volatile bookkeeping columns."""
    result: dict[str, list[tuple[Any, ...]]] = {}
    for name in tables:
        cursor = target.cursor()
        cursor.execute(f'SELECT * FROM "{name}"')
        columns = [d[0].upper() for d in cursor.description]
        rows = cursor.fetchall()
        keep = [i for i, c in enumerate(columns) if c not in VOLATILE.get(name, ())]
        result[name] = sorted((tuple(row[i] for i in keep) for row in rows), key=repr)
    return result
