"""`feature_summary`: credits consumed and events per feature, counted the same whether the ledger
is in ledger order (runs of consecutive entries) or in any other order (distinct event ids)."""

from __future__ import annotations

from decimal import Decimal

import polars as pl
import pytest

from pricing_lab.ledger import balances
from pricing_lab.ledger.balances import feature_summary
from tests.ledger.helpers import at, event, grant, run


@pytest.mark.parametrize("slice_rows", [balances.SUMMARY_ROWS, 1, 2, 3])
def test_events_spanning_grants_and_features_count_once_per_feature(
    slice_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small slices: the ledger read a few rows at a time, runs of one event crossing slices.
    monkeypatch.setattr(balances, "SUMMARY_ROWS", slice_rows)
    result = run(
        grants=[
            grant("g1", "3", at(1)),
            grant("g2", "4", at(1), priority=1),
            grant("b1", "100", at(1), customer="bob"),
        ],
        consumptions=[
            # 5 credits of chat over g1 and g2 (two CONSUMED entries), then embed from g2
            event("e1", at(2), ("chat", "5"), ("embed", "1")),
            event("e2", at(2), ("chat", "1")),  # the same instant: consecutive with e1's rows
            event("e3", at(2), ("chat", "2"), customer="bob"),
            event("e4", at(3), ("embed", "2")),  # partly from the overdraft grant
        ],
    )
    ledger = result.ledger
    consumed = ledger.filter(pl.col("entry_type") == "CONSUMED")
    assert consumed.filter(pl.col("event_id") == "e1").height == 3  # chat twice, embed once
    expected = [
        {"currency_id": "CR", "feature_id": "chat", "consumed": Decimal("8.00"), "events": 3,
         "customers": 2},
        {"currency_id": "CR", "feature_id": "embed", "consumed": Decimal("3.00"), "events": 2,
         "customers": 1},
    ]  # fmt: skip
    assert feature_summary(ledger).to_dicts() == expected
    shuffled = ledger.sample(fraction=1.0, shuffle=True, seed=3)
    assert not shuffled["entry_id"].is_sorted()
    assert feature_summary(shuffled).to_dicts() == expected


def test_a_ledger_without_consumption_sums_to_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(balances, "SUMMARY_ROWS", 2)
    ledger = run(grants=[grant("g1", "3", at(1))], consumptions=[]).ledger
    assert ledger.height > 0
    summary = feature_summary(ledger)
    assert summary.height == 0
    assert summary.columns == ["currency_id", "feature_id", "consumed", "events", "customers"]
