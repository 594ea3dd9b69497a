"""`pricing-lab export snowflake` end to end: a catalog store file and a results folder, loaded
into fakesnow through the JWT gateway with credentials from SNOWFLAKE_* environment variables."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from connectors.snowflake.config import SnowflakeCredentials
from connectors.snowflake.export import FAIL_AFTER_ENV
from pricing_lab.catalog.store import open_store
from pricing_lab.catalog.yaml_format import load_catalog_file
from pricing_lab.cli import main
from tests.conftest import EXAMPLES
from tests.connectors.snowflake.export_support import (
    LEDGER_V2,
    SchemaTarget,
    credentials_environment,
    fetch,
    ledger_frame,
    schema_connect,
)

CATALOG_TABLES = {
    "features": "catalog_features",
    "feature_costs": "catalog_feature_costs",
    "feature_groups": "catalog_feature_groups",
    "feature_group_members": "catalog_feature_group_members",
    "plans": "catalog_plans",
    "addons": "catalog_addons",
    "entitlements": "catalog_entitlements",
    "credit_currencies": "catalog_credit_currencies",
    "credit_rates": "catalog_credit_rates",
}


@pytest.fixture()
def sources(tmp_path: Path) -> tuple[Path, Path]:
    store_file = tmp_path / "catalog.duckdb"
    with open_store(store_file) as store:
        store.apply(load_catalog_file(EXAMPLES / "ai_product.yaml"))
    results = tmp_path / "replay_2024_03"
    results.mkdir()
    ledger_frame(LEDGER_V2, replay_id="ignored").drop("replay_id").write_parquet(
        results / "ledger.parquet"
    )
    return store_file, results


@pytest.fixture()
def target(
    registered_snowflake_credentials: SnowflakeCredentials, monkeypatch: pytest.MonkeyPatch
) -> SchemaTarget:
    creds = registered_snowflake_credentials
    schema_target = schema_connect(creds)
    assert creds.private_key_file is not None
    home = Path(str(creds.private_key_file)).parent / "no-snowflake-home"
    environment = credentials_environment(creds, schema_target.schema, home)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(FAIL_AFTER_ENV, raising=False)
    return schema_target


def _export(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["export", "snowflake", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_export_then_rerun_with_json_reports_and_exit_status_0(
    sources: tuple[Path, Path], target: SchemaTarget, capsys: pytest.CaptureFixture[str]
) -> None:
    store_file, results = sources
    args = ("--db", str(store_file), "--results", str(results), "--json")

    status, out, err = _export(capsys, *args)

    assert status == 0, err
    report = json.loads(out)
    assert report["status"] == "succeeded" and report["exit_status"] == 0
    with duckdb.connect(str(store_file), read_only=True) as store:
        expected = {
            name: store.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # type: ignore[index]
            for name, table in CATALOG_TABLES.items()
        }
    expected["ledger_entries"] = len(LEDGER_V2)
    assert {t["name"]: t["inserted"] for t in report["tables"]} == expected
    for name, count in expected.items():
        assert fetch(target, f'SELECT COUNT(*) FROM "{name.upper()}"') == [(count,)]
    assert fetch(target, 'SELECT DISTINCT "REPLAY_ID" FROM "LEDGER_ENTRIES"') == [
        ("replay_2024_03",)
    ]
    # The dated gpt-4o price cut of the example catalog: two cost entries, the second from
    # 1 February 2024 (UTC), formulas as written.
    costs = fetch(
        target,
        'SELECT "POSITION", "VALID_FROM" IS NULL, "VALID_FROM", "FORMULA" FROM "FEATURE_COSTS" '
        'WHERE "FEATURE_ID" = \'llm_chat\' ORDER BY "POSITION"',
    )
    assert [(p, null) for p, null, _, _ in costs] == [(0, True), (1, False)]
    assert f"{costs[1][2]:%Y-%m-%d %H:%M}" == "2024-02-01 00:00"
    assert "0.00000175 * input_tokens" in costs[1][3]
    assert report["bytes"] > 0 and report["duration_seconds"] >= 0
    assert "export: [1/" in err  # progress on stderr

    status, out, _ = _export(capsys, *args)

    again = json.loads(out)
    assert (status, again["status"], again["rows_inserted"], again["rows_updated"]) == (
        0,
        "unchanged",
        0,
        0,
    )


def test_dry_run_prints_statements_and_writes_nothing(
    sources: tuple[Path, Path], target: SchemaTarget, capsys: pytest.CaptureFixture[str]
) -> None:
    _, results = sources

    status, out, err = _export(capsys, "--results", str(results), "--dry-run", "--quiet")

    assert status == 0, err
    assert 'MERGE INTO "LEDGER_ENTRIES"' in out and "PUT 'file://" in out
    assert "ledger_entries  planned" in out and "nothing was written" in out
    assert err == ""
    assert fetch(
        target,
        "SELECT COUNT(*) FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = CURRENT_SCHEMA()",
    ) == [(0,)]


def test_bad_input_exits_2_with_one_message(
    sources: tuple[Path, Path],
    target: SchemaTarget,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    status, out, err = _export(capsys, "--results", str(tmp_path / "missing"), "--json")
    assert status == 2
    assert json.loads(out)["status"] == "failed"
    assert "no such results folder" in err and "Traceback" not in err

    status, _, err = _export(capsys, "--results", str(sources[1]), "--tables", "nope")
    assert status == 2 and "unknown table 'nope'" in err

    status, _, err = _export(capsys)
    assert status == 2 and "nothing to export" in err

    status, _, err = _export(capsys, "--results", str(sources[1]), "--wait", "nan")
    assert status == 2 and "--wait ≥ 0" in err  # not a wait that never ends


def test_failed_export_exits_1_and_the_next_run_resumes(
    sources: tuple[Path, Path],
    target: SchemaTarget,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, results = sources
    monkeypatch.setenv(FAIL_AFTER_ENV, "plan:ledger_entries")
    status, _, err = _export(capsys, "--results", str(results), "--quiet")
    assert status == 1 and "stopped on purpose after step 'plan'" in err

    monkeypatch.delenv(FAIL_AFTER_ENV)
    status, out, err = _export(capsys, "--results", str(results), "--json", "--quiet")

    report = json.loads(out)
    assert (status, report["status"], report["resumed"]) == (0, "succeeded", True)
    assert report["rows_inserted"] == len(LEDGER_V2)
    assert fetch(target, 'SELECT COUNT(*) FROM "LEDGER_ENTRIES"') == [(len(LEDGER_V2),)]


def test_another_export_running_exits_3(
    sources: tuple[Path, Path], target: SchemaTarget, capsys: pytest.CaptureFixture[str]
) -> None:
    _, results = sources
    assert _export(capsys, "--results", str(results), "--quiet")[0] == 0
    target.cursor().execute(
        'UPDATE "EXPORT_LOCK" SET "HOLDER" = \'other\', "HOLDER_INFO" = \'nightly job on etl-1\', '
        "\"EXPIRES_AT\" = '2999-01-01 00:00:00'"
    )

    status, out, err = _export(capsys, "--results", str(results), "--json", "--quiet")

    assert status == 3
    assert json.loads(out)["exit_status"] == 3
    assert "nightly job on etl-1" in err and "--wait" in err


def _events_file(folder: Path, extra: str = "") -> Path:
    """Three LLM requests of two customers (and `extra` CSV lines) in an events file."""
    events = folder / "events.csv"
    events.write_text(
        "event_id,customer_id,event_name,timestamp,model,input_tokens,output_tokens\n"
        "e1,acme,llm.request,2024-01-05T10:00:00Z,gpt-4o,1000,500\n"
        "e2,acme,llm.request,2024-01-06T10:00:00Z,gpt-4o,2000,100\n"
        "e3,bolt,llm.request,2024-01-06T11:00:00Z,gpt-4o-mini,1000,1000\n" + extra,
        encoding="utf-8",
    )
    return events


def test_a_compare_results_folder_exports_ledgers_summaries_and_comparisons(
    tmp_path: Path, target: SchemaTarget, capsys: pytest.CaptureFixture[str]
) -> None:
    events = _events_file(tmp_path)
    out = tmp_path / "whatif"
    assert (
        main(
            [
                "compare",
                "--quiet",
                "--catalog",
                str(EXAMPLES / "ai_product.yaml"),
                "--events",
                str(events),
                "--scenarios",
                str(EXAMPLES / "scenarios.yaml"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    capsys.readouterr()

    status, report_text, err = _export(capsys, "--results", str(out), "--json")

    assert status == 0, err
    moved = {t["name"]: t["inserted"] for t in json.loads(report_text)["tables"]}
    # Two scenarios x 3 consumption entries (no subscriptions: every event overdraws).
    assert moved["ledger_entries"] == 6
    assert fetch(target, 'SELECT DISTINCT "SCENARIO" FROM "LEDGER_ENTRIES" ORDER BY 1') == [
        ("base",),
        ("chat_output_1.2x",),
    ]
    # e1 costs (2.5 * 1000 + 12 * 500) / 1000 = 8.50 in the scenario, 7.50 in the base;
    # e2 (2.5 * 2000 + 12 * 100) / 1000 = 6.20 against 6.00: acme's change is 1.20.
    rows = fetch(
        target,
        'SELECT "BASE_SCENARIO", "BASE_VALUE", "SCENARIO_VALUE", "DELTA" FROM '
        '"SCENARIO_COMPARISONS" WHERE "SCENARIO" = \'chat_output_1.2x\' AND '
        "\"CUSTOMER_ID\" = 'acme' AND \"METRIC\" = 'consumed'",
    )
    assert [(b, float(x), float(y), float(d)) for b, x, y, d in rows] == [("base", 13.5, 14.7, 1.2)]
    consumed = fetch(
        target,
        'SELECT "VALUE" FROM "REPLAY_SUMMARIES" WHERE "SCENARIO" = \'base\' AND '
        "\"LEVEL\" = 'total' AND \"METRIC\" = 'consumed'",
    )
    # base: 7.50 + 6.00 + (0.15 * 1000 + 0.6 * 1000) / 1000 = 0.75 → 14.25
    assert [float(v) for (v,) in consumed] == [14.25]


def _grants_file(folder: Path) -> None:
    """grants.parquet with the columns `simulate` writes (written here until it writes them)."""
    from datetime import UTC, datetime

    import polars as pl

    from pricing_lab.outputs import GRANTS

    at = datetime(2024, 1, 1, tzinfo=UTC)
    frame = pl.DataFrame(
        {
            "grant_id": ["acme:promo", "acme:plan:1"],
            "customer_id": ["acme", "acme"],
            "currency_id": ["credits", "credits"],
            "amount": ["2000.00", "25000.00"],
            "type": ["PROMOTIONAL", "RECURRING"],
            "priority": [1, 5],
            "cost_basis": ["0.00", "0.0004"],
            "source": ["input", "recurring"],
            "scenario": ["base", "base"],
        }
    ).select(
        pl.col("grant_id", "customer_id", "currency_id"),
        pl.col("amount").cast(pl.Decimal(38, 2)),
        pl.col("type", "priority"),
        pl.lit(at).alias("effective_at").cast(pl.Datetime("us", "UTC")),
        pl.lit(None, pl.Datetime("us", "UTC")).alias("expires_at"),
        pl.col("cost_basis").cast(pl.Decimal(38, 4)),
        pl.lit(None, pl.Datetime("us", "UTC")).alias("voided_at"),
        pl.col("source", "scenario"),
    )
    assert frame.columns == list(GRANTS.columns)
    frame.write_parquet(folder / GRANTS.file)


def test_a_simulate_results_folder_exports_every_output_file(
    tmp_path: Path, target: SchemaTarget, capsys: pytest.CaptureFixture[str]
) -> None:
    import polars as pl

    # e4 has no customer: a rejected event.
    events = _events_file(tmp_path, "e4,,llm.request,2024-01-06T12:00:00Z,gpt-4o,1,1\n")
    customers = tmp_path / "customers.yaml"
    customers.write_text(
        "customers:\n  - id: acme\n    grants:\n"
        "      - {currency: credits, amount: 10, type: PROMOTIONAL, effective_at: 2024-01-01}\n"
        "  - id: bolt\n",
        encoding="utf-8",
    )
    out = tmp_path / "sim_2024_01"
    args = ["simulate", "--quiet", "--catalog", str(EXAMPLES / "ai_product.yaml")]
    args += ["--events", str(events), "--customers", str(customers), "--out", str(out)]
    assert main([*args, "--enforcement", "block"]) == 0
    if not (out / "grants.parquet").exists():
        _grants_file(out)
    capsys.readouterr()

    status, report_text, err = _export(capsys, "--results", str(out), "--json", "--quiet")

    assert status == 0, err
    moved = {t["name"]: t["inserted"] for t in json.loads(report_text)["tables"]}
    for name, file in (
        ("ledger_entries", "ledger.parquet"),
        ("grants", "grants.parquet"),
        ("balances", "balances.parquet"),
        ("denied_events", "denied_events.parquet"),
        ("rejected_events", "rejected_events.parquet"),
        ("credit_activity", "activity.parquet"),
    ):
        rows = pl.read_parquet(out / file).height
        assert rows > 0, file
        assert moved[name] == rows, name
        assert fetch(target, f'SELECT COUNT(*) FROM "{name.upper()}"') == [(rows,)]
    assert fetch(target, 'SELECT "REASON", "SCENARIO", "REJECTED_ROW" FROM "REJECTED_EVENTS"') == [
        ("missing_field", "base", 1)
    ]
    assert fetch(target, 'SELECT DISTINCT "SCENARIO" FROM "DENIED_EVENTS"') == [("base",)]

    status, report_text, _ = _export(capsys, "--results", str(out), "--json", "--quiet")
    assert (status, json.loads(report_text)["status"]) == (0, "unchanged")


def test_export_help_names_exactly_the_files_the_project_writes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pricing_lab.outputs import COMPARISON_FILES, REPLAY_FILES, SUMMARY_FILE

    with pytest.raises(SystemExit):
        main(["export", "snowflake", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in [*(o.file for o in REPLAY_FILES), SUMMARY_FILE, *COMPARISON_FILES[:3]]:
        assert name in text
    assert "summary.parquet" not in text and "comparison.parquet" not in text
