"""The Snowflake export against fakesnow behind the JWT login gateway, with the real connector.

Expected table contents are written by hand (or read with an independent query), never computed
by the export code.
"""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import polars as pl
import pytest
import snowflake.connector.errors as sf_errors

from connectors.snowflake.config import SnowflakeCredentials
from connectors.snowflake.export import (
    STEPS,
    ExportOptions,
    RetryPolicy,
    export_tables,
    fail_after,
)
from connectors.snowflake.export_errors import (
    ExportLockedError,
    ExportTerminalError,
    InjectedFault,
    SchemaConflictError,
)
from connectors.snowflake.tables import LEDGER_ENTRIES, VARCHAR, to_arrow
from pricing_lab.errors import ValidationError
from tests.connectors.snowflake.export_support import (
    LEDGER_V1,
    LEDGER_V2,
    D,
    custom_table,
    fetch,
    ledger_frame,
    sample_tables,
    schema_connect,
    snapshot,
    table_names,
)

ALL_TABLES = ["PLANS", "LEDGER_ENTRIES", "EXPORT_RUNS", "EXPORT_RUN_TABLES", "EXPORT_LOCK"]
FAST_RETRY = RetryPolicy(attempts=3, initial_delay=0.01, max_delay=0.01)


def test_first_export_loads_every_row_with_exact_numbers(
    registered_snowflake_credentials: SnowflakeCredentials,
) -> None:
    connect = schema_connect(registered_snowflake_credentials)
    report = export_tables(connect, sample_tables(ledger=LEDGER_V1))

    assert report.status == "succeeded"
    assert {(t.name, t.rows, t.inserted, t.updated) for t in report.tables} == {
        ("plans", 3, 3, 0),
        ("ledger_entries", 3, 3, 0),
    }
    assert report.bytes > 0
    ledger = fetch(
        connect,
        'SELECT "ENTRY_ID", "ENTRY_TYPE", "AMOUNT", "BALANCE_AFTER", "EVENT_ID" '
        'FROM "LEDGER_ENTRIES" ORDER BY "ENTRY_ID"',
    )
    assert ledger == [
        (1, "GRANTED", D("100"), D("100"), None),
        (2, "CONSUMED", D("-1.25"), D("98.75"), "e2"),
        (3, "CONSUMED", D("-0.75"), D("98"), "e3"),
    ]
    assert all(isinstance(row[2], Decimal) for row in ledger)
    types = fetch(
        connect,
        "SELECT COLUMN_NAME, DATA_TYPE, NUMERIC_PRECISION, NUMERIC_SCALE "
        "FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = CURRENT_SCHEMA() "
        "AND TABLE_NAME = 'LEDGER_ENTRIES' AND COLUMN_NAME IN ('AMOUNT', 'BALANCE_AFTER')",
    )
    assert sorted(types) == [("AMOUNT", "NUMBER", 38, 12), ("BALANCE_AFTER", "NUMBER", 38, 12)]
    runs = fetch(connect, 'SELECT "RUN_ID", "RUN_SEQ", "ROWS_INSERTED" FROM "EXPORT_RUNS"')
    assert runs == [(report.run_id, 1, 6)]


def test_running_again_with_nothing_new_changes_nothing(
    registered_snowflake_credentials: SnowflakeCredentials,
) -> None:
    connect = schema_connect(registered_snowflake_credentials)
    export_tables(connect, sample_tables(ledger=LEDGER_V1))
    before = snapshot(connect, ALL_TABLES)

    again = export_tables(connect, sample_tables(ledger=LEDGER_V1))

    assert again.status == "unchanged"
    assert (again.rows_inserted, again.rows_updated) == (0, 0)
    assert snapshot(connect, ALL_TABLES) == before


def test_changed_catalog_row_is_updated_and_only_new_ledger_rows_move(
    registered_snowflake_credentials: SnowflakeCredentials,
) -> None:
    connect = schema_connect(registered_snowflake_credentials)
    export_tables(connect, sample_tables(ledger=LEDGER_V1))
    # Entry 2 is altered in the source: it is below the watermark, so it must not move.
    altered = [LEDGER_V2[0], (2, "acme", "CONSUMED", "-9.99", "0"), *LEDGER_V2[2:]]

    report = export_tables(connect, sample_tables(ledger=altered, pro_price="59.00"))

    by_name = {t.name: t for t in report.tables}
    assert (by_name["plans"].inserted, by_name["plans"].updated) == (0, 1)
    assert (by_name["ledger_entries"].rows, by_name["ledger_entries"].inserted) == (2, 2)
    assert fetch(connect, 'SELECT "AMOUNT" FROM "LEDGER_ENTRIES" WHERE "ENTRY_ID" = 2') == [
        (D("-1.25"),)
    ]
    assert fetch(connect, 'SELECT COUNT(*) FROM "LEDGER_ENTRIES"') == [(5,)]
    assert fetch(
        connect, 'SELECT "PRICE_AMOUNT" FROM "PLANS" WHERE "PLAN_ID" = \'pro\' AND "VERSION" = 2'
    ) == [(D("59"),)]


def test_incremental_watermark_is_kept_per_replay_and_scenario(
    registered_snowflake_credentials: SnowflakeCredentials,
) -> None:
    connect = schema_connect(registered_snowflake_credentials)
    base = ledger_frame(LEDGER_V2)
    export_tables(connect, [LEDGER_ENTRIES.bind(base)])
    # A new scenario starts again at entry 1: its rows are new although their ids are low.
    what_if = ledger_frame(LEDGER_V1, scenario="chat_x1.2")

    report = export_tables(connect, [LEDGER_ENTRIES.bind(pl.concat([base, what_if]))])

    assert (report.tables[0].rows, report.tables[0].inserted) == (3, 3)
    counts = fetch(
        connect,
        'SELECT "SCENARIO", COUNT(*) FROM "LEDGER_ENTRIES" GROUP BY "SCENARIO" ORDER BY 1',
    )
    assert counts == [("base", 5), ("chat_x1.2", 3)]


_REFERENCE: dict[str, Any] = {}


def _two_exports(connect: Any, options: ExportOptions | None = None) -> None:
    export_tables(connect, sample_tables(ledger=LEDGER_V1))
    export_tables(connect, sample_tables(ledger=LEDGER_V2, pro_price="59.00"), options)


def _reference(credentials: SnowflakeCredentials) -> Any:
    if "tables" not in _REFERENCE:
        connect = schema_connect(credentials)
        _two_exports(connect)
        _REFERENCE["tables"] = snapshot(connect, ALL_TABLES)
    return _REFERENCE["tables"]


@pytest.mark.parametrize(
    ("step", "table"),
    [
        ("put", "plans"),
        ("copy", "ledger_entries"),
        ("plan", "ledger_entries"),
        ("merge", "plans"),
        ("before_record", None),
    ],
)
def test_export_stopped_after_any_step_then_run_again_equals_an_uninterrupted_run(
    registered_snowflake_credentials: SnowflakeCredentials, step: str, table: str | None
) -> None:
    assert step in STEPS
    expected = _reference(registered_snowflake_credentials)
    connect = schema_connect(registered_snowflake_credentials)
    with pytest.raises(InjectedFault):
        _two_exports(connect, ExportOptions(fail_after=fail_after(step, table)))

    rerun = export_tables(connect, sample_tables(ledger=LEDGER_V2, pro_price="59.00"))

    assert rerun.status == "succeeded"
    assert snapshot(connect, ALL_TABLES) == expected


def test_second_export_while_one_runs_is_refused_or_waits_and_never_doubles_rows(
    registered_snowflake_credentials: SnowflakeCredentials,
) -> None:
    connect = schema_connect(registered_snowflake_credentials)
    tables = sample_tables(ledger=LEDGER_V2)
    inside = threading.Event()
    release = threading.Event()
    outcomes: dict[str, Any] = {}

    def hold_after_merge(step: str, table: str) -> None:
        if step == "merge" and table == "plans":
            inside.set()
            assert release.wait(60)

    def first() -> None:
        outcomes["first"] = export_tables(
            connect, tables, ExportOptions(fail_after=hold_after_merge)
        )

    def waiting() -> None:
        outcomes["waiting"] = export_tables(connect, tables, ExportOptions(lock_wait=60))

    runner = threading.Thread(target=first)
    runner.start()
    assert inside.wait(60)
    with pytest.raises(ExportLockedError, match=r"another export .* is running"):
        export_tables(connect, tables)
    waiter = threading.Thread(target=waiting)
    waiter.start()
    release.set()
    runner.join(60)
    waiter.join(60)

    assert outcomes["first"].status == "succeeded"
    assert outcomes["waiting"].status == "unchanged"
    assert fetch(connect, 'SELECT COUNT(*), COUNT(DISTINCT "ENTRY_ID") FROM "LEDGER_ENTRIES"') == [
        (5, 5)
    ]
    assert fetch(connect, 'SELECT COUNT(*) FROM "PLANS"') == [(3,)]
    assert fetch(connect, 'SELECT "HOLDER" FROM "EXPORT_LOCK"') == [(None,)]


def test_two_exports_started_together_load_each_row_once(
    registered_snowflake_credentials: SnowflakeCredentials,
) -> None:
    connect = schema_connect(registered_snowflake_credentials)
    tables = sample_tables(ledger=LEDGER_V2)
    start = threading.Barrier(2)
    outcomes: list[Any] = []

    def run() -> None:
        start.wait()
        try:
            outcomes.append(export_tables(connect, tables).status)
        except ExportLockedError:
            outcomes.append("refused")

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert sorted(outcomes) in (["refused", "succeeded"], ["succeeded", "unchanged"])
    assert fetch(connect, 'SELECT COUNT(*), COUNT(DISTINCT "ENTRY_ID") FROM "LEDGER_ENTRIES"') == [
        (5, 5)
    ]
    assert fetch(connect, 'SELECT COUNT(*) FROM "EXPORT_RUNS"') == [(1,)]


def test_an_expired_lock_left_by_a_dead_export_is_taken_over(
    registered_snowflake_credentials: SnowflakeCredentials,
) -> None:
    connect = schema_connect(registered_snowflake_credentials)
    export_tables(connect, sample_tables(ledger=LEDGER_V1))
    connect.cursor().execute(
        'UPDATE "EXPORT_LOCK" SET "HOLDER" = \'dead\', "HOLDER_INFO" = \'crashed job\', '
        "\"EXPIRES_AT\" = '2020-01-01 00:00:00'"
    )

    report = export_tables(connect, sample_tables(ledger=LEDGER_V2))

    assert report.status == "succeeded"
    assert fetch(connect, 'SELECT "HOLDER" FROM "EXPORT_LOCK"') == [(None,)]


def test_new_column_is_added_and_a_type_change_is_refused(
    registered_snowflake_credentials: SnowflakeCredentials,
) -> None:
    connect = schema_connect(registered_snowflake_credentials)
    rows = pl.DataFrame({"id": [1, 2], "amount": [D("1.50"), D("2.00")]})
    export_tables(connect, [custom_table(rows)])

    grown = rows.with_columns(pl.Series("note", ["first", None]))
    report = export_tables(connect, [custom_table(grown, note_column=True)])

    assert report.tables[0].columns_added == ("NOTE",)
    assert (report.tables[0].inserted, report.tables[0].updated) == (0, 1)
    assert fetch(connect, 'SELECT "ID", "AMOUNT", "NOTE" FROM "CUSTOM_THINGS" ORDER BY 1') == [
        (1, D("1.5"), "first"),
        (2, D("2"), None),
    ]

    as_text = pl.DataFrame({"id": [3], "amount": ["3.00"]})
    with pytest.raises(SchemaConflictError) as refused:
        export_tables(connect, [custom_table(as_text, amount_type=VARCHAR)])
    assert "CUSTOM_THINGS.AMOUNT: is NUMBER(38, 12) in Snowflake but the export writes VARCHAR" in (
        str(refused.value)
    )
    assert refused.value.exit_code == 2
    assert fetch(connect, 'SELECT COUNT(*) FROM "CUSTOM_THINGS"') == [(2,)]


def test_dry_run_prints_statements_and_counts_and_writes_nothing(
    registered_snowflake_credentials: SnowflakeCredentials,
) -> None:
    connect = schema_connect(registered_snowflake_credentials)

    report = export_tables(connect, sample_tables(ledger=LEDGER_V1), ExportOptions(dry_run=True))

    assert report.status == "dry_run"
    assert [(t.name, t.rows, t.status) for t in report.tables] == [
        ("plans", 3, "planned"),
        ("ledger_entries", 3, "planned"),
    ]
    text = "\n".join(report.statements)
    for fragment in (
        'CREATE TABLE IF NOT EXISTS "PLANS"',
        "PUT 'file://",
        "COPY INTO",
        "MERGE INTO",
    ):
        assert fragment in text
    assert table_names(connect) == set()


def test_transient_errors_are_retried_with_backoff(
    registered_snowflake_credentials: SnowflakeCredentials,
) -> None:
    connect = schema_connect(registered_snowflake_credentials)
    failures = iter(
        [
            sf_errors.OperationalError(msg="Connection reset by peer", errno=250003),
            sf_errors.InternalServerError(msg="HTTP 503"),
        ]
    )
    delays: list[float] = []

    def flaky(step: str, table: str) -> None:
        if step == "copy" and table == "ledger_entries":
            error = next(failures, None)
            if error is not None:
                raise error

    options = ExportOptions(
        fail_after=flaky,
        retry=RetryPolicy(attempts=3, initial_delay=0.25, multiplier=2.0),
        sleep=delays.append,
    )
    report = export_tables(connect, sample_tables(ledger=LEDGER_V1), options)

    assert report.status == "succeeded"
    assert delays == [0.25, 0.5]  # exponential: the same step failed twice
    assert fetch(connect, 'SELECT COUNT(*) FROM "LEDGER_ENTRIES"') == [(3,)]


def test_terminal_errors_stop_with_what_to_fix(
    registered_snowflake_credentials: SnowflakeCredentials,
) -> None:
    connect = schema_connect(registered_snowflake_credentials)
    attempts: list[str] = []

    def forbidden(step: str, table: str) -> None:
        if step == "put":
            attempts.append(table)
            raise sf_errors.ProgrammingError(
                msg="Insufficient privileges to operate on stage", errno=3001
            )

    with pytest.raises(ExportTerminalError) as stopped:
        export_tables(
            connect,
            sample_tables(ledger=LEDGER_V1),
            ExportOptions(fail_after=forbidden, retry=FAST_RETRY),
        )

    assert attempts == ["plans"]  # never retried
    assert "[3001]" in str(stopped.value) and "fix: the role lacks a privilege" in str(
        stopped.value
    )
    assert fetch(connect, 'SELECT "HOLDER" FROM "EXPORT_LOCK"') == [(None,)]


def test_amounts_are_never_floats_nor_rounded() -> None:
    floats = pl.DataFrame({"id": [1], "amount": [1.5]})
    with pytest.raises(ValidationError, match="never float"):
        to_arrow(custom_table(floats))
    too_fine = pl.DataFrame({"id": [1], "amount": [D("0.0000000000001")]})
    with pytest.raises(ValidationError, match="never rounded"):
        to_arrow(custom_table(too_fine))
    duplicated = pl.DataFrame({"id": [1, 1], "amount": [D("1"), D("2")]})
    with pytest.raises(ValidationError, match="more than once"):
        to_arrow(custom_table(duplicated))


def test_results_folder_of_a_comparison_exports_every_scenario_ledger(tmp_path: Any) -> None:
    from connectors.snowflake.export_sources import combine, results_folder_tables

    folder = tmp_path / "compare_2024_03"
    for scenario, rows in (("base", LEDGER_V2), ("chat_x1.2", LEDGER_V1)):
        (folder / "scenarios" / scenario).mkdir(parents=True)
        ledger_frame(rows, scenario=scenario).drop("replay_id").write_parquet(
            folder / "scenarios" / scenario / "ledger.parquet"
        )

    (table,) = combine(results_folder_tables(folder))
    rows = to_arrow(table)

    assert table.name == "ledger_entries"
    assert rows.num_rows == len(LEDGER_V2) + len(LEDGER_V1)
    assert set(rows.column("REPLAY_ID").to_pylist()) == {"compare_2024_03"}


def test_a_comparison_exports_only_the_scenarios_its_comparison_json_names(
    tmp_path: Any,
) -> None:
    # `old` is what an earlier compare into the same folder left: not this comparison's.
    from connectors.snowflake.export_sources import combine, results_folder_tables

    folder = tmp_path / "cmp"
    for scenario, rows in (("base", LEDGER_V2), ("a/b", LEDGER_V1), ("old", LEDGER_V1)):
        replay = folder / "scenarios" / scenario.replace("/", "_")
        replay.mkdir(parents=True)
        ledger_frame(rows, scenario=scenario).drop("replay_id").write_parquet(
            replay / "ledger.parquet"
        )
    (folder / "comparison.json").write_text('{"base": "base", "scenarios": ["base", "a/b"]}')

    (table,) = combine(results_folder_tables(folder))
    assert set(to_arrow(table).column("SCENARIO").to_pylist()) == {"base", "a/b"}


def test_leftovers_of_a_killed_run_are_removed_by_the_next_run(
    registered_snowflake_credentials: SnowflakeCredentials, tmp_path: Any
) -> None:
    import subprocess
    import sys

    connect = schema_connect(registered_snowflake_credentials)
    export_tables(connect, sample_tables(ledger=LEDGER_V1))
    # What a run killed between COPY and MERGE leaves: its staging table, its stage files (a
    # second, older-style staging table too) and its local Parquet folder.
    cursor = connect.cursor()
    cursor.execute('CREATE TABLE "LEDGER_ENTRIES__STAGING_00000000DEADBEEF" ("ENTRY_ID" INT)')
    cursor.execute('CREATE TABLE "PLANS__STAGING" ("PLAN_ID" VARCHAR)')
    stray = tmp_path / "part-00000.parquet"
    stray.write_bytes(b"PAR1")
    cursor.execute(
        f"PUT 'file://{stray}' @PRICING_LAB_EXPORT_STAGE/00000000deadbeef/ledger_entries/ "
        "OVERWRITE = TRUE AUTO_COMPRESS = FALSE"
    )
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    work = tmp_path / "work"
    left = work / f"pricing-lab-export-{dead.stdout.strip()}-abc123"
    left.mkdir(parents=True)
    (left / "part-00000.parquet").write_bytes(b"PAR1")

    report = export_tables(connect, sample_tables(ledger=LEDGER_V1), ExportOptions(work_dir=work))

    assert report.status == "unchanged"  # nothing new, yet the leftovers are gone
    assert table_names(connect) == set(ALL_TABLES)
    assert fetch(connect, "LIST @PRICING_LAB_EXPORT_STAGE") == []
    assert list(work.iterdir()) == []
