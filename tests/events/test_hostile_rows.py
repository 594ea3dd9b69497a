"""Hostile rows: extreme timestamps, empty columns, keys differing in case, blank lines, and
every rejected row traceable to its input row (issue 19)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pricing_lab.events.ingest import ingest_events
from tests.events.conftest import write

HEADER = "event_id,customer_id,event_name,timestamp"


def test_extreme_timestamps_are_rejected_one_by_one_in_every_format(con, tmp_path: Path) -> None:
    times = ["2024-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"]
    csv = write(
        tmp_path / "e.csv",
        HEADER + "\n" + "".join(f"e{i},c,x,{t}\n" for i, t in enumerate(times)),
    )
    typed = tmp_path / "e.parquet"
    stamps = [datetime(2024, 1, 1), datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59)]
    pq.write_table(
        pa.table(
            {
                "event_id": ["e0", "e1", "e2"],
                "customer_id": ["c"] * 3,
                "event_name": ["x"] * 3,
                "timestamp": pa.array(stamps, pa.timestamp("us")),
            }
        ),
        typed,
    )
    for path in (csv, typed):
        report = ingest_events(con, path)
        assert (report.accepted, report.rejected_by_reason) == (1, {"bad_timestamp": 2})
        rows = con.execute(
            "SELECT source_row, event_id, detail FROM rejected_events ORDER BY 1"
        ).fetchall()
        assert [r[:2] for r in rows] == [(2, "e1"), (3, "e2")]
        assert all(r[2].startswith("outside the supported range 1900-01-01") for r in rows)


def test_an_offset_that_leaves_the_range_is_rejected(con, tmp_path: Path) -> None:
    path = write(tmp_path / "e.csv", f"{HEADER}\ne1,c,x,1900-01-01T00:30:00+01:00\n")
    report = ingest_events(con, path)
    assert report.rejected_by_reason == {"bad_timestamp": 1}


def test_columns_without_any_value_are_numeric_and_null(con, tmp_path: Path) -> None:
    parquet = tmp_path / "e.parquet"
    pq.write_table(
        pa.table(
            {
                "event_id": ["a", "b"],
                "customer_id": ["c", "c"],
                "event_name": ["x", "x"],
                "timestamp": ["2024-01-01", "2024-01-02"],
                "tokens": pa.nulls(2),
            }
        ),
        parquet,
    )
    csv = write(tmp_path / "e.csv", f"{HEADER},tokens\na,c,x,2024-01-01,\nb,c,x,2024-01-02,\n")
    ndjson = write(
        tmp_path / "e.ndjson",
        json.dumps({"event_id": "a", "customer_id": "c", "event_name": "x",
                    "timestamp": "2024-01-01", "tokens": None}) + "\n",
    )  # fmt: skip
    for path in (parquet, csv, ndjson):
        report = ingest_events(con, path)
        assert report.rejected == 0
        typ = con.execute("SELECT typeof(tokens), count(tokens) FROM events GROUP BY 1").fetchall()
        assert typ == [("BIGINT", 0)]


def test_properties_keys_differing_only_in_case_are_one_dimension(con, tmp_path: Path) -> None:
    base = {"customer_id": "c", "event_name": "x", "timestamp": "2024-01-01"}
    lines = [
        {**base, "event_id": "a", "properties": {"model": "gpt-4o", "tokens": 1}},
        {**base, "event_id": "b", "properties": {"Model": "gpt-4o", "tokens": 2}},
        {**base, "event_id": "c", "properties": {"model": "m", "MODEL": "m"}},  # same value
        {**base, "event_id": "d", "properties": {"model": "a", "MODEL": "b"}},  # a conflict
    ]
    path = write(tmp_path / "e.ndjson", "".join(json.dumps(x) + "\n" for x in lines))
    report = ingest_events(con, path)
    assert report.dimensions == ("model", "tokens")
    assert con.execute("SELECT event_id, model FROM events ORDER BY 1").fetchall() == [
        ("a", "gpt-4o"),
        ("b", "gpt-4o"),
        ("c", "m"),
    ]
    assert con.execute("SELECT source_row, reason, detail FROM rejected_events").fetchall() == [
        (
            4,
            "bad_value",
            "keys 'model', 'MODEL' and 'Model' differ only in case and hold different values",
        )
    ]


def test_lines_of_white_space_are_not_rows(con, tmp_path: Path) -> None:
    good = '{"event_id": "a", "customer_id": "c", "event_name": "x", "timestamp": "2024-01-01"}'
    path = write(tmp_path / "e.ndjson", f"\ufeff{good}\n\t\n   \n \t \r\n\n")
    report = ingest_events(con, path)
    assert (report.rows_read, report.accepted) == (1, 1)


def test_every_rejected_row_keeps_its_source_row_and_raw_timestamp(con, tmp_path: Path) -> None:
    path = write(
        tmp_path / "e.csv",
        f"{HEADER}\ne1,c,x,2024-01-01T10:00:00+02:00\ne1,c,x,2024-01-01 09:00+01\n",
    )
    ingest_events(con, path)
    assert con.execute("SELECT event_id, source_row FROM events").fetchall() == [("e1", 1)]
    assert con.execute("SELECT source_row, timestamp, reason FROM rejected_events").fetchall() == [
        (2, "2024-01-01 09:00+01", "duplicate_event_id")
    ]


def test_an_input_column_named_source_row_is_kept_under_another_name(con, tmp_path: Path) -> None:
    path = write(tmp_path / "e.csv", f"{HEADER},source_row\ne1,c,x,2024-01-01,77\n")
    report = ingest_events(con, path)
    assert report.dimensions == ("input.source_row",)
    assert con.execute('SELECT source_row, "input.source_row" FROM events').fetchall() == [(1, 77)]


def test_an_unknown_customer_known_in_another_case_is_called_out(con, tmp_path: Path) -> None:
    path = write(tmp_path / "e.csv", f"{HEADER}\ne1,ACME,x,2024-01-01\ne2,nobody,x,2024-01-01\n")
    ingest_events(con, path, customers=["acme"])
    assert con.execute("SELECT detail FROM rejected_events ORDER BY source_row").fetchall() == [
        ("customer ACME is not in the customer list (did you mean acme? customer ids are "
         "case-sensitive)",),
        ("customer nobody is not in the customer list",),
    ]  # fmt: skip
