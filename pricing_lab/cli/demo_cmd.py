"""`pricing-lab demo` (interim): apply the sample AI catalog to a local store and show it.

A later issue replaces this with the full main job (usage replay, scenarios, HTML report).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

from pricing_lab.catalog.store import open_store
from pricing_lab.catalog.yaml_format import load_catalog
from pricing_lab.cli.catalog_cmd import formula_checker, show_lines

DEFAULT_DEMO_DB = "demo_out/pricing_lab.duckdb"
SAMPLE_CATALOG = "ai_product.yaml"


def sample_catalog_text() -> str:
    """The sample catalog shipped in the package (a copy of examples/ai_product.yaml)."""
    return files("pricing_lab.data").joinpath(SAMPLE_CATALOG).read_text(encoding="utf-8")


def register(subparsers: Any) -> None:
    """Add the `demo` command."""
    parser = subparsers.add_parser(
        "demo",
        help="apply the sample AI product catalog to a local store and show it",
        description="Apply the sample catalog (examples/ai_product.yaml) to a local DuckDB "
        "store and print the diff and the catalog in force.",
    )
    parser.add_argument(
        "--db",
        default=DEFAULT_DEMO_DB,
        metavar="PATH",
        help=f"DuckDB file for the demo store (default: {DEFAULT_DEMO_DB})",
    )
    parser.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    catalog = load_catalog(
        sample_catalog_text(), source=SAMPLE_CATALOG, check_formula=formula_checker()
    )
    db = Path(args.db)
    db.parent.mkdir(parents=True, exist_ok=True)
    with open_store(db) as store:
        diff = store.apply(catalog, at=datetime.now(UTC))
        print(f"Sample catalog applied to {db}:")
        print(diff)
        print()
        print("\n".join(show_lines(store)))
    return 0
