"""Costing: which rate applies, exact per-feature costs, rounding modes, formula rejections."""

from __future__ import annotations

from decimal import Decimal

import duckdb
import polars as pl
import pytest

from pricing_lab.errors import ValidationError
from pricing_lab.ledger.model import Subscription
from pricing_lab.simulation.costing import Costing, CustomerSpan, costed_events
from pricing_lab.simulation.customers import CustomerInputs
from pricing_lab.simulation.simulate import cost
from tests.simulation.helpers import at, catalog, ev, load_events, naive


def sub(sid: str, customer: str, plan: str, start: int, end: int | None = None, addons=()):  # type: ignore[no-untyped-def]
    return Subscription(
        subscription_id=sid,
        customer_id=customer,
        plan_id=plan,
        start=at(start),
        end=None if end is None else at(end),
        addons=tuple(addons),
    )


def costs(costing: Costing) -> list[tuple[str, str | None, str | None]]:
    """(event_id, feature_id, cost) in the table's order, costs as exact text."""
    return [
        (e, f, None if c is None else str(c))
        for e, f, c in costing.consumptions.select("event_id", "feature_id", "cost").iter_rows()
    ]


def run(rows, subscriptions=(), text=None):  # type: ignore[no-untyped-def]
    con, _ = load_events(rows)
    cat = catalog() if text is None else catalog(text)
    return cost(con, cat, CustomerInputs(subscriptions=tuple(subscriptions)))


def test_plan_rate_addon_rate_and_default_rates_without_subscription() -> None:
    rows = [
        ev("n1", "nosub", "chat", naive(3), tokens=3),  # defaults: 0.5 × 3 and 1 × 1
        ev("b1", "basic_c", "chat", naive(3), tokens=100),  # basic: 0.1 × 100; no requests rate
        ev("b2", "basic_c", "img", naive(4)),  # basic has no img rate, no add-on: costs nothing
        ev("p1", "pro_c", "chat", naive(3), tokens=10),  # pro: 0.05 × 10 (not the add-on's 9)
        ev("p2", "pro_c", "img", naive(4)),  # the add-on's rate: the plan has none for img
    ]
    result = run(
        rows,
        [
            sub("s1", "basic_c", "basic", 1),
            sub("s2", "pro_c", "pro", 1, addons=["imgpack"]),
        ],
    )
    assert costs(result) == [
        ("b1", "chat", "10.00"),
        ("b2", None, None),
        ("n1", "chat", "1.50"),
        ("n1", "chat_requests", "1.00"),
        ("p1", "chat", "0.50"),
        ("p1", "chat_requests", "0.25"),
        ("p2", "img", "2.00"),
    ]
    assert set(result.consumptions["currency_id"].drop_nulls()) == {"CR"}
    assert result.rejected.is_empty()


def test_plan_change_midway_uses_the_rate_in_force_at_each_event() -> None:
    rows = [
        ev("c0", "c", "chat", naive(1, 12), tokens=2),  # before any subscription: defaults
        ev("c1", "c", "chat", naive(10), tokens=100),  # basic
        ev("c2", "c", "chat", naive(14, 23, minute=59), tokens=100),  # basic, last minute
        ev("c3", "c", "chat", naive(15), tokens=100),  # pro from its first instant
        ev("c4", "c", "chat", naive(20, month=2), tokens=40),  # pro, open-ended
    ]
    result = run(rows, [sub("s1", "c", "basic", 2, 15), sub("s2", "c", "pro", 15)])
    assert costs(result) == [
        ("c0", "chat", "1.00"),
        ("c0", "chat_requests", "1.00"),
        ("c1", "chat", "10.00"),
        ("c2", "chat", "10.00"),
        ("c3", "chat", "5.00"),
        ("c3", "chat_requests", "0.25"),
        ("c4", "chat", "2.00"),
        ("c4", "chat_requests", "0.25"),
    ]


def test_after_a_subscription_ends_the_default_rates_apply_again() -> None:
    rows = [
        ev("a", "c", "chat", naive(5), tokens=10),
        ev("b", "c", "chat", naive(10), tokens=10),  # the end is exclusive
    ]
    result = run(rows, [sub("s1", "c", "basic", 1, 10)])
    assert costs(result) == [
        ("a", "chat", "1.00"),
        ("b", "chat", "5.00"),
        ("b", "chat_requests", "1.00"),
    ]


def test_overlapping_subscriptions_are_refused_with_their_ids() -> None:
    with pytest.raises(ValidationError) as error:
        run(
            [ev("a", "c", "chat", naive(5), tokens=1)],
            [sub("first", "c", "basic", 1, 20), sub("second", "c", "pro", 10)],
        )
    assert [(p.path, p.message) for p in error.value.problems] == [
        ("subscriptions[second]", "overlaps subscription 'first' of 'c'")
    ]


ROUNDING_CATALOG = """
currencies:
  - {{id: CR, name: Credits, unit_price: 0.01, precision: {precision}, rounding: {rounding}}}
features:
  - id: f
    name: F
    type: metered
    meter: {{source: events, event_name: m, aggregation: count}}
default_credit_rates:
  - {{feature: f, mode: formula, formula: "x"}}
"""

# value → cost per rounding mode, worked out by hand
PRECISION_2 = {
    "1.005": {"half_up": "1.01", "up": "1.01", "down": "1.00"},
    "1.004": {"half_up": "1.00", "up": "1.01", "down": "1.00"},
    "1.0001": {"half_up": "1.00", "up": "1.01", "down": "1.00"},
    "2.999": {"half_up": "3.00", "up": "3.00", "down": "2.99"},
    "0.004": {"half_up": "0.00", "up": "0.01", "down": "0.00"},
    "7": {"half_up": "7.00", "up": "7.00", "down": "7.00"},
}
PRECISION_0 = {
    "0.5": {"half_up": "1", "up": "1", "down": "0"},
    "1.5": {"half_up": "2", "up": "2", "down": "1"},
    "2.4999": {"half_up": "2", "up": "3", "down": "2"},
    "0.0001": {"half_up": "0", "up": "1", "down": "0"},
    "12": {"half_up": "12", "up": "12", "down": "12"},
}


@pytest.mark.parametrize("rounding", ["half_up", "up", "down"])
@pytest.mark.parametrize("precision", [2, 0])
def test_rounding_modes_at_precision_2_and_0(precision: int, rounding: str) -> None:
    table = PRECISION_2 if precision == 2 else PRECISION_0
    rows = [ev(f"e{i}", "c", "m", naive(1, i), x=v) for i, v in enumerate(table)]
    result = run(rows, text=ROUNDING_CATALOG.format(precision=precision, rounding=rounding))
    assert costs(result) == [
        (f"e{i}", "f", expected[rounding]) for i, expected in enumerate(table.values())
    ]


TWO_FEATURES = """
currencies:
  - {id: CR, name: Credits, unit_price: 0.01, precision: 0, rounding: half_up}
features:
  - {id: a, name: A, type: metered, meter: {source: events, event_name: m, aggregation: count}}
  - {id: b, name: B, type: metered, meter: {source: events, event_name: m, aggregation: count}}
default_credit_rates:
  - {feature: a, mode: formula, formula: "x"}
  - {feature: b, mode: formula, formula: "x"}
"""


def test_an_event_matching_several_features_has_one_cost_each_rounded_on_its_own() -> None:
    # 0.5 + 0.5 rounded together would be 1; each rounded on its own (half up) is 1 + 1.
    result = run([ev("e", "c", "m", naive(1), x="0.5")], text=TWO_FEATURES)
    assert costs(result) == [("e", "a", "1"), ("e", "b", "1")]


PER_UNIT_AND_FORMULAS = """
currencies:
  - {id: CR, name: Credits, unit_price: 0.01, precision: 2}
features:
  - {id: q, name: Q, type: metered,
     meter: {source: events, event_name: m, aggregation: sum, dimension: x}}
  - {id: r, name: R, type: metered, meter: {source: events, event_name: m, aggregation: count}}
default_credit_rates:
  - {feature: q, mode: per_unit, per_unit: 0.333}
  - {feature: r, mode: formula, formula: "1.1 * x + 1.5 * y"}
"""


def test_per_unit_times_quantity_and_formula_rates_are_exact() -> None:
    rows = [
        ev("e1", "c", "m", naive(1), x="3", y="2"),  # q: 0.999 → 1.00; r: 3.3 + 3 = 6.30
        ev("e2", "c", "m", naive(2), x="0.1", y="0.1"),  # q: 0.0333 → 0.03; r: 0.26
        ev("e3", "c", "m", naive(3), x="1000000.015", y="0"),  # q: 333000.004995 → 333000.00
    ]
    result = run(rows, text=PER_UNIT_AND_FORMULAS)
    assert costs(result) == [
        ("e1", "q", "1.00"),
        ("e1", "r", "6.30"),
        ("e2", "q", "0.03"),
        ("e2", "r", "0.26"),
        ("e3", "q", "333000.00"),
        ("e3", "r", "1100000.02"),  # 1100000.0165 half up
    ]


REJECTING = """
currencies:
  - {id: CR, name: Credits, unit_price: 0.01, precision: 2}
features:
  - {id: f1, name: F1, type: metered, meter: {source: events, event_name: m, aggregation: count}}
  - {id: f2, name: F2, type: metered, meter: {source: events, event_name: m, aggregation: count}}
default_credit_rates:
  - {feature: f1, mode: formula, formula: "x / y"}
  - {feature: f2, mode: formula, formula: "x - 1"}
"""


def test_null_or_negative_costs_reject_the_whole_event() -> None:
    rows = [
        ev("m1", "c", "m", naive(1), x="2", y="0"),  # f1: division by zero → null; f2 fine
        ev("m2", "c", "m", naive(2), x="0.5", y="1"),  # f1 0.5 fine; f2 −0.5
        ev("m3", "c", "m", naive(3), x="3", y="2"),  # accepted: f1 1.50, f2 2.00
        ev("m4", "c", "m", naive(4), y="1"),  # x null: both null
        ev("m5", "c", "m", naive(5), x="1", y="4"),  # f2 exactly 0: kept, costs 0
    ]
    con, report = load_events(rows)
    result = cost(con, catalog(REJECTING), CustomerInputs())
    assert costs(result) == [
        ("m3", "f1", "1.50"),
        ("m3", "f2", "2.00"),
        ("m5", "f1", "0.25"),
        ("m5", "f2", "0.00"),
    ]
    rejected = result.rejected.select("event_id", "customer_id", "event_name", "reason")
    assert rejected.rows() == [
        ("m1", "c", "m", "formula_null"),
        ("m2", "c", "m", "formula_negative"),
        ("m4", "c", "m", "formula_null"),
    ]
    details = dict(result.rejected.select("event_id", "detail").iter_rows())
    assert "f1" in details["m1"] and "f2" not in details["m1"]
    assert "f2" in details["m2"] and "-0.5" in details["m2"]
    # every event read is either costed or rejected, never both, never lost
    accepted = set(result.consumptions["event_id"])
    assert accepted.isdisjoint(result.rejected["event_id"])
    assert len(accepted) + result.rejected.height == report.rows_read == 5


def test_costs_are_decimals_at_the_currency_precision() -> None:
    con, _ = load_events([ev("e", "c", "chat", naive(1), tokens=7)])
    result = cost(con, catalog(), CustomerInputs())
    kind = result.consumptions.schema["cost"]
    assert kind.is_decimal() and getattr(kind, "scale", None) == 2
    assert result.consumptions["cost"].to_list() == [Decimal("3.50"), Decimal("1.00")]
    # the costing leaves no temporary tables behind
    names = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert not {n for n in names if n.startswith("__")}
    assert isinstance(con, duckdb.DuckDBPyConnection)


def test_costing_once_and_taking_customer_spans_gives_each_span_its_own_costing() -> None:
    rows = [
        ev("a1", "amy", "m", naive(1), x="2", y="0"),  # rejected: f1 divides by zero
        ev("a2", "amy", "m", naive(3), x="3", y="2"),
        ev("b1", "bob", "m", naive(2), x="1", y="4"),
        ev("b2", "bob", "m", naive(2), x="0.5", y="1"),  # rejected: f2 negative
        ev("c1", "cy", "m", naive(1), x="1", y="1"),
    ]
    con, _ = load_events(rows)
    rates = catalog(REJECTING)
    spans = [CustomerSpan(first="amy", last="amy"), CustomerSpan(first="b", last="cy")]
    with costed_events(con, [rates], [()]) as costings:
        [amy], [others] = (costings(span) for span in spans)
        [whole] = costings(None)
    assert costs(amy) == [("a2", "f1", "1.50"), ("a2", "f2", "2.00")]
    assert set(amy.rejected["event_id"]) == {"a1"}
    assert [e for e, _f, _c in costs(others)] == ["b1", "b1", "c1", "c1"]
    assert set(others.rejected["event_id"]) == {"b2"}
    # the spans' rows are exactly the whole costing's, in its order
    assert costs(whole) == costs(amy) + costs(others)
    assert whole.rejected.equals(pl.concat([amy.rejected, others.rejected]))
    # and separate costings of each customer's events agree with the spans
    alone, _ = load_events([r for r in rows if r["customer_id"] == "amy"])
    assert costs(cost(alone, rates, CustomerInputs())) == costs(amy)
    names = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert not {n for n in names if n.startswith("__")}  # the costed rows are dropped after


TWO_CURRENCY_FEATURES = """
currencies:
  - {id: CR, name: Credits, unit_price: 0.01, precision: 2}
  - {id: TK, name: Tokens, unit_price: 0.001, precision: 0}
features:
  - {id: chat, name: Chat, type: metered,
     meter: {source: events, event_name: m, aggregation: count}}
  - {id: image, name: Image, type: metered,
     meter: {source: events, event_name: img, aggregation: count}}
default_credit_rates:
  - {feature: chat, mode: per_unit, per_unit: 1, currency: CR}
  - {feature: image, mode: per_unit, per_unit: 5, currency: TK}
"""


def test_a_span_s_rows_carry_their_own_customer_feature_and_currency_ids() -> None:
    rows = [
        ev("z1", "zoe", "img", naive(1)),
        ev("a1", "amy", "m", naive(2)),
        ev("b1", "bob", "img", naive(1)),
        ev("b2", "bob", "other", naive(3)),  # matches no feature: one row, no feature
        ev("c1", "cy", "m", naive(4)),
    ]
    con, _ = load_events(rows)
    with costed_events(con, [catalog(TWO_CURRENCY_FEATURES)], [()]) as costings:
        [middle] = costings(CustomerSpan(first="b", last="cy"))
        [whole] = costings(None)
    columns = ("event_id", "customer_id", "feature_id", "currency_id")
    assert middle.consumptions.select(columns).rows() == [
        ("b1", "bob", "image", "TK"),
        ("b2", "bob", None, None),
        ("c1", "cy", "chat", "CR"),
    ]
    assert whole.consumptions.select(columns).rows() == [
        ("a1", "amy", "chat", "CR"),
        ("b1", "bob", "image", "TK"),
        ("b2", "bob", None, None),
        ("c1", "cy", "chat", "CR"),
        ("z1", "zoe", "image", "TK"),
    ]
