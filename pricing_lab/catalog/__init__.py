"""The product catalog (SPEC §2): records, validation, YAML format, the versioned DuckDB store.

The names below are loaded lazily, so importing `pricing_lab.catalog.model` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pricing_lab.catalog.model import Catalog
    from pricing_lab.catalog.store import CatalogDiff, CatalogStore, open_store
    from pricing_lab.catalog.validate import validate_catalog
    from pricing_lab.catalog.yaml_format import dump_catalog, load_catalog, load_catalog_file

_EXPORTS = {
    "Catalog": "pricing_lab.catalog.model",
    "CatalogDiff": "pricing_lab.catalog.store",
    "CatalogStore": "pricing_lab.catalog.store",
    "open_store": "pricing_lab.catalog.store",
    "validate_catalog": "pricing_lab.catalog.validate",
    "dump_catalog": "pricing_lab.catalog.yaml_format",
    "load_catalog": "pricing_lab.catalog.yaml_format",
    "load_catalog_file": "pricing_lab.catalog.yaml_format",
}
__all__ = [
    "Catalog",
    "CatalogDiff",
    "CatalogStore",
    "dump_catalog",
    "load_catalog",
    "load_catalog_file",
    "open_store",
    "validate_catalog",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pricing_lab.catalog' has no attribute {name!r}")
