"""The stricter stand-in (`strict.py`): each Snowflake behaviour fails a naive exporter.

Every test runs the same naive statements twice: on a lenient session (plain fakesnow, which lets
the mistake through) and on a strict one (what Snowflake does), and shows the difference a real
account would make. The export itself runs against the strict stand-in in every export test.
"""

from __future__ import annotations

import dataclasses
import threading
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


def test_a_failed_statement_in_a_transaction_is_rolled_back_alone(
    session: Session, request: pytest.FixtureRequest
) -> None:
    # The naive exporter merges and records in one transaction and commits whatever happened,
    # trusting that a failure rolls everything back.
    session.run("CREATE TABLE T (K INT)")
    session.run("BEGIN")
    session.run("INSERT INTO T VALUES (1)")
    with pytest.raises(sf_errors.ProgrammingError):
        session.run("INSERT INTO MISSING_RECORD_TABLE VALUES (1)")
    if "strict" in request.node.callspec.id:
        session.run("INSERT INTO T VALUES (2)")  # the transaction goes on
    session.run("COMMIT")

    rows = session.run("SELECT K FROM T ORDER BY K")
    # Snowflake commits the rows written around the failure: the "atomic" load was not.
    assert rows == ([] if "lenient" in request.node.callspec.id else [(1,), (2,)])


def test_sessions_wait_for_each_other_and_a_check_then_set_lock_admits_both(
    registered_snowflake_credentials: SnowflakeCredentials,
) -> None:
    # The naive lock: read the holder, and if there is none, set it — in one transaction. On
    # DuckDB the second writer fails at once; on Snowflake it waits for the first transaction,
    # then overwrites it: both exports believe they hold the lock.
    first = Session(registered_snowflake_credentials, strict=True)
    schema = first.connection.schema
    second_connection = connect(
        dataclasses.replace(registered_snowflake_credentials, schema=schema),
        session_parameters=TEST_SESSION_PARAMETERS,
    )
    second = second_connection.cursor()
    first.run("CREATE TABLE LOCK_ROW (HOLDER VARCHAR)")
    first.run("INSERT INTO LOCK_ROW VALUES (NULL)")
    first.run("BEGIN")
    second.execute("BEGIN")
    assert first.run("SELECT HOLDER FROM LOCK_ROW") == [(None,)]
    second.execute("SELECT HOLDER FROM LOCK_ROW")
    assert second.fetchall() == [(None,)]  # both saw it free
    first.run("UPDATE LOCK_ROW SET HOLDER = 'first'")
    done = threading.Event()

    def take() -> None:
        second.execute("UPDATE LOCK_ROW SET HOLDER = 'second'")  # waits for the first
        done.set()

    taker = threading.Thread(target=take)
    taker.start()
    assert not done.wait(1.0)  # still waiting on the first transaction's lock
    first.run("COMMIT")
    taker.join(30)
    assert done.is_set()
    second.execute("COMMIT")

    assert first.run("SELECT HOLDER FROM LOCK_ROW") == [("second",)]
    second_connection.close()
    first.connection.close()
