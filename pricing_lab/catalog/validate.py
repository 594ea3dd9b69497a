"""Catalog validation: every problem of a catalog document at once, each with its path in the file.

The checks run on the *document form* of a catalog (the plain mappings and lists a YAML catalog file
holds, see `yaml_format`). A `Catalog` built in Python is validated by turning it into that form
first, so one set of rules serves both, and a problem's path (`plans[2].entitlements[0].feature`)
names the same place in a YAML file and in the `Catalog`'s tuples.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from pricing_lab.catalog.model import (
    AGGREGATIONS,
    FILTER_OPERATORS,
    ID_PATTERN,
    Catalog,
    ConfigurationEntitlement,
    CreditEntitlement,
    GroupEntitlement,
)
from pricing_lab.errors import Problem
from pricing_lab.limits import MAX_DECIMAL_PLACES, MAX_INTEGER_DIGITS, MAX_PRECISION  # shared
from pricing_lab.money import normalized
from pricing_lab.timeutil import timestamp_value

# A formula checker: returns an error message for bad formula text, None for good text.
FormulaCheck = Callable[[str], "str | None"]

SECTIONS = (
    "currencies",
    "features",
    "feature_groups",
    "plans",
    "addons",
    "default_credit_rates",
)
FEATURE_TYPES = ("boolean", "configuration", "metered")
STATUSES = ("active", "archived")
CADENCES = ("monthly", "yearly")
ROUNDINGS = ("half_up", "up", "down")
RATE_MODES = ("per_unit", "formula")
METER_SOURCES = ("events", "reported")
ENTITLEMENT_KINDS = ("boolean", "configuration", "metered", "group", "credit")
REPORTED_DIMENSION = "quantity"

_FEATURE_KEYS = (
    "id",
    "name",
    "type",
    "description",
    "metadata",
    "status",
    "units",
    "display_unit",
    "meter",
    "cost",
)
_GROUP_KEYS = ("id", "name", "description", "features", "status")
_OFFER_KEYS = ("id", "name", "description", "price", "entitlements", "credit_rates", "status")
_CURRENCY_KEYS = ("id", "name", "unit_price", "price_currency", "precision", "rounding")
_RATE_KEYS = ("feature", "mode", "per_unit", "formula", "currency")
_ENTITLEMENT_KEYS: dict[str, tuple[str, ...]] = {
    "boolean": ("kind", "feature"),
    "configuration": ("kind", "feature", "value"),
    "metered": ("kind", "feature", "usage_limit", "period"),
    "group": ("kind", "group"),
    "credit": ("kind", "currency", "amount", "cadence", "rollover"),
}
_ROLLOVER_KEYS = ("max_amount", "max_percent")
_ALL_ENTITLEMENT_KEYS = tuple(dict.fromkeys(k for ks in _ENTITLEMENT_KEYS.values() for k in ks))
_NUMERIC_OPERATORS = ("gt", "gte", "lt", "lte")
_STRING_OPERATORS = ("contains", "starts_with", "ends_with")
_NULL_OPERATORS = ("is_null", "is_not_null")


def validate_catalog(
    catalog: Catalog | Mapping[str, object] | object,
    *,
    check_formula: FormulaCheck | None = None,
    existing: Catalog | None = None,
) -> list[Problem]:
    """Every problem of a catalog, in file order, each with its path (empty list: valid).

    `catalog` is a `Catalog` or its document form (what `yaml_format.parse_yaml` returns).
    `check_formula` validates formula text (returns an error message or None); without it the
    formula module's `check_formula` does (parse errors with line, column and caret).
    `existing` is the catalog already in a store: ids it defines resolve references the
    document does not define itself, a feature's type cannot change, and a feature an active
    stored plan or add-on grants cannot be archived.
    """
    if isinstance(catalog, Catalog):
        from pricing_lab.catalog.yaml_format import catalog_to_document

        document: object = catalog_to_document(catalog)
    else:
        document = catalog
    if check_formula is None:
        from pricing_lab.formula import check_formula as parse_check

        check_formula = parse_check
    checker = _Checker(check_formula=check_formula, existing=existing)
    checker.check_document(document)
    return checker.problems


def type_name(value: object) -> str:
    """How a document value is called in messages: string, number, boolean, list, mapping, null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, date):
        return "date"
    return type(value).__name__


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _one_of(options: Iterable[str]) -> str:
    return ", ".join(options)


@dataclass(slots=True)
class _FeatureInfo:
    path: str
    type: str | None
    status: str


@dataclass(slots=True)
class _GroupInfo:
    path: str
    features: list[str]
    status: str


@dataclass(slots=True)
class _Checker:
    check_formula: FormulaCheck | None
    existing: Catalog | None
    problems: list[Problem] = field(default_factory=list)
    currencies: dict[str, str] = field(default_factory=dict)  # id → path
    precisions: dict[str, int] = field(default_factory=dict)  # currency id → precision
    price_currencies: set[str] = field(default_factory=set)
    costed_features: list[str] = field(default_factory=list)  # paths of features with a cost
    features: dict[str, _FeatureInfo] = field(default_factory=dict)
    groups: dict[str, _GroupInfo] = field(default_factory=dict)
    file_feature_ids: set[str] = field(default_factory=set)
    file_offer_ids: dict[str, set[str]] = field(default_factory=dict)

    # -- reporting and typed access ------------------------------------------------------------

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(path=path, message=message))

    def mapping(
        self,
        path: str,
        value: object,
        allowed: tuple[str, ...],
        required: tuple[str, ...],
        *,
        what: str = "",
    ) -> Mapping[object, object] | None:
        if not isinstance(value, Mapping):
            self.add(path, f"expected a mapping, got {type_name(value)}")
            return None
        for key in value:
            if key not in allowed:
                self.add(_join(path, key), _unknown_key_message(key, allowed, what))
        for key in required:
            if value.get(key) is None:
                self.add(_join(path, key), "missing required field")
        return value

    def string(self, path: str, item: Mapping[object, object], key: str) -> str | None:
        value = item.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            self.add(_join(path, key), f"expected a string, got {type_name(value)}{_hint(value)}")
            return None
        return value

    def identifier(self, path: str, item: Mapping[object, object], key: str) -> str | None:
        value = self.string(path, item, key)
        if value is not None and not ID_PATTERN.match(value):
            self.add(
                _join(path, key),
                f"invalid id {value!r} (must match [A-Za-z0-9][A-Za-z0-9_.:-]*)",
            )
            return None
        return value

    def choice(
        self, path: str, item: Mapping[object, object], key: str, options: tuple[str, ...]
    ) -> str | None:
        value = self.string(path, item, key)
        if value is not None and value not in options:
            self.add(_join(path, key), f"must be one of {_one_of(options)}; got {value!r}")
            return None
        return value

    def number(
        self,
        path: str,
        item: Mapping[object, object],
        key: str,
        *,
        positive: bool = False,
        non_negative: bool = False,
    ) -> Decimal | None:
        value = item.get(key)
        if value is None:
            return None
        return self.number_value(
            _join(path, key), value, positive=positive, non_negative=non_negative
        )

    def number_value(
        self,
        path: str,
        value: object,
        *,
        positive: bool = False,
        non_negative: bool = False,
        stored_as_amount: bool = True,
    ) -> Decimal | None:
        if isinstance(value, float):
            # A binary float is not the number the user meant (0.1 is 0.1000000000000000055…).
            self.add(
                path,
                f"expected an exact number (int or Decimal), got the float {value!r}; "
                f"write Decimal({str(value)!r})",
            )
            return None
        if isinstance(value, str):
            # e.g. `1e3` or a quoted "0.5": numbers are plain decimals, unquoted.
            self.add(path, f"expected a number (a plain decimal, unquoted), got the text {value!r}")
            return None
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            self.add(path, f"expected a number, got {type_name(value)}")
            return None
        number = Decimal(value)
        if not number.is_finite():
            self.add(path, "must be a finite number")
            return None
        exponent = normalized(number).as_tuple().exponent
        assert isinstance(exponent, int)
        if stored_as_amount and -exponent > MAX_DECIMAL_PLACES:
            self.add(path, f"at most {MAX_DECIMAL_PLACES} decimal places")
            return None
        if stored_as_amount and abs(number) >= Decimal(10) ** MAX_INTEGER_DIGITS:
            self.add(path, f"must be less than 10^{MAX_INTEGER_DIGITS}")
            return None
        if positive and number <= 0:
            self.add(path, "must be > 0")
            return None
        if non_negative and number < 0:
            self.add(path, "must be >= 0")
            return None
        return number

    def items(self, path: str, item: Mapping[object, object], key: str) -> list[object]:
        value = item.get(key)
        if value is None:
            return []
        if not isinstance(value, list | tuple):
            self.add(_join(path, key), f"expected a list, got {type_name(value)}")
            return []
        return list(value)

    # -- the document --------------------------------------------------------------------------

    def check_document(self, document: object) -> None:
        top = self.mapping("", document, SECTIONS, ())
        if top is None:
            return
        sections = {name: self.items("", top, name) for name in SECTIONS}
        self.file_feature_ids = {
            item["id"]
            for item in sections["features"]
            if isinstance(item, Mapping) and isinstance(item.get("id"), str)
        }
        for kind in ("plans", "addons"):
            self.file_offer_ids[kind] = {
                item["id"]
                for item in sections[kind]
                if isinstance(item, Mapping) and isinstance(item.get("id"), str)
            }
        for index, item in enumerate(sections["currencies"]):
            self.check_currency(f"currencies[{index}]", item)
        for index, item in enumerate(sections["features"]):
            self.check_feature(f"features[{index}]", item)
        self.add_existing_definitions()
        for index, item in enumerate(sections["feature_groups"]):
            self.check_group(f"feature_groups[{index}]", item)
        self.add_existing_groups()
        for kind, noun in (("plans", "plan"), ("addons", "add-on")):
            seen: dict[str, str] = {}
            for index, item in enumerate(sections[kind]):
                self.check_offer(f"{kind}[{index}]", item, noun, seen)
        self.check_rates("default_credit_rates", sections["default_credit_rates"])
        self.check_stored_offers()
        self.check_cost_money()

    def check_currency(self, path: str, value: object) -> None:
        item = self.mapping(path, value, _CURRENCY_KEYS, ("id", "name", "unit_price"))
        if item is None:
            return
        currency_id = self.identifier(path, item, "id")
        self.string(path, item, "name")
        self.number(path, item, "unit_price", non_negative=True)
        price_currency = self.string(path, item, "price_currency")
        self.price_currencies.add(price_currency or "USD")
        precision = item.get("precision")
        if precision is not None and not _is_precision(precision):
            self.add(_join(path, "precision"), f"must be an integer from 0 to {MAX_PRECISION}")
        self.choice(path, item, "rounding", ROUNDINGS)
        registered = currency_id is not None and self.register(
            self.currencies, currency_id, path, "currency"
        )
        if registered and (precision is None or _is_precision(precision)):
            self.precisions[str(currency_id)] = 2 if precision is None else int(precision)  # type: ignore[call-overload]

    def register(self, seen: dict[str, str], record_id: str, path: str, noun: str) -> bool:
        if record_id in seen:
            self.add(
                _join(path, "id"),
                f"duplicate {noun} id {record_id!r} (already used by {seen[record_id]})",
            )
            return False
        seen[record_id] = path
        return True

    def check_feature(self, path: str, value: object) -> None:
        item = self.mapping(path, value, _FEATURE_KEYS, ("id", "name", "type"))
        if item is None:
            return
        feature_id = self.identifier(path, item, "id")
        self.string(path, item, "name")
        self.string(path, item, "description")
        feature_type = self.choice(path, item, "type", FEATURE_TYPES)
        status = self.choice(path, item, "status", STATUSES) or "active"
        metadata = item.get("metadata")
        if metadata is not None:
            if isinstance(metadata, Mapping):
                for key, entry in metadata.items():
                    if not isinstance(key, str):
                        self.add(_join(path, "metadata"), f"keys must be strings, got {key!r}")
                    elif not isinstance(entry, str):
                        self.add(
                            _join(_join(path, "metadata"), key),
                            f"expected a string, got {type_name(entry)}",
                        )
            else:
                self.add(_join(path, "metadata"), f"expected a mapping, got {type_name(metadata)}")
        if item.get("units") is not None:
            if feature_type == "boolean":
                self.add(_join(path, "units"), "a boolean feature has no units")
            else:
                units_path = _join(path, "units")
                units = self.mapping(
                    units_path, item["units"], ("singular", "plural"), ("singular", "plural")
                )
                if units is not None:
                    self.string(units_path, units, "singular")
                    self.string(units_path, units, "plural")
        if item.get("display_unit") is not None:
            if feature_type is not None and feature_type != "metered":
                self.add(_join(path, "display_unit"), "only metered features have a display unit")
            else:
                unit_path = _join(path, "display_unit")
                unit = self.mapping(
                    unit_path,
                    item["display_unit"],
                    ("singular", "plural", "factor"),
                    ("singular", "plural", "factor"),
                )
                if unit is not None:
                    self.string(unit_path, unit, "singular")
                    self.string(unit_path, unit, "plural")
                    self.number(unit_path, unit, "factor", positive=True)
        if item.get("meter") is not None:
            if feature_type is not None and feature_type != "metered":
                self.add(_join(path, "meter"), "only metered features have a meter")
            else:
                self.check_meter(_join(path, "meter"), item["meter"])
        elif feature_type == "metered":
            self.add(_join(path, "meter"), "required for a metered feature")
        if item.get("cost") is not None:
            if feature_type is not None and feature_type != "metered":
                self.add(_join(path, "cost"), "only metered features have a cost to serve")
            else:
                self.check_costs(_join(path, "cost"), self.items(path, item, "cost"), item)
        if feature_id is None:
            return
        if feature_id in self.features:
            self.add(
                _join(path, "id"),
                f"duplicate feature id {feature_id!r} (already used by "
                f"{self.features[feature_id].path})",
            )
            return
        self.features[feature_id] = _FeatureInfo(path=path, type=feature_type, status=status)
        if self.existing is not None and feature_type is not None:
            stored = next((f for f in self.existing.features if f.id == feature_id), None)
            if stored is not None and stored.type != feature_type:
                self.add(
                    _join(path, "type"),
                    f"cannot change the type of stored feature {feature_id!r} from "
                    f"{stored.type} to {feature_type} (use a new id)",
                )

    def check_costs(
        self, path: str, entries: list[object], feature: Mapping[object, object]
    ) -> None:
        """A feature's dated unit costs: formulas, `from` instants strictly increasing (only
        the first may leave `from` out: in force since always)."""
        if entries:
            self.costed_features.append(path)
        meter = feature.get("meter")
        reported = isinstance(meter, Mapping) and meter.get("source") == "reported"
        previous: tuple[str, datetime] | None = None  # the last `from`: its name and instant
        for index, entry in enumerate(entries):
            entry_path = f"{path}[{index}]"
            item = self.mapping(entry_path, entry, ("from", "formula"), ("formula",))
            if item is None:
                continue
            formula = self.string(entry_path, item, "formula")
            formula_path = _join(entry_path, "formula")
            if formula is not None and not formula.strip():
                self.add(formula_path, "must not be empty")
            elif formula is not None and self.check_formula is not None:
                message = self.check_formula(formula)
                if message:
                    self.add(formula_path, message)
                elif reported:
                    unknown = [d for d in _formula_dimensions(formula) if d != REPORTED_DIMENSION]
                    if unknown:
                        self.add(
                            formula_path,
                            f"unknown dimension {unknown[0]!r}: a reported meter's only "
                            f"dimension is {REPORTED_DIMENSION!r}",
                        )
            from_path = _join(entry_path, "from")
            value = item.get("from")
            if value is None:
                if index > 0:
                    self.add(from_path, "required after the first cost entry")
                continue
            try:
                start = timestamp_value(value)
            except ValueError:
                self.add(
                    from_path,
                    "expected a timestamp (e.g. 2024-03-01 or 2024-03-01T00:00:00Z), got "
                    + (repr(value) if isinstance(value, str) else type_name(value)),
                )
                previous = None
                continue
            if previous is not None:
                before_path, before = previous
                if start == before:
                    self.add(from_path, f"duplicate: the same instant as {before_path}")
                elif start < before:
                    self.add(
                        from_path, f"must be after {before_path}: cost entries are in time order"
                    )
            previous = (f"cost[{index}].from", start)

    def check_cost_money(self) -> None:
        """Costs to serve are money of one kind: the credit currencies' price currency."""
        if self.costed_features and len(self.price_currencies) > 1:
            self.add(
                self.costed_features[0],
                "a cost to serve is money in the credit currencies' price currency, but they "
                f"are priced in {', '.join(sorted(self.price_currencies))}",
            )

    def check_meter(self, path: str, value: object) -> None:
        item = self.mapping(
            path,
            value,
            ("source", "event_name", "filters", "aggregation", "dimension"),
            ("source",),
        )
        if item is None:
            return
        source = self.choice(path, item, "source", METER_SOURCES)
        event_name = self.string(path, item, "event_name")
        aggregation = self.choice(path, item, "aggregation", AGGREGATIONS) or "count"
        dimension = self.string(path, item, "dimension")
        filters = self.items(path, item, "filters")
        if source == "events" and item.get("event_name") is None:
            self.add(_join(path, "event_name"), "required for an events meter")
        if event_name is not None and event_name == "":
            self.add(_join(path, "event_name"), "must not be empty")
        if source == "reported":
            if item.get("event_name") is not None:
                self.add(_join(path, "event_name"), "only for an events meter")
            if filters:
                self.add(_join(path, "filters"), "only for an events meter")
            if dimension is not None and dimension != REPORTED_DIMENSION:
                self.add(
                    _join(path, "dimension"),
                    f"a reported meter's only dimension is {REPORTED_DIMENSION!r}",
                )
        if aggregation == "count" and dimension is not None:
            self.add(_join(path, "dimension"), "aggregation 'count' takes no dimension")
        if aggregation != "count" and item.get("dimension") is None:
            self.add(_join(path, "dimension"), f"aggregation {aggregation!r} needs a dimension")
        for index, entry in enumerate(filters):
            self.check_filter(f"{_join(path, 'filters')}[{index}]", entry)

    def check_filter(self, path: str, value: object) -> None:
        item = self.mapping(
            path, value, ("dimension", "operator", "value"), ("dimension", "operator")
        )
        if item is None:
            return
        self.string(path, item, "dimension")
        operator = self.choice(path, item, "operator", FILTER_OPERATORS)
        if operator is None:
            return
        value_path = _join(path, "value")
        operand = item.get("value")
        if operator in _NULL_OPERATORS:
            if operand is not None:
                self.add(value_path, f"operator {operator!r} takes no value")
        elif operand is None:
            self.add(value_path, f"operator {operator!r} needs a value")
        elif operator == "in":
            if not isinstance(operand, list | tuple) or not operand:
                self.add(value_path, "operator 'in' needs a non-empty list of values")
                return
            for index, entry in enumerate(operand):
                self.scalar_operand(f"{value_path}[{index}]", entry)
        elif operator in _NUMERIC_OPERATORS:
            self.number_value(value_path, operand, stored_as_amount=False)
        elif operator in _STRING_OPERATORS:
            if not isinstance(operand, str):
                self.add(value_path, f"operator {operator!r} needs a string")
        else:
            self.scalar_operand(value_path, operand)

    def scalar_operand(self, path: str, value: object) -> None:
        if isinstance(value, str):
            return
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            self.add(path, f"expected a string or a number, got {type_name(value)}{_hint(value)}")
            return
        self.number_value(path, value, stored_as_amount=False)

    def add_existing_definitions(self) -> None:
        if self.existing is None:
            return
        for currency in self.existing.currencies:
            if currency.id not in self.currencies:
                self.currencies[currency.id] = f"stored currency {currency.id!r}"
                self.precisions[currency.id] = currency.precision
                self.price_currencies.add(currency.price_currency)
        for feature in self.existing.features:
            if feature.id not in self.file_feature_ids:
                self.features[feature.id] = _FeatureInfo(
                    path=f"stored feature {feature.id!r}", type=feature.type, status=feature.status
                )

    def add_existing_groups(self) -> None:
        if self.existing is None:
            return
        for group in self.existing.feature_groups:
            if group.id not in self.groups:
                self.groups[group.id] = _GroupInfo(
                    path=f"stored feature group {group.id!r}",
                    features=list(group.features),
                    status=group.status,
                )

    def check_group(self, path: str, value: object) -> None:
        item = self.mapping(path, value, _GROUP_KEYS, ("id", "name", "features"))
        if item is None:
            return
        group_id = self.identifier(path, item, "id")
        self.string(path, item, "name")
        self.string(path, item, "description")
        status = self.choice(path, item, "status", STATUSES) or "active"
        members: list[str] = []
        listed: dict[str, int] = {}
        for index, entry in enumerate(self.items(path, item, "features")):
            entry_path = f"{_join(path, 'features')}[{index}]"
            if not isinstance(entry, str):
                self.add(entry_path, f"expected a feature id, got {type_name(entry)}")
                continue
            if entry not in self.features:
                self.add(entry_path, f"unknown feature {entry!r}")
                continue
            if entry in listed:
                self.add(
                    entry_path, f"feature {entry!r} already listed at features[{listed[entry]}]"
                )
                continue
            listed[entry] = index
            members.append(entry)
        if group_id is None:
            return
        if group_id in self.groups:
            self.add(
                _join(path, "id"),
                f"duplicate feature group id {group_id!r} (already used by "
                f"{self.groups[group_id].path})",
            )
            return
        self.groups[group_id] = _GroupInfo(path=path, features=members, status=status)

    def check_offer(self, path: str, value: object, noun: str, seen: dict[str, str]) -> None:
        item = self.mapping(path, value, _OFFER_KEYS, ("id", "name"))
        if item is None:
            return
        offer_id = self.identifier(path, item, "id")
        self.string(path, item, "name")
        self.string(path, item, "description")
        status = self.choice(path, item, "status", STATUSES) or "active"
        if item.get("price") is not None:
            price_path = _join(path, "price")
            price = self.mapping(
                price_path, item["price"], ("amount", "cadence", "currency"), ("amount",)
            )
            if price is not None:
                self.number(price_path, price, "amount", non_negative=True)
                self.choice(price_path, price, "cadence", CADENCES)
                self.string(price_path, price, "currency")
        self.check_entitlements(
            _join(path, "entitlements"), self.items(path, item, "entitlements"), status
        )
        self.check_rates(_join(path, "credit_rates"), self.items(path, item, "credit_rates"))
        if offer_id is not None:
            self.register(seen, offer_id, path, noun)

    def check_entitlements(self, path: str, entries: list[object], status: str) -> None:
        granted: dict[str, str] = {}  # feature id → entitlement path (direct grants)
        groups: dict[str, str] = {}
        credits: dict[str, str] = {}
        configured: set[str] = set()
        group_entries: list[tuple[str, str]] = []
        for index, entry in enumerate(entries):
            entry_path = f"{path}[{index}]"
            short = f"entitlements[{index}]"
            kind_value = entry.get("kind") if isinstance(entry, Mapping) else None
            kind = kind_value if kind_value in _ENTITLEMENT_KEYS else None
            allowed = _ENTITLEMENT_KEYS[kind] if kind else _ALL_ENTITLEMENT_KEYS
            required: tuple[str, ...] = ("kind",)
            if kind in ("boolean", "configuration", "metered"):
                required += ("feature",)
            required += {"configuration": ("value",), "group": ("group",)}.get(kind or "", ())
            if kind == "credit":
                required += ("currency", "amount")
            item = self.mapping(
                entry_path, entry, allowed, required, what=f"a {kind} entitlement" if kind else ""
            )
            if item is None:
                continue
            self.choice(entry_path, item, "kind", ENTITLEMENT_KINDS)
            if kind in ("boolean", "configuration", "metered"):
                feature_id = self.string(entry_path, item, "feature")
                if kind == "configuration":
                    self.number(entry_path, item, "value")
                if kind == "metered":
                    self.number(entry_path, item, "usage_limit", non_negative=True)
                    self.choice(entry_path, item, "period", CADENCES)
                if feature_id is None:
                    continue
                feature_path = _join(entry_path, "feature")
                info = self.features.get(feature_id)
                if info is None:
                    self.add(feature_path, f"unknown feature {feature_id!r}")
                    continue
                if info.type is not None and info.type != kind:
                    self.add(
                        feature_path,
                        f"feature {feature_id!r} is {info.type}; a {kind} entitlement needs a "
                        f"{kind} feature",
                    )
                if info.status == "archived" and status == "active":
                    self.add(
                        feature_path, f"feature {feature_id!r} is archived and cannot be granted"
                    )
                if feature_id in granted:
                    self.add(
                        feature_path,
                        f"feature {feature_id!r} already granted by {granted[feature_id]}",
                    )
                else:
                    granted[feature_id] = short
                if kind == "configuration":
                    configured.add(feature_id)
            elif kind == "group":
                group_id = self.string(entry_path, item, "group")
                if group_id is None:
                    continue
                group_path = _join(entry_path, "group")
                if group_id not in self.groups:
                    self.add(group_path, f"unknown feature group {group_id!r}")
                    continue
                if group_id in groups:
                    self.add(
                        group_path,
                        f"feature group {group_id!r} already granted by {groups[group_id]}",
                    )
                    continue
                groups[group_id] = short
                group_entries.append((group_path, group_id))
            elif kind == "credit":
                currency_id = self.string(entry_path, item, "currency")
                currency_path = _join(entry_path, "currency")
                if currency_id is not None and currency_id not in self.currencies:
                    self.add(currency_path, f"unknown currency {currency_id!r}")
                elif currency_id is not None and currency_id in credits:
                    self.add(
                        currency_path,
                        f"currency {currency_id!r} already granted by {credits[currency_id]}",
                    )
                elif currency_id is not None:
                    credits[currency_id] = short
                self.number(entry_path, item, "amount", positive=True)
                self.choice(entry_path, item, "cadence", CADENCES)
                if item.get("rollover") is not None:
                    rollover_path = _join(entry_path, "rollover")
                    self.check_rollover(rollover_path, item["rollover"], currency_id)
        for group_path, group_id in group_entries:
            group = self.groups[group_id]
            if group.status == "archived" and status == "active":
                self.add(
                    group_path, f"feature group {group_id!r} is archived and cannot be granted"
                )
            for member in group.features:
                info = self.features.get(member)
                if info is None:
                    continue
                if info.status == "archived" and status == "active":
                    self.add(
                        group_path,
                        f"feature group {group_id!r} contains archived feature {member!r}",
                    )
                if info.type == "configuration" and member not in configured:
                    self.add(
                        group_path,
                        f"feature group {group_id!r} contains configuration feature {member!r}: "
                        "add a configuration entitlement with its value",
                    )

    def check_rollover(self, path: str, value: object, currency_id: str | None) -> None:
        """SPEC §5 rollover: at least one cap; max_amount > 0 credits at the currency's precision,
        0 < max_percent ≤ 100."""
        item = self.mapping(path, value, _ROLLOVER_KEYS, (), what="a rollover")
        if item is None:
            return
        if item.get("max_amount") is None and item.get("max_percent") is None:
            self.add(path, "give max_amount, max_percent or both")
        amount = self.number(path, item, "max_amount", positive=True)
        precision = self.precisions.get(currency_id or "")
        if amount is not None and precision is not None:
            exponent = normalized(amount).as_tuple().exponent
            assert isinstance(exponent, int)
            if -exponent > precision:
                self.add(
                    _join(path, "max_amount"),
                    f"more decimal places than currency {currency_id!r} keeps ({precision})",
                )
        percent = self.number(path, item, "max_percent", positive=True)
        if percent is not None and percent > 100:
            self.add(_join(path, "max_percent"), "must be <= 100")

    def check_rates(self, path: str, entries: list[object]) -> None:
        seen: dict[tuple[str, str | None], str] = {}
        for index, entry in enumerate(entries):
            entry_path = f"{path}[{index}]"
            item = self.mapping(entry_path, entry, _RATE_KEYS, ("feature", "mode"))
            if item is None:
                continue
            mode = self.choice(entry_path, item, "mode", RATE_MODES)
            per_unit = self.number(entry_path, item, "per_unit", non_negative=True)
            formula = self.string(entry_path, item, "formula")
            if mode == "per_unit":
                if item.get("per_unit") is None:
                    self.add(_join(entry_path, "per_unit"), "required when mode is per_unit")
                if item.get("formula") is not None:
                    self.add(_join(entry_path, "formula"), "only for mode formula")
            elif mode == "formula":
                if item.get("formula") is None:
                    self.add(_join(entry_path, "formula"), "required when mode is formula")
                elif formula is not None and not formula.strip():
                    self.add(_join(entry_path, "formula"), "must not be empty")
                elif formula is not None and self.check_formula is not None:
                    message = self.check_formula(formula)
                    if message:
                        self.add(_join(entry_path, "formula"), message)
                if item.get("per_unit") is not None and per_unit is not None:
                    self.add(_join(entry_path, "per_unit"), "only for mode per_unit")
            currency_id = self.string(entry_path, item, "currency")
            currency_path = _join(entry_path, "currency")
            if currency_id is not None and currency_id not in self.currencies:
                self.add(currency_path, f"unknown currency {currency_id!r}")
            elif item.get("currency") is None and len(self.currencies) > 1:
                self.add(currency_path, "required when the catalog has more than one currency")
            elif item.get("currency") is None and not self.currencies:
                self.add(entry_path, "the catalog has no credit currency for this rate to burn")
            feature_id = self.string(entry_path, item, "feature")
            if feature_id is None:
                continue
            feature_path = _join(entry_path, "feature")
            info = self.features.get(feature_id)
            if info is None:
                self.add(feature_path, f"unknown feature {feature_id!r}")
                continue
            if info.type is not None and info.type != "metered":
                self.add(
                    feature_path,
                    f"feature {feature_id!r} is {info.type}; "
                    "credit rates apply to metered features",
                )
            key = (feature_id, currency_id)
            if key in seen:
                self.add(
                    feature_path, f"feature {feature_id!r} already has a credit rate in {seen[key]}"
                )
            else:
                seen[key] = f"{path.rsplit('.', 1)[-1]}[{index}]"

    def check_stored_offers(self) -> None:
        """Changes to features and groups must keep the active stored plans and add-ons valid.

        A stored plan or add-on the document does not redefine stays as it is, so the document
        cannot archive a feature or group it grants, nor add to a group it grants a configuration
        feature it gives no value for.
        """
        if self.existing is None:
            return
        offers = [("plan", "plans", p) for p in self.existing.plans] + [
            ("add-on", "addons", a) for a in self.existing.addons
        ]
        for noun, kind, offer in offers:
            if offer.status != "active" or offer.id in self.file_offer_ids.get(kind, set()):
                continue
            label = f"the stored active {noun} {offer.id!r} grants it"
            used: set[str] = set()
            configured: set[str] = set()
            for entitlement in offer.entitlements:
                if isinstance(entitlement, ConfigurationEntitlement):
                    configured.add(entitlement.feature)
                if isinstance(entitlement, GroupEntitlement):
                    group = self.groups.get(entitlement.group)
                    if group is None:
                        continue
                    used.update(group.features)
                    if not group.path.startswith("stored"):
                        if group.status == "archived":
                            self.add(
                                _join(group.path, "status"),
                                f"cannot archive feature group {entitlement.group!r}: {label}",
                            )
                        for member in group.features:
                            info = self.features.get(member)
                            if info and info.type == "configuration" and member not in configured:
                                self.add(
                                    _join(group.path, "features"),
                                    f"configuration feature {member!r} has no value in the "
                                    f"stored {noun} {offer.id!r} that grants this group",
                                )
                elif not isinstance(entitlement, CreditEntitlement):
                    used.add(entitlement.feature)
            for feature_id in sorted(used):
                info = self.features.get(feature_id)
                if (
                    info is not None
                    and info.status == "archived"
                    and feature_id in self.file_feature_ids
                ):
                    self.add(
                        _join(info.path, "status"),
                        f"cannot archive feature {feature_id!r}: {label}",
                    )


def _formula_dimensions(text: str) -> tuple[str, ...]:
    """The dimensions formula text reads (text `check_formula` accepted)."""
    from pricing_lab.formula import Formula

    return Formula.parse(text).dimensions


def _hint(value: object) -> str:
    """YAML reads yes/no/on/off/true/false as booleans and 123 as a number: suggest quoting."""
    return " (quote it to make it a string)" if isinstance(value, bool | int | Decimal) else ""


def _is_precision(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        return False
    number = Decimal(value)
    return (
        number.is_finite()
        and number == number.to_integral_value()
        and (0 <= number <= MAX_PRECISION)
    )


def _unknown_key_message(key: object, allowed: tuple[str, ...], what: str) -> str:
    where = f" for {what}" if what else ""
    message = f"unknown key{where}"
    if isinstance(key, str):
        close = difflib.get_close_matches(key, allowed, n=1)
        if close:
            message += f" (did you mean {close[0]!r}?)"
    return message
