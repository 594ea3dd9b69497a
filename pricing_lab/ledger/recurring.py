"""Recurring grants of SPEC §5: one RECURRING grant per period of each credit entitlement.

Thousands of customers on monthly plans make hundreds of thousands of periods, so the periods are
computed as columns (`recurring_grant_table`, with `calendar.add_months_array`) rather than one
`Grant` at a time; `recurring_grants` gives the same grants as records for readers that want them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import numpy as np
import polars as pl

from pricing_lab.ledger.calendar import add_months_array, cadence_months, month_index_array
from pricing_lab.ledger.grant_table import grant_records, grant_table_schema
from pricing_lab.ledger.model import Grant, RecurringEntitlement
from pricing_lab.money import decimal_places
from pricing_lab.timeutil import NEVER_US, to_micros


def recurring_grant_table(
    entitlements: Iterable[RecurringEntitlement], until: datetime, scale: int | None = None
) -> pl.DataFrame:
    """The RECURRING grants of every period that starts before `until` (and before the end), as
    a grant table (`grant_table.grant_table_schema`, amounts at `scale` places; None: as many as
    the amounts need).

    Periods are anchored on the entitlement's `start` and computed from it each time
    (`calendar.period_start`: a Jan 31 start gives Feb 28/29, Mar 31, Apr 30, …; yearly Feb 29
    gives Feb 28). Each grant takes effect at its period start and expires at min(next period
    start, end); no rollover.

    Grant ids are `{customer_id}:{source_id}:{currency_id}:{index}`, the index counting periods
    from 0. When one customer has several entitlements with the same source and currency (the same
    plan subscribed again later, or two entitlements of one plan in one currency) the index keeps
    counting across them in period-start order, so ids stay unique. Rows are sorted by customer,
    source, currency and index, whatever the order of `entitlements`.
    """
    rows = list(entitlements)
    if scale is None:
        scale = max((decimal_places(e.amount) for e in rows), default=0)
    schema = grant_table_schema(scale, 0)
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
    keep = starts < limit[which]
    which, starts, expires = which[keep], starts[keep], np.minimum(following, end[which])[keep]
    entitlement = pl.DataFrame(
        {
            "customer_id": [e.customer_id for e in rows],
            "source_id": [e.source_id for e in rows],
            "currency_id": [e.currency_id for e in rows],
            "kind": [e.source_kind for e in rows],
            "amount": pl.Series([e.amount for e in rows], dtype=pl.Decimal(38, scale)),
            "cadence": [e.cadence for e in rows],
        },
        schema_overrides={"amount": pl.Decimal(38, scale)},
    )
    key = ["customer_id", "source_id", "currency_id"]
    periods_table = (
        entitlement[pl.Series(which)]
        .with_columns(
            pl.Series("start", starts, dtype=pl.Int64),
            pl.Series("expires", expires, dtype=pl.Int64),
        )
        # Numbering in (start, kind, amount, cadence, expiry) order makes it independent of the
        # input's row order.
        .sort(*key, "start", "kind", "amount", "cadence", "expires")
        .with_columns(pl.int_range(pl.len()).over(key).alias("index"))
    )
    return periods_table.select(
        pl.concat_str(*key, pl.col("index").cast(pl.String), separator=":").alias("grant_id"),
        "customer_id",
        "currency_id",
        "amount",
        pl.lit("RECURRING").alias("type"),
        pl.lit(0, dtype=pl.Int64).alias("priority"),
        pl.col("start").cast(schema["effective_at"]).alias("effective_at"),
        pl.col("expires").cast(schema["expires_at"]).alias("expires_at"),
        pl.lit(0, dtype=schema["cost_basis"]).alias("cost_basis"),
        pl.lit(None, dtype=schema["voided_at"]).alias("voided_at"),
        pl.when(pl.col("kind") == "plan")
        .then(pl.lit("plan"))
        .otherwise(pl.lit("addon"))
        .alias("source"),
    )


def recurring_grants(
    entitlements: Iterable[RecurringEntitlement], until: datetime
) -> tuple[Grant, ...]:
    """The grants of `recurring_grant_table`, as records."""
    return grant_records(recurring_grant_table(entitlements, until))
