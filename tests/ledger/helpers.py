"""Short builders for ledger tests, in the domain's words: grants, events, expected entries."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import polars as pl

from pricing_lab.catalog.model import CreditCurrency, Rollover
from pricing_lab.ledger import (
    AutoRecharge,
    Consumption,
    FeatureCost,
    Grant,
    RecurringEntitlement,
    ReplayInput,
    ReplayResult,
    replay,
)

CR = CreditCurrency(id="CR", name="Credits", unit_price=Decimal("0.01"), precision=2)
TK = CreditCurrency(id="TK", name="Tokens", unit_price=Decimal("0.5"), precision=0)


def at(day: int, hour: int = 0, month: int = 1, year: int = 2024, minute: int = 0) -> datetime:
    """A UTC instant, by default in January 2024."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def grant(
    grant_id: str,
    amount: str | int,
    effective: datetime,
    *,
    type: str = "PROMOTIONAL",
    customer: str = "acme",
    currency: str = "CR",
    priority: int = 0,
    expires: datetime | None = None,
    voided: datetime | None = None,
    cost_basis: str = "0",
    source: str = "manual",
) -> Grant:
    return Grant(
        grant_id=grant_id,
        customer_id=customer,
        currency_id=currency,
        amount=Decimal(str(amount)),
        type=type,  # type: ignore[arg-type]
        priority=priority,
        effective_at=effective,
        expires_at=expires,
        voided_at=voided,
        cost_basis=Decimal(cost_basis),
        source=source,  # type: ignore[arg-type]
    )


def event(
    event_id: str,
    when: datetime,
    *costs: tuple[str, str] | tuple[str, str, str],
    customer: str = "acme",
) -> Consumption:
    """An event costing `(feature, cost)` or `(feature, cost, currency)` per matched feature."""
    return Consumption(
        event_id=event_id,
        customer_id=customer,
        timestamp=when,
        costs=tuple(
            FeatureCost(
                feature_id=c[0],
                currency_id=c[2] if len(c) == 3 else "CR",  # type: ignore[misc]
                cost=Decimal(c[1]),
            )
            for c in costs
        ),
    )


def recharge(
    threshold: str,
    target: str,
    *,
    limit: str | None = None,
    expiry: str = "none",
    customer: str = "acme",
    currency: str = "CR",
) -> AutoRecharge:
    return AutoRecharge(
        customer_id=customer,
        currency_id=currency,
        threshold=Decimal(threshold),
        target=Decimal(target),
        monthly_spend_limit=None if limit is None else Decimal(limit),
        grant_expiry=expiry,  # type: ignore[arg-type]
    )


def entitlement(
    source_id: str,
    amount: str,
    start: datetime,
    *,
    end: datetime | None = None,
    cadence: str = "monthly",
    customer: str = "acme",
    currency: str = "CR",
    kind: str = "plan",
    rollover: Rollover | None = None,
) -> RecurringEntitlement:
    return RecurringEntitlement(
        customer_id=customer,
        source_id=source_id,
        source_kind=kind,  # type: ignore[arg-type]
        currency_id=currency,
        amount=Decimal(amount),
        cadence=cadence,  # type: ignore[arg-type]
        start=start,
        end=end,
        rollover=rollover,
    )


def rollover(max_amount: str | None = None, max_percent: str | None = None) -> Rollover:
    return Rollover(
        max_amount=None if max_amount is None else Decimal(max_amount),
        max_percent=None if max_percent is None else Decimal(max_percent),
    )


def run(**fields: Any) -> ReplayResult:
    """Replay with both engines; they must agree exactly. Returns the reference result."""
    fields.setdefault("currencies", (CR,))
    for name in ("grants", "consumptions", "recurring", "auto_recharges"):
        if name in fields:
            fields[name] = tuple(fields[name])
    replay_input = ReplayInput(**fields)
    reference = replay(replay_input, engine="reference")
    fast = replay(replay_input, engine="fast")
    assert fast.ledger.equals(reference.ledger), (fast.ledger, reference.ledger)
    assert fast.denied_events.equals(reference.denied_events)
    assert fast.balances.equals(reference.balances)
    return reference


def when(value: datetime) -> str:
    """`01-05 12:00` for 2024-01-05 12:00 UTC (the year is left out)."""
    return value.strftime("%m-%d %H:%M")


def entries(result: ReplayResult, *, customer: bool = False) -> list[tuple[str, ...]]:
    """The ledger as short rows: (when, type, grant, amount, balance_after[, event, feature])."""
    rows = []
    for row in result.ledger.iter_rows(named=True):
        item: tuple[str, ...] = (
            when(row["timestamp"]),
            row["entry_type"],
            row["grant_id"],
            str(row["amount"]),
            str(row["balance_after"]),
        )
        if row["event_id"] is not None:
            item += (row["event_id"], row["feature_id"])
        if customer:
            item = (row["customer_id"], *item)
        rows.append(item)
    return rows


def column(frame: pl.DataFrame, name: str) -> list[Any]:
    return frame[name].to_list()
