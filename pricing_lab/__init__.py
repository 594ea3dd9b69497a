"""pricing_lab: a local, exact, reproducible simulation lab for credit-based pricing.

The names a notebook needs, loaded lazily (importing `pricing_lab` stays fast and light):

* catalog — `open_store`, `load_catalog_file`, `Catalog`
* formulas — `Formula`
* usage — `ingest_events`, `load_sample_events`, `attribution`, `generate_events`, `usage_report`
* customers — `load_customers`, `CustomerInputs`, `Subscription`, `Grant`, `AutoRecharge`
* replay — `simulate`, `SimulationResult`, `balance_at`, `check_invariants`
* run-out forecast — `forecast`
* scenarios — `Scenario`, `RateChange`, `CostChange`, `load_scenarios`, `compare`, `sweep`,
  `goal_seek`, `share_within_included`
* margin — `margin_by`, `negative_margin_customers` (over `SimulationResult.margin`)
* charts and reports — `charts` (module), `comparison_report`, `write_report`, `runout_changes`,
  `forecast_at_risk`
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pricing_lab.errors import InputError, PricingLabError, Problem, ValidationError

if TYPE_CHECKING:
    from pricing_lab.catalog.model import Catalog
    from pricing_lab.catalog.store import open_store
    from pricing_lab.catalog.yaml_format import load_catalog_file
    from pricing_lab.events.ingest import ingest_events
    from pricing_lab.events.real import attribution, load_sample_events
    from pricing_lab.events.report import usage_report
    from pricing_lab.events.synthetic import generate_events
    from pricing_lab.forecast import forecast
    from pricing_lab.formula import Formula
    from pricing_lab.ledger import balance_at, check_invariants
    from pricing_lab.ledger.model import AutoRecharge, Grant, Subscription
    from pricing_lab.report import charts
    from pricing_lab.report.build import comparison_report
    from pricing_lab.report.findings import forecast_at_risk, runout_changes
    from pricing_lab.report.html import write_report
    from pricing_lab.simulation.customers import CustomerInputs, load_customers
    from pricing_lab.simulation.margin import margin_by, negative_margin_customers
    from pricing_lab.simulation.scenarios import (
        CostChange,
        RateChange,
        Scenario,
        compare,
        goal_seek,
        load_scenarios,
        share_within_included,
        sweep,
    )
    from pricing_lab.simulation.simulate import SimulationResult, simulate

_EXPORTS = {
    "Catalog": "pricing_lab.catalog.model",
    "open_store": "pricing_lab.catalog.store",
    "load_catalog_file": "pricing_lab.catalog.yaml_format",
    "Formula": "pricing_lab.formula",
    "forecast": "pricing_lab.forecast",
    "ingest_events": "pricing_lab.events.ingest",
    "load_sample_events": "pricing_lab.events.real",
    "attribution": "pricing_lab.events.real",
    "usage_report": "pricing_lab.events.report",
    "generate_events": "pricing_lab.events.synthetic",
    "CustomerInputs": "pricing_lab.simulation.customers",
    "load_customers": "pricing_lab.simulation.customers",
    "Subscription": "pricing_lab.ledger.model",
    "Grant": "pricing_lab.ledger.model",
    "AutoRecharge": "pricing_lab.ledger.model",
    "simulate": "pricing_lab.simulation.simulate",
    "SimulationResult": "pricing_lab.simulation.simulate",
    "balance_at": "pricing_lab.ledger",
    "check_invariants": "pricing_lab.ledger",
    "Scenario": "pricing_lab.simulation.scenarios",
    "RateChange": "pricing_lab.simulation.scenarios",
    "CostChange": "pricing_lab.simulation.scenarios",
    "margin_by": "pricing_lab.simulation.margin",
    "negative_margin_customers": "pricing_lab.simulation.margin",
    "load_scenarios": "pricing_lab.simulation.scenarios",
    "compare": "pricing_lab.simulation.scenarios",
    "sweep": "pricing_lab.simulation.scenarios",
    "goal_seek": "pricing_lab.simulation.scenarios",
    "comparison_report": "pricing_lab.report.build",
    "write_report": "pricing_lab.report.html",
    "share_within_included": "pricing_lab.simulation.scenarios",
    "runout_changes": "pricing_lab.report.findings",
    "forecast_at_risk": "pricing_lab.report.findings",
}
_MODULES = {"charts": "pricing_lab.report.charts"}

__all__ = [
    "AutoRecharge",
    "Catalog",
    "CostChange",
    "CustomerInputs",
    "Formula",
    "Grant",
    "InputError",
    "PricingLabError",
    "Problem",
    "RateChange",
    "Scenario",
    "SimulationResult",
    "Subscription",
    "ValidationError",
    "attribution",
    "balance_at",
    "charts",
    "check_invariants",
    "compare",
    "comparison_report",
    "forecast",
    "forecast_at_risk",
    "generate_events",
    "goal_seek",
    "ingest_events",
    "load_catalog_file",
    "load_customers",
    "load_sample_events",
    "load_scenarios",
    "margin_by",
    "negative_margin_customers",
    "open_store",
    "runout_changes",
    "share_within_included",
    "simulate",
    "sweep",
    "usage_report",
    "write_report",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(_MODULES[name])
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pricing_lab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
