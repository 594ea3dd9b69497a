"""Catalog activity (SPEC §6) from the store's history: created, updated, archived, un_archived."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from pricing_lab.activity.catalog_events import catalog_activity
from pricing_lab.catalog.store import CatalogStore, open_store
from pricing_lab.catalog.yaml_format import load_catalog
from pricing_lab.cli import main
from tests.simulation.test_simulate import files_limited_to

T1 = datetime(2024, 1, 1, tzinfo=UTC)
T2 = datetime(2024, 2, 1, tzinfo=UTC)
T3 = datetime(2024, 3, 1, tzinfo=UTC)
CATALOG = """
currencies:
  - {id: CR, name: Credits, unit_price: 0.01, precision: 2}
features:
  - {id: chat, name: Chat, type: metered, meter: {source: events, event_name: chat, aggregation: count}}
feature_groups:
  - {id: ai, name: AI, features: [chat]}
plans:
  - id: basic
    name: Basic
    entitlements:
      - {kind: credit, currency: CR, amount: 100, cadence: monthly}
addons:
  - id: pack
    name: Pack
    entitlements:
      - {kind: credit, currency: CR, amount: 10, cadence: monthly}
"""  # noqa: E501


def _history(path: Path | None = None) -> CatalogStore:
    store = open_store(path)
    catalog = load_catalog(CATALOG)
    store.apply(catalog, at=T1)
    renamed = dataclasses.replace(catalog.plan("basic"), name="Basic (2024)")
    store.apply(dataclasses.replace(catalog, plans=(renamed,)), at=T2)
    store.archive_addon("pack", at=T2)
    store.unarchive_addon("pack", at=T3)
    return store


def test_the_store_history_as_catalog_events_in_the_order_they_happened() -> None:
    with _history() as store:
        events = catalog_activity(store)
    rows = [
        (
            r["activity_id"],
            r["timestamp"].strftime("%m-%d"),
            r["kind"],
            r["entity_id"],
            r["version"],
        )
        for r in events.iter_rows(named=True)
    ]
    created = sorted(r[2:] for r in rows if r[1] == "01-01")
    assert created == [
        ("addon.created", "pack", 1),
        ("credit_currency.created", "CR", 1),
        ("feature.created", "chat", 1),
        ("feature_group.created", "ai", 1),
        ("plan.created", "basic", 1),
    ]
    assert [r[1:] for r in rows if r[1] != "01-01"] == [
        ("02-01", "plan.updated", "basic", 2),
        ("02-01", "addon.archived", "pack", 1),
        ("03-01", "addon.un_archived", "pack", 1),
    ]
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
    assert events.schema["timestamp"] == pl.Datetime("us", "UTC")


def test_cli_prints_and_writes_the_catalog_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "store.duckdb"
    _history(db).close()
    assert main(["activity", "catalog", "--db", str(db), "--out", str(tmp_path / "c.parquet")]) == 0
    written = pl.read_parquet(tmp_path / "c.parquet")
    assert written["kind"].to_list()[-1] == "addon.un_archived"
    assert main(["activity", "catalog", "--db", str(tmp_path / "missing.duckdb")]) == 2
    assert "no catalog store" in capsys.readouterr().err


def test_a_catalog_events_file_the_disk_refuses_is_one_readable_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Polars reports the OS's refusal inside its own error: the command says it in one line.
    db = tmp_path / "store.duckdb"
    _history(db).close()
    with files_limited_to(64):
        status = main(["activity", "catalog", "--db", str(db), "--out", str(tmp_path / "c.pq")])
    assert status == 1
    error = capsys.readouterr().err
    assert error == "pricing-lab: IO Error: writing or reading a file failed: File too large\n"
