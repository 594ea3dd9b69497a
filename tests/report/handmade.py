"""A comparison small enough to work out by hand, for the report's tests.

One feature, `calls`, costs 1 credit a call (2 in the `double` scenarios). Three customers each
make one call a day at 10:00 on 2 – 5 January 2024:

* alice holds a 10-credit top-up (PAID, 0.01 USD a credit) expiring on 10 January: she never
  runs out; what she has left then expires (breakage 6 credits = 0.06 USD in the base, 2 credits
  = 0.02 USD at double cost);
* bob holds a 5-credit promotion: 4 credits in the base (never runs out); at double cost his
  third call leaves −1 (he newly runs out on 4 January); under `block` at double cost his third
  and fourth calls are denied (he runs out on 4 January, by denial);
* carol holds a 3-credit promotion: her third call leaves 0 in the base (runs out on 4 January);
  at double cost her second call leaves −1 (3 January: one day earlier); under `block` at
  double cost her second, third and fourth calls are denied (3 January).

So: consumed 12 / 24 / 14 credits, customers who run out 1 / 2 / 2 (bob newly in both),
denied events 0 / 0 / 5, credit revenue 0.10 USD everywhere.
"""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import polars as pl

from pricing_lab.catalog.yaml_format import load_catalog
from pricing_lab.events.ingest import ingest_events
from pricing_lab.simulation.customers import customers_from_mapping
from pricing_lab.simulation.scenarios import Comparison, Scenario, compare, scenarios_from_mapping

CATALOG = """
currencies:
  - {id: credits, name: Credits, unit_price: 0.01, price_currency: USD, precision: 2}
features:
  - id: calls
    name: API calls
    type: metered
    units: {singular: call, plural: calls}
    meter: {source: events, event_name: api.call, aggregation: count}
default_credit_rates:
  - {feature: calls, mode: per_unit, per_unit: 1}
"""

# The same catalog with a cost to serve: 0.005 USD a call. By hand (recognised revenue: alice's
# consumed credits × 0.01; bob's and carol's promotions and overdrafts are worth 0):
#   base           revenue 0.04  breakage 0.06  cost 0.060  margin 0.040  share 40%
#   double         revenue 0.08  breakage 0.02  cost 0.060  margin 0.040  share 40%
#   strict_double  revenue 0.08  breakage 0.02  cost 0.035  margin 0.065  share 65%
# bob and carol have negative margin everywhere: −0.02 each (4 calls served), and under
# strict_double bob −0.010 (2 calls served), carol −0.005 (1 call served).
COSTED_CATALOG = CATALOG.replace(
    "    meter: {source: events, event_name: api.call, aggregation: count}\n",
    "    meter: {source: events, event_name: api.call, aggregation: count}\n"
    '    cost: [{formula: "0.005"}]\n',
)

CUSTOMERS = {
    "customers": [
        {
            "id": "alice",
            "top_ups": [
                {
                    "currency": "credits",
                    "amount": 10,
                    "cost_basis": "0.01",
                    "at": "2024-01-01",
                    "expires_at": "2024-01-10",
                }
            ],
        },
        {
            "id": "bob",
            "grants": [{"currency": "credits", "amount": 5, "effective_at": "2024-01-01"}],
        },
        {
            "id": "carol",
            "grants": [{"currency": "credits", "amount": 3, "effective_at": "2024-01-01"}],
        },
    ]
}

SCENARIOS = {
    "base": "base",
    "scenarios": [
        {"name": "base"},
        {"name": "double", "rate_multipliers": {"calls": 2}},
        {"name": "strict_double", "rate_multipliers": {"calls": 2}, "enforcement": "block"},
    ],
}
UNTIL = datetime(2024, 1, 11, tzinfo=UTC)


def events() -> pl.DataFrame:
    rows = [
        {
            "event_id": f"{customer}-{day}",
            "customer_id": customer,
            "event_name": "api.call",
            "timestamp": datetime(2024, 1, day, 10),
        }
        for customer in ("alice", "bob", "carol")
        for day in (2, 3, 4, 5)
    ]
    return pl.DataFrame(rows)


def handmade_comparison(
    scenarios: tuple[Scenario, ...] | None = None, *, catalog: str = CATALOG
) -> Comparison:
    """The comparison described above (or of `scenarios` over the same inputs; with
    `catalog=COSTED_CATALOG`, with costs to serve)."""
    con = duckdb.connect()
    ingest = ingest_events(con, events())
    loaded = load_catalog(catalog, source="handmade.yaml")
    customers = customers_from_mapping(CUSTOMERS, source="handmade customers")
    base, listed = scenarios_from_mapping(SCENARIOS)
    return compare(
        con,
        loaded,
        customers,
        listed if scenarios is None else scenarios,
        base=base,
        ingest=ingest,
        until=UNTIL,
    )
