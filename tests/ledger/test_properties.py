"""Random scenarios: the reference and fast engines give identical outputs, invariants hold, and
shuffling the input rows changes nothing.

500 scenarios in the default run; `make long` (PRICING_LAB_LONG=1) runs 20,000.
"""

from __future__ import annotations

import os
import random
from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pricing_lab.catalog.model import Rollover
from pricing_lab.errors import ValidationError
from pricing_lab.ledger import ReplayInput, check_invariants, replay
from pricing_lab.ledger.api import run_engine
from pricing_lab.ledger.inputs import prepare
from tests.ledger.helpers import CR, TK, at, entitlement, event, grant, recharge, rollover

CUSTOMERS = ("a", "b", "c")
# Few distinct instants, so that expiries, voids, grants and events often share one.
INSTANTS = [at(1) + timedelta(days=d, hours=h) for d in range(0, 75, 3) for h in (0, 12)]
MONTH_ENDS = [at(31), at(29, month=2), at(31, month=1, year=2023), at(30, month=1)]


def rollovers(currency: str) -> st.SearchStrategy[Rollover | None]:
    """No rollover (most often), or caps: an amount at the currency's precision, a percent, both."""
    most = st.sampled_from(["1", "40", "250"] if currency == "TK" else ["0.01", "40", "250.5"])
    percent = st.sampled_from(["10", "33.3", "50", "100"])
    return (
        st.none()
        | st.none()
        | st.builds(rollover, st.none() | most, percent)
        | st.builds(rollover, most, st.none())
    )


@st.composite
def scenarios(draw: st.DrawFn) -> ReplayInput:
    instant = st.sampled_from(INSTANTS)
    currencies = draw(st.sampled_from([(CR,), (CR, TK)]))
    ids = [c.id for c in currencies]

    def amount(currency: str, low: int = 1, high: int = 2000) -> str:
        units = draw(st.integers(low, high))
        return str(units) if currency == "TK" else str(Decimal(units).scaleb(-2))

    grants = []
    for index in range(draw(st.integers(0, 8))):
        currency = draw(st.sampled_from(ids))
        effective = draw(instant)
        later = [t for t in INSTANTS if t > effective]
        expires = draw(st.none() | st.sampled_from(later)) if later else None
        voided = draw(st.none() | instant)
        kind = draw(st.sampled_from(["PAID", "PROMOTIONAL", "RECURRING"]))
        customer = draw(st.sampled_from(CUSTOMERS))
        # Ids below and above the customer's auto-recharge grant ids ("a:auto_recharge:CR:0"),
        # which tie-break against them.
        style = draw(st.sampled_from(["g{}", "{}:a{}", "{}:auto{}", "{}:b{}"]))
        grants.append(
            grant(
                style.format(index) if style == "g{}" else style.format(customer, index),
                amount(currency),
                effective,
                type=kind,
                customer=customer,
                currency=currency,
                priority=draw(st.integers(0, 2)),
                expires=expires,
                voided=voided,
                cost_basis="0.01" if kind == "PAID" else "0",
                source=draw(st.sampled_from(["manual", "top_up"])),
            )
        )
    recurring = []
    for _ in range(draw(st.integers(0, 3))):
        customer = draw(st.sampled_from(CUSTOMERS))
        currency = draw(st.sampled_from(ids))
        start = draw(st.sampled_from(MONTH_ENDS) | instant)
        change = draw(st.none() | st.sampled_from([t for t in INSTANTS if t > start] or [None]))
        plan = draw(st.sampled_from(["basic", "pro"]))
        cadence = draw(st.sampled_from(["monthly", "monthly", "yearly"]))
        recurring.append(
            entitlement(
                plan,
                amount(currency, 100, 3000),
                start,
                end=change,
                cadence=cadence,
                customer=customer,
                currency=currency,
                rollover=draw(rollovers(currency)),
            )
        )
        if change is not None and draw(st.booleans()):  # plan change: the next plan starts
            recurring.append(
                entitlement(
                    draw(st.sampled_from(["basic", "pro"])),
                    amount(currency, 100, 3000),
                    change,
                    customer=customer,
                    currency=currency,
                    rollover=draw(rollovers(currency)),
                )
            )
    recharges = []
    for customer in CUSTOMERS:
        for currency in ids:
            if draw(st.integers(0, 2)) == 0:
                threshold = draw(st.integers(0, 500))
                target = threshold + draw(st.integers(0, 1500))
                limit = draw(st.none() | st.sampled_from(["0", "0.5", "3", "7.25", "100"]))
                recharges.append(
                    recharge(
                        amount(currency, threshold, threshold) if threshold else "0",
                        amount(currency, target, target) if target else "0",
                        limit=limit,
                        expiry=draw(st.sampled_from(["none", "1_month", "1_year"])),
                        customer=customer,
                        currency=currency,
                    )
                )
    consumptions = []
    for index in range(draw(st.integers(0, 25))):
        features = draw(
            st.lists(st.sampled_from(["chat", "embed", "image"]), max_size=3, unique=True)
        )
        costs = []
        for feature in features:
            currency = draw(st.sampled_from(ids))
            zero = draw(st.integers(0, 5)) == 0
            costs.append((feature, "0" if zero else amount(currency, 1, 600), currency))
        consumptions.append(
            event(
                f"e{index}",
                draw(instant) + timedelta(microseconds=draw(st.sampled_from([0, 0, 1]))),
                *costs,
                customer=draw(st.sampled_from(CUSTOMERS)),
            )
        )
    until = draw(st.none() | instant)
    return ReplayInput(
        currencies=currencies,
        grants=tuple(grants),
        recurring=tuple(recurring),
        auto_recharges=tuple(recharges),
        consumptions=tuple(consumptions),
        enforcement=draw(st.sampled_from(["overdraft", "block"])),
        until=until,
        start=draw(st.sampled_from([None, None, None, at(10)])),
        scenario="prop",
    )


def _shuffled(replay_input: ReplayInput, seed: int) -> ReplayInput:
    rng = random.Random(seed)

    def shuffle(items: tuple) -> tuple:  # type: ignore[type-arg]
        items_list = list(items)
        rng.shuffle(items_list)
        return tuple(items_list)

    return ReplayInput(
        currencies=shuffle(replay_input.currencies),
        grants=shuffle(replay_input.grants),
        recurring=shuffle(replay_input.recurring),
        auto_recharges=shuffle(replay_input.auto_recharges),
        consumptions=shuffle(tuple(replay_input.consumptions)),
        enforcement=replay_input.enforcement,
        start=replay_input.start,
        until=replay_input.until,
        scenario=replay_input.scenario,
    )


def _check(replay_input: ReplayInput) -> None:
    try:
        prepared = prepare(replay_input)
    except ValidationError as error:  # an explicit `until` before the (default) start
        assert "the horizon ends before it starts" in str(error)
        return
    ledger_ref, denied_ref = run_engine(prepared, "reference")
    ledger_fast, denied_fast = run_engine(prepared, "fast")
    assert ledger_fast.equals(ledger_ref), (ledger_fast, ledger_ref)
    assert denied_fast.equals(denied_ref)
    assert check_invariants(ledger_ref, denied_ref, prepared) == []
    shuffled = replay(_shuffled(replay_input, 7), engine="fast")
    assert shuffled.ledger.equals(ledger_ref)
    assert shuffled.denied_events.equals(denied_ref)


@settings(
    max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(scenarios())
def test_engines_agree_and_invariants_hold(replay_input: ReplayInput) -> None:
    _check(replay_input)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("PRICING_LAB_LONG") != "1", reason="set PRICING_LAB_LONG=1")
@settings(max_examples=20_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(scenarios())
def test_engines_agree_long(replay_input: ReplayInput) -> None:
    _check(replay_input)
