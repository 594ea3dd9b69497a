"""UTC timestamps with microsecond precision (SPEC §5) and their integer form.

Calendar steps (months and years with month-end clamping) are `pricing_lab.ledger.calendar`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

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


def to_micros(value: datetime) -> int:
    """Microseconds since the Unix epoch (exact; naive input is taken as UTC already)."""
    return (as_utc(value) - EPOCH) // MICROSECOND


def from_micros(micros: int) -> datetime:
    """The UTC datetime `micros` microseconds after the Unix epoch."""
    return EPOCH + timedelta(microseconds=micros)


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


def __getattr__(name: str) -> Any:
    """Calendar steps live in `pricing_lab.ledger.calendar` (one definition with its compiled and
    vectorised twins); importing them from here still works."""
    if name in ("add_months", "add_years", "period_start", "month_start"):
        from pricing_lab.ledger import calendar

        return getattr(calendar, name)
    raise AttributeError(f"module 'pricing_lab.timeutil' has no attribute {name!r}")
