"""The fast engine's shared work (`fast.EngineWork`, in `SharedWork`): replays one after another
with other costs or other events give exactly the ledger of a replay alone."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pricing_lab.ledger import AutoRecharge, ReplayInput, replay
from pricing_lab.ledger.api import SharedWork
from pricing_lab.ledger.fast import EngineWork, _set_madvise_hugepage
from pricing_lab.ledger.inputs import prepare, records_frame
from pricing_lab.ledger.model import Consumption, CostedConsumptions
from tests.ledger.helpers import CR, at, event, grant

GRANTS = (
    grant("acme:promo", "30", at(1), expires=at(9)),
    grant("acme:plan", "50", at(1)),
    grant("bob:plan", "20", at(1), customer="bob"),
    grant("cy:plan", "5", at(2), customer="cy", voided=at(12)),
)
RECHARGE = (
    AutoRecharge(customer_id="bob", currency_id="CR", threshold=Decimal(5), target=Decimal(25)),
)


def _consumptions(rate: str = "1", days: int = 20, extra: str | None = None) -> list[Consumption]:
    """Events of three customers over `days` days: chat and embed at `rate` × a few credits,
    some matching no feature; `extra`: one more event of bob on day 3 with that id."""
    events = []
    for day in range(1, days + 1):
        for customer in ("acme", "bob", "cy"):
            chat = Decimal(rate) * (day % 4 + 1)
            costs = [("chat", str(chat))]
            if day % 3 == 0:
                costs.append(("embed", str(Decimal(rate) * Decimal("0.5"))))
            when = at(1) + timedelta(days=day - 1, hours=day % 5)
            events.append(event(f"{customer}-{day}", when, *costs, customer=customer))
            if day % 7 == 0:
                events.append(event(f"{customer}-{day}-free", when, customer=customer))
    if extra is not None:
        events.append(event(extra, at(3, hour=1), ("chat", "2"), customer="bob"))
    return events


def _input(consumptions: list[Consumption], enforcement: str = "overdraft") -> ReplayInput:
    frame = records_frame(consumptions).sort(
        "customer_id", "timestamp", "event_id", "feature_id", nulls_last=False
    )  # engine order, as costing delivers it
    return ReplayInput(
        currencies=(CR,),
        grants=GRANTS,
        auto_recharges=RECHARGE,
        consumptions=CostedConsumptions(frame),
        enforcement=enforcement,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("enforcement", ["overdraft", "block"])
def test_replays_with_other_costs_and_other_events_give_the_ledger_of_a_replay_alone(
    enforcement: str,
) -> None:
    shared = SharedWork()
    runs = [
        _consumptions("1"),
        _consumptions("2.5"),  # other costs: the event-side columns are taken over
        _consumptions("0.02"),  # fewer ledger rows than before
        _consumptions("2.5", extra="bob-3b"),  # another event: built again
        _consumptions("2.5", days=40),  # more events
        _consumptions("3"),  # fewer events again
        _consumptions("0"),  # nothing costs anything
    ]
    reused = []
    for consumptions in runs:
        replay_input = _input(consumptions, enforcement)
        before = shared.engine.events if shared.engine is not None else None
        together = replay(replay_input, shared=shared)
        alone = replay(replay_input)
        assert_frame_equal(together.ledger, alone.ledger)
        assert_frame_equal(together.denied_events, alone.denied_events)
        assert shared.engine is not None
        reused.append(shared.engine.events is before)
    assert reused == [False, True, True, False, False, False, True]


def test_the_event_side_is_kept_for_the_event_columns_it_was_built_from() -> None:
    first = prepare(_input(_consumptions("1")))
    other_costs = prepare(_input(_consumptions("2")), like=first)
    other_events = prepare(_input(_consumptions("2", extra="bob-3b")), like=other_costs)
    assert other_costs.events_key is first.events_key
    assert other_events.events_key is not first.events_key
    assert prepare(_input(_consumptions("1"))).events_key is not first.events_key  # no `like`
    work = EngineWork()
    side = work.event_side(first)
    assert work.event_side(other_costs) is side
    assert work.event_side(other_events) is not side
    assert work.event_side(first) is not side  # replaced by the other events' side: built again


def test_the_huge_page_setting_is_put_back_after_a_replay() -> None:
    replay_input = _input(_consumptions("1"))
    for setting in (True, False):
        previous = _set_madvise_hugepage(setting)
        try:
            replay(replay_input)
            assert _set_madvise_hugepage(setting) is setting
        finally:
            _set_madvise_hugepage(previous)


def test_replays_of_plain_tables_share_nothing_unproven() -> None:
    plain = records_frame(_consumptions("1"))  # not costed, not in engine order
    later = plain.with_columns(
        pl.when(pl.col("customer_id") == "cy")
        .then(pl.col("timestamp") + pl.duration(minutes=30))
        .otherwise(pl.col("timestamp"))
    )
    shared = SharedWork()
    for frame in (plain, later, plain):
        replay_input = replace(_input([]), consumptions=frame)
        assert_frame_equal(replay(replay_input, shared=shared).ledger, replay(replay_input).ledger)
