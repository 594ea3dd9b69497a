"""Chart specs built from known data carry the expected aggregated data, encodings and point cap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import altair as alt
import polars as pl

from pricing_lab.report.charts import (
    MAX_POINTS,
    POINTS_PER_SERIES,
    balance_over_time,
    burn_per_feature,
    change_distribution,
    revenue_and_breakage,
    runout_shift,
    top_customers,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def ledger(rows: list[tuple[Any, ...]]) -> pl.DataFrame:
    """(timestamp, customer, entry_type, feature, amount, balance_after) → a ledger frame."""
    return pl.DataFrame(
        [
            {
                "entry_id": index + 1,
                "timestamp": r[0],
                "customer_id": r[1],
                "currency_id": "CR",
                "entry_type": r[2],
                "feature_id": r[3],
                "amount": Decimal(r[4]),
                "balance_after": Decimal(r[5]),
            }
            for index, r in enumerate(rows)
        ],
        schema_overrides={
            "timestamp": pl.Datetime("us", "UTC"),
            "amount": pl.Decimal(38, 2),
            "balance_after": pl.Decimal(38, 2),
        },
    )


def h(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


SMALL = ledger(
    [
        (h(0), "acme", "GRANTED", None, "100", "100"),
        (h(1), "acme", "CONSUMED", "chat", "-10", "90"),
        (h(5), "acme", "CONSUMED", "img", "-4", "86"),
        (h(5), "acme", "CONSUMED", "chat", "-6", "80"),
        (h(30), "acme", "CONSUMED", "chat", "-30", "50"),
        (h(0), "bob", "GRANTED", None, "10", "10"),
        (h(2), "bob", "CONSUMED", "chat", "-2.5", "7.5"),
        (h(50), "bob", "CONSUMED", "img", "-7.5", "0"),
        (h(50), "bob", "EXPIRED", None, "-0", "0"),
    ]
)


def encoding(chart: alt.Chart) -> dict[str, tuple[str, str]]:
    spec = chart.to_dict()
    return {
        channel: (value.get("field", ""), value.get("type", ""))
        for channel, value in spec["encoding"].items()
        if isinstance(value, dict) and "field" in value
    }


def data(chart: alt.Chart) -> list[dict[str, Any]]:
    frame = chart.data
    assert isinstance(frame, pl.DataFrame)
    return frame.to_dicts()


def test_balance_over_time_keeps_the_last_balance_of_each_day() -> None:
    chart = balance_over_time(SMALL, ["acme", "bob"], grain="1d")
    assert data(chart) == [
        {"customer_id": "acme", "currency_id": "CR", "timestamp": T0, "balance": 80.0},
        {"customer_id": "acme", "currency_id": "CR", "timestamp": h(24), "balance": 50.0},
        {"customer_id": "bob", "currency_id": "CR", "timestamp": T0, "balance": 7.5},
        {"customer_id": "bob", "currency_id": "CR", "timestamp": h(48), "balance": 0.0},
    ]
    assert encoding(chart) == {
        "x": ("timestamp", "temporal"),
        "y": ("balance", "quantitative"),
        "color": ("customer_id", "nominal"),
        "strokeDash": ("currency_id", "nominal"),
    }
    assert chart.to_dict()["mark"]["type"] == "line"


def test_balance_over_time_picks_the_largest_consumers_by_default() -> None:
    assert top_customers(SMALL) == ["acme", "bob"]  # 50 consumed, then 10
    assert top_customers(SMALL, 1) == ["acme"]
    # a 50-hour span: hourly points fit the cap; hour 5 of acme keeps its last balance
    points = [
        (r["customer_id"], r["timestamp"], r["balance"]) for r in data(balance_over_time(SMALL))
    ]
    assert points == [
        ("acme", h(0), 100.0),
        ("acme", h(1), 90.0),
        ("acme", h(5), 80.0),
        ("acme", h(30), 50.0),
        ("bob", h(0), 10.0),
        ("bob", h(2), 7.5),
        ("bob", h(50), 0.0),
    ]


def test_burn_per_feature_sums_each_day_and_drops_to_zero_on_idle_days() -> None:
    chart = burn_per_feature(SMALL, grain="1d")
    assert data(chart) == [
        {"feature_id": "chat", "timestamp": T0, "credits": 18.5},  # 10 + 6 + 2.5
        {"feature_id": "img", "timestamp": T0, "credits": 4.0},
        {"feature_id": "chat", "timestamp": h(24), "credits": 30.0},
        {"feature_id": "img", "timestamp": h(24), "credits": 0.0},  # no image on day 2
        {"feature_id": "chat", "timestamp": h(48), "credits": 0.0},  # no chat on day 3
        {"feature_id": "img", "timestamp": h(48), "credits": 7.5},
    ]
    assert encoding(chart) == {
        "x": ("timestamp", "temporal"),
        "y": ("credits", "quantitative"),
        "color": ("feature_id", "nominal"),
    }
    assert chart.to_dict()["encoding"]["y"]["stack"] is True


def busy_ledger(customers: int, hours: int) -> pl.DataFrame:
    """One consumption per customer every hour, 20 minutes past the hour."""
    rows = []
    for c in range(customers):
        balance = Decimal(100000)
        for hour in range(hours):
            balance -= 1
            rows.append((h(hour + 1 / 3), f"c{c:02d}", "CONSUMED", f"f{hour % 3}", "-1", balance))
    return ledger(rows)


def test_charts_respect_the_point_cap() -> None:
    # 401 hourly buckets (hours 0..400): one too many for hourly points → daily points
    one_line = busy_ledger(1, 401)
    points = data(balance_over_time(one_line, ["c00"]))
    assert len(points) <= POINTS_PER_SERIES
    assert len(points) == 17  # days 0..16 (hour 400 is on day 16)
    # 400 hourly buckets fit exactly
    assert len(data(balance_over_time(busy_ledger(1, 400), ["c00"]))) == 400
    # twenty lines of 300 hours: 6,000 hourly points would pass MAX_POINTS
    many = busy_ledger(20, 300)
    chart = balance_over_time(many, [f"c{c:02d}" for c in range(20)])
    frame = chart.data
    assert isinstance(frame, pl.DataFrame)
    assert frame.height <= MAX_POINTS
    assert frame.group_by("customer_id").len()["len"].max() <= POINTS_PER_SERIES  # type: ignore[operator]
    assert frame.height == 20 * 13  # days 0..12
    burn = burn_per_feature(busy_ledger(2, 1000))
    assert isinstance(burn.data, pl.DataFrame)
    assert burn.data.height <= MAX_POINTS
    assert burn.data.group_by("feature_id").len()["len"].max() <= POINTS_PER_SERIES  # type: ignore[operator]
    # the sums survive the aggregation: 2 customers × 1000 hours × 1 credit
    assert sum(r["credits"] for r in data(burn)) == 2000.0


COMPARISON = pl.DataFrame(
    {
        "scenario": ["up", "up", "up", "up", "down", "down"],
        "customer_id": ["a", "b", "c", "d", "a", "b"],
        "consumed_change_pct": [0.0, 10.0, 20.0, None, -40.0, 0.0],
        "runout_shift_days": [-2.0, None, -1.0, 0.0, 3.0, None],
    }
)


def test_change_distribution_counts_customers_per_bin() -> None:
    chart = change_distribution(COMPARISON, bins=6)
    # values −40 … 20 in 6 bins of 10; nulls left out
    assert data(chart) == [
        {"scenario": "down", "bin_start": -40.0, "bin_end": -30.0, "customers": 1},
        {"scenario": "down", "bin_start": 0.0, "bin_end": 10.0, "customers": 1},
        {"scenario": "up", "bin_start": 0.0, "bin_end": 10.0, "customers": 1},
        {"scenario": "up", "bin_start": 10.0, "bin_end": 20.0, "customers": 2},  # 20 in last bin
    ]
    assert encoding(chart) == {
        "x": ("bin_start", "quantitative"),
        "x2": ("bin_end", ""),
        "y": ("customers", "quantitative"),
        "color": ("scenario", "nominal"),
    }


def test_balances_can_be_normalised_to_each_customers_peak() -> None:
    # acme peaks at 100 credits, bob at 10: both lines end at their share of that peak
    chart = balance_over_time(SMALL, ["acme", "bob"], grain="1d", normalize=True)
    shares = [(r["customer_id"], r["share_of_peak"]) for r in data(chart)]
    assert shares == [("acme", 0.8), ("acme", 0.5), ("bob", 0.75), ("bob", 0.0)]
    assert [r["balance"] for r in data(chart)] == [80.0, 50.0, 7.5, 0.0]  # credits kept
    assert chart.to_dict()["encoding"]["y"]["axis"]["format"] == "%"


def test_counts_have_whole_number_ticks_and_empty_charts_say_so() -> None:
    for chart in (change_distribution(COMPARISON), runout_shift(COMPARISON)):
        axis = chart.to_dict()["encoding"]["y"]["axis"]
        assert axis["tickMinStep"] == 1 and axis["format"] == "d"
    nothing = COMPARISON.clear()
    for chart, words in (
        (change_distribution(nothing), "No customer consumed credits"),
        (runout_shift(nothing), "No customer runs out"),
        (burn_per_feature(SMALL.clear()), "No credits were consumed"),
        (balance_over_time(SMALL, ["nobody"]), "No ledger entries"),
    ):
        spec = chart.to_dict()
        assert spec["mark"]["type"] == "text"
        assert words in data(chart)[0]["message"]


def test_runout_shift_and_money_charts() -> None:
    shift = data(runout_shift(COMPARISON, bins=5))  # −2 … 3: bins of 1 day
    assert shift == [
        {"scenario": "down", "bin_start": 2.0, "bin_end": 3.0, "customers": 1},
        {"scenario": "up", "bin_start": -2.0, "bin_end": -1.0, "customers": 1},
        {"scenario": "up", "bin_start": -1.0, "bin_end": 0.0, "customers": 1},
        {"scenario": "up", "bin_start": 0.0, "bin_end": 1.0, "customers": 1},
    ]
    totals = pl.DataFrame(
        {
            "scenario": ["base", "x2"],
            "recharge_revenue": [Decimal("12.50"), Decimal("20.00")],
            "breakage": [Decimal("3.25"), Decimal("1.00")],
        }
    )
    chart = revenue_and_breakage(totals, currency="USD")
    assert chart.to_dict()["encoding"]["y"]["title"] == "USD"
    assert sorted((r["scenario"], r["measure"], r["money"]) for r in data(chart)) == [
        ("base", "breakage", 3.25),
        ("base", "recharge revenue", 12.5),
        ("x2", "breakage", 1.0),
        ("x2", "recharge revenue", 20.0),
    ]
    assert encoding(chart)["xOffset"] == ("measure", "nominal")
