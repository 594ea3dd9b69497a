"""Costing in the warehouse: `--events snowflake:…` has the meters' filters and the rates'
formulas evaluated in the Snowflake stand-in (fakesnow behind the key-pair gateway, the real
connector), and gives the files the same events give from a Parquet file — rejected rows, their
reasons and the rounded decimal costs included."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.compute as pc
import pytest

from connectors.snowflake import event_source
from connectors.snowflake.auth import Timeouts
from connectors.snowflake.config import SnowflakeCredentials
from connectors.snowflake.event_source import SOURCE
from pricing_lab.catalog.yaml_format import load_catalog_file
from pricing_lab.cli import main
from pricing_lab.events.ingest import ingest_events
from pricing_lab.events.meters import event_meters
from pricing_lab.events.plugins import DETAIL_COLUMN, REASON_COLUMN, ROW_COLUMN, STAYED_COLUMN
from pricing_lab.events.warehouse_costing import COST_PREFIX, MATCH_PREFIX, costing_plan
from pricing_lab.formula import check_formula
from pricing_lab.simulation.costing import cost_events
from pricing_lab.simulation.customers import load_customers
from pricing_lab.simulation.simulate import OUTPUT_FILES
from tests.connectors.snowflake.export_support import credentials_environment, schema_connect

CATALOG = """
currencies:
  - {id: CR, name: Credits, unit_price: 0.01, precision: 2, rounding: half_up}
  - {id: GPU, name: GPU seconds, unit_price: 0.001, precision: 3, rounding: up}
features:
  - id: chat
    name: Chat
    type: metered
    meter:
      source: events
      event_name: chat
      aggregation: sum
      dimension: tokens
      filters:
        - {dimension: region, operator: in, value: [eu, us]}
        - {dimension: model, operator: not_equals, value: draft}
  - id: long_chat
    name: Long chats
    type: metered
    meter:
      source: events
      event_name: chat
      aggregation: count
      filters:
        - {dimension: tokens, operator: gt, value: 300}
        - {dimension: seconds, operator: lt, value: 19.5}
  - id: gpu
    name: GPU time
    type: metered
    meter:
      source: events
      event_name: render
      aggregation: sum
      dimension: seconds
      filters:
        - {dimension: model, operator: starts_with, value: "sd-"}
        - {dimension: region, operator: is_not_null}
        - {dimension: not_a_column, operator: is_null}
  - id: split
    name: Split work
    type: metered
    meter:
      source: events
      event_name: render
      aggregation: count
      filters:
        - {dimension: cached, operator: equals, value: "false"}
        - {dimension: model, operator: contains, value: "-"}
default_credit_rates:
  - {feature: chat, currency: CR, mode: formula, formula: "round(tokens * 0.0137, 3) - 0.4"}
  - {feature: long_chat, currency: CR, mode: per_unit, per_unit: 0.125}
  - {feature: gpu, currency: GPU, mode: formula,
     formula: "if(seconds > 10, round(seconds * 1.00049, 2), max(seconds, 0.5)) * 0.333"}
  - {feature: split, currency: CR, mode: formula, formula: "ceil(coalesce(seconds, 3) / 7, 2)"}
plans:
  - id: pro
    name: Pro
    entitlements:
      - {kind: credit, currency: CR, amount: 40, cadence: monthly}
      - {kind: credit, currency: GPU, amount: 500, cadence: monthly}
    credit_rates:
      - {feature: chat, currency: CR, mode: per_unit, per_unit: 0.00731}
"""

CUSTOMERS = """
customers:
  - {id: acme, subscriptions: [{plan: pro, start: "2024-01-01T00:00:00Z"}]}
  - {id: bob}
  - {id: carol, subscriptions: [{plan: pro, start: "2024-01-15T00:00:00Z"}]}
"""

COLUMNS = (
    ("event_id", "VARCHAR"),
    ("customer_id", "VARCHAR"),
    ("event_name", "VARCHAR"),
    ('"timestamp"', "TIMESTAMP_NTZ"),
    ("tokens", "NUMBER(38, 0)"),
    ("seconds", "NUMBER(12, 4)"),
    ("region", "VARCHAR"),
    ("model", "VARCHAR"),
    ("cached", "BOOLEAN"),
    ("comment", "VARCHAR"),  # read by no meter nor rate: stays in the warehouse
)


def _rows() -> list[tuple[object, ...]]:
    """Events costed under both plans and none, with every kind of rejected row."""
    names = ("acme", "bob", "carol")
    regions = ("eu", "us", "apac", None)
    models = ("sd-xl", "draft", "big", "sd-1", None)
    rows: list[tuple[object, ...]] = []
    for i in range(90):
        when = datetime(2024, 1 + i % 2, 1 + i % 28, i % 24, (7 * i) % 60)
        tokens = None if i % 17 == 5 else (i * 37) % 450
        seconds = None if i % 13 == 4 else Decimal((i * 7919) % 20000) / 1000
        name = "render" if i % 4 == 0 else "chat"
        cached = None if i % 11 == 0 else i % 3 == 0
        rows.append(
            (f"e{i:03d}", names[i % 3], name, when, tokens, seconds, regions[i % 4],
             models[i % 5], cached, f"note {i}")
        )  # fmt: skip
    rows += [
        ("e-nocustomer", None, "chat", datetime(2024, 1, 3), 10, None, "eu", "big", None, ""),
        ("e050", "bob", "chat", datetime(2024, 1, 4), 99, None, "eu", "big", None, "dup"),
        ("e-old", "acme", "chat", datetime(1850, 1, 1), 5, None, "eu", "big", None, ""),
        ("e-stranger", "zed", "chat", datetime(2024, 1, 5), 5, None, "eu", "big", None, ""),
        ("e-noname", "acme", None, datetime(2024, 1, 6), 5, None, "eu", "big", None, ""),
        ("e-nosec", "bob", "render", datetime(2024, 1, 7), None, None, "eu", "sd-1", False, ""),
    ]
    return rows


@pytest.fixture()
def warehouse(
    registered_snowflake_credentials: SnowflakeCredentials,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> tuple[dict[str, Path], str]:
    """Catalog, customers and the events as a Parquet file; the same events in a table of a
    fresh schema of the stand-in: its name."""
    folder = tmp_path / "in"
    folder.mkdir()
    paths = {"catalog": folder / "catalog.yaml", "customers": folder / "customers.yaml"}
    paths["catalog"].write_text(CATALOG)
    paths["customers"].write_text(CUSTOMERS)
    rows = _rows()
    names = [name.strip('"') for name, _type in COLUMNS]
    frame = pl.DataFrame(
        [list(r) for r in rows],
        schema={
            **dict.fromkeys(names, pl.String),
            "timestamp": pl.Datetime("us"),
            "tokens": pl.Int64,
            "seconds": pl.Decimal(12, 4),
            "cached": pl.Boolean,
        },
        orient="row",
    )
    paths["events"] = folder / "events.parquet"
    frame.write_parquet(paths["events"])
    creds = registered_snowflake_credentials
    target = schema_connect(creds)
    cursor = target.cursor()
    cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {target.schema}")
    table = f"{creds.database}.{target.schema}.USAGE"
    cursor.execute(f"CREATE TABLE {table} ({', '.join(f'{n} {t}' for n, t in COLUMNS)})")
    marks = ", ".join(["%s"] * len(COLUMNS))
    cursor.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
    environment = credentials_environment(creds, target.schema, tmp_path / "no-snowflake-home")
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return paths, table


def _run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    status = main([str(a) for a in args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_costed_in_the_warehouse_the_files_are_those_of_a_parquet_file(
    warehouse: tuple[dict[str, Path], str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths, table = warehouse
    common = ("--catalog", paths["catalog"], "--customers", paths["customers"], "--quiet")
    printed = {}
    for name, events in (("file", paths["events"]), ("warehouse", f"snowflake:{table}")):
        status, out, err = _run(
            capsys, "simulate", *common, "--events", events, "--out", tmp_path / name, "--json"
        )
        assert status == 0, err
        printed[name] = out.replace(str(tmp_path / name), "OUT")
    # the rows that stayed in the warehouse are counted as read and accepted
    assert printed["warehouse"] == printed["file"]
    assert json.loads(printed["file"])["events"]["read"] == len(_rows())
    for name in OUTPUT_FILES:
        expected = (tmp_path / "file" / name).read_bytes()
        assert (tmp_path / "warehouse" / name).read_bytes() == expected, name
    rejected = pl.read_parquet(tmp_path / "warehouse" / "rejected_events.parquet")
    reasons = set(rejected["reason"])
    assert {"missing_field", "duplicate_event_id", "bad_timestamp", "unknown_customer"} <= reasons
    assert {"formula_null", "formula_negative"} <= reasons
    ledger = pl.read_parquet(tmp_path / "warehouse" / "ledger.parquet")
    assert {"chat", "long_chat", "gpu", "split"} <= set(ledger["feature_id"].drop_nulls())


def test_only_the_columns_read_and_the_costs_leave_the_warehouse_and_the_costing_uses_them(
    warehouse: tuple[dict[str, Path], str],
) -> None:
    """An unread column stays in the warehouse; with the dimensions blanked after the
    warehouse's query, every rate it evaluated still costs what the file's events cost: its
    column is what the costing reads."""
    paths, table = warehouse
    catalog = load_catalog_file(paths["catalog"], check_formula=check_formula)
    events = SOURCE.cost(table, lambda schema: costing_plan([catalog], schema))
    plain = [
        n
        for n in events.column_names
        if not n.startswith((MATCH_PREFIX, COST_PREFIX))
        and n not in (ROW_COLUMN, STAYED_COLUMN, REASON_COLUMN, DETAIL_COLUMN)
    ]
    assert plain == [
        "event_id", "customer_id", "event_name", "timestamp", "tokens", "seconds", "region",
        "model", "cached",
    ]  # fmt: skip
    assert sum(n.startswith(MATCH_PREFIX) for n in events.column_names) == 4
    # chat (default and pro), long_chat and gpu in the warehouse; split divides: costed locally
    assert sum(n.startswith(COST_PREFIX) for n in events.column_names) == 4
    assert events.num_rows + events[STAYED_COLUMN][0].as_py() == len(_rows())
    customers = load_customers(paths["customers"])
    costed = {}
    for name, source in (("file", paths["events"]), ("warehouse", events)):
        con = duckdb.connect()
        ingest_events(con, source)
        if name == "warehouse":
            con.execute("UPDATE events SET tokens = NULL, seconds = NULL, region = 'x'")
        costing = cost_events(con, catalog, customers.subscriptions)
        costed[name] = costing.consumptions.filter(pl.col("feature_id") != "split")
    assert set(costed["warehouse"]["feature_id"]) == {"chat", "long_chat", "gpu"}
    assert costed["warehouse"].equals(costed["file"])


def test_rows_matching_no_meter_stay_in_the_warehouse_and_rejected_rows_leave_reasoned(
    warehouse: tuple[dict[str, Path], str],
) -> None:
    """Of the rows certainly accepted, with an id of their own, that match no meter, only each
    customer's earliest and latest leave the warehouse (they set the default horizon); the
    others are counted. Rejected, duplicated and matched rows all leave: those rejected for a
    missing field or an unknown customer with their reason and detail, without dimensions."""
    paths, table = warehouse
    catalog = load_catalog_file(paths["catalog"], check_formula=check_formula)
    known = ["acme", "bob", "carol"]
    events = SOURCE.cost(table, lambda schema: costing_plan([catalog], schema, customers=known))
    left = set(events["event_id"].to_pylist())
    # The file's events that ingestion accepts and no meter matches, as the local meters see it.
    con = duckdb.connect()
    ingest_events(con, paths["events"], customers=known)
    matched = " OR ".join(f"coalesce({m.condition}, FALSE)" for m in event_meters(con, catalog))
    unmatched = pl.from_arrow(
        con.sql(
            f"SELECT event_id, customer_id FROM events WHERE NOT ({matched}) "
            "AND event_id <> 'e050' ORDER BY timestamp, source_row"  # e050: a duplicated id
        ).arrow()
    )
    assert isinstance(unmatched, pl.DataFrame)
    edges = set(unmatched.group_by("customer_id").agg(pl.col("event_id").first())["event_id"])
    edges |= set(unmatched.group_by("customer_id").agg(pl.col("event_id").last())["event_id"])
    everything = {row[0] for row in _rows()}
    stayed = everything - left
    assert stayed == set(unmatched["event_id"]) - edges
    assert events[STAYED_COLUMN][0].as_py() == len(stayed) > 30
    # each row that left carries its place among all rows, in order
    places = events[ROW_COLUMN].to_pylist()
    assert places == sorted(places)
    assert [_rows()[n - 1][0] for n in places] == events["event_id"].to_pylist()
    # rows rejected there leave with their reason and detail, their dimensions left behind;
    # a time out of range is judged locally
    rejected = pl.from_arrow(events.filter(pc.is_valid(events[REASON_COLUMN])))
    assert isinstance(rejected, pl.DataFrame)
    assert sorted(rejected.select("event_id", REASON_COLUMN, DETAIL_COLUMN).rows()) == [
        ("e-nocustomer", "missing_field", "missing customer_id"),
        ("e-noname", "missing_field", "missing event_name"),
        ("e-stranger", "unknown_customer", "customer zed is not in the customer list"),
    ]
    assert rejected["tokens"].null_count() == rejected["region"].null_count() == 3
    # a meter evaluated locally (a text compared with a number): no row stays, rejections alike
    local = paths["catalog"].with_name("local.yaml")
    local.write_text(CATALOG.replace("operator: in, value: [eu, us]", "operator: gt, value: 5"))
    kept_local = load_catalog_file(local, check_formula=check_formula)
    every = SOURCE.cost(table, lambda schema: costing_plan([kept_local], schema, customers=known))
    assert every.num_rows == len(_rows()) and every[STAYED_COLUMN][0].as_py() == 0
    assert every.filter(pc.is_valid(every[REASON_COLUMN])).num_rows == 3


def test_a_value_beyond_the_warehouse_decimals_is_costed_locally_alike(
    warehouse: tuple[dict[str, Path], str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    paths, table = warehouse
    # The stand-in answers the overflow with an HTTP 500, which the driver retries until then.
    monkeypatch.setattr(event_source, "TIMEOUTS", Timeouts.all(1))
    huge = 10**30  # NUMBER(38, 0) holds it; the rate's NUMBER(38, 12) cannot
    frame = pl.read_parquet(paths["events"])
    row = {**dict.fromkeys(frame.columns), "event_id": "huge", "customer_id": "bob"}
    row |= {"event_name": "chat", "timestamp": datetime(2024, 1, 9), "region": "eu"}
    extended = pl.concat(
        [
            frame.cast({"tokens": pl.Decimal(38, 0)}),
            pl.DataFrame(
                [row | {"tokens": huge}], schema=frame.schema | {"tokens": pl.Decimal(38, 0)}
            ),
        ]
    )
    extended.write_parquet(tmp_path / "events.parquet")
    query = (
        f"snowflake:SELECT * FROM {table} UNION ALL SELECT 'huge', 'bob', 'chat', "
        f"'2024-01-09 00:00:00'::TIMESTAMP_NTZ, {huge}, NULL, 'eu', NULL, NULL, NULL"
    )
    common = ("--catalog", paths["catalog"], "--customers", paths["customers"], "--quiet")
    for name, events in (("file", tmp_path / "events.parquet"), ("warehouse", query)):
        status, _out, err = _run(
            capsys, "simulate", *common, "--events", events, "--out", tmp_path / name
        )
        assert status == 0, err
    assert "costing in the warehouse failed" in err
    for name in OUTPUT_FILES:
        expected = (tmp_path / "file" / name).read_bytes()
        assert (tmp_path / "warehouse" / name).read_bytes() == expected, name
    rejected = pl.read_parquet(tmp_path / "warehouse" / "rejected_events.parquet")
    assert rejected.filter(pl.col("event_id") == "huge")["reason"].to_list() == ["bad_value"]


def test_a_comparison_costs_its_scenarios_in_the_warehouse_alike(
    warehouse: tuple[dict[str, Path], str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths, table = warehouse
    scenarios = tmp_path / "scenarios.yaml"
    scenarios.write_text(
        "scenarios:\n"
        "  - name: base\n"
        "  - name: cheaper\n"
        '    rates: [{feature: chat, formula: "round(tokens * 0.0091, 2)"}]\n'
        "    rate_multipliers: {gpu: 0.7}\n"
    )
    common = ("--catalog", paths["catalog"], "--customers", paths["customers"], "--quiet")
    for name, events in (("file", paths["events"]), ("warehouse", f"snowflake:{table}")):
        status, _out, err = _run(
            capsys, "compare", *common, "--events", events, "--scenarios", scenarios,
            "--out", tmp_path / name,
        )  # fmt: skip
        assert status == 0, err
    compared = sorted(p.relative_to(tmp_path / "file") for p in (tmp_path / "file").rglob("*"))
    assert any(p.name == "ledger.parquet" for p in compared)
    for path in compared:
        if path.suffix == ".parquet" or path.name == "summary.json":
            expected = (tmp_path / "file" / path).read_bytes()
            assert (tmp_path / "warehouse" / path).read_bytes() == expected, path


def test_a_bad_table_or_query_is_one_message_and_exit_2(
    warehouse: tuple[dict[str, Path], str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths, _table = warehouse
    for events in ("PRICING_LAB.PUBLIC.NO_SUCH_TABLE", "SELECT event_id FROM nowhere WHERE"):
        status, _out, err = _run(
            capsys, "simulate", "--catalog", paths["catalog"], "--customers", paths["customers"],
            "--events", f"snowflake:{events}", "--out", tmp_path / "out", "--quiet",
        )  # fmt: skip
        assert status == 2
        assert err.startswith(f"pricing-lab: snowflake:{events}:")
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
