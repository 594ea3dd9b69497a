"""`pricing-lab catalog apply|show|diff`: a YAML catalog file against a DuckDB catalog store."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pricing_lab.catalog.html import entitlement_text, filter_value_text
from pricing_lab.catalog.model import AddOn, CreditRate, Plan
from pricing_lab.catalog.store import CatalogStore, EntityKind, open_store
from pricing_lab.catalog.yaml_format import catalog_to_document, load_catalog_file, plain_decimal
from pricing_lab.cli.output import json_text

DEFAULT_DB = "pricing_lab.duckdb"


def register(subparsers: Any) -> None:
    """Add the `catalog` command and its actions."""
    parser = subparsers.add_parser(
        "catalog",
        help="apply, show or diff the product catalog",
        description="The product catalog (features, feature groups, plans, add-ons, credit "
        "currencies; format: docs/catalog.md) in a versioned DuckDB store.",
    )
    actions = parser.add_subparsers(dest="catalog_action", metavar="ACTION")
    actions.required = True

    apply = actions.add_parser(
        "apply",
        help="apply a YAML catalog file: new versions where something changed",
        description="Validate FILE (every problem listed, exit 2) and apply it to the store; "
        "prints what was created, changed or left unchanged, with versions.",
    )
    apply.add_argument("file", metavar="FILE", help="YAML catalog file (docs/catalog.md)")
    _db_option(apply)
    apply.add_argument("--json", action="store_true", help="print the diff as JSON")
    apply.set_defaults(handler=run_apply)

    diff = actions.add_parser(
        "diff",
        help="show what applying a YAML catalog file would change, without changing anything",
    )
    diff.add_argument("file", metavar="FILE", help="YAML catalog file (docs/catalog.md)")
    _db_option(diff)
    diff.add_argument("--json", action="store_true", help="print the diff as JSON")
    diff.set_defaults(handler=run_diff)

    show = actions.add_parser("show", help="show the catalog in force in the store")
    _db_option(show)
    show.add_argument(
        "--json", action="store_true", help="print the catalog (and versions) as JSON"
    )
    show.set_defaults(handler=run_show)


def _db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        default=DEFAULT_DB,
        metavar="PATH",
        help=f"DuckDB file of the catalog store (default: {DEFAULT_DB})",
    )


def run_apply(args: argparse.Namespace) -> int:
    catalog = load_catalog_file(args.file)
    with open_store(Path(args.db)) as store:
        diff = store.apply(catalog, at=datetime.now(UTC))
    _print_diff(diff.to_json() if args.json else None, str(diff))
    return 0


def run_diff(args: argparse.Namespace) -> int:
    catalog = load_catalog_file(args.file)
    db = Path(args.db)
    # A store that does not exist yet is empty: diff against memory rather than create the file.
    with open_store(db if db.exists() else None, read_only=db.exists()) as store:
        diff = store.diff(catalog)
    _print_diff(diff.to_json() if args.json else None, str(diff))
    return 0


def _print_diff(as_json: dict[str, Any] | None, text: str) -> None:
    if as_json is not None:
        print(json.dumps(as_json, indent=2))
    else:
        print(text)


def run_show(args: argparse.Namespace) -> int:
    db = Path(args.db)
    with open_store(db, read_only=True) as store:
        if args.json:
            print(json_text(show_json(store)))  # decimals as exact JSON numbers
        else:
            print("\n".join(show_lines(store)))
    return 0


def show_json(store: CatalogStore) -> dict[str, Any]:
    """The catalog in force as its document form plus entity versions."""
    entities = store.tables()["entities"]
    return {
        "catalog": catalog_to_document(store.current()),
        "entities": [
            {
                "kind": row["kind"],
                "id": row["entity_id"],
                "status": row["status"],
                "version": row["latest_version"],
            }
            for row in entities.iter_rows(named=True)
        ],
    }


def show_lines(store: CatalogStore) -> list[str]:
    """The catalog in force as readable text: one section per kind of entity."""
    catalog = store.current()
    if store.is_empty():
        return ["the catalog store is empty (run `pricing-lab catalog apply FILE`)"]
    version = store.version_count
    lines: list[str] = []
    lines.append("Credit currencies")
    for c in catalog.currencies:
        lines.append(
            f"  {c.id} v{version('currency', c.id)}: {c.name}, "
            f"{plain_decimal(c.unit_price)} {c.price_currency} per credit, "
            f"precision {c.precision}, rounding {c.rounding}"
        )
    lines.append("Features")
    for f in catalog.features:
        meter = ""
        if f.meter is not None:
            target = f"({f.meter.dimension})" if f.meter.dimension else ""
            source = f.meter.event_name if f.meter.source == "events" else "reported usage"
            meter = f", {f.meter.aggregation}{target} of {source}"
            if f.meter.filters:
                meter += " where " + " and ".join(
                    f"{flt.dimension} {flt.operator}"
                    + ("" if flt.value is None else f" {filter_value_text(flt.value)}")
                    for flt in f.meter.filters
                )
        status = " [archived]" if f.status == "archived" else ""
        lines.append(f"  {f.id} v{version('feature', f.id)}: {f.name} ({f.type}{meter}){status}")
        for cost in f.cost:
            since = "always" if cost.valid_from is None else cost.valid_from.isoformat()
            lines.append(f"    cost to serve from {since}: {cost.formula} per event")
    lines.append("Feature groups")
    for g in catalog.feature_groups:
        status = " [archived]" if g.status == "archived" else ""
        lines.append(
            f"  {g.id} v{version('feature_group', g.id)}: {g.name}: {', '.join(g.features)}{status}"
        )
    sections: tuple[tuple[str, EntityKind, tuple[Plan | AddOn, ...]], ...] = (
        ("Plans", "plan", catalog.plans),
        ("Add-ons", "addon", catalog.addons),
    )
    for title, kind, offers in sections:
        lines.append(title)
        for o in offers:
            price = (
                f"{plain_decimal(o.price.amount)} {o.price.currency} {o.price.cadence}"
                if o.price
                else "no price"
            )
            status = " [archived]" if o.status == "archived" else ""
            lines.append(f"  {o.id} v{version(kind, o.id)}: {o.name}, {price}{status}")
            for e in o.entitlements:
                kind_text, what, detail = entitlement_text(e)
                lines.append(f"    {kind_text} {what}" + (f": {detail}" if detail else ""))
            for r in o.credit_rates:
                lines.append(f"    rate {r.feature}: {_rate_text(r)}")
    if catalog.default_credit_rates:
        lines.append("Default credit rates")
        for r in catalog.default_credit_rates:
            lines.append(f"  {r.feature}: {_rate_text(r)}")
    return lines


def _rate_text(rate: CreditRate) -> str:
    currency = f" ({rate.currency})" if rate.currency else ""
    if rate.mode == "per_unit":
        per_unit = plain_decimal(rate.per_unit) if rate.per_unit is not None else "?"
        return f"{per_unit} credits per unit{currency}"
    return f"formula {rate.formula}{currency}"
