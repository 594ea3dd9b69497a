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
# # 3 · What if chat cost 1.2× per output token?
#
# A product manager asks: *what if chat cost 1.2× per output token?* We answer over the real usage
# history, per customer and per feature:
#
# 1. write the new consumption **formula** and check it,
# 2. define **scenarios** (from YAML and in Python) and **compare** them with the base,
# 3. read per-customer and per-feature changes, the **run-out** shift, revenue and breakage,
# 4. **sweep** a multiplier and **goal-seek** the one that keeps 90 % of customers within their
#    included credits,
# 5. write a self-contained **HTML report**.

# %%
import os
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import altair as alt
import duckdb
import polars as pl
from IPython.display import display

from pricing_lab import (
    Formula,
    InputError,
    Scenario,
    charts,
    compare,
    comparison_report,
    generate_events,
    goal_seek,
    ingest_events,
    load_catalog_file,
    load_customers,
    load_sample_events,
    load_scenarios,
    open_store,
    runout_changes,
    share_within_included,
    sweep,
    write_report,
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
# The same set-up as notebook 2: the sample catalog, the real chat traces plus synthetic image and
# summary events, and 50 customers on free / pro / enterprise.
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
# ## The formula
#
# Chat's credit rate is a formula over the event's model and tokens. We parse it, see which event
# dimensions it reads, and write the new one: every model's **output-token** coefficient × 1.2
# (gpt-4o 10 → 12, gpt-4o-mini 0.6 → 0.72, others 0.9 → 1.08), input tokens unchanged.

# %%
chat_rate = next(r for r in catalog.plan("pro").credit_rates if r.feature == "llm_chat")
current = Formula.parse(chat_rate.formula)
proposed = Formula.parse(
    "if(model == 'gpt-4o', 2.5 * input_tokens + 12 * output_tokens,"
    " if(model == 'gpt-4o-mini', 0.15 * input_tokens + 0.72 * output_tokens,"
    " 0.9 * input_tokens + 1.08 * output_tokens)) / 1000"
)
print("reads:", ", ".join(proposed.dimensions))
request = {"model": "gpt-4o", "input_tokens": 1200, "output_tokens": 350}
print(
    "a gpt-4o request with 1,200 input and 350 output tokens: "
    f"{current.evaluate(request).normalize()} → {proposed.evaluate(request).normalize()} credits"
)

# %% [markdown]
# By hand: (2.5 × 1200 + 10 × 350) / 1000 = 6.5 credits today; (2.5 × 1200 + 12 × 350) / 1000 = 7.2
# with the change (+0.7, i.e. +20 % of the output part only).
#
# A typo is caught with its place marked — formulas are parsed, never evaluated as Python:

# %%
try:
    Formula.parse("if(model == 'gpt-4o', 2.5 * input_tokens + 12 * output_tokens")
except InputError as error:
    print(error)

# %% [markdown]
# Before replaying, check the formula against the events: how many chat events would it reject
# (a null or negative cost)? The same formula runs in DuckDB, exactly, over every event:

# %%
values = proposed.evaluate_duckdb(con, "SELECT * FROM events WHERE event_name = 'llm.request'")
checked = con.sql(
    "SELECT count(*) AS events, count(*) FILTER (value IS NULL) AS null_cost, "
    "count(*) FILTER (value < 0) AS negative_cost, sum(value) AS total_credits FROM values"
).pl()
checked

# %% [markdown]
# ## Scenarios
#
# `examples/scenarios.yaml` holds the question as a scenario (the new formula in every plan;
# enterprise keeps its 20 % discount). Scenarios can also be written in Python — two more to put
# the change in context: a flat 1.2× on *all* chat tokens, and the output change combined with
# 30,000 pro credits instead of 25,000.

# %%
base, from_yaml = load_scenarios(EXAMPLES / "scenarios.yaml")
output_change = next(s for s in from_yaml if s.name == "chat_output_1.2x")
scenarios = [
    *from_yaml,
    Scenario(
        name="chat_all_tokens_1.2x",
        description="Every chat token 1.2x.",
        rate_multipliers={"llm_chat": Decimal("1.2")},
    ),
    Scenario(
        name="chat_output_1.2x_free_1000",
        description="Output 1.2x, and free grants 1,000 credits.",
        rates=output_change.rates,
        plan_credits={"free": Decimal(1000)},
    ),
]
pl.DataFrame(
    {"scenario": [s.name for s in scenarios], "description": [s.description for s in scenarios]}
)

# %%
comparison = compare(con, catalog, customers, scenarios, base=base)
comparison  # the headline: every scenario against the base

# %% [markdown]
# Reading the headline: 1.2× on output tokens raises chat's credits by under 3 % — these workloads
# have long prompts and short answers (about 5,300 input and 260 output tokens per conversation
# request), so 1.2× on output is far from 1.2× on the bill; 1.2× on every token is +20 % for chat.
# Who runs out, recharge revenue and breakage barely move. A free allowance of 1,000 credits, on
# the other hand, halves the customers who run out — and most of the recharge revenue with them.
#
# ## Per feature and per customer
#
# Only chat changes: the other features' consumption is identical in every scenario.

# %%
comparison.features.filter(pl.col("scenario").is_in([base, "chat_output_1.2x"])).pivot(
    on="scenario", index="feature_id", values="consumed"
)

# %%
changes = comparison.customers.filter(pl.col("scenario") == "chat_output_1.2x")
changes.sort("consumed_change", descending=True).select(
    "customer_id",
    "consumed",
    "consumed_change",
    pl.col("consumed_change_pct").round(1),
    "runout_at",
    pl.col("runout_shift_days").round(1),
    pl.col("recharge_revenue_change").round(2),
).head(8)

# %% [markdown]
# Customers who run out in both scenarios run out at the same time or earlier with the new formula
# (a negative shift, in days); `runout_at` is the first consumption that emptied the balance.

# %%
shifted = changes.filter(pl.col("runout_shift_days").is_not_null())
print(
    f"{shifted.height} customers run out in both; median shift "
    f"{shifted['runout_shift_days'].median():.2f} days, "
    f"earliest {shifted['runout_shift_days'].min():.2f} days"
)
runouts = runout_changes(comparison).filter(pl.col("scenario") == "chat_output_1.2x")
newly = runouts.filter(pl.col("change") == "newly runs out")
names = ", ".join(newly["customer_id"])
print(f"{newly.height} customer(s) run out only with the new formula: {names}")
runouts.select("customer_id", "plan", "change", "base_runout_at", "runout_at", "runout_shift_days")

# %% [markdown]
# ## Charts
#
# Each chart gets data already aggregated (a histogram has at most 40 bins per scenario).

# %%
others = comparison.customers.filter(pl.col("scenario") != base)
display(
    charts.revenue_and_breakage(comparison.totals, currency="USD").properties(width=420, height=240)
)
display(charts.change_distribution(others).properties(width=560, height=220))
charts.runout_shift(others).properties(width=560, height=220)


# %% [markdown]
# ## Sweep: how far can chat prices move?
#
# Vary one coefficient over a grid: all chat rates × *m*. For each value we also measure the share
# of customers who stay **within their included credits** — they never ran out on a consumption,
# owe nothing, were never auto-recharged and never denied (`share_within_included`; a replay's
# `first_zero_at` also counts the instant a monthly grant expires just before the next one
# starts, so the measure reads the ledger's consumption entries instead).


# %%
def chat_multiplier(m: Decimal) -> Scenario:
    return Scenario(name=f"chat x{m}", rate_multipliers={"llm_chat": m})


grid = [Decimal(v) for v in ("0.4", "0.7", "1.0", "1.3", "1.6")]
swept = sweep(con, catalog, customers, chat_multiplier, grid, base="chat x1.0")
sweep_table = pl.DataFrame(
    {
        "multiplier": [float(m) for m in grid],
        "within_included": [
            share_within_included(swept.result(chat_multiplier(m).name)) for m in grid
        ],
    }
).join(
    swept.totals.select(
        pl.col("scenario"),
        pl.col("recharge_revenue").cast(pl.Float64),
        pl.col("consumed").cast(pl.Float64),
    )
    .with_columns(
        pl.col("scenario")
        .str.strip_prefix("chat x")
        .cast(pl.Float64, strict=False)
        .alias("multiplier")
    )
    .drop("scenario"),
    on="multiplier",
)
sweep_table

# %%
share_line = (
    alt.Chart(sweep_table)
    .mark_line(point=True)
    .encode(
        x=alt.X("multiplier:Q", title="chat rate multiplier"),
        y=alt.Y(
            "within_included:Q",
            title="customers within included credits",
            axis=alt.Axis(format="%"),
        ),
    )
)
revenue_line = (
    alt.Chart(sweep_table)
    .mark_line(point=True, color="#d62728")
    .encode(
        x="multiplier:Q",
        y=alt.Y("recharge_revenue:Q", title="recharge revenue (USD)"),
    )
)
alt.layer(share_line, revenue_line).resolve_scale(y="independent").properties(
    width=520,
    height=240,
    title="Chat price vs. customers within their credits and recharge revenue",
)


# %% [markdown]
# Reading the sweep: even chat at 0.4× leaves about a third of the customers outside their
# included credits, and above 0.7× the share hardly moves. The customers who run out are free
# customers burning their 500 monthly credits on images and summaries, which chat prices do not
# touch. Chat price is not the lever for staying within the plan; the free plan's allowance is.
#
# ## Goal seek: the free allowance at which 90 % stay within included credits
#
# How many monthly credits would the free plan have to grant (with today's rates) so that 90 % of
# all customers stay within their included credits? `goal_seek` bisects on that one coefficient —
# the share *grows* with the allowance, hence `decreasing=False` — until the step is below the
# tolerance, and returns the smallest allowance that meets the target.


# %%
def free_allowance(credits: Decimal) -> Scenario:
    return Scenario(name=f"free {credits} credits", plan_credits={"free": credits})


sought = goal_seek(
    con,
    catalog,
    customers,
    free_allowance,
    low=Decimal(500),
    high=Decimal(4500),
    target=0.9,
    measure=share_within_included,
    decreasing=False,
    tolerance=Decimal(500),
)
print(
    f"goal seek: a free allowance of {sought.value} credits a month keeps {sought.measure:.0%} of "
    f"customers within their included credits ({len(sought.steps)} replays)"
)
pl.DataFrame(
    [(int(v), s) for v, s in sought.steps], schema=["free_credits", "within_included"], orient="row"
)

# %% [markdown]
# At 0.001 USD a credit, each 1,000 credits of allowance is 1 USD a month per free customer — to
# weigh against the recharge revenue those customers bring today (the `free_1000` scenario above
# shows the trade-off at 1,000 credits).
#
# ## The HTML report
#
# One self-contained file (charts with their JavaScript inlined, works offline) to share the
# comparison.

# %%
report = comparison_report(
    comparison,
    title="What if chat cost 1.2x per output token?",
    footer="Usage data: Azure LLM inference trace 2023 (CC-BY 4.0) and the Mooncake "
    "conversation trace (Apache-2.0); see notebook 1.",
)
path = write_report(report, OUT / "what_if_report.html")
print(f"report written: {path} ({path.stat().st_size / 1e6:.1f} MB)")

# %% [markdown]
# **Next:** `04_export_to_snowflake.ipynb` exports the catalog and these results to Snowflake.
