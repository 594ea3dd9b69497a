"""The YAML catalog format (docs/catalog.md): file text ⇄ document form ⇄ `Catalog`, exactly.

Numbers are read from their text as `Decimal` (never through float), mapping keys must be unique,
and a syntax error names its line and column. A document is validated (every problem at once)
before it becomes a `Catalog`; dumping a `Catalog` writes the same format back, so
YAML → `Catalog` → YAML keeps every value.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, cast

import yaml

from pricing_lab.catalog.model import (
    AddOn,
    BooleanEntitlement,
    Catalog,
    ConfigurationEntitlement,
    CreditCurrency,
    CreditEntitlement,
    CreditRate,
    DisplayUnit,
    Entitlement,
    Feature,
    FeatureGroup,
    GroupEntitlement,
    Meter,
    MeteredEntitlement,
    MeterFilter,
    Plan,
    Price,
    Rollover,
    UnitCost,
    UnitNames,
)
from pricing_lab.catalog.validate import FormulaCheck, validate_catalog
from pricing_lab.errors import InputError, ValidationError
from pricing_lab.money import normalized
from pricing_lab.timeutil import as_utc, timestamp_value

Document = dict[str, Any]


# -- reading -------------------------------------------------------------------------------------


class _CatalogLoader(yaml.SafeLoader):
    """Safe YAML loader: floats become Decimal from their text; duplicate keys are an error."""


def _construct_decimal(loader: yaml.SafeLoader, node: yaml.Node) -> Decimal | str:
    text = str(loader.construct_scalar(cast(yaml.ScalarNode, node))).replace("_", "")
    special = {".inf": "Infinity", "+.inf": "Infinity", "-.inf": "-Infinity", ".nan": "NaN"}
    text = special.get(text.lower(), text)
    try:
        return Decimal(text)
    except InvalidOperation:
        return text  # e.g. a sexagesimal float: validation reports "expected a number"


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.Node) -> dict[Any, Any]:
    assert isinstance(node, yaml.MappingNode)
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", mark)
        result[key] = loader.construct_object(value_node, deep=True)
    return result


def _construct_timestamp(loader: yaml.SafeLoader, node: yaml.Node) -> object:
    try:
        return loader.construct_yaml_timestamp(cast(yaml.ScalarNode, node))
    except (ValueError, OverflowError):  # e.g. 2024-13-01: validation says where and why
        return str(loader.construct_scalar(cast(yaml.ScalarNode, node)))


_CatalogLoader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)
_CatalogLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)
_CatalogLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_yaml(text: str, *, source: str = "<catalog>") -> object:
    """The document form of YAML text; a syntax error is an `InputError` with line and column."""
    try:
        return yaml.load(text, Loader=_CatalogLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = exc.problem or exc.context or "invalid YAML"
        snippet = ""
        if mark is not None:
            lines = text.splitlines()
            if 0 <= mark.line < len(lines):
                snippet = f"\n  {lines[mark.line]}\n  {' ' * mark.column}^"
        raise InputError(f"{where}: YAML syntax error: {problem}{snippet}") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{source}: YAML error: {exc}") from None
    except RecursionError:
        raise InputError(f"{source}: YAML nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as exc:  # a value YAML itself cannot build
        raise InputError(f"{source}: YAML error: {exc}") from None


def read_text_file(path: str | Path, *, what: str) -> str:
    """The UTF-8 text of the `what` file at `path` (e.g. "catalog"); every way it cannot be read
    (missing, a folder, not UTF-8, no permission) is an `InputError` naming the file."""
    file = Path(path)
    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{file}: no such {what} file") from None
    except IsADirectoryError:
        raise InputError(f"{file}: is a directory, not a {what} file") from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise InputError(f"{file}: not UTF-8 text (line {line}: {exc.reason})") from None
    except OSError as exc:
        raise InputError(f"{file}: cannot read the {what} file: {exc.strerror or exc}") from None


def load_catalog(
    text: str, *, source: str = "<catalog>", check_formula: FormulaCheck | None = None
) -> Catalog:
    """Parse and validate YAML catalog text into a `Catalog`.

    Raises `InputError` for a YAML syntax error and `ValidationError` listing every problem.
    """
    document = parse_yaml(text, source=source)
    if document is None:
        document = {}
    problems = validate_catalog(document, check_formula=check_formula)
    if problems or not isinstance(document, Mapping):
        raise ValidationError(problems, source=source)
    return document_to_catalog(document)


def load_catalog_file(path: str | Path, *, check_formula: FormulaCheck | None = None) -> Catalog:
    """Read a YAML catalog file (see `load_catalog`); a missing file is an `InputError`."""
    text = read_text_file(path, what="catalog")
    return load_catalog(text, source=str(path), check_formula=check_formula)


def document_to_catalog(document: Mapping[str, Any]) -> Catalog:
    """A `Catalog` from a document that `validate_catalog` accepted."""
    return Catalog(
        currencies=tuple(_currency(c) for c in document.get("currencies") or ()),
        features=tuple(_feature(f) for f in document.get("features") or ()),
        feature_groups=tuple(_group(g) for g in document.get("feature_groups") or ()),
        plans=tuple(Plan(**_offer(p)) for p in document.get("plans") or ()),
        addons=tuple(AddOn(**_offer(a)) for a in document.get("addons") or ()),
        default_credit_rates=tuple(_rate(r) for r in document.get("default_credit_rates") or ()),
    )


def _decimal(value: Any) -> Decimal:
    return Decimal(value)


def _optional_decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)


def _currency(item: Mapping[str, Any]) -> CreditCurrency:
    return CreditCurrency(
        id=item["id"],
        name=item["name"],
        unit_price=_decimal(item["unit_price"]),
        price_currency=item.get("price_currency") or "USD",
        precision=2 if item.get("precision") is None else int(item["precision"]),
        rounding=item.get("rounding") or "half_up",
    )


def _feature(item: Mapping[str, Any]) -> Feature:
    units = item.get("units")
    display = item.get("display_unit")
    meter = item.get("meter")
    return Feature(
        id=item["id"],
        name=item["name"],
        type=item["type"],
        description=item.get("description") or "",
        metadata=dict(item.get("metadata") or {}),
        status=item.get("status") or "active",
        units=UnitNames(singular=units["singular"], plural=units["plural"]) if units else None,
        display_unit=DisplayUnit(
            singular=display["singular"],
            plural=display["plural"],
            factor=_decimal(display["factor"]),
        )
        if display
        else None,
        meter=_meter(meter) if meter else None,
        cost=tuple(_unit_cost(entry) for entry in item.get("cost") or ()),
    )


def _unit_cost(item: Mapping[str, Any]) -> UnitCost:
    start = item.get("from")
    return UnitCost(
        formula=item["formula"], valid_from=None if start is None else timestamp_value(start)
    )


def _filter_value(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_filter_value(v) for v in value)
    if isinstance(value, int):
        return Decimal(value)
    return value


def _meter(item: Mapping[str, Any]) -> Meter:
    return Meter(
        source=item["source"],
        event_name=item.get("event_name"),
        filters=tuple(
            MeterFilter(
                dimension=f["dimension"],
                operator=f["operator"],
                value=_filter_value(f.get("value")),
            )
            for f in item.get("filters") or ()
        ),
        aggregation=item.get("aggregation") or "count",
        dimension=item.get("dimension"),
    )


def _group(item: Mapping[str, Any]) -> FeatureGroup:
    return FeatureGroup(
        id=item["id"],
        name=item["name"],
        features=tuple(item.get("features") or ()),
        description=item.get("description") or "",
        status=item.get("status") or "active",
    )


def _offer(item: Mapping[str, Any]) -> dict[str, Any]:
    price = item.get("price")
    return {
        "id": item["id"],
        "name": item["name"],
        "description": item.get("description") or "",
        "price": Price(
            amount=_decimal(price["amount"]),
            cadence=price.get("cadence") or "monthly",
            currency=price.get("currency") or "USD",
        )
        if price
        else None,
        "entitlements": tuple(_entitlement(e) for e in item.get("entitlements") or ()),
        "credit_rates": tuple(_rate(r) for r in item.get("credit_rates") or ()),
        "status": item.get("status") or "active",
    }


def _entitlement(item: Mapping[str, Any]) -> Entitlement:
    kind = item["kind"]
    if kind == "boolean":
        return BooleanEntitlement(feature=item["feature"])
    if kind == "configuration":
        return ConfigurationEntitlement(feature=item["feature"], value=_decimal(item["value"]))
    if kind == "metered":
        return MeteredEntitlement(
            feature=item["feature"],
            usage_limit=_optional_decimal(item.get("usage_limit")),
            period=item.get("period") or "monthly",
        )
    if kind == "group":
        return GroupEntitlement(group=item["group"])
    rollover = item.get("rollover")
    return CreditEntitlement(
        currency=item["currency"],
        amount=_decimal(item["amount"]),
        cadence=item.get("cadence") or "monthly",
        rollover=Rollover(
            max_amount=_optional_decimal(rollover.get("max_amount")),
            max_percent=_optional_decimal(rollover.get("max_percent")),
        )
        if rollover
        else None,
    )


def _rate(item: Mapping[str, Any]) -> CreditRate:
    return CreditRate(
        feature=item["feature"],
        mode=item["mode"],
        per_unit=_optional_decimal(item.get("per_unit")),
        formula=item.get("formula"),
        currency=item.get("currency"),
    )


# -- writing -------------------------------------------------------------------------------------


def plain_decimal(value: Decimal) -> str:
    """A Decimal's plain text, no exponent or trailing zeros: 0.001000 → '0.001', 1E+3 → '1000'."""
    return format(normalized(value), "f")


def catalog_to_document(catalog: Catalog) -> Document:
    """The document form of a `Catalog` (what its YAML file holds); default values are left out."""
    document: Document = {}
    if catalog.currencies:
        document["currencies"] = [_currency_doc(c) for c in catalog.currencies]
    if catalog.features:
        document["features"] = [_feature_doc(f) for f in catalog.features]
    if catalog.feature_groups:
        document["feature_groups"] = [_group_doc(g) for g in catalog.feature_groups]
    if catalog.plans:
        document["plans"] = [_offer_doc(p) for p in catalog.plans]
    if catalog.addons:
        document["addons"] = [_offer_doc(a) for a in catalog.addons]
    if catalog.default_credit_rates:
        document["default_credit_rates"] = [_rate_doc(r) for r in catalog.default_credit_rates]
    return document


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _currency_doc(currency: CreditCurrency) -> dict[str, Any]:
    return {
        "id": currency.id,
        "name": currency.name,
        "unit_price": currency.unit_price,
        "price_currency": currency.price_currency,
        "precision": currency.precision,
        "rounding": currency.rounding,
    }


def _feature_doc(feature: Feature) -> dict[str, Any]:
    meter = feature.meter
    return _drop_none(
        {
            "id": feature.id,
            "name": feature.name,
            "type": feature.type,
            "description": feature.description or None,
            "status": None if feature.status == "active" else feature.status,
            "metadata": dict(feature.metadata) if feature.metadata else None,
            "units": {"singular": feature.units.singular, "plural": feature.units.plural}
            if feature.units
            else None,
            "display_unit": {
                "singular": feature.display_unit.singular,
                "plural": feature.display_unit.plural,
                "factor": feature.display_unit.factor,
            }
            if feature.display_unit
            else None,
            "meter": _drop_none(
                {
                    "source": meter.source,
                    "event_name": meter.event_name,
                    "filters": [
                        _drop_none(
                            {
                                "dimension": f.dimension,
                                "operator": f.operator,
                                "value": list(f.value) if isinstance(f.value, tuple) else f.value,
                            }
                        )
                        for f in meter.filters
                    ]
                    or None,
                    "aggregation": meter.aggregation,
                    "dimension": meter.dimension,
                }
            )
            if meter
            else None,
            "cost": [_unit_cost_doc(c) for c in feature.cost] or None,
        }
    )


def _unit_cost_doc(cost: UnitCost) -> dict[str, Any]:
    # ISO text in UTC with a Z, whatever zone the instant was written in.
    start = cost.valid_from
    return _drop_none(
        {
            "from": None if start is None else as_utc(start).isoformat().replace("+00:00", "Z"),
            "formula": cost.formula,
        }
    )


def _group_doc(group: FeatureGroup) -> dict[str, Any]:
    return _drop_none(
        {
            "id": group.id,
            "name": group.name,
            "description": group.description or None,
            "status": None if group.status == "active" else group.status,
            "features": list(group.features),
        }
    )


def _offer_doc(offer: Plan | AddOn) -> dict[str, Any]:
    return _drop_none(
        {
            "id": offer.id,
            "name": offer.name,
            "description": offer.description or None,
            "status": None if offer.status == "active" else offer.status,
            "price": {
                "amount": offer.price.amount,
                "cadence": offer.price.cadence,
                "currency": offer.price.currency,
            }
            if offer.price
            else None,
            "entitlements": [_entitlement_doc(e) for e in offer.entitlements] or None,
            "credit_rates": [_rate_doc(r) for r in offer.credit_rates] or None,
        }
    )


def _entitlement_doc(entitlement: Entitlement) -> dict[str, Any]:
    if isinstance(entitlement, BooleanEntitlement):
        return {"kind": "boolean", "feature": entitlement.feature}
    if isinstance(entitlement, ConfigurationEntitlement):
        return {"kind": "configuration", "feature": entitlement.feature, "value": entitlement.value}
    if isinstance(entitlement, MeteredEntitlement):
        return _drop_none(
            {
                "kind": "metered",
                "feature": entitlement.feature,
                "usage_limit": entitlement.usage_limit,
                "period": entitlement.period,
            }
        )
    if isinstance(entitlement, GroupEntitlement):
        return {"kind": "group", "group": entitlement.group}
    rollover = entitlement.rollover
    return _drop_none(
        {
            "kind": "credit",
            "currency": entitlement.currency,
            "amount": entitlement.amount,
            "cadence": entitlement.cadence,
            "rollover": _drop_none(
                {"max_amount": rollover.max_amount, "max_percent": rollover.max_percent}
            )
            if rollover is not None
            else None,
        }
    )


def _rate_doc(rate: CreditRate) -> dict[str, Any]:
    return _drop_none(
        {
            "feature": rate.feature,
            "mode": rate.mode,
            "per_unit": rate.per_unit,
            "formula": rate.formula,
            "currency": rate.currency,
        }
    )


class _CatalogDumper(yaml.SafeDumper):
    """Safe YAML dumper: Decimal as plain numbers, no aliases, block style."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_decimal(dumper: yaml.SafeDumper, value: Decimal) -> yaml.ScalarNode:
    text = plain_decimal(value)
    tag = "tag:yaml.org,2002:float" if "." in text else "tag:yaml.org,2002:int"
    return dumper.represent_scalar(tag, text)


_CatalogDumper.add_representer(Decimal, _represent_decimal)


def dump_document(document: Mapping[str, Any]) -> str:
    """YAML text of a document, keys in the order given."""
    return yaml.dump(
        dict(document),
        Dumper=_CatalogDumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )


def dump_catalog(catalog: Catalog) -> str:
    """YAML text of a `Catalog` in the format `load_catalog` reads."""
    return dump_document(catalog_to_document(catalog))
