"""The HTML report renders its charts offline in headless Chromium, with no console errors."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl

from pricing_lab.report.charts import balance_over_time, burn_per_feature, revenue_and_breakage
from pricing_lab.report.html import Notes, Report, ReportSection, write_report
from pricing_lab.report.tables import Column, Table
from tests.report.browser import render

T0 = datetime(2024, 1, 1)


def small_ledger() -> pl.DataFrame:
    rows = [
        (1, T0, "acme", "GRANTED", None, "100.00", "100.00"),
        (2, T0 + timedelta(hours=3), "acme", "CONSUMED", "chat", "-30.00", "70.00"),
        (3, T0 + timedelta(days=1), "acme", "CONSUMED", "images", "-20.00", "50.00"),
        (4, T0, "globex", "GRANTED", None, "10.00", "10.00"),
        (5, T0 + timedelta(days=2), "globex", "CONSUMED", "chat", "-10.00", "0.00"),
    ]
    return pl.DataFrame(
        [
            {
                "entry_id": r[0],
                "timestamp": r[1],
                "customer_id": r[2],
                "currency_id": "credits",
                "entry_type": r[3],
                "feature_id": r[4],
                "amount": Decimal(r[5]),
                "balance_after": Decimal(r[6]),
            }
            for r in rows
        ],
        schema_overrides={"amount": pl.Decimal(38, 2), "balance_after": pl.Decimal(38, 2)},
    )


def test_report_renders_every_chart_offline_without_console_errors(tmp_path: Path) -> None:
    ledger = small_ledger()
    totals = pl.DataFrame(
        {
            "scenario": ["base", "chat x1.2"],
            "recharge_revenue": [Decimal("12.50"), Decimal("20.00")],
            "breakage": [Decimal("3.00"), Decimal("1.00")],
        }
    )
    money = pl.DataFrame({"customer": ["acme"], "paid": [Decimal("1234567.891")]})
    report = Report(
        title="Test report",
        sections=[
            ReportSection(
                title="Burn",
                text="Two customers.",
                parts=[
                    Notes(items=["acme burned the most."]),
                    balance_over_time(ledger),
                    burn_per_feature(ledger),
                    Table(title="ledger", frame=ledger),
                ],
            ),
            ReportSection(
                title="Money",
                parts=[
                    revenue_and_breakage(totals, currency="USD"),
                    Table(
                        title="paid",
                        frame=money,
                        columns=[
                            Column(name="customer"),
                            Column(name="paid", kind="money", currency="EUR"),
                        ],
                    ),
                    Table(title="nothing here", frame=money.clear(), empty="No payments."),
                ],
            ),
        ],
        footer="data: test",
    )
    html_file = write_report(report, tmp_path / "report.html")
    html_text = html_file.read_text(encoding="utf-8")
    # Self-contained: no script or stylesheet is loaded from the network.
    assert not re.search(r"<script[^>]+src=", html_text)
    assert not re.search(r"<link[^>]+href=\"https?:", html_text)

    page = render(html_file, tmp_path / "report.png")

    assert page.console_errors == ""
    assert page.dom.count('class="marks"') == 3  # one rendered SVG per chart
    assert "globex" in page.dom and "acme burned the most." in page.dom
    assert "1,234,567.89 EUR" in page.dom  # money: thousands separators, cents, currency
    assert "100.00" in page.dom and "No payments." in page.dom
    assert "table-wrap" in page.dom  # tables scroll inside their box
    assert page.screenshot.stat().st_size > 10_000
