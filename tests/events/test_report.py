"""Usage reports: billing periods with month-end clamping, calendar periods, reset markers."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import duckdb
import polars as pl
import pytest

from pricing_lab.catalog.model import Catalog, Feature, Meter
from pricing_lab.errors import InputError, ValidationError
from pricing_lab.events.ingest import ingest_events
from pricing_lab.events.report import SubscriptionSpan, billing_periods, usage_report

CATALOG = Catalog(
    features=(
        Feature(
            id="tokens",
            name="Tokens",
            type="metered",
            meter=Meter(
                source="events", event_name="llm.request", aggregation="sum", dimension="n"
            ),
        ),
    )
)
T = datetime


def load(con: duckdb.DuckDBPyConnection, rows: list[tuple[str, str, datetime, int]]) -> None:
    values = ", ".join(
        f"('{e}', '{c}', 'llm.request', TIMESTAMP '{t.isoformat(sep=' ')}', {n})"
        for e, c, t, n in [(f"e{i}", c, t, n) for i, (c, _, t, n) in enumerate(rows)]
    )
    ingest_events(
        con,
        f"SELECT * FROM (VALUES {values}) AS t(event_id, customer_id, event_name, timestamp, n)",
        format="query",
    )


def table(frame: pl.DataFrame) -> list[tuple[object, ...]]:
    return [
        (
            r["customer_id"],
            r["plan_id"],
            r["period_start"],
            r["period_end"],
            r["reset_reason"],
            r["usage"],
        )
        for r in frame.iter_rows(named=True)
    ]


def test_billing_periods_clamp_to_month_end() -> None:
    span = SubscriptionSpan(customer_id="c", plan_id="p", start=T(2024, 1, 31, 9))
    assert billing_periods(span, T(2024, 5, 1)) == [
        (T(2024, 1, 31, 9), T(2024, 2, 29, 9), 0),
        (T(2024, 2, 29, 9), T(2024, 3, 31, 9), 1),
        (T(2024, 3, 31, 9), T(2024, 4, 30, 9), 2),
        (T(2024, 4, 30, 9), T(2024, 5, 31, 9), 3),
    ]


def test_billing_report_resets_at_periods_and_plan_changes(con) -> None:
    load(
        con,
        [
            ("c1", "", T(2024, 1, 20), 1),  # before the subscription: calendar month, no plan
            ("c1", "", T(2024, 2, 29, 8, 59), 2),  # last µs-ish of period 0
            ("c1", "", T(2024, 2, 29, 9), 4),  # first instant of period 1 (Feb 29)
            ("c1", "", T(2024, 3, 30), 8),
            ("c1", "", T(2024, 3, 31, 9), 16),  # period 2 starts Mar 31
            ("c1", "", T(2024, 4, 12), 32),  # after the change to pro on Apr 10
            ("c2", "", T(2024, 3, 3), 64),  # no subscription at all
        ],
    )
    subs = pl.DataFrame(
        {
            "customer_id": ["c1", "c1"],
            "plan_id": ["free", "pro"],
            "start": [T(2024, 1, 31, 9), T(2024, 4, 10)],
            "end": [T(2024, 4, 10), None],
        }
    )
    frame = usage_report(con, CATALOG, period="billing", subscriptions=subs)
    D = Decimal
    assert table(frame) == [
        ("c1", None, T(2024, 1, 1), T(2024, 1, 31, 9), "period_start", D(1)),
        ("c1", "free", T(2024, 1, 31, 9), T(2024, 2, 29, 9), "subscription_start", D(2)),
        ("c1", "free", T(2024, 2, 29, 9), T(2024, 3, 31, 9), "period_start", D(12)),
        ("c1", "free", T(2024, 3, 31, 9), T(2024, 4, 10), "period_start", D(16)),
        ("c1", "pro", T(2024, 4, 10), T(2024, 5, 10), "plan_change", D(32)),
        ("c2", None, T(2024, 3, 1), T(2024, 4, 1), "period_start", D(64)),
    ]


def test_calendar_periods_are_cut_at_plan_changes(con) -> None:
    load(con, [("c1", "", T(2024, 1, 1, 5), 1), ("c1", "", T(2024, 1, 3), 2),
               ("c1", "", T(2024, 1, 8), 4), ("c1", "", T(2024, 1, 10), 8)])  # fmt: skip
    subs = [
        SubscriptionSpan(customer_id="c1", plan_id="a", start=T(2024, 1, 1), end=T(2024, 1, 2)),
        SubscriptionSpan(customer_id="c1", plan_id="b", start=T(2024, 1, 9)),
    ]
    frame = usage_report(con, CATALOG, period="week", subscriptions=subs)
    D = Decimal
    assert table(frame) == [
        ("c1", "a", T(2024, 1, 1), T(2024, 1, 2), "subscription_start", D(1)),
        ("c1", None, T(2024, 1, 2), T(2024, 1, 8), "subscription_end", D(2)),
        ("c1", None, T(2024, 1, 8), T(2024, 1, 9), "period_start", D(4)),
        ("c1", "b", T(2024, 1, 9), T(2024, 1, 15), "plan_change", D(8)),
    ]
    daily = usage_report(con, CATALOG, period="day")
    assert daily.height == 4 and set(daily["reset_reason"]) == {"period_start"}
    monthly = usage_report(con, CATALOG, period="month")
    assert table(monthly) == [("c1", None, T(2024, 1, 1), T(2024, 2, 1), "period_start", D(15))]


def test_bad_subscriptions_list_every_problem(con) -> None:
    load(con, [("c1", "", T(2024, 1, 1), 1)])
    subs = pl.DataFrame(
        {
            "customer_id": ["c1", "c1", "c2", None],
            "plan_id": ["a", "b", "a", "a"],
            "start": [T(2024, 1, 1), T(2024, 1, 15), T(2024, 2, 1), T(2024, 1, 1)],
            "end": [T(2024, 2, 1), None, T(2024, 1, 1), None],
        }
    )
    with pytest.raises(ValidationError) as info:
        usage_report(con, CATALOG, period="billing", subscriptions=subs)
    text = str(info.value)
    assert "3 problems" in text and "overlap" in text and "end must be after start" in text
    with pytest.raises(InputError, match="unknown period"):
        usage_report(con, CATALOG, period="year")  # type: ignore[arg-type]


def test_subscription_times_that_are_not_times_are_problems_not_open_ends(con) -> None:
    # '2024-13-45' as an end once became a missing end: a subscription without end, silently.
    load(con, [("c1", "", T(2024, 1, 1), 1)])
    subs = pl.DataFrame(
        {
            "customer_id": ["c1", "c2", "c3"],
            "plan_id": ["a", "a", "a"],
            "start": ["2024-01-01", "soon", "2024-01-01"],
            "end": ["2024-13-45", None, ""],
        }
    )
    with pytest.raises(ValidationError) as info:
        usage_report(con, CATALOG, period="billing", subscriptions=subs)
    assert [(p.path, p.message) for p in info.value.problems] == [
        ("row 1", "end: not a time: '2024-13-45'"),
        ("row 2", "start: not a time: 'soon'"),
    ]
