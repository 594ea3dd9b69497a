"""The backtest: what really happened after each cut, the naive baseline, and the scores."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import duckdb
import polars as pl
import pytest

from pricing_lab.errors import InputError
from pricing_lab.forecast import backtest, backtest_summary
from pricing_lab.ledger.model import Grant
from pricing_lab.simulation.customers import CustomerInputs
from tests.forecast.helpers import DAY, START, T, catalog, daily_calls


def _customers() -> CustomerInputs:
    # 1450 credits, 100 a day: 450 left at T (day 10); the call of day 14 (T + 4 d 12 h) leaves
    # −50. `rich` never runs out within the horizon.
    return CustomerInputs(
        grants=(
            Grant(
                grant_id="poor:g", customer_id="poor", currency_id="CR",
                amount=Decimal(1450), type="PROMOTIONAL", effective_at=START,
            ),
            Grant(
                grant_id="rich:g", customer_id="rich", currency_id="CR",
                amount=Decimal(100000), type="PROMOTIONAL", effective_at=START,
            ),
        )
    )  # fmt: skip


@pytest.fixture(scope="module")
def rows() -> pl.DataFrame:
    con = duckdb.connect()
    daily_calls(con, {"poor": 30, "rich": 30})
    return backtest(con, catalog(), _customers(), horizon="14d", cuts=[T])


def test_actual_run_out_and_naive_baseline(rows: pl.DataFrame) -> None:
    poor = rows.filter(pl.col("customer_id") == "poor").row(0, named=True)
    assert poor["actual_run_out"] == T + 4 * DAY + timedelta(hours=12)
    # 450 credits ÷ 100 a day (the 10 days before T, spread over 14 days: 1000 / 14 a day).
    assert poor["naive_run_out"] == T + timedelta(days=450 / (1000 / 14))
    assert poor["inside_interval"] is True
    assert poor["p50_error_days"] < 1
    rich = rows.filter(pl.col("customer_id") == "rich").row(0, named=True)
    assert rich["actual_run_out"] is None
    assert rich["run_out_p90"] is None and rich["inside_interval"] is True
    assert rich["p50_error_days"] is None


def test_an_outcome_after_the_horizon_counts_by_its_share_between_p10_and_p90(
    rows: pl.DataFrame,
) -> None:
    # `rich` surely does not run out (probability 0): "after H" holds all the forecast's mass, of
    # which the levels 10%–90% are 80%; `poor` ran out inside [p10, p90].
    shares = dict(rows.select("customer_id", "inside_share").iter_rows())
    assert shares == {"poor": 1.0, "rich": pytest.approx(0.8)}


def test_summary_scores_per_cut_and_overall(rows: pl.DataFrame) -> None:
    summary = backtest_summary(rows)
    assert summary["cut"].to_list() == [f"{T:%Y-%m-%dT%H:%M:%SZ}", "all"]
    overall = summary.row(1, named=True)
    assert (overall["units"], overall["flagged"], overall["ran_out"]) == (2, 0, 1)
    assert overall["calibration"] == pytest.approx(0.9)
    assert overall["calibration_plain"] == 1.0
    assert overall["calibration_at_risk"] == 1.0  # `poor` only
    naive = rows.filter(pl.col("customer_id") == "poor")["naive_error_days"][0]
    assert overall["naive_error_days"] == pytest.approx(naive)


def test_a_cut_whose_horizon_passes_the_history_is_refused() -> None:
    con = duckdb.connect()
    daily_calls(con, {"poor": 20})
    with pytest.raises(InputError, match="ends after the last event"):
        backtest(con, catalog(), _customers(), horizon="14d", cuts=[T])
    with pytest.raises(InputError, match="too short"):
        backtest(con, catalog(), _customers(), horizon="14d", cuts=3)
