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

# %%

# %% [markdown]
# # 5 · Who will run out next month, and what are they worth?
#
# A customer-success lead asks: *which customers will run out of credits in the next 30 days, how
# sure are we, and are they worth saving?* We answer from the usage history and the ledger:
#
# 1. **replay** the history and work out each customer's **margin** (revenue recognised, breakage,
#    cost to serve),
# 2. **forecast** run-outs as of 1 February 2024 over a **30-day** horizon (1,000 simulated paths
#    of each customer's own burn),
# 3. put the two side by side: who may run out, when (p10 / p50 / p90), with what chance, and
#    what each is worth — a table and a chart.

# %%
import os
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl

from pricing_lab import (
    charts,
    forecast,
    forecast_at_risk,
    generate_events,
    ingest_events,
    load_catalog_file,
    load_customers,
    load_sample_events,
    margin_by,
    negative_margin_customers,
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
# ## Catalog, usage and customers
#
# The same set-up as notebooks 2 and 3: the sample catalog (with each feature's cost to serve in
# USD), the real chat traces plus synthetic image and summary events, and the 50 customers of
# `examples/customers.yaml` on free / pro / enterprise.
#
# > **Usage data.** Azure LLM inference trace 2023 (Patel et al., *Splitwise: Efficient generative
# > LLM inference using phase splitting*, ISCA 2024; CC-BY 4.0, Microsoft Azure) and the Mooncake
# > conversation trace (Qin et al., *Mooncake: Trading More Storage for Less Computation*, FAST
# > 2025; Apache-2.0). The traces have no tenant: each request gets a customer (`cust-00001` is the
# > largest) and a model by a stable hash, and the ~1 hour traces are stretched over 60 days from
# > 2024-01-01, keeping their order.

# %%
con = duckdb.connect()  # one in-memory DuckDB database for the events
catalog = load_catalog_file(EXAMPLES / "ai_product.yaml")
real = load_sample_events(con)  # the real LLM traces, as table `events`
# Synthetic image and summary events for the same customers and days (seeded, reproducible).
synthetic = generate_events(OUT / "synthetic.parquet", events=12_000, customers=50, days=60, seed=7)
others = pl.read_parquet(synthetic.path).filter(pl.col("event_name") != "llm.request")
ingest = ingest_events(con, pl.concat([con.table("events").pl(), others], how="diagonal_relaxed"))
customers = load_customers(EXAMPLES / "customers.yaml")
print(f"{ingest.accepted:,} events accepted, {ingest.rejected} rejected")

# %% [markdown]
# ## What each customer is worth
#
# A replay of the whole history gives each customer's margin (docs/margin.md): **revenue
# recognised** (credits consumed × the cost basis of the grant they came from), **breakage**
# (money of expired paid credits), **cost to serve** (what serving its events cost us), **gross
# margin** = revenue + breakage − cost to serve. Promotional and plan credits have a cost basis of
# 0, so a customer living on them costs us money.

# %%
result = simulate(con, catalog, customers)
worth = margin_by(result.margin, ["customer_id"])
totals = margin_by(result.margin, [])
print(
    f"gross margin of the whole history: {totals['gross_margin'][0]:.2f} USD; "
    f"{negative_margin_customers(result.margin).height} customers with negative margin"
)
worth.sort("gross_margin").select(
    "customer_id", "revenue", "breakage", "cost_to_serve", "gross_margin", "margin_share"
).head(5)

# %% [markdown]
# ## Who will run out next month
#
# `forecast` replays the history before 1 February (it never reads later events), adds the known
# future (monthly plan grants, expiries, auto-recharges) and draws 1,000 paths of each customer's
# own daily burn over the next 30 days (docs/forecast.md). Customers with fewer than 7 days of
# usage are flagged, not guessed.

# %%
AS_OF = datetime(2024, 2, 1, tzinfo=UTC)
runs_out = forecast(con, catalog, customers, as_of=AS_OF, horizon="30d", paths=1_000, seed=0)
runs_out.write_parquet(OUT / "forecast.parquet")
at_risk = forecast_at_risk(runs_out, worth)
flagged = int(runs_out["too_little_history"].sum())
losing = at_risk.filter(pl.col("gross_margin") < 0).height
print(
    f"{at_risk.height} of {runs_out.height} customer-currencies may run out by "
    f"{runs_out['horizon_end'][0]:%Y-%m-%d}; {flagged} flagged with too little history; "
    f"{losing} of those at risk have a negative margin"
)

# %% [markdown]
# The answer: who may run out (first expected run-out first), with what chance, when (10th, 50th
# and 90th percentile of the run-out time; – when it falls after the horizon), and what each has
# been worth to us so far (USD). Money is rounded to cents here only; the figures stay exact.

# %%
at_risk.select(
    "customer_id",
    "balance",
    pl.col("run_out_pct").round(1).alias("chance_pct"),
    *(pl.col(f"run_out_p{q}").dt.strftime("%Y-%m-%d %H:%M").alias(f"p{q}") for q in (10, 50, 90)),
    pl.col("revenue").round(2).alias("revenue_usd"),
    pl.col("gross_margin").round(2).alias("gross_margin_usd"),
)

# %%
charts.runout_worth(at_risk, currency="USD")

# %% [markdown]
# Reading it: a customer high on the chart (runs out soon) with a bar to the right (positive
# margin) is worth a top-up offer or an upgrade call before it runs out; a bar to the left is a
# customer whose usage of credits we gave away (promotions, free plan credits) costs us more to
# serve than it has paid, so running out is an upgrade conversation, not a rescue.
# The forecast table is in `notebook_out/forecast.parquet`; `write_comparison(…, forecast=…)` adds
# the same run-out section to a scenario comparison's HTML report.
