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
# # 4 · Export to Snowflake
#
# Scheduled jobs export the catalog, ledgers and results to Snowflake with **key-pair
# authentication**; here we do the same from Python: the loading path is Parquet → `PUT` to a named
# stage → `COPY INTO` a staging table → `MERGE` into the target, with the run recorded last.
# Re-running changes nothing; ledgers move incrementally.
#
# > **This notebook talks to a local stand-in.** To run offline it starts a local
# > Snowflake-compatible server (fakesnow) on 127.0.0.1 with a gateway that checks key-pair logins
# > like Snowflake does. **In production you skip that cell** and point the credentials at your
# > account instead — `connections.toml` or the `SNOWFLAKE_*` environment variables (see
# > `docs/snowflake-auth.md`) — and run the same export code, or `pricing-lab export snowflake` from
# > a scheduler.

# %%
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
from pricing_lab import (
    CustomerInputs,
    Subscription,
    load_catalog_file,
    load_sample_events,
    open_store,
    simulate,
)

# A performance note the local stand-in (fakesnow) prints on some queries; Snowflake has none.
warnings.filterwarnings("ignore", message="Arrow output on a DB-API result", category=UserWarning)

# Example files: ../examples when the notebook is opened from notebooks/ (the tests point
# PRICING_LAB_EXAMPLES at the repository's examples folder). Outputs go to ./notebook_out.
EXAMPLES = Path(os.environ.get("PRICING_LAB_EXAMPLES", "../examples"))
OUT = Path("notebook_out")
OUT.mkdir(exist_ok=True)
pl.Config.set_tbl_rows(12)
pl.Config.set_tbl_cols(12)
_ = pl.Config.set_tbl_width_chars(150)

# %% [markdown]
# ## Something to export
#
# The sample catalog in a store, and a replay of the real traces with every customer on pro.
#
# > **Usage data.** Azure LLM inference trace 2023 (Patel et al., *Splitwise: Efficient generative
# > LLM inference using phase splitting*, ISCA 2024; CC-BY 4.0, Microsoft Azure) and the Mooncake
# > conversation trace (Qin et al., *Mooncake: Trading More Storage for Less Computation*, FAST
# > 2025; Apache-2.0). The traces have no tenant: each request gets a customer (`cust-00001` is the
# > largest) and a model by a stable hash, and the ~1 hour traces are stretched over 60 days from
# > 2024-01-01, keeping their order.

# %%
con = duckdb.connect()
store = open_store(con)
store.apply(load_catalog_file(EXAMPLES / "ai_product.yaml"), at=datetime(2023, 12, 1, tzinfo=UTC))
catalog = store.current()
load_sample_events(con)
customer_ids = con.sql("SELECT DISTINCT customer_id FROM events ORDER BY 1").pl()["customer_id"]
customers = CustomerInputs(
    subscriptions=tuple(
        Subscription(
            subscription_id=f"{c}:pro",
            customer_id=c,
            plan_id="pro",
            start=datetime(2024, 1, 1, tzinfo=UTC),
        )
        for c in customer_ids
    )
)
result = simulate(con, catalog, customers)
print(f"{result.ledger.height:,} ledger entries to export")

# %% [markdown]
# ## A key pair, and the local server (skip in production)
#
# Snowflake key-pair authentication: generate an RSA key pair (the private key encrypted with a
# passphrase, file mode 0600), register the public key on the user (`ALTER USER … SET
# RSA_PUBLIC_KEY='…'` — `pricing-lab keys generate` prints that statement), connect with the
# private key. Here the local server plays Snowflake's part. In production the key is generated
# once, its passphrase kept in a secret store, and the credentials come from `connections.toml`:
#
# ```python
# from connectors.snowflake.config import resolve_credentials
# credentials = resolve_credentials()  # connections.toml / SNOWFLAKE_* variables
# ```

# %%
PASSPHRASE = "notebook-only passphrase"  # in production: an environment variable or a prompt
key_pair = generate_key_pair(PASSPHRASE)
key_file = OUT / "rsa_key.p8"
key_file.write_bytes(key_pair.encrypted_private_pem)
key_file.chmod(0o600)

server = start_local_server()  # fakesnow + key-pair gateway on 127.0.0.1 (local stand-in only)
fingerprint = server.register_public_key("PRICING_LAB_LOADER", key_pair.public_pem)
credentials = server.credentials(
    user="pricing_lab_loader", private_key_file=key_file, passphrase=PASSPHRASE
)
print(server)
print("registered key", fingerprint)
credentials  # the repr never shows the key or the passphrase


# %% [markdown]
# The export takes a function that opens a connection (it opens a fresh one after a transient
# error). A wrong key is refused with Snowflake's error and what to check:


# %%
def snowflake_connection():
    return connect(credentials, session_parameters=SESSION_PARAMETERS)


wrong_user = server.credentials(
    user="someone_else", private_key_file=key_file, passphrase=PASSPHRASE
)
try:
    connect(wrong_user, session_parameters=SESSION_PARAMETERS)
except Exception as error:
    print(type(error).__name__ + ":", str(error).splitlines()[0])

# %% [markdown]
# ## Dry run
#
# The tables: the catalog with every version (features, groups and members, plans, add-ons,
# entitlements, currencies, rates), the replay's ledger and its summary. A dry run prints the
# statements and row counts without writing anything.

# %%
REPLAY_ID = "notebook-2024-q1"
tables = catalog_tables(store) + replay_tables(result, replay_id=REPLAY_ID)
dry = export_tables(snowflake_connection, tables, ExportOptions(dry_run=True))
print(dry)
print(f"\n{len(dry.statements)} statements, e.g.:")
for statement in dry.statements[:3]:
    print("  " + statement[:150])

# %% [markdown]
# ## Export
#
# First the ledger as a nightly job found it partway — its first 20,000 entries — then, the next
# night, the whole ledger.

# %%
partial = ledger_table(result.ledger.filter(pl.col("entry_id") <= 20_000), replay_id=REPLAY_ID)
first_tables = [t if t.name != "ledger_entries" else partial for t in tables]
first = export_tables(snowflake_connection, first_tables, ExportOptions(progress=print))
print(first)


# %% [markdown]
# The rows are in Snowflake with exact amounts (`NUMBER(38, 12)`, never floats). Reading them back
# with an ordinary cursor:


# %%
def query(sql: str) -> pl.DataFrame:
    with snowflake_connection() as connection:
        cursor = connection.cursor()
        cursor.execute(sql)
        return pl.DataFrame(
            [tuple(r) for r in cursor.fetchall()],
            schema=[d[0] for d in cursor.description],
            orient="row",
        )


query(
    'SELECT "ENTRY_TYPE", COUNT(*) AS "ENTRIES", MIN("TIMESTAMP") AS "FIRST", '
    'MAX("TIMESTAMP") AS "LAST" FROM "LEDGER_ENTRIES" GROUP BY 1 ORDER BY 1'
)

# %% [markdown]
# ## Incremental and idempotent
#
# Now the whole ledger. Only the entries above the last exported `entry_id` of this replay and
# scenario (the table's watermark) move; the catalog tables are unchanged and are skipped.

# %%
second = export_tables(snowflake_connection, tables)
print(second)

# %% [markdown]
# Running the same export again finds nothing new and changes nothing — safe for a scheduler to
# retry. Every successful run is recorded in `EXPORT_RUNS`, last.

# %%
third = export_tables(snowflake_connection, tables)
print(third)
query(
    'SELECT "RUN_SEQ", "STATUS", "ROWS_EXPORTED", "ROWS_INSERTED", "ROWS_UPDATED", "TABLES" '
    'FROM "EXPORT_RUNS" ORDER BY "RUN_SEQ"'
)

# %%
exported = query(
    'SELECT COUNT(*) AS "ROWS", COUNT(DISTINCT "ENTRY_ID") AS "ENTRY_IDS" FROM "LEDGER_ENTRIES"'
)
print(
    f"ledger rows in Snowflake: {exported['ROWS'][0]:,} (replay: {result.ledger.height:,}); "
    f"distinct entry ids: {exported['ENTRY_IDS'][0]:,}"
)

# %% [markdown]
# ## Done
#
# Stop the local server (production has nothing to stop). For a schedule, the same export runs as
# `pricing-lab export snowflake --connection NAME --json`, with the private key in an environment
# variable; the guide is in `docs/`.

# %%
server.stop()
