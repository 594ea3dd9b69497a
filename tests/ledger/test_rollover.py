"""Rollover of recurring credits (SPEC §5), on hand-computed ledgers: what rolls, when, how much,
and how the rolled credits are drawn."""

from __future__ import annotations

import polars as pl
import pytest

from pricing_lab.errors import ValidationError
from pricing_lab.ledger import ReplayInput, replay
from tests.ledger.helpers import TK, at, entitlement, entries, event, rollover, run


def test_unused_credits_roll_over_up_to_the_cap_and_are_drawn_first() -> None:
    result = run(
        recurring=[entitlement("pro", "100", at(1), rollover=rollover(max_percent="50"))],
        consumptions=[
            event("e1", at(10), ("chat", "30")),
            event("e2", at(10, month=2), ("chat", "60")),
        ],
        until=at(15, month=3),
    )
    assert entries(result) == [
        ("01-01 00:00", "GRANTED", "acme:pro:CR:0", "100.00", "100.00"),
        ("01-10 00:00", "CONSUMED", "acme:pro:CR:0", "-30.00", "70.00", "e1", "chat"),
        # 70 left; 50% of 100 = 50 rolls over, the other 20 expire
        ("02-01 00:00", "ROLLED_OVER", "acme:pro:CR:0", "-50.00", "20.00"),
        ("02-01 00:00", "EXPIRED", "acme:pro:CR:0", "-20.00", "0.00"),
        ("02-01 00:00", "GRANTED", "acme:pro:CR:0:rollover", "50.00", "50.00"),
        ("02-01 00:00", "GRANTED", "acme:pro:CR:1", "100.00", "150.00"),
        # the rolled credits go first: same expiry, type and start, rollover before others
        ("02-10 00:00", "CONSUMED", "acme:pro:CR:0:rollover", "-50.00", "100.00", "e2", "chat"),
        ("02-10 00:00", "CONSUMED", "acme:pro:CR:1", "-10.00", "90.00", "e2", "chat"),
        # the rollover grant is empty when it expires; it never rolls over itself
        ("03-01 00:00", "ROLLED_OVER", "acme:pro:CR:1", "-50.00", "40.00"),
        ("03-01 00:00", "EXPIRED", "acme:pro:CR:1", "-40.00", "0.00"),
        ("03-01 00:00", "GRANTED", "acme:pro:CR:1:rollover", "50.00", "50.00"),
        ("03-01 00:00", "GRANTED", "acme:pro:CR:2", "100.00", "150.00"),
    ]
    rolled = result.grants.filter(pl.col("source") == "rollover")
    assert rolled.select("grant_id", "type", "effective_at", "expires_at").rows() == [
        ("acme:pro:CR:0:rollover", "RECURRING", at(1, month=2), at(1, month=3)),
        ("acme:pro:CR:1:rollover", "RECURRING", at(1, month=3), at(1, month=4)),
    ]
    assert [str(a) for a in rolled["amount"]] == ["50.00", "50.00"]
    balance = result.balances.row(0, named=True)
    assert str(balance["rolled_over"]) == "100.00"
    assert str(balance["expired"]) == "60.00"


def test_the_smaller_cap_applies_and_the_percent_rounds_down_to_the_precision() -> None:
    # TK keeps 0 places: 15 × 10% = 1.5 rolls as 1; the 5-credit cap does not bind.
    percent = run(
        currencies=(TK,),
        recurring=[
            entitlement(
                "pro",
                "15",
                at(1),
                currency="TK",
                rollover=rollover(max_amount="5", max_percent="10"),
            )
        ],
        until=at(2, month=2),
    )
    assert [row[1:4] for row in entries(percent)][1:4] == [
        ("ROLLED_OVER", "acme:pro:TK:0", "-1"),
        ("EXPIRED", "acme:pro:TK:0", "-14"),
        ("GRANTED", "acme:pro:TK:0:rollover", "1"),
    ]
    # max_amount alone: 7.25 of the 9.5 left roll over
    amount = run(
        recurring=[entitlement("pro", "10", at(1), rollover=rollover(max_amount="7.25"))],
        consumptions=[event("e1", at(3), ("chat", "0.5"))],
        until=at(2, month=2),
    )
    assert [row[1:4] for row in entries(amount)][2:5] == [
        ("ROLLED_OVER", "acme:pro:CR:0", "-7.25"),
        ("EXPIRED", "acme:pro:CR:0", "-2.25"),
        ("GRANTED", "acme:pro:CR:0:rollover", "7.25"),
    ]


def test_less_left_than_the_cap_rolls_all_of_it_and_nothing_left_rolls_nothing() -> None:
    result = run(
        recurring=[entitlement("pro", "100", at(1), rollover=rollover(max_percent="100"))],
        consumptions=[
            event("e1", at(5), ("chat", "90")),
            event("e2", at(5, month=2), ("chat", "110")),
        ],
        until=at(2, month=3),
    )
    assert [row[1:4] for row in entries(result)] == [
        ("GRANTED", "acme:pro:CR:0", "100.00"),
        ("CONSUMED", "acme:pro:CR:0", "-90.00"),
        ("ROLLED_OVER", "acme:pro:CR:0", "-10.00"),  # no EXPIRED: nothing else is left
        ("GRANTED", "acme:pro:CR:0:rollover", "10.00"),
        ("GRANTED", "acme:pro:CR:1", "100.00"),
        ("CONSUMED", "acme:pro:CR:0:rollover", "-10.00"),
        ("CONSUMED", "acme:pro:CR:1", "-100.00"),
        # 03-01: both empty, nothing rolls, no rollover grant
        ("GRANTED", "acme:pro:CR:2", "100.00"),
    ]


def test_nothing_rolls_at_the_subscription_end_a_plan_change_or_the_horizon() -> None:
    change = at(15, month=2)
    result = run(
        recurring=[
            entitlement("basic", "10", at(1), end=change, rollover=rollover(max_percent="100")),
            entitlement("pro", "50", change, rollover=rollover(max_percent="100")),
        ],
        until=at(15, month=3),  # pro's period 0 ends at 03-15: the horizon, nothing rolls
    )
    assert [row[1:4] for row in entries(result)] == [
        ("GRANTED", "acme:basic:CR:0", "10.00"),
        ("ROLLED_OVER", "acme:basic:CR:0", "-10.00"),  # 02-01: the next period starts
        ("GRANTED", "acme:basic:CR:0:rollover", "10.00"),
        ("GRANTED", "acme:basic:CR:1", "10.00"),
        # 02-15: the plan change ends basic — its grants expire, nothing rolls into pro
        ("EXPIRED", "acme:basic:CR:0:rollover", "-10.00"),
        ("EXPIRED", "acme:basic:CR:1", "-10.00"),
        ("GRANTED", "acme:pro:CR:0", "50.00"),
    ]


def test_yearly_periods_roll_over_at_the_year_boundary() -> None:
    result = run(
        recurring=[
            entitlement("pro", "1000", at(1), cadence="yearly", rollover=rollover(max_amount="300"))
        ],
        until=at(2, year=2025),
    )
    assert [row[:4] for row in entries(result)][1:] == [
        ("01-01 00:00", "ROLLED_OVER", "acme:pro:CR:0", "-300.00"),
        ("01-01 00:00", "EXPIRED", "acme:pro:CR:0", "-700.00"),
        ("01-01 00:00", "GRANTED", "acme:pro:CR:0:rollover", "300.00"),
        ("01-01 00:00", "GRANTED", "acme:pro:CR:1", "1000.00"),
    ]
    assert result.grants.filter(pl.col("source") == "rollover")["expires_at"].to_list() == [
        at(1, year=2026)
    ]


@pytest.mark.parametrize(
    ("caps", "message"),
    [
        ({}, "recurring[acme:pro:CR].rollover: give max_amount, max_percent or both"),
        (
            {"max_amount": "0"},
            "recurring[acme:pro:CR].rollover.max_amount: amount must be greater than 0",
        ),
        (
            {"max_amount": "1.001"},
            "recurring[acme:pro:CR].rollover.max_amount: amount has more than 2",
        ),
        (
            {"max_percent": "100.5"},
            "recurring[acme:pro:CR].rollover.max_percent: must be > 0 and <= 100",
        ),
    ],
)
def test_bad_rollover_caps_are_refused(caps: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError) as error:
        replay(
            ReplayInput(
                currencies=(TK.__class__(id="CR", name="Credits", unit_price=TK.unit_price),),
                recurring=(entitlement("pro", "10", at(1), rollover=rollover(**caps)),),
                until=at(1, month=3),
            )
        )
    assert message in str(error.value)
