"""`pricing-lab demo`: the main job runs in under a minute and its report renders every chart."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from tests.report.browser import render


def test_demo_runs_prints_the_summary_and_writes_a_report_that_renders(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pricing_lab", "demo", "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    seconds = time.monotonic() - began
    assert result.returncode == 0, result.stderr
    assert seconds < 60, f"the demo took {seconds:.1f} s"
    # the summary table: one row per scenario, then the attribution of the traces
    lines = result.stdout.splitlines()
    rows = [line for line in lines if line.startswith("│ ") and "---" not in line]
    assert any(line.startswith("│ base ") for line in rows), result.stdout
    assert any(line.startswith("│ chat_output_1.2x ") for line in rows), result.stdout
    assert "credits consumed" in result.stdout and "breakage USD" in result.stdout
    assert "Azure LLM inference trace 2023" in result.stdout and "Mooncake" in result.stdout
    assert "CC-BY 4.0" in result.stdout
    # progress went to stderr, step by step
    assert [f"[{n}/5]" in result.stderr for n in range(1, 6)] == [True] * 5
    # the results behind the table
    totals = pl.read_parquet(out / "comparison_totals.parquet").sort("scenario")
    assert totals["scenario"].to_list() == ["base", "chat_output_1.2x"]
    consumed = totals["consumed"].to_list()
    assert consumed[1] > consumed[0] > 0  # chat output tokens cost more in the scenario
    for scenario in ("base", "chat_output_1.2x"):
        assert (out / "scenarios" / scenario / "ledger.parquet").exists()

    report = out / "report.html"
    html = report.read_text(encoding="utf-8")
    charts = len(re.findall(r"<div class='chart' id='chart-\d+-\d+'></div>", html))
    assert charts == 5
    assert "<script src=" not in html  # nothing to fetch: works offline
    screenshot = tmp_path / "demo_report.png"
    page = render(report, screenshot)
    assert page.console_errors == ""
    assert page.dom.count('class="marks"') >= charts
    assert screenshot.exists() and screenshot.stat().st_size > 10_000
