"""End-to-end replays small enough to check by eye, and the `pricing-lab simulate` command."""

from __future__ import annotations

import json
import random
import resource
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pricing_lab.cli import main
from pricing_lab.events.ingest import ingest_events
from pricing_lab.ledger.frames import grants_schema
from pricing_lab.simulation.customers import customers_from_mapping
from pricing_lab.simulation.simulate import OUTPUT_FILES, SimulationResult, simulate
from tests.simulation.helpers import CATALOG_YAML, at, catalog, ev, events_frame, load_events, naive

CUSTOMERS = {
    "customers": [
        {
            "id": "acme",
            "subscriptions": [{"plan": "basic", "start": "2024-01-01"}],
            "grants": [
                {
                    "grant_id": "promo",
                    "currency": "CR",
                    "amount": 20,
                    "type": "PROMOTIONAL",
                    "effective_at": "2024-01-01",
                    "expires_at": "2024-01-10",
                }
            ],
        },
        {
            "id": "bob",
            "top_ups": [
                {
                    "currency": "CR",
                    "amount": 10,
                    "cost_basis": "0.01",
                    "at": "2024-01-01",
                    "expires_at": "2024-01-31",
                }
            ],
        },
    ]
}
EVENTS = [
    ev("e1", "acme", "chat", naive(5), tokens=50),  # basic: 5.00
    ev("e2", "acme", "chat", naive(20), tokens=1200),  # basic: 120.00
    ev("e3", "acme", "chat", naive(2, month=2), tokens=10),  # basic: 1.00
    ev("b1", "bob", "chat", naive(3), tokens=4),  # defaults: chat 2.00 + chat_requests 1.00
]


def replay(enforcement: str) -> SimulationResult:
    con, report = load_events(EVENTS)
    return simulate(
        con,
        catalog(),
        customers_from_mapping(CUSTOMERS),
        ingest=report,
        enforcement=enforcement,  # type: ignore[arg-type]
    )


LedgerRow = tuple[object, ...]


def ledger_rows(result: SimulationResult, customer: str) -> list[LedgerRow]:
    frame = result.ledger.filter(pl.col("customer_id") == customer)
    return [
        (ts.strftime("%m-%d"), kind, grant, str(amount), str(after), event, feature)
        for ts, kind, grant, amount, after, event, feature in frame.select(
            "timestamp",
            "entry_type",
            "grant_id",
            "amount",
            "balance_after",
            "event_id",
            "feature_id",
        ).iter_rows()
    ]


BOB = [
    ("01-01", "GRANTED", "bob:top_up:0", "10.00", "10.00", None, None),
    ("01-03", "CONSUMED", "bob:top_up:0", "-2.00", "8.00", "b1", "chat"),
    ("01-03", "CONSUMED", "bob:top_up:0", "-1.00", "7.00", "b1", "chat_requests"),
    ("01-31", "EXPIRED", "bob:top_up:0", "-7.00", "0.00", None, None),
]


def test_overdraft_replay_by_hand() -> None:
    result = replay("overdraft")
    assert ledger_rows(result, "acme") == [
        # at one instant, grants take effect in draw-down order: the promotion expires first
        ("01-01", "GRANTED", "promo", "20.00", "20.00", None, None),
        ("01-01", "GRANTED", "acme:basic:CR:0", "100.00", "120.00", None, None),
        ("01-05", "CONSUMED", "promo", "-5.00", "115.00", "e1", "chat"),
        ("01-10", "EXPIRED", "promo", "-15.00", "100.00", None, None),
        ("01-20", "CONSUMED", "acme:basic:CR:0", "-100.00", "0.00", "e2", "chat"),
        ("01-20", "CONSUMED", "acme:overdraft:CR", "-20.00", "-20.00", "e2", "chat"),
        # period 0 expires empty (nothing written); period 1 settles the debt at once
        ("02-01", "GRANTED", "acme:basic:CR:1", "100.00", "80.00", None, None),
        ("02-01", "CONSUMPTION_TRANSFER_SOURCE", "acme:basic:CR:1", "-20.00", "60.00", None, None),
        ("02-01", "CONSUMPTION_TRANSFER_TARGET", "acme:overdraft:CR", "20.00", "80.00", None, None),
        ("02-02", "CONSUMED", "acme:basic:CR:1", "-1.00", "79.00", "e3", "chat"),
    ]
    assert ledger_rows(result, "bob") == BOB
    assert result.ledger["entry_id"].to_list() == list(range(1, 15))
    assert set(result.ledger["scenario"]) == {"base"}
    assert result.denied_events.is_empty()
    balances = {row["customer_id"]: row for row in result.balances.iter_rows(named=True)}
    acme = balances["acme"]
    assert {k: str(acme[k]) for k in ("granted", "consumed", "expired", "voided")} == {
        "granted": "220.00",
        "consumed": "126.00",
        "expired": "15.00",
        "voided": "0.00",
    }
    assert (acme["final_balance"], acme["overdraft_debt"]) == (Decimal("79"), Decimal(0))
    assert acme["first_zero_at"] == at(20)
    assert (acme["recharges_issued"], acme["events_denied"]) == (0, 0)
    # acme's 15 expired credits were promotional (cost basis 0); bob's 7 cost 0.01 each.
    assert (acme["breakage"], balances["bob"]["breakage"]) == (Decimal(0), Decimal("0.07"))
    summary = result.summary_dict()
    (currency,) = summary["currencies"]
    # breakage: bob's 7 expired credits × 0.01 (the promotion's cost basis is 0); revenue: 10 × 0.01
    assert Decimal(currency["breakage"]) == Decimal("0.07")
    assert Decimal(currency["credit_revenue"]) == Decimal("0.10")
    assert Decimal(currency["consumed"]) == Decimal("129")
    assert summary["events"] == {"read": 4, "rejected": 0, "rejected_by_reason": {}, "denied": 0}


def test_block_replay_by_hand() -> None:
    result = replay("block")
    assert ledger_rows(result, "acme") == [
        ("01-01", "GRANTED", "promo", "20.00", "20.00", None, None),
        ("01-01", "GRANTED", "acme:basic:CR:0", "100.00", "120.00", None, None),
        ("01-05", "CONSUMED", "promo", "-5.00", "115.00", "e1", "chat"),
        ("01-10", "EXPIRED", "promo", "-15.00", "100.00", None, None),
        # e2 costs 120 > 100: denied as a whole, nothing written
        ("02-01", "EXPIRED", "acme:basic:CR:0", "-100.00", "0.00", None, None),
        ("02-01", "GRANTED", "acme:basic:CR:1", "100.00", "100.00", None, None),
        ("02-02", "CONSUMED", "acme:basic:CR:1", "-1.00", "99.00", "e3", "chat"),
    ]
    assert ledger_rows(result, "bob") == BOB
    denied = result.denied_events.select(
        "event_id", "customer_id", "reason", "currency_id", "cost", "balance", "scenario"
    )
    assert denied.rows() == [
        ("e2", "acme", "insufficient_credits", "CR", Decimal("120"), Decimal("100"), "base")
    ]
    assert result.denied_events["timestamp"].to_list() == [at(20)]
    acme = result.balances.filter(pl.col("customer_id") == "acme").row(0, named=True)
    assert acme["events_denied"] == 1
    assert acme["first_zero_at"] == at(1, month=2)  # an expiry emptied it; no consumption did
    assert result.summary_dict()["events"]["denied"] == 1


def test_auto_recharge_by_hand() -> None:
    customers = customers_from_mapping(
        {
            "customers": [
                {
                    "id": "zed",
                    "grants": [
                        {"currency": "CR", "amount": 10, "type": "PAID", "cost_basis": "0.01",
                         "effective_at": "2024-01-01"}
                    ],
                    "auto_recharge": {"currency": "CR", "threshold": 5, "target": 20,
                                      "monthly_spend_limit": "0.25"},
                }
            ]
        }
    )  # fmt: skip
    con, report = load_events(
        [
            ev("z1", "zed", "chat", naive(2), tokens=12),  # 6 + 1 = 7 → balance 3 → +17 (0.17 USD)
            ev("z2", "zed", "chat", naive(3), tokens=30),  # 15 + 1 = 16 → 4 → +16 cut to 8 (0.08)
            ev("z3", "zed", "chat", naive(4), tokens=2),  # 1 + 1 = 2 → 10: above the threshold
        ]
    )
    result = simulate(con, catalog(), customers, ingest=report)
    assert ledger_rows(result, "zed") == [
        ("01-01", "GRANTED", "zed:grant:0", "10.00", "10.00", None, None),
        ("01-02", "CONSUMED", "zed:grant:0", "-6.00", "4.00", "z1", "chat"),
        ("01-02", "CONSUMED", "zed:grant:0", "-1.00", "3.00", "z1", "chat_requests"),
        ("01-02", "GRANTED", "zed:auto_recharge:CR:0", "17.00", "20.00", None, None),
        ("01-03", "CONSUMED", "zed:grant:0", "-3.00", "17.00", "z2", "chat"),
        ("01-03", "CONSUMED", "zed:auto_recharge:CR:0", "-12.00", "5.00", "z2", "chat"),
        ("01-03", "CONSUMED", "zed:auto_recharge:CR:0", "-1.00", "4.00", "z2", "chat_requests"),
        ("01-03", "GRANTED", "zed:auto_recharge:CR:1", "8.00", "12.00", None, None),
        ("01-04", "CONSUMED", "zed:auto_recharge:CR:0", "-1.00", "11.00", "z3", "chat"),
        ("01-04", "CONSUMED", "zed:auto_recharge:CR:0", "-1.00", "10.00", "z3", "chat_requests"),
    ]
    zed = result.balances.row(0, named=True)
    assert zed["recharges_issued"] == 2
    assert zed["recharge_spend"] == Decimal("0.25")


def test_rejected_events_and_accepted_plus_rejected_equals_read() -> None:
    rows = [
        *EVENTS,
        ev("e1", "acme", "chat", naive(6), tokens=1),  # duplicate id: the first wins
        ev("n1", "bob", "chat", naive(4)),  # no tokens: the per-unit cost is null
    ]
    con, report = load_events(rows)
    result = simulate(con, catalog(), customers_from_mapping(CUSTOMERS), ingest=report)
    reasons = result.rejected_events.select("event_id", "reason").rows()
    assert sorted(reasons) == [("e1", "duplicate_event_id"), ("n1", "formula_null")]
    summary = result.summary_dict()["events"]
    assert summary["read"] == 6
    assert summary["rejected_by_reason"] == {"duplicate_event_id": 1, "formula_null": 1}
    consumed_events = result.ledger["event_id"].drop_nulls().n_unique()
    assert consumed_events + summary["rejected"] == summary["read"]


# -- the command line --------------------------------------------------------------------------


MORE_CUSTOMERS = """
  - id: carol
    subscriptions: [{plan: pro, start: 2024-01-31, addons: [imgpack]}]
    auto_recharge: {currency: CR, threshold: 50, target: 300, monthly_spend_limit: 4,
                    grant_expiry: 1_month}
  - id: dan
    grants:
      - {currency: CR, amount: 40, effective_at: 2024-01-09 09:00:00, expires_at: 2024-02-09}
      - {currency: CR, amount: 15, type: PAID, cost_basis: 0.02, effective_at: 2024-01-01,
         voided_at: 2024-01-20, priority: 1}
"""


def write_inputs(
    folder: Path, rows: list[dict[str, object]], *, more: bool = False
) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"catalog": folder / "catalog.yaml", "events": folder / "events.parquet"}
    paths["catalog"].write_text(CATALOG_YAML)
    events_frame(rows).write_parquet(paths["events"])
    customers = folder / "customers.yaml"
    text = "customers:\n" + "".join(
        "  - " + json.dumps(c) + "\n" for c in CUSTOMERS["customers"]
    )  # JSON is YAML
    customers.write_text(text + (MORE_CUSTOMERS if more else ""))
    paths["customers"] = customers
    return paths


def cli(*args: object) -> int:
    return main([str(a) for a in args])


LEDGER_COLUMNS = [
    "entry_id", "timestamp", "customer_id", "currency_id", "entry_type", "grant_id", "grant_type",
    "grant_source", "amount", "balance_after", "event_id", "feature_id", "scenario",
]  # fmt: skip


def test_cli_writes_the_five_files_with_spec_columns_and_decimal_amounts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = write_inputs(tmp_path / "in", EVENTS)
    out = tmp_path / "out"
    status = cli(
        "simulate", "--catalog", paths["catalog"], "--events", paths["events"],
        "--customers", paths["customers"], "--out", out, "--enforcement", "block", "--json",
        "--quiet",
    )  # fmt: skip
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)
    assert json.loads(captured.out)["events"]["denied"] == 1
    con = duckdb.connect()

    def schema(name: str) -> dict[str, str]:
        rows = con.execute(f"DESCRIBE SELECT * FROM '{out / name}'").fetchall()
        return {r[0]: r[1] for r in rows}

    ledger = schema("ledger.parquet")
    assert list(ledger) == LEDGER_COLUMNS
    assert ledger["amount"] == ledger["balance_after"] == "DECIMAL(38,2)"
    assert ledger["timestamp"] == "TIMESTAMP WITH TIME ZONE"
    denied = schema("denied_events.parquet")
    assert list(denied) == [
        "event_id", "customer_id", "timestamp", "reason", "currency_id", "cost", "balance",
        "scenario",
    ]  # fmt: skip
    assert denied["cost"] == denied["balance"] == "DECIMAL(38,2)"
    assert list(schema("rejected_events.parquet")) == [
        "source_row", "event_id", "customer_id", "event_name", "timestamp", "reason", "detail",
    ]  # fmt: skip
    balances = schema("balances.parquet")
    assert list(balances) == [
        "customer_id", "currency_id", "granted", "consumed", "expired", "voided", "rolled_over",
        "final_balance", "overdraft_debt", "first_zero_at", "recharges_issued",
        "recharge_spend", "breakage", "events_denied",
    ]  # fmt: skip
    assert all(
        balances[c].startswith("DECIMAL(38,")
        for c in ("granted", "consumed", "final_balance", "recharge_spend", "breakage")
    )
    grants = schema("grants.parquet")
    assert grants == {
        "grant_id": "VARCHAR", "customer_id": "VARCHAR", "currency_id": "VARCHAR",
        "amount": "DECIMAL(38,2)", "type": "VARCHAR", "priority": "BIGINT",
        "effective_at": "TIMESTAMP WITH TIME ZONE", "expires_at": "TIMESTAMP WITH TIME ZONE",
        "cost_basis": "DECIMAL(38,4)", "voided_at": "TIMESTAMP WITH TIME ZONE",
        "source": "VARCHAR", "scenario": "VARCHAR",
    }  # fmt: skip
    assert list(grants) == list(grants_schema(2, 4))
    # the amounts read back exactly, by an independent reader
    total = con.execute(
        f"SELECT sum(amount)::VARCHAR FROM '{out / 'ledger.parquet'}' WHERE customer_id = 'acme'"
    ).fetchone()
    assert total == ("99.00",)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["currencies"][0]["consumed"] == "9.00"  # 5 + 1 (acme) + 3 (bob)


def random_events(count: int, seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        customer = rng.choice(["acme", "bob", "carol", "dan"])
        when = naive(rng.randint(1, 28), rng.randint(0, 23), month=rng.randint(1, 2))
        if rng.random() < 0.8:
            rows.append(ev(f"r{index:04d}", customer, "chat", when, tokens=rng.randint(0, 400)))
        else:
            rows.append(ev(f"r{index:04d}", customer, "img", when))
    # equal timestamps across and within customers
    rows.append(ev("tie-a", "acme", "chat", naive(9, 9), tokens=7))
    rows.append(ev("tie-b", "acme", "chat", naive(9, 9), tokens=9))
    rows.append(ev("null", "carol", "chat", naive(9, 9)))  # formula_null, rejected
    return rows


@pytest.mark.parametrize("enforcement", ["overdraft", "block"])
def test_shuffled_input_rows_give_byte_identical_outputs(
    tmp_path: Path, enforcement: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = random_events(300, seed=7)
    shuffled = list(rows)
    random.Random(99).shuffle(shuffled)
    outputs = []
    for name, order in (("a", rows), ("b", shuffled)):
        paths = write_inputs(tmp_path / name, order, more=True)
        out = tmp_path / name / "out"
        status = cli(
            "simulate", "--catalog", paths["catalog"], "--events", paths["events"],
            "--customers", paths["customers"], "--out", out, "--enforcement", enforcement,
            "--quiet",
        )  # fmt: skip
        assert status == 0, capsys.readouterr().err
        outputs.append(out)
    for name in ("ledger.parquet", "denied_events.parquet", "balances.parquet", "summary.json"):
        assert (outputs[0] / name).read_bytes() == (outputs[1] / name).read_bytes(), name
    ledger = pl.read_parquet(outputs[0] / "ledger.parquet")
    assert ledger.height > 100
    if enforcement == "block":
        assert pl.read_parquet(outputs[0] / "denied_events.parquet").height > 0
    else:
        assert "auto_recharge" in set(ledger["grant_source"])
        assert "CONSUMPTION_TRANSFER_SOURCE" in set(ledger["entry_type"])


def test_bad_inputs_exit_2_with_one_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = write_inputs(tmp_path / "in", EVENTS)
    unknown_plan = tmp_path / "unknown_plan.yaml"
    unknown_plan.write_text(
        "customers:\n  - id: acme\n    subscriptions: [{plan: gold, start: 2024-01-01}]\n"
    )
    bad_currency = tmp_path / "bad_currency.yaml"
    bad_currency.write_text(
        "customers:\n  - id: acme\n"
        "    grants: [{currency: EUR, amount: 1, effective_at: 2024-01-01}]\n"
    )
    bad_catalog = tmp_path / "bad_catalog.yaml"
    bad_catalog.write_text("currencies: [{id: CR}]\n")
    cases = {
        "no such events file": ["--events", tmp_path / "missing.parquet"],
        "no such catalog file": ["--catalog", tmp_path / "missing.yaml"],
        "subscriptions[acme:0].plan_id: unknown plan 'gold'": ["--customers", unknown_plan],
        "grants[acme:grant:0].currency_id: unknown currency 'EUR'": ["--customers", bad_currency],
        "bad_catalog.yaml": ["--catalog", bad_catalog],
        "the horizon ends before it starts": [
            "--start", "2024-03-01T00:00:00Z", "--until", "2024-02-01T00:00:00Z",
        ],
    }  # fmt: skip
    for expected, override in cases.items():
        args = {
            "--catalog": paths["catalog"],
            "--events": paths["events"],
            "--customers": paths["customers"],
            "--out": tmp_path / "out",
        }
        extra: list[object] = []
        for flag, value in zip(override[::2], override[1::2]):
            if flag in args:
                args[flag] = value
            else:
                extra += [flag, value]
        status = cli("simulate", *[x for kv in args.items() for x in kv], *extra, "--quiet")
        err = capsys.readouterr().err
        assert status == 2, (expected, err)
        assert expected in err, (expected, err)
        assert "Traceback" not in err and "internal error" not in err


def test_the_installed_command_prints_no_traceback(tmp_path: Path) -> None:
    paths = write_inputs(tmp_path / "in", EVENTS)
    result = subprocess.run(
        [sys.executable, "-m", "pricing_lab", "simulate", "--catalog", str(paths["catalog"]),
         "--events", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "Traceback" not in result.stderr


def test_summary_per_feature_and_per_plan() -> None:
    con, report = load_events(EVENTS)
    customers = customers_from_mapping(CUSTOMERS)
    # acme moves from basic to pro on Feb 1: its Feb entries count for pro
    moved = customers_from_mapping(
        {
            "customers": [
                {
                    **CUSTOMERS["customers"][0],  # type: ignore[dict-item]
                    "subscriptions": [
                        {"plan": "basic", "start": "2024-01-01", "end": "2024-02-01"},
                        {"plan": "pro", "start": "2024-02-01"},
                    ],
                },
                CUSTOMERS["customers"][1],
            ]
        }
    )
    assert customers != moved
    result = simulate(con, catalog(), moved, ingest=report)
    summary = result.summary_dict()
    assert summary["features"] == [
        # acme: 5 + 120 + 0.05 × 10 = 125.50 over 3 events; bob: 2
        {"currency_id": "CR", "feature_id": "chat", "consumed": "127.50", "events": 4,
         "customers": 2},
        # bob 1 + acme's last event on pro 0.25
        {"currency_id": "CR", "feature_id": "chat_requests", "consumed": "1.25", "events": 2,
         "customers": 2},
    ]  # fmt: skip
    plans = {row["plan_id"]: row for row in summary["plans"]}
    assert set(plans) == {"(none)", "basic", "pro"}
    assert (plans["basic"]["granted"], plans["basic"]["consumed"]) == ("120.00", "125.00")
    assert (plans["basic"]["expired"], plans["basic"]["customers"]) == ("15.00", 1)
    # pro: 1,000 granted on Feb 1, 0.75 consumed (0.50 + 0.25); the settlement moves no credits
    assert (plans["pro"]["granted"], plans["pro"]["consumed"]) == ("1000.00", "0.75")
    assert (plans["(none)"]["granted"], plans["(none)"]["consumed"]) == ("10.00", "3.00")


def test_cli_counts_the_events_an_explicit_horizon_leaves_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # b1 (Jan 3) is before --start, e3 (Feb 2) after --until: accepted, not replayed, counted.
    paths = write_inputs(tmp_path / "in", EVENTS)
    common = [
        "simulate", "--catalog", paths["catalog"], "--events", paths["events"],
        "--customers", paths["customers"], "--quiet",
        "--start", "2024-01-04T00:00:00Z", "--until", "2024-02-01T00:00:00Z",
    ]  # fmt: skip
    assert cli(*common, "--out", tmp_path / "a", "--json") == 0
    assert json.loads(capsys.readouterr().out)["events_outside_horizon"] == 2
    assert cli(*common, "--out", tmp_path / "b") == 0
    assert "2 accepted events lie outside --start/--until" in capsys.readouterr().out
    assert cli(*common[:-4], "--out", tmp_path / "c", "--json") == 0  # no horizon given
    assert "events_outside_horizon" not in json.loads(capsys.readouterr().out)


def test_a_replay_from_python_with_a_catalog_without_currencies_is_refused_clearly() -> None:
    from pricing_lab import ValidationError, simulate
    from pricing_lab.catalog.yaml_format import load_catalog
    from pricing_lab.events.ingest import ingest_events

    con = duckdb.connect()
    ingest_events(con, events_frame(random_events(5, seed=1)))
    with pytest.raises(ValidationError, match="at least one credit currency"):
        simulate(con, load_catalog("", source="empty.yaml"))


# -- from Python: nothing lost, no half-written folder ------------------------------------------


def test_a_python_replay_rejects_meter_values_that_are_not_numbers_as_bad_value() -> None:
    # `tokens` as text, as a CSV or JSON source gives it when one value is not a number: the
    # command line rejects those events as bad_value; a replay from Python must do the same.
    frame = pl.DataFrame(
        {
            "event_id": ["ok", "word", "nan", "inf"],
            "customer_id": ["acme"] * 4,
            "event_name": ["chat"] * 4,
            "timestamp": [naive(day) for day in (2, 3, 4, 5)],
            "tokens": ["50", "many", "NaN", "inf"],
        }
    )
    con = duckdb.connect()
    report = ingest_events(con, frame)
    customers = customers_from_mapping(CUSTOMERS)
    for _run in range(2):  # a notebook cell run twice, with the report of the one ingestion
        result = simulate(con, catalog(), customers, ingest=report)
        rejected = result.rejected_events.sort("source_row")
        assert rejected.select("source_row", "event_id", "reason").rows() == [
            (2, "word", "bad_value"),
            (3, "nan", "bad_value"),
            (4, "inf", "bad_value"),
        ]
        assert rejected["detail"][0] == "chat: tokens is not a number below 10^26: many"
        # only `ok` is replayed: basic's 50 × 0.1 = 5.00 credits
        consumed = result.ledger.filter(pl.col("entry_type") == "CONSUMED")
        assert consumed.select("event_id", "amount").rows() == [("ok", Decimal("-5.00"))]
        assert result.summary_dict()["events"] == {
            "read": 4,
            "rejected": 3,
            "rejected_by_reason": {"bad_value": 3},
            "denied": 0,
        }
        assert result.ingest is not None
        assert (result.ingest.accepted, result.ingest.rejected) == (1, 3)


@contextmanager
def files_limited_to(size: int) -> Iterator[None]:
    """No file of this process grows past `size` bytes inside the block (writes fail with "File
    too large", as on a full disk; Python ignores SIGXFSZ)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_a_write_failing_part_way_leaves_the_folder_as_it_was(tmp_path: Path) -> None:
    # 2,000 chat events without tokens: rejected (formula_null), so rejected_events.parquet is
    # the one large file, written after the ledger, the grants and the denied events.
    rows = [*EVENTS, *(ev(f"n{i}", "acme", "chat", naive(1 + i % 27)) for i in range(2000))]
    con, report = load_events(rows)
    customers = customers_from_mapping(CUSTOMERS)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    simulate(con, catalog(), customers, ingest=report, scenario="first").write(out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    limit = 8192
    assert len(before["rejected_events.parquet"]) > limit
    assert all(len(before[name]) < limit for name in ("ledger.parquet", "grants.parquet"))

    second = simulate(con, catalog(), customers, ingest=report, scenario="second")
    with files_limited_to(limit), pytest.raises(OSError, match="File too large"):
        second.write(out)

    # every earlier file as it was, byte for byte; no file of the failed write, no staging folder
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert second.write(out)[0] == out / "ledger.parquet"  # without the limit it is written
    assert pl.read_parquet(out / "ledger.parquet")["scenario"].unique().to_list() == ["second"]
    assert (out / "notes.txt").read_text() == "mine\n"  # not an output: left alone


def test_a_write_into_a_new_folder_that_fails_leaves_no_folder(tmp_path: Path) -> None:
    rows = [*EVENTS, *(ev(f"n{i}", "acme", "chat", naive(1 + i % 27)) for i in range(2000))]
    con, report = load_events(rows)
    result = simulate(con, catalog(), customers_from_mapping(CUSTOMERS), ingest=report)
    out = tmp_path / "new" / "out"
    with files_limited_to(8192), pytest.raises(OSError, match="File too large"):
        result.write(out)
    assert not out.exists()
