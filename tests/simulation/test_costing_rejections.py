"""One bad value never stops costing: it rejects its own event, traceable to its input row."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pricing_lab.events.ingest import ingest_events
from pricing_lab.simulation.costing import cost_events
from tests.simulation.helpers import catalog

EVENTS = {"event_id": ["e1", "e2", "e3"], "customer_id": ["c"] * 3, "event_name": ["chat"] * 3}
STAMPS = ["2024-01-01", "2024-01-02", "2024-01-03"]


def costed(path: Path) -> tuple[list[tuple[str, Decimal]], list[tuple[int, str, str, str]]]:
    con = duckdb.connect()
    ingest_events(con, path)
    costing = cost_events(con, catalog())
    ok = costing.consumptions.filter(feature_id="chat").select("event_id", "cost").rows()
    rejected = costing.rejected.select("source_row", "event_id", "reason", "detail").rows()
    return ok, rejected


def test_values_too_large_for_the_arithmetic_reject_their_event(tmp_path: Path) -> None:
    huge = Decimal("1" + "0" * 30)
    files = []
    for name, column in (
        ("double.parquet", pa.array([1.0, 1e30, 3.0], pa.float64())),
        ("decimal.parquet", pa.array([Decimal(1), huge, Decimal(3)], pa.decimal128(38, 0))),
    ):
        pq.write_table(pa.table({**EVENTS, "timestamp": STAMPS, "tokens": column}), tmp_path / name)
        files.append(tmp_path / name)
    ndjson = tmp_path / "e.ndjson"
    lines = [
        f'{{"event_id": "e{i + 1}", "customer_id": "c", "event_name": "chat", '
        f'"timestamp": {json.dumps(STAMPS[i])}, "tokens": {tokens}}}\n'
        for i, tokens in enumerate(["1", "1" + "0" * 30, "3"])
    ]
    ndjson.write_text("".join(lines))
    files.append(ndjson)
    for path in files:
        ok, rejected = costed(path)
        assert ok == [("e1", Decimal("0.50")), ("e3", Decimal("1.50"))], path
        assert [r[:3] for r in rejected] == [(2, "e2", "cost_out_of_range")], path
        assert "beyond the exact decimal range" in rejected[0][3]


def test_a_cost_the_ledger_cannot_hold_rejects_its_event(tmp_path: Path) -> None:
    tokens = pa.array([1, 2**63 - 1, 3], pa.int64())  # x 0.5 credits: far above 10^16
    path = tmp_path / "e.parquet"
    pq.write_table(pa.table({**EVENTS, "timestamp": STAMPS, "tokens": tokens}), path)
    ok, rejected = costed(path)
    assert [event for event, _ in ok] == ["e1", "e3"]
    assert [r[:3] for r in rejected] == [(2, "e2", "cost_out_of_range")]
    assert "at or above the limit of 10000000000000000 per event" in rejected[0][3]


def test_formula_rejections_keep_the_source_row(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text(
        "event_id,customer_id,event_name,timestamp,tokens\n"
        "e1,c,chat,2024-01-01,4\ne2,c,chat,2024-01-02,\ne3,c,chat,2024-01-03,-8\n"
    )
    ok, rejected = costed(path)
    assert ok == [("e1", Decimal("2.00"))]
    assert [r[:3] for r in rejected] == [(2, "e2", "formula_null"), (3, "e3", "formula_negative")]
