"""Records of the credits ledger (SPEC §5): grants, subscriptions, costed consumptions, entries.

Immutable values only; the rules live in `order`, `calendar`, `recurring`, `reference` and
`kernel`. Amounts are `Decimal` (credits at the currency's precision, money per credit for cost
bases), never float.
Timestamps are UTC datetimes with microsecond precision; naive datetimes are taken to be UTC.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Literal, TypeAlias

from pricing_lab.catalog.model import (
    Catalog,
    CreditCurrency,
    CreditEntitlement,
    CurrencyId,
    Rollover,
)
from pricing_lab.limits import ENFORCEMENTS as ENFORCEMENTS  # re-exported
from pricing_lab.limits import GRANT_EXPIRIES as GRANT_EXPIRIES  # re-exported
from pricing_lab.timeutil import Cadence

if TYPE_CHECKING:
    import polars as pl

CustomerId: TypeAlias = str
GrantId: TypeAlias = str
EventId: TypeAlias = str

# Every grant type and source, the replay's own included; their positions are the fast engine's
# codes (what an input may give: `pricing_lab.limits`).
GrantType = Literal["PAID", "PROMOTIONAL", "RECURRING", "OVERDRAFT"]
GRANT_TYPES: tuple[str, ...] = ("PAID", "PROMOTIONAL", "RECURRING", "OVERDRAFT")
GrantSource = Literal["manual", "plan", "addon", "top_up", "auto_recharge", "overdraft", "rollover"]
GRANT_SOURCES: tuple[str, ...] = (
    "manual",
    "plan",
    "addon",
    "top_up",
    "auto_recharge",
    "overdraft",
    "rollover",
)
GrantExpiry = Literal["none", "1_month", "1_year"]
Enforcement = Literal["overdraft", "block"]
EntitlementSource = Literal["plan", "addon"]
EntryType = Literal[
    "GRANTED",
    "CONSUMED",
    "EXPIRED",
    "VOIDED",
    "CONSUMPTION_TRANSFER_SOURCE",
    "CONSUMPTION_TRANSFER_TARGET",
    "ROLLED_OVER",
]
# Codes used by the fast engine's kernel; the order is only a numbering, not a ledger order.
ENTRY_TYPES: tuple[str, ...] = (
    "GRANTED",
    "CONSUMED",
    "EXPIRED",
    "VOIDED",
    "CONSUMPTION_TRANSFER_SOURCE",
    "CONSUMPTION_TRANSFER_TARGET",
    "ROLLED_OVER",
)
DENIED_REASON = "insufficient_credits"


@dataclass(frozen=True, slots=True, kw_only=True)
class Grant:
    """Credits given to a customer in one currency (SPEC §5).

    `expires_at` is exclusive: the grant cannot be used at or after it. A grant voided at or before
    its `effective_at` never takes effect. `cost_basis` is money per credit (0 for promotional).
    """

    grant_id: GrantId
    customer_id: CustomerId
    currency_id: CurrencyId
    amount: Decimal
    type: GrantType
    effective_at: datetime
    priority: int = 0
    expires_at: datetime | None = None
    cost_basis: Decimal = Decimal(0)
    voided_at: datetime | None = None
    source: GrantSource = "manual"


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscription:
    """A customer on a plan (and add-ons) from `start` until `end` (exclusive, None: open)."""

    subscription_id: str
    customer_id: CustomerId
    plan_id: str
    start: datetime
    plan_version: int | None = None
    end: datetime | None = None
    addons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RecurringEntitlement:
    """One credit entitlement of one subscription: `amount` credits every period from `start`.

    `source_id` is the plan or add-on id that carries the entitlement; it names the grants.
    `rollover` carries part of each period's unused credits into the next period (SPEC §5).
    """

    customer_id: CustomerId
    source_id: str
    source_kind: EntitlementSource
    currency_id: CurrencyId
    amount: Decimal
    cadence: Cadence
    start: datetime
    end: datetime | None = None
    rollover: Rollover | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AutoRecharge:
    """Auto-recharge of one customer's balance in one currency (SPEC §5).

    After each consumed event, a balance below `threshold` is topped back up to `target`, within
    `monthly_spend_limit` money per UTC calendar month (None: no limit).
    """

    customer_id: CustomerId
    currency_id: CurrencyId
    threshold: Decimal
    target: Decimal
    monthly_spend_limit: Decimal | None = None
    grant_expiry: GrantExpiry = "none"


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureCost:
    """What one event costs for one matched feature, already rounded to the currency precision."""

    feature_id: str
    currency_id: CurrencyId
    cost: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class Consumption:
    """One costed usage event: its cost per matched feature (an empty tuple: it costs nothing)."""

    event_id: EventId
    customer_id: CustomerId
    timestamp: datetime
    costs: tuple[FeatureCost, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerEntry:
    """One row of the ledger, with the columns of SPEC §5."""

    entry_id: int
    timestamp: datetime
    customer_id: CustomerId
    currency_id: CurrencyId
    entry_type: EntryType
    grant_id: GrantId
    grant_type: GrantType
    grant_source: GrantSource
    amount: Decimal
    balance_after: Decimal
    event_id: EventId | None
    feature_id: str | None
    scenario: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DeniedEvent:
    """An event refused in `block` mode: its cost in `currency_id` exceeded the balance."""

    event_id: EventId
    customer_id: CustomerId
    timestamp: datetime
    reason: str
    currency_id: CurrencyId
    cost: Decimal
    balance: Decimal


# A replay's consumptions: records, or the long table `event_id, customer_id, timestamp,
# feature_id, currency_id, cost` (one row per event and matched feature; a cost is a Decimal at its
# currency's precision, an event that matched no feature one row with null feature, currency, cost).
Consumptions: TypeAlias = "Sequence[Consumption] | pl.DataFrame"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayInput:
    """Everything one replay needs, already costed: the engines never read the catalog or events.

    `start` / `until` bound the horizon `[start, until)`; None takes SPEC §5's defaults (earliest
    event, grant or subscription start; one microsecond after the last event).
    """

    currencies: tuple[CreditCurrency, ...]
    grants: tuple[Grant, ...] = ()
    recurring: tuple[RecurringEntitlement, ...] = ()
    auto_recharges: tuple[AutoRecharge, ...] = ()
    consumptions: Consumptions = ()
    enforcement: Enforcement = "overdraft"
    start: datetime | None = None
    until: datetime | None = None
    scenario: str = "base"


def recurring_entitlements(
    subscriptions: Iterable[Subscription], catalog: Catalog
) -> tuple[RecurringEntitlement, ...]:
    """The credit entitlements of each subscription's plan and add-ons, as recurring entitlements.

    Raises `KeyError` for a plan or add-on the catalog does not have.
    """
    result: list[RecurringEntitlement] = []
    for subscription in subscriptions:
        sources: list[tuple[EntitlementSource, str, Iterable[object]]] = [
            ("plan", subscription.plan_id, catalog.plan(subscription.plan_id).entitlements)
        ]
        for addon_id in subscription.addons:
            sources.append(("addon", addon_id, catalog.addon(addon_id).entitlements))
        for kind, source_id, entitlements in sources:
            for entitlement in entitlements:
                if isinstance(entitlement, CreditEntitlement):
                    result.append(
                        RecurringEntitlement(
                            customer_id=subscription.customer_id,
                            source_id=source_id,
                            source_kind=kind,
                            currency_id=entitlement.currency,
                            amount=entitlement.amount,
                            cadence=entitlement.cadence,
                            start=subscription.start,
                            end=subscription.end,
                            rollover=entitlement.rollover,
                        )
                    )
    return tuple(result)
