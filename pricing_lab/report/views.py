"""Short views of replays and comparisons: the tables people read first, as text and as HTML.

`headline_table` (per scenario: credits, revenue, breakage, who runs out, denied events, with the
change against the base) and `replay_table` (per currency: every key figure of one replay) are
shown by the report, the command line and, as `repr` / `_repr_html_`, by `Comparison` and
`SimulationResult` in a notebook. A view reads only what the result holds in memory.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import TYPE_CHECKING

import polars as pl

from pricing_lab.report import format as fmt
from pricing_lab.report.findings import headlines
from pricing_lab.report.tables import Column, Table, text_table

if TYPE_CHECKING:
    from pricing_lab.simulation.scenarios import Comparison
    from pricing_lab.simulation.simulate import SimulationResult


def headline_table(comparison: Comparison, frame: pl.DataFrame | None = None) -> Table:
    """Per scenario (and currency, when there are several): credits consumed, credit, recharge
    revenue and breakage, credits rolled over, customers who run out and who newly / no longer
    run out, denied events; each with its change against the base. `frame`:
    `findings.headlines(comparison)` when the caller already has it."""
    data = frame if frame is not None else headlines(comparison)
    several = data["currency_id"].n_unique() > 1
    columns = [
        Column(name="scenario"),
        *([Column(name="currency_id", header="currency")] if several else []),
        Column(
            name="consumed",
            header="credits consumed",
            kind="credits",
            change="consumed_change",
            change_pct="consumed_change_pct",
        ),
        _money("credit_revenue", "credit revenue", change=True),
        _money("recharge_revenue", "recharge revenue", change=True),
        _money("breakage", "breakage", change=True),
        Column(
            name="rolled_over",
            header="credits rolled over",
            kind="credits",
            change="rolled_over_change",
        ),
        Column(
            name="customers_run_out",
            header="customers who run out",
            kind="count",
            change="customers_run_out_change",
        ),
        Column(name="newly_run_out", header="newly run out", kind="count"),
        Column(name="no_longer_run_out", header="no longer run out", kind="count"),
        Column(
            name="events_denied",
            header="denied events",
            kind="count",
            change="events_denied_change",
        ),
    ]
    return Table(
        title="Headline per scenario",
        frame=data,
        columns=columns,
        empty="No scenario was replayed.",
    )


def _money(name: str, header: str, *, change: bool = False) -> Column:
    """A money column in the price currency of its row's credit currency."""
    return Column(
        name=name,
        header=header,
        kind="money",
        currency_from="price_currency",
        change=f"{name}_change" if change else None,
    )


def replay_table(summary: pl.DataFrame, price_currencies: Mapping[str, str] | None = None) -> Table:
    """One replay's figures per currency (`SimulationResult.summary`): customers, credits
    granted, consumed, expired, voided, final balance, overdraft debt, credit revenue and
    breakage (money, in the currency's price currency when `price_currencies` knows it)."""
    prices = dict(price_currencies or {})
    data = summary.with_columns(
        pl.col("currency_id")
        .replace_strict(prices, default="", return_dtype=pl.String)
        .alias("price_currency")
    )
    credits = [
        ("granted", "credits granted"),
        ("consumed", "credits consumed"),
        ("expired", "credits expired"),
        ("voided", "credits voided"),
        ("rolled_over", "credits rolled over"),
        ("final_balance", "final balance"),
        ("overdraft_debt", "overdraft debt"),
    ]
    columns = [
        Column(name="currency_id", header="currency"),
        Column(name="customers", kind="count"),
        *(Column(name=name, header=header, kind="credits") for name, header in credits),
        _money("credit_revenue", "credit revenue"),
        _money("breakage", "breakage"),
    ]
    return Table(title="Per currency", frame=data, columns=columns, empty="No credits moved.")


def comparison_text(comparison: Comparison) -> str:
    """`repr(comparison)`: what was compared and the headline, scenarios side by side."""
    names = ", ".join(comparison.results)
    customers = comparison.customers.select("customer_id").n_unique()
    head = (
        f"Comparison against base {comparison.base!r} of {len(comparison.results)} scenarios "
        f"({names}), {customers:,} customers"
    )
    return head + "\n" + text_table(headline_table(comparison), indent="  ", transpose=True)


def comparison_html(comparison: Comparison) -> str:
    """`comparison._repr_html_()`: the headline table."""
    from pricing_lab.report.html import table_html

    customers = comparison.customers.select("customer_id").n_unique()
    head = (
        f"<p><b>Comparison</b> against base <code>{html.escape(comparison.base)}</code>, "
        f"{customers:,} customers. Tables: <code>.customers</code>, <code>.features</code>, "
        "<code>.totals</code>; each scenario: <code>.result(name)</code>.</p>"
    )
    return head + table_html(headline_table(comparison))


def _replay_head(result: SimulationResult) -> str:
    customers = result.balances.select("customer_id").n_unique()
    span = f"{fmt.timestamp(result.replay.start)} → {fmt.timestamp(result.replay.until)} UTC"
    return (
        f"scenario {result.scenario!r}, {span}: {customers:,} customers, "
        f"{fmt.count(result.denied_events.height)} denied and "
        f"{fmt.count(result.rejected_events.height)} rejected events"
    )


def simulation_text(result: SimulationResult) -> str:
    """`repr(result)`: the horizon, counts and the per-currency figures."""
    body = text_table(replay_table(result.summary), indent="  ", transpose=True)
    return f"SimulationResult: {_replay_head(result)}\n{body}"


def simulation_html(result: SimulationResult) -> str:
    """`result._repr_html_()`: the same as a table."""
    from pricing_lab.report.html import table_html

    # A ledger left on disk is read by an explicit call, never by the attribute.
    ledger = "<code>.read_ledger()</code>" if result.ledger_on_disk else "<code>.ledger</code>"
    head = (
        f"<p><b>SimulationResult</b>: {html.escape(_replay_head(result))}. Tables: "
        f"{ledger}, <code>.balances</code>, <code>.summary</code>, "
        "<code>.denied_events</code>, <code>.rejected_events</code>.</p>"
    )
    return head + table_html(replay_table(result.summary))
