"""The report's credit activity section on the hand-made comparison (tests/report/handmade.py).

By hand, from the notifications of SPEC §6: every scenario grants the three grants and warns
alice that her top-up ends soon (3 January) and expires (10 January). In the base carol's third
call leaves 0 (depleted, her promotion emptied) and her fourth −1 (overdraft started); at double
cost bob does the same (one more of each); under `block` at double cost carol's calls are denied
before her balance reaches 0, so nobody is depleted (one fewer of each).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pricing_lab.report import findings
from pricing_lab.report.build import write_comparison
from pricing_lab.simulation.scenarios import Comparison
from tests.report.browser import render
from tests.report.handmade import handmade_comparison

RUN_OUT_KINDS = ("credits.depleted", "credits.overdraft_started", "grant.emptied")


@pytest.fixture(scope="module")
def comparison() -> Comparison:
    return handmade_comparison()


def test_notifications_per_scenario_and_kind_against_the_base(comparison: Comparison) -> None:
    totals = findings.activity_totals(comparison)
    rows = {(r[0], r[1]): r[2:] for r in totals.rows()}  # (events, change, customers, most)
    assert rows[("base", "grant.granted")] == (3, None, 3, 1)
    assert rows[("base", "grant.ending_soon")] == (1, None, 1, 1)
    for kind in RUN_OUT_KINDS:
        assert rows[("base", kind)] == (1, None, 1, 1)
        assert rows[("double", kind)] == (2, 1, 2, 1)
        assert rows[("strict_double", kind)] == (0, -1, 0, 0)  # kept at 0, not left out
    changes = findings.activity_changes(comparison)
    assert changes.select("scenario", "customer_id", "kind", "events_change").rows() == [
        *(("double", "bob", kind, 1) for kind in RUN_OUT_KINDS),
        *(("strict_double", "carol", kind, -1) for kind in RUN_OUT_KINDS),
    ]


def test_report_shows_the_activity_section(comparison: Comparison, tmp_path: Path) -> None:
    write_comparison(comparison, tmp_path)
    page = render(tmp_path / "report.html", tmp_path / "activity_report.png")
    assert page.console_errors == ""
    section = page.dom[page.dom.index("Credit activity") :]
    assert "Notifications per scenario and kind" in section
    assert "credits.overdraft_started" in section and "grant.ending_soon" in section
    assert "Customers whose notifications change most" in section
    assert section.index("bob") < section.index("carol")


def test_a_written_comparison_holds_the_activity_file_its_report_names(
    comparison: Comparison, tmp_path: Path
) -> None:
    # The report sends readers to comparison_activity.parquet for the changes it does not list:
    # a comparison written from Python has it too, not only one written by `pricing-lab compare`.
    paths = write_comparison(comparison, tmp_path)
    assert tmp_path / "comparison_activity.parquet" in paths
    written = pl.read_parquet(tmp_path / "comparison_activity.parquet")
    assert written.equals(comparison.activity)
    assert written.select("scenario").unique().height > 1
