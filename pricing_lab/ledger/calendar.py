"""Calendar steps of SPEC §5: whole months and years from an anchor, the day clamped to the month.

One rule, three forms that must agree (`tests/ledger/test_conformance.py` runs the same cases
through each):

* `add_months` / `add_years` / `period_start` on `datetime`s: the definition, read by the reference
  engine and by usage reports;
* `add_months_us`, its compiled twin on microseconds since the epoch (the fast engine's kernel:
  auto-recharge expiries);
* `add_months_array`, its vectorised twin on NumPy arrays of microseconds (recurring periods, the
  invariant check's recharge expiries).

The rule: move the anchor by whole months; if the anchor's day does not exist in the target month,
take the month's last day (Jan 31 + 1 month = Feb 29 in 2024, Feb 28 in 2023); the time of day is
kept. Periods are always computed from the original anchor, never step by step, so a Jan 31 anchor
gives Feb 29, Mar 31, Apr 30, … A year is 12 months (Feb 29 + 1 year = Feb 28).
"""

from __future__ import annotations

import calendar
from datetime import datetime

import numpy as np
from numba import njit

from pricing_lab.timeutil import DAY_US, Cadence, as_utc

# Month index (year × 12 + month − 1) of January 1970, the epoch's month.
EPOCH_MONTH = 1970 * 12


def add_months(anchor: datetime, months: int) -> datetime:
    """`anchor` moved by whole months, the day clamped to the month's last day."""
    month_index = anchor.month - 1 + months
    year = anchor.year + month_index // 12
    month = month_index % 12 + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def add_years(anchor: datetime, years: int) -> datetime:
    """`anchor` moved by whole years; Feb 29 becomes Feb 28 in a year without it."""
    return add_months(anchor, 12 * years)


def cadence_months(cadence: Cadence) -> int:
    """Months in one period of a cadence."""
    return 1 if cadence == "monthly" else 12


def period_start(anchor: datetime, cadence: Cadence, index: int) -> datetime:
    """Start of period `index` (0-based) of a recurrence anchored at `anchor`."""
    return add_months(anchor, cadence_months(cadence) * index)


def month_start(value: datetime) -> datetime:
    """The start of the UTC calendar month containing `value` (spend limits count per month)."""
    return as_utc(value).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


# --- the compiled twin ---------------------------------------------------------------------------


@njit(cache=True)
def _civil_from_days(days: int) -> tuple[int, int, int]:  # pragma: no cover - compiled
    """(year, month, day) of a day count since 1970-01-01 (proleptic Gregorian, H. Hinnant)."""
    z = days + 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return (y + 1 if m <= 2 else y), m, d


@njit(cache=True)
def _days_from_civil(y: int, m: int, d: int) -> int:  # pragma: no cover - compiled
    """Days since 1970-01-01 of a (year, month, day) (the inverse of `_civil_from_days`)."""
    y = y - 1 if m <= 2 else y
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    mp = m - 3 if m > 2 else m + 9
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@njit(cache=True)
def add_months_us(micros: int, months: int) -> int:  # pragma: no cover - compiled
    """`add_months` on microseconds since the epoch."""
    days = micros // DAY_US
    time_of_day = micros - days * DAY_US
    y, m, d = _civil_from_days(days)
    index = m - 1 + months
    year = y + index // 12
    month = index % 12 + 1
    next_year, next_month = (year + 1, 1) if month == 12 else (year, month + 1)
    last_day = _days_from_civil(next_year, next_month, 1) - _days_from_civil(year, month, 1)
    return _days_from_civil(year, month, min(d, last_day)) * DAY_US + time_of_day


@njit(cache=True)
def month_index_us(micros: int) -> int:  # pragma: no cover - compiled
    """The UTC calendar month of an instant as year × 12 + month − 1 (`month_start`'s month)."""
    y, m, _ = _civil_from_days(micros // DAY_US)
    return y * 12 + m - 1


# --- the vectorised twin -------------------------------------------------------------------------


def add_months_array(micros: np.ndarray, months: np.ndarray | int) -> np.ndarray:
    """`add_months` on an int64 array of microseconds since the epoch (element by element)."""
    micros = np.asarray(micros, dtype=np.int64)
    days = micros // DAY_US
    time_of_day = micros - days * DAY_US
    day = days.astype("datetime64[D]")
    month = day.astype("datetime64[M]")
    day_of_month = (day - month.astype("datetime64[D]")).astype(np.int64) + 1
    target = month + np.asarray(months, dtype=np.int64).astype("timedelta64[M]")
    first = target.astype("datetime64[D]").astype(np.int64)
    days_in_month = (target + 1).astype("datetime64[D]").astype(np.int64) - first
    result: np.ndarray = (first + np.minimum(day_of_month, days_in_month) - 1) * DAY_US
    return result + time_of_day


def month_index_array(micros: np.ndarray) -> np.ndarray:
    """`month_index_us` on an int64 array of microseconds since the epoch."""
    months = (np.asarray(micros, dtype=np.int64) // DAY_US).astype("datetime64[D]")
    result: np.ndarray = months.astype("datetime64[M]").astype(np.int64) + EPOCH_MONTH
    return result
