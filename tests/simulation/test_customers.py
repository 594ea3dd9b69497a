"""Customer inputs from YAML, CSV / Parquet folders and DuckDB files; every problem with a path."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pricing_lab.errors import InputError, ValidationError
from pricing_lab.ledger.model import AutoRecharge, Grant, Subscription
from pricing_lab.simulation.customers import CustomerInputs, load_customers

UTC_JAN = datetime(2024, 1, 1, tzinfo=UTC)

GOOD_YAML = """
customers:
  - id: acme
    subscriptions:
      - {plan: pro, start: 2024-01-31, end: "2024-06-30T12:00:00Z", addons: [imgpack]}
    grants:
      - {currency: CR, amount: 50, type: PROMOTIONAL, effective_at: 2024-01-01,
         expires_at: 2024-01-15, priority: -1}
      - {grant_id: acme-gift, currency: CR, amount: 12.5, type: PAID, cost_basis: 0.008,
         effective_at: "2024-02-01 08:30:00", voided_at: "2024-02-10 00:00:00"}
    top_ups:
      - {currency: CR, amount: 1000, at: "2024-03-01T10:00:00+02:00", cost_basis: 0.01,
         expires_at: 2025-03-01}
    auto_recharge:
      {currency: CR, threshold: 10, target: 200, monthly_spend_limit: 50, grant_expiry: 1_month}
  - id: globex
"""


def test_yaml_customers_with_subscriptions_grants_top_ups_and_auto_recharge(tmp_path: Path) -> None:
    path = tmp_path / "customers.yaml"
    path.write_text(GOOD_YAML)
    inputs = load_customers(path)
    assert inputs.customer_ids == frozenset({"acme", "globex"})
    assert inputs.subscriptions == (
        Subscription(
            subscription_id="acme:0",
            customer_id="acme",
            plan_id="pro",
            start=datetime(2024, 1, 31, tzinfo=UTC),
            end=datetime(2024, 6, 30, 12, tzinfo=UTC),
            addons=("imgpack",),
        ),
    )
    assert inputs.grants == (
        Grant(
            grant_id="acme:grant:0",
            customer_id="acme",
            currency_id="CR",
            amount=Decimal("50"),
            type="PROMOTIONAL",
            priority=-1,
            effective_at=UTC_JAN,
            expires_at=datetime(2024, 1, 15, tzinfo=UTC),
        ),
        Grant(
            grant_id="acme-gift",
            customer_id="acme",
            currency_id="CR",
            amount=Decimal("12.5"),
            type="PAID",
            effective_at=datetime(2024, 2, 1, 8, 30, tzinfo=UTC),
            cost_basis=Decimal("0.008"),
            voided_at=datetime(2024, 2, 10, tzinfo=UTC),
        ),
        Grant(
            grant_id="acme:top_up:0",
            customer_id="acme",
            currency_id="CR",
            amount=Decimal("1000"),
            type="PAID",
            source="top_up",
            effective_at=datetime(2024, 3, 1, 8, tzinfo=UTC),  # +02:00 read as UTC 08:00
            expires_at=datetime(2025, 3, 1, tzinfo=UTC),
            cost_basis=Decimal("0.01"),
        ),
    )
    assert inputs.auto_recharges == (
        AutoRecharge(
            customer_id="acme",
            currency_id="CR",
            threshold=Decimal(10),
            target=Decimal(200),
            monthly_spend_limit=Decimal(50),
            grant_expiry="1_month",
        ),
    )
    # amounts are exact decimals read from their text, never floats
    assert all(isinstance(g.amount, Decimal) for g in inputs.grants)


BAD_YAML = """
customers:
  - id: acme
    colour: red
    subscriptions:
      - {plan: pro, start: 2024-02-01, end: 2024-01-01, seats: 3}
      - {start: someday}
    grants:
      - {currency: CR, amount: -5, effective_at: 2024-01-01, expires_at: 2023-12-31}
      - {grant_id: dup, currency: CR, amount: ten, type: OVERDRAFT, effective_at: 2024-01-01}
      - {grant_id: dup, amount: 1, effective_at: 2024-01-01, priority: 1.5, source: gift}
      - {currency: CR, amount: 1, type: PROMOTIONAL, cost_basis: 0.01, effective_at: 2024-01-01}
      - not a mapping
    top_ups:
      - {currency: CR, amount: 100, at: 2024-01-02}
    auto_recharge:
      - {currency: CR, threshold: 100, target: 50, grant_expiry: 2_weeks}
      - {currency: CR, threshold: 1, target: 2}
  - id: "bad id!"
    grants: {currency: CR}
  - id: acme
  - 42
"""


def test_yaml_problems_are_all_listed_with_their_paths(tmp_path: Path) -> None:
    path = tmp_path / "customers.yaml"
    path.write_text(BAD_YAML)
    with pytest.raises(ValidationError) as error:
        load_customers(path)
    found = {(p.path, p.message) for p in error.value.problems}
    expected = {
        ("customers[0].colour", "unknown key"),
        ("customers[0].subscriptions[0].seats", "unknown key"),
        ("customers[0].subscriptions[0].end", "must be after start"),
        ("customers[0].subscriptions[1].plan", "missing"),
        ("customers[0].subscriptions[1].start", "expected an ISO timestamp, got 'someday'"),
        ("customers[0].grants[0].amount", "must be > 0, got -5"),
        ("customers[0].grants[0].expires_at", "must be after effective_at"),
        ("customers[0].grants[1].amount", "expected a number, got 'ten'"),
        (
            "customers[0].grants[1].type",
            "must be one of PAID, PROMOTIONAL, RECURRING; got 'OVERDRAFT'",
        ),
        ("customers[0].grants[2].currency", "missing"),
        ("customers[0].grants[2].priority", "expected an integer, got Decimal('1.5')"),
        (
            "customers[0].grants[2].source",
            "must be one of manual, plan, addon, top_up, auto_recharge; got 'gift'",
        ),
        ("customers[0].grants[3].cost_basis", "a PROMOTIONAL grant has cost basis 0"),
        ("customers[0].grants[4]", "expected a mapping"),
        ("customers[0].top_ups[0].cost_basis", "missing"),
        ("customers[0].auto_recharge[0].target", "must be greater than threshold"),
        (
            "customers[0].auto_recharge[0].grant_expiry",
            "must be one of none, 1_month, 1_year; got '2_weeks'",
        ),
        ("auto_recharge", "duplicate auto-recharge for customer/currency 'acme/CR'"),
        ("customers[1].id", "invalid id 'bad id!'"),
        ("customers[1].grants", "expected a list"),
        ("customers[3]", "expected a mapping"),
        ("customers", "duplicate customer id 'acme'"),
        ("grants", "duplicate grant id 'dup'"),
    }
    assert found == expected
    assert len(error.value.problems) == len(expected)
    assert str(path) in str(error.value)


def test_times_before_the_supported_range_are_problems_with_their_place(tmp_path: Path) -> None:
    # A 0001-01-01 placeholder would start the replay's horizon in year 1 (an offset counts:
    # 01:00+02:00 is 23:00 UTC the day before); a far-future "never" does nothing within a
    # horizon and stays accepted.
    path = tmp_path / "customers.yaml"
    path.write_text(
        "customers:\n"
        "  - id: acme\n"
        "    subscriptions: [{plan: pro, start: 1900-01-01T01:00:00+02:00}]\n"
        "    grants:\n"
        "      - {currency: CR, amount: 5, type: PAID, cost_basis: 1, effective_at: 0001-01-01}\n"
        "      - {currency: CR, amount: 5, type: PAID, cost_basis: 1, effective_at: 1900-01-01,\n"
        "         expires_at: 9999-12-31}\n"
    )
    with pytest.raises(ValidationError) as error:
        load_customers(path)
    earliest = "is before 1900-01-01, the earliest time a replay supports"
    assert [(p.path, p.message) for p in error.value.problems] == [
        ("customers[0].subscriptions[0].start", f"1900-01-01 01:00:00+02:00 {earliest}"),
        ("customers[0].grants[0].effective_at", f"0001-01-01 {earliest}"),
    ]


def test_yaml_file_level_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(InputError, match="no such file"):
        load_customers(missing)
    not_a_list = tmp_path / "c.yaml"
    not_a_list.write_text("customers: {id: acme}\n")
    with pytest.raises(InputError, match="`customers:` list"):
        load_customers(not_a_list)
    broken = tmp_path / "b.yaml"
    broken.write_text("customers:\n  - id: [acme\n")
    with pytest.raises(InputError, match=r"b.yaml:\d+:\d+: YAML syntax error"):
        load_customers(broken)
    other = tmp_path / "c.txt"
    other.write_text("x")
    with pytest.raises(InputError, match=r"expected a \.yaml file"):
        load_customers(other)
    empty_folder = tmp_path / "empty"
    empty_folder.mkdir()
    with pytest.raises(InputError, match="no customer tables found"):
        load_customers(empty_folder)


SUBSCRIPTIONS_CSV = """customer_id,plan_id,start,end,addons
acme,pro,2024-01-31,,imgpack;extra
globex,basic,2024-01-01 00:00:00,2024-03-01 00:00:00,
"""
GRANTS_CSV = (
    (
        "grant_id,customer_id,currency_id,amount,type,priority,effective_at,expires_at,cost_basis,"
        "voided_at,source\n"
    )
    + """g1,acme,CR,100.10,PROMOTIONAL,2,2024-01-01,2024-02-01,,,manual
t1,globex,CR,500,PAID,,2024-01-05T10:00:00Z,,0.01,,top_up
"""
)
RECHARGE_CSV = """customer_id,currency_id,threshold,target,monthly_spend_limit,grant_expiry
acme,CR,10,100,25.50,1_year
globex,CR,0.5,20,,
"""


def expected_table_inputs() -> CustomerInputs:
    return CustomerInputs(
        subscriptions=(
            Subscription(
                subscription_id="acme:0",
                customer_id="acme",
                plan_id="pro",
                start=datetime(2024, 1, 31, tzinfo=UTC),
                addons=("imgpack", "extra"),
            ),
            Subscription(
                subscription_id="globex:1",
                customer_id="globex",
                plan_id="basic",
                start=UTC_JAN,
                end=datetime(2024, 3, 1, tzinfo=UTC),
            ),
        ),
        grants=(
            Grant(
                grant_id="g1",
                customer_id="acme",
                currency_id="CR",
                amount=Decimal("100.10"),
                type="PROMOTIONAL",
                priority=2,
                effective_at=UTC_JAN,
                expires_at=datetime(2024, 2, 1, tzinfo=UTC),
            ),
            Grant(
                grant_id="t1",
                customer_id="globex",
                currency_id="CR",
                amount=Decimal(500),
                type="PAID",
                effective_at=datetime(2024, 1, 5, 10, tzinfo=UTC),
                cost_basis=Decimal("0.01"),
                source="top_up",
            ),
        ),
        auto_recharges=(
            AutoRecharge(
                customer_id="acme",
                currency_id="CR",
                threshold=Decimal(10),
                target=Decimal(100),
                monthly_spend_limit=Decimal("25.50"),
                grant_expiry="1_year",
            ),
            AutoRecharge(
                customer_id="globex",
                currency_id="CR",
                threshold=Decimal("0.5"),
                target=Decimal(20),
            ),
        ),
    )


def write_csv_folder(folder: Path) -> Path:
    folder.mkdir()
    (folder / "subscriptions.csv").write_text(SUBSCRIPTIONS_CSV)
    (folder / "grants.csv").write_text(GRANTS_CSV)
    (folder / "auto_recharge.csv").write_text(RECHARGE_CSV)
    return folder


def test_csv_folder(tmp_path: Path) -> None:
    inputs = load_customers(write_csv_folder(tmp_path / "csv"))
    assert inputs == expected_table_inputs()
    assert inputs.customer_ids is None  # tables do not list customers: any customer is accepted


def test_a_table_the_csv_reader_cannot_read_names_the_line(tmp_path: Path) -> None:
    folder = tmp_path / "customers"
    folder.mkdir()
    table = folder / "subscriptions.csv"
    table.write_bytes(b"customer_id,plan_id,start\nacme,pro,2024-01-01\ncaf\xe9,pro,2024-01-01\n")
    with pytest.raises(InputError) as error:
        load_customers(folder)
    assert str(error.value) == f"{table}: line 3: not UTF-8 text"


TYPED_TABLES = {
    "subscriptions": """
        SELECT * FROM (VALUES
          ('acme', 'pro', TIMESTAMP '2024-01-31', NULL::TIMESTAMP, ['imgpack', 'extra']),
          ('globex', 'basic', TIMESTAMP '2024-01-01', TIMESTAMP '2024-03-01', []::VARCHAR[])
        ) AS t(customer_id, plan_id, start, "end", addons)""",
    "grants": """
        SELECT * FROM (VALUES
          ('g1', 'acme', 'CR', 100.10::DECIMAL(18, 2), 'PROMOTIONAL', 2, TIMESTAMP '2024-01-01',
           TIMESTAMP '2024-02-01', NULL::DECIMAL(18, 6), NULL::TIMESTAMP, 'manual'),
          ('t1', 'globex', 'CR', 500::DECIMAL(18, 2), 'PAID', NULL, TIMESTAMPTZ '2024-01-05 10:00Z',
           NULL, 0.01::DECIMAL(18, 6), NULL, 'top_up')
        ) AS t(grant_id, customer_id, currency_id, amount, type, priority, effective_at,
               expires_at, cost_basis, voided_at, source)""",
    "auto_recharge": """
        SELECT * FROM (VALUES
          ('acme', 'CR', 10::DECIMAL(9, 2), 100::DECIMAL(9, 2), 25.50::DECIMAL(9, 2), '1_year'),
          ('globex', 'CR', 0.5, 20, NULL, NULL)
        ) AS t(customer_id, currency_id, threshold, target, monthly_spend_limit, grant_expiry)""",
}


def test_parquet_folder_and_duckdb_file_give_the_same_inputs(tmp_path: Path) -> None:
    parquet_folder = tmp_path / "parquet"
    parquet_folder.mkdir()
    db_file = tmp_path / "customers.duckdb"
    with duckdb.connect(str(db_file)) as db:
        db.execute("SET TimeZone = 'UTC'")
        for name, query in TYPED_TABLES.items():
            db.execute(f"CREATE TABLE {name} AS {query}")
            db.execute(f"COPY {name} TO '{parquet_folder / name}.parquet' (FORMAT parquet)")
    frame = pl.read_parquet(parquet_folder / "grants.parquet")
    assert frame.schema["amount"] == pl.Decimal(18, 2)
    assert frame.schema["effective_at"] != pl.String
    assert load_customers(parquet_folder) == expected_table_inputs()
    assert load_customers(db_file) == expected_table_inputs()


def test_table_problems_name_the_file_row_and_column(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "grants.csv").write_text(
        "grant_id,customer_id,currency_id,amount,type,effective_at,colour\n"
        "g1,acme,CR,0,PAID,2024-01-01,\n"
        "g1,acme,CR,5,PAID,yesterday,red\n"
    )
    (folder / "auto_recharge.csv").write_text(
        "customer_id,currency_id,threshold,target\nacme,CR,5,5\nacme,CR,1,2\n"
    )
    (folder / "subscriptions.parquet").write_bytes(b"")  # only one form of a table is allowed
    (folder / "subscriptions.csv").write_text("customer_id,plan_id,start\n")
    with pytest.raises(InputError, match=r"both subscriptions\.csv and subscriptions\.parquet"):
        load_customers(folder)
    (folder / "subscriptions.parquet").unlink()
    with pytest.raises(ValidationError) as error:
        load_customers(folder)
    assert {(p.path, p.message) for p in error.value.problems} == {
        ("grants.csv row 1.amount", "must be > 0, got 0"),
        ("grants.csv row 1.colour", "unknown key"),
        ("grants.csv row 2.colour", "unknown key"),
        ("grants.csv row 2.effective_at", "expected an ISO timestamp, got 'yesterday'"),
        ("grants.csv", "duplicate grant id 'g1'"),
        ("auto_recharge.csv row 1.target", "must be greater than threshold"),
        ("auto_recharge.csv", "duplicate auto-recharge for customer/currency 'acme/CR'"),
    }
