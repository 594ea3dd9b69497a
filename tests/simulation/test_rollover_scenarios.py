"""Scenarios that add, change or remove rollover, through `compare` on the command line."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from pricing_lab.cli import main
from pricing_lab.errors import ValidationError
from pricing_lab.simulation.scenarios import scenarios_from_mapping, validate_scenarios
from tests.simulation.helpers import CATALOG_YAML, catalog, ev, events_frame, naive

# acme: Basic, 100 credits a month from January 1st, nothing used in January; on February 10th
# chat of 1200 tokens costs 120 credits (Basic: tokens × 0.1).
SCENARIOS = """\
scenarios:
  - name: base
  - name: carry_30
    rollover: {plan: basic, currency: CR, max_percent: 30}
  - name: carry_5
    rollover: [{plan: basic, max_percent: 30, max_amount: 5}, {plan: pro, remove: true}]
"""


def test_compare_shows_what_rollover_changes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "catalog.yaml").write_text(CATALOG_YAML, encoding="utf-8")
    (tmp_path / "scenarios.yaml").write_text(SCENARIOS, encoding="utf-8")
    (tmp_path / "customers.yaml").write_text(
        "customers:\n  - {id: acme, subscriptions: [{plan: basic, start: '2024-01-01'}]}\n",
        encoding="utf-8",
    )
    events_frame([ev("a1", "acme", "chat", naive(10, month=2), tokens=1200)]).write_parquet(
        tmp_path / "events.parquet"
    )
    out = tmp_path / "out"
    status = main(
        [
            "compare", "--catalog", str(tmp_path / "catalog.yaml"),
            "--events", str(tmp_path / "events.parquet"),
            "--customers", str(tmp_path / "customers.yaml"),
            "--scenarios", str(tmp_path / "scenarios.yaml"),
            "--out", str(out), "--quiet", "--json", "--until", "2024-03-01T00:00:00Z",
        ]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert status == 0, captured.err
    printed = json.loads(captured.out, parse_float=Decimal)
    headline = {row["scenario"]: row for row in printed["scenarios"]}
    assert [headline[n]["rolled_over_change"] for n in ("carry_30", "carry_5")] == [30, 5]
    assert headline["carry_30"]["no_longer_run_out"] == 1
    customers = pl.read_parquet(out / "comparison_customers.parquet")
    rows = {r["scenario"]: r for r in customers.iter_rows(named=True)}
    # base: the 100 January credits expire; February's 100 cover 100 of 120, 20 go to overdraft
    # carry_30: 30 roll over, 130 cover all 120; carry_5: 5 roll over, 105 leave 15 in overdraft
    assert {name: str(r["rolled_over"]) for name, r in rows.items()} == {
        "base": "0.00",
        "carry_30": "30.00",
        "carry_5": "5.00",
    }
    assert str(rows["carry_30"]["rolled_over_change"]) == "30.00"
    assert {name: str(r["consumed"]) for name, r in rows.items()} == dict.fromkeys(rows, "120.00")
    assert rows["base"]["runout_at"] is not None and rows["carry_5"]["runout_at"] is not None
    assert rows["carry_30"]["runout_at"] is None  # never runs out with the carried credits
    ledger = pl.read_parquet(out / "scenarios" / "carry_30" / "ledger.parquet")
    assert ledger.filter(pl.col("entry_type") == "ROLLED_OVER")["amount"].to_list() == [
        Decimal("-30.00")
    ]
    grants = pl.read_parquet(out / "scenarios" / "carry_30" / "grants.parquet")
    assert grants.filter(pl.col("source") == "rollover")["grant_id"].to_list() == [
        "acme:basic:CR:0:rollover"
    ]
    summary = json.loads((out / "scenarios" / "carry_30" / "summary.json").read_text())
    basic = next(p for p in summary["plans"] if p["plan_id"] == "basic")
    # granted counts the rollover grant: 100 + 100 + 30; the 30 rolled over leave January's grant
    assert (basic["granted"], basic["rolled_over"], basic["expired"]) == (
        "230.00",
        "30.00",
        "70.00",
    )
    totals = pl.read_parquet(out / "comparison_totals.parquet")
    assert [str(v) for v in totals.sort("scenario")["rolled_over"]] == ["0.00", "30.00", "5.00"]


def test_rollover_changes_are_checked_with_their_paths() -> None:
    _, scenarios = scenarios_from_mapping(
        {
            "scenarios": [
                {
                    "name": "bad",
                    "rollover": [
                        {"plan": "gold", "max_percent": 10},
                        {"plan": "basic", "currency": "XX", "remove": True},
                        {"plan": "basic", "max_percent": 150, "max_amount": "0.001"},
                        {"plan": "pro", "remove": True, "max_amount": 5},
                        {"plan": "imgpack"},
                    ],
                }
            ]
        }
    )
    problems = [str(p) for p in validate_scenarios(scenarios, catalog())]
    assert problems == [
        "scenarios[0].rollover[0].plan: unknown plan or add-on",
        "scenarios[0].rollover[1]: 'basic' has no credit entitlement in currency 'XX'",
        "scenarios[0].rollover[2].max_amount: at most 2 decimal places",
        "scenarios[0].rollover[2].max_percent: must be > 0 and <= 100",
        "scenarios[0].rollover[3]: give remove or caps, not both",
        "scenarios[0].rollover[4]: give max_amount, max_percent or remove",
    ]
    with pytest.raises(ValidationError, match=r"scenarios\[0\].rollover\[0\].cap: unknown key"):
        scenarios_from_mapping(
            {"scenarios": [{"name": "x", "rollover": [{"plan": "basic", "cap": 1}]}]}
        )
