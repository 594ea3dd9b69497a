"""HTML tables for catalog objects in Jupyter (`_repr_html_`): catalogs, features, plans, diffs.

Plain HTML with escaped text and no scripts, so it renders the same in JupyterLab and in a report.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from html import escape
from typing import TYPE_CHECKING

from pricing_lab.catalog.model import (
    AddOn,
    BooleanEntitlement,
    Catalog,
    ConfigurationEntitlement,
    CreditCurrency,
    CreditEntitlement,
    CreditRate,
    Entitlement,
    Feature,
    FeatureGroup,
    GroupEntitlement,
    MeteredEntitlement,
    Plan,
)

if TYPE_CHECKING:
    from pricing_lab.catalog.store import CatalogDiff

_PERIOD = {"monthly": "month", "yearly": "year"}
_STYLE = "border-collapse:collapse;margin:4px 0"
_CELL = "border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top"


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        from pricing_lab.catalog.yaml_format import plain_decimal

        return plain_decimal(value)
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, caption: str = "") -> str:
    """An HTML table; every cell is escaped."""
    head = "".join(f'<th style="{_CELL}">{escape(h)}</th>' for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td style="{_CELL}">{escape(_text(c))}</td>' for c in row) + "</tr>"
        for row in rows
    )
    cap = f"<caption style='text-align:left;font-weight:bold'>{escape(caption)}</caption>"
    return f'<table style="{_STYLE}">{cap if caption else ""}<tr>{head}</tr>{body}</table>'


def _meter_text(feature: Feature) -> str:
    meter = feature.meter
    if meter is None:
        return ""
    if meter.source == "reported":
        return f"reported, {meter.aggregation}"
    what = meter.aggregation + (f"({meter.dimension})" if meter.dimension else "")
    filters = " and ".join(
        f"{f.dimension} {f.operator}"
        + ("" if f.value is None else f" {filter_value_text(f.value)}")
        for f in meter.filters
    )
    return f"{what} of {meter.event_name}" + (f" where {filters}" if filters else "")


def filter_value_text(value: object) -> str:
    """A meter filter's value for display: strings quoted, numbers plain, lists in brackets."""
    if isinstance(value, tuple):
        return "[" + ", ".join(filter_value_text(v) for v in value) + "]"
    return repr(value) if isinstance(value, str) else _text(value)


def _feature_row(feature: Feature) -> list[object]:
    units = feature.units.plural if feature.units else ""
    if feature.display_unit:
        units += f" (shown in {feature.display_unit.plural}, ×{_text(feature.display_unit.factor)})"
    return [
        feature.id,
        feature.name,
        feature.type,
        feature.status,
        units,
        _meter_text(feature),
        "; ".join(
            ("" if c.valid_from is None else f"from {c.valid_from.isoformat()}: ") + c.formula
            for c in feature.cost
        ),
    ]


_FEATURE_HEADERS = ("id", "name", "type", "status", "units", "meter", "cost to serve per event")


def feature_html(feature: Feature) -> str:
    """One feature as a table row (with its description)."""
    html = table(_FEATURE_HEADERS, [_feature_row(feature)], caption=f"Feature {feature.name}")
    if feature.description:
        html += f"<p>{escape(feature.description)}</p>"
    return html


_GROUP_HEADERS = ("id", "name", "status", "features")


def _group_row(group: FeatureGroup) -> list[object]:
    return [group.id, group.name, group.status, ", ".join(group.features)]


def group_html(group: FeatureGroup) -> str:
    """A feature group and its features."""
    return table(_GROUP_HEADERS, [_group_row(group)], caption=f"Feature group {group.name}")


def entitlement_text(entitlement: Entitlement) -> tuple[str, str, str]:
    """(kind, what, detail) of one entitlement, for display."""
    if isinstance(entitlement, BooleanEntitlement):
        return ("boolean", entitlement.feature, "")
    if isinstance(entitlement, ConfigurationEntitlement):
        return ("configuration", entitlement.feature, f"value {_text(entitlement.value)}")
    if isinstance(entitlement, MeteredEntitlement):
        limit = (
            "unlimited"
            if entitlement.usage_limit is None
            else f"limit {_text(entitlement.usage_limit)} per {_PERIOD[entitlement.period]}"
        )
        return ("metered", entitlement.feature, limit)
    if isinstance(entitlement, GroupEntitlement):
        return ("group", entitlement.group, "")
    assert isinstance(entitlement, CreditEntitlement)
    return (
        "credit",
        entitlement.currency,
        f"{_text(entitlement.amount)} {entitlement.cadence}, {_rollover_text(entitlement)}",
    )


def _rollover_text(entitlement: CreditEntitlement) -> str:
    """'no rollover', or the caps: 'rollover up to 500 and 50%'."""
    rollover = entitlement.rollover
    if rollover is None:
        return "no rollover"
    caps = []
    if rollover.max_amount is not None:
        caps.append(_text(rollover.max_amount))
    if rollover.max_percent is not None:
        caps.append(f"{_text(rollover.max_percent)}%")
    return "rollover up to " + " and ".join(caps)


def _rate_row(rate: CreditRate) -> list[object]:
    how = _text(rate.per_unit) + " per unit" if rate.mode == "per_unit" else rate.formula
    return [rate.feature, rate.mode, how, rate.currency or ""]


def offer_html(offer: Plan | AddOn) -> str:
    """A plan or add-on: price, entitlements and credit rates."""
    noun = "Plan" if isinstance(offer, Plan) else "Add-on"
    price = (
        f"{_text(offer.price.amount)} {offer.price.currency} {offer.price.cadence}"
        if offer.price
        else "no price"
    )
    html = table(
        ("id", "name", "status", "price"),
        [[offer.id, offer.name, offer.status, price]],
        caption=f"{noun} {offer.name}",
    )
    if offer.description:
        html += f"<p>{escape(offer.description)}</p>"
    if offer.entitlements:
        html += table(
            ("kind", "feature / group / currency", "detail"),
            [entitlement_text(e) for e in offer.entitlements],
            caption="Entitlements",
        )
    if offer.credit_rates:
        html += table(
            ("feature", "mode", "rate", "currency"),
            [_rate_row(r) for r in offer.credit_rates],
            caption="Credit rates",
        )
    return html


_CURRENCY_HEADERS = ("id", "name", "unit price", "precision", "rounding")


def _currency_row(currency: CreditCurrency) -> list[object]:
    return [
        currency.id,
        currency.name,
        f"{_text(currency.unit_price)} {currency.price_currency}",
        currency.precision,
        currency.rounding,
    ]


def currency_html(currency: CreditCurrency) -> str:
    """A credit currency."""
    return table(
        _CURRENCY_HEADERS, [_currency_row(currency)], caption=f"Credit currency {currency.name}"
    )


def catalog_html(catalog: Catalog) -> str:
    """A whole catalog: currencies, features, groups, plans, add-ons, default rates."""
    parts = ["<div>"]
    if catalog.currencies:
        parts.append(
            table(
                _CURRENCY_HEADERS,
                [_currency_row(c) for c in catalog.currencies],
                caption="Credit currencies",
            )
        )
    if catalog.features:
        parts.append(
            table(_FEATURE_HEADERS, [_feature_row(f) for f in catalog.features], caption="Features")
        )
    if catalog.feature_groups:
        parts.append(
            table(
                _GROUP_HEADERS,
                [_group_row(g) for g in catalog.feature_groups],
                caption="Feature groups",
            )
        )
    offers: list[Plan | AddOn] = [*catalog.plans, *catalog.addons]
    if offers:
        parts.append(
            table(
                ("kind", "id", "name", "status", "price", "entitlements", "credit rates"),
                [
                    [
                        "plan" if isinstance(o, Plan) else "add-on",
                        o.id,
                        o.name,
                        o.status,
                        f"{_text(o.price.amount)} {o.price.currency} {o.price.cadence}"
                        if o.price
                        else "",
                        "; ".join(
                            " ".join(filter(None, entitlement_text(e))) for e in o.entitlements
                        ),
                        "; ".join(f"{r.feature}: {_rate_row(r)[2]}" for r in o.credit_rates),
                    ]
                    for o in offers
                ],
                caption="Plans and add-ons",
            )
        )
    if catalog.default_credit_rates:
        parts.append(
            table(
                ("feature", "mode", "rate", "currency"),
                [_rate_row(r) for r in catalog.default_credit_rates],
                caption="Default credit rates",
            )
        )
    parts.append("</div>")
    return "".join(parts)


def diff_html(diff: CatalogDiff) -> str:
    """A catalog diff: one row per entity."""
    rows = [
        [
            c.kind,
            c.id,
            c.change + (f" + {c.status_change}" if c.status_change else ""),
            c.version_before,
            c.version_after,
            ", ".join(c.fields),
        ]
        for c in diff.changes
    ]
    caption = "Catalog diff (applied)" if diff.applied else "Catalog diff (not applied)"
    return table(("kind", "id", "change", "from", "to", "fields"), rows, caption=caption)
