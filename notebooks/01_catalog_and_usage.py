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
# # 1 · The catalog and real usage
#
# What we sell and how it is used. In this notebook we
#
# 1. open a catalog **store** (DuckDB) and apply the sample catalog of an AI product,
# 2. look at its plans, feature groups and credit currency,
# 3. publish a change and read the **version history**,
# 4. load **real LLM request traces** as usage events,
# 5. build **usage reports** per month and per day, and chart them.
#
# Everything runs offline on data shipped with `pricing_lab`.

# %%
import os
from datetime import UTC, datetime
from pathlib import Path

import altair as alt
import duckdb
import polars as pl
from IPython.display import display

from pricing_lab import charts, load_catalog_file, load_sample_events, open_store, usage_report

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
# ## Open a store and apply the sample catalog
#
# `examples/ai_product.yaml` defines one credit currency, metered features (chat, image generation,
# document summaries, storage), two feature groups, three plans and an add-on. Applying it to an
# empty store creates version 1 of every entity; the result is the diff of what changed.

# %%
con = duckdb.connect()  # in memory; open_store("pricing.duckdb") keeps it in a file
store = open_store(con)
catalog = load_catalog_file(EXAMPLES / "ai_product.yaml")
store.apply(catalog, at=datetime(2023, 12, 1, tzinfo=UTC))

# %% [markdown]
# ## Plans, feature groups and the credit currency
#
# Catalog records show themselves as tables in a notebook. One credit costs 0.001 USD and the
# ledger keeps two decimals. The **pro** plan entitles its customers to two feature groups and
# 25,000 credits a month; its credit rates say how each metered feature burns credits — chat by a
# formula over the model and the input / output tokens.

# %%
display(catalog.currency("credits"))
display(catalog.feature_group("ai_core"))
catalog.plan("pro")

# %% [markdown]
# A feature group stands for its features: the store expands pro's group entitlements to the
# features of the group version in force.

# %%
[
    (type(e).__name__, getattr(e, "feature", None) or f"{e.amount} {e.currency} {e.cadence}")
    for e in store.expanded_entitlements("pro")
]

# %% [markdown]
# ## Publish a change and read the history
#
# Product decides that from February pro grants **30,000** credits a month and the *AI core* group
# also covers image summaries. We edit a copy of the catalog file, look at the diff first (nothing
# is written), then apply it.

# %%
text = (EXAMPLES / "ai_product.yaml").read_text(encoding="utf-8")
pro_credits = "{kind: credit, currency: credits, amount: %s, cadence: monthly}"
edits = {
    pro_credits % 25000: pro_credits % 30000,
    "[llm_chat, image_generation]": "[llm_chat, image_generation, summary_images]",
}
for old, new in edits.items():
    assert text.count(old) == 1, old
    text = text.replace(old, new)
(OUT / "ai_product_v2.yaml").write_text(text, encoding="utf-8")
catalog_v2 = load_catalog_file(OUT / "ai_product_v2.yaml")
diff = store.diff(catalog_v2)
print(str(diff).splitlines()[-1])
diff

# %%
store.apply(catalog_v2, at=datetime(2024, 2, 1, tzinfo=UTC))
store.history().filter(pl.col("event") != "created")

# %% [markdown]
# Nothing is overwritten: pro now has versions 1 and 2, *ai_core* too. Subscriptions keep the
# version they started on unless migrated, so both versions stay readable.

# %%
plan_versions = store.versions("plan").filter(pl.col("plan_id") == "pro")
display(plan_versions.select("plan_id", "version", "published_at", "name"))
for version in (1, 2):
    credits = [e for e in store.plan_version("pro", version).entitlements if hasattr(e, "amount")]
    members = store.group_version("ai_core", version).features
    grants = f"pro grants {credits[0].amount} credits a month"
    print(f"v{version}: {grants}; ai_core = {', '.join(members)}")

# %% [markdown]
# ## Real usage: LLM request traces
#
# `load_sample_events` ingests the real traces shipped in the package into table `events`. Every
# row is either accepted or rejected with a reason (none are rejected here).
#
# > **Usage data.** Azure LLM inference trace 2023 (Patel et al., *Splitwise: Efficient generative
# > LLM inference using phase splitting*, ISCA 2024; CC-BY 4.0, Microsoft Azure) and the Mooncake
# > conversation trace (Qin et al., *Mooncake: Trading More Storage for Less Computation*, FAST
# > 2025; Apache-2.0). The traces have no tenant: each request gets a customer (`cust-00001` is the
# > largest) and a model by a stable hash, and the ~1 hour traces are stretched over 60 days from
# > 2024-01-01, keeping their order.

# %%
ingest = load_sample_events(con)
print(f"{ingest.rows_read:,} rows read: {ingest.accepted:,} accepted, {ingest.rejected} rejected")
print("dimensions:", ", ".join(ingest.dimensions))
con.sql("""
    SELECT workload, model, count(*) AS requests,
           round(avg(input_tokens)) AS avg_input_tokens,
           round(avg(output_tokens)) AS avg_output_tokens
    FROM events GROUP BY ALL ORDER BY workload, requests DESC
""").pl()

# %% [markdown]
# Customer sizes are heavy-tailed, like real SaaS usage: the five largest customers send more
# than half of the requests.

# %%
sizes = con.sql("""
    SELECT customer_id, count(*) AS requests, sum(output_tokens) AS output_tokens
    FROM events GROUP BY customer_id ORDER BY requests DESC, customer_id
""").pl()
share = sizes["requests"].head(5).sum() / sizes["requests"].sum()
print(f"{sizes.height} customers; the top 5 send {share:.0%} of the requests")
sizes.head(5)

# %% [markdown]
# ## Usage reports
#
# A usage report aggregates each metered feature's meter per customer and period. With
# subscriptions it also marks where usage **resets**: at a subscription start, at a plan change
# and at each period start. We put the largest customers on enterprise, the next ones on pro and
# the rest on free — and let one free customer upgrade to pro on 10 February.

# %%
ranked = sizes["customer_id"].to_list()
upgrader = ranked[20]
rows = []
for rank, customer in enumerate(ranked):
    plan = "enterprise" if rank < 5 else "pro" if rank < 20 else "free"
    if customer == upgrader:
        rows += [
            (customer, "free", datetime(2024, 1, 1), datetime(2024, 2, 10)),
            (customer, "pro", datetime(2024, 2, 10), None),
        ]
    else:
        rows.append((customer, plan, datetime(2024, 1, 1), None))
subscriptions = pl.DataFrame(
    rows,
    orient="row",
    schema={
        "customer_id": pl.String,
        "plan_id": pl.String,
        "start": pl.Datetime("us"),
        "end": pl.Datetime("us"),
    },
)
current = store.current()
monthly = usage_report(con, current, period="month", subscriptions=subscriptions)
monthly.filter(pl.col("customer_id") == upgrader).select(
    "feature_id",
    "plan_id",
    "period_start",
    "period_end",
    "reset_reason",
    "events",
    "display_usage",
    "billable_usage",
)

# %% [markdown]
# Reading it: the upgrader's January is one free period; February is cut at the upgrade — usage
# restarts on 10 February with `reset_reason = plan_change`. The chat meter counts output tokens,
# shown in *1K tokens*; billable usage rounds **up** to whole display units.
#
# Per plan and month, aggregated before looking:

# %%
(
    monthly.group_by("plan_id", pl.col("period_start").dt.strftime("%Y-%m").alias("month"))
    .agg(
        pl.col("customer_id").n_unique().alias("customers"),
        pl.col("events").sum(),
        pl.col("billable_usage").sum().alias("billable_1k_tokens"),
    )
    .sort("month", "plan_id")
)

# %% [markdown]
# Daily usage per plan, charted. The report has one row per customer, feature and day; we sum it
# to one point per plan and day (about 180 points) before drawing.

# %%
daily = usage_report(con, current, period="day", subscriptions=subscriptions)
per_day = (
    daily.group_by("plan_id", "period_start")
    .agg(pl.col("display_usage").sum().cast(pl.Float64).alias("output_1k_tokens"))
    .sort("period_start", "plan_id")
)
print(f"{daily.height:,} report rows → {per_day.height} chart points")
alt.Chart(per_day, title="Chat output per day and plan (1K tokens)").mark_area().encode(
    x=alt.X("period_start:T", title="day (UTC)"),
    y=alt.Y("output_1k_tokens:Q", stack=True, title="1K output tokens"),
    color=alt.Color("plan_id:N", title="plan"),
    tooltip=["plan_id:N", "period_start:T", "output_1k_tokens:Q"],
).properties(width=640, height=260)

# %% [markdown]
# **Next:** `02_replay_credit_burn.ipynb` turns this usage into credits: grants, draw-down,
# auto-recharge, balances.
