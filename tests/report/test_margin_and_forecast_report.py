"""The report's margin section on the hand-made comparison with a cost to serve
(tests/report/handmade.py: figures worked out there by hand), and its run-out section on a small
forecast table written by hand."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from pricing_lab.report import findings
from pricing_lab.report.build import write_comparison
from pricing_lab.simulation.scenarios import Comparison
from tests.report.browser import render
from tests.report.handmade import COSTED_CATALOG, handmade_comparison

TIME = pl.Datetime("us", "UTC")


@pytest.fixture(scope="module")
def comparison() -> Comparison:
    return handmade_comparison(catalog=COSTED_CATALOG)


def jan(day: int, hour: int = 0) -> datetime:
    return datetime(2024, 1, day, hour, tzinfo=UTC)


def forecast_table(probabilities: dict[str, float]) -> pl.DataFrame:
    """A forecast as of 11 January over 30 days, in `forecast`'s columns: each customer's chance
    of running out; carol's p10 / p50 on 12 and 14 January, bob's p10 on 20 January, the other
    quantiles after the horizon; dave has too little history."""
    quantiles = {"carol": (jan(12, 9), jan(14, 18)), "bob": (jan(20, 6), None)}
    names = [*probabilities, "dave"]
    return pl.DataFrame(
        {
            "customer_id": names,
            "currency_id": ["credits"] * len(names),
            "as_of": [jan(11)] * len(names),
            "horizon_end": [datetime(2024, 2, 10, tzinfo=UTC)] * len(names),
            "balance": [Decimal("1.50")] * len(names),
            "days_with_usage": [9] * len(probabilities) + [2],
            "too_little_history": [False] * len(probabilities) + [True],
            "mean_daily_burn": [Decimal("1.00")] * len(probabilities) + [None],
            "run_out_probability": [*probabilities.values(), None],
            "run_out_p10": [quantiles.get(n, (None, None))[0] for n in names],
            "run_out_p50": [quantiles.get(n, (None, None))[1] for n in names],
            "run_out_p90": [None] * len(names),
            "expected_expired": [Decimal(0)] * len(probabilities) + [None],
            "expected_breakage": [Decimal(0)] * len(probabilities) + [None],
        },
        schema_overrides={
            "as_of": TIME,
            "horizon_end": TIME,
            "run_out_p10": TIME,
            "run_out_p50": TIME,
            "run_out_p90": TIME,
            "balance": pl.Decimal(38, 2),
            "mean_daily_burn": pl.Decimal(38, 2),
            "expected_expired": pl.Decimal(38, 2),
            "expected_breakage": pl.Decimal(38, 12),
        },
    )


def test_margin_per_scenario_against_the_base(comparison: Comparison) -> None:
    frame = findings.margin_headlines(comparison)
    assert frame.select(
        "scenario", "revenue", "breakage", "cost_to_serve", "gross_margin"
    ).rows() == [
        ("base", Decimal("0.04"), Decimal("0.06"), Decimal("0.06"), Decimal("0.04")),
        ("double", Decimal("0.08"), Decimal("0.02"), Decimal("0.06"), Decimal("0.04")),
        ("strict_double", Decimal("0.08"), Decimal("0.02"), Decimal("0.035"), Decimal("0.065")),
    ]
    assert frame["margin_share_pct"].round(6).to_list() == [40.0, 40.0, 65.0]
    assert frame["gross_margin_change"].to_list() == [None, Decimal(0), Decimal("0.025")]
    assert frame["margin_share_pct_change"].round(6).to_list() == [None, 0.0, 25.0]
    assert frame["negative_margin_customers"].to_list() == [2, 2, 2]
    negative = findings.negative_margins(comparison)
    assert negative.select("scenario", "customer_id", "gross_margin").rows() == [
        ("base", "bob", Decimal("-0.02")),
        ("base", "carol", Decimal("-0.02")),
        ("double", "bob", Decimal("-0.02")),
        ("double", "carol", Decimal("-0.02")),
        ("strict_double", "bob", Decimal("-0.01")),
        ("strict_double", "carol", Decimal("-0.005")),
    ]


def test_report_shows_margin_and_who_may_run_out(comparison: Comparison, tmp_path: Path) -> None:
    forecast = forecast_table({"alice": 0.0, "bob": 0.35, "carol": 0.9})
    paths = write_comparison(comparison, tmp_path, forecast=forecast)
    assert tmp_path / "forecast.parquet" in paths
    page = render(tmp_path / "report.html", tmp_path / "margin_report.png")
    assert page.console_errors == ""
    dom = page.dom
    # margin per scenario, money to cents with its currency, changes against the base
    assert "Margin per scenario" in dom and "0.035" not in dom
    assert "0.04 USD" in dom and "0.07 USD" in dom and "+0.03 USD" in dom  # 0.065, +0.025
    assert "65.0%" in dom and "+25.0%" in dom
    assert "Customers with negative margin" in dom and "-0.02 USD" in dom
    # run-out: carol first (earliest p50), then bob; alice (no chance) and dave (flagged) not
    section = dom[dom.index("Run-out forecast") :]
    assert section.index("carol") < section.index("bob")
    assert "alice" not in section and "dave" not in section
    assert "90.0%" in section and "35.0%" in section
    assert "2024-01-12 09:00" in section and "2024-01-14 18:00" in section
    assert "2024-01-20 06:00" in section
    assert "1 customer-currencies have too little history" in section
    assert "gross margin in base" in section


def test_run_out_section_says_when_no_one_is_at_risk(
    comparison: Comparison, tmp_path: Path
) -> None:
    write_comparison(comparison, tmp_path, forecast=forecast_table({"alice": 0.0, "bob": 0.0}))
    dom = render(tmp_path / "report.html", tmp_path / "calm_report.png").dom
    assert "No customer is at risk of running out before 2024-02-10 00:00 UTC." in dom


def test_no_forecast_no_run_out_section(comparison: Comparison, tmp_path: Path) -> None:
    paths = write_comparison(comparison, tmp_path)
    assert tmp_path / "forecast.parquet" not in paths
    assert "Run-out forecast" not in (tmp_path / "report.html").read_text(encoding="utf-8")
