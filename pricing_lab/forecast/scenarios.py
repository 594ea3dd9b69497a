"""`forecast_scenarios`: the run-out forecast of each what-if scenario of a comparison.

Each scenario changes rates, credits, auto-recharge or enforcement, and so who runs out next: its
forecast replays the history before T with the scenario's inputs (`Scenario.apply`), exactly as
`forecast` does for the base. The tables come back stacked, a `scenario` column first, in the
comparison's order (the base first); `write_comparison(…, forecast=…)` shows them per scenario.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import duckdb
import polars as pl

from pricing_lab.catalog.model import Catalog
from pricing_lab.forecast.history import BurnModel
from pricing_lab.forecast.run_out import MIN_PATHS, forecast
from pricing_lab.ledger.model import Enforcement
from pricing_lab.simulation.customers import CustomerInputs
from pricing_lab.simulation.scenarios import Scenario


def forecast_scenarios(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    customers: CustomerInputs,
    scenarios: Sequence[Scenario],
    *,
    base: str = "base",
    as_of: datetime,
    horizon: timedelta | str,
    paths: int = MIN_PATHS,
    seed: int = 0,
    enforcement: Enforcement = "overdraft",
    events: str = "events",
    model: BurnModel | None = None,
) -> pl.DataFrame:
    """`forecast` for the base and every scenario (as `compare` runs them: the base is the
    scenario named `base` if there is one, otherwise the inputs unchanged; a scenario's own
    enforcement wins over `enforcement`). One row per scenario, customer and currency: `scenario`,
    then `forecast`'s columns. The same seed is used for every scenario, so differences between
    scenarios come from their inputs, not from the draws."""
    runs = list(scenarios)
    if base not in {s.name for s in runs}:
        runs.insert(0, Scenario(name=base))
    tables = []
    for scenario in runs:
        changed_catalog, changed_customers = scenario.apply(catalog, customers)
        table = forecast(
            con, changed_catalog, changed_customers, as_of=as_of, horizon=horizon, paths=paths,
            seed=seed, enforcement=scenario.enforcement or enforcement, events=events, model=model,
        )  # fmt: skip
        tables.append(table.select(pl.lit(scenario.name).alias("scenario"), pl.all()))
    return pl.concat(tables)
