"""Small builders for simulation tests: a hand-sized catalog, events loaded into DuckDB."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import duckdb
import polars as pl

from pricing_lab.catalog.model import Catalog
from pricing_lab.catalog.yaml_format import load_catalog
from pricing_lab.events.ingest import IngestReport, ingest_events
from pricing_lab.formula import check_formula

# Credits CR (precision 2, 0.01 USD each). `chat` sums tokens, `chat_requests` counts the same
# events (so a chat event matches two features), `img` counts images events.
CATALOG_YAML = """
currencies:
  - {id: CR, name: Credits, unit_price: 0.01, precision: 2, rounding: half_up}
features:
  - id: chat
    name: Chat
    type: metered
    meter: {source: events, event_name: chat, aggregation: sum, dimension: tokens}
  - id: chat_requests
    name: Chat requests
    type: metered
    meter: {source: events, event_name: chat, aggregation: count}
  - id: img
    name: Images
    type: metered
    meter: {source: events, event_name: img, aggregation: count}
default_credit_rates:
  - {feature: chat, mode: per_unit, per_unit: 0.5}
  - {feature: chat_requests, mode: per_unit, per_unit: 1}
plans:
  - id: basic
    name: Basic
    entitlements:
      - {kind: credit, currency: CR, amount: 100, cadence: monthly}
    credit_rates:
      - {feature: chat, mode: formula, formula: "tokens * 0.1"}
  - id: pro
    name: Pro
    entitlements:
      - {kind: credit, currency: CR, amount: 1000, cadence: monthly}
    credit_rates:
      - {feature: chat, mode: formula, formula: "tokens * 0.05"}
      - {feature: chat_requests, mode: per_unit, per_unit: 0.25}
addons:
  - id: imgpack
    name: Image pack
    entitlements:
      - {kind: credit, currency: CR, amount: 10, cadence: monthly}
    credit_rates:
      - {feature: img, mode: per_unit, per_unit: 2}
      - {feature: chat, mode: per_unit, per_unit: 9}
"""


def catalog(text: str = CATALOG_YAML) -> Catalog:
    return load_catalog(text, source="test catalog", check_formula=check_formula)


def at(day: int, hour: int = 0, month: int = 1, minute: int = 0) -> datetime:
    """A UTC instant in 2024 (January by default)."""
    return datetime(2024, month, day, hour, minute, tzinfo=UTC)


def naive(day: int, hour: int = 0, month: int = 1, minute: int = 0) -> datetime:
    return datetime(2024, month, day, hour, minute)


def events_frame(rows: Sequence[dict[str, Any]]) -> pl.DataFrame:
    """Events as a frame; `tokens` an integer dimension, `x` a decimal one, when present."""
    schema: dict[str, pl.DataType] = {
        "event_id": pl.String(),
        "customer_id": pl.String(),
        "event_name": pl.String(),
        "timestamp": pl.Datetime("us"),
    }
    keys = {key for row in rows for key in row}
    if "tokens" in keys:
        schema["tokens"] = pl.Int64()
    for name in ("x", "y"):
        if name in keys:
            schema[name] = pl.Decimal(18, 6)
    data = [{name: row.get(name) for name in schema} for row in rows]
    for row in data:
        for name in ("x", "y"):
            if row.get(name) is not None:
                row[name] = Decimal(str(row[name]))
    return pl.DataFrame(data, schema=schema, orient="row")


def load_events(
    rows: Sequence[dict[str, Any]], con: duckdb.DuckDBPyConnection | None = None
) -> tuple[duckdb.DuckDBPyConnection, IngestReport]:
    """A DuckDB connection whose `events` table holds `rows` (ingested like any input)."""
    connection = con or duckdb.connect()
    report = ingest_events(connection, events_frame(rows))
    return connection, report


def ev(event_id: str, customer: str, name: str, when: datetime, **dims: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "customer_id": customer,
        "event_name": name,
        "timestamp": when,
        **dims,
    }
