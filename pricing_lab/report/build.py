"""The scenario comparison report: which sections, charts and tables, in which order.

Each section is a function from a `Comparison` to a `ReportSection`; `SECTIONS` lists them in
the report's order. The numbers come from `report.findings`, the tables' formats from
`report.tables`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl

from pricing_lab.output_staging import staged_outputs
from pricing_lab.report import charts, findings, views
from pricing_lab.report import format as fmt
from pricing_lab.report.html import Notes, Part, Report, ReportSection, write_report
from pricing_lab.report.tables import Column, Table
from pricing_lab.simulation.output_files import write_table
from pricing_lab.simulation.scenarios import Comparison, scenario_folder

TRACE_ATTRIBUTION = (
    "Usage data: Azure LLM inference trace 2023 (Patel et al., 'Splitwise: Efficient generative "
    "LLM inference using phase splitting', ISCA 2024; CC-BY 4.0, Microsoft Azure) and the Mooncake "
    "conversation trace (Qin et al., 'Mooncake: Trading More Storage for Less Computation', "
    "FAST 2025; Apache-2.0)."
)


Section = Callable[[Comparison], ReportSection | None]
CHANGES_SHOWN = 10  # rows of the "largest changes in credits consumed" table


def headline_section(comparison: Comparison) -> ReportSection:
    """What changes and what it is worth: one finding per scenario, the headline table, credits
    consumed and money per scenario."""
    frame = findings.headlines(comparison)
    changes = findings.runout_changes(comparison)
    notes = [_finding(row, changes, frame) for row in frame.iter_rows(named=True)]
    notes = [note for note in notes if note]
    parts: list[Part] = []
    if notes:
        parts.append(Notes(items=notes))
    parts.append(views.headline_table(comparison, frame))
    parts.append(charts.consumed_per_scenario(frame))
    for price_currency, money in frame.group_by("price_currency", maintain_order=True):
        per_scenario = money.group_by("scenario", maintain_order=True).agg(
            pl.col("credit_revenue", "breakage").sum()
        )
        parts.append(
            charts.revenue_and_breakage(
                per_scenario, revenue="credit_revenue", currency=str(price_currency[0] or "")
            )
        )
    customers = comparison.customers.select("customer_id").n_unique()
    return ReportSection(
        title="What changes",
        text=(
            f"Base scenario: {comparison.base}. Every scenario replays the same events for the "
            f"same {customers:,} customers; changes are against the base. Credit revenue is "
            "every paid credit × its cost basis (top-ups and auto-recharges), breakage the "
            "money of expired paid credits."
        ),
        parts=parts,
    )


def _finding(row: dict[str, object], changes: pl.DataFrame, frame: pl.DataFrame) -> str:
    """One scenario's changes against the base in a sentence (empty for the base itself)."""
    scenario = str(row["scenario"])
    if row["consumed_change"] is None:  # the base
        return ""
    price = str(row["price_currency"] or "")
    several = frame["currency_id"].n_unique() > 1
    where = f"{scenario} ({row['currency_id']})" if several else scenario
    consumed = f"credits consumed {fmt.credits_change(row['consumed_change'])}"  # type: ignore[arg-type]
    if row["consumed_change_pct"] is not None:
        consumed += f" ({fmt.percent(row['consumed_change_pct'], sign=True)})"  # type: ignore[arg-type]
    newly = changes.filter(
        (pl.col("scenario") == scenario)
        & (pl.col("currency_id") == row["currency_id"])
        & (pl.col("change") == findings.NEWLY_RUNS_OUT)
    )["customer_id"].to_list()
    ran_out = int(row["customers_run_out"])  # type: ignore[call-overload]
    run_out = f"{fmt.count(ran_out)} " + (
        "customer runs out" if ran_out == 1 else "customers run out"
    )
    run_out += f" ({fmt.count_change(row['customers_run_out_change'])}"  # type: ignore[arg-type]
    if newly:
        named = ", ".join(newly[:5]) + (f" and {len(newly) - 5:,} more" if len(newly) > 5 else "")
        run_out += f"; newly: {named}"
    run_out += ")"
    denied = int(row["events_denied"])  # type: ignore[call-overload]
    parts = [
        consumed,
        f"credit revenue {fmt.money_change(row['credit_revenue_change'], price)}",  # type: ignore[arg-type]
        f"breakage {fmt.money_change(row['breakage_change'], price)}",  # type: ignore[arg-type]
        run_out,
        f"{fmt.count(denied)} event{'' if denied == 1 else 's'} denied"
        if denied
        else "no event denied",
    ]
    return f"{where}: " + "; ".join(parts) + "."


def margin_totals_table(comparison: Comparison) -> Table | None:
    """Margin per scenario: revenue recognised, breakage, cost to serve, gross margin (money) and
    margin share, each with its change against the base, customers with negative margin and
    events of unknown cost. The report's and `compare`'s terminal table. None without margin."""
    frame = findings.margin_headlines(comparison)
    if frame.is_empty():
        return None
    currency = findings.margin_currency(comparison)

    def money(name: str, header: str) -> Column:
        return Column(
            name=name, header=header, kind="money", currency=currency, change=f"{name}_change"
        )

    return Table(
        title="Margin per scenario",
        frame=frame,
        columns=[
            Column(name="scenario"),
            money("revenue", "revenue recognised"),
            money("breakage", "breakage"),
            money("cost_to_serve", "cost to serve"),
            money("gross_margin", "gross margin"),
            Column(
                name="margin_share_pct",
                header="margin share",
                kind="percent",
                change="margin_share_pct_change",
            ),
            Column(
                name="negative_margin_customers",
                header="customers with negative margin",
                kind="count",
                change="negative_margin_customers_change",
            ),
            Column(name="unknown_cost_events", header="events of unknown cost", kind="count"),
        ],
    )


def margin_section(comparison: Comparison) -> ReportSection | None:
    """What each scenario is worth: revenue recognised, breakage, cost to serve, gross margin and
    margin share with their change against the base, then the customers with negative margin.
    Left out when the comparison has no margin."""
    totals = margin_totals_table(comparison)
    if totals is None:
        return None
    currency = findings.margin_currency(comparison)

    def money(name: str, header: str) -> Column:
        return Column(
            name=name, header=header, kind="money", currency=currency, change=f"{name}_change"
        )

    several = len(comparison.results) > 2
    negative = Table(
        title="Customers with negative margin",
        frame=findings.negative_margins(comparison),
        columns=[
            *([Column(name="scenario")] if several else []),
            Column(name="customer_id", header="customer"),
            Column(name="plan"),
            Column(name="revenue", header="revenue recognised", kind="money", currency=currency),
            Column(name="breakage", kind="money", currency=currency),
            Column(name="cost_to_serve", header="cost to serve", kind="money", currency=currency),
            money("gross_margin", "gross margin"),
        ],
        empty="No customer has a negative margin in any scenario.",
        max_rows=100,
        more="{hidden:,} more customers with negative margin: comparison_margin.parquet",
    )
    return ReportSection(
        title="Margin",
        text=(
            "Revenue recognised is every credit consumed × the cost basis of the grant it was "
            "drawn from (overdraft consumption when its debt is settled), breakage the money of "
            "expired credits, cost to serve what the served events cost us; gross margin = "
            "revenue + breakage − cost to serve, margin share = gross margin ÷ (revenue + "
            "breakage). Money rounded to cents; changes are against the base (the margin "
            "share's in percentage points)."
        ),
        parts=[totals, negative],
    )


def forecast_section(forecast: pl.DataFrame, comparison: Comparison | None = None) -> ReportSection:
    """Who may run out within a run-out forecast's horizon (`pricing_lab.forecast`): probability
    and p10 / p50 / p90 instants, first run-out first, with each customer's gross margin in the
    base scenario of `comparison` when it has margin. A forecast per scenario (a `scenario`
    column: `forecast_scenarios`) is shown per scenario, with each scenario's margin."""
    per_scenario = "scenario" in forecast.columns
    worth = None
    currency = ""
    if comparison is not None and not comparison.margin.is_empty():
        worth = comparison.margin
        if not per_scenario:
            worth = worth.filter(pl.col("scenario") == comparison.base)
        currency = findings.margin_currency(comparison)
    at_risk = findings.forecast_at_risk(forecast, worth)
    if forecast.is_empty():
        text = "The forecast has no customer."
        empty = "No customer to forecast."
    else:
        as_of, end = forecast["as_of"][0], forecast["horizon_end"][0]
        text = (
            f"As of {fmt.timestamp(as_of)} UTC, over the horizon to {fmt.timestamp(end)} UTC: the "
            "share of simulated paths in which the customer runs out, and the 10th, 50th and "
            "90th percentiles of the run-out time (– : after the horizon)."
        )
        if per_scenario:
            counts = ", ".join(
                f"{name} {at_risk.filter(pl.col('scenario') == name).height:,}"
                for name in forecast["scenario"].unique(maintain_order=True)
            )
            text += (
                " Each scenario is forecast with its own rates, credits and policies; customers "
                f"who may run out per scenario: {counts}."
            )
        empty = f"No customer is at risk of running out before {fmt.timestamp(end)} UTC."
        flagged = forecast.filter(pl.col("too_little_history"))
        if per_scenario:
            flagged = flagged.unique(["customer_id", "currency_id"])
        if flagged.height:
            text += (
                f" {flagged.height:,} customer-currencies have too little history to forecast "
                "(flagged, not guessed)."
            )
    currencies = forecast["currency_id"].n_unique() > 1
    margin_header = (
        "gross margin in the scenario"
        if per_scenario
        else f"gross margin in {comparison.base if comparison is not None else ''}"
    )
    table = Table(
        title="Customers who may run out within the horizon",
        frame=at_risk,
        columns=[
            *([Column(name="scenario")] if per_scenario else []),
            Column(name="customer_id", header="customer"),
            *([Column(name="currency_id", header="currency")] if currencies else []),
            Column(name="balance", header="balance at the start", kind="credits"),
            Column(name="run_out_pct", header="probability", kind="percent"),
            Column(name="run_out_p10", header="p10 (UTC)", kind="time"),
            Column(name="run_out_p50", header="p50 (UTC)", kind="time"),
            Column(name="run_out_p90", header="p90 (UTC)", kind="time"),
            *(
                [
                    Column(
                        name="gross_margin",
                        header=margin_header,
                        kind="money",
                        currency=currency,
                    )
                ]
                if worth is not None
                else []
            ),
        ],
        empty=empty,
        max_rows=100,
        more="{hidden:,} more customers who may run out: forecast.parquet",
    )
    return ReportSection(title="Run-out forecast", text=text, parts=[table])


def runout_section(comparison: Comparison) -> ReportSection:
    """Who runs out: the customers whose run-out changes (new run-outs first), then every
    customer who runs out in some scenario with the time in each."""
    changes = findings.runout_changes(comparison)
    several = len(comparison.results) > 2
    currencies = comparison.customers["currency_id"].n_unique() > 1
    changed = Table(
        title="Customers whose run-out changes",
        frame=changes,
        columns=[
            *([Column(name="scenario")] if several else []),
            Column(name="customer_id", header="customer"),
            *([Column(name="currency_id", header="currency")] if currencies else []),
            Column(name="plan"),
            Column(name="change"),
            Column(name="base_runout_at", header=f"runs out in {comparison.base} (UTC)"),
            Column(name="runout_at", header="runs out in the scenario (UTC)"),
            Column(name="runout_shift_days", header="shift", kind="days"),
            Column(
                name="consumed",
                header="credits consumed",
                kind="credits",
                change="consumed_change",
            ),
        ],
        empty="No customer's run-out changes in any scenario.",
    )
    order = findings.scenario_order(comparison)
    ran_out = comparison.customers.filter(
        pl.col("runout_at").is_not_null().any().over("customer_id", "currency_id")
    )
    wide = (
        ran_out.pivot(on="scenario", index=["customer_id", "currency_id"], values="runout_at")
        if ran_out.height
        else pl.DataFrame(schema={"customer_id": pl.String, "currency_id": pl.String})
    )
    for name in order:
        if name not in wide.columns:
            wide = wide.with_columns(pl.lit(None, pl.Datetime("us", "UTC")).alias(name))
    wide = wide.with_columns(
        pl.col("customer_id")
        .replace_strict(dict(comparison.plans), default=findings.NO_PLAN, return_dtype=pl.String)
        .alias("plan"),
        pl.min_horizontal(*order).alias("__first"),
    ).sort("__first", "customer_id", "currency_id")
    everyone = Table(
        title="Every customer who runs out, and when (UTC)",
        frame=wide,
        columns=[
            Column(name="customer_id", header="customer"),
            *([Column(name="currency_id", header="currency")] if currencies else []),
            Column(name="plan"),
            *(Column(name=name, header=name, kind="time") for name in order),
        ],
        empty="No customer runs out in any scenario.",
        max_rows=100,
    )
    return ReportSection(
        title="Who runs out",
        text=(
            "A customer runs out at the first consumption that leaves its balance at or below "
            "zero or, under the block policy, at its first event denied for want of credits "
            "(– : never within the replay)."
        ),
        parts=[changed, everyone],
    )


def balances_section(comparison: Comparison) -> ReportSection:
    """The balances of the customers at risk, in every scenario, each on its own scale."""
    at_risk = findings.customers_at_risk(comparison)
    ledgers = {
        name: _ledger_of(comparison, name, at_risk) for name in findings.scenario_order(comparison)
    }
    return ReportSection(
        title="Balances of the customers at risk",
        text=(
            "Customers who run out in some scenario (new run-outs first), one panel each: the "
            "lowest balance of each day in every scenario, as a share of the highest balance "
            "that customer held, so a small customer reads as well as a large one. At or below "
            "the line at zero the customer has run out (in overdraft, or denied under block)."
        ),
        parts=[charts.runout_balances(ledgers, at_risk)],
    )


def _ledger_of(
    comparison: Comparison, scenario: str, customers: list[tuple[str, str]]
) -> pl.DataFrame:
    """The ledger entries of `customers` in one scenario; a ledger written to disk is scanned
    for them only."""
    keys = pl.DataFrame(
        {"customer_id": [c for c, _ in customers], "currency_id": [c for _, c in customers]},
        schema={"customer_id": pl.String, "currency_id": pl.String},
    )
    result = comparison.result(scenario)
    if result.ledger_on_disk and result.ledger_path is not None:
        scan = pl.scan_parquet(result.ledger_path)
        return scan.join(keys.lazy(), on=["customer_id", "currency_id"], how="semi").collect()
    return result.ledger.join(keys, on=["customer_id", "currency_id"], how="semi")


def consumption_section(comparison: Comparison) -> ReportSection:
    """How each customer's consumption moves: histograms and the largest changes."""
    others = comparison.customers.filter(pl.col("scenario") != comparison.base)
    largest = (
        others.filter(pl.col("consumed_change") != 0)
        .with_columns(
            (pl.col("consumed") - pl.col("consumed_change")).alias("base_consumed"),
            pl.col("customer_id")
            .replace_strict(
                dict(comparison.plans), default=findings.NO_PLAN, return_dtype=pl.String
            )
            .alias("plan"),
        )
        .sort(pl.col("consumed_change").abs(), "customer_id", descending=[True, False])
    )
    several = len(comparison.results) > 2
    table = Table(
        title=f"Largest changes in credits consumed (top {CHANGES_SHOWN})",
        frame=largest,
        columns=[
            *([Column(name="scenario")] if several else []),
            Column(name="customer_id", header="customer"),
            Column(name="plan"),
            Column(name="base_consumed", header=f"consumed in {comparison.base}", kind="credits"),
            Column(
                name="consumed",
                header="consumed in the scenario",
                kind="credits",
                change="consumed_change",
                change_pct="consumed_change_pct",
            ),
            Column(name="runout_shift_days", header="run-out shift", kind="days"),
        ],
        empty="No customer's consumption changes.",
        max_rows=CHANGES_SHOWN,
        more="{hidden:,} more customers whose consumption changes: comparison_customers.parquet",
    )
    return ReportSection(
        title="Per-customer change",
        text="How each customer's credit consumption and run-out date move against the base.",
        parts=[charts.change_distribution(others), charts.runout_shift(others), table],
    )


def burn_section(comparison: Comparison) -> ReportSection:
    """Credits burned per feature over time in the base, and per feature and scenario."""
    base = comparison.result(comparison.base)
    features = Table(
        title="Credits consumed per feature and scenario",
        frame=comparison.features,
        columns=[
            Column(name="scenario"),
            Column(name="feature_id", header="feature"),
            Column(name="currency_id", header="currency"),
            Column(
                name="consumed", header="credits consumed", kind="credits", change="consumed_change"
            ),
        ],
        empty="No feature consumed credits.",
    )
    return ReportSection(
        title="Burn per feature",
        text=f"Credits consumed per feature over time in {comparison.base}.",
        parts=[charts.burn_per_feature(base.read_ledger()), features],
    )


def activity_section(comparison: Comparison) -> ReportSection | None:
    """The notifications customers would receive (SPEC §6 "Credit activity"): per scenario and
    kind, how many, the change against the base, how many customers get one and the most one
    customer gets; then the customers whose notifications change most. Left out when the
    comparison ran without an activity stream."""
    if "kind" not in comparison.activity.columns:
        return None
    totals = findings.activity_totals(comparison)
    changes = findings.activity_changes(comparison)
    several = len(comparison.results) > 1
    per_kind = Table(
        title="Notifications per scenario and kind",
        frame=totals,
        columns=[
            Column(name="scenario"),
            Column(name="kind", header="notification"),
            Column(name="events", header="notifications", kind="count", change="events_change"),
            Column(name="customers", header="customers receiving one", kind="count"),
            Column(name="most_to_one", header="most to one customer", kind="count"),
        ],
        empty="No scenario sends any notification.",
    )
    parts: list[Part] = [per_kind]
    if several:
        parts.append(
            Table(
                title="Customers whose notifications change most",
                frame=changes,
                columns=[
                    Column(name="scenario"),
                    Column(name="customer_id", header="customer"),
                    Column(name="kind", header="notification"),
                    Column(name="base_events", header=f"in {comparison.base}", kind="count"),
                    Column(
                        name="events",
                        header="in the scenario",
                        kind="count",
                        change="events_change",
                    ),
                ],
                empty="No customer's notifications change.",
                max_rows=CHANGES_SHOWN,
                more="{hidden:,} more changes: comparison_activity.parquet",
            )
        )
    return ReportSection(
        title="Credit activity",
        text=(
            "The activity notifications customers would receive over the replay (low balance, "
            "depleted, overdraft started and settled, grants granted, ending soon, expired, "
            "voided, rolled over and emptied, auto-recharge issued and spend limit reached), "
            f"per scenario; changes are against {comparison.base}. Per customer: "
            "comparison_activity.parquet."
        ),
        parts=parts,
    )


# The report's sections, in order. A section is a function of the comparison returning a
# `ReportSection` (or None to leave it out): adding one to the report is adding it here.
SECTIONS: tuple[Section, ...] = (
    headline_section,
    margin_section,
    runout_section,
    activity_section,
    balances_section,
    consumption_section,
    burn_section,
)


def comparison_report(
    comparison: Comparison,
    *,
    title: str = "Pricing scenarios",
    footer: str = "",
    sections: Sequence[Section] = SECTIONS,
    forecast: pl.DataFrame | None = None,
) -> Report:
    """The report of a comparison: one `ReportSection` per function of `sections`, then, when a
    run-out `forecast` table is given (`pricing_lab.forecast`), its run-out section."""
    built = [section(comparison) for section in sections]
    if forecast is not None:
        built.append(forecast_section(forecast, comparison))
    return Report(title=title, sections=[s for s in built if s is not None], footer=footer)


def write_comparison(
    comparison: Comparison,
    out_dir: str | Path,
    *,
    footer: str = "",
    forecast: pl.DataFrame | None = None,
) -> list[Path]:
    """Write a comparison: customers/features/totals/margin Parquet, each scenario's outputs under
    `scenarios/NAME/`, `comparison_activity.parquet` (activity events per scenario, customer and
    kind), `comparison.json` (base and scenario names) and `report.html`; with a
    run-out `forecast` table, `forecast.parquet` and the report's run-out section. Returns the
    paths written.

    The files are written together (`output_staging.staged_outputs`): a write that fails
    part-way leaves `out_dir` as it was, its earlier files all there and no new one. Scenarios a
    `compare(…, out_dir=out_dir)` wrote there already stay as they are; otherwise `scenarios/`
    is replaced whole by this comparison's."""
    folder = Path(out_dir)
    in_place = all(
        result.written_to is not None
        and result.written_to.resolve() == scenario_folder(folder, name).resolve()
        for name, result in comparison.results.items()
    )
    with staged_outputs(folder) as staged:
        paths = []
        for name, frame in (
            ("comparison_customers.parquet", comparison.customers),
            ("comparison_features.parquet", comparison.features),
            ("comparison_totals.parquet", comparison.totals),
            ("comparison_margin.parquet", comparison.margin),
            ("comparison_margin_totals.parquet", comparison.margin_totals),
        ):
            frame.write_parquet(staged.folder / name, statistics=False)
            paths.append(staged.final(staged.folder / name))
        if forecast is not None:
            forecast.write_parquet(staged.folder / "forecast.parquet", statistics=False)
            paths.append(staged.final(staged.folder / "forecast.parquet"))
        # The report names this file for the activity changes it does not list.
        activity = write_table(comparison.activity, staged.folder / "comparison_activity.parquet")
        paths.append(staged.final(activity))
        for name, result in comparison.results.items():
            if in_place:  # written there already: `write` returns their paths
                paths.extend(result.write(scenario_folder(folder, name)))
            else:
                written = result.write(scenario_folder(staged.folder, name))
                paths.extend(staged.final(path) for path in written)
        about = staged.folder / "comparison.json"
        about.write_text(
            json.dumps({"base": comparison.base, "scenarios": list(comparison.results)}, indent=2)
            + "\n",
            encoding="utf-8",
        )
        paths.append(staged.final(about))
        report = comparison_report(comparison, footer=footer, forecast=forecast)
        paths.append(staged.final(write_report(report, staged.folder / "report.html")))
    return paths
