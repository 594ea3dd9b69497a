"""Burn history of the run-out forecast: each customer's daily credit burn before the instant T.

Burn is what the customer's events cost (costing's consumption table), not what the ledger
consumed: a top-up or an expiry never shows up as burn, and in `block` mode the events that were
denied still count (the customer asked for that usage). Days are 24-hour windows ending at the
forecast instant T (`[T − (k+1)·24h, T − k·24h)`), so the history's days line up with the forecast's
days and their weekdays.

Everything is integer minor units of the currency (`cost × 10^precision`, exact): burn per day and
per unit, and the number of costed events per day, which sets how finely a simulated day is cut
into events. The intraday profile (where in the day the burn falls) is the only float: it places
simulated events in time, it never weighs credits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import polars as pl

from pricing_lab.errors import InputError
from pricing_lab.timeutil import DAY_US, to_micros

HOUR_US = 3_600_000_000
MIN_DAYS_WITH_USAGE = 7  # SPEC §6: fewer days with usage than this is "too little history"
NAIVE_DAYS = 14  # SPEC §6: the naive baseline's mean daily burn covers the 14 days before T
# Share of an hour-of-day profile taken from a flat day when a unit has few events: the profile's
# weight is events / (events + PROFILE_PRIOR_EVENTS), so 24 events give half their own shape.
PROFILE_PRIOR_EVENTS = 24.0
_LIMIT = 2**62  # burn × events of one day must stay below this in the kernel's integer arithmetic


@dataclass(frozen=True, slots=True, kw_only=True)
class BurnModel:
    """How a path's future days are drawn from the history (docs/forecast.md "Burn model").

    `window_days`: the most recent days of history the paths draw from (never before the unit's
    first usage). `block_days`: future days come in blocks of this many consecutive history days,
    aligned on T's weekday (7: whole weeks; a unit with fewer than two whole weeks in its window
    draws single days). `resample_level`: each path first resamples the window's blocks with
    replacement and then draws its future from that resample (a two-level bootstrap), so the
    spread of paths also carries the uncertainty of the burn level, not only day-to-day noise.
    """

    window_days: int = 28
    block_days: int = 1
    resample_level: bool = True

    def __post_init__(self) -> None:
        if self.window_days < 1 or self.block_days < 1:
            raise InputError("the burn model's window_days and block_days must be ≥ 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class BurnHistory:
    """Per unit (customer × currency, sorted) its burn history as kernel arrays.

    `units`: customer_id, currency_id, days_with_usage, window_days (days in `burn` for the
    unit), window_burn and naive_burn (minor units burnt in the window and in the `NAIVE_DAYS`
    days before T). `burn` / `events`: int64, each unit's window days oldest first, laid end to
    end (`offsets[u]` is unit u's first day). `profile`: float64 [units, 25], the cumulative share
    of the unit's burn by hour from T's time of day (0 at 0 h, 1 at 24 h).
    """

    units: pl.DataFrame
    offsets: np.ndarray
    burn: np.ndarray
    events: np.ndarray
    profile: np.ndarray


def burn_history(
    consumptions: pl.DataFrame,
    precisions: dict[str, int],
    as_of: datetime,
    model: BurnModel,
) -> BurnHistory:
    """The burn history before `as_of` of every customer and currency with costed usage.

    `consumptions` is costing's table (`event_id, customer_id, timestamp, feature_id,
    currency_id, cost`); rows at or after `as_of`, without a currency or costing nothing are
    left out. Costs are exact at their currency's precision (`precisions`).
    """
    t_us = to_micros(as_of)
    cost = consumptions.schema["cost"]
    scale = cost.scale if isinstance(cost, pl.Decimal) else 0
    divisor = {k: 10 ** (scale - p) for k, p in precisions.items()}
    rows = (
        consumptions.lazy()
        .filter(
            pl.col("currency_id").is_not_null()
            & (pl.col("cost") > 0)
            & (pl.col("timestamp") < pl.lit(as_of).cast(pl.Datetime("us", "UTC")))
        )
        .select(
            "customer_id",
            "currency_id",
            (
                pl.col("cost").to_physical()
                // pl.col("currency_id").replace_strict(divisor, return_dtype=pl.Int128)
            ).alias("units"),
            # Day k before T is [T − (k+1)·24 h, T − k·24 h): an instant exactly k days before T
            # opens day k − 1 (the hour of day below counts from the same boundaries).
            ((t_us - 1 - pl.col("timestamp").dt.epoch("us")) // DAY_US).alias("lag"),
            ((pl.col("timestamp").dt.epoch("us") - t_us) % DAY_US // HOUR_US).alias("hour"),
        )
    )
    per_day = (
        rows.group_by("customer_id", "currency_id", "lag")
        .agg(pl.col("units").sum(), pl.len().cast(pl.Int64).alias("events"))
        .collect()
    )
    if per_day.height and per_day["units"].max() >= _LIMIT:  # type: ignore[operator]
        worst = per_day.sort("units", descending=True).row(0, named=True)
        raise InputError(
            f"customer {worst['customer_id']!r}, currency {worst['currency_id']!r}: one day's "
            f"burn exceeds the forecast's limit of {_LIMIT - 1} minor units"
        )
    per_day = per_day.with_columns(pl.col("units").cast(pl.Int64))
    keys = ["customer_id", "currency_id"]
    units = (
        per_day.group_by(keys)
        .agg(
            pl.len().cast(pl.Int64).alias("days_with_usage"),
            (pl.col("lag").max() + 1).alias("days_since_first_usage"),
            pl.col("units").filter(pl.col("lag") < NAIVE_DAYS).sum().alias("naive_burn"),
        )
        .with_columns(
            pl.min_horizontal("days_since_first_usage", pl.lit(model.window_days))
            .cast(pl.Int64)
            .alias("window_days")
        )
        .sort(keys)
        .with_row_index("unit")
    )
    window = per_day.join(units.select(*keys, "unit", "window_days"), on=keys).filter(
        pl.col("lag") < pl.col("window_days")
    )
    window_burn = window.group_by("unit").agg(pl.col("units").sum().alias("window_burn"))
    units = (
        units.join(window_burn, on="unit", how="left")
        .with_columns(pl.col("window_burn").fill_null(0))
        .sort("unit")
    )
    lengths = units["window_days"].to_numpy()
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    burn = np.zeros(int(offsets[-1]), dtype=np.int64)
    events = np.zeros(int(offsets[-1]), dtype=np.int64)
    unit = window["unit"].to_numpy().astype(np.int64)
    # Oldest day first: lag window_days − 1 is index 0, lag 0 (the day just before T) the last.
    where = offsets[unit] + lengths[unit] - 1 - window["lag"].to_numpy()
    day_burn = window["units"].to_numpy()
    burn[where] = day_burn
    # A simulated day cuts its burn into this many equal events: at least one minor unit each,
    # and few enough that burn × events stays exact in int64.
    events[where] = np.minimum(
        np.minimum(window["events"].to_numpy(), day_burn), _LIMIT // np.maximum(day_burn, 1)
    )
    profile = _profiles(
        rows.join(window.lazy().select(*keys, "lag", "unit"), on=[*keys, "lag"])
        .group_by("unit", "hour")
        .agg(pl.len().alias("events"))
        .collect(),
        units.height,
    )
    return BurnHistory(
        units=units.select(*keys, "days_with_usage", "window_days", "window_burn", "naive_burn"),
        offsets=offsets,
        burn=burn,
        events=events,
        profile=profile,
    )


def _profiles(per_hour: pl.DataFrame, n_units: int) -> np.ndarray:
    """Cumulative intraday profile of event times per unit, hours counted from T's time of day."""
    weight = np.zeros((n_units, 24), dtype=np.float64)
    unit = per_hour["unit"].to_numpy().astype(np.int64)
    weight[unit, per_hour["hour"].to_numpy().astype(np.int64)] = per_hour["events"].to_numpy()
    count = weight.sum(axis=1)
    totals = count[:, None]
    shape = np.divide(weight, totals, out=np.full_like(weight, 1 / 24), where=totals > 0)
    own = (count / (count + PROFILE_PRIOR_EVENTS))[:, None]
    hourly = own * shape + (1 - own) / 24
    profile = np.zeros((n_units, 25), dtype=np.float64)
    np.cumsum(hourly, axis=1, out=profile[:, 1:])
    profile[:, 24] = 1.0
    return profile
