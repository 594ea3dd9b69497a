"""The per-currency summary against a count of the ledger's entries, one by one, in Decimal.

The summary adds up the per-customer balances; these random replays (the property tests'
scenarios: several currencies, overdraft and block mode, auto-recharge, voids, expiries) check
that this gives what counting the entries themselves gives, customers with denied events only
included.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from hypothesis import HealthCheck, given, settings

from pricing_lab.errors import ValidationError
from pricing_lab.ledger import ReplayInput, replay
from tests.ledger.test_properties import scenarios


def _counted(replay_input: ReplayInput, ledger_rows: list[dict[str, object]]) -> dict[str, dict]:
    basis = {g.grant_id: g.cost_basis for g in replay_input.grants}
    unit_price = {c.id: c.unit_price for c in replay_input.currencies}
    totals: dict[str, dict] = defaultdict(lambda: defaultdict(Decimal))
    customers: dict[str, set[object]] = defaultdict(set)
    for row in ledger_rows:
        currency, amount = str(row["currency_id"]), row["amount"]
        assert isinstance(amount, Decimal)
        figures = totals[currency]
        customers[currency].add(row["customer_id"])
        figures[str(row["entry_type"]).lower()] += amount
        figures["final_balance"] += amount
        if row["grant_type"] == "OVERDRAFT":
            figures["overdraft_debt"] -= amount
        value = (
            unit_price[currency]
            if row["grant_source"] == "auto_recharge"
            else basis.get(str(row["grant_id"]), Decimal(0))
        )
        if row["entry_type"] == "EXPIRED":
            figures["breakage"] -= amount * value
        if row["entry_type"] == "GRANTED" and row["grant_type"] == "PAID":
            figures["credit_revenue"] += amount * value
    return {
        currency: {
            "granted": figures["granted"],
            "consumed": -figures["consumed"],
            "expired": -figures["expired"],
            "voided": -figures["voided"],
            "rolled_over": -figures["rolled_over"],
            "final_balance": figures["final_balance"],
            "overdraft_debt": figures["overdraft_debt"],
            "customers": len(customers[currency]),
            "breakage": figures["breakage"],
            "credit_revenue": figures["credit_revenue"],
        }
        for currency, figures in totals.items()
    }


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(scenarios())
def test_the_summary_counts_what_the_ledger_holds(replay_input: ReplayInput) -> None:
    try:
        result = replay(replay_input, engine="fast")
    except ValidationError:
        return  # an explicit `until` before the start (the property tests check the message)
    expected = _counted(replay_input, list(result.ledger.iter_rows(named=True)))
    got = {row.pop("currency_id"): row for row in result.summary.iter_rows(named=True)}
    assert got == expected
