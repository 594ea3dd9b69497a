"""Recurring grants of SPEC §5: one RECURRING grant per period of each credit entitlement."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from pricing_lab.ledger.model import Grant, RecurringEntitlement
from pricing_lab.timeutil import as_utc, period_start


def recurring_grants(
    entitlements: Iterable[RecurringEntitlement], until: datetime
) -> tuple[Grant, ...]:
    """The RECURRING grants of every period that starts before `until` (and before the end).

    Periods are anchored on the entitlement's `start` and computed from it each time (a Jan 31
    start gives Feb 28/29, Mar 31, Apr 30, …; yearly Feb 29 gives Feb 28). Each grant takes effect
    at its period start and expires at min(next period start, end); no rollover.

    Grant ids are `{customer_id}:{source_id}:{currency_id}:{index}`, the index counting periods
    from 0. When one customer has several entitlements with the same source and currency (the same
    plan subscribed again later, or two entitlements of one plan in one currency) the index keeps
    counting across them in period-start order, so ids stay unique.
    """
    until = as_utc(until)
    periods: dict[tuple[str, str, str], list[tuple[datetime, str, Decimal, str, datetime]]] = (
        defaultdict(list)
    )
    for entitlement in entitlements:
        anchor = as_utc(entitlement.start)
        end = as_utc(entitlement.end) if entitlement.end is not None else None
        key = (entitlement.customer_id, entitlement.source_id, entitlement.currency_id)
        index = 0
        while True:
            start = period_start(anchor, entitlement.cadence, index)
            if start >= until or (end is not None and start >= end):
                break
            following = period_start(anchor, entitlement.cadence, index + 1)
            expires = following if end is None else min(following, end)
            periods[key].append(
                (start, entitlement.source_kind, entitlement.amount, entitlement.cadence, expires)
            )
            index += 1
    grants: list[Grant] = []
    for (customer_id, source_id, currency_id), rows in periods.items():
        # Sorting on every field makes the numbering independent of the input's row order.
        for index, (start, kind, amount, _cadence, expires) in enumerate(sorted(rows)):
            grants.append(
                Grant(
                    grant_id=f"{customer_id}:{source_id}:{currency_id}:{index}",
                    customer_id=customer_id,
                    currency_id=currency_id,
                    amount=amount,
                    type="RECURRING",
                    priority=0,
                    effective_at=start,
                    expires_at=expires,
                    cost_basis=Decimal(0),
                    source="plan" if kind == "plan" else "addon",
                )
            )
    return tuple(grants)
