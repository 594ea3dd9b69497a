"""Margin of a replay: revenue recognised (overdraft at settlement, oldest debt first), breakage,
dated costs to serve with unknown costs counted, plans, denied and rejected events, the outputs."""

from __future__ import annotations

import dataclasses
import json
import random
from decimal import Decimal
from pathlib import Path

import polars as pl

from pricing_lab.ledger.model import Grant, Subscription
from pricing_lab.simulation.customers import CustomerInputs
from pricing_lab.simulation.margin import margin_by, negative_margin_customers
from pricing_lab.simulation.partitioned import simulate_partitioned
from pricing_lab.simulation.simulate import SimulationResult, simulate
from tests.simulation.helpers import at, catalog, ev, load_events, naive

# Credits CR at 0.01 USD. `chat` costs `coalesce(x, 1)` credits (x = -1 is rejected) and to serve
# 0.004 USD per request until February, then 0.002 USD per token; `docs` costs 2 credits and
# nothing to serve; `ping` has no credit rate but costs 0.001 USD to serve.
MARGIN_CATALOG = """
currencies:
  - {id: CR, name: Credits, unit_price: 0.01, precision: 2}
features:
  - id: chat
    name: Chat
    type: metered
    meter: {source: events, event_name: chat}
    cost:
      - {formula: "0.004"}
      - {from: 2024-02-01, formula: 0.002 * tokens}
  - {id: docs, name: Docs, type: metered, meter: {source: events, event_name: docs}}
  - id: ping
    name: Ping
    type: metered
    meter: {source: events, event_name: ping}
    cost: [{formula: "0.001"}]
default_credit_rates:
  - {feature: chat, mode: formula, formula: "coalesce(x, 1)"}
  - {feature: docs, mode: formula, formula: "2"}
plans:
  - id: pro
    name: Pro
    entitlements: [{kind: credit, currency: CR, amount: 1}]
    credit_rates:
      - {feature: chat, mode: formula, formula: "1"}
  - id: basic
    name: Basic
    credit_rates:
      - {feature: chat, mode: formula, formula: "1"}
"""


def paid(grant_id: str, customer: str, amount: int, basis: str, day: int) -> Grant:
    return Grant(
        grant_id=grant_id,
        customer_id=customer,
        currency_id="CR",
        amount=Decimal(amount),
        type="PAID",
        effective_at=at(day),
        expires_at=at(31),
        cost_basis=Decimal(basis),
        source="top_up",
    )


CUSTOMERS = CustomerInputs(
    grants=(
        paid("a:paid", "ann", 3, "0.01", 1),
        paid("a:top1", "ann", 2, "0.02", 10),  # settles chat's 1 and docs' first 1 of debt
        paid("a:top2", "ann", 10, "0.03", 20),  # settles docs' last 1; 9 left expire on the 31st
    ),
    subscriptions=(
        Subscription(
            subscription_id="cid:pro", customer_id="cid", plan_id="pro", start=at(1), end=at(15)
        ),
    ),
)
EVENTS = [
    ev("a1", "ann", "chat", naive(2)),
    ev("a2", "ann", "chat", naive(3)),
    ev("a3", "ann", "chat", naive(4)),
    ev("a4", "ann", "chat", naive(5)),  # overdraft: 1
    ev("a5", "ann", "docs", naive(6)),  # overdraft: 2
    ev("a6", "ann", "chat", naive(7), x=-1),  # rejected: not served
    ev("a7", "ann", "ping", naive(8)),  # no credits, but served
    ev("a8", "ann", "chat", naive(5, month=2), tokens=3),  # 0.006 to serve; debt never settled
    ev("a9", "ann", "chat", naive(6, month=2)),  # no tokens: cost to serve unknown
    ev("c1", "cid", "chat", naive(3)),  # on pro: drawn from its recurring credit (basis 0)
    ev("c2", "cid", "chat", naive(20)),  # after the subscription ended: no plan
]


def replay(rows: list[dict[str, object]], enforcement: str = "overdraft") -> SimulationResult:
    con, report = load_events(rows)
    return simulate(
        con,
        catalog(MARGIN_CATALOG),
        CUSTOMERS,
        ingest=report,
        enforcement=enforcement,  # type: ignore[arg-type]
    )


def money(text: str) -> Decimal:
    return Decimal(text)


def test_revenue_breakage_and_costs_to_serve_per_customer_feature_and_plan() -> None:
    margin = replay(EVENTS).margin
    rows = margin.select(
        "customer_id",
        "currency_id",
        "feature_id",
        "plan_id",
        "revenue",
        "breakage",
        "cost_to_serve",
        "gross_margin",
        "events",
        "unknown_cost_events",
    ).rows()
    zero = Decimal(0)
    assert rows == [
        ("ann", None, "ping", "(none)", zero, zero, money("0.001"), money("-0.001"), 1, 0),
        ("ann", "CR", None, "(none)", zero, money("0.27"), zero, money("0.27"), 0, 0),
        # 3 × 0.01 from the paid grant, then the 1 credit on overdraft settled by top1 at 0.02.
        ("ann", "CR", "chat", "(none)", money("0.05"), zero, money("0.022"), money("0.028"), 6, 1),
        # 2 credits on overdraft: 1 settled by top1 (0.02), the other by top2 (0.03).
        ("ann", "CR", "docs", "(none)", money("0.05"), zero, zero, money("0.05"), 0, 0),
        ("cid", "CR", "chat", "(none)", zero, zero, money("0.004"), money("-0.004"), 1, 0),
        ("cid", "CR", "chat", "pro", zero, zero, money("0.004"), money("-0.004"), 1, 0),
    ]
    chat = margin.filter(pl.col("feature_id") == "chat", pl.col("customer_id") == "ann")
    assert chat["margin_share"].to_list() == [0.028 / 0.05]
    assert chat["unknown_cost_share"].to_list() == [1 / 6]


def test_margin_per_customer_feature_plan_and_the_customers_losing_money() -> None:
    margin = replay(EVENTS).margin
    per_customer = margin_by(margin, ["customer_id"])
    assert per_customer.select("customer_id", "gross_margin").rows() == [
        ("ann", money("0.347")),  # 0.05 + 0.05 + 0.27 - 0.022 - 0.001
        ("cid", money("-0.008")),
    ]
    assert margin_by(margin, ["plan_id"]).select("plan_id", "cost_to_serve").rows() == [
        ("(none)", money("0.027")),
        ("pro", money("0.004")),
    ]
    assert margin_by(margin, []).select("revenue", "breakage", "cost_to_serve").row(0) == (
        money("0.10"),
        money("0.27"),
        money("0.031"),
    )
    assert negative_margin_customers(margin)["customer_id"].to_list() == ["cid"]


def test_denied_events_are_not_served() -> None:
    # ann in block mode: a4 and a5 exceed the balance and are denied, as are February's chats.
    result = replay(EVENTS, enforcement="block")
    denied = set(result.denied_events["event_id"])
    assert {"a4", "a5", "a8", "a9"} <= denied
    chat = result.margin.filter(pl.col("customer_id") == "ann", pl.col("feature_id") == "chat")
    assert chat.select("events", "cost_to_serve", "revenue").row(0) == (
        3,
        money("0.012"),
        money("0.03"),
    )


def test_outputs_are_written_exactly_and_the_same_in_any_row_order(tmp_path: Path) -> None:
    first = replay(EVENTS)
    shuffled = list(EVENTS)
    random.Random(3).shuffle(shuffled)
    first.write(tmp_path / "a")
    replay(shuffled).write(tmp_path / "b")
    for name in ("margin.parquet", "summary.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    written = pl.read_parquet(tmp_path / "a" / "margin.parquet")
    assert written.schema["cost_to_serve"] == pl.Decimal(38, 12)
    assert written.equals(first.margin)
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())["margin"]
    assert summary["totals"]["gross_margin"] == "0.339000000000"
    assert summary["totals"]["unknown_cost_events"] == 1
    assert summary["negative_margin_customers"] == 1
    assert [row["customer_id"] for row in summary["worst_customers"]] == ["cid"]
    assert [row["feature_id"] for row in summary["features"]] == [None, "chat", "docs", "ping"]


def test_a_partitioned_replay_writes_the_same_margin(tmp_path: Path) -> None:
    # Each range's rejected and denied events are taken off the costs served in that range.
    con, report = load_events(EVENTS)
    whole = simulate(con, catalog(MARGIN_CATALOG), CUSTOMERS, ingest=report, enforcement="block")
    whole.write(tmp_path / "whole")
    simulate_partitioned(
        con,
        catalog(MARGIN_CATALOG),
        CUSTOMERS,
        ingest=report,
        enforcement="block",
        out_dir=tmp_path / "parts",
        partitions=2,
    )
    for name in ("margin.parquet", "summary.json"):
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "parts" / name).read_bytes()


def test_partitions_with_different_cost_basis_places_write_the_same_margin(
    tmp_path: Path,
) -> None:
    # ann's 11-place cost basis needs 13 places of money (credits have 2); cid's range alone 12.
    customers = dataclasses.replace(
        CUSTOMERS,
        grants=(paid("a:paid", "ann", 3, "0.00000000001", 1),),
    )
    con, report = load_events(EVENTS)
    whole = simulate(con, catalog(MARGIN_CATALOG), customers, ingest=report)
    assert whole.margin.schema["revenue"] == pl.Decimal(38, 13)
    whole.write(tmp_path / "whole")
    simulate_partitioned(
        con, catalog(MARGIN_CATALOG), customers, ingest=report, out_dir=tmp_path / "p", partitions=2
    )
    margin = "margin.parquet"
    assert (tmp_path / "whole" / margin).read_bytes() == (tmp_path / "p" / margin).read_bytes()


def test_revenue_is_placed_on_the_plan_in_force_when_it_is_recognised() -> None:
    # dan: one subscription ending mid-month; eve: two subscriptions with a gap between them.
    def basic(name: str, customer: str, start: int, end: int | None) -> Subscription:
        return Subscription(
            subscription_id=name,
            customer_id=customer,
            plan_id="basic",
            start=at(start),
            end=None if end is None else at(end),
        )

    customers = CustomerInputs(
        grants=(paid("d:paid", "dan", 5, "0.01", 1), paid("e:paid", "eve", 5, "0.01", 1)),
        subscriptions=(
            basic("d:1", "dan", 1, 15),
            basic("e:1", "eve", 1, 10),
            basic("e:2", "eve", 20, None),
        ),
    )
    rows = [
        ev("d1", "dan", "chat", naive(3)),
        ev("d2", "dan", "chat", naive(20)),
        ev("e1", "eve", "chat", naive(5)),
        ev("e2", "eve", "chat", naive(15)),
        ev("e3", "eve", "chat", naive(25)),
    ]
    con, report = load_events(rows)
    margin = simulate(con, catalog(MARGIN_CATALOG), customers, ingest=report).margin
    chat = margin.filter(pl.col("feature_id") == "chat")
    assert chat.select("customer_id", "plan_id", "revenue", "cost_to_serve").rows() == [
        ("dan", "(none)", money("0.01"), money("0.004")),
        ("dan", "basic", money("0.01"), money("0.004")),
        ("eve", "(none)", money("0.01"), money("0.004")),
        ("eve", "basic", money("0.02"), money("0.008")),
    ]


def test_a_customer_placed_row_by_row_has_each_credit_counted_once() -> None:
    # fay's subscription starts on the 10th. Her early grant is drawn only before it (placed as a
    # whole); her late grant is drawn before and after it (placed row by row).
    customers = CustomerInputs(
        grants=(paid("f:early", "fay", 1, "0.01", 1), paid("f:late", "fay", 5, "0.01", 4)),
        subscriptions=(
            Subscription(subscription_id="f:1", customer_id="fay", plan_id="basic", start=at(10)),
        ),
    )
    rows = [
        ev("f1", "fay", "chat", naive(3)),  # from f:early, no plan
        ev("f2", "fay", "chat", naive(5)),  # from f:late, no plan
        ev("f3", "fay", "chat", naive(20)),  # from f:late, on basic
    ]
    con, report = load_events(rows)
    margin = simulate(con, catalog(MARGIN_CATALOG), customers, ingest=report).margin
    chat = margin.filter(pl.col("feature_id") == "chat")
    assert chat.select("plan_id", "revenue", "events").rows() == [
        ("(none)", money("0.02"), 2),
        ("basic", money("0.01"), 1),
    ]


def test_a_customer_whose_consumption_is_all_unsettled_overdraft_has_a_margin_row(
    tmp_path: Path,
) -> None:
    # dan has no grants: his `docs` event (2 credits, nothing to serve) is overdraft never
    # settled: nothing recognised, nothing to serve, a row of zeros (in a partitioned replay too).
    rows = [*EVENTS, ev("d1", "dan", "docs", naive(6))]
    con, report = load_events(rows)
    whole = simulate(con, catalog(MARGIN_CATALOG), CUSTOMERS, ingest=report)
    dan = whole.margin.filter(pl.col("customer_id") == "dan")
    zero = Decimal(0)
    assert dan.select(
        "currency_id", "feature_id", "plan_id", "revenue", "cost_to_serve", "gross_margin"
    ).rows() == [("CR", "docs", "(none)", zero, zero, zero)]
    assert dan["margin_share"].to_list() == [None]
    whole.write(tmp_path / "whole")
    simulate_partitioned(
        con, catalog(MARGIN_CATALOG), CUSTOMERS, ingest=report, out_dir=tmp_path / "p", partitions=2
    )
    margin = "margin.parquet"
    assert (tmp_path / "whole" / margin).read_bytes() == (tmp_path / "p" / margin).read_bytes()


def test_a_cost_formula_reads_its_dimensions_whatever_their_case() -> None:
    # docs/events.md: dimension names match columns case-insensitively everywhere; `TOKENS` reads
    # the events' `tokens` (a8: 3 tokens × 0.002 = 0.006 to serve, not an unknown cost).
    con, report = load_events(EVENTS)
    upper = catalog(MARGIN_CATALOG.replace("0.002 * tokens", "0.002 * TOKENS"))
    margin = simulate(con, upper, CUSTOMERS, ingest=report).margin
    chat = margin.filter(pl.col("customer_id") == "ann", pl.col("feature_id") == "chat")
    assert chat.select("cost_to_serve", "unknown_cost_events").row(0) == (money("0.022"), 1)
