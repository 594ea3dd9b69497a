"""Found by the §5–§6 acceptance sweep (qa6) in `simulation/scenarios.py`, routed to its owner."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pricing_lab.simulation.scenarios import Scenario, validate_scenarios
from tests.simulation.helpers import catalog


@pytest.mark.xfail(
    strict=True,
    reason="validate_scenarios checks a rollover max_amount's places against the currency but not "
    "plan_credits': `plan_credits: {basic: 0.001}` passes, and only that scenario's replay, after "
    "the ones before it ran, refuses it (`recurring[acme:basic:CR]: amount has more than 2 "
    "decimal places`) instead of every problem listed with its scenario path before any replay",
)
def test_plan_credits_with_more_places_than_the_currency_are_a_scenario_problem() -> None:
    scenario = Scenario(name="tiny", plan_credits={"basic": Decimal("0.001")})
    problems = [str(p) for p in validate_scenarios([scenario], catalog())]
    assert problems == ["scenarios[0].plan_credits.basic: at most 2 decimal places"]
