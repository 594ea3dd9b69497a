"""Real trace loaders (shipped data, attribution, stable customers) and the synthetic generator."""

from __future__ import annotations

import csv
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from pricing_lab.events.real import (
    PACKAGE_DATA,
    attribution,
    load_real_events,
    load_sample_events,
    trace_events,
)
from pricing_lab.events.synthetic import generate_events
from tests.conftest import SHARED_REAL

FILES = {
    "azure_code": "azure_llm_2023_code",
    "azure_conversation": "azure_llm_2023_conv",
    "mooncake": "mooncake_fast25_conversation_trace",
}


def csv_rows(path: Path) -> int:
    with path.open(newline="") as handle:
        return sum(1 for _ in csv.reader(handle)) - 1


@pytest.mark.skipif(not SHARED_REAL.exists(), reason="shared traces not present")
@pytest.mark.parametrize("trace", list(FILES))
def test_shipped_traces_hold_every_row_of_the_csv(con, trace: str) -> None:
    expected = csv_rows(SHARED_REAL / f"{FILES[trace]}.csv")
    shipped = trace_events(con, trace)  # type: ignore[arg-type]
    from_csv = trace_events(con, trace, source_dir=SHARED_REAL)  # type: ignore[arg-type]
    assert shipped.num_rows == from_csv.num_rows == expected
    assert shipped.equals(from_csv)


def test_sample_ingests_offline_with_attribution(con) -> None:
    report = load_sample_events(con)
    assert report.rejected == 0 and report.accepted == 8819 + 19366 + 12031
    text = attribution()
    assert "Splitwise" in text and "CC-BY 4.0" in text and "Mooncake" in text
    assert "Apache-2.0" in text
    size = sum(p.stat().st_size for p in PACKAGE_DATA.iterdir())
    assert size < 2_000_000
    names = {p.name for p in PACKAGE_DATA.iterdir()}
    assert "ATTRIBUTION.md" in names
    dims = con.execute("SELECT DISTINCT event_name, workload FROM events ORDER BY 2").fetchall()
    assert dims == [("llm.request", "code"), ("llm.request", "conversation")]


def test_customer_assignment_is_stable_and_heavy_tailed(con) -> None:
    first = trace_events(con, "azure_conversation", customers=20)
    again = trace_events(duckdb.connect(), "azure_conversation", customers=20)
    assert first.column("customer_id").equals(again.column("customer_id"))
    counts = con.execute(
        "SELECT customer_id, count(*) AS n FROM first GROUP BY 1 ORDER BY n DESC"
    ).fetchall()
    assert counts[0][0] == "cust-00001"
    assert counts[0][1] > 5 * counts[-1][1]  # the largest customer dwarfs the smallest


def test_time_is_stretched_onto_the_span_keeping_order(con) -> None:
    start = datetime(2024, 3, 1, tzinfo=UTC)
    stretched = trace_events(con, "mooncake", start=start, span=timedelta(days=30))
    real = trace_events(con, "mooncake", start=start, span=None)
    s = stretched.column("timestamp").to_pylist()
    r = real.column("timestamp").to_pylist()
    assert min(s) == datetime(2024, 3, 1) and max(s) < datetime(2024, 3, 31)
    assert max(r) - min(r) < timedelta(hours=2)
    order_s = sorted(range(len(s)), key=lambda i: (s[i], i))
    order_r = sorted(range(len(r)), key=lambda i: (r[i], i))
    assert order_s == order_r


def test_real_events_from_the_shared_folder(con) -> None:
    if not SHARED_REAL.exists():
        pytest.skip("shared traces not present")
    report = load_real_events(con, traces=("azure_code",), source_dir=SHARED_REAL)
    assert report.accepted == csv_rows(SHARED_REAL / "azure_llm_2023_code.csv")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_synthetic_generator_is_deterministic_by_seed(tmp_path: Path) -> None:
    a = generate_events(tmp_path / "a.parquet", events=25_000, customers=40, days=14, seed=7,
                        chunk_rows=10_000)  # fmt: skip
    b = generate_events(tmp_path / "b.parquet", events=25_000, customers=40, days=14, seed=7,
                        chunk_rows=10_000)  # fmt: skip
    c = generate_events(tmp_path / "c.parquet", events=25_000, customers=40, days=14, seed=8,
                        chunk_rows=10_000)  # fmt: skip
    assert digest(a.path) == digest(b.path) != digest(c.path)
    con = duckdb.connect()
    stats = con.execute(
        f"SELECT count(*), count(DISTINCT event_id), min(timestamp), max(timestamp), "
        f"count(DISTINCT event_name) FROM '{a.path}'"
    ).fetchall()[0]
    assert stats[0] == stats[1] == 25_000
    assert stats[2] >= datetime(2024, 1, 1) and stats[3] < datetime(2024, 1, 15)
    assert stats[4] == 3
    weekday = con.execute(
        f"SELECT count(*) FILTER (isodow(timestamp) <= 5) / 5, "
        f"count(*) FILTER (isodow(timestamp) > 5) / 2 FROM '{a.path}'"
    ).fetchall()[0]
    assert weekday[0] > 1.5 * weekday[1]  # weekly seasonality: quieter weekends
    night, afternoon = con.execute(
        f"SELECT count(*) FILTER (hour(timestamp) = 3), count(*) FILTER (hour(timestamp) = 15) "
        f"FROM '{a.path}'"
    ).fetchall()[0]
    assert afternoon > 4 * night  # daily seasonality
    report = __import__("pricing_lab.events.ingest", fromlist=["x"]).ingest_events(con, a.path)
    assert report.accepted == 25_000


def test_synthetic_timestamps_start_exactly_at_a_start_before_1970(tmp_path: Path) -> None:
    # With one day, the start only shifts the timestamps: a start one day later gives the same
    # file shifted by exactly one day, also across the Unix epoch.
    early = datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC)
    files = [
        generate_events(tmp_path / f"{i}.parquet", events=500, days=1, seed=3, start=start).path
        for i, start in enumerate((early, early + timedelta(days=1)))
    ]
    con = duckdb.connect()
    shifts = con.execute(
        f"SELECT DISTINCT b.timestamp - a.timestamp FROM '{files[0]}' AS a "
        f"JOIN '{files[1]}' AS b USING (event_id)"
    ).fetchall()
    assert shifts == [(timedelta(days=1),)]
