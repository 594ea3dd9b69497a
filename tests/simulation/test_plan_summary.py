"""The per-plan summary: every ledger entry counts for the plan of its customer at its time.

`simulate` takes most customers' totals from their balances rows (one plan over the whole
ledger); these tests hold that shortcut to an entry-by-entry count written out in Python.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import duckdb
import pytest

from pricing_lab.events.real import DEFAULT_START, load_sample_events
from pricing_lab.ledger.model import Enforcement, Subscription
from pricing_lab.simulation.customers import CustomerInputs
from pricing_lab.simulation.demo import demo_customers, sample_catalog
from pricing_lab.simulation.simulate import NO_PLAN_NAME, SimulationResult, plan_summary, simulate


def _varied_customers(customers: CustomerInputs) -> tuple[CustomerInputs, dict[str, str]]:
    """The demo's customers with every kind of subscription history, one customer each."""
    ids = sorted({s.customer_id for s in customers.subscriptions})
    late, moved, ended, unsubscribed, bare = ids[:5]
    day = timedelta(days=1)
    kept = [s for s in customers.subscriptions if s.customer_id not in (late, moved, ended)]
    kept = [s for s in kept if s.customer_id not in (unsubscribed, bare)]
    changed = [
        Subscription(subscription_id="late", customer_id=late, plan_id="pro",
                     start=DEFAULT_START + 10 * day),
        Subscription(subscription_id="moved:free", customer_id=moved, plan_id="free",
                     start=DEFAULT_START, end=DEFAULT_START + 5 * day),
        Subscription(subscription_id="moved:pro", customer_id=moved, plan_id="pro",
                     start=DEFAULT_START + 5 * day),
        Subscription(subscription_id="ended", customer_id=ended, plan_id="enterprise",
                     start=DEFAULT_START, end=DEFAULT_START + 3 * day),
    ]  # fmt: skip
    varied = replace(
        customers,
        subscriptions=tuple(kept + changed),
        # `bare` has no subscription, grant or recharge: in block mode all its events are denied.
        grants=tuple(g for g in customers.grants if g.customer_id != bare),
        auto_recharges=tuple(r for r in customers.auto_recharges if r.customer_id != bare),
    )
    roles = {"late": late, "moved": moved, "ended": ended, "unsubscribed": unsubscribed}
    return varied, roles | {"bare": bare}


def _counted_by_hand(
    result: SimulationResult, subscriptions: tuple[Subscription, ...]
) -> dict[tuple[str, str], tuple[int, Decimal, Decimal, Decimal, Decimal, Decimal]]:
    spans = defaultdict(list)
    for s in subscriptions:
        spans[s.customer_id].append(s)
    customers: dict[tuple[str, str], set[str]] = defaultdict(set)
    totals: dict[tuple[str, str], dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for row in result.ledger.iter_rows(named=True):
        at = row["timestamp"]
        plan = next(
            (
                s.plan_id
                for s in spans[row["customer_id"]]
                if s.start.replace(tzinfo=at.tzinfo) <= at
                and (s.end is None or at < s.end.replace(tzinfo=at.tzinfo))
            ),
            NO_PLAN_NAME,
        )
        key = (row["currency_id"], plan)
        customers[key].add(row["customer_id"])
        totals[key][row["entry_type"]] += row["amount"]
    return {
        key: (
            len(customers[key]),
            totals[key]["GRANTED"],
            -totals[key]["CONSUMED"],
            -totals[key]["EXPIRED"],
            -totals[key]["VOIDED"],
            -totals[key]["ROLLED_OVER"],
        )
        for key in customers
    }


@pytest.mark.parametrize("enforcement", ["overdraft", "block"])
def test_plan_totals_match_an_entry_by_entry_count(enforcement: Enforcement) -> None:
    con = duckdb.connect()
    ingest = load_sample_events(con)
    customers, roles = _varied_customers(demo_customers(con, start=DEFAULT_START))
    result = simulate(con, sample_catalog(), customers, ingest=ingest, enforcement=enforcement)
    ledger_customers = set(result.ledger["customer_id"].unique())
    assert roles["late"] in ledger_customers and roles["moved"] in ledger_customers
    if enforcement == "block":  # a balances row with denied events and no entry at all
        bare = result.balances.filter(customer_id=roles["bare"])
        assert bare["events_denied"].item() > 0 and roles["bare"] not in ledger_customers

    expected = _counted_by_hand(result, customers.subscriptions)
    got = {
        (row[0], row[1]): tuple(row[2:]) for row in result.plan_summary.iter_rows()
    }  # fmt: skip
    assert got == expected
    assert plan_summary(result.ledger, customers.subscriptions).equals(result.plan_summary)
