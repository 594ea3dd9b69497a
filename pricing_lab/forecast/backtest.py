"""Backtest of the run-out forecast (SPEC §6): cut the history, forecast, replay what happened.

For each cut instant T the forecast sees only the events before T; one replay of the whole history
(the same catalog, customers and enforcement) says what really happened in [T, T + horizon): the
first consumption that left the balance at or below 0, or in `block` mode the first denied event.
Beside it stands the naive baseline of SPEC §6: the balance at T divided by the mean daily burn of
the 14 days before T.

Scoring (docs/forecast.md "Backtest"): calibration is the share of forecast customer-currencies
whose actual run-out — or "after the horizon" — lies within [p10, p90], where "after the horizon"
is one outcome that the forecast gives a probability 1 − p (p: the run-out probability): it
counts inside by the part of that probability mass that lies between the 10% and 90% levels
(the randomized probability integral transform for a forecast with an atom), so a forecast whose
paths are distributed as the outcomes are scores 80% whatever the share of customers that surely
do not run out. The error of a date is
the absolute difference in days from the actual run-out, over those that actually ran out. A
predicted date after the horizon (p50 "after H", or a naive date beyond it) counts as the horizon's
end, for both forecasts alike; a naive date before T (a balance already at or below 0) counts as T.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import duckdb
import polars as pl

from pricing_lab.catalog.model import Catalog
from pricing_lab.errors import InputError
from pricing_lab.forecast.history import MIN_DAYS_WITH_USAGE, NAIVE_DAYS, BurnModel
from pricing_lab.forecast.run_out import (
    MIN_PATHS,
    TIMESTAMP,
    check_options,
    forecast_costed,
    horizon_end,
    horizon_text,
    parse_horizon,
)
from pricing_lab.forecast.state import KEYS
from pricing_lab.ledger.model import Enforcement
from pricing_lab.simulation.costing import Costing
from pricing_lab.simulation.customers import CustomerInputs
from pricing_lab.simulation.simulate import cost, simulate
from pricing_lab.timeutil import MICROSECOND, as_utc

DEFAULT_CUTS = 4
INTERVAL = (0.1, 0.9)  # the forecast's 80% interval: [p10, p90]
DAY = timedelta(days=1)
DAY_US = 86_400_000_000


def backtest(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    customers: CustomerInputs | None = None,
    *,
    horizon: timedelta | str,
    cuts: int | Sequence[datetime] = DEFAULT_CUTS,
    paths: int = MIN_PATHS,
    seed: int = 0,
    enforcement: Enforcement = "overdraft",
    events: str = "events",
    model: BurnModel | None = None,
) -> pl.DataFrame:
    """Forecast from several cuts of the history of table `events` and compare with what happened.

    `cuts`: the forecast instants, or how many to spread evenly from two weeks after the first
    event to the last event minus the horizon. Returns one row per cut and customer-currency: the
    forecast's columns (`forecast`), then `actual_run_out` (null: not within the horizon),
    `inside_interval` (plain: an actual "after H" is inside when p90 is after H), `inside_share`
    (what calibration averages: 0 or 1 for an actual run-out, the share of the "after H" mass
    between the 10% and 90% levels otherwise), `p50_error_days`, `naive_run_out` (null: no burn
    in the 14 days before the cut), `naive_error_days`; the error columns are null unless the
    customer actually ran out. Rows flagged for too little history carry no forecast and no scores.
    """
    span = parse_horizon(horizon)
    customers = customers if customers is not None else CustomerInputs()
    check_options(paths, enforcement)
    return backtest_costed(
        con, catalog, customers, cost(con, catalog, customers, events=events),
        horizon=span, cuts=cuts, paths=paths, seed=seed, enforcement=enforcement, events=events,
        model=model or BurnModel(),
    )  # fmt: skip


def backtest_costed(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    customers: CustomerInputs,
    costing: Costing,
    *,
    horizon: timedelta,
    cuts: int | Sequence[datetime],
    paths: int,
    seed: int,
    enforcement: Enforcement,
    events: str,
    model: BurnModel,
) -> pl.DataFrame:
    """`backtest` on events already costed (`pricing-lab forecast --backtest` costs them once,
    for its report of rejected rows and for the backtest)."""
    times = costing.consumptions["timestamp"]
    if times.len() == 0:
        raise InputError(f"table {events!r} has no events to backtest")
    first, last = times.min(), times.max()
    assert isinstance(first, datetime) and isinstance(last, datetime)
    instants = _cuts(cuts, first, last, horizon)
    actual = simulate(
        con, catalog, customers, events=events, enforcement=enforcement, costing=costing
    )
    frames = []
    for as_of in instants:
        forecast = forecast_costed(
            con, catalog, customers, costing, as_of=as_of, horizon=horizon, paths=paths, seed=seed,
            enforcement=enforcement, events=events, model=model,
        )  # fmt: skip
        happened = actual_run_outs(
            actual.ledger, actual.denied_events, as_of=as_of, end=as_of + horizon
        )
        naive = _naive(costing.consumptions, as_of)
        frames.append(_scored(forecast, happened, naive, as_of, as_of + horizon))
    return pl.concat(frames)


def actual_run_outs(
    ledger: pl.DataFrame, denied_events: pl.DataFrame, *, as_of: datetime, end: datetime
) -> pl.DataFrame:
    """Per customer and currency, the first instant in [as_of, end) at which a consumption left
    the balance at or below 0, or an event was denied (`block` mode): `customer_id, currency_id,
    actual_run_out`."""
    inside = pl.col("timestamp").is_between(as_of, end, closed="left")
    consumed = ledger.filter(
        inside & (pl.col("entry_type") == "CONSUMED") & (pl.col("balance_after") <= 0)
    ).select(*KEYS, "timestamp")
    denied = denied_events.filter(inside).select(*KEYS, "timestamp")
    return (
        pl.concat([consumed, denied])
        .group_by(KEYS)
        .agg(pl.col("timestamp").min().alias("actual_run_out"))
    )


def _cuts(
    cuts: int | Sequence[datetime], first: datetime, last: datetime, span: timedelta
) -> list[datetime]:
    """The cut instants, each leaving the whole horizon inside the history."""
    until = as_utc(last) + MICROSECOND
    if isinstance(cuts, int):
        return cut_instants(first, last, span, cuts)
    instants = sorted(as_utc(t) for t in cuts)
    if not instants:
        raise InputError("a backtest needs at least one cut")
    late = [t for t in instants if horizon_end(t, span) > until]
    if late:
        raise InputError(
            f"cut {late[0].isoformat()}: its horizon of {horizon_text(span)} ends after the last "
            f"event ({as_utc(last).isoformat()}), so what happened is not known"
        )
    return instants


def cut_instants(first: datetime, last: datetime, horizon: timedelta, cuts: int) -> list[datetime]:
    """`cuts` instants evenly spread over a history [first, last]: from two weeks after the midnight
    of `first` (enough days with usage to be forecast) to `last` minus the horizon (what happens
    after each cut is known), on whole days from that midnight."""
    if cuts < 1:
        raise InputError("a backtest needs at least one cut")
    base = as_utc(first).replace(hour=0, minute=0, second=0, microsecond=0)
    earliest = base + 2 * MIN_DAYS_WITH_USAGE * DAY
    latest = as_utc(last) + MICROSECOND - horizon
    if latest < earliest:
        raise InputError(
            f"history from {first:%Y-%m-%d} to {last:%Y-%m-%d} is too short for a backtest over "
            f"{horizon_text(horizon)}: it needs {2 * MIN_DAYS_WITH_USAGE} days before a cut and "
            "the horizon after it"
        )
    span_days = (latest - earliest) // DAY
    if cuts == 1:
        return [earliest + span_days * DAY]
    picks = sorted({round(k * span_days / (cuts - 1)) for k in range(cuts)})
    return [earliest + k * DAY for k in picks]


def _naive(consumptions: pl.DataFrame, as_of: datetime) -> pl.DataFrame:
    """Mean daily burn (credits) of the 14 days before `as_of`, per customer and currency."""
    window = pl.col("timestamp").is_between(as_of - NAIVE_DAYS * DAY, as_of, closed="left")
    return (
        consumptions.filter(window & pl.col("currency_id").is_not_null())
        .group_by(KEYS)
        .agg((pl.col("cost").sum().cast(pl.Float64) / NAIVE_DAYS).alias("naive_daily_burn"))
    )


def _scored(
    forecast: pl.DataFrame,
    happened: pl.DataFrame,
    naive: pl.DataFrame,
    as_of: datetime,
    end: datetime,
) -> pl.DataFrame:
    flagged = pl.col("too_little_history")
    actual = pl.col("actual_run_out")
    burn = pl.col("naive_daily_burn").fill_null(0.0)
    balance = pl.col("balance").cast(pl.Float64)
    # Capped at a century: only whether it falls inside the horizon matters, and it must fit µs.
    naive_days = (
        pl.when(balance <= 0).then(0.0).when(burn > 0).then(balance / burn).clip(upper_bound=36525)
    )
    naive_at = pl.lit(as_of, dtype=TIMESTAMP) + pl.duration(
        microseconds=(naive_days * DAY_US).round().cast(pl.Int64)
    )
    end_lit = pl.lit(end, dtype=TIMESTAMP)
    return (
        forecast.join(happened, on=KEYS, how="left")
        .join(naive, on=KEYS, how="left")
        .with_columns(naive_at.alias("naive_run_out"))
        .with_columns(
            pl.when(~flagged)
            .then(
                pl.when(actual.is_null())
                .then(pl.col("run_out_p90").is_null())
                .otherwise(
                    pl.col("run_out_p10").is_not_null()
                    & (pl.col("run_out_p10") <= actual)
                    & (pl.col("run_out_p90").is_null() | (actual <= pl.col("run_out_p90")))
                )
            )
            .alias("inside_interval"),
            pl.when(~flagged)
            .then(_days_apart(actual, pl.col("run_out_p50").fill_null(end_lit)))
            .alias("p50_error_days"),
            pl.when(~flagged)
            .then(
                _days_apart(
                    actual,
                    pl.min_horizontal(pl.col("naive_run_out").fill_null(end_lit), end_lit),
                )
            )
            .alias("naive_error_days"),
        )
        .with_columns(
            pl.when(flagged)
            .then(None)
            .when(actual.is_null())
            .then(_share_of_after_horizon(pl.col("run_out_probability")))
            .otherwise(pl.col("inside_interval").cast(pl.Float64))
            .alias("inside_share")
        )
        .drop("naive_daily_burn")
        .sort(KEYS)
    )


def _share_of_after_horizon(p: pl.Expr) -> pl.Expr:
    """Of the forecast's "after H" outcome (probability 1 − p, levels p … 1 of the run-out
    instant's distribution), the share inside the 10%–90% levels: an outcome tied with many paths
    takes a level drawn uniformly over its mass (randomized PIT), here its expected coverage."""
    inside = (pl.lit(INTERVAL[1]) - pl.max_horizontal(p, pl.lit(INTERVAL[0]))).clip(lower_bound=0)
    return pl.when(p < 1).then(inside / (1 - p)).otherwise(0.0)


def _days_apart(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    return ((a - b).dt.total_microseconds().abs() / DAY_US).cast(pl.Float64)


def backtest_summary(rows: pl.DataFrame) -> pl.DataFrame:
    """Per cut and over all cuts (`cut` = "all"): customer-currencies forecast and flagged, how
    many ran out, calibration (mean `inside_share`: the share inside [p10, p90], an actual "after
    H" counting by the part of its forecast probability between the 10% and 90% levels), median
    absolute p50 error in days, the naive baseline's, and their ratio. `calibration_at_risk` is
    the calibration over the customer-currencies whose run-out was in question (forecast
    probability ≥ 10%, or ran out); `calibration_plain` counts every actual "after H" with p90
    after H as inside (a population that mostly surely does not run out scores near 100% with it,
    whatever the forecast)."""
    scored = pl.col("too_little_history").not_()
    ran_out = scored & pl.col("actual_run_out").is_not_null()
    at_risk = scored & ((pl.col("run_out_probability") >= 0.1) | ran_out)
    figures = [
        pl.len().cast(pl.Int64).alias("units"),
        pl.col("too_little_history").sum().cast(pl.Int64).alias("flagged"),
        ran_out.sum().cast(pl.Int64).alias("ran_out"),
        pl.col("inside_share").filter(scored).mean().alias("calibration"),
        pl.col("inside_share").filter(at_risk).mean().alias("calibration_at_risk"),
        pl.col("inside_interval").filter(scored).mean().alias("calibration_plain"),
        pl.col("p50_error_days").filter(ran_out).median().alias("p50_error_days"),
        pl.col("naive_error_days").filter(ran_out).median().alias("naive_error_days"),
    ]
    per_cut = (
        rows.group_by("as_of")
        .agg(figures)
        .sort("as_of")
        .with_columns(pl.col("as_of").dt.strftime("%Y-%m-%dT%H:%M:%SZ").alias("cut"))
    )
    overall = rows.select(figures).with_columns(pl.lit("all").alias("cut"))
    return (
        pl.concat([per_cut.drop("as_of"), overall], how="diagonal")
        .with_columns((pl.col("p50_error_days") / pl.col("naive_error_days")).alias("error_ratio"))
        .select(
            "cut",
            "units",
            "flagged",
            "ran_out",
            "calibration",
            "calibration_at_risk",
            "calibration_plain",
            "p50_error_days",
            "naive_error_days",
            "error_ratio",
        )
    )
