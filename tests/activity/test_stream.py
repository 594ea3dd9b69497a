"""The activity stream (SPEC §6), one hand-written case per kind, expected rows written by hand.

Rows are (when, kind, grant, amount, balance[, threshold][, money]); amounts are the causing
entry's signed amount (docs/activity.md).
"""

from __future__ import annotations

from decimal import Decimal

import polars as pl
import pytest

from pricing_lab.activity import activity, activity_counts
from pricing_lab.errors import ValidationError
from pricing_lab.ledger.frames import TIMESTAMP, ledger_schema
from tests.activity.helpers import rows, stream
from tests.ledger.helpers import CR, TK, at, entitlement, event, grant, recharge, rollover


def test_low_balance_depleted_overdraft_and_emptied() -> None:
    frame = stream(
        {"CR": ["5", "2"]},
        grants=[grant("g1", "10", at(1)), grant("g2", "5", at(5), type="PAID", cost_basis="0.01")],
        consumptions=[
            event("e1", at(2), ("chat", "6")),
            event("e2", at(3), ("chat", "5")),  # 4 from g1, 1 into overdraft
            event("e3", at(6), ("chat", "3")),
        ],
    )
    assert rows(frame) == [
        ("01-01 00:00", "grant.granted", "g1", "10.00", "10.00"),
        ("01-02 00:00", "credits.low_balance", None, "-6.00", "4.00", "5.00"),
        ("01-03 00:00", "credits.low_balance", None, "-4.00", "0.00", "2.00"),
        ("01-03 00:00", "credits.depleted", None, "-4.00", "0.00"),
        ("01-03 00:00", "grant.emptied", "g1", "-4.00", "0.00"),
        ("01-03 00:00", "credits.overdraft_started", "acme:overdraft:CR", "-1.00", "-1.00"),
        # g2 settles the debt: the transfer pair leaves the balance at 4, crossing nothing
        ("01-05 00:00", "grant.granted", "g2", "5.00", "4.00"),
        ("01-05 00:00", "credits.overdraft_settled", "acme:overdraft:CR", "1.00", "4.00"),
        # back at 4 (≥ 2) re-armed the threshold 2
        ("01-06 00:00", "credits.low_balance", None, "-3.00", "1.00", "2.00"),
    ]
    assert frame["activity_id"].to_list() == list(range(1, 10))
    assert set(frame["scenario"]) == {"base"}


def test_one_entry_crossing_two_thresholds_sends_both_highest_first() -> None:
    frame = stream(
        {"CR": ["2", "5.5"]},
        grants=[grant("g1", "10", at(1))],
        consumptions=[event("e1", at(2), ("chat", "9"))],
    )
    assert rows(frame)[1:] == [
        ("01-02 00:00", "credits.low_balance", None, "-9.00", "1.00", "5.50"),
        ("01-02 00:00", "credits.low_balance", None, "-9.00", "1.00", "2.00"),
    ]


def test_ending_soon_and_expired_placed_after_the_customers_entries_at_that_instant() -> None:
    frame = stream(
        grants=[
            grant("g1", "10", at(1), expires=at(12)),
            grant("g2", "3", at(1), expires=at(9)),
            grant("g3", "1", at(5)),  # takes effect at g1's warning instant
            grant("a1", "1", at(5), customer="abc"),
            grant("z1", "1", at(5), customer="zed"),
        ],
        consumptions=[event("e1", at(3), ("chat", "4")), event("e2", at(13))],
    )
    assert rows(frame, customer=True) == [
        ("acme", "01-01 00:00", "grant.granted", "g2", "3.00", "3.00"),
        ("acme", "01-01 00:00", "grant.granted", "g1", "10.00", "13.00"),
        ("acme", "01-02 00:00", "grant.ending_soon", "g2", "3.00", "13.00"),
        ("acme", "01-03 00:00", "grant.emptied", "g2", "-3.00", "10.00"),
        ("abc", "01-05 00:00", "grant.granted", "a1", "1.00", "1.00"),
        ("acme", "01-05 00:00", "grant.granted", "g3", "1.00", "10.00"),
        ("acme", "01-05 00:00", "grant.ending_soon", "g1", "9.00", "10.00"),
        ("zed", "01-05 00:00", "grant.granted", "z1", "1.00", "1.00"),
        ("acme", "01-12 00:00", "grant.expired", "g1", "-9.00", "1.00"),
    ]


def test_ending_soon_days_and_grants_too_short_to_warn() -> None:
    frame = stream(
        days=2,
        grants=[
            grant("g1", "10", at(1), expires=at(12)),
            grant("short", "1", at(1), expires=at(2)),  # 2 days before: not yet in force
        ],
        consumptions=[event("e0", at(10), ("chat", "2")), event("e1", at(13))],
    )
    warned = [r for r in rows(frame) if r[1] == "grant.ending_soon"]
    # after every entry at the warning instant: e0 drew 2 from g1 then
    assert warned == [("01-10 00:00", "grant.ending_soon", "g1", "8.00", "8.00")]


def test_auto_recharge_issued_and_spend_limit_cut_once_a_month() -> None:
    # unit price 0.01: a limit of 0.15 buys 15 credits a month
    frame = stream(
        auto_recharges=[recharge("5", "10", limit="0.15")],
        consumptions=[
            event("e1", at(2), ("chat", "10")),  # -10: 20 wanted, 15 allowed
            event("e2", at(3), ("chat", "1")),  # 4: 6 wanted, nothing allowed (same month)
            event("e3", at(1, month=2), ("chat", "1")),  # new month: 7, in full
            event("e4", at(2, month=2), ("chat", "9")),  # 1: 9 wanted, 8 allowed
        ],
    )
    recharge_grant = "acme:auto_recharge:CR:"
    assert rows(frame) == [
        ("01-02 00:00", "credits.overdraft_started", "acme:overdraft:CR", "-10.00", "-10.00"),
        ("01-02 00:00", "grant.granted", recharge_grant + "0", "15.00", "5.00"),
        ("01-02 00:00", "auto_recharge.issued", recharge_grant + "0", "15.00", "5.00", "0.1500"),
        (
            "01-02 00:00",
            "auto_recharge.spend_limit_reached",
            recharge_grant + "0",
            "5.00",
            "5.00",
            "5.00",
        ),
        ("01-02 00:00", "credits.overdraft_settled", "acme:overdraft:CR", "10.00", "5.00"),
        ("02-01 00:00", "grant.granted", recharge_grant + "1", "7.00", "10.00"),
        ("02-01 00:00", "auto_recharge.issued", recharge_grant + "1", "7.00", "10.00", "0.0700"),
        ("02-02 00:00", "grant.emptied", recharge_grant + "0", "-3.00", "7.00"),
        ("02-02 00:00", "grant.granted", recharge_grant + "2", "8.00", "9.00"),
        ("02-02 00:00", "auto_recharge.issued", recharge_grant + "2", "8.00", "9.00", "0.0800"),
        (
            "02-02 00:00",
            "auto_recharge.spend_limit_reached",
            recharge_grant + "2",
            "1.00",
            "9.00",
            "5.00",
        ),
    ]


def test_spend_limit_skipping_the_recharge_is_placed_at_the_event() -> None:
    frame = stream(
        grants=[grant("g1", "10", at(1))],
        auto_recharges=[recharge("5.005", "10.001", limit="0")],
        consumptions=[event("e1", at(2), ("chat", "6")), event("e2", at(3), ("chat", "1"))],
    )
    assert rows(frame) == [
        ("01-01 00:00", "grant.granted", "g1", "10.00", "10.00"),
        # 10.001 - 4 rounded up to the precision: 6.01 held back
        ("01-02 00:00", "auto_recharge.spend_limit_reached", None, "6.01", "4.00", "5.005"),
    ]
    assert frame.schema["threshold"] == pl.Decimal(38, 3)


def test_rolled_over_credits_and_rollover_grants_from_a_hand_written_ledger() -> None:
    ledger = _ledger(
        [
            ("01-01", "GRANTED", "acme:pro:CR:0", "plan", "10", "10", None),
            ("01-05", "CONSUMED", "acme:pro:CR:0", "plan", "-4", "6", "e1"),
            ("02-01", "ROLLED_OVER", "acme:pro:CR:0", "plan", "-3", "3", None),
            ("02-01", "EXPIRED", "acme:pro:CR:0", "plan", "-3", "0", None),
            ("02-01", "GRANTED", "acme:pro:CR:0:rollover", "rollover", "3", "3", None),
            ("02-01", "GRANTED", "acme:pro:CR:1", "plan", "10", "13", None),
            ("02-10", "CONSUMED", "acme:pro:CR:0:rollover", "rollover", "-2", "11", "e2"),
            ("02-20", "CONSUMED", "acme:pro:CR:1", "plan", "-1", "10", "e3"),
        ]
    )
    until = at(1, month=3)
    # The rollover grant expires with the new period's grant (SPEC §5).
    grants = pl.DataFrame(
        {
            "grant_id": ["acme:pro:CR:0", "acme:pro:CR:1", "acme:pro:CR:0:rollover"],
            "expires_at": [at(1, month=2), until, until],
        },
        schema={"grant_id": pl.String, "expires_at": TIMESTAMP},
    )
    frame = activity(ledger, grants, (), (CR,), until=until)
    assert rows(frame) == [
        ("01-01 00:00", "grant.granted", "acme:pro:CR:0", "10.00", "10.00"),
        ("01-25 00:00", "grant.ending_soon", "acme:pro:CR:0", "6.00", "6.00"),
        ("02-01 00:00", "grant.rolled_over", "acme:pro:CR:0", "-3.00", "3.00"),
        ("02-01 00:00", "grant.expired", "acme:pro:CR:0", "-3.00", "0.00"),
        ("02-01 00:00", "grant.granted", "acme:pro:CR:0:rollover", "3.00", "3.00"),
        ("02-01 00:00", "grant.granted", "acme:pro:CR:1", "10.00", "13.00"),
        ("02-23 00:00", "grant.ending_soon", "acme:pro:CR:0:rollover", "1.00", "10.00"),
        ("02-23 00:00", "grant.ending_soon", "acme:pro:CR:1", "9.00", "10.00"),
    ]


def test_counts_per_scenario_customer_and_kind_in_spec_order() -> None:
    frame = stream(
        {"CR": ["5"]},
        grants=[grant("g1", "10", at(1)), grant("b1", "1", at(1), customer="beta")],
        consumptions=[event("e1", at(2), ("chat", "10")), event("e2", at(3), ("chat", "1"))],
    )
    counts = activity_counts(frame)
    assert counts.rows() == [
        ("base", "acme", "credits.low_balance", 1),
        ("base", "acme", "credits.depleted", 1),
        ("base", "acme", "credits.overdraft_started", 1),
        ("base", "acme", "grant.granted", 1),
        ("base", "acme", "grant.emptied", 1),
        ("base", "beta", "grant.granted", 1),
    ]


def test_a_rollover_replay_sends_rolled_over_granted_and_ending_soon_for_the_rollover_grant() -> (
    None
):
    # 100 a month from Jan 31 (Feb 29, Mar 31), rollover capped at 30; 20 used in February's
    # first period, 10 in March (from the rollover grant, drawn first). Thresholds 120 and 50.
    frame = stream(
        {"CR": ["50", "120"]},
        recurring=[entitlement("p", "100", at(31), rollover=rollover(max_amount="30"))],
        consumptions=[
            event("e1", at(1, month=2), ("chat", "20")),
            event("e2", at(1, month=3), ("chat", "10")),
        ],
        until=at(1, month=4),
    )
    assert rows(frame) == [
        ("01-31 00:00", "grant.granted", "acme:p:CR:0", "100.00", "100.00"),
        ("02-22 00:00", "grant.ending_soon", "acme:p:CR:0", "80.00", "80.00"),
        # 30 of 80 roll over (50 left: at the threshold, not below), the other 50 expire
        ("02-29 00:00", "grant.rolled_over", "acme:p:CR:0", "-30.00", "50.00"),
        ("02-29 00:00", "credits.low_balance", None, "-50.00", "0.00", "50.00"),
        ("02-29 00:00", "grant.expired", "acme:p:CR:0", "-50.00", "0.00"),
        ("02-29 00:00", "grant.granted", "acme:p:CR:0:rollover", "30.00", "30.00"),
        ("02-29 00:00", "grant.granted", "acme:p:CR:1", "100.00", "130.00"),
        # 10 from the rollover grant leaves 120: at the threshold, not below
        ("03-24 00:00", "grant.ending_soon", "acme:p:CR:0:rollover", "20.00", "120.00"),
        ("03-24 00:00", "grant.ending_soon", "acme:p:CR:1", "100.00", "120.00"),
        # the rollover grant never rolls: its 20 expire (below 120), then March rolls 30 of 100
        ("03-31 00:00", "credits.low_balance", None, "-20.00", "100.00", "120.00"),
        ("03-31 00:00", "grant.expired", "acme:p:CR:0:rollover", "-20.00", "100.00"),
        ("03-31 00:00", "grant.rolled_over", "acme:p:CR:1", "-30.00", "70.00"),
        ("03-31 00:00", "credits.low_balance", None, "-70.00", "0.00", "50.00"),
        ("03-31 00:00", "grant.expired", "acme:p:CR:1", "-70.00", "0.00"),
        ("03-31 00:00", "grant.granted", "acme:p:CR:1:rollover", "30.00", "30.00"),
        ("03-31 00:00", "grant.granted", "acme:p:CR:2", "100.00", "130.00"),
    ]


def test_bad_thresholds_and_days_are_listed_together() -> None:
    with pytest.raises(ValidationError) as caught:
        activity(
            _ledger([]),
            pl.DataFrame(),
            (),
            (CR,),
            thresholds={"XX": [Decimal(1)]},
            ending_soon_days=0,
        )
    assert [p.path for p in caught.value.problems] == ["thresholds[XX]", "ending_soon_days"]


def test_a_threshold_beyond_the_ledgers_64_bit_units_is_a_listed_problem() -> None:
    ledger = _ledger([("01-01", "GRANTED", "g1", "manual", "10.00", "10.00", None)])
    with pytest.raises(ValidationError) as caught:
        activity(ledger, pl.DataFrame(), (), (CR,), thresholds={"CR": [Decimal("1e26")]})
    assert [p.path for p in caught.value.problems] == ["thresholds[CR]"]
    assert "beyond what the replay computes exactly" in caught.value.problems[0].message


def _ledger(entries: list[tuple[str, str, str, str, str, str, str | None]]) -> pl.DataFrame:
    """A ledger of customer acme in CR from (MM-DD, type, grant, source, amount, balance, event)."""
    schema = ledger_schema(2)
    return pl.DataFrame(
        [
            {
                "entry_id": number,
                "timestamp": at(int(day[3:]), month=int(day[:2])),
                "customer_id": "acme",
                "currency_id": "CR",
                "entry_type": entry_type,
                "grant_id": grant_id,
                "grant_type": "RECURRING",
                "grant_source": source,
                "amount": Decimal(amount),
                "balance_after": Decimal(balance),
                "event_id": event_id,
                "feature_id": None if event_id is None else "chat",
                "scenario": "base",
            }
            for number, (day, entry_type, grant_id, source, amount, balance, event_id) in enumerate(
                entries, start=1
            )
        ],
        schema=schema,
    )


def test_an_event_in_two_currencies_recharges_cut_in_one_and_skipped_in_the_other() -> None:
    frame = stream(
        currencies=(CR, TK),
        grants=[grant("c1", "10", at(1)), grant("t1", "10", at(1), currency="TK")],
        auto_recharges=[
            recharge("5", "10", limit="0.03"),  # 3 credits of CR a month
            recharge("5", "10", limit="0", currency="TK"),
        ],
        consumptions=[event("e1", at(2), ("chat", "6"), ("image", "6", "TK"))],
    )
    assert rows(frame, customer=False) == [
        ("01-01 00:00", "grant.granted", "c1", "10.00", "10.00"),
        ("01-01 00:00", "grant.granted", "t1", "10.00", "10.00"),
        # TK's recharge skipped: placed at the event's TK entry, before CR's recharge
        ("01-02 00:00", "auto_recharge.spend_limit_reached", None, "6.00", "4.00", "5.00"),
        ("01-02 00:00", "grant.granted", "acme:auto_recharge:CR:0", "3.00", "7.00"),
        (
            "01-02 00:00",
            "auto_recharge.issued",
            "acme:auto_recharge:CR:0",
            "3.00",
            "7.00",
            "0.0300",
        ),
        (
            "01-02 00:00",
            "auto_recharge.spend_limit_reached",
            "acme:auto_recharge:CR:0",
            "3.00",
            "7.00",
            "5.00",
        ),
    ]
    assert frame["currency_id"].to_list() == ["CR", "TK", "TK", "CR", "CR", "CR"]


def test_warnings_of_several_customers_between_the_same_entries_go_by_time_then_customer() -> None:
    frame = stream(
        grants=[
            grant("z", "5", at(1), expires=at(20), customer="zed"),
            grant("a", "5", at(1), expires=at(21), customer="amy"),
            grant("b", "5", at(1), expires=at(20), customer="bea"),
        ],
        consumptions=[event("e1", at(25), customer="amy")],
    )
    warned = [r[:3] for r in rows(frame, customer=True) if r[2] == "grant.ending_soon"]
    assert warned == [
        ("bea", "01-13 00:00", "grant.ending_soon"),
        ("zed", "01-13 00:00", "grant.ending_soon"),
        ("amy", "01-14 00:00", "grant.ending_soon"),
    ]


def test_a_ledger_with_nothing_to_tell_gives_an_empty_stream_with_its_columns() -> None:
    frame = stream(
        grants=[grant("g1", "10", at(1), voided=at(1))],  # voided before it took effect
        consumptions=[event("e1", at(2))],  # costs nothing
    )
    assert frame.is_empty() and frame.columns[:5] == [
        "activity_id", "timestamp", "customer_id", "currency_id", "kind"
    ]  # fmt: skip
