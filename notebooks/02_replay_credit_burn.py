# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 2 · Replaying credit burn
#
# Usage becomes credits. We replay the real usage through the catalog and the customers' grants,
# exactly as the product would have: every consumption is drawn from the customer's grants in
# draw-down order and written to a **ledger**; auto-recharge tops balances up; what nothing covers
# goes into overdraft. Then we read balances, query a balance at any instant, check the ledger's
# invariants and chart balances and burn.

# %%
import os
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl
from IPython.display import display

from pricing_lab import (
    balance_at,
    charts,
    check_invariants,
    generate_events,
    ingest_events,
    load_catalog_file,
    load_customers,
    load_sample_events,
    open_store,
    simulate,
)

# Example files: ../examples when the notebook is opened from notebooks/ (the tests point
# PRICING_LAB_EXAMPLES at the repository's examples folder). Outputs go to ./notebook_out.
EXAMPLES = Path(os.environ.get("PRICING_LAB_EXAMPLES", "../examples"))
OUT = Path("notebook_out")
OUT.mkdir(exist_ok=True)
pl.Config.set_tbl_rows(12)
pl.Config.set_tbl_cols(12)
_ = pl.Config.set_tbl_width_chars(150)
charts.enable_offline_rendering()  # charts drawn here as SVG: no network needed

# %% [markdown]
# ## The catalog and the usage
#
# The sample catalog, the real chat traces and some synthetic image / summary events.
#
# > **Usage data.** Azure LLM inference trace 2023 (Patel et al., *Splitwise: Efficient generative
# > LLM inference using phase splitting*, ISCA 2024; CC-BY 4.0, Microsoft Azure) and the Mooncake
# > conversation trace (Qin et al., *Mooncake: Trading More Storage for Less Computation*, FAST
# > 2025; Apache-2.0). The traces have no tenant: each request gets a customer (`cust-00001` is the
# > largest) and a model by a stable hash, and the ~1 hour traces are stretched over 60 days from
# > 2024-01-01, keeping their order.

# %%
con = duckdb.connect()  # one in-memory DuckDB database: the catalog store and the events
store = open_store(con)
catalog = load_catalog_file(EXAMPLES / "ai_product.yaml")
store.apply(catalog, at=datetime(2023, 12, 1, tzinfo=UTC))

real = load_sample_events(con)  # the real LLM traces, as table `events`
# The traces only hold chat requests. To see several features burn credits, add synthetic image
# and summary events for the same customers and days (clearly synthetic, seeded, reproducible).
synthetic = generate_events(OUT / "synthetic.parquet", events=12_000, customers=50, days=60, seed=7)
others = pl.read_parquet(synthetic.path).filter(pl.col("event_name") != "llm.request")
ingest = ingest_events(con, pl.concat([con.table("events").pl(), others], how="diagonal_relaxed"))
print(
    f"{real.accepted:,} real chat requests + {others.height:,} synthetic events: "
    f"{ingest.accepted:,} accepted, {ingest.rejected} rejected"
)
con.sql("SELECT event_name, count(*) AS events FROM events GROUP BY ALL ORDER BY events DESC").pl()

# %% [markdown]
# ## Who the customers are
#
# The events name 50 customers. Their subscriptions, grants, top-ups and auto-recharge settings
# are in `examples/customers.yaml` (the file `pricing-lab demo` replays too); open it to change
# them. It was written by these rules:
#
# * ranked by number of events, the top 10 % are on **enterprise**, the next 30 % on **pro**, the
#   rest on **free**, all subscribed from 2024-01-01 (monthly credits come from the plans);
# * everyone gets a **2,000-credit welcome promotion** valid 14 days;
# * enterprise customers bought a **100,000-credit top-up** at 0.0008 USD a credit, valid 30 days
#   (what they do not use is *breakage*);
# * pro customers **auto-recharge** to 20,000 credits when below 2,000 (at most 100 USD a month);
#   every other free customer recharges to 2,000 when below 100 (at most 20 USD a month);
#   recharged credits expire after a month.

# %%
customers = load_customers(EXAMPLES / "customers.yaml")  # edit the file to change them
subscriptions = customers.subscriptions
plans = pl.DataFrame(
    {
        "customer_id": [s.customer_id for s in subscriptions],
        "plan": [s.plan_id for s in subscriptions],
    }
)
plans.group_by("plan").agg(
    pl.len().alias("customers"), pl.col("customer_id").first().alias("largest")
)

# %% [markdown]
# ## Replay
#
# `simulate` matches events to metered features, costs them with the plan's credit rates (exact
# decimals, rounded per event and feature to the currency's two places), generates the monthly
# plan grants, and replays everything in time order. The default policy is **overdraft**: usage is
# never refused; what grants cannot cover is owed and settled from the next grant.

# %%
result = simulate(con, catalog, customers)
print(
    f"{result.ledger.height:,} ledger entries, {result.denied_events.height} denied, "
    f"{result.rejected_events.height} rejected events"
)
result.summary

# %% [markdown]
# The summary is per currency: credits granted, consumed, expired; **credit revenue** (paid credits
# × their cost basis: top-ups and recharges) and **breakage** (expired paid credits × cost basis).
#
# Per customer, the balances table says who burned what, who ran dry (`first_zero_at`; note a
# monthly grant expiring just before the next one takes effect also touches zero), how often
# auto-recharge fired and what it cost:

# %%
result.balances.sort("consumed", descending=True).select(
    "customer_id",
    "granted",
    "consumed",
    "expired",
    "final_balance",
    "overdraft_debt",
    "recharges_issued",
    "recharge_spend",
).head(10)

# %% [markdown]
# ## One customer's ledger
#
# Every entry says which grant it touched and the balance after it. Here the first entries of the
# largest pro customer: its grants take effect at the start, then consumption draws from the
# welcome promotion first (it expires soonest), then from the plan's monthly credits.

# %%
pro_customer = next(s.customer_id for s in subscriptions if s.plan_id == "pro")
ledger = result.ledger
mine = ledger.filter(pl.col("customer_id") == pro_customer)
display(
    mine.select(
        "entry_id", "timestamp", "entry_type", "grant_id", "amount", "balance_after", "event_id"
    ).head(8)
)
mine.group_by("entry_type", "grant_source").agg(
    pl.len().alias("entries"), pl.col("amount").sum()
).sort("entry_type", "grant_source")

# %% [markdown]
# ## The balance at any instant
#
# `balance_at` answers what the product's credit-entitlement query answers: balance, granted and
# consumed so far, and what is left on each grant — at any point of the replay.

# %%
for day in (datetime(2024, 1, 10, tzinfo=UTC), datetime(2024, 2, 15, tzinfo=UTC)):
    b = balance_at(ledger, pro_customer, "credits", day)
    print(
        f"{pro_customer} on {day:%Y-%m-%d}: balance {b.balance}, granted {b.granted}, "
        f"consumed {b.consumed}"
    )
    for g in b.grants:
        print(f"    {g.grant_id:<40} {g.grant_type:<12} {g.remaining:>12}")

# %% [markdown]
# ## Invariants
#
# `simulate` checks the ledger's invariants (docs/ledger.md) on every replay and stops if one
# breaks. Two of them, checked here again independently with plain Polars:
#
# 1. per customer, each `balance_after` is the running sum of the amounts, and the last one is the
#    final balance;
# 2. no grant's remaining amount goes below zero, except the overdraft grant's.

# %%
ordered = ledger.sort("entry_id")
running = ordered.with_columns(
    pl.col("amount").cum_sum().over("customer_id", "currency_id").alias("running")
)
rule_1 = (running["running"] == running["balance_after"]).all()
final = (
    ordered.group_by("customer_id")
    .agg(pl.col("balance_after").last())
    .join(result.balances.select("customer_id", "final_balance"), on="customer_id")
)
rule_1 = rule_1 and (final["balance_after"] == final["final_balance"]).all()
remaining = ordered.filter(pl.col("grant_type") != "OVERDRAFT").with_columns(
    pl.col("amount").cum_sum().over("grant_id").alias("remaining")
)
rule_2 = (remaining["remaining"] >= 0).all()
print(
    f"invariant 1 (running sums) holds: {rule_1}; invariant 2 (no negative grant) holds: {rule_2}"
)

# %% [markdown]
# `check_invariants` checks all of them (including "each event's consumed amounts equal its cost"
# and "grants are used in draw-down order") against the replay's inputs. Building those inputs
# takes two helpers that are not in the top-level API yet.

# %%
from pricing_lab.ledger import ReplayInput, recurring_entitlements  # not yet in pricing_lab.__all__
from pricing_lab.simulation.simulate import cost  # the per-event costs simulate replayed

replay_input = ReplayInput(
    currencies=catalog.currencies,
    grants=customers.grants,
    recurring=recurring_entitlements(customers.subscriptions, catalog),
    auto_recharges=customers.auto_recharges,
    consumptions=cost(con, catalog, customers).consumptions,
)
problems = check_invariants(result.ledger, result.denied_events, replay_input)
print(f"check_invariants: {len(problems)} problems")

# %% [markdown]
# ## Charts
#
# Balances of a few customers over time, one point per customer and day (the chart aggregates the
# ledger first): the largest enterprise customer, the largest pro customer, the free customer
# that auto-recharged most often (its saw-tooth) and the customer deepest in overdraft. On
# 1 February every monthly grant expires and the next one starts; the enterprise balance also
# drops when its 30-day top-up expires.

# %%
balances = result.balances
recharger = balances.sort("recharges_issued", "customer_id", descending=[True, False])[
    "customer_id"
][0]
in_debt = balances.sort("overdraft_debt", "customer_id", descending=[True, False])["customer_id"][0]
largest = next(s.customer_id for s in subscriptions if s.plan_id == "enterprise")
chosen = [largest, pro_customer, recharger, in_debt]
print("customers shown:", ", ".join(chosen))
charts.balance_over_time(ledger, chosen, grain="1d").properties(width=640, height=260)

# %%
charts.burn_per_feature(ledger, grain="1d").properties(width=640, height=260)

# %% [markdown]
# Chat dominates the burn; image generation is the next largest even though it has far fewer
# events, because each image costs 20–40 credits.
#
# ## The same usage under a blocking policy
#
# With `enforcement="block"` an event whose cost exceeds the balance is **denied** instead of going
# into overdraft. Who would have been refused service, and how often?

# %%
blocked = simulate(con, catalog, customers, enforcement="block", scenario="block")
denied = (
    blocked.denied_events.group_by("customer_id")
    .agg(pl.len().alias("denied"))
    .sort("denied", "customer_id", descending=[True, False])
)
print(
    f"{blocked.denied_events.height:,} events denied for {denied.height} customers "
    f"(overdraft mode: {result.denied_events.height} denied)"
)
denied.join(plans, on="customer_id").head(8)

# %% [markdown]
# Free customers without auto-recharge are the ones refused: their 500 monthly credits plus the
# welcome promotion run out.
#
# ## Save the outputs
#
# `write` stores the ledger, denied and rejected events and balances as Parquet plus
# `summary.json` — identical bytes for identical inputs.

# %%
[p.name for p in result.write(OUT / "replay_base")]

# %% [markdown]
# **Next:** `03_what_if_formulas.ipynb` asks what changes if chat cost 1.2× per output token.
