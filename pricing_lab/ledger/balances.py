"""Balances from a ledger: queries at any instant, the per-customer table and the summary (SPEC §6).

Everything here reads the ledger (and the replay's inputs for cost bases), so both engines share
it. Credits are Decimal columns at the ledger's scale; money columns are exact Decimals.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import polars as pl

from pricing_lab.ledger.inputs import PreparedReplay
from pricing_lab.money import decimal_places
from pricing_lab.timeutil import as_utc

if TYPE_CHECKING:
    from pricing_lab.ledger.api import ReplayResult

ZERO = Decimal(0)
# The credit figures of `balances_table` that add up per currency in `summary_table`.
CREDIT_FIGURES = (
    "granted",
    "consumed",
    "expired",
    "voided",
    "rolled_over",
    "final_balance",
    "overdraft_debt",
)
SUMMARY_ROWS = 2_000_000  # ledger rows `feature_summary` reads at a time


@dataclass(frozen=True, slots=True, kw_only=True)
class GrantBalance:
    """One grant as seen at an instant: what is left of it."""

    grant_id: str
    grant_type: str
    grant_source: str
    effective_at: datetime | None  # None: took effect before the ledger's first entry
    remaining: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class CreditBalance:
    """A customer's credits in one currency at one instant (like `getCreditEntitlement`)."""

    customer_id: str
    currency_id: str
    at: datetime
    balance: Decimal
    granted: Decimal
    consumed: Decimal
    grants: tuple[GrantBalance, ...]  # grants with a non-zero remaining amount, by grant id


def balance_at(
    ledger: pl.DataFrame, customer_id: str, currency_id: str, at: datetime
) -> CreditBalance:
    """The balance after every ledger entry at or before `at` for one customer and currency.

    `granted` and `consumed` are totals since the replay's start (consumed is positive); `grants`
    lists every grant with credits left (the OVERDRAFT grant too when it is in debt).
    """
    at = as_utc(at)
    rows = ledger.filter(
        (pl.col("customer_id") == customer_id)
        & (pl.col("currency_id") == currency_id)
        & (pl.col("timestamp") <= at)
    )
    amounts = rows["amount"].to_list()
    types = rows["entry_type"].to_list()
    # Totals at the ledger's scale even when no entry counts (0.00, not 0), like its amounts.
    dtype = ledger.schema["amount"]
    zero = ZERO.scaleb(-(dtype.scale or 0)) if isinstance(dtype, pl.Decimal) else ZERO
    per_grant = (
        rows.group_by("grant_id", "grant_type", "grant_source")
        .agg(
            pl.col("amount").sum().alias("remaining"),
            pl.col("timestamp").filter(pl.col("entry_type") == "GRANTED").first().alias("at"),
        )
        .filter(pl.col("remaining") != 0)
        .sort("grant_id")
    )
    return CreditBalance(
        customer_id=customer_id,
        currency_id=currency_id,
        at=at,
        balance=sum(amounts, zero),
        granted=sum((a for a, t in zip(amounts, types, strict=True) if t == "GRANTED"), zero),
        consumed=-sum((a for a, t in zip(amounts, types, strict=True) if t == "CONSUMED"), zero),
        grants=tuple(
            GrantBalance(grant_id=g, grant_type=t, grant_source=s, effective_at=e, remaining=r)
            for g, t, s, r, e in per_grant.iter_rows()
        ),
    )


def _by_type(entry_type: str) -> pl.Expr:
    return pl.col("amount").filter(pl.col("entry_type") == entry_type).sum()


def balances_table(
    ledger: pl.DataFrame, denied_events: pl.DataFrame, prepared: PreparedReplay
) -> pl.DataFrame:
    """Per customer and currency (SPEC §6): granted, consumed, expired, voided, rolled over (all
    positive; granted counts the rollover grants too, so granted − consumed − expired − voided −
    rolled over is the final balance), final balance, overdraft debt, first time the balance was
    at or below 0 after an entry, recharges issued, recharge spend and breakage (money), events
    denied."""
    scale = prepared.scale
    credits = pl.Decimal(38, scale)
    unit_prices = {c.id: c.unit_price for c in prepared.currencies}
    price_scale = max((decimal_places(p) for p in unit_prices.values()), default=0)
    recharge = (pl.col("entry_type") == "GRANTED") & (pl.col("grant_source") == "auto_recharge")
    if not ledger["entry_id"].is_sorted():
        ledger = ledger.sort("entry_id")  # groups keep the rows' order: first / last below
    per_customer = ledger.group_by("customer_id", "currency_id").agg(
        _by_type("GRANTED").alias("granted"),
        (-_by_type("CONSUMED")).alias("consumed"),
        (-_by_type("EXPIRED")).alias("expired"),
        (-_by_type("VOIDED")).alias("voided"),
        (-_by_type("ROLLED_OVER")).alias("rolled_over"),
        pl.col("balance_after").last().alias("final_balance"),
        (-pl.col("amount").filter(pl.col("grant_type") == "OVERDRAFT").sum()).alias(
            "overdraft_debt"
        ),
        pl.col("timestamp").filter(pl.col("balance_after") <= 0).first().alias("first_zero_at"),
        recharge.sum().cast(pl.Int64).alias("recharges_issued"),
        pl.col("amount").filter(recharge).sum().alias("recharged"),
    )
    denied = denied_events.group_by("customer_id", "currency_id").agg(
        pl.len().cast(pl.Int64).alias("events_denied")
    )
    table = per_customer.join(
        denied, on=["customer_id", "currency_id"], how="full", coalesce=True
    ).join(breakage_table(ledger, prepared), on=["customer_id", "currency_id"], how="left")
    price = pl.col("currency_id").replace_strict(
        unit_prices, return_dtype=pl.Decimal(38, price_scale)
    )
    # Polars multiplies decimals at the larger of the two scales: at scale + price_scale the
    # product of a credit amount and a unit price is exact.
    spend_type = pl.Decimal(38, scale + price_scale)
    spend = (
        (pl.col("recharged").fill_null(0).cast(spend_type) * price)
        .cast(spend_type)
        .fill_null(ZERO)
        .alias("recharge_spend")
    )
    return (
        table.with_columns(spend)
        .select(
            "customer_id",
            "currency_id",
            *(pl.col(name).fill_null(0).cast(credits) for name in CREDIT_FIGURES),
            pl.col("first_zero_at"),
            pl.col("recharges_issued").fill_null(0),
            "recharge_spend",
            pl.col("breakage").fill_null(ZERO).cast(pl.Decimal(38, money_scale(prepared))),
            pl.col("events_denied").fill_null(0),
        )
        .sort("customer_id", "currency_id")
    )


def money_scale(prepared: PreparedReplay) -> int:
    """Decimal places of money columns: credits × cost basis or unit price, exactly."""
    return prepared.scale + prepared.money_places


# What `_valued` and the money totals read of a ledger (selected before filtering, so the other
# columns of tens of millions of entries are not copied).
_VALUED_COLUMNS = (
    "customer_id", "currency_id", "entry_type", "grant_id", "grant_type", "grant_source", "amount"
)  # fmt: skip


def _valued(entries: pl.DataFrame, prepared: PreparedReplay) -> pl.DataFrame:
    """`entries` with `money` = amount × the grant's cost basis (the grants the replay makes for
    auto-recharges: the currency's unit price), exact at `money_scale`."""
    scale = money_scale(prepared)
    basis_type = pl.Decimal(38, scale)
    # Most grants (recurring, promotional) have cost basis 0: only the others are looked up.
    bases = prepared.grant_table.filter(
        (pl.col("cost_basis") != 0) | (pl.col("source") == "auto_recharge")
    ).select("grant_id", pl.col("cost_basis").cast(basis_type).alias("__basis"))
    unit_prices = {c.id: c.unit_price for c in prepared.currencies}
    made_by_replay = pl.col("currency_id").replace_strict(
        unit_prices, default=ZERO, return_dtype=basis_type
    )
    basis = (
        pl.when(pl.col("__basis").is_not_null())
        .then(pl.col("__basis"))
        .when(pl.col("grant_source") == "auto_recharge")
        .then(made_by_replay)
        .otherwise(pl.lit(ZERO, dtype=basis_type))
    )
    return (
        entries.join(bases, on="grant_id", how="left", maintain_order="left")
        .with_columns((pl.col("amount") * basis).cast(basis_type).alias("money"))
        .drop("__basis")
    )


def breakage_table(ledger: pl.DataFrame, prepared: PreparedReplay) -> pl.DataFrame:
    """Per customer and currency: breakage = expired credits × their grant's cost basis (money)."""
    expired = _valued(
        ledger.select(*_VALUED_COLUMNS).filter(pl.col("entry_type") == "EXPIRED"), prepared
    )
    return expired.group_by("customer_id", "currency_id").agg(
        (-pl.col("money").sum()).cast(pl.Decimal(38, money_scale(prepared))).alias("breakage")
    )


def summary_table(
    ledger: pl.DataFrame, prepared: PreparedReplay, balances: pl.DataFrame
) -> pl.DataFrame:
    """Totals per currency (SPEC §6): credits granted/consumed/expired/voided/rolled over, final
    balance,
    overdraft debt, customers, breakage (expired credits × their grant's cost basis) and credit
    revenue (credits of PAID grants × cost basis), both in money.

    `balances` is this ledger's `balances_table`: the per-customer figures add up to the
    currency's (the final balances too: each is the sum of its entries, invariant 1). Only the
    credit revenue is read from the ledger, from its PAID grants.
    """
    money = pl.Decimal(38, money_scale(prepared))
    paid = (pl.col("entry_type") == "GRANTED") & (pl.col("grant_type") == "PAID")
    revenue = (
        _valued(ledger.select(*_VALUED_COLUMNS).filter(paid), prepared)
        .group_by("currency_id")
        .agg(pl.col("money").sum().alias("credit_revenue"))
    )
    totals = (
        with_entries(balances, ledger)
        .group_by("currency_id")
        .agg(
            pl.col(*CREDIT_FIGURES).sum(),
            pl.len().cast(pl.Int64).alias("customers"),
            pl.col("breakage").sum(),
        )
        .sort("currency_id")
    )
    return totals.join(revenue, on="currency_id", how="left").with_columns(
        pl.col("breakage").fill_null(ZERO).cast(money),
        pl.col("credit_revenue").fill_null(ZERO).cast(money),
    )


def with_entries(balances: pl.DataFrame, ledger: pl.DataFrame) -> pl.DataFrame:
    """The rows of `balances` (this ledger's `balances_table`) of customer and currency pairs
    with ledger entries. A row may stand for denied events alone; the ledger is asked only
    about rows with denied events and no credits moved (any other row has entries)."""
    keys = ["customer_id", "currency_id"]
    unsure = balances.filter(
        (pl.col("events_denied") > 0)
        & (pl.col("recharges_issued") == 0)
        & pl.all_horizontal(pl.col(*CREDIT_FIGURES) == 0)
    ).select(keys)
    if unsure.height == 0:
        return balances
    without_entries = unsure.join(ledger.select(keys), on=keys, how="anti")
    return balances.join(without_entries, on=keys, how="anti", maintain_order="left")


def feature_summary(ledger: pl.DataFrame) -> pl.DataFrame:
    """Credits consumed per currency and feature, with the number of events that consumed them.

    In ledger order (entry_id ascending, as replays return it) an event's CONSUMED entries for one
    feature are consecutive (SPEC §5: feature by feature, one entry per grant), so events are
    counted as runs of (event_id, feature_id) instead of hashing every event id; any other order
    counts distinct event ids. In ledger order the entries are read a slice of SUMMARY_ROWS at a
    time (a run may cross slices), which bounds the memory this takes at any size.
    """
    columns = ["entry_id", "entry_type", "currency_id", "feature_id", "event_id", "customer_id"]
    keys = ["currency_id", "feature_id"]
    is_consumed = pl.col("entry_type") == "CONSUMED"
    if not ledger["entry_id"].is_sorted():
        return (
            ledger.select(*columns, "amount")
            .filter(is_consumed)
            .group_by(keys)
            .agg(
                (-pl.col("amount").sum()).alias("consumed"),
                pl.col("event_id").n_unique().cast(pl.Int64).alias("events"),
                pl.col("customer_id").n_unique().cast(pl.Int64).alias("customers"),
            )
            .sort(keys)
        )
    parts = []
    last: tuple[object, object] = (None, None)  # event and feature of the last CONSUMED entry
    for lo in range(0, max(ledger.height, 1), SUMMARY_ROWS):  # one (empty) slice at least
        consumed = ledger.slice(lo, SUMMARY_ROWS).select(*columns, "amount").filter(is_consumed)
        first_of_event = [
            pl.col(name).ne_missing(pl.col(name).shift(1, fill_value=pl.lit(value, pl.String)))
            for name, value in zip(("event_id", "feature_id"), last, strict=True)
        ]
        parts.append(
            consumed.group_by(keys).agg(
                (-pl.col("amount").sum()).alias("consumed"),
                (first_of_event[0] | first_of_event[1]).sum().cast(pl.Int64).alias("events"),
                pl.col("customer_id").unique().alias("customer_ids"),
            )
        )
        if consumed.height:
            last = consumed.select("event_id", "feature_id").row(-1)
    return (
        pl.concat(parts)
        .group_by(keys)
        .agg(
            pl.col("consumed").sum(),
            pl.col("events").sum(),
            pl.col("customer_ids").explode().n_unique().cast(pl.Int64).alias("customers"),
        )
        .sort(keys)
    )


def feature_totals(consumptions: pl.DataFrame, replayed: ReplayResult) -> pl.DataFrame:
    """`feature_summary(replayed.ledger)`, from the costed `consumptions` the replay ran on (in
    the engines' order: a customer's rows side by side) instead of its ledger: the partitioned
    replay's form, which spares a pass over each range's ledger text. One test holds the two
    equal (`tests/simulation/test_partitioned.py`).

    SPEC §5 invariant 3, checked at the end of every replay, makes them equal: an event and
    feature replayed (inside the horizon, cost above 0) and not denied has CONSUMED entries
    adding up to its cost, and any other has none. So the consumed credits are those costs, the
    events those rows (one per event and feature), and the customers counted by their runs of
    rows."""
    served = consumptions.lazy().filter(
        pl.col("feature_id").is_not_null()
        & (pl.col("cost") > 0)
        & pl.col("timestamp").is_between(replayed.start, replayed.until, closed="left")
    )
    if replayed.denied_events.height:
        denied = replayed.denied_events.lazy().select("event_id")
        served = served.join(denied, on="event_id", how="anti", maintain_order="left")
    keys = ["currency_id", "feature_id"]
    return (
        served.select(*keys, "cost", pl.col("customer_id").rle_id().alias("__customer"))
        .group_by(keys)
        .agg(
            pl.col("cost").sum().cast(replayed.ledger.schema["amount"]).alias("consumed"),
            pl.len().cast(pl.Int64).alias("events"),
            pl.col("__customer").n_unique().cast(pl.Int64).alias("customers"),
        )
        .sort(keys)
        .collect()
    )
