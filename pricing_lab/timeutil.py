"""UTC timestamps (microsecond precision) and calendar steps with month-end clamping (SPEC §5)."""

from __future__ import annotations

import calendar
import functools
from datetime import UTC, date, datetime, timedelta
from typing import Literal

Cadence = Literal["monthly", "yearly"]
MICROSECOND = timedelta(microseconds=1)
DAY_US = 86_400_000_000  # microseconds in a day
NEVER_US = 2**63 - 1  # "never" as int64 microseconds: after every real instant
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def as_utc(value: datetime) -> datetime:
    """A timezone-aware UTC datetime; naive values are taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def naive_utc(value: datetime) -> datetime:
    """The same instant as a naive UTC datetime (naive input is taken as UTC already): how
    DuckDB TIMESTAMP columns hold it, so comparisons never involve the session time zone."""
    return as_utc(value).replace(tzinfo=None)


@functools.lru_cache(maxsize=1 << 16)
def to_micros(value: datetime) -> int:
    """Microseconds since the Unix epoch (exact; naive input is taken as UTC already).

    Memoised: grant times repeat a lot across customers (every customer's recurring periods start
    on a few dates), and the ledger engine and the invariant check convert them all."""
    return (as_utc(value) - EPOCH) // MICROSECOND


def add_months(anchor: datetime, months: int) -> datetime:
    """`anchor` moved by whole months, the day clamped to the month's last day.

    Always computed from the original anchor, so a Jan 31 anchor gives Feb 28/29, Mar 31, Apr 30.
    """
    month_index = anchor.month - 1 + months
    year = anchor.year + month_index // 12
    month = month_index % 12 + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def add_years(anchor: datetime, years: int) -> datetime:
    """`anchor` moved by whole years; Feb 29 becomes Feb 28 in a year without it."""
    return add_months(anchor, 12 * years)


def period_start(anchor: datetime, cadence: Cadence, index: int) -> datetime:
    """Start of period `index` (0-based) of a recurrence anchored at `anchor`."""
    return add_months(anchor, index) if cadence == "monthly" else add_years(anchor, index)


def month_start(value: datetime) -> datetime:
    """The start of the UTC calendar month containing `value`."""
    return as_utc(value).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def timestamp_value(value: object) -> datetime:
    """A UTC datetime from what a YAML or JSON document holds: a datetime (naive = UTC), a date
    (its midnight, UTC) or ISO 8601 text (`2024-03-01`, `2024-03-01T12:00:00Z`, with an offset).
    Raises `ValueError` for anything else."""
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        return as_utc(datetime.fromisoformat(value.strip().replace("Z", "+00:00")))
    raise ValueError(f"not a timestamp: {value!r}")
