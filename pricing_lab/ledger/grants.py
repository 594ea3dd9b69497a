"""The grants a replay used (SPEC §6 `grants`): input grants, recurring periods, rollover grants,
auto-recharges.

Rows are the grants that take effect inside the horizon (each writes a GRANTED entry), sorted by
customer, `effective_at` and grant id. The OVERDRAFT grant is not a grant given (it is the debt
of what no grant covered, SPEC §5) and is left out. Auto-recharge grants are read off the ledger
(their GRANTED entries) and the customers' settings, so both engines share this table; so are the
rollover grants (the ones that took effect, at the amount their GRANTED entry says).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from pricing_lab.ledger import frames
from pricing_lab.ledger.calendar import add_months_array
from pricing_lab.ledger.grant_table import grant_table_schema
from pricing_lab.ledger.inputs import PreparedReplay
from pricing_lab.ledger.order import recharge_id_prefixes
from pricing_lab.timeutil import NEVER_US

# Months an auto-recharge grant lives (None: it never expires), by `AutoRecharge.grant_expiry`.
RECHARGE_MONTHS = {"none": None, "1_month": 1, "1_year": 12}


def grants_table(ledger: pl.DataFrame, prepared: PreparedReplay, money_scale: int) -> pl.DataFrame:
    """The grants of a replay (`frames.grants_schema`, cost bases at `money_scale`)."""
    table = prepared.grant_table
    effective = pl.col("effective_at")
    takes_part = (
        (effective >= prepared.start)
        & (effective < prepared.until)
        & (pl.col("voided_at").is_null() | (pl.col("voided_at") > effective))
    )
    schema = frames.grants_schema(prepared.scale, money_scale)
    basis = schema["cost_basis"]
    planned_rollover = pl.col("grant_id").is_in(prepared.rollovers["grant_id"].implode())
    given = pl.concat(
        [
            table.filter(takes_part & ~planned_rollover).with_columns(
                pl.col("cost_basis").cast(basis)
            ),
            rollover_grants(ledger, prepared).with_columns(pl.col("cost_basis").cast(basis)),
            recharge_grants(ledger, prepared).with_columns(pl.col("cost_basis").cast(basis)),
        ]
    )
    return given.sort("customer_id", "effective_at", "grant_id").with_columns(
        pl.lit(prepared.scenario, dtype=pl.String).alias("scenario")
    )


def rollover_grants(ledger: pl.DataFrame, prepared: PreparedReplay) -> pl.DataFrame:
    """The rollover grants that took effect (a GRANTED entry of a planned rollover grant), as a
    grant table at the amount they received."""
    planned = prepared.grant_table.join(
        prepared.rollovers.select("grant_id"), on="grant_id", how="semi"
    )
    if planned.is_empty():
        return planned
    received = ledger.filter(
        (pl.col("entry_type") == "GRANTED") & (pl.col("grant_source") == "rollover")
    ).select("grant_id", pl.col("amount").cast(planned.schema["amount"]))
    return planned.drop("amount").join(received, on="grant_id").select(planned.columns)


def recharge_grants(ledger: pl.DataFrame, prepared: PreparedReplay) -> pl.DataFrame:
    """The auto-recharge grants of a replay's ledger, as a grant table
    (`grant_table.grant_table_schema`, cost bases at the most places of the unit prices): each
    GRANTED entry of an id with its customer's auto-recharge prefix (input ids never have it) is
    a PAID grant, priority 0, effective at the entry, expiring as the customer's setting says
    (`calendar`), worth the currency's unit price per credit."""
    prices = {c.id: c.unit_price for c in prepared.currencies}
    price_places = prepared.money_places
    schema = grant_table_schema(prepared.scale, price_places)
    settings = pl.DataFrame(
        {
            "customer_id": [s.customer_id for s in prepared.auto_recharges],
            "currency_id": [s.currency_id for s in prepared.auto_recharges],
            "months": [RECHARGE_MONTHS.get(s.grant_expiry) for s in prepared.auto_recharges],
        },
        schema={"customer_id": pl.String, "currency_id": pl.String, "months": pl.Int64},
    )
    granted = ledger.filter(pl.col("entry_type") == "GRANTED").filter(
        pl.col("grant_id").str.starts_with(recharge_id_prefixes("customer_id", "currency_id"))
    )
    if granted.is_empty():
        return pl.DataFrame(schema=schema)
    made = granted.select("grant_id", "customer_id", "currency_id", "amount", "timestamp").join(
        settings, on=["customer_id", "currency_id"], how="left", maintain_order="left"
    )
    at = made["timestamp"].dt.epoch("us").to_numpy()
    months = made["months"].fill_null(0).to_numpy()
    expires = np.where(made["months"].is_null().to_numpy(), NEVER_US, add_months_array(at, months))
    return made.select(
        "grant_id",
        "customer_id",
        "currency_id",
        pl.col("amount").cast(schema["amount"]),
        pl.lit("PAID").alias("type"),
        pl.lit(0, dtype=pl.Int64).alias("priority"),
        pl.col("timestamp").alias("effective_at"),
        pl.Series("expires_at", expires)
        .cast(schema["expires_at"])
        .set(pl.Series(expires == NEVER_US), None),
        pl.col("currency_id")
        .replace_strict(prices, return_dtype=schema["cost_basis"])
        .alias("cost_basis"),
        pl.lit(None, dtype=schema["voided_at"]).alias("voided_at"),
        pl.lit("auto_recharge").alias("source"),
    )
