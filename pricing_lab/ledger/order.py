"""The two orders of the ledger (SPEC §5): what happens first at one instant, and draw-down order.

Like beancount's `SORT_ORDER`, each order is one named definition with the reason for each rank:
`Phase` and `happening_key` (what happens first at one instant), `drawdown_key` (which grant is
drawn first), and the ids of the grants the replay makes. The reference engine sorts records with
these keys. Where other code needs the same order in another form, the twin sits here, beside the
definition, and `tests/ledger/test_conformance.py` runs the same cases through every form:

* `DrawdownKeys` + `drawdown_before` / `happens_before`: the compiled twin (the fast engine's
  kernel and its sort of grant happenings), on integer keys;
* `drawdown_sort_keys`: the vectorised twin (Polars sort keys of a grant table: the invariant
  check's draw-down ranks).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from typing import NamedTuple

import numpy as np
import polars as pl
from numba import njit

from pricing_lab.ledger.model import GRANT_TYPES, Consumption, Grant
from pricing_lab.timeutil import NEVER_US

NEVER = datetime.max.replace(tzinfo=UTC)


class Phase(IntEnum):
    """What happens first at one instant, for one customer (SPEC §5 "order of things").

    Expiries come first because `expires_at` is exclusive: a grant is unusable *at* its expiry
    instant. Voids come next, for the same reason (and an expired grant then voids nothing). Grants
    take effect before events so that an event at a grant's `effective_at` can use it, and each new
    grant settles overdraft debt as it comes. Events come last, each followed by its auto-recharge.
    """

    EXPIRY = 0
    VOID = 1
    TAKES_EFFECT = 2
    EVENT = 3


# The phases as plain integers, for compiled code.
EXPIRY, VOID, TAKES_EFFECT, EVENT = (int(phase) for phase in Phase)

# PROMOTIONAL and RECURRING credits are drawn before PAID ones (they are worth nothing once
# expired, paid ones were bought). OVERDRAFT is never in the draw-down order: it is used only for
# what every other grant cannot cover.
TYPE_RANK: dict[str, int] = {"PROMOTIONAL": 0, "RECURRING": 0, "PAID": 1, "OVERDRAFT": 2}
# TYPE_RANK by grant type code (position in `model.GRANT_TYPES`), for compiled code.
TYPE_RANK_BY_CODE = np.array([TYPE_RANK[t] for t in GRANT_TYPES], dtype=np.int64)
# The source of rollover grants (SPEC §5): drawn before the other grants of equal earlier keys,
# so credits carried from the last period go before the new period's.
ROLLOVER_SOURCE = "rollover"


def drawdown_key(grant: Grant) -> tuple[int, bool, datetime, int, datetime, bool, str]:
    """The draw-down order of SPEC §5: the smaller key is drawn first.

    priority ascending (lower is drawn first) → expires_at ascending, grants that never expire last
    (use what would be lost first) → PROMOTIONAL/RECURRING before PAID → effective_at ascending
    (oldest first) → rollover grants before other grants (credits carried over from the last
    period are used before the new period's) → grant_id ascending (a total order: ties never
    depend on the input's row order).
    """
    return (
        grant.priority,
        grant.expires_at is None,
        grant.expires_at if grant.expires_at is not None else NEVER,
        TYPE_RANK[grant.type],
        grant.effective_at,
        grant.source != ROLLOVER_SOURCE,
        grant.grant_id,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Happening:
    """Something that happens to one customer at one instant: a grant's expiry, void or start, or
    an event. Exactly one of `grant` / `consumption` is set."""

    timestamp: datetime
    phase: Phase
    grant: Grant | None = None
    consumption: Consumption | None = None


def happening_key(happening: Happening) -> tuple[object, ...]:
    """The order of things for one customer: time, then `Phase`, then within a phase:

    - expiries, voids and grants taking effect: by currency id, then in draw-down order (SPEC §5
      asks for draw-down order for grants taking effect; expiries and voids use the same order so
      that one rule covers the instant);
    - events: by event id (SPEC §5: `(timestamp, event_id)` order). Inside one event, costs are
      consumed feature by feature in feature id order, then auto-recharges run in currency id order.

    Customers never interact, so the engines replay customer by customer with this key; the ledger
    order then interleaves customers chronologically (time, customer id, this key's order; see
    `api.chronological` and docs/ledger.md).
    """
    if happening.consumption is not None:
        return (happening.timestamp, happening.phase, happening.consumption.event_id)
    assert happening.grant is not None
    return (
        happening.timestamp,
        happening.phase,
        happening.grant.currency_id,
        drawdown_key(happening.grant),
    )


# Event rows (one per event and feature) in the order of things: by customer, then time, then
# event id (SPEC §5), then feature id (an event's costs are consumed feature by feature).
EVENT_SORT_COLUMNS: tuple[str, ...] = ("customer_id", "timestamp", "event_id", "feature_id")


# --- the ids of the grants the replay makes ------------------------------------------------------


def recharge_grant_id(customer_id: str, currency_id: str, number: int) -> str:
    """The id of a customer's auto-recharge grant number `number` (from 0) in a currency."""
    return f"{recharge_id_prefix(customer_id, currency_id)}{number}"


def recharge_id_prefix(customer_id: str, currency_id: str) -> str:
    """What every auto-recharge grant id of a customer and currency starts with."""
    return f"{customer_id}:auto_recharge:{currency_id}:"


def overdraft_grant_id(customer_id: str, currency_id: str) -> str:
    """The id of a customer's OVERDRAFT grant in a currency."""
    return f"{customer_id}:overdraft:{currency_id}"


def recharge_grant_ids(customer: str, currency: str, number: str) -> pl.Expr:
    """`recharge_grant_id` over columns (customer id, currency id, number)."""
    return pl.concat_str(recharge_id_prefixes(customer, currency), pl.col(number).cast(pl.String))


def recharge_id_prefixes(customer: str, currency: str) -> pl.Expr:
    """`recharge_id_prefix` over columns (customer id, currency id)."""
    return pl.concat_str(pl.col(customer), pl.lit(":auto_recharge:"), pl.col(currency), pl.lit(":"))


def overdraft_grant_ids(customer: str, currency: str) -> pl.Expr:
    """`overdraft_grant_id` over columns (customer id, currency id)."""
    return pl.concat_str(pl.col(customer), pl.lit(":overdraft:"), pl.col(currency))


# --- the compiled twin: draw-down order on integer keys ------------------------------------------

# The last two draw-down keys (rollover or not, then grant id) are one id rank in integers. A table
# grant's rank is 2 × (ID_SIDE × above + its id's position among the replay's table grant ids in
# string order); `above` says whether its id sorts after the customer's auto-recharge ids in its
# currency. Input ids never start with that prefix (a validation rule), so each one sorts wholly
# before or after every id the replay makes there: auto-recharge grants rank RECHARGE_ID_RANK,
# between the two sides, and compare among themselves on the text of their number
# (`recharge_numbers_before`). A rollover grant's rank is ROLLOVER_ID_RANK lower: below every
# other grant's, still in id order among rollover grants.
ID_SIDE = 1 << 40
RECHARGE_ID_RANK = 2 * ID_SIDE - 1
ROLLOVER_ID_RANK = 4 * ID_SIDE


class DrawdownKeys(NamedTuple):
    """The draw-down keys of grants as int64 arrays (one entry per grant), as `drawdown_key`."""

    priority: np.ndarray
    expires: np.ndarray  # microseconds; NEVER_US for a grant that never expires
    type_rank: np.ndarray  # TYPE_RANK
    effective: np.ndarray  # microseconds
    id_rank: np.ndarray  # see ID_SIDE
    recharge_number: np.ndarray  # n of an auto-recharge grant's id (0 for input grants)


def id_ranks(grant_ids: pl.Series, above: np.ndarray, rollover: np.ndarray) -> np.ndarray:
    """The id rank (see ID_SIDE) of table grants: `grant_ids`, whether each id sorts after the
    auto-recharge ids of its customer and currency (`above_recharge_ids`), whether it is a
    rollover grant (source ROLLOVER_SOURCE)."""
    position = grant_ids.rank("ordinal").cast(pl.Int64).to_numpy() - 1
    result: np.ndarray = 2 * (ID_SIDE * above.astype(np.int64) + position)
    result -= ROLLOVER_ID_RANK * rollover.astype(np.int64)
    return result


def above_recharge_ids(grants: pl.DataFrame, recharging: pl.DataFrame) -> np.ndarray:
    """Per row of `grants` (grant_id, customer_id, currency_id): whether the customer's
    auto-recharge ids in that currency (`recharging`: customer_id, currency_id pairs with an
    auto-recharge setting) sort before its grant id. False where there is no setting."""
    prefix = recharge_id_prefixes("customer_id", "currency_id")
    flags = grants.select("grant_id", "customer_id", "currency_id").join(
        recharging.select("customer_id", "currency_id", pl.lit(True).alias("__recharging")),
        on=["customer_id", "currency_id"],
        how="left",
        maintain_order="left",
    )
    above = pl.col("__recharging").fill_null(False) & (pl.col("grant_id") > prefix)
    result: np.ndarray = flags.select(above).to_series().to_numpy()
    return result


@njit(cache=True)
def recharge_numbers_before(a: int, b: int) -> bool:  # pragma: no cover - compiled
    """str(a) < str(b) for non-negative integers: the order of auto-recharge grant ids, which end
    in their number (…:10 sorts before …:9). Their leading digits, as many as the shorter has,
    compare as numbers; on a tie the shorter sorts first. (Allocation-free: it is compiled into
    functions that run without numba's reference counting, see `kernel`.)"""
    n_a, n_b = _digit_count(a), _digit_count(b)
    for _ in range(n_a - n_b):
        a //= 10
    for _ in range(n_b - n_a):
        b //= 10
    if a != b:
        return a < b
    return n_a < n_b


@njit(cache=True)
def _digit_count(x: int) -> int:  # pragma: no cover - compiled
    """How many decimal digits x ≥ 0 has."""
    n = 1
    while x >= 10:
        x //= 10
        n += 1
    return n


@njit(cache=True, inline="always")
def drawdown_before(keys: DrawdownKeys, a: int, b: int) -> bool:  # pragma: no cover - compiled
    """Grant a is drawn before grant b (`drawdown_key`, on `keys`)."""
    if keys.priority[a] != keys.priority[b]:
        return keys.priority[a] < keys.priority[b]
    if keys.expires[a] != keys.expires[b]:  # NEVER_US sorts last, as never-expiring grants do
        return keys.expires[a] < keys.expires[b]
    if keys.type_rank[a] != keys.type_rank[b]:
        return keys.type_rank[a] < keys.type_rank[b]
    if keys.effective[a] != keys.effective[b]:
        return keys.effective[a] < keys.effective[b]
    if keys.id_rank[a] != keys.id_rank[b]:
        return keys.id_rank[a] < keys.id_rank[b]
    return recharge_numbers_before(keys.recharge_number[a], keys.recharge_number[b])


@njit(cache=True, inline="always")
def grant_before(
    currency: np.ndarray, keys: DrawdownKeys, a: int, b: int
) -> bool:  # pragma: no cover - compiled
    """Within one phase of one instant: grant a before grant b (`happening_key`: by currency,
    then in draw-down order)."""
    if currency[a] != currency[b]:
        return currency[a] < currency[b]
    return drawdown_before(keys, a, b)


@njit(cache=True, inline="always")
def happens_before(
    currency: np.ndarray,
    keys: DrawdownKeys,
    time_a: int,
    phase_a: int,
    a: int,
    time_b: int,
    phase_b: int,
    b: int,
) -> bool:  # pragma: no cover - compiled
    """Grant a's `phase_a` at `time_a` happens before grant b's `phase_b` at `time_b`
    (`happening_key`)."""
    if time_a != time_b:
        return time_a < time_b
    if phase_a != phase_b:
        return phase_a < phase_b
    return grant_before(currency, keys, a, b)


# --- the vectorised twin: draw-down order as Polars sort keys ------------------------------------


def drawdown_sort_keys() -> list[pl.Expr]:
    """`drawdown_key` as Polars sort keys (all ascending) over a grant table's columns
    (`priority`, `expires_at` null for never, `type`, `effective_at`, `source`, `grant_id`)."""
    return [
        pl.col("priority"),
        pl.col("expires_at").dt.epoch("us").fill_null(NEVER_US),
        pl.col("type").replace_strict(TYPE_RANK, return_dtype=pl.Int64),
        pl.col("effective_at"),
        pl.col("source") != ROLLOVER_SOURCE,
        pl.col("grant_id"),
    ]
