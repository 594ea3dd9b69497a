"""The run-out forecast on hand-sized customers whose answer is known (one 100-credit call a day).

Every history day is the same, so every path burns 100 credits a day; only the instant of each
day's call varies between paths, so each answer is a day, checked as [start, end) of that day.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import duckdb
import polars as pl
import pytest

import pricing_lab
from pricing_lab.errors import InputError
from pricing_lab.forecast import forecast, parse_horizon, run_out_ranking
from pricing_lab.forecast.history import BurnModel, burn_history
from pricing_lab.ledger.model import AutoRecharge, Grant, Subscription
from pricing_lab.simulation.customers import CustomerInputs
from tests.forecast.helpers import DAY, START, T, catalog, daily_calls


def _grant(customer: str, amount: int, **extra: object) -> Grant:
    fields: dict[str, object] = {
        "grant_id": f"{customer}:g{len(extra)}:{amount}",
        "customer_id": customer,
        "currency_id": "CR",
        "amount": Decimal(amount),
        "type": "PROMOTIONAL",
        "effective_at": START,
    }
    fields.update(extra)
    return Grant(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def table() -> pl.DataFrame:
    con = duckdb.connect()
    # Ten days of calls before T for everyone but `newbie` (5 days: too little history).
    daily_calls(con, {"plain": 10, "topped": 10, "expiring": 10, "recharged": 10, "newbie": 5})
    customers = CustomerInputs(
        grants=(
            # 1450 − 10 × 100 = 450 at T: days 0–3 leave 50, the call of day 4 runs out.
            _grant("plain", 1450),
            # Plus 1000 credits at T + 2 days: 450 − 200 + 1000 = 1250, runs out on day 14.
            _grant("topped", 1450),
            _grant(
                "topped", 1000, type="PAID", cost_basis=Decimal("0.001"), effective_at=T + 2 * DAY
            ),
            # Paid credits expiring at T + 2 days: 250 left expire, the call of day 2 runs out.
            _grant(
                "expiring", 1450, type="PAID", cost_basis=Decimal("0.002"), expires_at=T + 2 * DAY
            ),
            _grant("recharged", 1450),
            _grant("newbie", 1000),
        ),
        auto_recharges=(
            AutoRecharge(
                customer_id="recharged",
                currency_id="CR",
                threshold=Decimal(200),
                target=Decimal(1000),
            ),
        ),
    )
    return forecast(con, catalog(), customers, as_of=T, horizon="30d")


def _row(table: pl.DataFrame, customer: str) -> dict[str, object]:
    return table.filter(pl.col("customer_id") == customer).row(0, named=True)


def _on_day(value: object, day: int) -> bool:
    return value is not None and T + day * DAY <= value < T + (day + 1) * DAY  # type: ignore[operator]


def test_a_steady_burn_runs_out_on_the_day_the_balance_allows(table: pl.DataFrame) -> None:
    row = _row(table, "plain")
    assert row["balance"] == Decimal("450.00")
    assert row["days_with_usage"] == 10
    assert row["too_little_history"] is False
    assert row["mean_daily_burn"] == Decimal("100.00")
    assert row["run_out_probability"] == 1.0
    assert all(_on_day(row[f"run_out_p{q}"], 4) for q in (10, 50, 90))
    assert row["as_of"] == T and row["horizon_end"] == T + 30 * DAY


def test_a_scheduled_top_up_postpones_the_run_out(table: pl.DataFrame) -> None:
    row = _row(table, "topped")
    assert row["balance"] == Decimal("450.00")  # the top-up is in the future
    assert all(_on_day(row[f"run_out_p{q}"], 14) for q in (10, 50, 90))


def test_credits_expiring_inside_the_horizon_are_breakage_and_bring_the_run_out_forward(
    table: pl.DataFrame,
) -> None:
    row = _row(table, "expiring")
    assert all(_on_day(row[f"run_out_p{q}"], 2) for q in (10, 50, 90))
    assert row["expected_expired"] == Decimal("250.00")  # 450 − two calls, in every path
    assert row["expected_breakage"] == Decimal("0.5")  # 250 credits × 0.002


def test_auto_recharge_keeps_the_customer_from_running_out(table: pl.DataFrame) -> None:
    row = _row(table, "recharged")
    assert row["run_out_probability"] == 0.0
    assert row["run_out_p10"] is None and row["run_out_p90"] is None


def test_too_little_history_is_flagged_not_guessed(table: pl.DataFrame) -> None:
    row = _row(table, "newbie")
    assert row["days_with_usage"] == 5
    assert row["too_little_history"] is True
    assert row["balance"] == Decimal("500.00")
    for column in ("run_out_probability", "run_out_p50", "expected_breakage"):
        assert row[column] is None


def test_ranking_lists_who_runs_out_first(table: pl.DataFrame) -> None:
    ranked = run_out_ranking(table)["customer_id"].to_list()
    assert ranked == ["expiring", "plain", "topped"]


def test_recurring_grants_refill_the_balance_and_block_mode_denies_at_zero() -> None:
    con = duckdb.connect()
    daily_calls(con, {"sub": 10})
    # Basic plan: 300 credits at each month start (Jan 1, Feb 1). 300 + 700 − 1000 = 0 at T.
    customers = CustomerInputs(
        subscriptions=(
            Subscription(subscription_id="s", customer_id="sub", plan_id="basic", start=START),
        ),
        grants=(_grant("sub", 700),),
    )
    overdraft = forecast(con, catalog(), customers, as_of=T, horizon="30d")
    row = _row(overdraft, "sub")
    assert row["balance"] == Decimal("0.00")
    assert _on_day(row["run_out_p50"], 0)  # the first call after T leaves the balance below 0
    # In block mode, the Jan 1 period's grant expires at Feb 1 with nothing left, the Feb 1 grant
    # allows three calls; the first call after T is denied.
    block = forecast(con, catalog(), customers, as_of=T, horizon="30d", enforcement="block")
    assert _on_day(_row(block, "sub")["run_out_p50"], 0)
    assert _row(block, "sub")["run_out_probability"] == 1.0


def test_same_seed_same_table_and_a_customer_depends_on_its_own_data_only() -> None:
    con = duckdb.connect()
    daily_calls(con, {"a": 10, "b": 10})
    customers = CustomerInputs(grants=(_grant("a", 1450), _grant("b", 1460)))
    first = forecast(con, catalog(), customers, as_of=T, horizon="30d", seed=7)
    again = forecast(con, catalog(), customers, as_of=T, horizon="30d", seed=7)
    assert first.equals(again)
    alone = duckdb.connect()
    daily_calls(alone, {"a": 10})
    only_a = forecast(
        alone, catalog(), CustomerInputs(grants=(_grant("a", 1450),)), as_of=T, horizon="30d",
        seed=7,
    )  # fmt: skip
    assert only_a.equals(first.filter(pl.col("customer_id") == "a"))


def test_history_after_the_forecast_instant_is_not_used() -> None:
    con = duckdb.connect()
    daily_calls(con, {"a": 40})  # calls go on after T
    table = forecast(
        con, catalog(), CustomerInputs(grants=(_grant("a", 1450),)), as_of=T, horizon="30d"
    )
    assert _row(table, "a")["balance"] == Decimal("450.00")
    assert _row(table, "a")["days_with_usage"] == 10


def test_bad_options_are_input_errors() -> None:
    con = duckdb.connect()
    daily_calls(con, {"a": 10})
    with pytest.raises(InputError, match="at least 1000") as refused:
        forecast(con, catalog(), as_of=T, horizon="30d", paths=10)
    assert "SPEC" not in str(refused.value)  # the reason itself, not a document users lack
    with pytest.raises(InputError, match="as_of must be a datetime, not str '2024-02-01'"):
        forecast(con, catalog(), as_of="2024-02-01", horizon="30d")  # type: ignore[arg-type]
    for text in ("30", "thirty days", "0d", "-3d"):
        with pytest.raises(InputError):
            parse_horizon(text)
    assert parse_horizon("2w") == timedelta(days=14)
    assert parse_horizon("36h") == timedelta(hours=36)


def test_a_horizon_or_path_count_beyond_what_can_run_is_refused_not_an_internal_error() -> None:
    assert parse_horizon("3653d") == timedelta(days=3653)
    for text in ("3654d", "4000000d", "99999999999999999999d", "522w"):
        with pytest.raises(InputError, match="at most 3653 days"):
            parse_horizon(text)
    con = duckdb.connect()
    daily_calls(con, {"a": 10})
    with pytest.raises(InputError, match="after year 9999"):
        forecast(con, catalog(), as_of=datetime(9999, 12, 1, tzinfo=UTC), horizon="60d")
    with pytest.raises(InputError, match="at most 10,000,000"):
        forecast(con, catalog(), as_of=T, horizon="30d", paths=10**11)


def test_the_package_is_the_function_too() -> None:
    con = duckdb.connect()
    daily_calls(con, {"a": 10})
    table = pricing_lab.forecast(con, catalog(), as_of=T, horizon="7d")
    assert table["customer_id"].to_list() == ["a"]
    assert "forecast" in pricing_lab.__all__


def test_customers_naming_what_the_catalog_lacks_are_refused_before_anything_runs() -> None:
    con = duckdb.connect()
    daily_calls(con, {"a": 10})
    customers = CustomerInputs(
        auto_recharges=(
            AutoRecharge(
                customer_id="a", currency_id="EUR", threshold=Decimal(1), target=Decimal(2)
            ),
        )
    )
    with pytest.raises(InputError, match="unknown currency 'EUR'"):
        forecast(con, catalog(), customers, as_of=START, horizon="30d")


def test_every_forecast_uses_the_kernel_set_up_compiles(table: pl.DataFrame) -> None:
    # `make setup` compiles the kernel once with a small forecast (no grants, nothing happening
    # in the horizon); a forecast with expiries, top-ups and recharges must reuse that compiled
    # signature, not compile another one at run time (~50 s).
    from pricing_lab.forecast import paths
    from pricing_lab.ledger.compile import warm_up_forecast

    warm_up_forecast()
    assert table.height > 0  # the fixture's forecast, with expiries and top-ups, has run
    assert len(paths.run_units.signatures) == 1


def test_history_days_are_24_hour_windows_starting_at_their_boundary() -> None:
    # T is midnight. Calls at T − 2 d + 6 h and at T − 1 d exactly are two different days (the
    # second opens the day just before T); a call exactly 14 days before T is inside the naive
    # baseline's 14 days. Each call costs 1 credit.
    consumptions = pl.DataFrame(
        {
            "event_id": ["a", "b", "c"],
            "customer_id": ["x"] * 3,
            "timestamp": [T - 2 * DAY + timedelta(hours=6), T - DAY, T - 14 * DAY],
            "feature_id": ["calls"] * 3,
            "currency_id": ["CR"] * 3,
            "cost": [Decimal("1.00")] * 3,
        },
        schema_overrides={"cost": pl.Decimal(38, 2), "timestamp": pl.Datetime("us", "UTC")},
    )
    history = burn_history(consumptions, {"CR": 2}, T, BurnModel())
    unit = history.units.row(0, named=True)
    assert (unit["days_with_usage"], unit["window_days"], unit["naive_burn"]) == (3, 14, 300)
