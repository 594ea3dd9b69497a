"""`check_invariants` on replays broken on purpose: each breach is reported, with its path.

The ledgers come from the reference engine on small inputs, then one thing is changed by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from functools import cache
from typing import Any

import numpy as np
import polars as pl
import pytest

from pricing_lab.errors import InvariantViolation, Problem
from pricing_lab.ledger import ReplayInput, assert_invariants, check_invariants, replay
from pricing_lab.ledger import invariants as module
from pricing_lab.ledger.inputs import PreparedReplay, prepare
from pricing_lab.ledger.row_lookup import row_hash
from tests.ledger.helpers import CR, TK, at, event, grant

INV1 = "invariant 1: balance_after is not the running sum of amounts for its currency"
INV2 = "invariant 2: the grant's remaining amount goes below 0"
INV3 = "invariant 3: the CONSUMED amounts differ from the event's cost"
INV3_DENIED = "invariant 3: a denied event that costs nothing or is not replayed"
INV5 = "invariant 5: drawn from a grant while one earlier in draw-down order had credits"

Outputs = tuple[pl.DataFrame, pl.DataFrame, PreparedReplay]


@cache
def _replayed(enforcement: str) -> Outputs:
    replay_input = _inputs(enforcement)
    result = replay(replay_input, engine="reference")
    return result.ledger, result.denied_events, prepare(replay_input)


def _inputs(enforcement: str) -> ReplayInput:
    """acme: `soon` (10, expires) is drawn before `late` (10); bob: `b1` (5).

    The ledger (entry: customer, type, grant, amount, event/feature):
    1 acme GRANTED soon 10 · 2 acme GRANTED late 10 · 3 bob GRANTED b1 5 ·
    4 acme CONSUMED soon -4 e1/chat · 5 acme CONSUMED soon -3 e2/chat ·
    6 acme CONSUMED soon -3 e2/embed · 7 acme CONSUMED late -2 e2/embed ·
    8 bob CONSUMED b1 -2 e3/chat · then, in overdraft mode:
    9 acme CONSUMED late -8 e4/chat · 10 acme CONSUMED acme:overdraft:CR -12 e4/chat ·
    11 acme CONSUMED acme:overdraft:CR -1 e5/chat;
    in block mode e4 is denied and 9 is acme CONSUMED late -1 e5/chat.
    """
    return ReplayInput(
        currencies=(CR,),
        grants=(
            grant("soon", "10", at(1), expires=at(20)),
            grant("late", "10", at(1)),
            grant("b1", "5", at(1), customer="bob"),
        ),
        consumptions=(
            event("e1", at(2), ("chat", "4")),
            event("e2", at(3), ("chat", "3"), ("embed", "5")),
            event("e3", at(3), ("chat", "2"), customer="bob"),
            event("e4", at(5), ("chat", "20")),
            event("e5", at(6), ("chat", "1")),
        ),
        enforcement=enforcement,  # type: ignore[arg-type]
    )


def _set(ledger: pl.DataFrame, entry: int, **values: Any) -> pl.DataFrame:
    """The ledger with some columns of one entry changed."""
    row = pl.col("entry_id") == entry
    return ledger.with_columns(
        pl.when(row)
        .then(pl.lit(value, dtype=ledger.schema[name]))
        .otherwise(pl.col(name))
        .alias(name)
        for name, value in values.items()
    )


def _entries(message: str, *entry_ids: int) -> list[Problem]:
    return [Problem(path=f"ledger[entry_id={i}]", message=message) for i in entry_ids]


def _pair(event_id: str, feature_id: str) -> Problem:
    return Problem(path=f"ledger[event_id={event_id}, feature_id={feature_id}]", message=INV3)


@pytest.mark.parametrize("enforcement", ["overdraft", "block"])
def test_the_outputs_of_a_replay_hold(enforcement: str) -> None:
    ledger, denied, prepared = _replayed(enforcement)
    assert check_invariants(ledger, denied, prepared) == []
    assert check_invariants(ledger, denied, _inputs(enforcement)) == []


def test_a_changed_amount_is_reported_wherever_it_shows() -> None:
    ledger, denied, prepared = _replayed("overdraft")
    broken = _set(ledger, 5, amount=Decimal("-4"))  # e2/chat took 4 from soon instead of 3
    assert check_invariants(broken, denied, prepared) == [
        *_entries(INV1, 5, 6, 7, 9, 10, 11),  # acme's balances from entry 5 on
        *_entries(INV2, 6),  # soon: 10 - 4 - 4 - 3 = -1
        _pair("e2", "chat"),
    ]


def test_a_broken_balance_is_reported_once() -> None:
    ledger, denied, prepared = _replayed("overdraft")
    broken = _set(ledger, 8, balance_after=Decimal("4"))
    assert check_invariants(broken, denied, prepared) == _entries(INV1, 8)


def test_drawing_from_a_later_grant_breaks_the_drawdown_order() -> None:
    ledger, denied, prepared = _replayed("overdraft")
    broken = _set(ledger, 4, grant_id="late")  # e1 drawn from late while soon had credits
    assert check_invariants(broken, denied, prepared) == [
        *_entries(INV2, 9),  # late: 10 - 4 - 2 - 8 = -4
        # soon keeps 4 credits: e2/embed's second part, e4 and e5 all break the order
        *_entries(INV5, 4, 7, 9, 10, 11),
    ]


def test_the_overdraft_grant_is_used_only_when_no_other_grant_has_credits() -> None:
    ledger, denied, prepared = _replayed("overdraft")
    broken = _set(
        _set(ledger, 9, amount=Decimal("-7"), balance_after=Decimal("1")),
        10,
        amount=Decimal("-13"),
        balance_after=Decimal("-12"),
    )
    assert check_invariants(broken, denied, prepared) == _entries(INV5, 10, 11)  # late kept 1


def test_a_dropped_consumed_entry() -> None:
    ledger, denied, prepared = _replayed("overdraft")
    broken = ledger.filter(pl.col("entry_id") != 8)
    assert check_invariants(broken, denied, prepared) == [
        Problem(path="ledger.entry_id", message="entry ids are not 1, 2, … n"),
        _pair("e3", "chat"),
    ]


def test_entries_out_of_order_are_checked_in_entry_order() -> None:
    ledger, denied, prepared = _replayed("overdraft")
    shuffled = ledger.sample(fraction=1.0, shuffle=True, seed=1)
    assert not shuffled["entry_id"].is_sorted()
    assert check_invariants(shuffled, denied, prepared) == []


def test_consumed_entries_of_an_event_that_has_no_cost() -> None:
    ledger, denied, prepared = _replayed("overdraft")
    broken = _set(ledger, 8, event_id="e9")
    assert check_invariants(broken, denied, prepared) == [_pair("e3", "chat"), _pair("e9", "chat")]


@pytest.mark.parametrize(("tail", "reported"), [("-2", False), ("-3", True)])
def test_the_consumed_entries_of_an_event_are_summed_wherever_they_are(
    tail: str, reported: bool
) -> None:
    ledger, denied, prepared = _replayed("overdraft")
    # e2/chat (cost 3) in two entries: 1 at entry 5, the rest in an entry 12 added at the end
    split = _set(ledger, 5, amount=Decimal("-1"))
    extra = _set(ledger.filter(pl.col("entry_id") == 5), 5, entry_id=12, amount=Decimal(tail))
    problems = check_invariants(pl.concat([split, extra]), denied, prepared)
    assert [p for p in problems if p.message == INV3] == ([_pair("e2", "chat")] if reported else [])


def test_at_most_max_listed_entries_then_a_count() -> None:
    replay_input = ReplayInput(
        currencies=(CR,),
        grants=(grant("g", "100", at(1)),),
        consumptions=tuple(event(f"e{i:02d}", at(2, minute=i), ("chat", "1")) for i in range(30)),
    )
    result = replay(replay_input, engine="reference")
    broken = _set(result.ledger, 2, amount=Decimal("-2"))  # every later balance is off by one
    problems = check_invariants(broken, result.denied_events, replay_input)
    assert problems[: module.MAX_LISTED] == _entries(INV1, *range(2, 2 + module.MAX_LISTED))
    assert problems[module.MAX_LISTED :] == [
        Problem(path="ledger", message=f"… {30 - module.MAX_LISTED} more"),
        _pair("e00", "chat"),
    ]


def test_a_grant_under_two_customers_is_followed_per_customer() -> None:
    ledger, denied, prepared = _replayed("overdraft")
    # b1's grant entry moved to acme: acme now has b1 (drawn before late, by grant id) with
    # credits while it draws from late and the overdraft; bob draws from an empty b1.
    broken = _set(ledger, 3, customer_id="acme")
    assert check_invariants(broken, denied, prepared) == [
        *_entries(INV1, *range(3, 12)),
        *_entries(INV5, 7, 9, 10, 11),
    ]


def test_amounts_in_two_currencies_at_different_precisions() -> None:
    replay_input = ReplayInput(
        currencies=(CR, TK),
        grants=(grant("cr", "10", at(1)), grant("tk", "10", at(1), currency="TK")),
        consumptions=(event("e1", at(2), ("chat", "1.25"), ("embed", "3", "TK")),),
    )
    result = replay(replay_input, engine="reference")
    assert check_invariants(result.ledger, result.denied_events, replay_input) == []
    embed = result.ledger.filter(pl.col("feature_id") == "embed")["entry_id"][0]
    broken = _set(result.ledger, embed, amount=Decimal("-4"), balance_after=Decimal("6"))
    assert check_invariants(broken, result.denied_events, replay_input) == [_pair("e1", "embed")]


# --- block mode --------------------------------------------------------------------------------


def _deny(denied: pl.DataFrame, event_id: str) -> pl.DataFrame:
    return pl.concat([denied, denied.head(1).with_columns(pl.lit(event_id).alias("event_id"))])


def test_block_mode_an_event_denied_twice() -> None:
    ledger, denied, prepared = _replayed("block")
    assert check_invariants(ledger, _deny(denied, "e4"), prepared) == [
        Problem(path="denied_events", message="an event is denied twice")
    ]


def test_block_mode_a_denied_event_that_is_not_replayed() -> None:
    ledger, denied, prepared = _replayed("block")
    assert check_invariants(ledger, _deny(denied, "nope"), prepared) == [
        Problem(path="denied_events[event_id=nope]", message=INV3_DENIED)
    ]


def test_block_mode_a_denied_event_must_not_be_consumed() -> None:
    ledger, denied, prepared = _replayed("block")
    assert check_invariants(ledger, _deny(denied, "e5"), prepared) == [_pair("e5", "chat")]


def test_block_mode_an_event_neither_consumed_nor_denied() -> None:
    ledger, denied, prepared = _replayed("block")
    assert check_invariants(ledger, denied.clear(), prepared) == [_pair("e4", "chat")]


def test_assert_invariants_raises_with_every_problem() -> None:
    ledger, denied, prepared = _replayed("block")
    with pytest.raises(InvariantViolation, match=r"denied_events\[event_id=nope\]"):
        assert_invariants(ledger, _deny(denied, "nope"), prepared)


# --- the exact fallback of the lookups by hash -------------------------------------------------


def _broken_cases() -> dict[str, tuple[pl.DataFrame, pl.DataFrame, PreparedReplay]]:
    ledger, denied, prepared = _replayed("overdraft")
    block_ledger, block_denied, block_prepared = _replayed("block")
    return {
        "clean": (ledger, denied, prepared),
        "amount": (_set(ledger, 5, amount=Decimal("-4")), denied, prepared),
        "no cost": (_set(ledger, 8, event_id="e9"), denied, prepared),
        "dropped": (ledger.filter(pl.col("entry_id") != 8), denied, prepared),
        "block clean": (block_ledger, block_denied, block_prepared),
        "denied twice": (block_ledger, _deny(block_denied, "e4"), block_prepared),
        "denied unknown": (block_ledger, _deny(block_denied, "nope"), block_prepared),
        "denied consumed": (block_ledger, _deny(block_denied, "e5"), block_prepared),
        "not denied": (block_ledger, block_denied.clear(), block_prepared),
    }


def _constant(frame: pl.DataFrame) -> np.ndarray:
    return np.zeros(frame.height, dtype=np.uint64)


def _three_values(frame: pl.DataFrame) -> np.ndarray:
    return row_hash(frame) % np.uint64(3)


def _e9_as_e3(frame: pl.DataFrame) -> np.ndarray:
    # A collision between (e9, chat), which has no cost, and (e3, chat), which has one; other
    # hashes stay distinct, so only the check of the strings can catch it.
    if "event_id" not in frame.columns:  # the other keys the check encodes
        return row_hash(frame)
    return row_hash(frame.with_columns(pl.col("event_id").replace("e9", "e3")))


@pytest.mark.parametrize("case", list(_broken_cases()))
@pytest.mark.parametrize("poor_hash", [_constant, _three_values, _e9_as_e3])
def test_a_poor_hash_changes_nothing_but_the_speed(
    case: str, poor_hash: Callable[[pl.DataFrame], np.ndarray]
) -> None:
    ledger, denied, prepared = _broken_cases()[case]
    expected = check_invariants(ledger, denied, prepared)
    assert check_invariants(ledger, denied, prepared, hash_rows=poor_hash) == expected


_LONG_ID = "e3" + "-" * 40  # longer than any event id the packed keys hold


@pytest.mark.parametrize(
    ("column", "value", "seen_as"),
    [
        ("event_id", "e3x", "e3"),
        ("event_id", "e", "e3"),
        ("event_id", _LONG_ID, "e3"),
        ("event_id", None, "e3"),
        ("feature_id", "chatx", "chat"),
        ("feature_id", None, "chat"),
    ],
)
def test_a_hash_match_is_checked_string_by_string(
    column: str, value: str | None, seen_as: str
) -> None:
    # Entry 8 (bob, e3/chat) gets other keys that hash like the old ones: the check of the
    # strings must see the difference (and fall back to comparing them all).
    ledger, denied, prepared = _replayed("overdraft")
    broken = ledger.with_columns(
        pl.when(pl.col("entry_id") == 8)
        .then(pl.lit(value, dtype=pl.String))
        .otherwise(pl.col(column))
        .alias(column)
    )
    expected = check_invariants(broken, denied, prepared)
    assert expected  # (e3, chat) is no longer consumed

    def blind(frame: pl.DataFrame) -> np.ndarray:
        if column not in frame.columns:
            return row_hash(frame)
        if value is None:
            return row_hash(frame.with_columns(pl.col(column).fill_null(seen_as)))
        return row_hash(frame.with_columns(pl.col(column).replace(value, seen_as)))

    assert check_invariants(broken, denied, prepared, hash_rows=blind) == expected


# --- exactness: a wrapped balance -------------------------------------------------------------


def test_a_balance_that_wrapped_around_64_bits_is_reported() -> None:
    # Two grants whose sum is beyond int64 at scale 2 (about 9.2e16 credits): a ledger written in
    # 64-bit integers would show the wrapped sum as the balance, and a check adding in 64 bits
    # would agree with it.
    replay_input = ReplayInput(
        currencies=(CR,),
        grants=(grant("a", "1", at(1)), grant("b", "1", at(2))),
    )
    result = replay(replay_input, engine="reference")
    assert check_invariants(result.ledger, result.denied_events, replay_input) == []
    big = Decimal(2**62) / 100
    wrapped = Decimal(2**63 - 2**64) / 100  # int64 arithmetic's 2^62 + 2^62
    broken = _set(_set(result.ledger, 1, amount=big, balance_after=big), 2, amount=big)
    broken = _set(broken, 2, balance_after=wrapped)
    problems = check_invariants(broken, result.denied_events, replay_input)
    assert Problem(path="ledger[entry_id=2]", message=INV1) in problems


def test_an_amount_beyond_64_bits_is_reported() -> None:
    replay_input = ReplayInput(currencies=(CR,), grants=(grant("a", "1", at(1)),))
    result = replay(replay_input, engine="reference")
    huge = Decimal(2**64) / 100  # unscaled 2^64: no int64 holds it
    broken = _set(result.ledger, 1, amount=huge, balance_after=huge)
    problems = check_invariants(broken, result.denied_events, replay_input)
    assert problems[0] == Problem(
        path="ledger[entry_id=1]",
        message="invariant 1: an amount or balance beyond the 64-bit integers the replay "
        "computes with",
    )
