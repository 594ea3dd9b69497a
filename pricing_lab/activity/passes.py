"""Compiled passes of the activity stream over the ledger's int64 columns, in ledger order.

What needs a grant's running remaining or a look at the entries after one is done here in one
walk each, on integer codes (grant, customer × currency), rather than as Polars window functions
over string keys.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Bits of an entry's `facts` (input) and of its `found` flags (output).
CONSUMED = 1
TRANSFER_SOURCE = 2
OVERDRAFT = 4  # the entry is on the customer's OVERDRAFT grant
RECHARGE_GRANTED = 8  # the GRANTED entry of an auto-recharge grant
EMPTIED = 1
OVERDRAFT_STARTED = 2
OVERDRAFT_SETTLED = 4


@njit(cache=True, nogil=True)
def first_rows(grant: np.ndarray, n_grants: int) -> np.ndarray:  # pragma: no cover - compiled
    """The first entry of each grant code."""
    first = np.full(n_grants, -1, dtype=np.int64)
    for i in range(len(grant) - 1, -1, -1):
        first[grant[i]] = i
    return first


@njit(cache=True, nogil=True)
def walk(
    at: np.ndarray,
    grant: np.ndarray,
    group_of: np.ndarray,
    amount: np.ndarray,
    balance: np.ndarray,
    facts: np.ndarray,
    n_grants: int,
    n_groups: int,
    warn_at: np.ndarray,
    warn_grant: np.ndarray,
    warn_group: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """One walk in ledger order with each grant's remaining and each customer × currency's
    balance: per entry, whether it emptied its grant or started or settled an overdraft; per
    warning (sorted by instant), the grant's remaining and the balance after every entry at or
    before the instant (remaining 0 for a grant with no entry yet). `group_of`: each grant's
    customer × currency code."""
    n = len(at)
    found = np.zeros(n, dtype=np.int8)
    remaining = np.zeros(n_grants, dtype=np.int64)
    last_balance = np.zeros(n_groups, dtype=np.int64)
    warn_remaining = np.zeros(len(warn_at), dtype=np.int64)
    warn_balance = np.zeros(len(warn_at), dtype=np.int64)
    w = 0
    for i in range(n + 1):
        now = at[i] if i < n else np.iinfo(np.int64).max
        while w < len(warn_at) and warn_at[w] < now:
            warn_remaining[w] = remaining[warn_grant[w]]
            warn_balance[w] = last_balance[warn_group[w]]
            w += 1
        if i == n:
            break
        g = grant[i]
        was = remaining[g]
        now_left = was + amount[i]
        remaining[g] = now_left
        last_balance[group_of[g]] = balance[i]
        fact = facts[i]
        if fact & OVERDRAFT:
            if was >= 0 and now_left < 0:
                found[i] |= OVERDRAFT_STARTED
            elif was < 0 and now_left >= 0:
                found[i] |= OVERDRAFT_SETTLED
        elif fact & (CONSUMED | TRANSFER_SOURCE) and was > 0 and now_left == 0:
            found[i] |= EMPTIED
    return found, warn_remaining, warn_balance


@njit(cache=True, nogil=True)
def after_events(
    rows: np.ndarray,
    at: np.ndarray,
    grant: np.ndarray,
    customer_of: np.ndarray,
    currency_of: np.ndarray,
    facts: np.ndarray,
    same_event: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """For CONSUMED entries `rows`: whether each is its event's last in its currency, and the
    row of the auto-recharge GRANTED entry that followed the event in that currency (-1: none).
    An entry's customer and currency are those of its grant (`customer_of`, `currency_of` per
    grant code).

    At one instant a customer's event writes its CONSUMED entries (feature by feature), then its
    recharges, each followed by its debt transfers, before the next event (SPEC §5 order), so
    both are found by looking ahead within the customer's entries at that instant.
    """
    n = len(at)
    last = np.zeros(len(rows), dtype=np.bool_)
    recharge = np.full(len(rows), -1, dtype=np.int64)
    for k in range(len(rows)):
        r = rows[k]
        customer = customer_of[grant[r]]
        currency = currency_of[grant[r]]
        j = r + 1
        is_last = True
        while j < n and same_event[j]:
            if currency_of[grant[j]] == currency:
                is_last = False
                break
            j += 1
        if not is_last:
            continue
        last[k] = True
        while (
            j < n
            and at[j] == at[r]
            and customer_of[grant[j]] == customer
            and not (facts[j] & CONSUMED)
        ):
            if facts[j] & RECHARGE_GRANTED and currency_of[grant[j]] == currency:
                recharge[k] = j
                break
            j += 1
    return last, recharge
