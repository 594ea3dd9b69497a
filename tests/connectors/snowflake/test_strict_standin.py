"""The stricter stand-in (`strict.py`): each Snowflake behaviour fails a naive exporter.

Every test runs the same naive statements twice: on a lenient session (plain fakesnow, which lets
the mistake through) and on a strict one (what Snowflake does), and shows the difference a real
account would make. The export itself runs against the strict stand-in in every export test.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import snowflake.connector.errors as sf_errors

from connectors.snowflake.auth import connect
from connectors.snowflake.config import SnowflakeCredentials
from tests.connectors.snowflake.conftest import TEST_SESSION_PARAMETERS
from tests.connectors.snowflake.gateway import LoginGateway
from tests.connectors.snowflake.strict import LENIENT_PARAMETER


class Session:
    """A cursor on a fresh schema, strict (Snowflake's rules) or lenient (plain fakesnow)."""

    def __init__(self, credentials: SnowflakeCredentials, *, strict: bool) -> None:
        schema = f"STRICT_{uuid.uuid4().hex[:10].upper()}"
        parameters: dict[str, Any] = dict(TEST_SESSION_PARAMETERS)
        if not strict:
            parameters[LENIENT_PARAMETER] = True
        self.connection = connect(
            dataclasses.replace(credentials, schema=schema), session_parameters=parameters
        )
        self.cursor = self.connection.cursor()
        self.run("CREATE STAGE IF NOT EXISTS S")

    def run(self, statement: str) -> list[tuple[Any, ...]]:
        self.cursor.execute(statement)
        return [tuple(row) for row in self.cursor.fetchall()]


@pytest.fixture(params=["lenient", "strict"])
def session(
    request: pytest.FixtureRequest, registered_snowflake_credentials: SnowflakeCredentials
) -> Iterator[Session]:
    opened = Session(registered_snowflake_credentials, strict=request.param == "strict")
    yield opened
    opened.connection.close()


def _parquet(folder: Path, rows: dict[str, list[Any]], *, compression: str = "snappy") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "part-00000.parquet"
    pl.DataFrame(rows).write_parquet(path, compression=compression)  # type: ignore[arg-type]
    return path


def _put(session: Session, file: Path, *, overwrite: bool) -> None:
    option = " OVERWRITE = TRUE" if overwrite else ""
    session.run(f"PUT 'file://{file}' @S/load/{option} AUTO_COMPRESS = FALSE")


COPY = (
    "COPY INTO {table} FROM @S/load/ FILE_FORMAT = (TYPE = PARQUET) "
    "MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE{force}"
)


def _copy(session: Session, table: str, *, force: bool = False) -> None:
    session.run(COPY.format(table=table, force=" FORCE = TRUE" if force else ""))


def test_merge_whose_source_holds_a_key_twice_fails_with_100090(
    session: Session, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # The naive exporter: COPY (retried after a lost answer, so twice) into a staging table, then
    # MERGE it as it is.
    session.run("CREATE TABLE T (K INT, V VARCHAR)")
    session.run("INSERT INTO T VALUES (1, 'old')")
    session.run("CREATE TABLE T_STAGING (K INT, V VARCHAR)")
    _put(session, _parquet(tmp_path, {"K": [1], "V": ["new"]}), overwrite=True)
    _copy(session, "T_STAGING", force=True)
    _copy(session, "T_STAGING", force=True)
    merge = (
        "MERGE INTO T AS t USING T_STAGING AS s ON t.K = s.K "
        "WHEN MATCHED THEN UPDATE SET V = s.V WHEN NOT MATCHED THEN INSERT (K, V) VALUES (s.K, s.V)"
    )
    if "lenient" in request.node.callspec.id:
        session.run(merge)  # fakesnow picks one source row silently
        assert session.run("SELECT * FROM T") == [(1, "new")]
        return
    with pytest.raises(sf_errors.ProgrammingError) as refused:
        session.run(merge)
    assert refused.value.errno == 100090
    assert "Duplicate row detected during DML action" in str(refused.value)


def test_copy_skips_a_file_by_name_and_checksum_not_by_name_alone(
    session: Session, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # The naive exporter keeps one staging table and relies on COPY's load metadata to skip a
    # file it loaded already; a retry re-writes the same rows with other bytes, same name.
    session.run("CREATE TABLE T_STAGING (K INT, V VARCHAR)")
    rows = {"K": [1, 2], "V": ["a", "b"]}
    _put(session, _parquet(tmp_path / "a", rows, compression="snappy"), overwrite=True)
    _copy(session, "T_STAGING")
    _put(session, _parquet(tmp_path / "b", rows, compression="zstd"), overwrite=True)
    _copy(session, "T_STAGING")

    staged = session.run("SELECT COUNT(*) FROM T_STAGING")[0][0]
    # Snowflake loads the changed file again: every row twice in staging.
    assert staged == (2 if "lenient" in request.node.callspec.id else 4)

    _copy(session, "T_STAGING")  # same name, same content: skipped by both
    _copy(session, "T_STAGING", force=True)  # FORCE loads it again in both
    assert session.run("SELECT COUNT(*) FROM T_STAGING")[0][0] == staged + 2


def test_copy_load_metadata_expires_after_64_days(
    session: Session,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    snowflake_server: LoginGateway,
) -> None:
    # The naive exporter re-PUTs the same file every run and relies on the load metadata to
    # never load it twice.
    session.run("CREATE TABLE T (K INT, V VARCHAR)")
    file = _parquet(tmp_path, {"K": [1], "V": ["a"]})
    _put(session, file, overwrite=True)
    _copy(session, "T")
    snowflake_server.rules.advance_days(65)
    try:
        _put(session, file, overwrite=True)
        _copy(session, "T")
    finally:
        snowflake_server.rules.advance_days(-65)
    expected = 1 if "lenient" in request.node.callspec.id else 2
    assert session.run("SELECT COUNT(*) FROM T") == [(expected,)]


def test_put_without_overwrite_keeps_the_staged_file(
    session: Session, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # The naive exporter writes the same file name each run and PUTs it without OVERWRITE.
    session.run("CREATE TABLE T_STAGING (K INT, V VARCHAR)")
    _put(session, _parquet(tmp_path / "a", {"K": [1], "V": ["first run"]}), overwrite=False)
    _put(session, _parquet(tmp_path / "b", {"K": [1], "V": ["second run"]}), overwrite=False)
    _copy(session, "T_STAGING", force=True)

    loaded = session.run("SELECT V FROM T_STAGING")
    # Snowflake kept the first file: the second run would load stale rows.
    assert (
        loaded == [("second run",)] if "lenient" in request.node.callspec.id else [("first run",)]
    )
