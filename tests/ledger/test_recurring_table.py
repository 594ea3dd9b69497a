"""The columnar recurring periods (`recurring_grant_table`) against a plain walk over the calendar
with `timeutil.period_start`, one period at a time: month-end and Feb 29 anchors, times of day,
ends, dates before 1970, several entitlements of one plan, any input order."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from pricing_lab.ledger.calendar import period_start
from pricing_lab.ledger.model import RecurringEntitlement
from pricing_lab.ledger.recurring import recurring_grant_table, recurring_grants

ANCHOR_DAYS = [
    datetime(2024, 1, 31, tzinfo=UTC),
    datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC),
    datetime(2023, 3, 30, 12, tzinfo=UTC),
    datetime(1969, 12, 31, 6, tzinfo=UTC),
    datetime(2024, 5, 15, 8, 30, tzinfo=UTC),
]


def walked(entitlements: list[RecurringEntitlement], until: datetime) -> set[tuple[object, ...]]:
    """(grant id, effective, expires, amount, source) of every period, the obvious way."""
    periods: dict[tuple[str, str, str], list[tuple[object, ...]]] = defaultdict(list)
    for e in entitlements:
        index = 0
        while True:
            start = period_start(e.start, e.cadence, index)
            if start >= until or (e.end is not None and start >= e.end):
                break
            following = period_start(e.start, e.cadence, index + 1)
            expires = following if e.end is None else min(following, e.end)
            periods[(e.customer_id, e.source_id, e.currency_id)].append(
                (start, e.source_kind, e.amount, e.cadence, expires)
            )
            index += 1
    result = set()
    for (customer, source, currency), rows in periods.items():
        for index, (start, kind, amount, _cadence, expires) in enumerate(sorted(rows)):
            name = f"{customer}:{source}:{currency}:{index}"
            result.add((name, start, expires, amount, "plan" if kind == "plan" else "addon"))
    return result


@st.composite
def entitlement_sets(draw: st.DrawFn) -> tuple[list[RecurringEntitlement], datetime]:
    entitlements = []
    for _ in range(draw(st.integers(1, 6))):
        start = draw(st.sampled_from(ANCHOR_DAYS)) + timedelta(days=draw(st.integers(0, 3)))
        end = None
        if draw(st.booleans()):
            end = start + timedelta(days=draw(st.integers(1, 800)), hours=draw(st.integers(0, 23)))
        entitlements.append(
            RecurringEntitlement(
                customer_id=draw(st.sampled_from(["a", "b"])),
                source_id=draw(st.sampled_from(["pro", "team"])),
                source_kind=draw(st.sampled_from(["plan", "addon"])),
                currency_id="CR",
                amount=Decimal(draw(st.sampled_from(["5", "12.5", "100.25"]))),
                cadence=draw(st.sampled_from(["monthly", "yearly"])),
                start=start,
                end=end,
            )
        )
    until = min(e.start for e in entitlements) + timedelta(days=draw(st.integers(0, 1500)))
    return entitlements, until


@settings(max_examples=300, deadline=None)
@given(entitlement_sets(), st.randoms(use_true_random=False))
def test_columnar_periods_equal_the_calendar_walk(
    case: tuple[list[RecurringEntitlement], datetime], rng: random.Random
) -> None:
    entitlements, until = case
    shuffled = list(entitlements)
    rng.shuffle(shuffled)
    table = recurring_grant_table(shuffled, until)
    got = {
        (row["grant_id"], row["effective_at"], row["expires_at"], row["amount"], row["source"])
        for row in table.iter_rows(named=True)
    }
    assert got == walked(entitlements, until)
    assert table.height == len(got)  # no period twice
    assert set(table["type"]) <= {"RECURRING"}
    # The same table whatever the input order.
    assert table.equals(recurring_grant_table(entitlements, until))


def test_records_carry_the_table_values() -> None:
    anchor = datetime(2024, 1, 31, tzinfo=UTC)
    grants = recurring_grants(
        [
            RecurringEntitlement(
                customer_id="acme",
                source_id="pro",
                source_kind="plan",
                currency_id="CR",
                amount=Decimal("100.5"),
                cadence="monthly",
                start=anchor,
            )
        ],
        datetime(2024, 3, 1, tzinfo=UTC),
    )
    assert [(g.grant_id, g.effective_at.day, g.expires_at) for g in grants] == [
        ("acme:pro:CR:0", 31, datetime(2024, 2, 29, tzinfo=UTC)),
        ("acme:pro:CR:1", 29, datetime(2024, 3, 31, tzinfo=UTC)),
    ]
    assert all(g.amount == Decimal("100.5") and g.cost_basis == 0 for g in grants)
    assert all(g.type == "RECURRING" and g.source == "plan" for g in grants)
