"""Replays of the same events with other costs share their checked inputs: same outputs, same
problems, and nothing shared that differs (`prepare(like=…)`, `consumption_keys(like=…)`,
`SharedWork`)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pricing_lab.errors import ValidationError
from pricing_lab.ledger import ReplayInput, check_invariants, inputs, replay
from pricing_lab.ledger.api import SharedWork
from pricing_lab.ledger.inputs import PreparedReplay, prepare, records_frame
from pricing_lab.ledger.invariants import consumption_keys
from pricing_lab.ledger.model import CostedConsumptions
from tests.ledger.helpers import CR, at, event, grant

GRANTS = (grant("soon", "10", at(1), expires=at(20)), grant("late", "10", at(1)))


def _events(chat: str = "4", embed: str = "5") -> pl.DataFrame:
    """Three events of acme and one of bob, in engine order, as costing delivers them."""
    return records_frame(
        [
            event("e1", at(2), ("chat", chat)),
            event("e2", at(3), ("chat", chat), ("embed", embed)),
            event("e4", at(4)),  # matched no feature
            event("e3", at(3), ("chat", "2"), customer="bob"),
        ]
    ).sort("customer_id", "timestamp", "event_id", "feature_id", nulls_last=False)


def _input(frame: pl.DataFrame, *, costed: bool = True, **changes: object) -> ReplayInput:
    consumptions = CostedConsumptions(frame) if costed else frame
    base = ReplayInput(currencies=(CR,), grants=GRANTS, consumptions=consumptions)
    return replace(base, **changes)  # type: ignore[arg-type]


def _same(a: PreparedReplay, b: PreparedReplay) -> None:
    assert_frame_equal(a.consumptions, b.consumptions)
    assert_frame_equal(a.grant_table, b.grant_table)
    assert (a.start, a.until, a.scale, a.in_input_order) == (b.start, b.until, b.scale, True)


def _problems(replay_input: ReplayInput, like: PreparedReplay | None = None) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        prepare(replay_input, like=like)
    return [str(p) for p in caught.value.problems]


def test_other_costs_share_the_event_columns_and_the_grant_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    earlier = prepare(_input(_events()))
    changed = _input(_events(chat="6.5"))
    alone = prepare(changed)
    order_checks: list[int] = []
    in_engine_order = inputs.in_engine_order

    def spy(frame: pl.DataFrame) -> pl.DataFrame:
        order_checks.append(frame.height)
        return in_engine_order(frame)

    monkeypatch.setattr(inputs, "in_engine_order", spy)
    shared = prepare(changed, like=earlier)
    assert order_checks == []  # the earlier replay's checked event columns are taken over
    _same(shared, alone)
    assert shared.grant_table is earlier.grant_table
    assert shared.consumptions["cost_units"].to_list() == [650, 650, 500, None, 200]


def test_the_costs_are_checked_as_if_nothing_were_shared() -> None:
    earlier = prepare(_input(_events()))
    for bad in (
        _input(_events(chat="-1")),
        _input(_events(embed="0.001")),
        _input(_events().with_columns(pl.lit("XX").alias("currency_id"))),
        _input(_events(), enforcement="never"),
    ):
        assert _problems(bad, like=earlier) == _problems(bad)


def test_other_grants_are_checked_and_built_again() -> None:
    earlier = prepare(_input(_events()))
    more = _input(_events(), grants=(*GRANTS, grant("extra", "5", at(2), customer="bob")))
    again = prepare(more, like=earlier)
    _same(again, prepare(more))
    assert "extra" in again.grant_table["grant_id"].to_list()
    twice = _input(_events(), grants=(*GRANTS, GRANTS[0]))
    assert _problems(twice, like=earlier) == _problems(twice)
    assert any("duplicate grant id 'soon'" in p for p in _problems(twice, like=earlier))


def test_other_events_are_checked_again() -> None:
    earlier = prepare(_input(_events()))
    later = _events().with_columns(
        pl.when(pl.col("event_id") == "e1")
        .then(pl.lit(at(5)).dt.replace_time_zone("UTC"))
        .otherwise(pl.col("timestamp"))
        .alias("timestamp")
    )
    moved = prepare(_input(later), like=earlier)  # e1 now comes after e2: sorted again
    assert_frame_equal(moved.consumptions, prepare(_input(later)).consumptions)
    assert moved.consumptions["event_id"].to_list()[:3] == ["e2", "e2", "e4"]
    # Costing vouches for one customer and timestamp per event; a plain table must be checked
    # for it even when its columns equal those of an earlier costed input.
    doubled = pl.concat([_events(), _events().filter(pl.col("event_id") == "e3")])
    earlier_doubled = prepare(_input(doubled))  # trusted: not checked
    untrusted = _input(doubled, costed=False)
    assert _problems(untrusted, like=earlier_doubled) == _problems(untrusted)
    assert any("the same feature appears twice" in p for p in _problems(untrusted))


@pytest.mark.parametrize("enforcement", ["overdraft", "block"])
def test_a_series_of_replays_with_shared_work_gives_the_same_outputs(enforcement: str) -> None:
    shared = SharedWork()
    for chat in ("4", "8", "0.5", "12"):
        replay_input = _input(_events(chat=chat), enforcement=enforcement)
        together = replay(replay_input, shared=shared)
        alone = replay(replay_input)
        for name in ("ledger", "denied_events", "balances", "summary"):
            assert_frame_equal(getattr(together, name), getattr(alone, name))
        assert shared.prepared is not None and shared.prepared.source is replay_input
        assert shared.keys is not None
        assert shared.keys.consumptions is shared.prepared.consumptions


def test_the_key_table_is_shared_only_by_tables_with_the_same_keys() -> None:
    first = prepare(_input(_events()))
    second = prepare(_input(_events(chat="7")), like=first)
    keys = consumption_keys(first.consumptions)
    assert consumption_keys(second.consumptions, like=keys).table is keys.table
    renamed = _events().with_columns(pl.col("feature_id").replace("embed", "vision"))
    third = prepare(_input(renamed))
    assert consumption_keys(third.consumptions, like=keys).table is not keys.table
    # Keys of another table are not used: the check builds its own.
    result = replay(_input(renamed))
    broken = result.ledger.with_columns(
        pl.when(pl.col("entry_id") == result.ledger.height)
        .then(pl.col("amount") - Decimal(1))
        .otherwise(pl.col("amount"))
        .alias("amount")
    )
    expected = check_invariants(broken, result.denied_events, third)
    assert expected  # the change is seen
    assert check_invariants(broken, result.denied_events, third, keys=keys) == expected
