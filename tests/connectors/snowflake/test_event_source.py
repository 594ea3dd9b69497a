"""`pricing-lab simulate --events snowflake:…`: events read from the Snowflake stand-in (fakesnow
behind the key-pair gateway, the real connector, credentials from SNOWFLAKE_* variables) give
the files the same events give from a Parquet file."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from connectors.snowflake.config import SnowflakeCredentials
from connectors.snowflake.event_source import events_statement
from pricing_lab.cli import main
from pricing_lab.errors import InputError
from pricing_lab.simulation.simulate import OUTPUT_FILES
from tests.connectors.snowflake.export_support import credentials_environment, schema_connect
from tests.simulation.test_simulate import random_events, write_inputs


@pytest.fixture()
def warehouse_events(
    registered_snowflake_credentials: SnowflakeCredentials,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> tuple[dict[str, Path], str]:
    """The simulate inputs, and the events also in a table of a fresh schema: its name."""
    paths = write_inputs(tmp_path / "in", random_events(120, seed=3), more=True)
    creds = registered_snowflake_credentials
    target = schema_connect(creds)
    cursor = target.cursor()
    cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {target.schema}")
    table = f"{creds.database}.{target.schema}.USAGE_EVENTS"
    cursor.execute(
        f"CREATE TABLE {table} (event_id VARCHAR, customer_id VARCHAR, event_name VARCHAR, "
        f'"timestamp" TIMESTAMP_NTZ, tokens NUMBER(38, 0))'
    )
    rows = pl.read_parquet(paths["events"]).rows()
    cursor.executemany(f"INSERT INTO {table} VALUES (%s, %s, %s, %s, %s)", rows)
    environment = credentials_environment(creds, target.schema, tmp_path / "no-snowflake-home")
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return paths, table


def _simulate(
    capsys: pytest.CaptureFixture[str],
    paths: dict[str, Path],
    events: str,
    out: Path,
    *options: str,
) -> str:
    """`pricing-lab simulate` of `events`; its stderr, after checking it exited with 0."""
    status = main(
        [
            "simulate", "--catalog", str(paths["catalog"]), "--events", events,
            "--customers", str(paths["customers"]), "--out", str(out), "--quiet", *options,
        ]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert status == 0, err
    return err


def test_events_from_a_snowflake_table_or_query_give_the_files_of_a_parquet_file(
    warehouse_events: tuple[dict[str, Path], str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    paths, table = warehouse_events
    _simulate(capsys, paths, str(paths["events"]), tmp_path / "file")
    _simulate(capsys, paths, f"snowflake:{table}", tmp_path / "table")
    query = f"snowflake:SELECT * FROM {table} WHERE customer_id <> 'nobody'"
    _simulate(capsys, paths, query, tmp_path / "query")
    buckets = ("--executor", "local", "--buckets", "3")  # docs/scale-out.md: in buckets too
    _simulate(capsys, paths, f"snowflake:{table}", tmp_path / "buckets", *buckets)
    for name in OUTPUT_FILES:
        expected = (tmp_path / "file" / name).read_bytes()
        assert (tmp_path / "table" / name).read_bytes() == expected, name
        assert (tmp_path / "query" / name).read_bytes() == expected, name
        assert (tmp_path / "buckets" / name).read_bytes() == expected, name
    assert pl.read_parquet(tmp_path / "table" / "ledger.parquet").height > 100
    assert pl.read_parquet(tmp_path / "table" / "rejected_events.parquet").height >= 1


def test_a_snowflake_source_that_is_neither_a_table_nor_a_query_is_refused() -> None:
    assert events_statement("DB.S.T") == "SELECT * FROM DB.S.T"
    assert events_statement("SELECT * FROM T ; \n") == "SELECT * FROM T"
    with pytest.raises(InputError, match="not a table name"):
        events_statement("DB.S.T; DROP TABLE X")
