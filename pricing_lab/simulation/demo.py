"""The demo main job: sample catalog + real usage → replay → two scenarios → HTML report.

Everything it reads ships inside the package (the sample catalog, the attributed real LLM traces,
the customers, the demo scenarios), so it runs offline from a fresh install. The customers file
(`demo_customers.yaml`, a copy of `examples/customers.yaml`) was written from the traces by the
rules of `demo_customers`: the largest consumers on enterprise, the next on pro, the rest on free;
a welcome promotion for everyone; top-ups for enterprise; auto-recharge for pro and some free.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib.resources import files
from pathlib import Path

import duckdb

from pricing_lab.catalog.model import Catalog
from pricing_lab.catalog.store import open_store
from pricing_lab.catalog.yaml_format import load_catalog
from pricing_lab.events.real import load_sample_events
from pricing_lab.formula import check_formula
from pricing_lab.ledger.model import AutoRecharge, Grant, Subscription
from pricing_lab.progress import ProgressDisplay
from pricing_lab.report.build import TRACE_ATTRIBUTION, write_comparison
from pricing_lab.simulation.customers import CustomerInputs
from pricing_lab.simulation.scenarios import Comparison, Scenario, compare, scenarios_from_mapping

SAMPLE_CATALOG = "ai_product.yaml"
DEMO_SCENARIOS = "demo_scenarios.yaml"
DEMO_CUSTOMERS = "demo_customers.yaml"
CURRENCY = "credits"
STEPS = 5


def package_text(name: str) -> str:
    """A text file shipped in `pricing_lab/data`."""
    return files("pricing_lab.data").joinpath(name).read_text(encoding="utf-8")


def sample_catalog() -> Catalog:
    return load_catalog(package_text(SAMPLE_CATALOG), source=SAMPLE_CATALOG)


def demo_scenarios() -> tuple[str, tuple[Scenario, ...]]:
    from pricing_lab.catalog.yaml_format import parse_yaml

    document = parse_yaml(package_text(DEMO_SCENARIOS), source=DEMO_SCENARIOS)
    assert isinstance(document, dict)
    return scenarios_from_mapping(document, source=DEMO_SCENARIOS)


def demo_customers(con: duckdb.DuckDBPyConnection, *, start: datetime) -> CustomerInputs:
    """Subscriptions, promotions and auto-recharge for the customers found in table `events`.

    Ranked by event count (ties by id): the top 10% on enterprise, the next 30% on pro, the rest
    on free, all subscribed from `start`. Everyone gets a 2,000-credit welcome promotion that
    expires after 14 days. Pro customers recharge to 20,000 credits when below 2,000 (up to 100 USD
    a month), every other free customer to 2,000 when below 100 (up to 20 USD a month); recharged
    credits expire after a month. Enterprise customers bought a 100,000-credit top-up at 0.0008
    USD a credit, valid 30 days.
    """
    ranked = [
        row[0]
        for row in con.sql(
            "SELECT customer_id FROM events GROUP BY customer_id "
            "ORDER BY count(*) DESC, customer_id"
        ).fetchall()
    ]
    enterprise = max(1, len(ranked) // 10)
    pro = max(1, len(ranked) * 3 // 10)
    subscriptions = []
    grants = []
    recharges = []
    for rank, customer in enumerate(ranked):
        plan = "enterprise" if rank < enterprise else "pro" if rank < enterprise + pro else "free"
        subscriptions.append(
            Subscription(
                subscription_id=f"{customer}:{plan}",
                customer_id=customer,
                plan_id=plan,
                start=start,
            )
        )
        grants.append(
            Grant(
                grant_id=f"{customer}:welcome",
                customer_id=customer,
                currency_id=CURRENCY,
                amount=Decimal(2000),
                type="PROMOTIONAL",
                effective_at=start,
                expires_at=start + timedelta(days=14),
                source="manual",
            )
        )
        if plan == "enterprise":
            grants.append(
                Grant(
                    grant_id=f"{customer}:top_up:0",
                    customer_id=customer,
                    currency_id=CURRENCY,
                    amount=Decimal(100000),
                    type="PAID",
                    effective_at=start,
                    expires_at=start + timedelta(days=30),
                    cost_basis=Decimal("0.0008"),
                    source="top_up",
                )
            )
        recharge = {"pro": ("2000", "20000", "100"), "free": ("100", "2000", "20")}.get(plan)
        if recharge is not None and (plan == "pro" or rank % 2 == 0):
            threshold, target, limit = (Decimal(v) for v in recharge)
            recharges.append(
                AutoRecharge(
                    customer_id=customer,
                    currency_id=CURRENCY,
                    threshold=threshold,
                    target=target,
                    monthly_spend_limit=limit,
                    grant_expiry="1_month",
                )
            )
    return CustomerInputs(
        subscriptions=tuple(subscriptions),
        grants=tuple(grants),
        auto_recharges=tuple(recharges),
        customer_ids=frozenset(ranked),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoResult:
    comparison: Comparison
    report: Path
    out_dir: Path
    events: int
    seconds: float


def packaged_customers() -> CustomerInputs:
    """The demo's customers: the packaged copy of `examples/customers.yaml`."""
    from pricing_lab.catalog.yaml_format import parse_yaml
    from pricing_lab.simulation.customers import customers_from_mapping

    document = parse_yaml(package_text(DEMO_CUSTOMERS), source=DEMO_CUSTOMERS)
    assert isinstance(document, dict)
    return customers_from_mapping(document, source=DEMO_CUSTOMERS)


def run_demo(
    out_dir: str | Path = "demo_out", *, progress: ProgressDisplay | None = None
) -> DemoResult:
    """Build the demo store in `out_dir`, replay the sample usage, compare the demo scenarios,
    write Parquet results and `report.html`. `progress` shows each step (nothing without it)."""
    show = progress if progress is not None else ProgressDisplay(enabled=False)
    began = time.monotonic()
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "pricing_lab.duckdb"
    db.unlink(missing_ok=True)
    con = duckdb.connect(str(db))

    show.phase(f"[1/{STEPS}] applying the sample catalog (examples/ai_product.yaml) to {db}")
    catalog = load_catalog(
        package_text(SAMPLE_CATALOG), source=SAMPLE_CATALOG, check_formula=check_formula
    )
    store = open_store(con)
    store.apply(catalog, at=datetime.now(UTC))

    show.phase(f"[2/{STEPS}] loading the real LLM traces shipped in the package")
    ingest = load_sample_events(con)
    show.note(f"{ingest.accepted:,} events accepted, {ingest.rejected} rejected")

    show.phase(f"[3/{STEPS}] reading the customers (examples/customers.yaml)")
    customers = packaged_customers()
    show.note(
        f"{len(customers.subscriptions)} customers: "
        + ", ".join(
            f"{count} on {plan}"
            for plan, count in sorted(_plan_counts(customers.subscriptions).items())
        )
    )
    base, scenarios = demo_scenarios()
    scenario_phases = show.scenarios()

    def step(name: str, index: int, count: int) -> None:
        if index < count:  # costing, then each scenario: step 4; writing is step 5
            scenario_phases(name, index, count)

    show.phase(f"[4/{STEPS}] costing and replaying {len(scenarios)} scenarios")
    comparison = compare(con, catalog, customers, scenarios, base=base, progress=step)
    show.phase(f"[5/{STEPS}] writing Parquet results and the HTML report")
    write_comparison(comparison, folder, footer=attribution_line())
    con.close()
    return DemoResult(
        comparison=comparison,
        report=folder / "report.html",
        out_dir=folder,
        events=ingest.accepted,
        seconds=time.monotonic() - began,
    )


def _plan_counts(subscriptions: tuple[Subscription, ...]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for subscription in subscriptions:
        counts[subscription.plan_id] = counts.get(subscription.plan_id, 0) + 1
    return counts


def attribution_line() -> str:
    """The traces' attribution as one line (it travels with every shown row)."""
    return TRACE_ATTRIBUTION
