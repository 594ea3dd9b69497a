"""Costing read straight from the events table: unmatched events, null dimensions, event ids,
the consumption order, and rounding of large costs."""

from __future__ import annotations

from decimal import Decimal

import duckdb
import polars as pl
import pytest

from pricing_lab.errors import InputError
from pricing_lab.simulation.costing import Costing
from pricing_lab.simulation.customers import CustomerInputs
from pricing_lab.simulation.simulate import cost
from tests.simulation.helpers import catalog, ev, events_frame, load_events, naive


def costs(costing: Costing) -> list[tuple[str, str | None, str | None]]:
    """(event_id, feature_id, cost) in the table's order, costs as exact text."""
    return [
        (e, f, None if c is None else str(c))
        for e, f, c in costing.consumptions.select("event_id", "feature_id", "cost").iter_rows()
    ]


def raw_events_table(frame: pl.DataFrame) -> duckdb.DuckDBPyConnection:
    """A connection whose `events` table is `frame` as is (not ingested, so not checked)."""
    con = duckdb.connect()
    con.register("__frame", frame.to_arrow())
    con.execute("CREATE TABLE events AS SELECT * FROM __frame")
    con.unregister("__frame")
    return con


FILTERED = """
currencies:
  - {id: CR, name: Credits, unit_price: 0.01, precision: 2}
features:
  - id: gold
    name: Gold
    type: metered
    meter:
      source: events
      event_name: m
      aggregation: count
      filters: [{dimension: x, operator: gt, value: 1}]
  - id: stored
    name: Stored
    type: metered
    meter: {source: reported, aggregation: max, dimension: quantity}
default_credit_rates:
  - {feature: gold, mode: per_unit, per_unit: 2}
  - {feature: stored, mode: per_unit, per_unit: 5}
"""


def test_an_event_matching_no_meter_appears_once_with_a_null_feature() -> None:
    con, _ = load_events(
        [
            ev("a", "c", "chat", naive(1), tokens=10),
            ev("b", "c", "unknown", naive(2), tokens=10),  # no meter has this event name
        ]
    )
    result = cost(con, catalog(), CustomerInputs())
    assert costs(result) == [
        ("a", "chat", "5.00"),
        ("a", "chat_requests", "1.00"),
        ("b", None, None),
    ]
    row = result.consumptions.row(2, named=True)
    assert row["customer_id"] == "c" and row["currency_id"] is None


def test_a_filter_on_a_null_dimension_does_not_match_and_the_event_is_kept_uncosted() -> None:
    con, _ = load_events(
        [
            ev("low", "c", "m", naive(1), x="0.5"),
            ev("none", "c", "m", naive(2)),  # x is null: `x > 1` is no match, not an error
            ev("high", "c", "m", naive(3), x="3"),
        ]
    )
    result = cost(con, catalog(FILTERED), CustomerInputs())
    assert costs(result) == [("low", None, None), ("none", None, None), ("high", "gold", "2.00")]
    assert result.rejected.is_empty()


def test_an_event_without_event_name_is_kept_uncosted() -> None:
    frame = events_frame(
        [ev("named", "c", "m", naive(1), x="2"), ev("unnamed", "c", "m", naive(2), x="2")]
    ).with_columns(
        pl.when(pl.col("event_id") == "unnamed")
        .then(None)
        .otherwise("event_name")
        .alias("event_name")
    )
    result = cost(raw_events_table(frame), catalog(FILTERED), CustomerInputs())
    assert costs(result) == [("named", "gold", "2.00"), ("unnamed", None, None)]


def test_reported_usage_is_not_costed() -> None:
    con, _ = load_events([ev("e", "c", "m", naive(1), x="2")])
    con.execute(
        "CREATE TABLE reported_usage AS SELECT 'c' AS customer_id, "
        "TIMESTAMP '2024-01-01 05:00:00' AS timestamp, 'stored' AS feature_id, 7 AS quantity"
    )
    result = cost(con, catalog(FILTERED), CustomerInputs())
    assert costs(result) == [("e", "gold", "2.00")]


def test_duplicate_event_ids_are_refused_naming_them() -> None:
    frame = events_frame(
        [
            ev("dup-1", "c", "chat", naive(1), tokens=1),
            ev("dup-1", "d", "chat", naive(2), tokens=1),
            ev("ok", "c", "chat", naive(3), tokens=1),
            ev("dup-2", "c", "img", naive(4)),
            ev("dup-2", "c", "img", naive(4)),
        ]
    )
    with pytest.raises(InputError) as error:
        cost(raw_events_table(frame), catalog(), CustomerInputs())
    message = str(error.value)
    assert "2 event ids appear more than once" in message
    assert "'dup-1'" in message and "'dup-2'" in message and "'ok'" not in message


def test_events_without_an_event_id_are_refused() -> None:
    frame = events_frame([ev("a", "c", "chat", naive(1), tokens=1)]).vstack(
        events_frame([ev("b", "c", "chat", naive(2), tokens=1)]).with_columns(
            pl.lit(None, pl.String).alias("event_id")
        )
    )
    with pytest.raises(InputError, match="1 events have no event_id"):
        cost(raw_events_table(frame), catalog(), CustomerInputs())


def test_consumptions_are_ordered_by_customer_time_event_and_feature() -> None:
    rows = [
        ev("e9", "b", "chat", naive(1), tokens=2),
        ev("e2", "b", "chat", naive(1), tokens=2),  # same customer and time: event id order
        ev("e5", "B", "img", naive(9)),  # upper case sorts before lower case
        ev("e1", "b", "img", naive(1)),
        ev("e0", "a", "chat", naive(5), tokens=2),
        ev("e3", "a", "other", naive(2)),
    ]
    result = cost(load_events(rows)[0], catalog(), CustomerInputs())
    order = result.consumptions.select("customer_id", "event_id", "feature_id").rows()
    assert order == [
        ("B", "e5", None),
        ("a", "e3", None),
        ("a", "e0", "chat"),
        ("a", "e0", "chat_requests"),
        ("b", "e1", None),
        ("b", "e2", "chat"),
        ("b", "e2", "chat_requests"),
        ("b", "e9", "chat"),
        ("b", "e9", "chat_requests"),
    ]
    schema = result.consumptions.schema
    assert schema["timestamp"] == pl.Datetime("us", "UTC")
    assert schema["cost"] == pl.Decimal(38, 2)


def test_without_ties_in_time_the_order_is_by_customer_then_time_not_event_id() -> None:
    rows = [
        ev("e1", "b", "chat", naive(7), tokens=2),  # later than e8: time decides, not the id
        ev("e8", "b", "img", naive(3)),
        ev("e2", "b", "other", naive(5)),
        ev("e9", "a", "chat", naive(2), tokens=2),
        ev("e0", "c", "img", naive(1)),
        ev("e4", "a", "img", naive(1)),  # the same time as e0, another customer
    ]
    result = cost(load_events(rows)[0], catalog(), CustomerInputs())
    order = result.consumptions.select("customer_id", "event_id", "feature_id").rows()
    assert order == [
        ("a", "e4", None),
        ("a", "e9", "chat"),
        ("a", "e9", "chat_requests"),
        ("b", "e8", None),
        ("b", "e2", None),
        ("b", "e1", "chat"),
        ("b", "e1", "chat_requests"),
        ("c", "e0", None),
    ]


LARGE = """
currencies:
  - {{id: CR, name: Credits, unit_price: 0.01, precision: 2, rounding: {rounding}}}
features:
  - {{id: f, name: F, type: metered, meter: {{source: events, event_name: m, aggregation: count}}}}
default_credit_rates:
  - {{feature: f, mode: formula, formula: "x"}}
"""


@pytest.mark.parametrize(
    ("rounding", "expected"),
    [
        ("half_up", ["9999.99", "10000.00", "10000.00", "1000000.00", "123456789.02"]),
        ("up", ["10000.00", "10000.00", "10000.01", "1000000.00", "123456789.02"]),
        ("down", ["9999.99", "9999.99", "10000.00", "999999.99", "123456789.01"]),
    ],
)
def test_small_and_large_costs_round_alike(rounding: str, expected: list[str]) -> None:
    # Costs below 10^4 (at 2 places) are rounded in 64 bits, larger ones in 128: same rules.
    values = ["9999.994", "9999.995", "10000.001", "999999.995", "123456789.015"]
    rows = [ev(f"e{i}", "c", "m", naive(1, i), x=v) for i, v in enumerate(values)]
    con, _ = load_events(rows)
    result = cost(con, catalog(LARGE.format(rounding=rounding)), CustomerInputs())
    assert [str(c) for c in result.consumptions["cost"]] == expected
    assert all(isinstance(c, Decimal) for c in result.consumptions["cost"])
