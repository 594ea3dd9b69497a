"""Ingestion: every row accepted or rejected with a reason, whole-file problems as InputError."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pricing_lab.errors import InputError
from pricing_lab.events.ingest import IngestReport, ingest_events, ingest_reported_usage
from tests.events.conftest import write

HEADER = "event_id,customer_id,event_name,timestamp"


def rejected(con: duckdb.DuckDBPyConnection) -> list[tuple[int, str, str]]:
    return con.execute(
        "SELECT source_row, reason, detail FROM rejected_events ORDER BY source_row"
    ).fetchall()


def assert_adds_up(con: duckdb.DuckDBPyConnection, report: IngestReport) -> None:
    stored = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
    dropped = con.execute("SELECT count(*) FROM rejected_events").fetchall()[0][0]
    assert (report.accepted, report.rejected) == (stored, dropped)
    assert report.accepted + report.rejected == report.rows_read
    assert sum(report.rejected_by_reason.values()) == report.rejected


def test_csv_events_are_typed_and_timestamps_are_utc(con, tmp_path: Path) -> None:
    path = write(
        tmp_path / "e.csv",
        f"{HEADER},model,input_tokens,price\n"
        "e1,c1,llm.request,2024-01-01 10:00:00,gpt-4o,100,1.50\n"
        "e2,c1,llm.request,2024-01-01T10:00:00+02:00,gpt-4o,200,2\n"
        "e3,c2,llm.request,2024-01-01 10:00:00.1234567-0130,llama-70b,7,0.25\n"
        "e4,c2,llm.request,2024-03-05Z,llama-70b,,\n",
    )
    report = ingest_events(con, path)
    assert report.rows_read == 4 and report.accepted == 4 and report.rejected == 0
    types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE events)").fetchall())
    assert types == {
        "event_id": "VARCHAR",
        "customer_id": "VARCHAR",
        "event_name": "VARCHAR",
        "timestamp": "TIMESTAMP",
        "source_row": "BIGINT",
        "model": "VARCHAR",
        "input_tokens": "BIGINT",
        "price": "DECIMAL(38,2)",
    }
    rows = con.execute("SELECT event_id, timestamp, price FROM events ORDER BY event_id").fetchall()
    assert rows == [
        ("e1", datetime(2024, 1, 1, 10, 0), Decimal("1.50")),
        ("e2", datetime(2024, 1, 1, 8, 0), Decimal("2.00")),
        ("e3", datetime(2024, 1, 1, 11, 30, 0, 123456), Decimal("0.25")),
        ("e4", datetime(2024, 3, 5), None),
    ]
    assert report.dimensions == ("model", "input_tokens", "price")


def test_row_level_problems_are_rejected_with_reasons(con, tmp_path: Path) -> None:
    path = write(
        tmp_path / "e.csv",
        f"{HEADER},properties\n"
        "e1,c1,llm.request,2024-01-01 10:00:00,\n"  # accepted
        "e1,c2,llm.request,2024-01-02 10:00:00,\n"  # duplicate of row 1
        "e2,,llm.request,nope,\n"  # missing customer (reported before the bad time)
        "e3,c1,llm.request,yesterday,\n"  # bad timestamp
        "e4,c1,llm.request,2024-02-30 10:00:00,\n"  # impossible date
        "e5,c1,llm.request,2024-01-01 10:00:00 Europe/Paris,\n"  # named zones are refused
        "e6,c1,llm.request,2024-01-01 10:00:00,{not json\n"  # malformed properties
        "e7,c9,llm.request,2024-01-01 10:00:00,\n"  # unknown customer
        ",,,,\n",  # everything missing
    )
    report = ingest_events(con, path, customers=["c1", "c2"])
    assert rejected(con) == [
        (2, "duplicate_event_id", "event_id first seen at row 1"),
        (3, "missing_field", "missing customer_id"),
        (4, "bad_timestamp", "not a timestamp: yesterday"),
        (5, "bad_timestamp", "not a timestamp: 2024-02-30 10:00:00"),
        (6, "bad_timestamp", "not a timestamp: 2024-01-01 10:00:00 Europe/Paris"),
        (7, "bad_value", "properties is not a JSON object"),
        (8, "unknown_customer", "customer c9 is not in the customer list"),
        (9, "missing_field", "missing event_id, customer_id, event_name, timestamp"),
    ]
    assert report.rejected_by_reason == {
        "missing_field": 2,
        "bad_value": 1,
        "bad_timestamp": 3,
        "unknown_customer": 1,
        "duplicate_event_id": 1,
    }
    assert con.execute("SELECT event_id, customer_id FROM events").fetchall() == [("e1", "c1")]
    raw = con.execute("SELECT timestamp FROM rejected_events WHERE source_row = 4").fetchall()
    assert raw == [("yesterday",)]
    assert_adds_up(con, report)


def test_duplicate_after_a_rejected_first_copy_is_accepted(con, tmp_path: Path) -> None:
    path = write(
        tmp_path / "e.csv",
        f"{HEADER}\ne1,c1,x,garbage\ne1,c1,x,2024-01-01\ne1,c1,x,2024-01-02\n",
    )
    report = ingest_events(con, path)
    assert con.execute("SELECT timestamp FROM events").fetchall() == [(datetime(2024, 1, 1),)]
    assert [r[:2] for r in rejected(con)] == [(1, "bad_timestamp"), (3, "duplicate_event_id")]
    assert_adds_up(con, report)


def test_properties_are_flattened_with_exact_numbers(con, tmp_path: Path) -> None:
    props = [
        {"pages": 3, "ratio": 1.25, "doc_type": "email", "model": "inner", "flag": True},
        {"pages": 12, "ratio": 0.1, "nested": {"a": 1}},
        None,
    ]
    lines = [HEADER + ",model,properties"]
    for i, p in enumerate(props):
        text = "" if p is None else '"' + json.dumps(p).replace('"', '""') + '"'
        lines.append(f"e{i},c1,summary.created,2024-01-01,outer,{text}")
    report = ingest_events(con, write(tmp_path / "e.csv", "\n".join(lines) + "\n"))
    assert report.accepted == 3
    types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE events)").fetchall())
    assert types["pages"] == "BIGINT"
    assert types["ratio"] == "DECIMAL(38,2)"
    assert types["doc_type"] == "VARCHAR"
    assert types["flag"] == "BOOLEAN"
    assert types["properties.model"] == "VARCHAR"  # clashes with the model column, which wins
    rows = con.execute(
        'SELECT model, "properties.model", pages, ratio, nested FROM events ORDER BY event_id'
    ).fetchall()
    assert rows == [
        ("outer", "inner", 3, Decimal("1.25"), None),
        ("outer", None, 12, Decimal("0.10"), '{"a":1}'),
        ("outer", None, None, None, None),
    ]


def test_ndjson_lines_and_wrong_json_types(con, tmp_path: Path) -> None:
    good = {"event_id": "a", "customer_id": "c", "event_name": "x", "timestamp": "2024-01-01"}
    lines = [
        json.dumps({**good, "tokens": 5, "properties": {"tokens": 7, "kind": "k"}}),
        "{broken",
        json.dumps({**good, "event_id": {"id": 1}}),
        "",
        json.dumps({**good, "event_id": "b", "timestamp": 1700000000}),
        json.dumps([1, 2]),
        json.dumps({**good, "event_id": 42}),
    ]
    report = ingest_events(con, write(tmp_path / "e.ndjson", "\n".join(lines) + "\n"))
    assert report.rows_read == 6  # the blank line is not a row
    assert [r[:2] for r in rejected(con)] == [
        (2, "malformed_json"),
        (3, "bad_value"),
        (5, "bad_timestamp"),
        (6, "malformed_json"),
    ]
    events = con.execute(
        'SELECT event_id, tokens, "properties.tokens", kind FROM events ORDER BY event_id'
    ).fetchall()
    assert events == [("42", None, None, None), ("a", 5, 7, "k")]
    assert_adds_up(con, report)


def test_parquet_with_integer_ids_and_aware_timestamps(con, tmp_path: Path) -> None:
    path = tmp_path / "e.parquet"
    con.execute(
        f"COPY (SELECT * FROM (VALUES (1, 10, 'x', TIMESTAMPTZ '2024-01-01 12:00:00+05:00', 2.5),"
        f" (2, 10, 'x', NULL, 1.0), (1, 11, 'x', TIMESTAMPTZ '2024-01-02 00:00:00+00:00', 1.0))"
        f" AS t(event_id, customer_id, event_name, timestamp, amount)) TO '{path}'"
    )
    report = ingest_events(con, path)
    assert con.execute("SELECT event_id, customer_id, timestamp FROM events").fetchall() == [
        ("1", "10", datetime(2024, 1, 1, 7, 0))
    ]
    assert [r[:2] for r in rejected(con)] == [(2, "missing_field"), (3, "duplicate_event_id")]
    assert_adds_up(con, report)


def test_polars_frame_and_query_sources(con) -> None:
    frame = pl.DataFrame(
        {
            "event_id": ["a", "b"],
            "customer_id": ["c", "c"],
            "event_name": ["x", "x"],
            "timestamp": [datetime(2024, 1, 1), datetime(2024, 1, 2)],
        }
    )
    assert ingest_events(con, frame).accepted == 2
    con.execute("CREATE TABLE raw AS SELECT * FROM events")
    report = ingest_events(con, "SELECT * FROM raw WHERE event_id = 'b'", format="query")
    assert report.accepted == 1
    assert ingest_events(con, "raw", format="table", table="copy").accepted == 2


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", "the file is empty"),
        ("ragged.csv", f"{HEADER}\na,b,c,2024-01-01\na,b,c,2024-01-01,extra\n", "line 3: ragged"),
        ("short.csv", f"{HEADER}\na,b,c\n", "line 2: ragged row: expected 4 fields, found 3"),
        ("latin1.csv", f"{HEADER}\na,b,caf\xe9,2024-01-01\n".encode("latin-1"), "not UTF-8"),
        ("nocols.csv", "event_id,customer_id\na,b\n", "missing required columns event_name"),
        ("dup.csv", "event_id,EVENT_ID,customer_id,event_name,timestamp\n", "twice"),
        ("quote.csv", f'{HEADER}\na,b,"c,2024-01-01\n', "line 2: value with unterminated quote"),
        ("semicolons.csv", "event_id;customer_id;event_name;timestamp\n", "looks separated by ';'"),
        ("bad.parquet", b"PAR1 not really parquet", "cannot read"),
        ("latin1.ndjson", b'{"event_id": "\xe9"}\n', r"not UTF-8 text \(line 1\)"),
        ("events.txt", "x", "unknown file type"),
    ],
)
def test_whole_file_problems_are_one_clear_error(
    con, tmp_path: Path, name: str, content: str | bytes, message: str
) -> None:
    path = write(tmp_path / name, content)
    with pytest.raises(InputError, match=message) as info:
        ingest_events(con, path)
    assert str(path) in str(info.value)


def test_a_parquet_file_with_a_repeated_column_name_is_refused(con, tmp_path: Path) -> None:
    # Two customer_id columns (Arrow writes them; DuckDB would read the second as
    # customer_id_1 and replay the first without a word): which one is meant cannot be told.
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "dup.parquet"
    columns = [pa.array(["e1"]), pa.array(["acme"]), pa.array(["x"]), pa.array(["2024-01-01"])]
    names = ["event_id", "customer_id", "event_name", "timestamp"]
    pq.write_table(pa.table([*columns, pa.array(["globex"])], names=[*names, "Customer_ID"]), path)
    with pytest.raises(InputError) as info:
        ingest_events(con, path)
    assert str(info.value) == f"{path}: the file has two columns named 'Customer_ID'"


def test_a_folder_is_named_as_a_folder(con, tmp_path: Path) -> None:
    (tmp_path / "exports").mkdir()  # no suffix: not "unknown file type ''"
    with pytest.raises(InputError, match="exports: is a folder, not an events file"):
        ingest_events(con, tmp_path / "exports")


def test_missing_file_and_wrong_column_types(con, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        ingest_events(con, tmp_path / "nope.parquet")
    path = tmp_path / "t.parquet"
    con.execute(
        f"COPY (SELECT 'a' AS event_id, 'c' AS customer_id, 'x' AS event_name, "
        f"true AS timestamp) TO '{path}'"
    )
    with pytest.raises(InputError, match="timestamp has type BOOLEAN"):
        ingest_events(con, path)
    con.execute(
        f"COPY (SELECT 1.5 AS event_id, 'c' AS customer_id, 'x' AS event_name, "
        f"now() AS timestamp) TO '{path}'"
    )
    with pytest.raises(InputError, match="event_id has type DECIMAL"):
        ingest_events(con, path)


def test_header_only_file_reads_zero_rows(con, tmp_path: Path) -> None:
    report = ingest_events(con, write(tmp_path / "h.csv", HEADER + "\n"))
    assert (report.rows_read, report.accepted, report.rejected) == (0, 0, 0)


def test_reported_usage(con, tmp_path: Path) -> None:
    path = write(
        tmp_path / "r.csv",
        "customer_id,feature_id,timestamp,quantity\n"
        "c1,storage,2024-01-01,1000.5\n"
        "c1,storage,2024-01-02,-1\n"
        "c1,storage,2024-01-03,lots\n"
        "c1,other,2024-01-03,1\n"
        "c1,storage,,1\n"
        "c1,storage,2024-01-04,0.0000000000001\n",
    )
    report = ingest_reported_usage(con, path, features=["storage"])
    assert con.execute("SELECT * FROM reported_usage").fetchall() == [
        ("c1", "storage", datetime(2024, 1, 1), Decimal("1000.5"), 1)
    ]
    reasons = con.execute(
        "SELECT source_row, reason FROM rejected_reported_usage ORDER BY 1"
    ).fetchall()
    assert reasons == [
        (2, "bad_value"),
        (3, "bad_value"),
        (4, "unknown_feature"),
        (5, "missing_field"),
        (6, "bad_value"),
    ]
    assert report.accepted + report.rejected == report.rows_read == 6
