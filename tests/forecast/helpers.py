"""A hand-sized world for forecast tests: one call a day at noon, 100 credits each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb
import polars as pl

from pricing_lab.catalog.model import Catalog
from pricing_lab.catalog.yaml_format import load_catalog
from pricing_lab.events.ingest import ingest_events

# Credits CR (precision 2, 0.001 USD each); every `call` event costs 100 credits.
CATALOG = """
currencies:
  - {id: CR, name: Credits, unit_price: 0.001, precision: 2}
features:
  - id: call
    name: Call
    type: metered
    meter: {source: events, event_name: call, aggregation: count}
default_credit_rates:
  - {feature: call, mode: per_unit, per_unit: 100}
plans:
  - id: basic
    name: Basic
    entitlements:
      - {kind: credit, currency: CR, amount: 300, cadence: monthly}
    credit_rates:
      - {feature: call, mode: per_unit, per_unit: 100}
"""
START = datetime(2024, 1, 1, tzinfo=UTC)
T = START + timedelta(days=10)  # the forecast instant: after 10 days of history
DAY = timedelta(days=1)


def catalog() -> Catalog:
    return load_catalog(CATALOG)


def daily_calls(
    con: duckdb.DuckDBPyConnection, customers: dict[str, int], *, days_before: int = 0
) -> None:
    """Table `events`: one call a day at 12:00 for each customer, from START for as many days as
    given (`days_before`: customers' calls also start that many days before START)."""
    rows = []
    for customer, days in customers.items():
        for day in range(-days_before, days):
            at = START + day * DAY + timedelta(hours=12)
            rows.append((f"{customer}-{day:03d}", customer, "call", at.replace(tzinfo=None)))
    frame = pl.DataFrame(
        rows, schema=["event_id", "customer_id", "event_name", "timestamp"], orient="row"
    )
    ingest_events(con, frame)
