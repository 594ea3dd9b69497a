"""The two orders of the ledger (SPEC §5): what happens first at one instant, and draw-down order.

Like beancount's `SORT_ORDER`, the order is a named table with the reason for each rank, used by
both engines: the reference engine sorts `Happening`s with `happening_key`; the fast engine sorts
its columns on `HAPPENING_SORT_COLUMNS` / `EVENT_SORT_COLUMNS`, which spell the same key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum

from pricing_lab.ledger.model import Consumption, Grant

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


# PROMOTIONAL and RECURRING credits are drawn before PAID ones (they are worth nothing once
# expired, paid ones were bought). OVERDRAFT is never in the draw-down order: it is used only for
# what every other grant cannot cover.
TYPE_RANK: dict[str, int] = {"PROMOTIONAL": 0, "RECURRING": 0, "PAID": 1, "OVERDRAFT": 2}


def drawdown_key(grant: Grant) -> tuple[int, bool, datetime, int, datetime, str]:
    """The draw-down order of SPEC §5: the smaller key is drawn first.

    priority ascending (lower is drawn first) → expires_at ascending, grants that never expire last
    (use what would be lost first) → PROMOTIONAL/RECURRING before PAID → effective_at ascending
    (oldest first) → grant_id ascending (a total order: ties never depend on the input's row order).
    """
    return (
        grant.priority,
        grant.expires_at is None,
        grant.expires_at if grant.expires_at is not None else NEVER,
        TYPE_RANK[grant.type],
        grant.effective_at,
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


# The same key in columns, as the fast engine sorts them (all ascending). Grant happenings:
HAPPENING_SORT_COLUMNS: tuple[str, ...] = (
    "customer",  # customer code, codes given in customer id order
    "time",  # microseconds since the epoch
    "phase",  # Phase
    "currency",  # currency code, codes given in currency id order
    "priority",
    "never_expires",  # False before True: never-expiring grants last
    "expires",
    "type_rank",  # TYPE_RANK
    "effective",
    "grant_rank",  # rank of grant_id in sorted order
)
# Event rows (one per event and feature), all in Phase.EVENT, after the instant's grant happenings:
EVENT_SORT_COLUMNS: tuple[str, ...] = ("customer_id", "timestamp", "event_id", "feature_id")
