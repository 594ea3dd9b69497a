"""The forecast rolls over the periods that end inside its horizon (SPEC §5 rollover, §6).

One customer on the monthly plan `basic` (300 credits a month, periods from the 15th), one 10-credit
call a day at noon from Dec 27 to Jan 10, forecast at T = Jan 11. Every history day is the same, so
every path burns 10 credits a day and the figures are exact:

* T: the Dec 15 period's grant holds 300 − 15 × 10 = 150;
* Jan 15 00:00 (the period ends because the next starts): 150 − 4 × 10 = 110 left, of which
  min(110, cap) rolls into `…:0:rollover` and the rest expires;
* Jan 15 – Feb 15: 31 calls (310); the rollover grant is drawn first, so what is left at Feb 15 is
  the Jan 15 period's grant's, and it rolls over in turn (the rollover grant never does).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import duckdb
import polars as pl
import pytest

from pricing_lab.catalog.model import Catalog
from pricing_lab.catalog.yaml_format import load_catalog
from pricing_lab.forecast import forecast, forecast_scenarios
from pricing_lab.ledger.model import Subscription
from pricing_lab.simulation.customers import CustomerInputs
from pricing_lab.simulation.scenarios import RolloverChange, Scenario
from pricing_lab.simulation.simulate import simulate
from tests.forecast.helpers import CATALOG, DAY, T, daily_calls

PERIOD_START = datetime(2023, 12, 15, tzinfo=UTC)
BOUNDARY = datetime(2024, 1, 15, tzinfo=UTC)  # four days after T


def _catalog(rollover: str | None) -> Catalog:
    text = CATALOG.replace("per_unit: 100", "per_unit: 10")
    if rollover is not None:
        text = text.replace("cadence: monthly}", f"cadence: monthly, rollover: {rollover}}}")
    return load_catalog(text)


def _customers(*customers: str) -> CustomerInputs:
    return CustomerInputs(
        subscriptions=tuple(
            Subscription(subscription_id=f"s-{c}", customer_id=c, plan_id="basic",
                         start=PERIOD_START)
            for c in customers
        )
    )  # fmt: skip


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    daily_calls(con, {"c": 10}, days_before=5)  # Dec 27 – Jan 10
    return con


def _row(table: pl.DataFrame) -> dict[str, object]:
    assert table.height == 1
    return table.row(0, named=True)


@pytest.mark.parametrize(
    ("rollover", "expired"),
    [
        (None, "110.00"),  # no rollover: all 110 expire
        ("{max_amount: 100}", "10.00"),  # 100 roll, 10 expire
        ("{max_percent: 20}", "50.00"),  # 20% of 300 = 60 roll, 50 expire
        ("{max_amount: 500, max_percent: 50}", "0.00"),  # caps 500 and 150: all 110 roll
    ],
)
def test_what_rolls_over_at_a_period_end_inside_the_horizon_is_not_expired(
    con: duckdb.DuckDBPyConnection, rollover: str | None, expired: str
) -> None:
    row = _row(forecast(con, _catalog(rollover), _customers("c"), as_of=T, horizon="10d"))
    assert row["balance"] == Decimal("150.00")
    assert row["expected_expired"] == Decimal(expired)
    assert row["expected_breakage"] == 0  # recurring credits have no cost basis
    assert row["run_out_probability"] == 0.0


def test_rolled_credits_are_drawn_first_and_keep_the_customer_from_running_out(
    con: duckdb.DuckDBPyConnection,
) -> None:
    # Without rollover the Jan 15 grant (300) lasts 30 calls: the call of Feb 13 leaves 0.
    plain = _row(forecast(con, _catalog(None), _customers("c"), as_of=T, horizon="40d"))
    assert plain["run_out_probability"] == 1.0
    feb_13 = datetime(2024, 2, 13, tzinfo=UTC)
    assert all(feb_13 <= plain[f"run_out_p{q}"] < feb_13 + DAY for q in (10, 50, 90))
    assert plain["expected_expired"] == Decimal("110.00")
    # With max_amount 100: 100 + 300 for 31 calls; the rollover grant is used up first, so the
    # Jan 15 grant has 90 left at Feb 15, and those roll over (min(90, 100)): nothing more expires.
    rolled = _row(
        forecast(con, _catalog("{max_amount: 100}"), _customers("c"), as_of=T, horizon="40d")
    )
    assert rolled["run_out_probability"] == 0.0 and rolled["run_out_p90"] is None
    assert rolled["expected_expired"] == Decimal("10.00")


def test_the_forecast_expires_and_rolls_what_the_replay_of_the_same_burn_does() -> None:
    # The same calls going on after T, replayed by the ledger up to T + 40 days: its EXPIRED
    # entries inside [T, T + 40 d) are what every forecast path expires.
    con = duckdb.connect()
    daily_calls(con, {"c": 50}, days_before=5)
    catalog, customers = _catalog("{max_percent: 20}"), _customers("c")
    end = T + 40 * DAY
    ledger = simulate(con, catalog, customers, until=end).ledger.filter(pl.col("timestamp") >= T)
    totals = dict(
        ledger.filter(pl.col("entry_type").is_in(["EXPIRED", "ROLLED_OVER"]))
        .group_by("entry_type")
        .agg(pl.col("amount").sum())
        .iter_rows()
    )
    # Jan 15: 60 of 110 roll, 50 expire; Feb 15: the Jan 15 grant's 360 − 310 = 50 roll.
    assert totals == {"EXPIRED": Decimal("-50.00"), "ROLLED_OVER": Decimal("-110.00")}
    row = _row(forecast(con, catalog, customers, as_of=T, horizon="40d"))
    assert row["expected_expired"] == -totals["EXPIRED"]
    assert row["run_out_probability"] == 0.0


def test_debt_at_the_boundary_rolls_nothing_and_the_new_period_settles_it() -> None:
    # Calls from Dec 15: 270 by T, 30 left; the call of Jan 13 leaves 0 (the run-out) and that of
    # Jan 14 −10 (overdraft: the period's grant is empty, as it must be while there is debt). At
    # Jan 15 the empty grant rolls nothing and expires nothing; the new period's 300 settle the
    # debt (290 left) and last past the horizon (26 calls to Feb 10).
    con = duckdb.connect()
    daily_calls(con, {"c": 10}, days_before=17)
    row = _row(
        forecast(con, _catalog("{max_amount: 100}"), _customers("c"), as_of=T, horizon="30d")
    )
    assert row["balance"] == Decimal("30.00")
    assert row["run_out_probability"] == 1.0
    assert all(T + 2 * DAY <= row[f"run_out_p{q}"] < T + 3 * DAY for q in (10, 50, 90))
    assert row["expected_expired"] == Decimal("0.00")


def test_a_scenario_removing_rollover_gives_back_the_breakage(
    con: duckdb.DuckDBPyConnection,
) -> None:
    table = forecast_scenarios(
        con, _catalog("{max_amount: 100}"), _customers("c"),
        [Scenario(name="no-rollover", rollover=(RolloverChange(plan="basic", remove=True),)),
         Scenario(name="half", rollover=(RolloverChange(plan="basic", max_percent=Decimal(50)),))],
        as_of=T, horizon="10d",
    )  # fmt: skip
    expired = dict(table.select("scenario", "expected_expired").iter_rows())
    assert expired == {
        "base": Decimal("10.00"),
        "no-rollover": Decimal("110.00"),
        "half": Decimal("0.00"),  # cap 150
    }
