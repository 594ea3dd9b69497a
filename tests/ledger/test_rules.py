"""Hand-written cases for every SPEC §5 rule, each small enough to check by eye.

Every case runs both engines (they must agree) and compares the ledger with rows written by hand:
(when, entry type, grant, amount, balance after[, event, feature]).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from pricing_lab.errors import ValidationError
from pricing_lab.ledger import balance_at
from tests.ledger.helpers import (
    CR,
    TK,
    at,
    entitlement,
    entries,
    event,
    grant,
    recharge,
    rollover,
    run,
)


def test_a_grant_takes_effect_and_an_event_consumes_it() -> None:
    result = run(
        grants=[grant("g1", "10", at(1))],
        consumptions=[event("e1", at(2), ("chat", "4"))],
    )
    assert entries(result) == [
        ("01-01 00:00", "GRANTED", "g1", "10.00", "10.00"),
        ("01-02 00:00", "CONSUMED", "g1", "-4.00", "6.00", "e1", "chat"),
    ]
    assert result.ledger["entry_id"].to_list() == [1, 2]
    assert result.ledger["scenario"].to_list() == ["base", "base"]


def test_a_cost_spanning_grants_writes_one_entry_per_grant_in_priority_order() -> None:
    result = run(
        grants=[grant("late", "5", at(1), priority=1), grant("first", "3", at(1), priority=0)],
        consumptions=[event("e1", at(2), ("chat", "6"))],
    )
    assert entries(result) == [
        ("01-01 00:00", "GRANTED", "first", "3.00", "3.00"),
        ("01-01 00:00", "GRANTED", "late", "5.00", "8.00"),
        ("01-02 00:00", "CONSUMED", "first", "-3.00", "5.00", "e1", "chat"),
        ("01-02 00:00", "CONSUMED", "late", "-3.00", "2.00", "e1", "chat"),
    ]


def test_drawdown_order_expiring_first_never_expiring_last() -> None:
    result = run(
        grants=[
            grant("never", "1", at(1)),
            grant("later", "1", at(1), expires=at(20)),
            grant("sooner", "1", at(1), expires=at(10)),
        ],
        consumptions=[event("e1", at(2), ("chat", "3"))],
    )
    used = [row[2] for row in entries(result) if row[1] == "CONSUMED"]
    assert used == ["sooner", "later", "never"]


def test_drawdown_order_promotional_and_recurring_before_paid_then_oldest_then_id() -> None:
    result = run(
        grants=[
            grant("paid", "1", at(1), type="PAID", cost_basis="0.01"),
            grant("promo-b", "1", at(1)),
            grant("promo-a", "1", at(1)),
            grant("recurring-old", "1", at(1, 0, month=1), type="RECURRING"),
            grant("older-promo", "1", at(1, hour=0), type="PROMOTIONAL", priority=0),
        ],
        consumptions=[event("e1", at(2), ("chat", "5"))],
    )
    used = [row[2] for row in entries(result) if row[1] == "CONSUMED"]
    # same priority, expiry, effective time: promotional/recurring by id, then paid
    assert used == ["older-promo", "promo-a", "promo-b", "recurring-old", "paid"]


def test_drawdown_order_oldest_grant_first() -> None:
    result = run(
        grants=[grant("a-new", "1", at(2)), grant("z-old", "1", at(1))],
        consumptions=[event("e1", at(3), ("chat", "2"))],
    )
    assert [row[2] for row in entries(result) if row[1] == "CONSUMED"] == ["z-old", "a-new"]


def test_drawdown_ties_on_every_key_go_by_grant_id_auto_recharge_grants_among_them() -> None:
    # acme:a < acme:auto_recharge:CR:0 < acme:b: paid, never expiring, priority 0, all three
    # taking effect on 01-02 00:00.
    paid = {"type": "PAID", "cost_basis": "0.01"}
    result = run(
        grants=[
            grant("acme:b", "1", at(2), **paid),
            grant("g0", "5", at(1)),
            grant("acme:a", "1", at(2), **paid),
        ],
        auto_recharges=[recharge("5", "10")],
        consumptions=[event("e1", at(2), ("chat", "5")), event("e2", at(3), ("chat", "10"))],
    )
    assert entries(result) == [
        ("01-01 00:00", "GRANTED", "g0", "5.00", "5.00"),
        ("01-02 00:00", "GRANTED", "acme:a", "1.00", "6.00"),
        ("01-02 00:00", "GRANTED", "acme:b", "1.00", "7.00"),
        ("01-02 00:00", "CONSUMED", "g0", "-5.00", "2.00", "e1", "chat"),
        ("01-02 00:00", "GRANTED", "acme:auto_recharge:CR:0", "8.00", "10.00"),
        ("01-03 00:00", "CONSUMED", "acme:a", "-1.00", "9.00", "e2", "chat"),
        ("01-03 00:00", "CONSUMED", "acme:auto_recharge:CR:0", "-8.00", "1.00", "e2", "chat"),
        ("01-03 00:00", "CONSUMED", "acme:b", "-1.00", "0.00", "e2", "chat"),
        ("01-03 00:00", "GRANTED", "acme:auto_recharge:CR:1", "10.00", "10.00"),
    ]


def test_features_are_consumed_in_feature_id_order_and_zero_costs_write_nothing() -> None:
    result = run(
        grants=[grant("g1", "10", at(1))],
        consumptions=[
            event("e1", at(2), ("search", "2"), ("chat", "1.25"), ("embed", "0")),
            event("e2", at(3), ("chat", "0")),
        ],
    )
    assert entries(result)[1:] == [
        ("01-02 00:00", "CONSUMED", "g1", "-1.25", "8.75", "e1", "chat"),
        ("01-02 00:00", "CONSUMED", "g1", "-2.00", "6.75", "e1", "search"),
    ]


def test_overdraft_grant_is_created_on_first_need_without_granted_entry() -> None:
    result = run(
        grants=[grant("g1", "2", at(1))],
        consumptions=[event("e1", at(2), ("chat", "5")), event("e2", at(3), ("chat", "1"))],
    )
    assert entries(result) == [
        ("01-01 00:00", "GRANTED", "g1", "2.00", "2.00"),
        ("01-02 00:00", "CONSUMED", "g1", "-2.00", "0.00", "e1", "chat"),
        ("01-02 00:00", "CONSUMED", "acme:overdraft:CR", "-3.00", "-3.00", "e1", "chat"),
        ("01-03 00:00", "CONSUMED", "acme:overdraft:CR", "-1.00", "-4.00", "e2", "chat"),
    ]
    assert result.ledger["grant_type"].to_list()[-1] == "OVERDRAFT"
    assert result.balances["overdraft_debt"].to_list() == [Decimal("4.00")]


def test_consumption_without_any_grant_or_subscription_goes_to_overdraft() -> None:
    result = run(consumptions=[event("e1", at(2), ("chat", "1.5"))])
    assert entries(result) == [
        ("01-02 00:00", "CONSUMED", "acme:overdraft:CR", "-1.50", "-1.50", "e1", "chat"),
    ]


def test_a_later_grant_settles_overdraft_debt_partly_then_fully() -> None:
    result = run(
        grants=[
            grant("small", "1", at(3), type="PAID", cost_basis="0.01"),
            grant("big", "10", at(4), type="PAID", cost_basis="0.01"),
        ],
        consumptions=[event("e1", at(2), ("chat", "3"))],
        until=at(5),
    )
    assert entries(result) == [
        ("01-02 00:00", "CONSUMED", "acme:overdraft:CR", "-3.00", "-3.00", "e1", "chat"),
        ("01-03 00:00", "GRANTED", "small", "1.00", "-2.00"),
        ("01-03 00:00", "CONSUMPTION_TRANSFER_SOURCE", "small", "-1.00", "-3.00"),
        ("01-03 00:00", "CONSUMPTION_TRANSFER_TARGET", "acme:overdraft:CR", "1.00", "-2.00"),
        ("01-04 00:00", "GRANTED", "big", "10.00", "8.00"),
        ("01-04 00:00", "CONSUMPTION_TRANSFER_SOURCE", "big", "-2.00", "6.00"),
        ("01-04 00:00", "CONSUMPTION_TRANSFER_TARGET", "acme:overdraft:CR", "2.00", "8.00"),
    ]


def test_block_mode_denies_the_whole_event_and_lists_it() -> None:
    result = run(
        enforcement="block",
        grants=[grant("g1", "5", at(1))],
        consumptions=[
            event("e1", at(2), ("chat", "3"), ("search", "3")),  # 6 > 5: denied as a whole
            event("e2", at(3), ("chat", "5")),  # exactly the balance: allowed
            event("e3", at(4), ("chat", "0")),  # costs nothing: never denied
        ],
    )
    assert entries(result) == [
        ("01-01 00:00", "GRANTED", "g1", "5.00", "5.00"),
        ("01-03 00:00", "CONSUMED", "g1", "-5.00", "0.00", "e2", "chat"),
    ]
    denied = result.denied_events.row(0, named=True)
    assert result.denied_events.height == 1
    assert (denied["event_id"], denied["reason"], denied["currency_id"]) == (
        "e1",
        "insufficient_credits",
        "CR",
    )
    assert (denied["cost"], denied["balance"]) == (Decimal("6.00"), Decimal("5.00"))
    assert result.balances["events_denied"].to_list() == [1]


def test_block_mode_an_event_short_in_one_currency_is_denied_in_all() -> None:
    result = run(
        currencies=(CR, TK),
        enforcement="block",
        grants=[grant("cr", "5", at(1)), grant("tk", "1", at(1), currency="TK")],
        consumptions=[event("e1", at(2), ("chat", "1"), ("image", "2", "TK"))],
    )
    assert [row[1] for row in entries(result)] == ["GRANTED", "GRANTED"]
    assert result.denied_events["currency_id"].to_list() == ["TK"]


def test_expiry_removes_the_remaining_amount_and_the_grant_is_unusable_at_expires_at() -> None:
    result = run(
        grants=[grant("promo", "10", at(1), expires=at(5)), grant("paid", "3", at(1), type="PAID")],
        consumptions=[event("e1", at(2), ("chat", "4")), event("e2", at(5), ("chat", "1"))],
    )
    assert entries(result) == [
        ("01-01 00:00", "GRANTED", "promo", "10.00", "10.00"),
        ("01-01 00:00", "GRANTED", "paid", "3.00", "13.00"),
        ("01-02 00:00", "CONSUMED", "promo", "-4.00", "9.00", "e1", "chat"),
        ("01-05 00:00", "EXPIRED", "promo", "-6.00", "3.00"),
        ("01-05 00:00", "CONSUMED", "paid", "-1.00", "2.00", "e2", "chat"),
    ]
    assert result.summary["breakage"].to_list() == [Decimal(0)]


def test_an_empty_grant_writes_nothing_when_it_expires_or_is_voided() -> None:
    result = run(
        grants=[grant("g1", "2", at(1), expires=at(5)), grant("g2", "1", at(1), voided=at(6))],
        consumptions=[event("e1", at(2), ("chat", "3"))],
        until=at(10),
    )
    assert [row[1] for row in entries(result)] == ["GRANTED", "GRANTED", "CONSUMED", "CONSUMED"]


def test_void_removes_the_remaining_amount() -> None:
    result = run(
        grants=[grant("g1", "10", at(1), voided=at(3))],
        consumptions=[event("e1", at(2), ("chat", "4")), event("e2", at(3), ("chat", "1"))],
    )
    assert entries(result) == [
        ("01-01 00:00", "GRANTED", "g1", "10.00", "10.00"),
        ("01-02 00:00", "CONSUMED", "g1", "-4.00", "6.00", "e1", "chat"),
        ("01-03 00:00", "VOIDED", "g1", "-6.00", "0.00"),
        ("01-03 00:00", "CONSUMED", "acme:overdraft:CR", "-1.00", "-1.00", "e2", "chat"),
    ]


def test_a_grant_voided_at_or_before_it_takes_effect_writes_nothing() -> None:
    result = run(
        grants=[
            grant("at", "10", at(2), voided=at(2)),
            grant("before", "10", at(3), voided=at(1)),
            grant("kept", "1", at(1)),
        ],
        until=at(4),
    )
    assert entries(result) == [("01-01 00:00", "GRANTED", "kept", "1.00", "1.00")]


def test_order_at_one_instant_expiry_void_grant_then_event() -> None:
    noon = at(5, 12)
    result = run(
        grants=[
            grant("old", "5", at(1), expires=noon),
            grant("voided", "5", at(1), voided=noon, type="PAID"),
            grant("new", "5", noon),
        ],
        consumptions=[event("e1", noon, ("chat", "1"))],
    )
    assert [row[1:3] for row in entries(result) if row[0] == "01-05 12:00"] == [
        ("EXPIRED", "old"),
        ("VOIDED", "voided"),
        ("GRANTED", "new"),
        ("CONSUMED", "new"),
    ]


def test_events_at_one_instant_run_in_event_id_order() -> None:
    result = run(
        grants=[grant("g1", "10", at(1))],
        consumptions=[event("e2", at(2), ("chat", "1")), event("e10", at(2), ("chat", "2"))],
    )
    assert [row[5] for row in entries(result)[1:]] == ["e10", "e2"]  # "e10" < "e2" as text


def test_recurring_grants_anchor_on_month_end_and_end_with_the_subscription() -> None:
    result = run(
        recurring=[entitlement("pro", "100", at(31), end=at(15, month=4))],
        until=at(1, month=6),
    )
    assert entries(result) == [
        ("01-31 00:00", "GRANTED", "acme:pro:CR:0", "100.00", "100.00"),
        ("02-29 00:00", "EXPIRED", "acme:pro:CR:0", "-100.00", "0.00"),
        ("02-29 00:00", "GRANTED", "acme:pro:CR:1", "100.00", "100.00"),
        ("03-31 00:00", "EXPIRED", "acme:pro:CR:1", "-100.00", "0.00"),
        ("03-31 00:00", "GRANTED", "acme:pro:CR:2", "100.00", "100.00"),
        ("04-15 00:00", "EXPIRED", "acme:pro:CR:2", "-100.00", "0.00"),
    ]
    assert result.ledger["grant_type"].unique().to_list() == ["RECURRING"]
    assert result.ledger["grant_source"].unique().to_list() == ["plan"]


def test_recurring_periods_only_start_before_until_and_nothing_is_written_at_until() -> None:
    result = run(recurring=[entitlement("pro", "100", at(1))], until=at(1, month=3))
    assert entries(result) == [
        ("01-01 00:00", "GRANTED", "acme:pro:CR:0", "100.00", "100.00"),
        ("02-01 00:00", "EXPIRED", "acme:pro:CR:0", "-100.00", "0.00"),
        ("02-01 00:00", "GRANTED", "acme:pro:CR:1", "100.00", "100.00"),
        # the expiry at 03-01 is at `until`: not written; period 2 starts at `until`: not generated
    ]


def test_yearly_recurring_from_feb_29_gives_feb_28() -> None:
    result = run(
        recurring=[entitlement("pro", "5", at(29, month=2), cadence="yearly", kind="addon")],
        until=at(1, month=3, year=2025),
    )
    assert [row[:3] for row in entries(result)] == [
        ("02-29 00:00", "GRANTED", "acme:pro:CR:0"),
        ("02-28 00:00", "EXPIRED", "acme:pro:CR:0"),
        ("02-28 00:00", "GRANTED", "acme:pro:CR:1"),
    ]
    assert result.ledger["grant_source"].unique().to_list() == ["addon"]


def test_the_same_plan_subscribed_again_counts_on_and_does_not_roll_across_subscriptions() -> None:
    # One subscription ends Feb 1 as another to the same plan starts: a different entitlement, so
    # January's grant expires whole (no rollover) and the ids keep counting (docs/ledger.md).
    cap = rollover(max_amount="5")
    result = run(
        recurring=[
            entitlement("p", "10", at(1), end=at(1, month=2), rollover=cap),
            entitlement("p", "10", at(1, month=2), rollover=cap),
        ],
        consumptions=[
            event("e1", at(5), ("chat", "1")),
            event("e2", at(5, month=3), ("chat", "1")),
        ],
    )
    assert entries(result) == [
        ("01-01 00:00", "GRANTED", "acme:p:CR:0", "10.00", "10.00"),
        ("01-05 00:00", "CONSUMED", "acme:p:CR:0", "-1.00", "9.00", "e1", "chat"),
        ("02-01 00:00", "EXPIRED", "acme:p:CR:0", "-9.00", "0.00"),
        ("02-01 00:00", "GRANTED", "acme:p:CR:1", "10.00", "10.00"),
        ("03-01 00:00", "ROLLED_OVER", "acme:p:CR:1", "-5.00", "5.00"),
        ("03-01 00:00", "EXPIRED", "acme:p:CR:1", "-5.00", "0.00"),
        ("03-01 00:00", "GRANTED", "acme:p:CR:1:rollover", "5.00", "5.00"),
        ("03-01 00:00", "GRANTED", "acme:p:CR:2", "10.00", "15.00"),
        ("03-05 00:00", "CONSUMED", "acme:p:CR:1:rollover", "-1.00", "14.00", "e2", "chat"),
    ]


def test_plan_change_ends_one_plan_and_starts_another() -> None:
    change = at(15, month=2)
    result = run(
        recurring=[
            entitlement("basic", "10", at(1), end=change),
            entitlement("pro", "50", change),
        ],
        until=at(1, month=3),
    )
    assert [row[:4] for row in entries(result)] == [
        ("01-01 00:00", "GRANTED", "acme:basic:CR:0", "10.00"),
        ("02-01 00:00", "EXPIRED", "acme:basic:CR:0", "-10.00"),
        ("02-01 00:00", "GRANTED", "acme:basic:CR:1", "10.00"),
        ("02-15 00:00", "EXPIRED", "acme:basic:CR:1", "-10.00"),
        ("02-15 00:00", "GRANTED", "acme:pro:CR:0", "50.00"),
    ]


def test_auto_recharge_tops_up_to_target_right_after_the_event() -> None:
    result = run(
        grants=[grant("g1", "10", at(1))],
        auto_recharges=[recharge("5", "20.004")],
        consumptions=[event("e1", at(2), ("chat", "6")), event("e2", at(2), ("chat", "1"))],
    )
    assert entries(result) == [
        ("01-01 00:00", "GRANTED", "g1", "10.00", "10.00"),
        ("01-02 00:00", "CONSUMED", "g1", "-6.00", "4.00", "e1", "chat"),
        # 20.004 - 4 = 16.004, rounded up to 16.01
        ("01-02 00:00", "GRANTED", "acme:auto_recharge:CR:0", "16.01", "20.01"),
        ("01-02 00:00", "CONSUMED", "g1", "-1.00", "19.01", "e2", "chat"),
    ]
    row = result.ledger.row(2, named=True)
    assert (row["grant_type"], row["grant_source"]) == ("PAID", "auto_recharge")
    assert result.balances["recharges_issued"].to_list() == [1]
    assert result.balances["recharge_spend"].to_list() == [Decimal("0.1601")]
    assert result.summary["credit_revenue"].to_list() == [Decimal("0.1601")]


def test_auto_recharge_is_cut_to_the_monthly_spend_limit_and_resets_next_month() -> None:
    # unit price 0.01: a limit of 0.15 buys 15 credits a month
    result = run(
        auto_recharges=[recharge("5", "10", limit="0.15")],
        consumptions=[
            event("e1", at(2), ("chat", "10")),  # balance -10 → 20 wanted, 15 allowed
            event("e2", at(3), ("chat", "1")),  # balance 4 → 6 wanted, 0 allowed: nothing
            event("e3", at(1, month=2), ("chat", "1")),  # new month: 10 - 3 = 7
        ],
    )
    assert entries(result) == [
        ("01-02 00:00", "CONSUMED", "acme:overdraft:CR", "-10.00", "-10.00", "e1", "chat"),
        ("01-02 00:00", "GRANTED", "acme:auto_recharge:CR:0", "15.00", "5.00"),
        (
            "01-02 00:00",
            "CONSUMPTION_TRANSFER_SOURCE",
            "acme:auto_recharge:CR:0",
            "-10.00",
            "-5.00",
        ),
        ("01-02 00:00", "CONSUMPTION_TRANSFER_TARGET", "acme:overdraft:CR", "10.00", "5.00"),
        ("01-03 00:00", "CONSUMED", "acme:auto_recharge:CR:0", "-1.00", "4.00", "e2", "chat"),
        ("02-01 00:00", "CONSUMED", "acme:auto_recharge:CR:0", "-1.00", "3.00", "e3", "chat"),
        ("02-01 00:00", "GRANTED", "acme:auto_recharge:CR:1", "7.00", "10.00"),
    ]


def test_auto_recharge_cut_is_rounded_down_to_the_precision() -> None:
    result = run(
        currencies=(TK,),  # unit price 0.5, precision 0
        auto_recharges=[recharge("1", "10", limit="2.9", currency="TK")],
        consumptions=[event("e1", at(2), ("image", "5", "TK"))],
    )
    # 15 tokens wanted (7.5 money), 2.9 money allows 5.8 tokens → 5
    assert entries(result)[1][:4] == ("01-02 00:00", "GRANTED", "acme:auto_recharge:TK:0", "5")


def test_auto_recharge_grant_expires_one_month_later_with_month_end_clamping() -> None:
    result = run(
        auto_recharges=[recharge("1", "5", expiry="1_month")],
        consumptions=[event("e1", at(31, 9), ("chat", "1"))],
        until=at(1, month=3),
    )
    assert entries(result)[-2:] == [
        ("01-31 09:00", "CONSUMPTION_TRANSFER_TARGET", "acme:overdraft:CR", "1.00", "5.00"),
        ("02-29 09:00", "EXPIRED", "acme:auto_recharge:CR:0", "-5.00", "0.00"),
    ]


def test_default_horizon_ends_one_microsecond_after_the_last_event() -> None:
    result = run(
        grants=[grant("g1", "5", at(1), expires=at(3)), grant("later", "5", at(4))],
        consumptions=[event("e1", at(2), ("chat", "1"))],
    )
    # the expiry at 01-03 and the grant at 01-04 are after the last event: not written
    assert [row[1] for row in entries(result)] == ["GRANTED", "CONSUMED"]
    assert result.until == at(2).replace(microsecond=1)


def test_an_explicit_start_leaves_out_what_happens_before_it() -> None:
    result = run(
        grants=[grant("old", "5", at(1)), grant("new", "5", at(3))],
        consumptions=[event("early", at(2), ("chat", "1")), event("e1", at(4), ("chat", "1"))],
        start=at(3),
    )
    assert [row[1:3] for row in entries(result)] == [("GRANTED", "new"), ("CONSUMED", "new")]


def test_ledger_order_is_chronological_then_customer_id() -> None:
    result = run(
        grants=[
            grant("gb", "5", at(1), customer="b"),
            grant("ga", "5", at(2), customer="a"),
            grant("gc", "5", at(2), customer="c"),
        ],
        consumptions=[event("e1", at(3), ("chat", "1"), customer="b")],
    )
    # at(1) b's grant; at(2) a's then c's grant (same instant: customer id order); at(3) b's event.
    assert [row[0] for row in entries(result, customer=True)] == ["b", "a", "c", "b"]
    assert result.ledger["entry_id"].to_list() == [1, 2, 3, 4]


def test_adding_later_events_keeps_every_earlier_entry_and_its_id() -> None:
    grants = [grant("ga", "5", at(1), customer="a"), grant("gb", "5", at(1), customer="b")]
    early = [event("e1", at(2), ("chat", "1"), customer="b")]
    later = [*early, event("e2", at(5), ("chat", "2"), customer="a")]
    before = run(grants=grants, consumptions=early, until=at(3)).ledger
    after = run(grants=grants, consumptions=later, until=at(6)).ledger
    assert after.head(before.height).equals(before)
    assert after.height == before.height + 1


def test_balances_per_currency_are_separate() -> None:
    result = run(
        currencies=(CR, TK),
        grants=[grant("cr", "5", at(1)), grant("tk", "7", at(1), currency="TK")],
        consumptions=[event("e1", at(2), ("chat", "1"), ("image", "2", "TK"))],
    )
    assert entries(result) == [
        ("01-01 00:00", "GRANTED", "cr", "5.00", "5.00"),
        ("01-01 00:00", "GRANTED", "tk", "7.00", "7.00"),
        ("01-02 00:00", "CONSUMED", "cr", "-1.00", "4.00", "e1", "chat"),
        ("01-02 00:00", "CONSUMED", "tk", "-2.00", "5.00", "e1", "image"),
    ]


def test_balance_query_at_an_instant_gives_totals_and_grants_left_at_the_currency_scale() -> None:
    result = run(
        grants=[grant("g1", "10", at(1), expires=at(5)), grant("g2", "4", at(3), type="PAID")],
        consumptions=[event("e1", at(2), ("chat", "6")), event("e2", at(4), ("chat", "9"))],
    )

    def query(when: datetime, customer: str = "acme") -> tuple[object, ...]:
        b = balance_at(result.ledger, customer, "CR", when)
        left = [(g.grant_id, str(g.remaining)) for g in b.grants]
        return str(b.balance), str(b.granted), str(b.consumed), left

    assert query(at(1, 12)) == ("10.00", "10.00", "0.00", [("g1", "10.00")])
    assert query(at(3)) == ("8.00", "14.00", "6.00", [("g1", "4.00"), ("g2", "4.00")])
    # e2 costs 9: 4 from g1 (expiring first), 4 from g2, 1 into overdraft
    assert query(at(4)) == ("-1.00", "14.00", "15.00", [("acme:overdraft:CR", "-1.00")])
    assert query(at(1) - timedelta(days=1)) == ("0.00", "0.00", "0.00", [])
    assert query(at(4), "nobody") == ("0.00", "0.00", "0.00", [])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"grants": [grant("g", "1.001", at(1))]}, "more than 2 decimal places"),
        ({"grants": [grant("g", "0", at(1))]}, "greater than 0"),
        ({"grants": [grant("g", "1", at(1)), grant("g", "1", at(2))]}, "duplicate grant id"),
        ({"grants": [grant("acme:overdraft:CR", "1", at(1))]}, "reserved"),
        ({"grants": [grant("g", "1", at(2), expires=at(1))]}, "expires_at must be after"),
        ({"grants": [grant("g", "1", at(1), currency="XX")]}, "unknown currency"),
        ({"consumptions": [event("e", at(1), ("chat", "0.001"))]}, "more decimal places"),
        ({"consumptions": [event("e", at(1), ("chat", "-1"))]}, "must not be negative"),
        ({"consumptions": [event("e", at(1), ("c", "1"), ("c", "2"))]}, "twice in one event"),
        ({"auto_recharges": [recharge("1", "2"), recharge("1", "3")]}, "one auto-recharge"),
    ],
)
def test_bad_inputs_are_refused_with_every_problem(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        run(**fields)
    assert message in str(caught.value)


def test_replay_problems_name_the_record_by_its_id_not_its_position() -> None:
    # A customer file's grants and plans reach the replay as one list: a position there names
    # nothing the user wrote, the ids do (as the customer checks' `grants[acme:grant:0]`).
    cap = rollover(max_amount="5")
    with pytest.raises(ValidationError) as caught:
        run(
            grants=[
                grant("ok", "1", at(1)),
                grant("x", "1.001", at(1)),
                grant("acme:p:CR:0:rollover", "1", at(1)),
            ],
            recurring=[
                entitlement("p", "10", at(1), rollover=cap),
                entitlement("q", "2.001", at(1)),
            ],
            until=at(1, month=3),
        )
    assert [(p.path, p.message) for p in caught.value.problems] == [
        ("grants[x]", "amount has more than 2 decimal places"),
        ("recurring[acme:q:CR]", "amount has more than 2 decimal places"),
    ]
    with pytest.raises(ValidationError) as caught:
        run(
            grants=[grant("acme:p:CR:0:rollover", "1", at(1))],
            recurring=[entitlement("p", "10", at(1), rollover=cap)],
            until=at(1, month=3),
        )
    assert [(p.path, p.message) for p in caught.value.problems] == [
        (
            "grants[acme:p:CR:0:rollover]",
            "'acme:p:CR:0:rollover' is the id of a recurring or rollover grant the replay makes",
        )
    ]


def test_validation_lists_every_problem_at_once() -> None:
    with pytest.raises(ValidationError) as caught:
        run(grants=[grant("a", "0", at(1)), grant("b", "1", at(1), currency="XX")])
    assert len(caught.value.problems) == 2


def test_the_same_bad_figure_is_reported_for_each_record_and_currency() -> None:
    # 1.5 has too many places for TK (precision 0) but not for CR (precision 2); every record
    # with a bad figure is named, however many share it.
    with pytest.raises(ValidationError) as caught:
        run(
            currencies=(CR, TK),
            grants=[
                grant("a", "1.5", at(1), currency="TK"),
                grant("b", "1.5", at(1)),
                grant("c", "1.50", at(1), currency="TK"),
                grant("d", "1", at(1), cost_basis="NaN"),
                grant("e", "1", at(1), cost_basis="NaN"),
            ],
        )
    places = [(p.path, p.message) for p in caught.value.problems]
    assert places == [
        ("grants[a]", "amount has more than 0 decimal places"),
        ("grants[c]", "amount has more than 0 decimal places"),
        ("grants[d].cost_basis", "must be a finite number"),
        ("grants[e].cost_basis", "must be a finite number"),
    ]
