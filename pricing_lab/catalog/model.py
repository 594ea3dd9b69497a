"""Catalog records of SPEC §2: features, meters, groups, plans, add-ons, currencies, credit rates.

Immutable values only; validation, storage, versioning and the YAML format live in sibling modules.
Amounts are `Decimal`, never float. Ids are case-sensitive strings matching `ID_PATTERN`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal, TypeAlias, TypeVar

from pricing_lab.money import Rounding
from pricing_lab.timeutil import Cadence

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*\Z")

FeatureId: TypeAlias = str
GroupId: TypeAlias = str
PlanId: TypeAlias = str
AddOnId: TypeAlias = str
CurrencyId: TypeAlias = str

FeatureType = Literal["boolean", "configuration", "metered"]
Status = Literal["active", "archived"]
MeterSource = Literal["events", "reported"]
FilterOperator = Literal[
    "equals",
    "not_equals",
    "gt",
    "gte",
    "lt",
    "lte",
    "is_null",
    "is_not_null",
    "contains",
    "starts_with",
    "ends_with",
    "in",
]
FILTER_OPERATORS: tuple[str, ...] = FilterOperator.__args__  # type: ignore[attr-defined]
Aggregation = Literal["count", "count_unique", "sum", "max", "min", "avg"]
AGGREGATIONS: tuple[str, ...] = Aggregation.__args__  # type: ignore[attr-defined]
RateMode = Literal["per_unit", "formula"]

# A filter value: a string or number; a tuple of them for `in`; None for the null tests.
FilterValue: TypeAlias = str | Decimal | tuple[str | Decimal, ...] | None


@dataclass(frozen=True, slots=True, kw_only=True)
class UnitNames:
    """How one unit and many units are called, e.g. token / tokens."""

    singular: str
    plural: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DisplayUnit:
    """A coarse unit for showing and billing usage counted in a fine one (bytes shown as GB).

    `factor` is how many fine units make one display unit. Billing quantities round **up** to a
    whole display unit (0.02 GB → 1 GB).
    """

    singular: str
    plural: str
    factor: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterFilter:
    """A condition on one event dimension; all filters of a meter must hold."""

    dimension: str
    operator: FilterOperator
    value: FilterValue = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Meter:
    """How usage of a metered feature is measured.

    `events`: events named `event_name` that pass every filter, aggregated with `aggregation` over
    `dimension` (no dimension for `count`). `reported`: rows of (customer, feature, time, quantity).
    """

    source: MeterSource
    event_name: str | None = None
    filters: tuple[MeterFilter, ...] = ()
    aggregation: Aggregation = "count"
    dimension: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UnitCost:
    """What serving one event of a metered feature costs us, in money, from `valid_from` on.

    `formula` is SPEC §3 formula text over event dimensions giving money per event (in the
    credit currencies' price currency). A feature's costs are dated entries in `valid_from`
    order; the entry in force at an event's time is the last one starting at or before it.
    `valid_from` is a UTC instant; None (first entry only) means in force since always.
    """

    formula: str
    valid_from: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Feature:
    """A capability of the product: boolean, configuration (a numeric value) or metered."""

    id: FeatureId
    name: str
    type: FeatureType
    description: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    status: Status = "active"
    units: UnitNames | None = None
    display_unit: DisplayUnit | None = None
    meter: Meter | None = None
    cost: tuple[UnitCost, ...] = ()  # metered only: cost to serve, dated (see UnitCost)

    def _repr_html_(self) -> str:
        from pricing_lab.catalog.html import feature_html

        return feature_html(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureGroup:
    """A named, versioned set of features; an entitlement to it expands to its features."""

    id: GroupId
    name: str
    features: tuple[FeatureId, ...]
    description: str = ""
    status: Status = "active"

    def _repr_html_(self) -> str:
        from pricing_lab.catalog.html import group_html

        return group_html(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class Price:
    """What a plan or add-on costs per cadence, in money (not credits)."""

    amount: Decimal
    cadence: Cadence = "monthly"
    currency: str = "USD"


@dataclass(frozen=True, slots=True, kw_only=True)
class BooleanEntitlement:
    """Access to a boolean feature."""

    feature: FeatureId


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigurationEntitlement:
    """A configuration feature with its value (e.g. 5 seats)."""

    feature: FeatureId
    value: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class MeteredEntitlement:
    """A metered feature, with an optional usage limit per period (None: unlimited)."""

    feature: FeatureId
    usage_limit: Decimal | None = None
    period: Cadence = "monthly"


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupEntitlement:
    """Every feature of a feature group, at the group version in force."""

    group: GroupId


@dataclass(frozen=True, slots=True, kw_only=True)
class Rollover:
    """How much of a period's unused credits carries into the next period (SPEC §5).

    At least one cap is given; each applies when given: `max_amount` credits (> 0, at the
    currency's precision) and `max_percent` of the entitlement's amount (0 < p ≤ 100, the
    product rounded down to the currency's precision).
    """

    max_amount: Decimal | None = None
    max_percent: Decimal | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CreditEntitlement:
    """A recurring grant of `amount` credits of `currency` each period; unused credits expire at
    the period's end unless `rollover` carries part of them into the next period."""

    currency: CurrencyId
    amount: Decimal
    cadence: Cadence = "monthly"
    rollover: Rollover | None = None


Entitlement: TypeAlias = (
    BooleanEntitlement
    | ConfigurationEntitlement
    | MeteredEntitlement
    | GroupEntitlement
    | CreditEntitlement
)


@dataclass(frozen=True, slots=True, kw_only=True)
class CreditRate:
    """How usage of one metered feature burns credits.

    `per_unit`: `per_unit` credits per unit of the meter's per-event value (1 for count, the
    dimension's value for sum). `formula`: the text of a SPEC §3 formula over event dimensions.
    `currency` may be None when the catalog has a single currency.
    """

    feature: FeatureId
    mode: RateMode
    per_unit: Decimal | None = None
    formula: str | None = None
    currency: CurrencyId | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """A plan customers subscribe to."""

    id: PlanId
    name: str
    description: str = ""
    price: Price | None = None
    entitlements: tuple[Entitlement, ...] = ()
    credit_rates: tuple[CreditRate, ...] = ()
    status: Status = "active"

    def _repr_html_(self) -> str:
        from pricing_lab.catalog.html import offer_html

        return offer_html(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class AddOn:
    """An add-on bought on top of a plan; its credit entitlements grant extra credits."""

    id: AddOnId
    name: str
    description: str = ""
    price: Price | None = None
    entitlements: tuple[Entitlement, ...] = ()
    credit_rates: tuple[CreditRate, ...] = ()
    status: Status = "active"

    def _repr_html_(self) -> str:
        from pricing_lab.catalog.html import offer_html

        return offer_html(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class CreditCurrency:
    """A credit currency: its money price per credit, ledger precision and cost rounding."""

    id: CurrencyId
    name: str
    unit_price: Decimal
    price_currency: str = "USD"
    precision: int = 2
    rounding: Rounding = "half_up"

    def _repr_html_(self) -> str:
        from pricing_lab.catalog.html import currency_html

        return currency_html(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class Catalog:
    """One consistent set of catalog definitions (what a YAML catalog file holds).

    `default_credit_rates` apply to customers without a subscription.
    """

    features: tuple[Feature, ...] = ()
    feature_groups: tuple[FeatureGroup, ...] = ()
    plans: tuple[Plan, ...] = ()
    addons: tuple[AddOn, ...] = ()
    currencies: tuple[CreditCurrency, ...] = ()
    default_credit_rates: tuple[CreditRate, ...] = ()

    def feature(self, feature_id: FeatureId) -> Feature:
        return _by_id(self.features, feature_id, "feature")

    def feature_group(self, group_id: GroupId) -> FeatureGroup:
        return _by_id(self.feature_groups, group_id, "feature group")

    def plan(self, plan_id: PlanId) -> Plan:
        return _by_id(self.plans, plan_id, "plan")

    def addon(self, addon_id: AddOnId) -> AddOn:
        return _by_id(self.addons, addon_id, "add-on")

    def currency(self, currency_id: CurrencyId) -> CreditCurrency:
        return _by_id(self.currencies, currency_id, "credit currency")

    def _repr_html_(self) -> str:
        from pricing_lab.catalog.html import catalog_html

        return catalog_html(self)


_Record = TypeVar("_Record", Feature, FeatureGroup, Plan, AddOn, CreditCurrency)


def _by_id(records: tuple[_Record, ...], record_id: str, kind: str) -> _Record:
    for record in records:
        if record.id == record_id:
            return record
    raise KeyError(f"unknown {kind} {record_id!r}")
