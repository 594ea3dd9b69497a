"""The scenario comparison report: which charts and tables, in which order, from a `Comparison`."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from pricing_lab.report import charts
from pricing_lab.report.html import Report, ReportSection, write_report
from pricing_lab.simulation.scenarios import Comparison, scenario_folder

TRACE_ATTRIBUTION = (
    "Usage data: Azure LLM inference trace 2023 (Patel et al., 'Splitwise: Efficient generative "
    "LLM inference using phase splitting', ISCA 2024; CC-BY 4.0, Microsoft Azure) and the Mooncake "
    "conversation trace (Qin et al., 'Mooncake: Trading More Storage for Less Computation', "
    "FAST 2025; Apache-2.0)."
)


def comparison_report(
    comparison: Comparison, *, title: str = "Pricing scenarios", footer: str = ""
) -> Report:
    """The report of a comparison: totals, money, per-customer changes, burn, balances."""
    base = comparison.result(comparison.base)
    others = comparison.customers.filter(pl.col("scenario") != comparison.base)
    money_totals = comparison.totals.select("scenario", "recharge_revenue", "breakage")
    sections = [
        ReportSection(
            title="Scenarios at a glance",
            text=(
                f"Base scenario: {comparison.base}. Each scenario replays the same events; "
                "changes are against the base."
            ),
            charts=[charts.revenue_and_breakage(money_totals)],
            tables=[("Totals per scenario", comparison.totals.sort("scenario"))],
        ),
        ReportSection(
            title="Per-customer change",
            text="How each customer's credit consumption and run-out date move against the base.",
            charts=[charts.change_distribution(others), charts.runout_shift(others)],
            tables=[
                (
                    "Largest changes in credits consumed",
                    others.sort("consumed_change", descending=True, nulls_last=True)
                    .head(20)
                    .with_columns(pl.col("consumed_change_pct").round(2)),
                )
            ],
        ),
        ReportSection(
            title="Burn per feature",
            text=f"Credits consumed per feature over time in {comparison.base}.",
            charts=[charts.burn_per_feature(base.ledger)],
            tables=[("Consumed per feature and scenario", comparison.features)],
        ),
        ReportSection(
            title="Balances of the largest customers",
            text=f"Balance over time of the largest consumers in {comparison.base}.",
            charts=[charts.balance_over_time(base.ledger)],
        ),
    ]
    return Report(title=title, sections=sections, footer=footer)


def write_comparison(
    comparison: Comparison, out_dir: str | Path, *, footer: str = ""
) -> list[Path]:
    """Write a comparison: customers/features/totals Parquet, each scenario's outputs under
    `scenarios/NAME/`, `comparison.json` (base and scenario names) and `report.html`. Returns the
    paths written."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, frame in (
        ("comparison_customers.parquet", comparison.customers),
        ("comparison_features.parquet", comparison.features),
        ("comparison_totals.parquet", comparison.totals),
        ("comparison_margin.parquet", comparison.margin),
        ("comparison_margin_totals.parquet", comparison.margin_totals),
    ):
        frame.write_parquet(folder / name, statistics=False)
        paths.append(folder / name)
    for name, result in comparison.results.items():
        paths.extend(result.write(scenario_folder(folder, name)))
    about = folder / "comparison.json"
    about.write_text(
        json.dumps({"base": comparison.base, "scenarios": list(comparison.results)}, indent=2)
        + "\n",
        encoding="utf-8",
    )
    paths.append(about)
    paths.append(write_report(comparison_report(comparison, footer=footer), folder / "report.html"))
    return paths
