"""Short builders for activity tests: a replay with both engines, its stream as short rows."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import polars as pl

from pricing_lab.activity import activity
from pricing_lab.ledger import ReplayInput
from tests.ledger.helpers import CR, run, when


def stream(
    thresholds: dict[str, list[str]] | None = None, *, days: int = 7, **fields: Any
) -> pl.DataFrame:
    """The activity stream of a replay of `fields` (as `tests.ledger.helpers.run` takes them)."""
    result = run(**fields)
    replay_input = ReplayInput(
        currencies=tuple(fields.get("currencies", (CR,))),
        grants=tuple(fields.get("grants", ())),
        recurring=tuple(fields.get("recurring", ())),
        auto_recharges=tuple(fields.get("auto_recharges", ())),
    )
    return activity(
        result.ledger,
        result.grants,
        replay_input.auto_recharges,
        replay_input.currencies,
        thresholds={c: [Decimal(t) for t in ts] for c, ts in (thresholds or {}).items()},
        ending_soon_days=days,
        until=result.until,
    )


def rows(frame: pl.DataFrame, *, customer: bool = False) -> list[tuple[Any, ...]]:
    """(when, kind, grant, amount, balance[, threshold][, money]) per event, in stream order."""
    out = []
    for row in frame.iter_rows(named=True):
        item: tuple[Any, ...] = (
            when(row["timestamp"]),
            row["kind"],
            row["grant_id"],
            None if row["amount"] is None else str(row["amount"]),
            str(row["balance"]),
        )
        if row["threshold"] is not None:
            item += (str(row["threshold"]),)
        if row["money"] is not None:
            item += (str(row["money"]),)
        if customer:
            item = (row["customer_id"], *item)
        out.append(item)
    return out
