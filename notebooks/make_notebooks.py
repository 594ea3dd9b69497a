"""Writes the analyst notebooks of this folder (without outputs) from the cells listed here.

Run `uv run python notebooks/make_notebooks.py` after editing a cell, then commit the .ipynb
files with it. `tests/notebooks/test_notebooks.py` executes every notebook top to bottom.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
Cell = tuple[str, str]

# -- pieces shared by several notebooks ---------------------------------------------------------

PATHS = '''\
# Example files: ../examples when the notebook is opened from notebooks/ (the tests point
# PRICING_LAB_EXAMPLES at the repository's examples folder). Outputs go to ./notebook_out.
EXAMPLES = Path(os.environ.get("PRICING_LAB_EXAMPLES", "../examples"))
OUT = Path("notebook_out")
OUT.mkdir(exist_ok=True)
pl.Config.set_tbl_rows(12)
pl.Config.set_tbl_cols(12)
_ = pl.Config.set_tbl_width_chars(150)'''

ATTRIBUTION = """\
> **Usage data.** Azure LLM inference trace 2023 (Patel et al., *Splitwise: Efficient generative
> LLM inference using phase splitting*, ISCA 2024; CC-BY 4.0, Microsoft Azure) and the Mooncake
> conversation trace (Qin et al., *Mooncake: Trading More Storage for Less Computation*, FAST
> 2025; Apache-2.0). The traces have no tenant: each request gets a customer (`cust-00001` is the
> largest) and a model by a stable hash, and the ~1 hour traces are stretched over 60 days from
> 2024-01-01, keeping their order."""

STORE_AND_EVENTS = '''\
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
print(f"{real.accepted:,} real chat requests + {others.height:,} synthetic events: "
      f"{ingest.accepted:,} accepted, {ingest.rejected} rejected")
con.sql("SELECT event_name, count(*) AS events FROM events GROUP BY ALL ORDER BY events DESC").pl()'''

CUSTOMERS_MD = """\
## Who the customers are

The events name 50 customers. We put them on plans by size — the same rules `pricing-lab demo`
uses, written out here so they are easy to change:

* ranked by number of events, the top 10 % are on **enterprise**, the next 30 % on **pro**, the
  rest on **free**, all subscribed from 2024-01-01 (monthly credits come from the plans);
* everyone gets a **2,000-credit welcome promotion** valid 14 days;
* enterprise customers bought a **100,000-credit top-up** at 0.0008 USD a credit, valid 30 days
  (what they do not use is *breakage*);
* pro customers **auto-recharge** to 20,000 credits when below 2,000 (at most 100 USD a month);
  every other free customer recharges to 2,000 when below 100 (at most 20 USD a month);
  recharged credits expire after a month."""

CUSTOMERS = '''\
START = datetime(2024, 1, 1, tzinfo=UTC)
ranked = con.sql(
    "SELECT customer_id FROM events GROUP BY customer_id ORDER BY count(*) DESC, customer_id"
).pl()["customer_id"].to_list()
subscriptions, grants, recharges = [], [], []
for rank, customer in enumerate(ranked):
    plan = "enterprise" if rank < len(ranked) // 10 else "pro" if rank < len(ranked) * 4 // 10 else "free"
    subscriptions.append(
        Subscription(subscription_id=f"{customer}:{plan}", customer_id=customer, plan_id=plan, start=START)
    )
    grants.append(
        Grant(grant_id=f"{customer}:welcome", customer_id=customer, currency_id="credits",
              amount=Decimal(2000), type="PROMOTIONAL", effective_at=START,
              expires_at=START + timedelta(days=14))
    )
    if plan == "enterprise":
        grants.append(
            Grant(grant_id=f"{customer}:top_up:0", customer_id=customer, currency_id="credits",
                  amount=Decimal(100_000), type="PAID", effective_at=START,
                  expires_at=START + timedelta(days=30), cost_basis=Decimal("0.0008"), source="top_up")
        )
    if plan == "pro" or (plan == "free" and rank % 2 == 0):
        threshold, target, limit = ("2000", "20000", "100") if plan == "pro" else ("100", "2000", "20")
        recharges.append(
            AutoRecharge(customer_id=customer, currency_id="credits", threshold=Decimal(threshold),
                         target=Decimal(target), monthly_spend_limit=Decimal(limit), grant_expiry="1_month")
        )
customers = CustomerInputs(
    subscriptions=tuple(subscriptions), grants=tuple(grants), auto_recharges=tuple(recharges)
)
pl.DataFrame([(s.customer_id, s.plan_id) for s in subscriptions], schema=["customer_id", "plan"],
             orient="row").group_by("plan").agg(pl.len().alias("customers"), pl.col("customer_id").first().alias("largest"))'''


def md(text: str) -> Cell:
    return ("markdown", text)


def code(text: str) -> Cell:
    return ("code", text)


# -- 01: the catalog and usage --------------------------------------------------------------------

NOTEBOOK_01: list[Cell] = [
    md("""\
# 1 · The catalog and real usage

What we sell and how it is used. In this notebook we

1. open a catalog **store** (DuckDB) and apply the sample catalog of an AI product,
2. look at its plans, feature groups and credit currency,
3. publish a change and read the **version history**,
4. load **real LLM request traces** as usage events,
5. build **usage reports** per month and per day, and chart them.

Everything runs offline on data shipped with `pricing_lab`."""),
    code('''\
import os
from datetime import UTC, datetime
from pathlib import Path

import altair as alt
import duckdb
import polars as pl
from IPython.display import display

from pricing_lab import load_catalog_file, load_sample_events, open_store, usage_report

''' + PATHS),
    md("""\
## Open a store and apply the sample catalog

`examples/ai_product.yaml` defines one credit currency, metered features (chat, image generation,
document summaries, storage), two feature groups, three plans and an add-on. Applying it to an
empty store creates version 1 of every entity; the result is the diff of what changed."""),
    code('''\
con = duckdb.connect()  # in memory; open_store("pricing.duckdb") keeps it in a file
store = open_store(con)
catalog = load_catalog_file(EXAMPLES / "ai_product.yaml")
store.apply(catalog, at=datetime(2023, 12, 1, tzinfo=UTC))'''),
    md("""\
## Plans, feature groups and the credit currency

Catalog records show themselves as tables in a notebook. One credit costs 0.001 USD and the
ledger keeps two decimals. The **pro** plan entitles its customers to two feature groups and
25,000 credits a month; its credit rates say how each metered feature burns credits — chat by a
formula over the model and the input / output tokens."""),
    code('''\
display(catalog.currency("credits"))
display(catalog.feature_group("ai_core"))
catalog.plan("pro")'''),
    md("""\
A feature group stands for its features: the store expands pro's group entitlements to the
features of the group version in force."""),
    code('''\
[(type(e).__name__, getattr(e, "feature", None) or f"{e.amount} {e.currency} {e.cadence}")
 for e in store.expanded_entitlements("pro")]'''),
    md("""\
## Publish a change and read the history

Product decides that from February pro grants **30,000** credits a month and the *AI core* group
also covers image summaries. We edit a copy of the catalog file, look at the diff first (nothing
is written), then apply it."""),
    code('''\
text = (EXAMPLES / "ai_product.yaml").read_text(encoding="utf-8")
edits = {
    "{kind: credit, currency: credits, amount: 25000, cadence: monthly}":
        "{kind: credit, currency: credits, amount: 30000, cadence: monthly}",
    "features: [llm_chat, image_generation]": "features: [llm_chat, image_generation, summary_images]",
}
for old, new in edits.items():
    assert text.count(old) == 1, old
    text = text.replace(old, new)
(OUT / "ai_product_v2.yaml").write_text(text, encoding="utf-8")
catalog_v2 = load_catalog_file(OUT / "ai_product_v2.yaml")
diff = store.diff(catalog_v2)
print(str(diff).splitlines()[-1])
diff'''),
    code('''\
store.apply(catalog_v2, at=datetime(2024, 2, 1, tzinfo=UTC))
store.history().filter(pl.col("event") != "created")'''),
    md("""\
Nothing is overwritten: pro now has versions 1 and 2, *ai_core* too. Subscriptions keep the
version they started on unless migrated, so both versions stay readable."""),
    code('''\
plan_versions = store.versions("plan").filter(pl.col("plan_id") == "pro")
display(plan_versions.select("plan_id", "version", "published_at", "name"))
for version in (1, 2):
    credits = [e for e in store.plan_version("pro", version).entitlements if hasattr(e, "amount")]
    members = store.group_version("ai_core", version).features
    print(f"v{version}: pro grants {credits[0].amount} credits a month; ai_core = {', '.join(members)}")'''),
    md("""\
## Real usage: LLM request traces

`load_sample_events` ingests the real traces shipped in the package into table `events`. Every
row is either accepted or rejected with a reason (none are rejected here).

""" + ATTRIBUTION),
    code('''\
ingest = load_sample_events(con)
print(f"{ingest.rows_read:,} rows read: {ingest.accepted:,} accepted, {ingest.rejected} rejected")
print("dimensions:", ", ".join(ingest.dimensions))
con.sql("""
    SELECT workload, model, count(*) AS requests,
           round(avg(input_tokens)) AS avg_input_tokens, round(avg(output_tokens)) AS avg_output_tokens
    FROM events GROUP BY ALL ORDER BY workload, requests DESC
""").pl()'''),
    md("""\
Customer sizes are heavy-tailed, like real SaaS usage: the five largest customers send more
than half of the requests."""),
    code('''\
sizes = con.sql("""
    SELECT customer_id, count(*) AS requests, sum(output_tokens) AS output_tokens
    FROM events GROUP BY customer_id ORDER BY requests DESC, customer_id
""").pl()
share = sizes["requests"].head(5).sum() / sizes["requests"].sum()
print(f"{sizes.height} customers; the top 5 send {share:.0%} of the requests")
sizes.head(5)'''),
    md("""\
## Usage reports

A usage report aggregates each metered feature's meter per customer and period. With
subscriptions it also marks where usage **resets**: at a subscription start, at a plan change
and at each period start. We put the largest customers on enterprise, the next ones on pro and
the rest on free — and let one free customer upgrade to pro on 10 February."""),
    code('''\
ranked = sizes["customer_id"].to_list()
upgrader = ranked[20]
rows = []
for rank, customer in enumerate(ranked):
    plan = "enterprise" if rank < 5 else "pro" if rank < 20 else "free"
    if customer == upgrader:
        rows += [(customer, "free", datetime(2024, 1, 1), datetime(2024, 2, 10)),
                 (customer, "pro", datetime(2024, 2, 10), None)]
    else:
        rows.append((customer, plan, datetime(2024, 1, 1), None))
subscriptions = pl.DataFrame(
    rows, orient="row",
    schema={"customer_id": pl.String, "plan_id": pl.String, "start": pl.Datetime("us"), "end": pl.Datetime("us")},
)
current = store.current()
monthly = usage_report(con, current, period="month", subscriptions=subscriptions)
monthly.filter(pl.col("customer_id") == upgrader).select(
    "feature_id", "plan_id", "period_start", "period_end", "reset_reason", "events", "display_usage", "billable_usage"
)'''),
    md("""\
Reading it: the upgrader's January is one free period; February is cut at the upgrade — usage
restarts on 10 February with `reset_reason = plan_change`. The chat meter counts output tokens,
shown in *1K tokens*; billable usage rounds **up** to whole display units.

Per plan and month, aggregated before looking:"""),
    code('''\
(monthly.group_by("plan_id", pl.col("period_start").dt.strftime("%Y-%m").alias("month"))
    .agg(pl.col("customer_id").n_unique().alias("customers"), pl.col("events").sum(),
         pl.col("billable_usage").sum().alias("billable_1k_tokens"))
    .sort("month", "plan_id"))'''),
    md("""\
Daily usage per plan, charted. The report has one row per customer, feature and day; we sum it
to one point per plan and day (about 180 points) before drawing."""),
    code('''\
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
).properties(width=640, height=260)'''),
    md("""\
**Next:** `02_replay_credit_burn.ipynb` turns this usage into credits: grants, draw-down,
auto-recharge, balances."""),
]

# -- 02: replaying credit burn --------------------------------------------------------------------

NOTEBOOK_02: list[Cell] = [
    md("""\
# 2 · Replaying credit burn

Usage becomes credits. We replay the real usage through the catalog and the customers' grants,
exactly as the product would have: every consumption is drawn from the customer's grants in
draw-down order and written to a **ledger**; auto-recharge tops balances up; what nothing covers
goes into overdraft. Then we read balances, query a balance at any instant, check the ledger's
invariants and chart balances and burn."""),
    code('''\
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
from IPython.display import display

from pricing_lab import (
    AutoRecharge, CustomerInputs, Grant, Subscription, balance_at, charts, check_invariants,
    generate_events, ingest_events, load_catalog_file, load_sample_events, open_store, simulate,
)

''' + PATHS),
    md("""\
## The catalog and the usage

The sample catalog, the real chat traces and some synthetic image / summary events.

""" + ATTRIBUTION),
    code(STORE_AND_EVENTS),
    md(CUSTOMERS_MD),
    code(CUSTOMERS),
    md("""\
## Replay

`simulate` matches events to metered features, costs them with the plan's credit rates (exact
decimals, rounded per event and feature to the currency's two places), generates the monthly
plan grants, and replays everything in time order. The default policy is **overdraft**: usage is
never refused; what grants cannot cover is owed and settled from the next grant."""),
    code('''\
result = simulate(con, catalog, customers)
print(f"{result.ledger.height:,} ledger entries, {result.denied_events.height} denied, "
      f"{result.rejected_events.height} rejected events")
result.summary'''),
    md("""\
The summary is per currency: credits granted, consumed, expired; **credit revenue** (paid credits
× their cost basis: top-ups and recharges) and **breakage** (expired paid credits × cost basis).

Per customer, the balances table says who burned what, who ran dry (`first_zero_at`; note a
monthly grant expiring just before the next one takes effect also touches zero), how often
auto-recharge fired and what it cost:"""),
    code('''\
result.balances.sort("consumed", descending=True).select(
    "customer_id", "granted", "consumed", "expired", "final_balance", "overdraft_debt",
    "recharges_issued", "recharge_spend",
).head(10)'''),
    md("""\
## One customer's ledger

Every entry says which grant it touched and the balance after it. Here the first entries of the
largest pro customer: its grants take effect at the start, then consumption draws from the
welcome promotion first (it expires soonest), then from the plan's monthly credits."""),
    code('''\
pro_customer = next(s.customer_id for s in subscriptions if s.plan_id == "pro")
ledger = result.ledger
mine = ledger.filter(pl.col("customer_id") == pro_customer)
display(mine.select("entry_id", "timestamp", "entry_type", "grant_id", "amount", "balance_after", "event_id").head(8))
mine.group_by("entry_type", "grant_source").agg(pl.len().alias("entries"), pl.col("amount").sum()).sort("entry_type", "grant_source")'''),
    md("""\
## The balance at any instant

`balance_at` answers what the product's credit-entitlement query answers: balance, granted and
consumed so far, and what is left on each grant — at any point of the replay."""),
    code('''\
for day in (datetime(2024, 1, 10, tzinfo=UTC), datetime(2024, 2, 15, tzinfo=UTC)):
    b = balance_at(ledger, pro_customer, "credits", day)
    print(f"{pro_customer} on {day:%Y-%m-%d}: balance {b.balance}, granted {b.granted}, consumed {b.consumed}")
    for g in b.grants:
        print(f"    {g.grant_id:<40} {g.grant_type:<12} {g.remaining:>12}")'''),
    md("""\
## Invariants

`simulate` checks the SPEC §5 invariants on every replay and stops if one breaks. Two of them,
checked here again independently with plain Polars:

1. per customer, each `balance_after` is the running sum of the amounts, and the last one is the
   final balance;
2. no grant's remaining amount goes below zero, except the overdraft grant's."""),
    code('''\
ordered = ledger.sort("entry_id")
running = ordered.with_columns(pl.col("amount").cum_sum().over("customer_id", "currency_id").alias("running"))
rule_1 = (running["running"] == running["balance_after"]).all()
final = ordered.group_by("customer_id").agg(pl.col("balance_after").last()).join(
    result.balances.select("customer_id", "final_balance"), on="customer_id")
rule_1 = rule_1 and (final["balance_after"] == final["final_balance"]).all()
remaining = ordered.filter(pl.col("grant_type") != "OVERDRAFT").with_columns(
    pl.col("amount").cum_sum().over("grant_id").alias("remaining"))
rule_2 = (remaining["remaining"] >= 0).all()
print(f"invariant 1 (running sums) holds: {rule_1}; invariant 2 (no negative grant) holds: {rule_2}")'''),
    md("""\
`check_invariants` checks all of them (including "each event's consumed amounts equal its cost"
and "grants are used in draw-down order") against the replay's inputs. Building those inputs
takes two helpers that are not in the top-level API yet."""),
    code('''\
from pricing_lab.ledger import ReplayInput, recurring_entitlements  # not yet in pricing_lab.__all__
from pricing_lab.simulation.simulate import cost  # the per-event costs simulate replayed

replay_input = ReplayInput(
    currencies=catalog.currencies, grants=customers.grants,
    recurring=recurring_entitlements(customers.subscriptions, catalog),
    auto_recharges=customers.auto_recharges, consumptions=cost(con, catalog, customers).consumptions,
)
problems = check_invariants(result.ledger, result.denied_events, replay_input)
print(f"check_invariants: {len(problems)} problems")'''),
    md("""\
## Charts

Balances of a few customers over time, one point per customer and day (the chart aggregates the
ledger first): the largest enterprise customer, the largest pro customer, the free customer
that auto-recharged most often (its saw-tooth) and the customer deepest in overdraft. On
1 February every monthly grant expires and the next one starts; the enterprise balance also
drops when its 30-day top-up expires."""),
    code('''\
balances = result.balances
recharger = balances.sort("recharges_issued", "customer_id", descending=[True, False])["customer_id"][0]
in_debt = balances.sort("overdraft_debt", "customer_id", descending=[True, False])["customer_id"][0]
chosen = [ranked[0], pro_customer, recharger, in_debt]
print("customers shown:", ", ".join(chosen))
charts.balance_over_time(ledger, chosen, grain="1d").properties(width=640, height=260)'''),
    code('''\
charts.burn_per_feature(ledger, grain="1d").properties(width=640, height=260)'''),
    md("""\
Chat dominates the burn; image generation is the next largest even though it has far fewer
events, because each image costs 20–40 credits.

## The same usage under a blocking policy

With `enforcement="block"` an event whose cost exceeds the balance is **denied** instead of going
into overdraft. Who would have been refused service, and how often?"""),
    code('''\
blocked = simulate(con, catalog, customers, enforcement="block", scenario="block")
denied = (blocked.denied_events.group_by("customer_id").agg(pl.len().alias("denied"))
          .sort("denied", "customer_id", descending=[True, False]))
print(f"{blocked.denied_events.height:,} events denied for {denied.height} customers "
      f"(overdraft mode: {result.denied_events.height} denied)")
denied.join(pl.DataFrame([(s.customer_id, s.plan_id) for s in subscriptions], schema=["customer_id", "plan"], orient="row"),
            on="customer_id").head(8)'''),
    md("""\
Free customers without auto-recharge are the ones refused: their 500 monthly credits plus the
welcome promotion run out.

## Save the outputs

`write` stores the ledger, denied and rejected events and balances as Parquet plus
`summary.json` — identical bytes for identical inputs."""),
    code('''\
[p.name for p in result.write(OUT / "replay_base")]'''),
    md("""\
**Next:** `03_what_if_formulas.ipynb` asks what changes if chat cost 1.2× per output token."""),
]

# -- 03: what-if formulas -------------------------------------------------------------------------

NOTEBOOK_03: list[Cell] = [
    md("""\
# 3 · What if chat cost 1.2× per output token?

A product manager asks: *what if chat cost 1.2× per output token?* We answer over the real usage
history, per customer and per feature:

1. write the new consumption **formula** and check it,
2. define **scenarios** (from YAML and in Python) and **compare** them with the base,
3. read per-customer and per-feature changes, the **run-out** shift, revenue and breakage,
4. **sweep** a multiplier and **goal-seek** the one that keeps 90 % of customers within their
   included credits,
5. write a self-contained **HTML report**."""),
    code('''\
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import altair as alt
import duckdb
import polars as pl
from IPython.display import display

from pricing_lab import (
    AutoRecharge, CustomerInputs, Formula, Grant, InputError, Scenario, Subscription, charts, compare,
    comparison_report, generate_events, goal_seek, ingest_events, load_catalog_file, load_sample_events,
    load_scenarios, open_store, sweep, write_report,
)

''' + PATHS),
    md("""\
## Catalog, usage and customers

The same set-up as notebook 2: the sample catalog, the real chat traces plus synthetic image and
summary events, and 50 customers on free / pro / enterprise.

""" + ATTRIBUTION),
    code(STORE_AND_EVENTS),
    code(CUSTOMERS),
    md("""\
## The formula

Chat's credit rate is a formula over the event's model and tokens. We parse it, see which event
dimensions it reads, and write the new one: every model's **output-token** coefficient × 1.2
(gpt-4o 10 → 12, gpt-4o-mini 0.6 → 0.72, others 0.9 → 1.08), input tokens unchanged."""),
    code('''\
chat_rate = next(r for r in catalog.plan("pro").credit_rates if r.feature == "llm_chat")
current = Formula.parse(chat_rate.formula)
proposed = Formula.parse(
    "if(model == 'gpt-4o', 2.5 * input_tokens + 12 * output_tokens,"
    " if(model == 'gpt-4o-mini', 0.15 * input_tokens + 0.72 * output_tokens,"
    " 0.9 * input_tokens + 1.08 * output_tokens)) / 1000"
)
print("reads:", ", ".join(proposed.dimensions))
request = {"model": "gpt-4o", "input_tokens": 1200, "output_tokens": 350}
print(f"a gpt-4o request with 1,200 input and 350 output tokens: {current.evaluate(request).normalize()} → "
      f"{proposed.evaluate(request).normalize()} credits")'''),
    md("""\
By hand: (2.5 × 1200 + 10 × 350) / 1000 = 6.5 credits today; (2.5 × 1200 + 12 × 350) / 1000 = 7.2
with the change (+0.7, i.e. +20 % of the output part only).

A typo is caught with its place marked — formulas are parsed, never evaluated as Python:"""),
    code('''\
try:
    Formula.parse("if(model == 'gpt-4o', 2.5 * input_tokens + 12 * output_tokens")
except InputError as error:
    print(error)'''),
    md("""\
Before replaying, check the formula against the events: how many chat events would it reject
(a null or negative cost)? The same formula runs in DuckDB, exactly, over every event:"""),
    code('''\
values = proposed.evaluate_duckdb(con, "SELECT * FROM events WHERE event_name = 'llm.request'")
checked = con.sql("SELECT count(*) AS events, count(*) FILTER (value IS NULL) AS null_cost, "
                  "count(*) FILTER (value < 0) AS negative_cost, sum(value) AS total_credits FROM values").pl()
checked'''),
    md("""\
## Scenarios

`examples/scenarios.yaml` holds the question as a scenario (the new formula in every plan;
enterprise keeps its 20 % discount). Scenarios can also be written in Python — two more to put
the change in context: a flat 1.2× on *all* chat tokens, and the output change combined with
30,000 pro credits instead of 25,000."""),
    code('''\
base, from_yaml = load_scenarios(EXAMPLES / "scenarios.yaml")
output_change = next(s for s in from_yaml if s.name == "chat_output_1.2x")
scenarios = [
    *from_yaml,
    Scenario(name="chat_all_tokens_1.2x", description="Every chat token 1.2x.",
             rate_multipliers={"llm_chat": Decimal("1.2")}),
    Scenario(name="chat_output_1.2x_free_1000", description="Output 1.2x, and free grants 1,000 credits.",
             rates=output_change.rates, plan_credits={"free": Decimal(1000)}),
]
pl.DataFrame({"scenario": [s.name for s in scenarios], "description": [s.description for s in scenarios]})'''),
    code('''\
comparison = compare(con, catalog, customers, scenarios, base=base)
comparison.totals.sort("scenario").select(
    "scenario", "consumed", "customers_run_out", "events_denied",
    pl.col("recharge_revenue").round(2), pl.col("breakage").round(2),
)'''),
    md("""\
Reading the totals: 1.2× on output tokens raises chat's credits by under 3 % — these workloads
have long prompts and short answers (about 5,300 input and 260 output tokens per conversation
request), so 1.2× on output is far from 1.2× on the bill; 1.2× on every token is +20 % for chat.
Who runs out, recharge revenue and breakage barely move. A free allowance of 1,000 credits, on
the other hand, halves the customers who run out — and most of the recharge revenue with them.

## Per feature and per customer

Only chat changes: the other features' consumption is identical in every scenario."""),
    code('''\
comparison.features.filter(pl.col("scenario").is_in([base, "chat_output_1.2x"])).pivot(
    on="scenario", index="feature_id", values="consumed")'''),
    code('''\
changes = comparison.customers.filter(pl.col("scenario") == "chat_output_1.2x")
changes.sort("consumed_change", descending=True).select(
    "customer_id", "consumed", "consumed_change", pl.col("consumed_change_pct").round(1),
    "runout_at", pl.col("runout_shift_days").round(1), pl.col("recharge_revenue_change").round(2),
).head(8)'''),
    md("""\
Customers who run out in both scenarios run out at the same time or earlier with the new formula
(a negative shift, in days); `runout_at` is the first consumption that emptied the balance."""),
    code('''\
shifted = changes.filter(pl.col("runout_shift_days").is_not_null())
print(f"{shifted.height} customers run out in both; median shift {shifted['runout_shift_days'].median():.2f} days, "
      f"earliest {shifted['runout_shift_days'].min():.2f} days")
newly = changes.filter(pl.col("runout_at").is_not_null()).join(
    comparison.customers.filter((pl.col("scenario") == base) & pl.col("runout_at").is_null()).select("customer_id"),
    on="customer_id")
print(f"{newly.height} customer(s) run out only with the new formula: {', '.join(newly['customer_id'])}")'''),
    md("""\
## Charts

Each chart gets data already aggregated (a histogram has at most 40 bins per scenario)."""),
    code('''\
others = comparison.customers.filter(pl.col("scenario") != base)
display(charts.revenue_and_breakage(comparison.totals).properties(width=420, height=240))
display(charts.change_distribution(others).properties(width=560, height=220))
charts.runout_shift(others).properties(width=560, height=220)'''),
    md("""\
## Sweep: how far can chat prices move?

Vary one coefficient over a grid: all chat rates × *m*. For each value we also measure the share
of customers who stay **within their included credits** — they never ran out on a consumption,
owe nothing, were never auto-recharged and never denied. (A replay's `first_zero_at` also counts
the instant a monthly grant expires just before the next one starts, so we use the ledger's
consumption entries instead.)"""),
    code('''\
def within_included(result) -> float:
    """Share of customers that never needed credits beyond their grants."""
    ran_out = result.ledger.filter((pl.col("entry_type") == "CONSUMED") & (pl.col("balance_after") <= 0))
    within = result.balances.filter(
        ~pl.col("customer_id").is_in(ran_out["customer_id"].unique().implode())
        & (pl.col("overdraft_debt") == 0) & (pl.col("recharges_issued") == 0) & (pl.col("events_denied") == 0)
    )
    return within.height / result.balances.height


def chat_multiplier(m: Decimal) -> Scenario:
    return Scenario(name=f"chat x{m}", rate_multipliers={"llm_chat": m})


grid = [Decimal(v) for v in ("0.4", "0.7", "1.0", "1.3", "1.6")]
swept = sweep(con, catalog, customers, chat_multiplier, grid, base="chat x1.0")
sweep_table = pl.DataFrame({
    "multiplier": [float(m) for m in grid],
    "within_included": [within_included(swept.result(chat_multiplier(m).name)) for m in grid],
}).join(
    swept.totals.select(pl.col("scenario"), pl.col("recharge_revenue").cast(pl.Float64), pl.col("consumed").cast(pl.Float64))
    .with_columns(pl.col("scenario").str.strip_prefix("chat x").cast(pl.Float64, strict=False).alias("multiplier"))
    .drop("scenario"),
    on="multiplier",
)
sweep_table'''),
    code('''\
share_line = alt.Chart(sweep_table).mark_line(point=True).encode(
    x=alt.X("multiplier:Q", title="chat rate multiplier"),
    y=alt.Y("within_included:Q", title="customers within included credits", axis=alt.Axis(format="%")),
)
revenue_line = alt.Chart(sweep_table).mark_line(point=True, color="#d62728").encode(
    x="multiplier:Q", y=alt.Y("recharge_revenue:Q", title="recharge revenue (USD)"),
)
alt.layer(share_line, revenue_line).resolve_scale(y="independent").properties(
    width=520, height=240, title="Chat price vs. customers within their credits and recharge revenue")'''),
    md("""\
Reading the sweep: even chat at 0.4× leaves about a third of the customers outside their
included credits, and above 0.7× the share hardly moves. The customers who run out are free
customers burning their 500 monthly credits on images and summaries, which chat prices do not
touch. Chat price is not the lever for staying within the plan; the free plan's allowance is.

## Goal seek: the free allowance at which 90 % stay within included credits

How many monthly credits would the free plan have to grant (with today's rates) so that 90 % of
all customers stay within their included credits? `goal_seek` bisects on that one coefficient —
the share *grows* with the allowance, hence `decreasing=False` — until the step is below the
tolerance, and returns the smallest allowance that meets the target."""),
    code('''\
def free_allowance(credits: Decimal) -> Scenario:
    return Scenario(name=f"free {credits} credits", plan_credits={"free": credits})


sought = goal_seek(con, catalog, customers, free_allowance, low=Decimal(500), high=Decimal(4500),
                   target=0.9, measure=within_included, decreasing=False, tolerance=Decimal(500))
print(f"goal seek: a free allowance of {sought.value} credits a month keeps {sought.measure:.0%} of "
      f"customers within their included credits ({len(sought.steps)} replays)")
pl.DataFrame([(int(v), s) for v, s in sought.steps], schema=["free_credits", "within_included"], orient="row")'''),
    md("""\
At 0.001 USD a credit, each 1,000 credits of allowance is 1 USD a month per free customer — to
weigh against the recharge revenue those customers bring today (the `free_1000` scenario above
shows the trade-off at 1,000 credits).

## The HTML report

One self-contained file (charts with their JavaScript inlined, works offline) to share the
comparison."""),
    code('''\
report = comparison_report(comparison, title="What if chat cost 1.2x per output token?",
                           footer="Usage data: Azure LLM inference trace 2023 (CC-BY 4.0) and the Mooncake "
                                  "conversation trace (Apache-2.0); see notebook 1.")
path = write_report(report, OUT / "what_if_report.html")
print(f"report written: {path} ({path.stat().st_size / 1e6:.1f} MB)")'''),
    md("""\
**Next:** `04_export_to_snowflake.ipynb` exports the catalog and these results to Snowflake."""),
]

# -- 04: export to Snowflake ----------------------------------------------------------------------

NOTEBOOK_04: list[Cell] = [
    md("""\
# 4 · Export to Snowflake

Scheduled jobs export the catalog, ledgers and results to Snowflake with **key-pair
authentication**; here we do the same from Python: the loading path is Parquet → `PUT` to a named
stage → `COPY INTO` a staging table → `MERGE` into the target, with the run recorded last.
Re-running changes nothing; ledgers move incrementally.

> **This notebook talks to a local stand-in.** To run offline it starts a local
> Snowflake-compatible server (fakesnow) on 127.0.0.1 with a gateway that checks key-pair logins
> like Snowflake does. **In production you skip that cell** and point the credentials at your
> account instead — `connections.toml` or the `SNOWFLAKE_*` environment variables (see
> `docs/snowflake-auth.md`) — and run the same export code, or `pricing-lab export snowflake` from
> a scheduler."""),
    code('''\
import os
import warnings
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl

from connectors.snowflake.auth import connect
from connectors.snowflake.export import ExportOptions, export_tables
from connectors.snowflake.export_sources import catalog_tables, ledger_table, replay_tables
from connectors.snowflake.keys import generate_key_pair
from connectors.snowflake.local import SESSION_PARAMETERS, start_local_server
from pricing_lab import CustomerInputs, Subscription, load_catalog_file, load_sample_events, open_store, simulate

# A performance note the local stand-in (fakesnow) prints on some queries; Snowflake has no such note.
warnings.filterwarnings("ignore", message="Arrow output on a DB-API result", category=UserWarning)

''' + PATHS),
    md("""\
## Something to export

The sample catalog in a store, and a replay of the real traces with every customer on pro.

""" + ATTRIBUTION),
    code('''\
con = duckdb.connect()
store = open_store(con)
store.apply(load_catalog_file(EXAMPLES / "ai_product.yaml"), at=datetime(2023, 12, 1, tzinfo=UTC))
catalog = store.current()
load_sample_events(con)
customer_ids = con.sql("SELECT DISTINCT customer_id FROM events ORDER BY 1").pl()["customer_id"]
customers = CustomerInputs(subscriptions=tuple(
    Subscription(subscription_id=f"{c}:pro", customer_id=c, plan_id="pro", start=datetime(2024, 1, 1, tzinfo=UTC))
    for c in customer_ids))
result = simulate(con, catalog, customers)
print(f"{result.ledger.height:,} ledger entries to export")'''),
    md("""\
## A key pair, and the local server (skip in production)

Snowflake key-pair authentication: generate an RSA key pair (the private key encrypted with a
passphrase, file mode 0600), register the public key on the user (`ALTER USER … SET
RSA_PUBLIC_KEY='…'` — `pricing-lab keys generate` prints that statement), connect with the
private key. Here the local server plays Snowflake's part. In production the key is generated
once, its passphrase kept in a secret store, and the credentials come from `connections.toml`:

```python
from connectors.snowflake.config import resolve_credentials
credentials = resolve_credentials()  # connections.toml / SNOWFLAKE_* variables
```"""),
    code('''\
PASSPHRASE = "notebook-only passphrase"  # in production: an environment variable or a prompt
key_pair = generate_key_pair(PASSPHRASE)
key_file = OUT / "rsa_key.p8"
key_file.write_bytes(key_pair.encrypted_private_pem)
key_file.chmod(0o600)

server = start_local_server()  # fakesnow + key-pair gateway on 127.0.0.1 (local stand-in only)
fingerprint = server.register_public_key("PRICING_LAB_LOADER", key_pair.public_pem)
credentials = server.credentials(user="pricing_lab_loader", private_key_file=key_file, passphrase=PASSPHRASE)
print(server)
print("registered key", fingerprint)
credentials  # the repr never shows the key or the passphrase'''),
    md("""\
The export takes a function that opens a connection (it opens a fresh one after a transient
error). A wrong key is refused with Snowflake's error and what to check:"""),
    code('''\
def snowflake_connection():
    return connect(credentials, session_parameters=SESSION_PARAMETERS)


wrong_user = server.credentials(user="someone_else", private_key_file=key_file, passphrase=PASSPHRASE)
try:
    connect(wrong_user, session_parameters=SESSION_PARAMETERS)
except Exception as error:
    print(type(error).__name__ + ":", str(error).splitlines()[0])'''),
    md("""\
## Dry run

The tables: the catalog with every version (features, groups and members, plans, add-ons,
entitlements, currencies, rates), the replay's ledger and its summary. A dry run prints the
statements and row counts without writing anything."""),
    code('''\
REPLAY_ID = "notebook-2024-q1"
tables = catalog_tables(store) + replay_tables(result, replay_id=REPLAY_ID)
dry = export_tables(snowflake_connection, tables, ExportOptions(dry_run=True))
print(dry)
print(f"\\n{len(dry.statements)} statements, e.g.:")
for statement in dry.statements[:3]:
    print("  " + statement[:150])'''),
    md("""\
## Export

First the ledger as a nightly job found it partway — its first 20,000 entries — then, the next
night, the whole ledger."""),
    code('''\
partial = ledger_table(result.ledger.filter(pl.col("entry_id") <= 20_000), replay_id=REPLAY_ID)
first_tables = [t if t.name != "ledger_entries" else partial for t in tables]
first = export_tables(snowflake_connection, first_tables, ExportOptions(progress=print))
print(first)'''),
    md("""\
The rows are in Snowflake with exact amounts (`NUMBER(38, 12)`, never floats). Reading them back
with an ordinary cursor:"""),
    code('''\
def query(sql: str) -> pl.DataFrame:
    with snowflake_connection() as connection:
        cursor = connection.cursor()
        cursor.execute(sql)
        return pl.DataFrame([tuple(r) for r in cursor.fetchall()], schema=[d[0] for d in cursor.description], orient="row")


query('SELECT "ENTRY_TYPE", COUNT(*) AS "ENTRIES", MIN("TIMESTAMP") AS "FIRST", MAX("TIMESTAMP") AS "LAST" '
      'FROM "LEDGER_ENTRIES" GROUP BY 1 ORDER BY 1')'''),
    md("""\
## Incremental and idempotent

Now the whole ledger. Only the entries above the last exported `entry_id` of this replay and
scenario (the table's watermark) move; the catalog tables are unchanged and are skipped."""),
    code('''\
second = export_tables(snowflake_connection, tables)
print(second)'''),
    md("""\
Running the same export again finds nothing new and changes nothing — safe for a scheduler to
retry. Every successful run is recorded in `EXPORT_RUNS`, last."""),
    code('''\
third = export_tables(snowflake_connection, tables)
print(third)
query('SELECT "RUN_SEQ", "STATUS", "ROWS_EXPORTED", "ROWS_INSERTED", "ROWS_UPDATED", "TABLES" '
      'FROM "EXPORT_RUNS" ORDER BY "RUN_SEQ"')'''),
    code('''\
exported = query('SELECT COUNT(*) AS "ROWS", COUNT(DISTINCT "ENTRY_ID") AS "ENTRY_IDS" FROM "LEDGER_ENTRIES"')
print(f"ledger rows in Snowflake: {exported['ROWS'][0]:,} (replay: {result.ledger.height:,}); "
      f"distinct entry ids: {exported['ENTRY_IDS'][0]:,}")'''),
    md("""\
## Done

Stop the local server (production has nothing to stop). For a schedule, the same export runs as
`pricing-lab export snowflake --connection NAME --json`, with the private key in an environment
variable; the guide is in `docs/`."""),
    code('''\
server.stop()'''),
]

NOTEBOOKS: dict[str, list[Cell]] = {
    "01_catalog_and_usage.ipynb": NOTEBOOK_01,
    "02_replay_credit_burn.ipynb": NOTEBOOK_02,
    "03_what_if_formulas.ipynb": NOTEBOOK_03,
    "04_export_to_snowflake.ipynb": NOTEBOOK_04,
}


def build(cells: list[Cell]) -> nbformat.NotebookNode:
    """A notebook without outputs, with the Python 3 kernel."""
    notebook = new_notebook(
        cells=[new_markdown_cell(text) if kind == "markdown" else new_code_cell(text) for kind, text in cells],
        metadata={
            "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
    )
    for index, cell in enumerate(notebook.cells):
        cell["id"] = f"cell-{index:02d}"
    return notebook


def main() -> None:
    for name, cells in NOTEBOOKS.items():
        notebook = build(cells)
        nbformat.validate(notebook)
        (HERE / name).write_text(nbformat.writes(notebook) + "\n", encoding="utf-8")
        print(f"wrote notebooks/{name} ({len(cells)} cells)")


if __name__ == "__main__":
    main()
