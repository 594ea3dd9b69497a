"""The comparison report on a comparison worked out by hand (tests/report/handmade.py): the
headline, who runs out, the denied events of `block`, a chart without data, and the views."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from pricing_lab.report import findings
from pricing_lab.report.build import headline_section, write_comparison
from pricing_lab.simulation.scenarios import Comparison, Scenario
from tests.report.browser import render
from tests.report.handmade import handmade_comparison
from tests.simulation.test_simulate import files_limited_to


@pytest.fixture(scope="module")
def comparison() -> Comparison:
    return handmade_comparison()


def jan(day: int) -> datetime:
    return datetime(2024, 1, day, 10, tzinfo=UTC)


def test_headline_per_scenario_against_the_base(comparison: Comparison) -> None:
    rows = {row["scenario"]: row for row in findings.headlines(comparison).iter_rows(named=True)}
    assert list(rows) == ["base", "double", "strict_double"]
    figures = [
        (
            r["consumed"],
            r["customers_run_out"],
            r["newly_run_out"],
            r["events_denied"],
            r["credit_revenue"],
            r["breakage"],
        )
        for r in rows.values()
    ]
    assert figures == [
        (Decimal("12"), 1, 0, 0, Decimal("0.10"), Decimal("0.06")),
        (Decimal("24"), 2, 1, 0, Decimal("0.10"), Decimal("0.02")),
        (Decimal("14"), 2, 1, 5, Decimal("0.10"), Decimal("0.02")),
    ]
    assert rows["double"]["consumed_change"] == 12 and rows["double"]["consumed_change_pct"] == 100
    assert rows["strict_double"]["events_denied_change"] == 5
    assert rows["strict_double"]["breakage_change"] == Decimal("-0.04")
    assert rows["base"]["consumed_change"] is None  # the base has no change against itself
    assert rows["base"]["price_currency"] == "USD"


def test_runout_changes_list_new_runouts_first(comparison: Comparison) -> None:
    changes = findings.runout_changes(comparison)
    assert [
        (r["scenario"], r["customer_id"], r["change"], r["base_runout_at"], r["runout_at"])
        for r in changes.iter_rows(named=True)
    ] == [
        ("double", "bob", "newly runs out", None, jan(4)),
        ("double", "carol", "runs out earlier", jan(4), jan(3)),
        # under block, bob runs out when his third call is denied; carol at her second
        ("strict_double", "bob", "newly runs out", None, jan(4)),
        ("strict_double", "carol", "runs out earlier", jan(4), jan(3)),
    ]
    assert changes["runout_shift_days"].to_list() == [None, -1.0, None, -1.0]
    assert findings.customers_at_risk(comparison) == [("bob", "credits"), ("carol", "credits")]


def test_report_shows_the_answer_in_a_browser(comparison: Comparison, tmp_path: Path) -> None:
    write_comparison(comparison, tmp_path)
    page = render(tmp_path / "report.html", tmp_path / "handmade_report.png")
    assert page.console_errors == ""
    dom = page.dom
    assert "strict_double: credits consumed +2.00 (+16.7%)" in dom
    assert "newly: bob" in dom and "5 events denied" in dom
    assert "0.06 USD" in dom and "-0.04 USD" in dom  # money in cents with its currency
    assert dom.count("newly runs out") >= 2 and "-1.0 day" in dom
    assert "Lowest balance of each day" in dom  # the balances of bob and carol are drawn
    assert dom.count('class="marks"') == 6  # every chart rendered
    assert page.screenshot.stat().st_size > 10_000


def test_a_finding_counts_one_customer_and_one_event_in_the_singular() -> None:
    # At 1 credit a call under block, carol's fourth call is denied (3 credits): she alone runs
    # out, as in the base; bob (5 credits, 4 calls) never does.
    strict = handmade_comparison(
        (Scenario(name="base"), Scenario(name="strict", enforcement="block"))
    )
    (notes, *_) = headline_section(strict).parts
    assert notes.items == [  # type: ignore[attr-defined]
        "strict: credits consumed -1.00 (-8.3%); credit revenue ±0.00 USD; breakage ±0.00 USD; "
        "1 customer runs out (±0); 1 event denied."
    ]


def test_a_chart_without_data_says_so(tmp_path: Path) -> None:
    only_base = handmade_comparison((Scenario(name="base"),))
    write_comparison(only_base, tmp_path)
    page = render(tmp_path / "report.html", tmp_path / "no_scenarios.png")
    assert page.console_errors == ""
    assert "No customer runs out both in the base and in a scenario." in page.dom
    assert "No customer consumed credits in the base and a scenario." in page.dom


def test_views_are_short(comparison: Comparison) -> None:
    text = repr(comparison)
    assert len(text) < 2_000
    assert "customers who run out" in text and "5 (+5)" in text  # strict_double's denied events
    assert "<table>" in comparison._repr_html_()
    result = comparison.result("strict_double")
    assert "5 denied" in repr(result) and len(repr(result)) < 2_000
    assert "credits consumed" in result._repr_html_()


def test_a_comparison_write_failing_part_way_leaves_the_folder_as_it_was(
    comparison: Comparison, tmp_path: Path
) -> None:
    write_comparison(comparison, tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    # The report (with its charts' JavaScript) is the one file past the limit, written last.
    limit = 1 << 18
    assert len(before[tmp_path / "report.html"]) > limit
    assert all(len(data) < limit for path, data in before.items() if path.suffix != ".html")

    only_base = handmade_comparison((Scenario(name="base", enforcement="block"),))
    with files_limited_to(limit), pytest.raises(OSError, match="File too large"):
        write_comparison(only_base, tmp_path)

    # the earlier comparison whole, its three scenarios too; nothing of the failed one
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
