"""Meters: each filter operator and aggregation against an independent hand-written query."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import duckdb
import pytest

from pricing_lab.catalog.model import Catalog, DisplayUnit, Feature, Meter, MeterFilter
from pricing_lab.errors import InputError
from pricing_lab.events.ingest import ingest_events
from pricing_lab.events.meters import (
    aggregate_usage,
    billable_quantity,
    match_events,
    reject_unusable_values,
)

EVENTS = """
SELECT * FROM (VALUES
  ('e1', 'c1', 'llm.request', TIMESTAMP '2024-01-01 10:00', 'gpt-4o', 100, 1.50, 'alpha'),
  ('e2', 'c1', 'llm.request', TIMESTAMP '2024-01-02 10:00', 'gpt-4o-mini', 250, 0.25, 'beta'),
  ('e3', 'c1', 'llm.request', TIMESTAMP '2024-01-31 23:59', NULL, NULL, NULL, NULL),
  ('e4', 'c2', 'llm.request', TIMESTAMP '2024-02-01 00:00', 'llama-70b', 7, 3.00, '10'),
  ('e5', 'c2', 'llm.request', TIMESTAMP '2024-02-10 00:00', 'gpt-4o', 100, 2.00, '9'),
  ('e6', 'c2', 'image.generated', TIMESTAMP '2024-02-10 00:00', 'gpt-4o', 1, 1.00, 'x'),
  ('e7', 'c1', 'llm.request', TIMESTAMP '2024-02-11 00:00', 'O''Brien', 40, 0.10, 'gamma')
) AS t(event_id, customer_id, event_name, timestamp, model, tokens, score, label)
"""


@pytest.fixture()
def events(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    ingest_events(con, EVENTS, format="query")
    return con


def feature(fid: str, *filters: MeterFilter, aggregation: str = "count", dim: str | None = None,
            unit: DisplayUnit | None = None) -> Feature:  # fmt: skip
    return Feature(
        id=fid,
        name=fid,
        type="metered",
        display_unit=unit,
        meter=Meter(
            source="events",
            event_name="llm.request",
            filters=filters,
            aggregation=aggregation,  # type: ignore[arg-type]
            dimension=dim,
        ),
    )


def matched_ids(con: duckdb.DuckDBPyConnection, flt: MeterFilter) -> list[str]:
    rel = match_events(con, Catalog(features=(feature("f", flt),)))
    return sorted(r[0] for r in rel.fetchall())


def expected_ids(con: duckdb.DuckDBPyConnection, condition: str) -> list[str]:
    rows = con.execute(
        f"SELECT event_id FROM events WHERE event_name = 'llm.request' AND ({condition})"
    ).fetchall()
    return sorted(r[0] for r in rows)


D = Decimal
CASES = [
    (MeterFilter(dimension="model", operator="equals", value="gpt-4o"), "model = 'gpt-4o'"),
    (
        MeterFilter(dimension="model", operator="not_equals", value="gpt-4o"),
        "model IS NULL OR model <> 'gpt-4o'",
    ),
    (MeterFilter(dimension="tokens", operator="gt", value=D(100)), "tokens > 100"),
    (MeterFilter(dimension="tokens", operator="gte", value=D(100)), "tokens >= 100"),
    (MeterFilter(dimension="tokens", operator="lt", value=D(100)), "tokens < 100"),
    (MeterFilter(dimension="score", operator="lte", value=D("1.5")), "score <= 1.5"),
    (MeterFilter(dimension="model", operator="is_null"), "model IS NULL"),
    (MeterFilter(dimension="model", operator="is_not_null"), "model IS NOT NULL"),
    (MeterFilter(dimension="model", operator="contains", value="4o"), "model LIKE '%4o%'"),
    (MeterFilter(dimension="model", operator="starts_with", value="gpt"), "model LIKE 'gpt%'"),
    (MeterFilter(dimension="model", operator="ends_with", value="mini"), "model LIKE '%mini'"),
    (
        MeterFilter(dimension="model", operator="in", value=("gpt-4o-mini", "llama-70b")),
        "model IN ('gpt-4o-mini', 'llama-70b')",
    ),
    (MeterFilter(dimension="tokens", operator="in", value=(D(7), D(250))), "tokens IN (7, 250)"),
    (MeterFilter(dimension="tokens", operator="equals", value="100"), "tokens = 100"),
    # text dimension compared with a number: numeric comparison of its value
    (MeterFilter(dimension="label", operator="gt", value=D(9)), "TRY_CAST(label AS INT) > 9"),
    # text dimension compared with text: lexicographic
    (MeterFilter(dimension="label", operator="gt", value="9"), "label > '9'"),
    # quotes in values are data, not SQL
    (MeterFilter(dimension="model", operator="equals", value="O'Brien"), "model = 'O''Brien'"),
    (
        MeterFilter(dimension="model", operator="equals", value="x' OR '1'='1"),
        "FALSE",
    ),
    # a dimension no event has is null everywhere
    (MeterFilter(dimension="absent", operator="is_null"), "TRUE"),
    (MeterFilter(dimension="absent", operator="equals", value="a"), "FALSE"),
]


@pytest.mark.parametrize(("flt", "condition"), CASES, ids=lambda c: getattr(c, "operator", ""))
def test_filter_operator_matches_hand_written_query(events, flt: MeterFilter, condition: str):
    assert matched_ids(events, flt) == expected_ids(events, condition)


def test_every_operator_is_covered() -> None:
    from pricing_lab.catalog.model import FILTER_OPERATORS

    assert {c[0].operator for c in CASES} == set(FILTER_OPERATORS)


def test_identifier_injection_is_quoted(events) -> None:
    flt = MeterFilter(dimension='model" = model OR "1', operator="is_not_null")
    assert matched_ids(events, flt) == []


def test_all_filters_must_hold_and_events_match_several_features(events) -> None:
    catalog = Catalog(
        features=(
            feature(
                "cheap_4o",
                MeterFilter(dimension="model", operator="starts_with", value="gpt-4o"),
                MeterFilter(dimension="score", operator="lt", value=D(2)),
            ),
            feature("all_llm"),
        )
    )
    rows = match_events(events, catalog).fetchall()
    by_feature: dict[str, list[str]] = {}
    for row in rows:
        by_feature.setdefault(row[3], []).append(row[0])
    assert sorted(by_feature["cheap_4o"]) == ["e1", "e2"]
    assert sorted(by_feature["all_llm"]) == ["e1", "e2", "e3", "e4", "e5", "e7"]


AGGREGATIONS = {
    "count": "CAST(count(*) AS DECIMAL(38, 12))",
    "count_unique": "CAST(count(DISTINCT model) AS DECIMAL(38, 12))",
    "sum": "CAST(sum(score) AS DECIMAL(38, 12))",
    "max": "CAST(max(score) AS DECIMAL(38, 12))",
    "min": "CAST(min(score) AS DECIMAL(38, 12))",
}


@pytest.mark.parametrize("aggregation", [*AGGREGATIONS, "avg"])
def test_aggregation_matches_hand_written_query(events, aggregation: str) -> None:
    dim = None if aggregation == "count" else "model" if aggregation == "count_unique" else "score"
    catalog = Catalog(features=(feature("f", aggregation=aggregation, dim=dim),))
    got = aggregate_usage(events, catalog, period="month").fetchall()
    got_usage = {(r[2], r[0]): r[5] for r in got}
    if aggregation == "avg":
        # independent exact average: Python Decimal over the values
        rows = events.execute(
            "SELECT customer_id, date_trunc('month', timestamp), list(score) FROM events "
            "WHERE event_name = 'llm.request' GROUP BY ALL"
        ).fetchall()
        expected = {}
        for customer, month, scores in rows:
            values = [Decimal(s) for s in scores if s is not None]
            expected[(customer, month)] = (
                (sum(values) / len(values)).quantize(Decimal("1E-12")) if values else None
            )
    else:
        rows = events.execute(
            f"SELECT customer_id, date_trunc('month', timestamp), {AGGREGATIONS[aggregation]} "
            "FROM events WHERE event_name = 'llm.request' GROUP BY ALL"
        ).fetchall()
        expected = {(c, datetime(m.year, m.month, 1)): v for c, m, v in rows}
    expected = {(c, datetime(m.year, m.month, 1)): v for (c, m), v in expected.items()}
    assert got_usage == expected


def test_avg_is_exact_and_rounds_half_up(con) -> None:
    ingest_events(
        con,
        "SELECT * FROM (VALUES ('a', 'c', 'llm.request', TIMESTAMP '2024-01-01', 1),"
        " ('b', 'c', 'llm.request', TIMESTAMP '2024-01-01', 1),"
        " ('d', 'c', 'llm.request', TIMESTAMP '2024-01-01', 2))"
        " AS t(event_id, customer_id, event_name, timestamp, n)",
        format="query",
    )
    catalog = Catalog(features=(feature("f", aggregation="avg", dim="n"),))
    usage = aggregate_usage(con, catalog, period="total").fetchall()[0][5]
    assert usage == Decimal("1.333333333333")


def test_display_unit_rounds_billing_quantity_up(con) -> None:
    ingest_events(
        con,
        "SELECT * FROM (VALUES ('a', 'c', 'llm.request', TIMESTAMP '2024-01-01', 20000000),"
        " ('b', 'd', 'llm.request', TIMESTAMP '2024-01-01', 3000000000))"
        " AS t(event_id, customer_id, event_name, timestamp, bytes)",
        format="query",
    )
    gb = DisplayUnit(singular="GB", plural="GB", factor=Decimal(1000000000))
    catalog = Catalog(features=(feature("f", aggregation="sum", dim="bytes", unit=gb),))
    rows = aggregate_usage(con, catalog, period="total").fetchall()
    got = {r[2]: (r[5], r[6], r[7], r[8]) for r in rows}
    assert got == {
        "c": (Decimal(20000000), "GB", Decimal("0.02"), Decimal(1)),  # 0.02 GB → 1 GB
        "d": (Decimal(3000000000), "GB", Decimal(3), Decimal(3)),
    }
    assert billable_quantity(Decimal("20000000"), gb) == Decimal(1)
    assert billable_quantity(Decimal("3000000000"), gb) == Decimal(3)


def test_reported_meter_reads_reported_usage(con, tmp_path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(
        "customer_id,feature_id,timestamp,quantity\n"
        "c1,storage,2024-01-01,5\nc1,storage,2024-01-02,7.5\nc1,other,2024-01-02,1\n"
    )
    from pricing_lab.events.ingest import ingest_reported_usage

    ingest_reported_usage(con, path)
    storage = Feature(
        id="storage",
        name="Storage",
        type="metered",
        meter=Meter(source="reported", aggregation="max", dimension="quantity"),
    )
    rows = aggregate_usage(con, Catalog(features=(storage,)), period="month").fetchall()
    assert [(r[2], r[3], r[4], r[5]) for r in rows] == [("c1", "storage", 2, Decimal("7.5"))]


def test_sum_over_text_reads_numbers_and_rejects_the_other_values(events) -> None:
    catalog = Catalog(features=(feature("f", aggregation="sum", dim="label"),))
    quantities = dict(match_events(events, catalog).select("event_id, quantity").fetchall())
    assert quantities["e4"] == Decimal(10) and quantities["e1"] is None
    report = ingest_events(events, EVENTS, format="query")
    report = reject_unusable_values(events, catalog, report)
    assert report.rejected_by_reason == {"bad_value": 3}  # alpha, beta, gamma; x: an image
    assert report.accepted + report.rejected == report.rows_read == 7
    rejected = events.execute(
        "SELECT source_row, event_id, detail FROM rejected_events ORDER BY 1"
    ).fetchall()
    assert [r[1] for r in rejected] == ["e1", "e2", "e7"]
    assert rejected[0] == (1, "e1", "f: label is not a number below 10^26: alpha")


def test_sum_over_a_boolean_dimension_is_an_input_error(con) -> None:
    ingest_events(con, EVENTS.replace("'alpha'", "TRUE").replace("'beta'", "FALSE")
                  .replace("'10'", "TRUE").replace("'9'", "TRUE").replace("'x'", "TRUE")
                  .replace("'gamma'", "TRUE"), format="query")  # fmt: skip
    catalog = Catalog(features=(feature("f", aggregation="sum", dim="label"),))
    with pytest.raises(InputError, match="sum needs a numeric dimension"):
        match_events(con, catalog)
