"""Run-out forecasts (SPEC §6): who will run out of credits within a horizon, when, how sure.

* `forecast(con, catalog, customers, as_of=…, horizon="30d")` — one row per customer and
  currency: balance at T, probability of running out within the horizon, p10 / p50 / p90 run-out
  instants, expected breakage of grants expiring in it, too-little-history flag;
* `forecast_scenarios(…)` — the same per what-if scenario of a comparison (a `scenario` column);
* `backtest(…)` — cuts the history at several instants, forecasts from each, replays what really
  happened and compares, with a naive linear-burn baseline beside it; `backtest_summary` gives
  calibration and errors.

Method and rules: docs/forecast.md.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from pricing_lab.forecast.backtest import backtest, backtest_summary
from pricing_lab.forecast.history import BurnModel
from pricing_lab.forecast.run_out import forecast, parse_horizon, run_out_ranking
from pricing_lab.forecast.scenarios import forecast_scenarios

__all__ = [
    "BurnModel",
    "backtest",
    "backtest_summary",
    "forecast",
    "forecast_scenarios",
    "parse_horizon",
    "run_out_ranking",
]


class _CallablePackage(types.ModuleType):
    """`pricing_lab.forecast` names both this package and its main function, so importing the
    package must not hide the function: calling the package calls `forecast`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return forecast(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
