"""The ledger invariants of SPEC §5 (1, 2, 3 and 5), checked on the output tables of a replay.

`check_invariants` returns every problem found; `assert_invariants` raises `InvariantViolation`.
Both engines run the check at the end of every replay: a violation is a bug in pricing_lab. The
checks read only the outputs and the inputs (never engine state), with vectorised Polars queries
and one small compiled loop for the draw-down order.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from numba import njit

from pricing_lab.errors import InvariantViolation, Problem
from pricing_lab.ledger.inputs import PreparedReplay, prepare, to_micros
from pricing_lab.ledger.model import ReplayInput
from pricing_lab.ledger.order import TYPE_RANK

MAX_LISTED = 20


def check_invariants(
    ledger: pl.DataFrame, denied_events: pl.DataFrame, replay_input: ReplayInput | PreparedReplay
) -> list[Problem]:
    """Every breach of SPEC §5 invariants 1, 2, 3 and 5 in a replay's outputs (empty: all hold).

    1. per customer and currency, each `balance_after` is the running sum of `amount`;
    2. no grant's remaining amount goes below 0, except the OVERDRAFT grant's;
    3. overdraft mode: each event's CONSUMED amounts equal its cost, feature by feature; block mode:
       each event is either fully consumed or listed once in the denied events;
    5. each CONSUMED entry draws from the first grant in draw-down order that still had credits
       (the OVERDRAFT grant only when no other grant had any).
    """
    prepared = replay_input if isinstance(replay_input, PreparedReplay) else prepare(replay_input)
    ledger = ledger.sort("entry_id").with_columns(
        pl.col("amount").to_physical().cast(pl.Int64).alias("_amount"),
        pl.col("balance_after").to_physical().cast(pl.Int64).alias("_balance"),
    )
    problems: list[Problem] = []
    problems += _running_sums(ledger)
    problems += _remaining_never_negative(ledger)
    problems += _costs_consumed(ledger, denied_events, prepared)
    problems += _drawdown_order(ledger, prepared)
    return problems


def assert_invariants(
    ledger: pl.DataFrame, denied_events: pl.DataFrame, replay_input: ReplayInput | PreparedReplay
) -> None:
    """Raise `InvariantViolation` listing every broken invariant (always a pricing_lab bug)."""
    problems = check_invariants(ledger, denied_events, replay_input)
    if problems:
        lines = "\n".join(f"  {p}" for p in problems)
        raise InvariantViolation(
            f"the ledger breaks {len(problems)} SPEC §5 invariant check(s) — this is a bug in "
            f"pricing_lab, please report it:\n{lines}"
        )


def _listed(frame: pl.DataFrame, message: str) -> list[Problem]:
    problems = [
        Problem(path=f"ledger[entry_id={entry_id}]", message=message)
        for entry_id in frame["entry_id"].head(MAX_LISTED).to_list()
    ]
    if frame.height > MAX_LISTED:
        problems.append(Problem(path="ledger", message=f"… {frame.height - MAX_LISTED} more"))
    return problems


def _running_sums(ledger: pl.DataFrame) -> list[Problem]:
    problems: list[Problem] = []
    if ledger["entry_id"].to_list() != list(range(1, ledger.height + 1)):
        problems.append(Problem(path="ledger.entry_id", message="entry ids are not 1, 2, … n"))
    bad = ledger.filter(
        pl.col("_amount").cum_sum().over("customer_id", "currency_id") != pl.col("_balance")
    )
    return problems + _listed(
        bad, "invariant 1: balance_after is not the running sum of amounts for its currency"
    )


def _remaining_never_negative(ledger: pl.DataFrame) -> list[Problem]:
    bad = ledger.filter(
        (pl.col("_amount").cum_sum().over("grant_id") < 0) & (pl.col("grant_type") != "OVERDRAFT")
    )
    return _listed(bad, "invariant 2: the grant's remaining amount goes below 0")


def _costs_consumed(
    ledger: pl.DataFrame, denied: pl.DataFrame, prepared: PreparedReplay
) -> list[Problem]:
    scale = prepared.scale
    factors = {c.id: 10 ** (scale - c.precision) for c in prepared.currencies}
    costs = prepared.consumptions.filter(
        (pl.col("timestamp") >= prepared.start)
        & (pl.col("timestamp") < prepared.until)
        & (pl.col("cost_units") > 0)
    ).select(
        "event_id",
        "feature_id",
        (
            pl.col("cost_units")
            * pl.col("currency_id").replace_strict(factors, return_dtype=pl.Int64)
        ).alias("cost"),
    )
    consumed = (
        ledger.filter(pl.col("entry_type") == "CONSUMED")
        .group_by("event_id", "feature_id")
        .agg((-pl.col("_amount").sum()).alias("consumed"))
    )
    joined = costs.join(consumed, on=["event_id", "feature_id"], how="full", coalesce=True)
    problems: list[Problem] = []
    if prepared.source.enforcement == "block":
        denied_ids = denied["event_id"]
        if denied_ids.is_duplicated().any():
            problems.append(Problem(path="denied_events", message="an event is denied twice"))
        costed_ids = costs["event_id"].unique()
        unknown = denied_ids.filter(~denied_ids.is_in(costed_ids.implode()))
        for event_id in unknown.head(MAX_LISTED).to_list():
            problems.append(
                Problem(
                    path=f"denied_events[event_id={event_id}]",
                    message="invariant 3: a denied event that costs nothing or is not replayed",
                )
            )
        is_denied = pl.col("event_id").is_in(denied_ids.implode())
        expected = pl.when(is_denied).then(None).otherwise(pl.col("cost"))
    else:
        expected = pl.col("cost")
    bad = joined.filter(~(pl.col("consumed").eq_missing(expected)))
    for event_id, feature_id in bad.select("event_id", "feature_id").head(MAX_LISTED).iter_rows():
        problems.append(
            Problem(
                path=f"ledger[event_id={event_id}, feature_id={feature_id}]",
                message="invariant 3: the CONSUMED amounts differ from the event's cost",
            )
        )
    return problems


def _drawdown_order(ledger: pl.DataFrame, prepared: PreparedReplay) -> list[Problem]:
    if ledger.height == 0:
        return []
    never = np.iinfo(np.int64).max
    known = pl.DataFrame(
        {
            "grant_id": [g.grant_id for g in prepared.grants],
            "priority": [g.priority for g in prepared.grants],
            "expires": [
                never if g.expires_at is None else to_micros(g.expires_at) for g in prepared.grants
            ],
            "effective": [to_micros(g.effective_at) for g in prepared.grants],
        },
        schema={
            "grant_id": pl.String,
            "priority": pl.Int64,
            "expires": pl.Int64,
            "effective": pl.Int64,
        },
    )
    expiry = {
        (s.customer_id, s.currency_id): s.grant_expiry for s in prepared.source.auto_recharges
    }
    granted = ledger.filter(pl.col("entry_type") == "GRANTED").select(
        "grant_id",
        "customer_id",
        "currency_id",
        pl.col("timestamp").alias("at"),
    )
    recharged = granted.filter(pl.col("grant_id").str.contains(":auto_recharge:", literal=True))
    recharge_expiry = pl.Series(
        "expiry",
        [
            expiry.get(key, "none")
            for key in recharged.select("customer_id", "currency_id").iter_rows()
        ],
        dtype=pl.String,
    )
    recharged = recharged.with_columns(recharge_expiry).select(
        "grant_id",
        pl.lit(0, dtype=pl.Int64).alias("priority"),
        pl.when(pl.col("expiry") == "1_month")
        .then(pl.col("at").dt.offset_by("1mo").dt.epoch("us"))
        .when(pl.col("expiry") == "1_year")
        .then(pl.col("at").dt.offset_by("1y").dt.epoch("us"))
        .otherwise(pl.lit(never, dtype=pl.Int64))
        .alias("expires"),
        pl.col("at").dt.epoch("us").alias("effective"),
    )
    keys = (
        ledger.select("grant_id", "grant_type")
        .unique()
        .join(pl.concat([known, recharged]), on="grant_id", how="left")
        .with_columns(
            pl.col("grant_type")
            .replace_strict(TYPE_RANK, return_dtype=pl.Int64)
            .alias("type_rank"),
            (pl.col("grant_type") == "OVERDRAFT").alias("is_overdraft"),
        )
        .sort("priority", "expires", "type_rank", "effective", "grant_id", nulls_last=True)
        .with_row_index("rank")
    )
    ordered = (
        ledger.select("entry_id", "customer_id", "currency_id", "entry_type", "grant_id", "_amount")
        .join(keys.select("grant_id", "rank", "is_overdraft"), on="grant_id", how="left")
        .sort("customer_id", "currency_id", "entry_id")
        .with_columns(
            (
                (pl.col("customer_id") != pl.col("customer_id").shift(1))
                | (pl.col("currency_id") != pl.col("currency_id").shift(1))
            )
            .fill_null(True)
            .alias("first")
        )
    )
    bad_rows = _drawdown_kernel(
        ordered["first"].to_numpy(),
        (ordered["entry_type"] == "CONSUMED").to_numpy(),
        ordered["rank"].cast(pl.Int64).to_numpy(),
        ordered["is_overdraft"].to_numpy(),
        ordered["_amount"].to_numpy(),
        keys.height,
    )
    bad = ordered.filter(pl.Series(bad_rows))
    return _listed(
        bad, "invariant 5: drawn from a grant while one earlier in draw-down order had credits"
    )


@njit(cache=True)
def _drawdown_kernel(
    first: np.ndarray,
    consumed: np.ndarray,
    rank: np.ndarray,
    is_overdraft: np.ndarray,
    amount: np.ndarray,
    n_grants: int,
) -> np.ndarray:  # pragma: no cover - compiled
    """Rows (in (customer, currency, entry) order) that break the draw-down order."""
    remaining = np.zeros(n_grants, dtype=np.int64)
    live = np.zeros(n_grants, dtype=np.bool_)  # positive remaining, non-overdraft
    seen = np.zeros(n_grants, dtype=np.bool_)
    touched = np.empty(n_grants, dtype=np.int64)
    n_touched = 0
    bad = np.zeros(len(first), dtype=np.bool_)
    for i in range(len(first)):
        if first[i]:
            for k in range(n_touched):
                remaining[touched[k]] = 0
                live[touched[k]] = False
                seen[touched[k]] = False
            n_touched = 0
        g = rank[i]
        if not seen[g]:
            seen[g] = True
            touched[n_touched] = g
            n_touched += 1
        if consumed[i]:
            # the first live grant in draw-down order must be this one (or none, for overdraft)
            for k in range(n_touched):
                other = touched[k]
                if live[other] and other < g:
                    bad[i] = True
                    break
            if is_overdraft[i]:
                for k in range(n_touched):
                    if live[touched[k]]:
                        bad[i] = True
                        break
        remaining[g] += amount[i]
        live[g] = remaining[g] > 0 and not is_overdraft[i]
    return bad
