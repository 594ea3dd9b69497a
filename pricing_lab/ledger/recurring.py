"""Recurring grants of SPEC §5: one RECURRING grant per period of each credit entitlement, and the
rollover grants that may carry a period's unused credits into the next one.

Thousands of customers on monthly plans make hundreds of thousands of periods, so the periods are
computed as columns (`recurring_grant_table`, with `calendar.add_months_array`) rather than one
`Grant` at a time; `recurring_grants` gives the same grants as records for readers that want them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal

import numpy as np
import polars as pl

from pricing_lab.catalog.model import Rollover
from pricing_lab.ledger.calendar import add_months_array, cadence_months, month_index_array
from pricing_lab.ledger.grant_table import grant_records, grant_table_schema
from pricing_lab.ledger.model import Grant, RecurringEntitlement
from pricing_lab.limits import MAX_DECIMAL_PLACES
from pricing_lab.money import decimal_places, quantize
from pricing_lab.timeutil import NEVER_US, to_micros


def rollover_cap(rollover: Rollover | None, amount: Decimal, precision: int) -> Decimal | None:
    """The most a period of an entitlement of `amount` credits can roll over (SPEC §5): the
    smaller of `max_amount` and `amount × max_percent / 100` rounded down to the currency's
    precision, each when given; None without a rollover."""
    if rollover is None:
        return None
    caps = []
    if rollover.max_amount is not None:
        caps.append(rollover.max_amount)
    if rollover.max_percent is not None:
        caps.append(quantize(amount * rollover.max_percent / 100, precision, "down"))
    return min(caps) if caps else None


def recurring_grant_table(
    entitlements: Iterable[RecurringEntitlement], until: datetime, scale: int | None = None
) -> pl.DataFrame:
    """The RECURRING grants of every period that starts before `until` (and before the end), as
    a grant table (`grant_table.grant_table_schema`, amounts at `scale` places; None: as many as
    the amounts need).

    Periods are anchored on the entitlement's `start` and computed from it each time
    (`calendar.period_start`: a Jan 31 start gives Feb 28/29, Mar 31, Apr 30, …; yearly Feb 29
    gives Feb 28). Each grant takes effect at its period start and expires at min(next period
    start, end).

    Grant ids are `{customer_id}:{source_id}:{currency_id}:{index}`, the index counting periods
    from 0. When one customer has several entitlements with the same source and currency (the same
    plan subscribed again later, or two entitlements of one plan in one currency) the index keeps
    counting across them in period-start order, so ids stay unique. Rows are sorted by customer,
    source, currency and index, whatever the order of `entitlements`.
    """
    rows = list(entitlements)
    if scale is None:
        scale = max((decimal_places(e.amount) for e in rows), default=0)
    periods = _periods(rows, until, scale, {})
    return _grant_columns(periods, scale, pl.col("grant_id"), "source")


def rollover_grant_table(
    entitlements: Iterable[RecurringEntitlement],
    until: datetime,
    precisions: Mapping[str, int],
    scale: int,
) -> pl.DataFrame:
    """The rollover grants a replay may make (SPEC §5), as a grant table with one more column,
    `rolls_from` (the id of the period grant whose unused credits it receives).

    One row per period grant that expires because the next period of the same entitlement starts
    before `until` and before the entitlement's end (not at the end, not at the horizon), when the
    entitlement has a rollover whose cap (`rollover_cap`) is above 0: grant id `{old id}:rollover`,
    RECURRING, source `rollover`, priority 0, cost basis 0, taking effect at the new period's start
    and expiring with the new period's grant. Its `amount` is the cap: the most it can receive; the
    engines decide at the old grant's expiry what it does receive (min(remaining, cap)), and a
    grant that receives nothing takes no effect.
    """
    rows = list(entitlements)
    caps = {
        i: cap
        for i, e in enumerate(rows)
        if (cap := rollover_cap(e.rollover, e.amount, precisions.get(e.currency_id, scale)))
        is not None
        and cap > 0
    }
    periods = _periods(rows, until, scale, caps).filter(
        pl.col("rolls") & pl.col("cap").is_not_null()
    )
    table = _grant_columns(
        periods.with_columns(
            pl.col("cap").alias("amount"),
            pl.col("expires").alias("start"),
            pl.col("next_expires").alias("expires"),
        ),
        scale,
        pl.concat_str(pl.col("grant_id"), pl.lit(":rollover")),
        None,
    )
    return table.with_columns(periods["grant_id"].alias("rolls_from"))


_RULE = pl.Decimal(38, MAX_DECIMAL_PLACES)  # a rollover cap as given


def _periods(
    rows: list[RecurringEntitlement], until: datetime, scale: int, caps: Mapping[int, Decimal]
) -> pl.DataFrame:
    """Every period starting before min(until, end), numbered: customer_id, source_id,
    currency_id, kind, amount, cadence, start / expires / next_expires (µs), `rolls` (the next
    period of the same entitlement starts at this one's expiry, before min(until, end)),
    `cap` (the entitlement's rollover cap, from `caps` by entitlement position), grant_id."""
    schema: dict[str, pl.DataType] = {
        "customer_id": pl.String(),
        "source_id": pl.String(),
        "currency_id": pl.String(),
        "kind": pl.String(),
        "amount": pl.Decimal(38, scale),
        "cadence": pl.String(),
        "cap": pl.Decimal(38, scale),
        "start": pl.Int64(),
        "expires": pl.Int64(),
        "next_expires": pl.Int64(),
        "rolls": pl.Boolean(),
        "grant_id": pl.String(),
    }
    if not rows:
        return pl.DataFrame(schema=schema)
    anchor = np.array([to_micros(e.start) for e in rows], dtype=np.int64)
    end = np.array([NEVER_US if e.end is None else to_micros(e.end) for e in rows], dtype=np.int64)
    limit = np.minimum(end, to_micros(until))
    step = np.array([cadence_months(e.cadence) for e in rows], dtype=np.int64)
    # Enough periods to pass the limit; the ones starting at or after it are dropped below.
    months = month_index_array(np.minimum(limit, NEVER_US // 2)) - month_index_array(anchor)
    periods = np.maximum(months // step + 2, 0)
    which = np.repeat(np.arange(len(rows)), periods)
    index = np.arange(len(which)) - np.repeat(np.cumsum(periods) - periods, periods)
    starts = add_months_array(anchor[which], index * step[which])
    following = add_months_array(anchor[which], (index + 1) * step[which])
    after_next = add_months_array(anchor[which], (index + 2) * step[which])
    keep = starts < limit[which]
    rolls = (following < limit[which])[keep]
    next_expires = np.minimum(after_next, end[which])[keep]
    which, starts, expires = which[keep], starts[keep], np.minimum(following, end[which])[keep]
    entitlement = pl.DataFrame(
        {
            "customer_id": [e.customer_id for e in rows],
            "source_id": [e.source_id for e in rows],
            "currency_id": [e.currency_id for e in rows],
            "kind": [e.source_kind for e in rows],
            "amount": pl.Series([e.amount for e in rows], dtype=pl.Decimal(38, scale)),
            "cadence": [e.cadence for e in rows],
            "cap": pl.Series([caps.get(i) for i in range(len(rows))], dtype=pl.Decimal(38, scale)),
            # the rollover as given (not its cap) keeps the numbering the same in every caller
            "max_amount": pl.Series(
                [None if e.rollover is None else e.rollover.max_amount for e in rows],
                dtype=_RULE,
            ),
            "max_percent": pl.Series(
                [None if e.rollover is None else e.rollover.max_percent for e in rows],
                dtype=_RULE,
            ),
        },
        schema_overrides={"amount": pl.Decimal(38, scale), "cap": pl.Decimal(38, scale)},
    )
    key = ["customer_id", "source_id", "currency_id"]
    return (
        entitlement[pl.Series(which)]
        .with_columns(
            pl.Series("start", starts, dtype=pl.Int64),
            pl.Series("expires", expires, dtype=pl.Int64),
            pl.Series("next_expires", next_expires, dtype=pl.Int64),
            pl.Series("rolls", rolls, dtype=pl.Boolean),
        )
        # Numbering in (start, kind, amount, cadence, expiry, rollover) order makes it independent
        # of the input's row order.
        .sort(*key, "start", "kind", "amount", "cadence", "expires", "max_amount", "max_percent")
        .with_columns(pl.int_range(pl.len()).over(key).alias("index"))
        .with_columns(
            pl.concat_str(*key, pl.col("index").cast(pl.String), separator=":").alias("grant_id")
        )
        .select(list(schema))
    )


def _grant_columns(
    periods: pl.DataFrame, scale: int, grant_id: pl.Expr, source: str | None
) -> pl.DataFrame:
    """`periods` as a grant table: RECURRING, priority 0, cost basis 0, effective at `start`,
    expiring at `expires`; source plan / add-on by kind (None: `rollover`)."""
    schema = grant_table_schema(scale, 0)
    return periods.select(
        grant_id.alias("grant_id"),
        "customer_id",
        "currency_id",
        pl.col("amount").cast(schema["amount"]),
        pl.lit("RECURRING").alias("type"),
        pl.lit(0, dtype=pl.Int64).alias("priority"),
        pl.col("start").cast(schema["effective_at"]).alias("effective_at"),
        pl.col("expires").cast(schema["expires_at"]).alias("expires_at"),
        pl.lit(0, dtype=schema["cost_basis"]).alias("cost_basis"),
        pl.lit(None, dtype=schema["voided_at"]).alias("voided_at"),
        (
            pl.when(pl.col("kind") == "plan").then(pl.lit("plan")).otherwise(pl.lit("addon"))
            if source is not None
            else pl.lit("rollover")
        ).alias("source"),
    )


def recurring_grants(
    entitlements: Iterable[RecurringEntitlement], until: datetime
) -> tuple[Grant, ...]:
    """The grants of `recurring_grant_table`, as records."""
    return grant_records(recurring_grant_table(entitlements, until))
