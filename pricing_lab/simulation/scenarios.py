"""What-if scenarios (SPEC §6): named changes on a base, compared over the same events.

A `Scenario` changes formulas or per-unit rates, scales rates, sets plan credit amounts, adds,
changes or removes rollover on credit entitlements, scales grants, overrides auto-recharge settings
or the enforcement policy. `compare` costs the events
once per distinct set of rates (in one pass for the sets that can share it), replays every
scenario, and returns per customer and per feature what changes against the base: credits
consumed, the date credits run out, denied events, recharge revenue, breakage and credits rolled
over. `sweep`
varies one parameter over a grid; `goal_seek` finds the value of one coefficient that meets a
target.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from pricing_lab.activity.stream import DEFAULT_ACTIVITY, ActivityOptions, activity_counts
from pricing_lab.catalog.model import (
    AddOn,
    Catalog,
    CreditEntitlement,
    CreditRate,
    Feature,
    Plan,
    Rollover,
    UnitCost,
)
from pricing_lab.errors import InputError, Problem, ValidationError
from pricing_lab.events.ingest import IngestReport
from pricing_lab.formula import check_formula
from pricing_lab.ledger.model import GRANT_EXPIRIES, Enforcement
from pricing_lab.money import quantize
from pricing_lab.outputs import SCENARIOS_FOLDER, scenario_folder_name
from pricing_lab.scale.executors import Executor
from pricing_lab.scale.run import in_buckets
from pricing_lab.simulation.cost_to_serve import serve_costs
from pricing_lab.simulation.costing import cost_events, cost_events_many
from pricing_lab.simulation.customers import CustomerInputs
from pricing_lab.simulation.margin import compare_margins
from pricing_lab.simulation.simulate import SimulationResult, simulate, unusable_values_rejected
from pricing_lab.timeutil import as_utc, timestamp_value

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class RateChange:
    """A new rate for one feature, in one plan (or add-on) or, with `plan=None`, everywhere."""

    feature: str
    formula: str | None = None
    per_unit: Decimal | None = None
    plan: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CostChange:
    """A new cost to serve for one feature: from `valid_from` on (earlier entries kept), or with
    `valid_from=None` in place of the feature's whole cost list."""

    feature: str
    formula: str
    valid_from: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RolloverChange:
    """Rollover on the credit entitlements of one plan or add-on (`plan`), in one currency or, with
    `currency=None`, in each: `remove`, or the new caps (they replace the current rollover as a
    whole: at least one of max_amount, max_percent, as in the catalog)."""

    plan: str
    currency: str | None = None
    max_amount: Decimal | None = None
    max_percent: Decimal | None = None
    remove: bool = False

    def rollover(self) -> Rollover | None:
        """The entitlement's rollover after this change."""
        if self.remove:
            return None
        return Rollover(max_amount=self.max_amount, max_percent=self.max_percent)


@dataclass(frozen=True, slots=True, kw_only=True)
class AutoRechargeChange:
    """New values for the customers' auto-recharge settings (None keeps the current value)."""

    threshold: Decimal | None = None
    target: Decimal | None = None
    monthly_spend_limit: Decimal | None = None
    grant_expiry: str | None = None
    disabled: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """Named changes on top of the base inputs. A scenario with no changes is the base itself."""

    name: str
    description: str = ""
    rates: tuple[RateChange, ...] = ()
    rate_multipliers: Mapping[str, Decimal] = field(default_factory=dict)
    plan_credits: Mapping[str, Decimal] = field(default_factory=dict)
    rollover: tuple[RolloverChange, ...] = ()
    grant_multipliers: Mapping[str, Decimal] = field(default_factory=dict)
    auto_recharge: AutoRechargeChange | None = None
    enforcement: Enforcement | None = None
    costs: tuple[CostChange, ...] = ()
    cost_factors: Mapping[str, Decimal] = field(default_factory=dict)

    def apply(self, catalog: Catalog, customers: CustomerInputs) -> tuple[Catalog, CustomerInputs]:
        """The catalog and customer inputs with this scenario's changes."""
        return _apply_customers(self, _apply_catalog(self, catalog), customers)


def _rate_for(change: RateChange, old: CreditRate) -> CreditRate:
    if change.formula is not None:
        return replace(old, mode="formula", formula=change.formula, per_unit=None)
    return replace(old, mode="per_unit", per_unit=change.per_unit, formula=None)


def _scaled_rate(rate: CreditRate, factor: Decimal) -> CreditRate:
    if rate.mode == "per_unit" and rate.per_unit is not None:
        return replace(rate, per_unit=rate.per_unit * factor)
    return replace(rate, formula=f"{format(factor, 'f')} * ({rate.formula})")


def _apply_catalog(scenario: Scenario, catalog: Catalog) -> Catalog:
    def rates(owner: str | None, current: tuple[CreditRate, ...]) -> tuple[CreditRate, ...]:
        result = []
        for rate in current:
            for change in scenario.rates:
                if change.feature == rate.feature and change.plan in (None, owner):
                    rate = _rate_for(change, rate)
            factor = scenario.rate_multipliers.get(rate.feature)
            result.append(_scaled_rate(rate, factor) if factor is not None else rate)
        return tuple(result)

    def credits(owner: str, entitlements: tuple[Any, ...]) -> tuple[Any, ...]:
        amount = scenario.plan_credits.get(owner)
        if amount is not None:
            entitlements = tuple(
                replace(e, amount=amount) if isinstance(e, CreditEntitlement) else e
                for e in entitlements
            )
        for change in scenario.rollover:
            if change.plan == owner:
                entitlements = tuple(
                    replace(e, rollover=change.rollover())
                    if isinstance(e, CreditEntitlement) and change.currency in (None, e.currency)
                    else e
                    for e in entitlements
                )
        return entitlements

    return replace(
        catalog,
        features=tuple(_costed(scenario, f) for f in catalog.features),
        default_credit_rates=rates(None, catalog.default_credit_rates),
        plans=tuple(
            replace(
                p,
                credit_rates=rates(p.id, p.credit_rates),
                entitlements=credits(p.id, p.entitlements),
            )
            for p in catalog.plans
        ),
        addons=tuple(
            replace(
                a,
                credit_rates=rates(a.id, a.credit_rates),
                entitlements=credits(a.id, a.entitlements),
            )
            for a in catalog.addons
        ),
    )


def _costed(scenario: Scenario, feature: Feature) -> Feature:
    """`feature` with the scenario's cost changes, then its cost factor, applied."""
    cost = feature.cost
    for change in scenario.costs:
        if change.feature != feature.id:
            continue
        start = change.valid_from
        new = UnitCost(formula=change.formula, valid_from=None if start is None else as_utc(start))
        if new.valid_from is None:
            cost = (new,)
        else:
            kept = [c for c in cost if c.valid_from is None or c.valid_from < new.valid_from]
            cost = (*kept, new)
    factor = scenario.cost_factors.get(feature.id)
    if factor is not None:
        cost = tuple(replace(c, formula=f"{format(factor, 'f')} * ({c.formula})") for c in cost)
    return feature if cost == feature.cost else replace(feature, cost=cost)


def _apply_customers(
    scenario: Scenario, catalog: Catalog, customers: CustomerInputs
) -> tuple[Catalog, CustomerInputs]:
    currencies = {c.id: c for c in catalog.currencies}
    grants = []
    for grant in customers.grants:
        factor = scenario.grant_multipliers.get(grant.type)
        if factor is not None:
            currency = currencies.get(grant.currency_id)
            amount = grant.amount * factor
            if currency is not None:  # an unknown currency is reported by the replay
                amount = quantize(amount, currency.precision, currency.rounding)
            if amount <= 0:
                continue  # a multiplier of 0 removes the grant
            grant = replace(grant, amount=amount)
        grants.append(grant)
    recharges = customers.auto_recharges
    change = scenario.auto_recharge
    if change is not None:
        if change.disabled:
            recharges = ()
        else:
            recharges = tuple(
                replace(
                    r,
                    threshold=change.threshold if change.threshold is not None else r.threshold,
                    target=change.target if change.target is not None else r.target,
                    monthly_spend_limit=change.monthly_spend_limit
                    if change.monthly_spend_limit is not None
                    else r.monthly_spend_limit,
                    grant_expiry=change.grant_expiry or r.grant_expiry,  # type: ignore[arg-type]
                )
                for r in recharges
            )
    return catalog, replace(customers, grants=tuple(grants), auto_recharges=recharges)


def validate_scenarios(scenarios: Sequence[Scenario], catalog: Catalog) -> list[Problem]:
    """Every problem of a scenario list against the catalog it changes, with its path."""
    problems: list[Problem] = []
    metered = {f.id for f in catalog.features if f.type == "metered"}
    owners = {p.id for p in catalog.plans} | {a.id for a in catalog.addons}
    names: set[str] = set()
    folders: dict[str, str] = {}
    for index, scenario in enumerate(scenarios):
        here = f"scenarios[{index}]"
        folder = scenario_folder_name(scenario.name)
        if scenario.name in names:
            problems.append(Problem(path=f"{here}.name", message=f"duplicate {scenario.name!r}"))
        elif folder in ("", ".", ".."):
            problems.append(Problem(path=f"{here}.name", message="not usable as a folder name"))
        elif folder in folders:
            problems.append(
                Problem(
                    path=f"{here}.name",
                    message=f"its outputs' folder scenarios/{folder} is that of "
                    f"{folders[folder]!r}: rename one",
                )
            )
        names.add(scenario.name)
        folders.setdefault(folder, scenario.name)
        for r_index, change in enumerate(scenario.rates):
            path = f"{here}.rates[{r_index}]"
            if change.feature not in metered:
                problems.append(Problem(path=f"{path}.feature", message="unknown metered feature"))
            if change.plan is not None and change.plan not in owners:
                problems.append(Problem(path=f"{path}.plan", message="unknown plan or add-on"))
            if (change.formula is None) == (change.per_unit is None):
                problems.append(Problem(path=path, message="give exactly one of formula, per_unit"))
            if change.formula is not None and (message := check_formula(change.formula)):
                problems.append(Problem(path=f"{path}.formula", message=message))
        costed = {f.id for f in catalog.features if f.cost}
        for c_index, cost in enumerate(scenario.costs):
            path = f"{here}.costs[{c_index}]"
            if cost.feature not in metered:
                problems.append(Problem(path=f"{path}.feature", message="unknown metered feature"))
            if message := check_formula(cost.formula):
                problems.append(Problem(path=f"{path}.formula", message=message))
        for feature, factor in scenario.cost_factors.items():
            path = f"{here}.cost_factors.{feature}"
            changed = {c.feature for c in scenario.costs}
            if feature not in costed | changed:
                problems.append(Problem(path=path, message="no cost to serve to scale"))
            if factor < 0:
                problems.append(Problem(path=path, message="must be >= 0"))
        for feature in scenario.rate_multipliers:
            if feature not in metered:
                problems.append(
                    Problem(path=f"{here}.rate_multipliers.{feature}", message="unknown feature")
                )
        for owner in scenario.plan_credits:
            if owner not in owners:
                problems.append(
                    Problem(path=f"{here}.plan_credits.{owner}", message="unknown plan or add-on")
                )
        for grant_type, factor in scenario.grant_multipliers.items():
            path = f"{here}.grant_multipliers.{grant_type}"
            if grant_type not in ("PAID", "PROMOTIONAL", "RECURRING"):
                problems.append(Problem(path=path, message="unknown type"))
            if factor < 0:
                problems.append(Problem(path=path, message="must be >= 0"))
        for feature, factor in scenario.rate_multipliers.items():
            if factor < 0:
                problems.append(
                    Problem(path=f"{here}.rate_multipliers.{feature}", message="must be >= 0")
                )
        for owner, amount in scenario.plan_credits.items():
            if amount <= 0:
                problems.append(Problem(path=f"{here}.plan_credits.{owner}", message="must be > 0"))
            elif (
                places := _credit_places(catalog, _offer(catalog, owner))
            ) is not None and amount != quantize(amount, places):
                # The amount replaces every credit entitlement of the offer: it must be exact in
                # each of their currencies, as a catalog amount must (SPEC §2).
                problems.append(
                    Problem(
                        path=f"{here}.plan_credits.{owner}",
                        message=f"at most {places} decimal places",
                    )
                )
        for r_index, rollover in enumerate(scenario.rollover):
            problems += _rollover_change_problems(f"{here}.rollover[{r_index}]", rollover, catalog)
        recharge = scenario.auto_recharge
        if recharge is not None and recharge.grant_expiry not in (None, *GRANT_EXPIRIES):
            problems.append(
                Problem(
                    path=f"{here}.auto_recharge.grant_expiry",
                    message=f"must be one of {', '.join(GRANT_EXPIRIES)}",
                )
            )
    return problems


def _offer(catalog: Catalog, offer_id: str) -> Plan | AddOn | None:
    offers: list[Plan | AddOn] = [*catalog.plans, *catalog.addons]
    return next((o for o in offers if o.id == offer_id), None)


def _credit_places(
    catalog: Catalog, offer: Plan | AddOn | None, currency: str | None = None
) -> int | None:
    """The fewest decimal places among the currencies of `offer`'s credit entitlements (only
    `currency`'s, when given): what an amount replacing theirs must fit. None: no such offer or
    entitlement."""
    if offer is None:
        return None
    currencies = {
        e.currency
        for e in offer.entitlements
        if isinstance(e, CreditEntitlement) and currency in (None, e.currency)
    }
    return min((c.precision for c in catalog.currencies if c.id in currencies), default=None)


def _rollover_change_problems(path: str, change: RolloverChange, catalog: Catalog) -> list[Problem]:
    """A rollover change names a plan or add-on with a credit entitlement (in `currency`, when
    given), and either removes rollover or gives caps the catalog would accept."""
    offer = _offer(catalog, change.plan)
    if offer is None:
        return [Problem(path=f"{path}.plan", message="unknown plan or add-on")]
    credit = [e for e in offer.entitlements if isinstance(e, CreditEntitlement)]
    currencies = [e.currency for e in credit if change.currency in (None, e.currency)]
    if not currencies:
        where = f" in currency {change.currency!r}" if change.currency else ""
        return [Problem(path=path, message=f"{change.plan!r} has no credit entitlement{where}")]
    caps = change.max_amount is not None or change.max_percent is not None
    if change.remove:
        if caps:
            return [Problem(path=path, message="give remove or caps, not both")]
        return []
    problems: list[Problem] = []
    if not caps:
        problems.append(Problem(path=path, message="give max_amount, max_percent or remove"))
    if change.max_amount is not None:
        precision = _credit_places(catalog, offer, change.currency)
        if change.max_amount <= 0:
            problems.append(Problem(path=f"{path}.max_amount", message="must be > 0"))
        elif precision is not None and change.max_amount != quantize(change.max_amount, precision):
            problems.append(
                Problem(path=f"{path}.max_amount", message=f"at most {precision} decimal places")
            )
    percent = change.max_percent
    if percent is not None and not 0 < percent <= 100:
        problems.append(Problem(path=f"{path}.max_percent", message="must be > 0 and <= 100"))
    return problems


# -- reading scenario files ----------------------------------------------------------------------


def load_scenarios(path: str | Path) -> tuple[str, tuple[Scenario, ...]]:
    """Read a scenario YAML file: `(base name, scenarios)`. See docs/scenarios.md."""
    from pricing_lab.catalog.yaml_format import parse_yaml, read_text_file

    file = Path(path)
    document = parse_yaml(read_text_file(file, what="scenario"), source=str(file))
    if not isinstance(document, Mapping) or not isinstance(document.get("scenarios"), list):
        raise InputError(f"{file}: expected a mapping with a `scenarios:` list")
    return scenarios_from_mapping(document, source=str(file))


def scenarios_from_mapping(
    document: Mapping[str, Any], *, source: str = ""
) -> tuple[str, tuple[Scenario, ...]]:
    """Scenarios from a parsed YAML-like mapping; every problem is listed with its path."""
    problems: list[Problem] = []
    for key in sorted(set(document) - {"base", "scenarios"}, key=str):
        problems.append(Problem(path=str(key), message="unknown key"))
    scenarios = []
    known = {"name", "description", "rates", "rate_multipliers", "plan_credits", "rollover"} | {
        "grant_multipliers",
        "auto_recharge",
        "enforcement",
        "costs",
        "cost_factors",
    }
    for index, item in enumerate(document.get("scenarios") or []):
        here = f"scenarios[{index}]"
        if not isinstance(item, Mapping) or not item.get("name"):
            problems.append(Problem(path=here, message="expected a mapping with a name"))
            continue
        for key in sorted(set(item) - known, key=str):
            problems.append(Problem(path=f"{here}.{key}", message="unknown key"))
        enforcement = item.get("enforcement")
        if enforcement not in (None, "overdraft", "block"):
            problems.append(
                Problem(path=f"{here}.enforcement", message="must be overdraft or block")
            )
        rates = []
        raw_rates = item.get("rates") or []
        if not isinstance(raw_rates, list):
            problems.append(Problem(path=f"{here}.rates", message="expected a list"))
            raw_rates = []
        for r_index, raw in enumerate(raw_rates):
            path = f"{here}.rates[{r_index}]"
            if not isinstance(raw, Mapping) or "feature" not in raw:
                problems.append(Problem(path=path, message="needs feature"))
                continue
            for key in sorted(set(raw) - {"feature", "formula", "per_unit", "plan"}, key=str):
                problems.append(Problem(path=f"{path}.{key}", message="unknown key"))
            rates.append(
                RateChange(
                    feature=str(raw["feature"]),
                    formula=None if raw.get("formula") is None else str(raw["formula"]),
                    per_unit=_decimal(raw.get("per_unit"), f"{path}.per_unit", problems),
                    plan=None if raw.get("plan") is None else str(raw["plan"]),
                )
            )
        costs = _cost_changes(item.get("costs"), f"{here}.costs", problems)
        rollover = _rollover_changes(item.get("rollover"), f"{here}.rollover", problems)
        recharge = item.get("auto_recharge")
        recharge_path = f"{here}.auto_recharge"
        if recharge is not None and not isinstance(recharge, Mapping):
            problems.append(Problem(path=recharge_path, message="expected a mapping"))
        elif recharge is not None:
            known_recharge = {"threshold", "target", "monthly_spend_limit", "grant_expiry"}
            for key in sorted(set(recharge) - known_recharge - {"disabled"}, key=str):
                problems.append(Problem(path=f"{recharge_path}.{key}", message="unknown key"))
            if not isinstance(recharge.get("disabled", False), bool):
                problems.append(
                    Problem(path=f"{recharge_path}.disabled", message="expected true or false")
                )
        scenarios.append(
            Scenario(
                name=str(item["name"]),
                description=str(item.get("description") or ""),
                rates=tuple(rates),
                rate_multipliers=_decimals(item, "rate_multipliers", here, problems),
                plan_credits=_decimals(item, "plan_credits", here, problems),
                rollover=rollover,
                grant_multipliers=_decimals(item, "grant_multipliers", here, problems),
                auto_recharge=None
                if not isinstance(recharge, Mapping)
                else AutoRechargeChange(
                    threshold=_decimal(
                        recharge.get("threshold"), f"{recharge_path}.threshold", problems
                    ),
                    target=_decimal(recharge.get("target"), f"{recharge_path}.target", problems),
                    monthly_spend_limit=_decimal(
                        recharge.get("monthly_spend_limit"),
                        f"{recharge_path}.monthly_spend_limit",
                        problems,
                    ),
                    grant_expiry=None
                    if recharge.get("grant_expiry") is None
                    else str(recharge.get("grant_expiry")),
                    disabled=recharge.get("disabled") is True,
                ),
                enforcement=enforcement,
                costs=costs,
                cost_factors=_decimals(item, "cost_factors", here, problems),
            )
        )
    if problems:
        raise ValidationError(problems, source=source)
    return str(document.get("base") or "base"), tuple(scenarios)


def _cost_changes(raw: Any, path: str, problems: list[Problem]) -> tuple[CostChange, ...]:
    """A scenario's `costs`: a list of `{feature, formula, from?}`."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.append(Problem(path=path, message="expected a list"))
        return ()
    changes = []
    for index, entry in enumerate(raw):
        here = f"{path}[{index}]"
        if not isinstance(entry, Mapping) or "feature" not in entry or "formula" not in entry:
            problems.append(Problem(path=here, message="needs feature and formula"))
            continue
        for key in sorted(set(entry) - {"feature", "formula", "from"}, key=str):
            problems.append(Problem(path=f"{here}.{key}", message="unknown key"))
        start = None
        if entry.get("from") is not None:
            try:
                start = timestamp_value(entry["from"])
            except ValueError:
                problems.append(
                    Problem(path=f"{here}.from", message=f"not a timestamp: {entry['from']!r}")
                )
        changes.append(
            CostChange(
                feature=str(entry["feature"]), formula=str(entry["formula"]), valid_from=start
            )
        )
    return tuple(changes)


def _rollover_changes(raw: Any, path: str, problems: list[Problem]) -> tuple[RolloverChange, ...]:
    """A scenario's `rollover`: a list (or one mapping) of `{plan, currency?, max_amount?,
    max_percent?}` or `{plan, currency?, remove: true}`."""
    if raw is None:
        return ()
    entries = [raw] if isinstance(raw, Mapping) else raw
    if not isinstance(entries, list):
        problems.append(Problem(path=path, message="expected a list"))
        return ()
    changes = []
    for index, entry in enumerate(entries):
        here = path if isinstance(raw, Mapping) else f"{path}[{index}]"
        if not isinstance(entry, Mapping) or entry.get("plan") is None:
            problems.append(Problem(path=here, message="needs plan"))
            continue
        allowed = {"plan", "currency", "max_amount", "max_percent", "remove"}
        for key in sorted(set(entry) - allowed, key=str):
            problems.append(Problem(path=f"{here}.{key}", message="unknown key"))
        if not isinstance(entry.get("remove", False), bool):
            problems.append(Problem(path=f"{here}.remove", message="expected true or false"))
        changes.append(
            RolloverChange(
                plan=str(entry["plan"]),
                currency=None if entry.get("currency") is None else str(entry["currency"]),
                max_amount=_decimal(entry.get("max_amount"), f"{here}.max_amount", problems),
                max_percent=_decimal(entry.get("max_percent"), f"{here}.max_percent", problems),
                remove=entry.get("remove") is True,
            )
        )
    return tuple(changes)


def _decimal(value: Any, path: str, problems: list[Problem]) -> Decimal | None:
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise ArithmeticError
        number = Decimal(str(value))
        if not number.is_finite():
            raise ArithmeticError
        return number
    except ArithmeticError:
        problems.append(Problem(path=path, message=f"expected a number, got {value!r}"))
        return None


def _decimals(
    item: Mapping[str, Any], key: str, here: str, problems: list[Problem]
) -> dict[str, Decimal]:
    raw = item.get(key) or {}
    if not isinstance(raw, Mapping):
        problems.append(Problem(path=f"{here}.{key}", message="expected a mapping"))
        return {}
    values = {}
    for name, value in raw.items():
        number = _decimal(value, f"{here}.{key}.{name}", problems)
        if number is not None:
            values[str(name)] = number
    return values


# -- comparing ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Comparison:
    """Replays of several scenarios over the same events, side by side.

    `customers`: one row per scenario, customer and currency with consumed, run-out time, denied
    events, recharge revenue, breakage and their change against the base. `features`: consumed per
    scenario and feature with the change. `totals`: one row per scenario. `margin` and
    `margin_totals`: revenue recognised, breakage, cost to serve and gross margin per scenario and
    customer, and per scenario, with the margin's change against the base
    (`margin.compare_margins`).
    """

    base: str
    results: Mapping[str, SimulationResult]
    customers: pl.DataFrame
    features: pl.DataFrame
    totals: pl.DataFrame
    # Per scenario and customer, how many activity events of each kind (`activity_counts`).
    activity: pl.DataFrame = field(default_factory=pl.DataFrame)
    margin: pl.DataFrame = field(default_factory=pl.DataFrame)
    margin_totals: pl.DataFrame = field(default_factory=pl.DataFrame)
    # What the report and views say beside the numbers: each credit currency's price currency
    # (`credits` → `USD`) and each customer's plan(s) (`free → pro` after a plan change).
    price_currencies: Mapping[str, str] = field(default_factory=dict)
    plans: Mapping[str, str] = field(default_factory=dict)

    def result(self, scenario: str) -> SimulationResult:
        return self.results[scenario]

    def __repr__(self) -> str:
        from pricing_lab.report.views import comparison_text

        return comparison_text(self)

    def _repr_html_(self) -> str:
        from pricing_lab.report.views import comparison_html

        return comparison_html(self)


def compare(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    customers: CustomerInputs,
    scenarios: Sequence[Scenario],
    *,
    base: str = "base",
    events: str = "events",
    enforcement: Enforcement = "overdraft",
    engine: str = "fast",
    progress: Progress | None = None,
    start: datetime | None = None,
    until: datetime | None = None,
    ingest: IngestReport | None = None,
    out_dir: str | Path | None = None,
    executor: Executor | None = None,
    bucket_options: Mapping[str, Any] | None = None,
    activity: ActivityOptions | None = DEFAULT_ACTIVITY,
) -> Comparison:
    """Replay the base and every scenario over the events of table `events` and compare them.

    With `out_dir`, each scenario's outputs are written to `out_dir/scenarios/NAME/` as soon as
    it is replayed (`write_comparison(comparison, out_dir)` then adds the rest), and only the
    base's ledger stays in memory; the others are read back from their `ledger.parquet` when
    asked. That keeps a comparison of many scenarios over tens of millions of events within
    memory.

    The base is the scenario named `base` in `scenarios` if there is one, otherwise the inputs
    unchanged. Costs are computed once per distinct set of rates, sets costing the same rows in
    one pass over the events (`costing.cost_events_many`).
    `start` / `until` bound every replay's horizon; `ingest` (the report of the ingestion that
    filled `events`) adds the rows rejected on reading to each scenario's rejected events, and
    first moves the events whose meter value is not a usable number there as `bad_value`
    (`simulate.unusable_values_rejected`).
    `executor`: each scenario replayed in customer buckets on it and written into its folder
    (`scale.run.simulate_in_buckets`, given `bucket_options` such as `buckets`); needs `out_dir`.
    `activity`: each scenario's activity stream (see `simulate`); `Comparison.activity` counts it.
    """
    if executor is not None and out_dir is None:
        raise ValueError("compare over an executor writes each scenario: give out_dir")
    replay_scenario = (
        simulate
        if executor is None
        else in_buckets(
            executor, lambda name: scenario_folder(out_dir or ".", name), bucket_options
        )
    )
    problems = validate_scenarios(scenarios, catalog)
    if problems:
        raise ValidationError(problems, source="scenarios")
    runs = list(scenarios)
    if base not in {s.name for s in runs}:
        runs.insert(0, Scenario(name=base))
    # Events whose meter value is not a number leave for the rejected ones before any costing;
    # scenarios keep the base's meters, so each replay finds them checked.
    ingest, _ = unusable_values_rejected(con, catalog, ingest, events=events)
    if progress is not None:
        progress(runs[0].name, 0, len(runs))  # costing every scenario comes first
    inputs = [scenario.apply(catalog, customers) for scenario in runs]
    keys = [
        _costing_key(changed_catalog, changed_customers)
        for changed_catalog, changed_customers in inputs
    ]
    # One costing per distinct set of rates, all of them in as few passes over the events as
    # `cost_events_many` can share.
    distinct: dict[tuple[Any, ...], tuple[Catalog, CustomerInputs]] = {}
    for key, changed in zip(keys, inputs):
        distinct.setdefault(key, changed)
    costings = dict(
        zip(
            distinct,
            cost_events_many(
                con,
                [changed_catalog for changed_catalog, _ in distinct.values()],
                [changed_customers.subscriptions for _, changed_customers in distinct.values()],
                events=events,
            ),
        )
    )
    # Each costed table (tens of millions of rows at scale) goes once its last scenario is done.
    uses_left = Counter(keys)
    # Costs to serve, once per distinct set of unit costs (scenarios changing rates, credits or
    # policies share the base's); each replay takes off the events it did not serve.
    servings: dict[tuple[Any, ...], pl.DataFrame] = {}
    results: dict[str, SimulationResult] = {}
    rows: dict[str, tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]] = {}
    for index, (scenario, (changed_catalog, changed_customers), key) in enumerate(
        zip(runs, inputs, keys)
    ):
        if progress is not None:  # index 0 a second time: the costing is done
            progress(scenario.name, index, len(runs))
        serving_key = (
            tuple((f.id, f.cost) for f in changed_catalog.features if f.cost),
            changed_customers.subscriptions,
        )
        if serving_key not in servings:
            servings[serving_key] = serve_costs(
                con,
                changed_catalog,
                changed_customers.subscriptions,
                events=events,
                start=start,
                until=until,
            )
        results[scenario.name] = replay_scenario(
            con,
            changed_catalog,
            changed_customers,
            events=events,
            enforcement=scenario.enforcement or enforcement,
            scenario=scenario.name,
            engine=engine,
            costing=costings[key],
            start=start,
            until=until,
            ingest=ingest,
            activity=activity,
            serving=servings[serving_key],
        )
        uses_left[key] -= 1
        if uses_left[key] == 0:
            del costings[key]
        result = results[scenario.name]
        rows[scenario.name] = _scenario_rows(scenario.name, result)
        if out_dir is not None and not result.ledger_on_disk:  # (in buckets: written already)
            folder = scenario_folder(out_dir, scenario.name)
            result.write(folder)
            results[scenario.name] = result.written(folder, keep_ledger=scenario.name == base)
    if progress is not None:
        progress("done", len(runs), len(runs))
    counts = [activity_counts(r.activity) for r in results.values() if r.activity is not None]
    comparison = replace(
        _comparison(base, results, rows), activity=pl.concat(counts) if counts else pl.DataFrame()
    )
    plans: dict[str, str] = {}
    for subscription in sorted(customers.subscriptions, key=lambda s: (s.customer_id, s.start)):
        held = plans.get(subscription.customer_id)
        plans[subscription.customer_id] = (
            subscription.plan_id if held is None else f"{held} → {subscription.plan_id}"
        )
    prices = {currency.id: currency.price_currency for currency in catalog.currencies}
    return replace(comparison, price_currencies=prices, plans=plans)


def _costing_key(catalog: Catalog, customers: CustomerInputs) -> tuple[Any, ...]:
    rates = (
        catalog.default_credit_rates,
        tuple((p.id, p.credit_rates) for p in catalog.plans),
        tuple((a.id, a.credit_rates) for a in catalog.addons),
    )
    return (rates, customers.subscriptions)


def scenario_folder(out_dir: str | Path, scenario: str) -> Path:
    """Where a comparison written to `out_dir` keeps one scenario's outputs."""
    return Path(out_dir) / SCENARIOS_FOLDER / scenario_folder_name(scenario)


def _scenario_rows(
    name: str, result: SimulationResult
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """One scenario's rows of the comparison: per customer, per feature, its totals."""
    ledger = result.read_ledger()  # read once when it is on disk (a replay in buckets)
    balances = result.balances.select(
        "customer_id",
        "currency_id",
        "consumed",
        "events_denied",
        pl.col("recharge_spend").alias("recharge_revenue"),
        "breakage",
        "rolled_over",
    ).join(
        runout_times(ledger, result.denied_events),
        on=["customer_id", "currency_id"],
        how="left",
    )
    table = balances.with_columns(pl.lit(name).alias("scenario"))
    features = (
        ledger.lazy()  # lazy: only the columns used are filtered
        .filter(pl.col("entry_type") == "CONSUMED")
        .group_by("currency_id", "feature_id")
        .agg((-pl.col("amount")).sum().alias("consumed"))
        .with_columns(pl.lit(name).alias("scenario"))
        .collect()
    )
    totals = table.group_by("scenario").agg(
        pl.col("consumed").sum(),
        pl.col("events_denied").sum(),
        pl.col("recharge_revenue").sum(),
        pl.col("breakage").sum(),
        pl.col("rolled_over").sum(),
        pl.col("runout_at").is_not_null().sum().alias("customers_run_out"),
        pl.len().alias("customers"),
    )
    return table, features, totals


def _comparison(
    base: str,
    results: Mapping[str, SimulationResult],
    rows: Mapping[str, tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]],
) -> Comparison:
    per_customer = [rows[name][0] for name in results]
    per_feature = [rows[name][1] for name in results]
    totals = [rows[name][2] for name in results]
    keys = ["customer_id", "currency_id"]
    customers_frame = _every_scenario(
        pl.concat(per_customer, how="vertical_relaxed"),
        list(results),
        keys,
        zero=["consumed", "events_denied", "recharge_revenue", "breakage", "rolled_over"],
    )
    base_rows = customers_frame.filter(pl.col("scenario") == base).select(
        *keys,
        pl.col("consumed").alias("base_consumed"),
        pl.col("runout_at").alias("base_runout_at"),
        pl.col("events_denied").alias("base_events_denied"),
        pl.col("recharge_revenue").alias("base_recharge_revenue"),
        pl.col("breakage").alias("base_breakage"),
        pl.col("rolled_over").alias("base_rolled_over"),
    )
    customers_frame = (
        customers_frame.join(base_rows, on=keys, how="left")
        .with_columns(
            (pl.col("consumed") - pl.col("base_consumed").fill_null(0)).alias("consumed_change"),
            pl.when(pl.col("base_consumed") > 0)
            .then(
                (
                    pl.col("consumed").cast(pl.Float64) / pl.col("base_consumed").cast(pl.Float64)
                    - 1.0
                )
                * 100.0
            )
            .alias("consumed_change_pct"),
            ((pl.col("runout_at") - pl.col("base_runout_at")).dt.total_seconds() / 86400.0).alias(
                "runout_shift_days"
            ),
            (pl.col("events_denied") - pl.col("base_events_denied").fill_null(0)).alias(
                "events_denied_change"
            ),
            (pl.col("recharge_revenue") - pl.col("base_recharge_revenue").fill_null(0)).alias(
                "recharge_revenue_change"
            ),
            (pl.col("breakage") - pl.col("base_breakage").fill_null(0)).alias("breakage_change"),
            (pl.col("rolled_over") - pl.col("base_rolled_over").fill_null(0)).alias(
                "rolled_over_change"
            ),
        )
        .select(
            "scenario",
            *keys,
            "consumed",
            "consumed_change",
            "consumed_change_pct",
            "runout_at",
            "base_runout_at",
            "runout_shift_days",
            "events_denied",
            "events_denied_change",
            "recharge_revenue",
            "recharge_revenue_change",
            "breakage",
            "breakage_change",
            "rolled_over",
            "rolled_over_change",
        )
        .sort("scenario", *keys)
    )
    features_frame = _every_scenario(
        pl.concat(per_feature, how="vertical_relaxed"),
        list(results),
        ["currency_id", "feature_id"],
        zero=["consumed"],
    )
    base_features = features_frame.filter(pl.col("scenario") == base).select(
        "currency_id", "feature_id", pl.col("consumed").alias("base_consumed")
    )
    features_frame = (
        features_frame.join(base_features, on=["currency_id", "feature_id"], how="left")
        .with_columns(
            (pl.col("consumed") - pl.col("base_consumed").fill_null(0)).alias("consumed_change")
        )
        .select("scenario", "currency_id", "feature_id", "consumed", "consumed_change")
        .sort("scenario", "currency_id", "feature_id")
    )
    margin, margin_totals = compare_margins(
        base, {name: result.margin for name, result in results.items()}
    )
    return Comparison(
        base=base,
        results=dict(results),
        customers=customers_frame,
        features=features_frame,
        totals=pl.concat(totals, how="vertical_relaxed"),
        margin=margin,
        margin_totals=margin_totals,
    )


def _every_scenario(
    frame: pl.DataFrame, scenarios: Sequence[str], keys: Sequence[str], *, zero: Sequence[str]
) -> pl.DataFrame:
    """`frame` with a row for every scenario and every key seen in any scenario: a customer (or
    feature) with nothing in one scenario's ledger shows there with zeros, so its change against
    the base is visible."""
    seen = frame.select(*keys).unique()
    names = pl.DataFrame({"scenario": list(scenarios)}, schema={"scenario": pl.String})
    grid = names.join(seen, how="cross")
    filled = grid.join(frame, on=["scenario", *keys], how="left")
    return filled.with_columns(*(pl.col(name).fill_null(0) for name in zero)).select(frame.columns)


def runout_times(ledger: pl.DataFrame, denied_events: pl.DataFrame | None = None) -> pl.DataFrame:
    """Per customer and currency, when credits ran out: the first consumption after which the
    balance was at or below zero (an expiry emptying the balance is not running out) or, in
    `block` mode, the first event denied for want of credits, whichever came first."""
    keys = ["customer_id", "currency_id"]
    consumed = (
        ledger.lazy()  # lazy: only the columns used are filtered
        .filter((pl.col("entry_type") == "CONSUMED") & (pl.col("balance_after") <= 0))
        .select(*keys, pl.col("timestamp").alias("runout_at"))
    )
    moments = [consumed]
    if denied_events is not None and denied_events.height:
        moments.append(denied_events.lazy().select(*keys, pl.col("timestamp").alias("runout_at")))
    return pl.concat(moments).group_by(*keys).agg(pl.col("runout_at").min()).collect()


# -- sweeps and goal seeking ----------------------------------------------------------------------


def sweep(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    customers: CustomerInputs,
    make_scenario: Callable[[Decimal], Scenario],
    values: Sequence[Decimal],
    **options: Any,
) -> Comparison:
    """Compare one scenario per value of a parameter (e.g. a rate multiplier over a grid).

    `make_scenario(value)` builds the scenario for one value; scenario names must differ.
    """
    return compare(con, catalog, customers, [make_scenario(v) for v in values], **options)


@dataclass(frozen=True, slots=True, kw_only=True)
class GoalSeek:
    """The value found, the measure it gives, and every step tried."""

    value: Decimal
    measure: float
    steps: tuple[tuple[Decimal, float], ...]


def share_within_included(result: SimulationResult) -> float:
    """Share of customers whose consumption never needed credits beyond their grants.

    A customer (per currency) is within its included credits when no consumption left its balance
    at or below 0 (its run-out time is empty), and it has no overdraft debt, no recharges and no
    denied events. A grant expiring unused does not count against it.
    """
    balances = result.balances.join(
        runout_times(result.read_ledger(), result.denied_events),
        on=["customer_id", "currency_id"],
        how="left",
    )
    if balances.is_empty():
        return 1.0
    within = balances.filter(
        pl.col("runout_at").is_null()
        & (pl.col("overdraft_debt") == 0)
        & (pl.col("recharges_issued") == 0)
        & (pl.col("events_denied") == 0)
    )
    return within.height / balances.height


def goal_seek(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    customers: CustomerInputs,
    make_scenario: Callable[[Decimal], Scenario],
    *,
    low: Decimal,
    high: Decimal,
    target: float,
    measure: Callable[[SimulationResult], float] = share_within_included,
    decreasing: bool = True,
    tolerance: Decimal = Decimal("0.001"),
    max_steps: int = 30,
    events: str = "events",
    enforcement: Enforcement = "overdraft",
    engine: str = "fast",
) -> GoalSeek:
    """Bisection on one coefficient until `measure` meets `target` (e.g. 90% of customers stay
    within their included credits): a value meets it when `measure(result) >= target`.

    `decreasing`: the measure falls as the value grows (true for a rate multiplier); the result
    is then the largest value in `[low, high]` meeting the target, within `tolerance` (the
    smallest one when increasing); the values tried between the ends are rounded to a tenth of
    the tolerance's order. Raises `InputError` when even the best end of the range
    misses the target. Each step costs and replays one scenario.
    """
    if low > high:
        raise InputError(f"goal seek: low {low} is above high {high}")
    steps: list[tuple[Decimal, float]] = []

    def evaluate(value: Decimal) -> float:
        scenario = make_scenario(value)
        problems = validate_scenarios([scenario], catalog)
        if problems:
            raise ValidationError(problems, source="goal seek scenario")
        changed_catalog, changed_customers = scenario.apply(catalog, customers)
        costing = cost_events(con, changed_catalog, changed_customers.subscriptions, events=events)
        result = simulate(
            con,
            changed_catalog,
            changed_customers,
            events=events,
            enforcement=scenario.enforcement or enforcement,
            scenario=scenario.name,
            engine=engine,
            costing=costing,
        )
        score = measure(result)
        steps.append((value, score))
        return score

    safe, bold = (low, high) if decreasing else (high, low)
    safe_score = evaluate(safe)
    if safe_score < target:
        raise InputError(f"the target {target} is not met even at {safe} ({safe_score})")
    bold_score = evaluate(bold)
    if bold_score >= target:
        return GoalSeek(value=bold, measure=bold_score, steps=tuple(steps))
    # invariant: `safe` meets the target, `bold` does not
    best, best_score = safe, safe_score
    # Halving adds a decimal place a step, and a rate takes at most 12: a midpoint is rounded to
    # a tenth of the tolerance's order (0.0001 for 0.001; whole numbers at most, never 1.5E+3),
    # still strictly between the two ends while they are more than the tolerance apart.
    grid = Decimal(1).scaleb(min(tolerance.adjusted() - 1, 0)) if tolerance > 0 else None
    for _ in range(max_steps):
        if abs(bold - safe) <= tolerance:
            break
        middle = (safe + bold) / 2
        if grid is not None:
            middle = middle.quantize(grid)
        score = evaluate(middle)
        if score >= target:
            safe, best, best_score = middle, middle, score
        else:
            bold = middle
    return GoalSeek(value=best, measure=best_score, steps=tuple(steps))
