"""`forecast`: who runs out of credits within a horizon, when, how sure (SPEC §6, run-out).

The history before T is replayed as `simulate` replays it (same catalog, customers and enforcement)
to learn each customer's balance and grants at T; the known future and burn drawn from the
customer's own history then run through many paths (`paths.run_units`). One row per customer and
currency comes back; docs/forecast.md describes the method, the columns and the rules chosen.
"""

from __future__ import annotations

import itertools
import os
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import duckdb
import numpy as np
import polars as pl

from pricing_lab.catalog.model import Catalog
from pricing_lab.errors import InputError, ValidationError
from pricing_lab.forecast import paths as kernel
from pricing_lab.forecast.history import MIN_DAYS_WITH_USAGE, BurnHistory, BurnModel, burn_history
from pricing_lab.forecast.state import (
    KEYS,
    P_HIST0,
    P_HISTN,
    P_PROFILE,
    P_SIMULATE,
    CreditState,
    credit_state,
)
from pricing_lab.ledger.model import ENFORCEMENTS, Enforcement
from pricing_lab.money import decimal_places, from_minor_units
from pricing_lab.simulation.costing import Costing
from pricing_lab.simulation.customers import CustomerInputs
from pricing_lab.simulation.simulate import SimulationResult, cost, customer_problems, simulate
from pricing_lab.timeutil import NEVER_US, as_utc, to_micros

MIN_PATHS = 1000  # SPEC §6: at least 1,000 paths
# Each path keeps its run-out instant per unit while the unit runs (8 bytes a path on every core):
# beyond this a request is refused with a message instead of failing to allocate.
MAX_PATHS = 10_000_000
# Burn is drawn from a few weeks of history, so a forecast decades ahead says nothing more; the
# paths' time grows with the horizon, and dates must stay inside the calendar.
MAX_HORIZON = timedelta(days=3653)
# "More likely than not to run out": the probability the commands count a customer-currency at.
LIKELY_TO_RUN_OUT = 0.5
TIMESTAMP = pl.Datetime("us", "UTC")
_HORIZON = re.compile(r"\s*(\d+)\s*([hdw])\s*\Z")
_HORIZON_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
COLUMNS = (
    "customer_id",
    "currency_id",
    "as_of",
    "horizon_end",
    "balance",
    "days_with_usage",
    "too_little_history",
    "mean_daily_burn",
    "run_out_probability",
    "run_out_p10",
    "run_out_p50",
    "run_out_p90",
    "expected_expired",
    "expected_breakage",
)


def parse_horizon(horizon: timedelta | str) -> timedelta:
    """A horizon as a positive timedelta: given as one, or as text `30d`, `12h`, `2w`."""
    if isinstance(horizon, str):
        match = _HORIZON.match(horizon)
        if match is None:
            raise InputError(f"horizon {horizon!r}: write it as days, hours or weeks, e.g. 30d")
        unit = _HORIZON_UNITS[match.group(2)]
        count = int(match.group(1))
        # Compared before multiplying: a count of many digits is beyond what a timedelta holds.
        if count > MAX_HORIZON // unit:
            raise _too_long()
        span = count * unit
    else:
        span = horizon
    if span <= timedelta(0):
        raise InputError("the horizon must be longer than 0")
    if span > MAX_HORIZON:
        raise _too_long()
    return span


def _too_long() -> InputError:
    return InputError(f"the horizon must be at most {MAX_HORIZON.days} days (10 years)")


def horizon_end(as_of: datetime, span: timedelta) -> datetime:
    """T + H, refused as bad input when it leaves the calendar (after year 9999)."""
    try:
        return as_of + span
    except OverflowError:
        raise InputError(
            f"the horizon of {as_of.isoformat()} + {span.days} days ends after year 9999"
        ) from None


def forecast(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    customers: CustomerInputs | None = None,
    *,
    as_of: datetime,
    horizon: timedelta | str,
    paths: int = MIN_PATHS,
    seed: int = 0,
    enforcement: Enforcement = "overdraft",
    events: str = "events",
    model: BurnModel | None = None,
) -> pl.DataFrame:
    """Forecast, per customer and currency, running out of credits within `horizon` after `as_of`.

    The events of table `events` before `as_of` are the history (later ones are ignored). Returns
    one row per customer and currency with a balance, grants, settings or usage, sorted by
    customer and currency, with the columns of `COLUMNS` (docs/forecast.md):

    * `balance` at `as_of` (exact credits), `days_with_usage` before it, `too_little_history`
      (fewer than 7 days with usage: such rows are flagged, their forecast columns left null);
    * `run_out_probability`: the share of paths in which a consumption leaves the balance at or
      below 0 (or, with `enforcement="block"`, an event is denied) before `horizon_end`;
    * `run_out_p10` / `_p50` / `_p90`: quantiles of the run-out instant over all paths, null when
      that quantile falls after the horizon (paths that never run out count as after it);
    * `expected_expired` (credits) and `expected_breakage` (money: expired credits × cost basis)
      of the grants expiring inside the horizon, averaged over the paths.

    The same inputs and `seed` give the same table; a customer's figures depend on its own data
    only. `model` chooses how burn is drawn from history (`BurnModel`, documented default).
    """
    if not isinstance(as_of, datetime):
        raise InputError(
            f"as_of must be a datetime, not {type(as_of).__name__} {as_of!r}: "
            "e.g. datetime(2024, 2, 1, tzinfo=UTC)"
        )
    as_of = as_utc(as_of)
    span = parse_horizon(horizon)
    customers = customers if customers is not None else CustomerInputs()
    check_options(paths, enforcement)
    return forecast_costed(
        con,
        catalog,
        customers,
        cost(con, catalog, customers, events=events),
        as_of=as_of,
        horizon=span,
        paths=paths,
        seed=seed,
        enforcement=enforcement,
        events=events,
        model=model or BurnModel(),
    )


def forecast_costed(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    customers: CustomerInputs,
    costing: Costing,
    *,
    as_of: datetime,
    horizon: timedelta,
    paths: int,
    seed: int,
    enforcement: Enforcement,
    events: str,
    model: BurnModel,
) -> pl.DataFrame:
    """`forecast` on events already costed (a backtest costs once for all its cuts)."""
    as_of = as_utc(as_of)
    end = horizon_end(as_of, horizon)
    problems = customer_problems(customers, catalog)
    if problems:
        raise ValidationError(problems, source="customers")
    history_rows = costing.consumptions.filter(pl.col("timestamp") < as_of)
    before = _replay_before(
        con, catalog, customers, Costing(consumptions=history_rows, rejected=costing.rejected),
        as_of=as_of, enforcement=enforcement, events=events,
    )  # fmt: skip
    precisions = {c.id: c.precision for c in catalog.currencies}
    history = burn_history(history_rows, precisions, as_of, model)
    state = credit_state(
        history_keys=history.units,
        ledger=None if before is None else before.ledger,
        grants=None if before is None else before.grants,
        customers=customers,
        catalog=catalog,
        as_of=as_of,
        end=end,
        seed=seed,
    )
    units = _with_history(state, history)
    results = _run(state, history, as_of, end, paths, model, enforcement)
    return _table(units, state, results, catalog, customers, as_of, end, paths)


def check_options(paths: int, enforcement: str) -> None:
    if paths < MIN_PATHS:
        raise InputError(
            f"paths must be at least {MIN_PATHS} (fewer give unstable p10/p90 dates), got {paths}"
        )
    if paths > MAX_PATHS:
        raise InputError(f"paths must be at most {MAX_PATHS:,}, got {paths:,}")
    if enforcement not in ENFORCEMENTS:
        raise InputError(f"enforcement must be one of {', '.join(ENFORCEMENTS)}")


def _replay_before(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    customers: CustomerInputs,
    costing: Costing,
    *,
    as_of: datetime,
    enforcement: Enforcement,
    events: str,
) -> SimulationResult | None:
    """The replay up to `as_of` (None when nothing happens before it)."""
    starts = [as_utc(g.effective_at) for g in customers.grants]
    starts += [as_utc(s.start) for s in customers.subscriptions]
    times = costing.consumptions["timestamp"]
    if times.len():
        starts.append(times.min())  # type: ignore[arg-type]
    if not starts or min(starts) >= as_of:
        return None
    return simulate(
        con, catalog, customers, events=events, enforcement=enforcement, until=as_of,
        costing=costing,
    )  # fmt: skip


def _with_history(state: CreditState, history: BurnHistory) -> pl.DataFrame:
    """The units with their history columns; fills the kernel's history parameters."""
    indexed = history.units.with_row_index("history_row").with_columns(
        pl.col("history_row").cast(pl.Int64)
    )
    units = state.units.join(indexed, on=KEYS, how="left", maintain_order="left").with_columns(
        pl.col("days_with_usage", "window_days", "window_burn").fill_null(0)
    )
    row = units["history_row"].fill_null(-1).to_numpy()
    known = row >= 0
    params = state.params
    params[known, P_HIST0] = history.offsets[row[known]]
    params[known, P_HISTN] = units["window_days"].to_numpy()[known]
    params[known, P_PROFILE] = row[known]
    enough = units["days_with_usage"].to_numpy() >= MIN_DAYS_WITH_USAGE
    params[:, P_SIMULATE] = enough.astype(np.int64)
    return units


def _run(
    state: CreditState,
    history: BurnHistory,
    as_of: datetime,
    end: datetime,
    paths: int,
    model: BurnModel,
    enforcement: Enforcement,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the kernel over every unit, in chunks on every core (units never interact)."""
    n_units = state.params.shape[0]
    out_run_out = np.zeros((n_units, 4), dtype=np.int64)
    out_slot_expired = np.zeros(state.slots.height, dtype=np.int64)
    out_recharge_expired = np.zeros(n_units, dtype=np.int64)
    slots = _slot_array(state.slots)
    # C order always (Polars gives Fortran order, an empty table C order): one compiled
    # signature, the one set-up compiles (`ledger.compile.warm_up_forecast`).
    happenings = state.happenings.select("time", "phase", "slot").to_numpy().astype(np.int64)
    happenings = np.ascontiguousarray(happenings.reshape(-1, 3))
    workers = os.cpu_count() or 1
    bounds = np.linspace(0, n_units, min(n_units, 8 * workers) + 1).astype(np.int64)

    def run(lo: int, hi: int) -> None:
        kernel.run_units(
            lo, hi, state.params, slots, happenings, history.burn, history.events,
            history.profile, state.month_starts, state.first_day, state.add_months_days,
            to_micros(as_of), to_micros(end), paths, model.block_days, model.resample_level,
            enforcement == "block", out_run_out, out_slot_expired, out_recharge_expired,
        )  # fmt: skip

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done in [
            pool.submit(run, int(lo), int(hi)) for lo, hi in itertools.pairwise(bounds) if hi > lo
        ]:
            done.result()
    return out_run_out, out_slot_expired, out_recharge_expired


def _slot_array(slots: pl.DataFrame) -> np.ndarray:
    columns = [
        pl.col("remaining"),
        pl.col("active").cast(pl.Int64),
        pl.col("priority"),
        pl.col("never").cast(pl.Int64),
        pl.col("expires_us"),
        pl.col("type_rank"),
        pl.col("effective_us"),
        pl.col("before_recharges").cast(pl.Int64),
        pl.col("rolls_into"),
        pl.col("roll_cap"),
    ]
    array = slots.select(columns).to_numpy().astype(np.int64)
    return np.ascontiguousarray(array.reshape(-1, kernel.N_SLOT_COLUMNS))


def _table(
    units: pl.DataFrame,
    state: CreditState,
    results: tuple[np.ndarray, np.ndarray, np.ndarray],
    catalog: Catalog,
    customers: CustomerInputs,
    as_of: datetime,
    end: datetime,
    paths: int,
) -> pl.DataFrame:
    """The forecast table: exact credits and money, instants, the run-out probability."""
    run_out, slot_expired, recharge_expired = results
    scale = max((c.precision for c in catalog.currencies), default=0)
    money_scale = scale + max(
        [decimal_places(g.cost_basis) for g in customers.grants]
        + [decimal_places(c.unit_price) for c in catalog.currencies],
        default=0,
    )
    prices = {c.id: c.unit_price for c in catalog.currencies}
    # Per unit: expired minor units summed over paths, and their value (Σ units × cost basis).
    expired_units = recharge_expired.astype(object)
    expired_value = [Decimal(int(v)) * prices[k] for v, k in zip(
        recharge_expired, units["currency_id"], strict=True
    )]  # fmt: skip
    slot_units = state.slots["unit"].to_list()
    for unit, amount, basis in zip(slot_units, slot_expired.tolist(), state.slots["cost_basis"]):
        if amount:
            expired_units[unit] += amount
            expired_value[unit] += amount * basis
    simulated = state.params[:, P_SIMULATE] == 1
    credits = pl.Decimal(38, scale)
    rows: dict[str, list[object]] = {name: [] for name in ("mean", "expired", "breakage")}
    for i, (precision, days, burnt) in enumerate(
        units.select("precision", "window_days", "window_burn").iter_rows()
    ):
        rows["mean"].append(_mean(burnt, days, precision))
        if simulated[i]:
            divisor = Decimal(paths) * Decimal(10) ** precision
            rows["expired"].append(_rounded(Decimal(int(expired_units[i])) / divisor, precision))
            rows["breakage"].append(_rounded(expired_value[i] / divisor, money_scale))
        else:
            rows["expired"].append(None)
            rows["breakage"].append(None)
    return pl.DataFrame(
        {
            "customer_id": units["customer_id"],
            "currency_id": units["currency_id"],
            "as_of": pl.repeat(as_of, units.height, dtype=TIMESTAMP, eager=True),
            "horizon_end": pl.repeat(end, units.height, dtype=TIMESTAMP, eager=True),
            "balance": pl.Series(
                [
                    from_minor_units(b, p)
                    for p, b in units.select("precision", "balance").iter_rows()
                ],
                dtype=credits,
            ),
            "days_with_usage": units["days_with_usage"].cast(pl.Int64),
            "too_little_history": pl.Series(~simulated),
            "mean_daily_burn": pl.Series(rows["mean"], dtype=credits),
            "run_out_probability": pl.Series(
                np.where(simulated, run_out[:, kernel.R_COUNT] / paths, np.nan)
            ).fill_nan(None),
            **{
                f"run_out_p{q}": _instants(run_out[:, column], simulated)
                for q, column in ((10, kernel.R_P10), (50, kernel.R_P50), (90, kernel.R_P90))
            },
            "expected_expired": pl.Series(rows["expired"], dtype=credits),
            "expected_breakage": pl.Series(rows["breakage"], dtype=pl.Decimal(38, money_scale)),
        }
    ).select(COLUMNS)


def _instants(micros: np.ndarray, simulated: np.ndarray) -> pl.Series:
    valid = simulated & (micros < NEVER_US)
    return (
        pl.Series(np.where(valid, micros, 0), dtype=pl.Int64)
        .cast(TIMESTAMP)
        .set(pl.Series(~valid), None)
    )


def _mean(burnt: int, days: int, precision: int) -> Decimal | None:
    if days == 0:
        return None
    return _rounded(Decimal(burnt) / days / Decimal(10) ** precision, precision)


def _rounded(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def run_out_ranking(table: pl.DataFrame, limit: int | None = None) -> pl.DataFrame:
    """Who runs out first: the rows of a `forecast` table with a chance of running out, by p50
    instant (after the horizon last), then probability (highest first), customer and currency."""
    ranked = table.filter(pl.col("run_out_probability") > 0).sort(
        ["run_out_p50", "run_out_probability", "customer_id", "currency_id"],
        descending=[False, True, False, False],
        nulls_last=True,
    )
    return ranked if limit is None else ranked.head(limit)


def horizon_text(span: timedelta) -> str:
    """A horizon as the CLI writes it: 30d, 12h, 36h."""
    hours = span // timedelta(hours=1)
    if span == timedelta(hours=hours) and hours % 24:
        return f"{hours}h"
    if span == timedelta(days=span.days):
        return f"{span.days}d"
    return str(span)
