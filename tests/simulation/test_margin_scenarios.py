"""Scenarios that change unit costs, and the margin change per scenario in `compare`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from pricing_lab.cli import main
from pricing_lab.errors import ValidationError
from pricing_lab.simulation.scenarios import (
    CostChange,
    Scenario,
    compare,
    scenarios_from_mapping,
    validate_scenarios,
)
from pricing_lab.simulation.simulate import simulate
from tests.simulation.helpers import catalog, events_frame, load_events
from tests.simulation.test_margin import CUSTOMERS, EVENTS, MARGIN_CATALOG

SCENARIOS = {
    "scenarios": [
        {"name": "base"},
        {"name": "provider_cut", "cost_factors": {"chat": "0.5"}},
        {
            "name": "flat_from_feb",
            "costs": [{"feature": "chat", "formula": "0.01", "from": "2024-02-01"}],
        },
        {"name": "dearer_chat", "rate_multipliers": {"chat": 2}},
    ]
}


def test_scenario_yaml_reads_cost_changes_and_reports_bad_ones() -> None:
    _base, scenarios = scenarios_from_mapping(SCENARIOS)
    assert scenarios[1].cost_factors == {"chat": Decimal("0.5")}
    assert scenarios[2].costs == (
        CostChange(feature="chat", formula="0.01", valid_from=datetime(2024, 2, 1, tzinfo=UTC)),
    )
    with pytest.raises(ValidationError) as raised:
        scenarios_from_mapping(
            {
                "scenarios": [
                    {
                        "name": "x",
                        "costs": [
                            {"feature": "chat"},
                            {"feature": "chat", "formula": "1", "from": "soon", "unit": "usd"},
                        ],
                    }
                ]
            }
        )
    assert [str(p) for p in raised.value.problems] == [
        "scenarios[0].costs[0]: needs feature and formula",
        "scenarios[0].costs[1].unit: unknown key",
        "scenarios[0].costs[1].from: not a timestamp: 'soon'",
    ]
    bad = Scenario(
        name="bad",
        costs=(CostChange(feature="nope", formula="1 +"),),
        cost_factors={"docs": Decimal(-1)},
    )
    assert [str(p) for p in validate_scenarios([bad], catalog(MARGIN_CATALOG))] == [
        "scenarios[0].costs[0].feature: unknown metered feature",
        "scenarios[0].costs[0].formula: line 1, column 4: unexpected end of formula: expected a "
        "number, a name or '('\n  1 +\n     ^",
        "scenarios[0].cost_factors.docs: no cost to serve to scale",
        "scenarios[0].cost_factors.docs: must be >= 0",
    ]


def test_compare_shows_the_margin_change_of_each_scenario() -> None:
    con, report = load_events(EVENTS)
    _base, scenarios = scenarios_from_mapping(SCENARIOS)
    comparison = compare(con, catalog(MARGIN_CATALOG), CUSTOMERS, scenarios, ingest=report)
    totals = comparison.margin_totals.select("scenario", "cost_to_serve", "gross_margin_change")
    assert totals.rows() == [
        ("base", Decimal("0.031"), Decimal(0)),
        # chat 0.004 → 0.002 a request in January, 0.002 → 0.001 a token in February.
        # Twice the credits: the same paid credits recognised, more as revenue, less as breakage.
        ("dearer_chat", Decimal("0.031"), Decimal(0)),
        ("flat_from_feb", Decimal("0.045"), Decimal("-0.014")),
        ("provider_cut", Decimal("0.016"), Decimal("0.015")),
    ]
    ann = comparison.margin.filter(pl.col("customer_id") == "ann")
    assert ann.select("scenario", "gross_margin_change").rows() == [
        ("base", Decimal(0)),
        ("dearer_chat", Decimal(0)),
        ("flat_from_feb", Decimal("-0.014")),
        ("provider_cut", Decimal("0.011")),
    ]
    # Scenarios share the base's costs to serve; each equals a replay of its own inputs.
    for scenario in scenarios[1:]:
        changed_catalog, changed_customers = scenario.apply(catalog(MARGIN_CATALOG), CUSTOMERS)
        alone = simulate(con, changed_catalog, changed_customers, ingest=report)
        assert comparison.result(scenario.name).margin.equals(alone.margin)


def test_dearer_chat_moves_breakage_into_revenue() -> None:
    # With chat at 2 credits, ann's 3 paid credits cover a1 and half of a2; 7 credits of debt
    # follow (a2 1, a3 2, a4 2, docs 2). top1 settles 2 of them (chat, 0.02 each), top2 the other
    # 5 (3 chat, 2 docs, 0.03 each) and its last 5 credits expire.
    con, report = load_events(EVENTS)
    _base, scenarios = scenarios_from_mapping(SCENARIOS)
    changed_catalog, changed_customers = scenarios[3].apply(catalog(MARGIN_CATALOG), CUSTOMERS)
    margin = simulate(con, changed_catalog, changed_customers, ingest=report).margin
    ann = margin.filter(pl.col("customer_id") == "ann").select("feature_id", "revenue", "breakage")
    assert ann.rows() == [
        ("ping", Decimal(0), Decimal(0)),
        (None, Decimal(0), Decimal("0.15")),
        ("chat", Decimal("0.03") + Decimal("0.04") + Decimal("0.09"), Decimal(0)),
        ("docs", Decimal("0.06"), Decimal(0)),
    ]


def test_compare_command_writes_and_prints_the_margin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "catalog.yaml").write_text(MARGIN_CATALOG, encoding="utf-8")
    events_frame(EVENTS).write_parquet(tmp_path / "events.parquet")
    (tmp_path / "scenarios.yaml").write_text(
        "scenarios:\n  - {name: base}\n  - {name: provider_cut, cost_factors: {chat: 0.5}}\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    code = main(
        [
            "compare",
            "--catalog", str(tmp_path / "catalog.yaml"),
            "--events", str(tmp_path / "events.parquet"),
            "--scenarios", str(tmp_path / "scenarios.yaml"),
            "--out", str(out),
            "--quiet",
            "--json",
        ]
    )  # fmt: skip
    assert code == 0
    printed = json.loads(capsys.readouterr().out, parse_float=Decimal)
    assert [(row["scenario"], row["gross_margin_change"]) for row in printed["margin"]] == [
        ("base", Decimal("0")),
        ("provider_cut", Decimal("0.015")),
    ]
    written = pl.read_parquet(out / "comparison_margin_totals.parquet")
    assert written["scenario"].to_list() == ["base", "provider_cut"]
    assert (out / "comparison_margin.parquet").exists()
    assert (out / "scenarios" / "provider_cut" / "margin.parquet").exists()


def test_every_customer_who_consumed_has_a_margin_row_in_every_scenario() -> None:
    # dan has no grants: his one `docs` event (2 credits, nothing to serve) is overdraft never
    # settled, so nothing is recognised and nothing costs: a margin of 0.00, not a missing row.
    con, report = load_events([*EVENTS, {**EVENTS[4], "event_id": "d1", "customer_id": "dan"}])
    scenarios = [Scenario(name="base"), Scenario(name="same")]
    comparison = compare(con, catalog(MARGIN_CATALOG), CUSTOMERS, scenarios, ingest=report)
    dan = comparison.margin.filter(pl.col("customer_id") == "dan")
    assert dan.select("scenario", "revenue", "cost_to_serve", "gross_margin").rows() == [
        ("base", Decimal(0), Decimal(0), Decimal(0)),
        ("same", Decimal(0), Decimal(0), Decimal(0)),
    ]
