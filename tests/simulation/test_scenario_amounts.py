"""Scenario amounts are checked against the catalog before any replay (SPEC §2, §6)."""

from __future__ import annotations

from decimal import Decimal

from pricing_lab.simulation.scenarios import Scenario, validate_scenarios
from tests.simulation.helpers import catalog


def test_plan_credits_with_more_places_than_the_currency_are_a_scenario_problem() -> None:
    scenario = Scenario(name="tiny", plan_credits={"basic": Decimal("0.001")})
    problems = [str(p) for p in validate_scenarios([scenario], catalog())]
    # Before any scenario is replayed, with its place (the replay would refuse it only when this
    # scenario's turn came, naming an entitlement instead).
    assert problems == ["scenarios[0].plan_credits.basic: at most 2 decimal places"]
    assert (
        validate_scenarios(
            [Scenario(name="ok", plan_credits={"basic": Decimal("0.01")})], catalog()
        )
        == []
    )
