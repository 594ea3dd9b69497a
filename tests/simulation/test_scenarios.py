"""Scenarios: YAML loading, compare = separate replays, sweeps, goal seek, `pricing-lab compare`."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pricing_lab.cli import main
from pricing_lab.errors import InputError, ValidationError
from pricing_lab.events.ingest import ingest_events
from pricing_lab.report.build import write_comparison
from pricing_lab.simulation.customers import CustomerInputs, customers_from_mapping
from pricing_lab.simulation.scenarios import (
    AutoRechargeChange,
    RateChange,
    Scenario,
    compare,
    goal_seek,
    load_scenarios,
    sweep,
    validate_scenarios,
)
from pricing_lab.simulation.simulate import SimulationResult, simulate
from tests.simulation.helpers import CATALOG_YAML, catalog, ev, events_frame, load_events, naive

SCENARIOS_YAML = """
base: today
scenarios:
  - name: today
  - name: chat_x2
    description: chat costs twice as much
    rate_multipliers: {chat: 2}
  - name: basic_credits_20
    plan_credits: {basic: 20}
  - name: promo_half
    grant_multipliers: {PROMOTIONAL: 0.5}
  - name: blocking
    enforcement: block
  - name: no_recharge
    auto_recharge: {disabled: true}
  - name: basic_chat_formula
    rates:
      - {feature: chat, plan: basic, formula: "tokens * 0.2"}
  - name: free_chat
    rates:
      - {feature: chat_requests, per_unit: 0}
    rate_multipliers: {chat: 0}
"""


def customers_doc(*, promo: int = 20, recharge: bool = True) -> dict[str, object]:
    carol: dict[str, object] = {
        "id": "carol",
        "subscriptions": [{"plan": "pro", "start": "2024-01-01", "addons": ["imgpack"]}],
    }
    if recharge:
        carol["auto_recharge"] = {
            "currency": "CR",
            "threshold": 100,
            "target": 500,
            "monthly_spend_limit": 3,
            "grant_expiry": "1_month",
        }
    return {
        "customers": [
            {
                "id": "acme",
                "subscriptions": [{"plan": "basic", "start": "2024-01-01"}],
                "grants": [
                    {
                        "grant_id": "promo",
                        "currency": "CR",
                        "amount": promo,
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
            carol,
            {"id": "dave"},
        ]
    }


EVENTS = [
    ev("a1", "acme", "chat", naive(5), tokens=50),
    ev("a2", "acme", "chat", naive(12), tokens=600),
    ev("a3", "acme", "chat", naive(25), tokens=500),
    ev("a4", "acme", "chat", naive(3, month=2), tokens=100),
    ev("b1", "bob", "chat", naive(3), tokens=4),
    ev("b2", "bob", "img", naive(4)),
    ev("c1", "carol", "chat", naive(10), tokens=20000),
    ev("c2", "carol", "img", naive(11)),
    ev("c3", "carol", "chat", naive(20), tokens=4000),
    ev("d1", "dave", "chat", naive(7), tokens=2),
]

# Each scenario's changed inputs, written out by hand: (catalog text, customers, enforcement).
HAND_MADE = {
    "today": (CATALOG_YAML, customers_doc(), "overdraft"),
    "chat_x2": (
        CATALOG_YAML.replace("tokens * 0.1", "tokens * 0.2")
        .replace("tokens * 0.05", "tokens * 0.1")
        .replace("per_unit: 0.5}", "per_unit: 1}"),  # the default chat rate
        customers_doc(),
        "overdraft",
    ),
    "basic_credits_20": (
        CATALOG_YAML.replace("amount: 100, cadence", "amount: 20, cadence"),
        customers_doc(),
        "overdraft",
    ),
    "promo_half": (CATALOG_YAML, customers_doc(promo=10), "overdraft"),
    "blocking": (CATALOG_YAML, customers_doc(), "block"),
    "no_recharge": (CATALOG_YAML, customers_doc(recharge=False), "overdraft"),
    "basic_chat_formula": (
        CATALOG_YAML.replace("tokens * 0.1", "tokens * 0.2"),
        customers_doc(),
        "overdraft",
    ),
    "free_chat": (
        CATALOG_YAML.replace("tokens * 0.1", "0")
        .replace("tokens * 0.05", "0")
        .replace("per_unit: 0.5}", "per_unit: 0}")
        .replace("per_unit: 0.25}", "per_unit: 0}")
        .replace("per_unit: 1}", "per_unit: 0}")  # the default chat_requests rate
        .replace("per_unit: 9}", "per_unit: 0}"),  # the add-on's chat rate
        customers_doc(),
        "overdraft",
    ),
}  # fmt: skip

# Independent measures per customer, from the ledger and denied events of a separate replay.
MEASURES_SQL = """
WITH l AS (SELECT * FROM ledger),
customers AS (
    SELECT customer_id, currency_id FROM l UNION SELECT customer_id, currency_id FROM denied
)
SELECT c.customer_id,
       coalesce((SELECT -sum(amount) FROM l WHERE l.customer_id = c.customer_id
                 AND entry_type = 'CONSUMED'), 0)::DECIMAL(38, 2) AS consumed,
       (SELECT min(t) FROM (SELECT timestamp AS t FROM l WHERE l.customer_id = c.customer_id
                 AND entry_type = 'CONSUMED' AND balance_after <= 0
                 UNION ALL SELECT timestamp FROM denied d WHERE d.customer_id = c.customer_id)
       ) AS runout_at,  -- a denied event (block) is running out too
       (SELECT count(*) FROM denied d WHERE d.customer_id = c.customer_id) AS events_denied,
       coalesce((SELECT sum(amount) * 0.01 FROM l WHERE l.customer_id = c.customer_id
                 AND entry_type = 'GRANTED' AND grant_source = 'auto_recharge'), 0)
         ::DECIMAL(38, 4) AS recharge_revenue,
       coalesce((SELECT -sum(amount * CASE WHEN grant_source IN ('top_up', 'auto_recharge')
                                          THEN 0.01 ELSE 0 END)
                 FROM l WHERE l.customer_id = c.customer_id AND entry_type = 'EXPIRED'), 0)
         ::DECIMAL(38, 4) AS breakage
FROM customers c ORDER BY 1
"""


def measures(result: SimulationResult) -> dict[str, tuple[object, ...]]:
    con = duckdb.connect()
    con.register("ledger", result.ledger.to_arrow())
    con.register("denied", result.denied_events.to_arrow())
    return {row[0]: row[1:] for row in con.execute(MEASURES_SQL).fetchall()}


def test_scenario_yaml_loading(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIOS_YAML)
    base, scenarios = load_scenarios(path)
    assert base == "today"
    assert [s.name for s in scenarios] == list(HAND_MADE)
    by_name = {s.name: s for s in scenarios}
    assert by_name["chat_x2"].rate_multipliers == {"chat": Decimal(2)}
    assert by_name["chat_x2"].description == "chat costs twice as much"
    assert by_name["promo_half"].grant_multipliers == {"PROMOTIONAL": Decimal("0.5")}
    assert by_name["blocking"].enforcement == "block"
    assert by_name["no_recharge"].auto_recharge == AutoRechargeChange(disabled=True)
    assert by_name["basic_chat_formula"].rates == (
        RateChange(feature="chat", plan="basic", formula="tokens * 0.2"),
    )
    assert by_name["free_chat"].rates == (RateChange(feature="chat_requests", per_unit=Decimal(0)),)


def test_scenario_yaml_problems_are_listed_with_paths(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        """
baseline: x
scenarios:
  - description: no name
  - name: one
    colour: blue
    enforcement: strict
    rates:
      - {per_unit: 2}
      - {feature: chat, per_unit: lots, discount: 3}
    plan_credits: [basic]
    auto_recharge: {threshold: low, grant_expiry: 1_month, every: day}
"""
    )
    with pytest.raises(ValidationError) as error:
        load_scenarios(path)
    assert {(p.path, p.message) for p in error.value.problems} == {
        ("baseline", "unknown key"),
        ("scenarios[0]", "expected a mapping with a name"),
        ("scenarios[1].colour", "unknown key"),
        ("scenarios[1].enforcement", "must be overdraft or block"),
        ("scenarios[1].rates[0]", "needs feature"),
        ("scenarios[1].rates[1].discount", "unknown key"),
        ("scenarios[1].rates[1].per_unit", "expected a number, got 'lots'"),
        ("scenarios[1].plan_credits", "expected a mapping"),
        ("scenarios[1].auto_recharge.every", "unknown key"),
        ("scenarios[1].auto_recharge.threshold", "expected a number, got 'low'"),
    }
    assert str(path) in str(error.value)
    with pytest.raises(InputError, match="no such scenario file"):
        load_scenarios(tmp_path / "missing.yaml")


def test_scenarios_are_checked_against_the_catalog() -> None:
    con, _ = load_events(EVENTS)
    bad = [
        Scenario(name="x", rates=(RateChange(feature="nope", per_unit=Decimal(1)),)),
        Scenario(
            name="x", plan_credits={"gold": Decimal(5)}, grant_multipliers={"PAID": Decimal(-1)}
        ),
        Scenario(name="y", rates=(RateChange(feature="chat", formula="tokens *"),)),
    ]  # fmt: skip
    with pytest.raises(ValidationError) as error:
        compare(con, catalog(), CustomerInputs(), bad)
    paths = {p.path for p in error.value.problems}
    assert paths == {
        "scenarios[0].rates[0].feature",
        "scenarios[1].name",
        "scenarios[1].plan_credits.gold",
        "scenarios[1].grant_multipliers.PAID",
        "scenarios[2].rates[0].formula",
    }


def test_compare_equals_separate_replays_of_each_scenarios_inputs(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIOS_YAML)
    base, scenarios = load_scenarios(path)
    con, _ = load_events(EVENTS)
    comparison = compare(
        con, catalog(), customers_from_mapping(customers_doc()), scenarios, base=base
    )
    table = comparison.customers
    assert set(table["scenario"]) == set(HAND_MADE)
    expected_all: dict[str, dict[str, tuple[object, ...]]] = {}
    for name, (text, customers, enforcement) in HAND_MADE.items():
        separate_con, _ = load_events(EVENTS)
        separate = simulate(
            separate_con,
            catalog(text),
            customers_from_mapping(customers),
            enforcement=enforcement,  # type: ignore[arg-type]
            scenario=name,
        )
        # the same ledger, entry for entry
        assert comparison.result(name).ledger.equals(separate.ledger), name
        expected_all[name] = measures(separate)
    base_measures = expected_all["today"]
    for name, expected in expected_all.items():
        rows = table.filter(pl.col("scenario") == name).sort("customer_id")
        customers_seen = set(rows["customer_id"])
        # every customer of any scenario has a row in every scenario
        assert customers_seen == {"acme", "bob", "carol", "dave"}, name
        for row in rows.iter_rows(named=True):
            want = expected.get(row["customer_id"], (Decimal(0), None, 0, Decimal(0), Decimal(0)))
            got = (
                row["consumed"],
                row["runout_at"],
                row["events_denied"],
                row["recharge_revenue"],
                row["breakage"],
            )
            assert got == want, (name, row["customer_id"])
            base_consumed = base_measures[row["customer_id"]][0]
            assert row["consumed_change"] == want[0] - base_consumed  # type: ignore[operator]

    # the scenarios do change what they should (the test would be idle otherwise)
    def consumed(name: str, customer: str) -> Decimal:
        value = table.filter((pl.col("scenario") == name) & (pl.col("customer_id") == customer))
        return value["consumed"].item()  # type: ignore[no-any-return]

    assert consumed("chat_x2", "acme") == 2 * consumed("today", "acme")
    assert consumed("free_chat", "dave") == 0 < consumed("today", "dave")
    blocked = table.filter((pl.col("scenario") == "blocking") & (pl.col("events_denied") > 0))
    assert blocked.height > 0
    recharged = table.filter(pl.col("customer_id") == "carol").sort("scenario")
    assert set(recharged["recharge_revenue"]) > {Decimal(0)}
    totals = comparison.totals.sort("scenario")
    assert totals["scenario"].to_list() == sorted(HAND_MADE)
    for row in totals.iter_rows(named=True):
        rows = table.filter(pl.col("scenario") == row["scenario"])
        assert row["consumed"] == rows["consumed"].sum()
    features = comparison.features.filter(pl.col("scenario") == "free_chat")
    assert dict(features.select("feature_id", "consumed").iter_rows()) == {
        "chat": Decimal(0),  # consumed in other scenarios: shown here with 0
        "chat_requests": Decimal(0),
        "img": Decimal("2.00"),  # carol's add-on rate is not a chat rate
    }


def test_sweep_replays_one_scenario_per_value() -> None:
    con, _ = load_events(EVENTS)
    values = [Decimal(1), Decimal("1.5"), Decimal(3)]
    comparison = sweep(
        con,
        catalog(),
        customers_from_mapping(customers_doc()),
        lambda v: Scenario(name=f"chat x{v}", rate_multipliers={"chat": v}),
        values,
    )
    totals = dict(comparison.totals.select("scenario", "consumed").iter_rows())
    assert set(totals) == {"base", "chat x1", "chat x1.5", "chat x3"}
    assert totals["chat x1"] == totals["base"]
    # dave's chat (0.5 × 2 tokens = 1) scales, his chat_requests (1 per event) does not
    dave = comparison.customers.filter(pl.col("customer_id") == "dave")
    assert dict(dave.select("scenario", "consumed").iter_rows()) == {
        "base": Decimal("2.00"),
        "chat x1": Decimal("2.00"),
        "chat x1.5": Decimal("2.50"),
        "chat x3": Decimal("4.00"),
    }


def test_goal_seek_finds_the_largest_multiplier_keeping_customers_within_credits() -> None:
    # Ten customers without plans, each with a 100-credit promotion; customer k sends one chat
    # event of 10·k tokens: 0.5 credits per token, so with multiplier m it costs 5·k·m (and 1 for
    # the request). Customer k stays within credits while 5·k·m + 1 < 100. For 70% to stay
    # within (k = 1..7), 35·m + 1 < 100 → m < 2.8286; for k = 8: 40·m + 1 < 100 → m < 2.475.
    con, customers = _ten_customers_with_one_chat_each()
    found = goal_seek(
        con,
        catalog(),
        customers,
        lambda m: Scenario(name=f"chat x{m}", rate_multipliers={"chat": m}),
        low=Decimal(1),
        high=Decimal(5),
        target=0.7,
        tolerance=Decimal("0.01"),
    )
    assert Decimal("2.475") <= found.value < Decimal("2.8286")
    assert Decimal("2.8286") - found.value <= Decimal("0.02")
    assert found.measure == pytest.approx(0.7)
    assert found.steps[0] == (Decimal(1), 1.0)  # every customer within at the low end
    assert len(found.steps) <= 12
    with pytest.raises(InputError, match="not met"):
        goal_seek(
            con,
            catalog(),
            customers,
            lambda m: Scenario(name=f"m{m}", rate_multipliers={"chat": m}),
            low=Decimal(30),
            high=Decimal(40),
            target=0.7,
        )


def test_compare_cli_writes_parquet_scenarios_and_a_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "catalog.yaml").write_text(CATALOG_YAML)
    (tmp_path / "scenarios.yaml").write_text(SCENARIOS_YAML)
    rows = [*EVENTS, ev("a1", "acme", "chat", naive(6), tokens=1)]  # one duplicate
    events_frame(rows).write_parquet(tmp_path / "events.parquet")
    (tmp_path / "customers.yaml").write_text(
        "customers:\n" + "".join(f"  - {c}\n" for c in _json_customers())
    )
    out = tmp_path / "out"
    status = main(
        [
            "compare", "--catalog", str(tmp_path / "catalog.yaml"),
            "--events", str(tmp_path / "events.parquet"),
            "--customers", str(tmp_path / "customers.yaml"),
            "--scenarios", str(tmp_path / "scenarios.yaml"),
            "--out", str(out), "--quiet", "--until", "2024-02-01T00:00:00Z",
        ]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert status == 0, captured.err
    for name in ("comparison_customers", "comparison_features", "comparison_totals"):
        assert pl.read_parquet(out / f"{name}.parquet").height > 0
    for name in HAND_MADE:
        folder = out / "scenarios" / name
        assert (folder / "ledger.parquet").exists() and (folder / "summary.json").exists()
    ledger = pl.read_parquet(out / "scenarios" / "today" / "ledger.parquet")
    # --until bounds the horizon: nothing at or after February 1st
    assert ledger["timestamp"].dt.month().max() == 1
    assert ledger.filter(pl.col("event_id") == "a4").is_empty()
    rejected = pl.read_parquet(out / "scenarios" / "today" / "rejected_events.parquet")
    assert rejected["reason"].to_list() == ["duplicate_event_id"]
    html = (out / "report.html").read_text()
    assert html.count("class='chart'") == 6 and "https://" not in html.split("<body>")[1][:2000]
    assert "today" in captured.out


def _json_customers() -> list[str]:
    import json

    return [json.dumps(c) for c in customers_doc()["customers"]]  # type: ignore[attr-defined]


def test_compare_writing_as_it_goes_gives_the_same_results_and_files(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIOS_YAML)
    base, scenarios = load_scenarios(path)
    con, _ = load_events(EVENTS)
    inputs = (con, catalog(), customers_from_mapping(customers_doc()), scenarios)
    in_memory = compare(*inputs, base=base)
    write_comparison(in_memory, tmp_path / "after")
    streamed = compare(*inputs, base=base, out_dir=tmp_path / "as_it_goes")
    # only the base keeps its ledger in memory; the others read theirs back, unchanged
    assert not streamed.results[base].ledger_on_disk
    assert all(streamed.results[name].ledger_on_disk for name in HAND_MADE if name != base)
    for name in HAND_MADE:
        assert streamed.result(name).read_ledger().equals(in_memory.result(name).ledger), name
    assert streamed.customers.equals(in_memory.customers)
    assert streamed.features.equals(in_memory.features)
    assert streamed.totals.equals(in_memory.totals)
    # writing the comparison afterwards adds the tables and the report, and leaves the scenario
    # files as they were written; every scenario file is byte for byte the in-memory path's
    scenario_file = tmp_path / "as_it_goes" / "scenarios" / "chat_x2" / "ledger.parquet"
    written_at = scenario_file.stat().st_mtime_ns
    write_comparison(streamed, tmp_path / "as_it_goes")
    assert scenario_file.stat().st_mtime_ns == written_at
    after = sorted(p.relative_to(tmp_path / "after") for p in (tmp_path / "after").rglob("*.*"))
    streamed_files = sorted(
        p.relative_to(tmp_path / "as_it_goes") for p in (tmp_path / "as_it_goes").rglob("*.*")
    )
    assert streamed_files == after
    for relative in after:
        if relative.suffix in (".parquet", ".json"):
            one = (tmp_path / "after" / relative).read_bytes()
            assert (tmp_path / "as_it_goes" / relative).read_bytes() == one, relative


def test_goal_seek_with_the_default_tolerance_tries_values_a_rate_can_take() -> None:
    # The customers of the test above: 70% stay within their credits while 35·m + 1 < 100,
    # m < 99/35 = 2.828571…. Halving [0.5, 5] thirteen times gives midpoints of 14 decimal
    # places, more than a rate takes (12): they are rounded to 0.0001 (the tolerance 0.001 / 10).
    con, customers = _ten_customers_with_one_chat_each()
    found = goal_seek(
        con,
        catalog(),
        customers,
        lambda m: Scenario(name=f"chat x{m}", rate_multipliers={"chat": m}),
        low=Decimal("0.5"),
        high=Decimal(5),
        target=0.7,
    )
    assert Decimal("2.8275") <= found.value < Decimal(99) / 35
    assert all(value.as_tuple().exponent == -4 for value, _ in found.steps[2:])


def _ten_customers_with_one_chat_each() -> tuple[duckdb.DuckDBPyConnection, CustomerInputs]:
    """Customers k01 … k10 without plans, each with a 100-credit promotion; customer k sends one
    chat event of 10·k tokens."""
    customers = customers_from_mapping(
        {
            "customers": [
                {
                    "id": f"k{k:02d}",
                    "grants": [{"currency": "CR", "amount": 100, "effective_at": "2024-01-01"}],
                }
                for k in range(1, 11)
            ]
        }
    )
    con, _ = load_events(
        [ev(f"e{k}", f"k{k:02d}", "chat", naive(2), tokens=10 * k) for k in range(1, 11)]
    )
    return con, customers


def test_names_that_would_share_an_output_folder_are_refused() -> None:
    # `a/b` is written to scenarios/a_b: `a_b` would overwrite its files, `..` write into DIR.
    named = [Scenario(name="a/b"), Scenario(name="a_b"), Scenario(name=".."), Scenario(name="c")]
    assert [str(p) for p in validate_scenarios(named, catalog())] == [
        "scenarios[1].name: its outputs' folder scenarios/a_b is that of 'a/b': rename one",
        "scenarios[2].name: not usable as a folder name",
    ]


def test_compare_from_python_rejects_meter_values_that_are_not_numbers_once(
    tmp_path: Path,
) -> None:
    # Tokens as text: `many` and `1e999` are no number the chat meter can sum. Every scenario
    # lists those events once, as bad_value (not costed: no cost_out_of_range beside them).
    frame = pl.DataFrame(
        {
            "event_id": ["a1", "a2", "b1", "b2"],
            "customer_id": ["acme", "acme", "bob", "bob"],
            "event_name": ["chat"] * 4,
            "timestamp": [naive(day) for day in (5, 6, 3, 4)],
            "tokens": ["50", "many", "4", "1e999"],
        }
    )
    con = duckdb.connect()
    report = ingest_events(con, frame)
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIOS_YAML)
    base, scenarios = load_scenarios(path)
    comparison = compare(
        con, catalog(), customers_from_mapping(customers_doc()), scenarios, base=base,
        ingest=report,
    )  # fmt: skip
    for name, result in comparison.results.items():
        rows = result.rejected_events.select("event_id", "reason").sort("event_id").rows()
        assert rows == [("a2", "bad_value"), ("b2", "bad_value")], name
        consumed = result.read_ledger().filter(pl.col("entry_type") == "CONSUMED")["event_id"]
        assert set(consumed.to_list()) <= {"a1", "b1"}, name  # free_chat consumes nothing
    base_ledger = comparison.result(base).ledger
    consumed = base_ledger.filter(pl.col("entry_type") == "CONSUMED")["event_id"]
    assert sorted(set(consumed.to_list())) == ["a1", "b1"]
