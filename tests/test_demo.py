"""`pricing-lab demo`: the main job runs in under a minute and its report renders every chart."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pricing_lab.events.real import DEFAULT_START, load_sample_events
from pricing_lab.simulation.customers import load_customers
from pricing_lab.simulation.demo import DEMO_CUSTOMERS, demo_customers, package_text
from tests.conftest import EXAMPLES, REPO
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
    # the headline: scenarios side by side, every figure with its change against the base
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["scenario", "base", "chat_output_1.2x"], result.stdout
    shown = {line.split("  ")[0]: line for line in lines[2:11]}
    assert list(shown) == [
        "credits consumed",
        "credit revenue",
        "recharge revenue",
        "breakage",
        "credits rolled over",
        "customers who run out",
        "newly run out",
        "no longer run out",
        "denied events",
    ]
    assert "USD" in shown["breakage"] and "%" in shown["credits consumed"]
    assert re.search(r"customers who run out\s+9\s+11 \(\+2\)", shown["customers who run out"])
    assert "Azure LLM inference trace 2023" in result.stdout and "Mooncake" in result.stdout
    assert "CC-BY 4.0" in result.stdout
    # progress went to stderr, step by step, in whole lines (stderr is not a terminal here)
    assert [f"[{n}/5]" in result.stderr for n in range(1, 6)] == [True] * 5
    assert "\r" not in result.stderr and "done in" in result.stderr
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
    assert charts == 6
    assert "<script src=" not in html  # nothing to fetch: works offline
    screenshot = tmp_path / "demo_report.png"
    page = render(report, screenshot)
    assert page.console_errors == ""
    assert page.dom.count('class="marks"') >= charts
    # who runs out: the two customers who newly run out are named, in the table and the finding
    assert page.dom.count("newly runs out") == 2 and "newly: cust-00039, cust-00038" in page.dom
    assert "26.97 USD" in page.dom  # money in cents with its currency
    assert screenshot.exists() and screenshot.stat().st_size > 10_000


def test_example_customers_are_the_demo_rules_and_ship_in_the_package() -> None:
    example = (EXAMPLES / "customers.yaml").read_text(encoding="utf-8")
    assert package_text(DEMO_CUSTOMERS) == example
    con = duckdb.connect()
    load_sample_events(con)
    assert load_customers(EXAMPLES / "customers.yaml") == demo_customers(con, start=DEFAULT_START)


def test_readme_python_snippet_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## From Python and notebooks") :]
    snippet = section[
        section.index("```python\n") + len("```python\n") : section.index("```\n", 10)
    ]
    (tmp_path / "examples").symlink_to(EXAMPLES)  # "run from the repository's root"
    monkeypatch.chdir(tmp_path)
    names: dict[str, object] = {}
    exec(compile(snippet, "README.md", "exec"), names)
    assert (tmp_path / "report.html").stat().st_size > 100_000
    comparison = names["comparison"]
    assert "customers who run out" in repr(comparison)


@pytest.mark.parametrize("quiet", [False, True])
def test_demo_quiet_shows_no_progress(
    quiet: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Like every long command, `--quiet` turns the progress off (README, "The command line"); the
    # replay itself is stood in for: a step shown, then a refusal that ends the command.
    from pricing_lab.cli import main
    from pricing_lab.errors import InputError
    from pricing_lab.simulation import demo

    def first_step_then_stop(out: Path, *, progress: object) -> None:
        progress.phase("loading the sample")  # type: ignore[attr-defined]
        progress.phase("replaying")  # type: ignore[attr-defined]  # the first step ends: shown
        raise InputError("stopped here")

    monkeypatch.setattr(demo, "run_demo", first_step_then_stop)
    assert main(["demo", "--out", "unused", *(["--quiet"] if quiet else [])]) == 2
    err = capsys.readouterr().err
    assert ("loading the sample" in err) is not quiet and "stopped here" in err
