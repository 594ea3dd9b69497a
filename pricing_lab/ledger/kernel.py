"""The fast engine's rules: SPEC §5 in compiled functions over integer columns, one per step.

Each step mirrors the reference engine's method of the same name (`reference._CustomerReplay`):
`take_effect` (GRANTED, then settle overdraft debt), `close` (EXPIRED / VOIDED), `consume` (one
feature's cost in draw-down order), `overdraft_grant`, `auto_recharge`, `replay_event` (deny in
block mode, or consume each feature's cost, then auto-recharge) and `replay_customer` (the
instants of one customer in the order of things). `replay_customers` runs a range of customers;
customers never share credits, so ranges run in threads (it releases the GIL).

Amounts are int64 minor units of their currency (cost × 10^precision): `checks.size_problems`
refuses any input whose amounts could leave that range. Times are int64 microseconds. The arrays
come grouped in named tuples (`GrantColumns`, `Happenings`, `EventColumns`, `RechargeSettings`,
built by `columns`), the state of the customer being replayed in `Book` and `Wallets`, what is
written in `Entries`.

The steps are compiled into `replay_customer` (`inline="always"`), and it is compiled without
numba's reference counting (`_nrt=False`): it allocates nothing and only reads and writes arrays
its caller holds, while with counting each use of a named tuple of arrays would increment and
decrement every array's count, atomic operations that cost more than the rules themselves.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numba import config as numba_config
from numba import njit

from pricing_lab.ledger.calendar import add_months_us, month_index_us
from pricing_lab.ledger.model import ENTRY_TYPES
from pricing_lab.ledger.order import (
    EXPIRY,
    RECHARGE_ID_RANK,
    TAKES_EFFECT,
    TYPE_RANK,
    VOID,
    DrawdownKeys,
    drawdown_before,
    grant_before,
)
from pricing_lab.limits import GRANT_EXPIRIES
from pricing_lab.timeutil import NEVER_US


def engine_threads() -> int:
    """The threads the engine runs its customer ranges and output groups on: numba's thread
    count (`NUMBA_NUM_THREADS`, which numba reads at import; the machine's cores by default), so
    a process limited to one thread, such as a scale-out worker, runs the engine on one."""
    return max(int(numba_config.NUMBA_NUM_THREADS), 1)  # type: ignore[attr-defined]


# Entry types: positions in model.ENTRY_TYPES.
GRANTED, CONSUMED, EXPIRED, VOIDED, TRANSFER_SOURCE, TRANSFER_TARGET, ROLLED_OVER = (
    ENTRY_TYPES.index(name)
    for name in (
        "GRANTED",
        "CONSUMED",
        "EXPIRED",
        "VOIDED",
        "CONSUMPTION_TRANSFER_SOURCE",
        "CONSUMPTION_TRANSFER_TARGET",
        "ROLLED_OVER",
    )
)
# Where a grant comes from: the grant table (input and recurring), an auto-recharge, the overdraft.
KIND_TABLE, KIND_RECHARGE, KIND_OVERDRAFT = 0, 1, 2
# A grant's state during the replay (the reference engine's `_GrantState.active`, and whether it
# was ever active): not yet taken effect, active, closed (expired or voided); a rollover grant
# waits until the grant it rolls from expires with credits to carry (then PENDING, at the amount
# rolled) and never takes effect otherwise.
PENDING, ACTIVE, CLOSED, WAITING = 0, 1, 2, 3
# Auto-recharge grant expiries: positions in limits.GRANT_EXPIRIES.
NO_EXPIRY, ONE_MONTH, ONE_YEAR = (GRANT_EXPIRIES.index(e) for e in ("none", "1_month", "1_year"))
PAID_TYPE_RANK = TYPE_RANK["PAID"]  # auto-recharge grants are PAID
NO_LIMIT = -1  # a monthly spend limit of none
# Compile options of a function without numba's reference counting (see the module docstring):
# it must allocate nothing. numba's type stubs do not list `_nrt`, hence a dict.
UNCOUNTED: dict[str, Any] = {"cache": True, "_nrt": False}

# Ledger rows as the kernel writes them (one int64 row per entry): time, customer code, currency
# code, entry type, grant kind, grant reference (its index in GrantColumns for KIND_TABLE, its
# number for KIND_RECHARGE), amount and balance after (minor units of the currency), event row
# (the kept consumption row of a CONSUMED entry, −1 otherwise).
O_TIME, O_CUSTOMER, O_CURRENCY, O_TYPE, O_KIND, O_REF, O_AMOUNT, O_BALANCE, O_EVENT = range(9)
N_OUT = 9
# Denied rows: event row (the event's first kept row), currency code, its cost, the balance.
D_EVENT, D_CURRENCY, D_COST, D_BALANCE = range(4)
N_DENIED = 4


class GrantColumns(NamedTuple):
    """The grants that take part in the replay, customer by customer (customer c's grants are
    start[c] … start[c + 1] − 1), in the table's order within a customer."""

    start: np.ndarray
    currency: np.ndarray
    amount: np.ndarray  # minor units (a rollover grant's: its cap)
    keys: DrawdownKeys
    rolls_to: np.ndarray  # index of the rollover grant this period grant may roll into, or −1
    is_rollover: np.ndarray  # bool: a rollover grant


class Happenings(NamedTuple):
    """The grants' expiries, voids and taking effect before the horizon's end, customer by
    customer (start[c] …) in the order of things (`order.happens_before`)."""

    start: np.ndarray
    time: np.ndarray
    phase: np.ndarray  # order.EXPIRY, VOID or TAKES_EFFECT
    grant: np.ndarray  # index into GrantColumns


class EventColumns(NamedTuple):
    """The consumption rows replayed (inside the horizon, cost above 0), customer by customer
    (start[c] …), in the order of things; an event's rows are consecutive, feature by feature."""

    start: np.ndarray
    time: np.ndarray
    new_event: np.ndarray  # bool: the row starts an event
    currency: np.ndarray
    cost: np.ndarray  # minor units


class RechargeSettings(NamedTuple):
    """Auto-recharge settings per customer × currency, in the kernel's integers."""

    on: np.ndarray  # bool
    threshold: np.ndarray  # minor units (rounded up)
    target: np.ndarray  # minor units (rounded up)
    unit_price: np.ndarray  # money units (see columns) per minor unit
    limit: np.ndarray  # money units per calendar month, NO_LIMIT for none
    expiry: np.ndarray  # NO_EXPIRY, ONE_MONTH or ONE_YEAR


class Book(NamedTuple):
    """The grants of the customer being replayed (its table grants first, then the grants the
    replay makes for it), by local index."""

    remaining: np.ndarray
    status: np.ndarray  # PENDING, ACTIVE or CLOSED
    currency: np.ndarray
    amount: np.ndarray  # what it grants when it takes effect
    kind: np.ndarray  # KIND_*
    ref: np.ndarray  # index in GrantColumns (KIND_TABLE) or recharge number (KIND_RECHARGE)
    keys: DrawdownKeys
    held: np.ndarray  # [grants in the book]
    rolls_to: np.ndarray  # local index of the rollover grant a grant may roll into, or −1


class Wallets(NamedTuple):
    """The customer's state per currency."""

    balance: np.ndarray
    overdraft: np.ndarray  # local index of the OVERDRAFT grant, −1 before it is needed
    drawdown: np.ndarray  # [currency, i]: the usable grants, in draw-down order
    n_drawdown: np.ndarray
    recharges: np.ndarray  # auto-recharge grants issued so far
    spend_month: np.ndarray  # calendar month (calendar.month_index_us) of `spent`
    spent: np.ndarray  # auto-recharge spend in that month, money units
    expiring: np.ndarray  # [currency, i]: auto-recharge grants by expiry (a queue)
    expiring_head: np.ndarray
    expiring_tail: np.ndarray
    totals: np.ndarray  # scratch: the event being replayed, its cost per currency
    touched: np.ndarray  # scratch: whether it costs anything in the currency


class Entries(NamedTuple):
    """What the replay writes: ledger rows (N_OUT columns) and denied rows (N_DENIED), the time
    span of the rows and the grants it made (what the outputs need to place and name them)."""

    rows: np.ndarray
    denied: np.ndarray
    written: np.ndarray  # [ledger rows written, denied rows written]
    span: np.ndarray  # [earliest, latest] time of the rows written (NEVER_US, −1 for none)
    recharges: np.ndarray  # per customer × currency (c × currencies + k): auto-recharges made
    overdrafts: np.ndarray  # bool, per customer × currency: an OVERDRAFT grant was made


class KernelRows(NamedTuple):
    """What a replay's kernel runs (`fast._run_kernel`) hand to the output assembly."""

    buffer: list[np.ndarray]  # the row buffer, alone in a list: the assembly takes it out, so
    # that once its rows are staged its pages hold the output columns (`assembly._in_dead_memory`)
    starts: np.ndarray  # per customer range: its first row in the buffer
    lengths: np.ndarray  # per customer range: the rows it wrote
    span: np.ndarray  # [earliest, latest] time of every row written
    recharges: np.ndarray  # per customer × currency pair: auto-recharges made
    overdrafts: np.ndarray  # bool, per customer × currency pair: an OVERDRAFT grant was made


@njit(cache=True, inline="always")
def write(
    entries: Entries,
    book: Book,
    wallets: Wallets,
    c: int,
    t: int,
    g: int,
    entry_type: int,
    amount: int,
    event_row: int,
) -> None:  # pragma: no cover - compiled
    """One ledger entry: moves `amount` into (or out of) grant g and the balance."""
    k = book.currency[g]
    book.remaining[g] += amount
    wallets.balance[k] += amount
    n = entries.written[0]
    if n >= entries.rows.shape[0]:
        raise IndexError("ledger rows beyond the room made for them")
    rows = entries.rows
    rows[n, O_TIME] = t
    rows[n, O_CUSTOMER] = c
    rows[n, O_CURRENCY] = k
    rows[n, O_TYPE] = entry_type
    rows[n, O_KIND] = book.kind[g]
    rows[n, O_REF] = book.ref[g]
    rows[n, O_AMOUNT] = amount
    rows[n, O_BALANCE] = wallets.balance[k]
    rows[n, O_EVENT] = event_row
    entries.written[0] = n + 1


@njit(cache=True, inline="always")
def _leave_drawdown(wallets: Wallets, k: int, g: int) -> None:  # pragma: no cover - compiled
    """Grant g is no longer usable in currency k."""
    n = wallets.n_drawdown[k]
    for i in range(n):
        if wallets.drawdown[k, i] == g:
            for j in range(i, n - 1):
                wallets.drawdown[k, j] = wallets.drawdown[k, j + 1]
            wallets.n_drawdown[k] = n - 1
            return


@njit(cache=True, inline="always")
def take_effect(
    entries: Entries, book: Book, wallets: Wallets, c: int, t: int, g: int
) -> None:  # pragma: no cover - compiled
    """GRANTED, then settle overdraft debt from the new grant at once (SPEC §5). A rollover grant
    that received nothing (still WAITING) takes no effect."""
    if book.status[g] != PENDING:
        return
    k = book.currency[g]
    book.status[g] = ACTIVE
    write(entries, book, wallets, c, t, g, GRANTED, book.amount[g], -1)
    # Usable now: into the draw-down list, in draw-down order.
    i = wallets.n_drawdown[k]
    while i > 0 and drawdown_before(book.keys, g, wallets.drawdown[k, i - 1]):
        wallets.drawdown[k, i] = wallets.drawdown[k, i - 1]
        i -= 1
    wallets.drawdown[k, i] = g
    wallets.n_drawdown[k] += 1
    debtor = wallets.overdraft[k]
    if debtor >= 0 and book.remaining[debtor] < 0:
        settled = min(book.remaining[g], -book.remaining[debtor])
        write(entries, book, wallets, c, t, g, TRANSFER_SOURCE, -settled, -1)
        write(entries, book, wallets, c, t, debtor, TRANSFER_TARGET, settled, -1)
        if book.remaining[g] == 0:
            _leave_drawdown(wallets, k, g)


@njit(cache=True, inline="always")
def close(
    entries: Entries, book: Book, wallets: Wallets, c: int, t: int, g: int, entry_type: int
) -> None:  # pragma: no cover - compiled
    """EXPIRED / VOIDED: what remains leaves; an empty or closed grant writes nothing. A period
    grant with a rollover grant first rolls over (`roll_over`)."""
    if book.status[g] != ACTIVE:
        return
    book.status[g] = CLOSED
    if entry_type == EXPIRED and book.rolls_to[g] >= 0:
        roll_over(entries, book, wallets, c, t, g)
    if book.remaining[g] > 0:
        write(entries, book, wallets, c, t, g, entry_type, -book.remaining[g], -1)
        _leave_drawdown(wallets, book.currency[g], g)


@njit(cache=True, inline="always")
def roll_over(
    entries: Entries, book: Book, wallets: Wallets, c: int, t: int, g: int
) -> None:  # pragma: no cover - compiled
    """Grant g expires because its entitlement's next period starts: min(remaining, cap) leaves
    it with ROLLED_OVER and becomes the amount of its rollover grant, which then takes effect in
    this instant's take-effect phase (SPEC §5). Nothing to roll: the rollover grant stays
    WAITING."""
    slot = book.rolls_to[g]
    rolled = min(book.remaining[g], book.amount[slot])
    if rolled <= 0:
        return
    write(entries, book, wallets, c, t, g, ROLLED_OVER, -rolled, -1)
    if book.remaining[g] == 0:
        _leave_drawdown(wallets, book.currency[g], g)
    book.amount[slot] = rolled
    book.status[slot] = PENDING


@njit(cache=True, inline="always")
def overdraft_grant(book: Book, wallets: Wallets, k: int) -> int:  # pragma: no cover - compiled
    """The customer's OVERDRAFT grant in currency k, created on first need (no GRANTED)."""
    if wallets.overdraft[k] < 0:
        g = _new_grant(book, k, KIND_OVERDRAFT, 0, 0)
        book.status[g] = ACTIVE
        wallets.overdraft[k] = g
    return wallets.overdraft[k]


@njit(cache=True, inline="always")
def consume(
    entries: Entries,
    book: Book,
    wallets: Wallets,
    c: int,
    t: int,
    k: int,
    cost: int,
    event_row: int,
) -> None:  # pragma: no cover - compiled
    """One feature's cost: from the usable grants in draw-down order, one CONSUMED entry per
    grant touched; what they cannot cover from the OVERDRAFT grant (only in overdraft mode:
    block mode checked the balance first)."""
    left = cost
    while left > 0 and wallets.n_drawdown[k] > 0:
        g = wallets.drawdown[k, 0]
        taken = min(left, book.remaining[g])
        write(entries, book, wallets, c, t, g, CONSUMED, -taken, event_row)
        left -= taken
        if book.remaining[g] == 0:
            _leave_drawdown(wallets, k, g)
    if left > 0:
        debtor = overdraft_grant(book, wallets, k)
        write(entries, book, wallets, c, t, debtor, CONSUMED, -left, event_row)


@njit(cache=True, inline="always")
def auto_recharge(
    entries: Entries,
    book: Book,
    wallets: Wallets,
    settings: RechargeSettings,
    c: int,
    k: int,
    t: int,
    until: int,
) -> None:  # pragma: no cover - compiled
    """After a consumed event: top the balance back up to the target (SPEC §5), within the
    month's spend limit; the grant takes effect at once, its expiry joins the queue."""
    if not settings.on[c, k] or wallets.balance[k] >= settings.threshold[c, k]:
        return
    amount = settings.target[c, k] - wallets.balance[k]
    limit = settings.limit[c, k]
    unit_price = settings.unit_price[c, k]
    if limit != NO_LIMIT:
        month = month_index_us(t)
        if month != wallets.spend_month[k]:
            wallets.spend_month[k] = month
            wallets.spent[k] = 0
        if unit_price > 0:
            amount = min(amount, (limit - wallets.spent[k]) // unit_price)
    if amount <= 0:
        return
    if limit != NO_LIMIT:
        wallets.spent[k] += amount * unit_price
    g = _new_grant(book, k, KIND_RECHARGE, wallets.recharges[k], amount)
    wallets.recharges[k] += 1
    expiry = settings.expiry[c, k]
    if expiry == NO_EXPIRY:
        book.keys.expires[g] = NEVER_US
    else:
        book.keys.expires[g] = add_months_us(t, 1 if expiry == ONE_MONTH else 12)
    book.keys.effective[g] = t
    take_effect(entries, book, wallets, c, t, g)  # right after the event, before anything else
    if book.keys.expires[g] < until:
        wallets.expiring[k, wallets.expiring_tail[k]] = g
        wallets.expiring_tail[k] += 1


@njit(cache=True, inline="always")
def _new_grant(
    book: Book, k: int, kind: int, ref: int, amount: int
) -> int:  # pragma: no cover - compiled
    """A grant the replay makes for the customer (auto-recharge: PAID, priority 0, ranked among
    the customer's ids by `order.RECHARGE_ID_RANK` and its number)."""
    g = book.held[0]
    book.held[0] = g + 1
    book.remaining[g] = 0
    book.status[g] = PENDING
    book.currency[g] = k
    book.amount[g] = amount
    book.kind[g] = kind
    book.ref[g] = ref
    book.rolls_to[g] = -1
    book.keys.priority[g] = 0
    book.keys.expires[g] = NEVER_US
    book.keys.type_rank[g] = PAID_TYPE_RANK
    book.keys.effective[g] = 0
    book.keys.id_rank[g] = RECHARGE_ID_RANK
    book.keys.recharge_number[g] = ref
    return g


@njit(cache=True, inline="always")
def replay_event(
    entries: Entries,
    book: Book,
    wallets: Wallets,
    events: EventColumns,
    settings: RechargeSettings,
    c: int,
    first: int,
    end: int,
    block: bool,
    until: int,
) -> None:  # pragma: no cover - compiled
    """An event (kept rows first … end − 1, one per feature with a cost): deny it (block mode),
    or consume each feature's cost, then auto-recharge in currency order."""
    t = events.time[first]
    n_currencies = len(wallets.balance)
    for k in range(n_currencies):
        wallets.totals[k] = 0
        wallets.touched[k] = False
    for r in range(first, end):
        wallets.totals[events.currency[r]] += events.cost[r]
        wallets.touched[events.currency[r]] = True
    if block:
        for k in range(n_currencies):  # one row per denied event: the first short currency
            if wallets.touched[k] and wallets.totals[k] > wallets.balance[k]:
                n = entries.written[1]
                entries.denied[n, D_EVENT] = first
                entries.denied[n, D_CURRENCY] = k
                entries.denied[n, D_COST] = wallets.totals[k]
                entries.denied[n, D_BALANCE] = wallets.balance[k]
                entries.written[1] = n + 1
                return
    for r in range(first, end):
        consume(entries, book, wallets, c, t, events.currency[r], events.cost[r], r)
    for k in range(n_currencies):
        if wallets.touched[k]:
            auto_recharge(entries, book, wallets, settings, c, k, t, until)


@njit(cache=True, inline="always")
def _close_batch(
    entries: Entries,
    book: Book,
    wallets: Wallets,
    c: int,
    t: int,
    batch: np.ndarray,
    n_batch: int,
    entry_type: int,
) -> None:  # pragma: no cover - compiled
    for b in range(n_batch):
        close(entries, book, wallets, c, t, batch[b], entry_type)


@njit(**UNCOUNTED)
def replay_customer(
    entries: Entries,
    book: Book,
    wallets: Wallets,
    batch: np.ndarray,
    grants: GrantColumns,
    happenings: Happenings,
    events: EventColumns,
    settings: RechargeSettings,
    c: int,
    block: bool,
    until: int,
) -> None:  # pragma: no cover - compiled
    """Customer c, instant by instant in the order of things: expiries (its table grants' and its
    auto-recharge grants'), voids, grants taking effect, events."""
    first_grant = grants.start[c]
    n_grants = grants.start[c + 1] - first_grant
    for i in range(n_grants):
        g = first_grant + i
        book.remaining[i] = 0
        book.status[i] = WAITING if grants.is_rollover[g] else PENDING
        book.rolls_to[i] = grants.rolls_to[g] - first_grant if grants.rolls_to[g] >= 0 else -1
        book.currency[i] = grants.currency[g]
        book.amount[i] = grants.amount[g]
        book.kind[i] = KIND_TABLE
        book.ref[i] = g
        book.keys.priority[i] = grants.keys.priority[g]
        book.keys.expires[i] = grants.keys.expires[g]
        book.keys.type_rank[i] = grants.keys.type_rank[g]
        book.keys.effective[i] = grants.keys.effective[g]
        book.keys.id_rank[i] = grants.keys.id_rank[g]
        book.keys.recharge_number[i] = 0
    book.held[0] = n_grants
    for k in range(len(wallets.balance)):
        wallets.balance[k] = 0
        wallets.overdraft[k] = -1
        wallets.n_drawdown[k] = 0
        wallets.recharges[k] = 0
        wallets.spend_month[k] = -1
        wallets.spent[k] = 0
        wallets.expiring_head[k] = 0
        wallets.expiring_tail[k] = 0
    h, h_end = happenings.start[c], happenings.start[c + 1]
    e, e_end = events.start[c], events.start[c + 1]
    while True:
        # The next instant: the earliest of the next grant happening, event, recharge expiry.
        t = NEVER_US
        if h < h_end:
            t = happenings.time[h]
        if e < e_end and events.time[e] < t:
            t = events.time[e]
        for k in range(len(wallets.balance)):
            if wallets.expiring_head[k] < wallets.expiring_tail[k]:
                t = min(t, book.keys.expires[wallets.expiring[k, wallets.expiring_head[k]]])
        if t == NEVER_US or t >= until:
            return
        # 1. Expiries: the table grants' (in order) merged with auto-recharge grants' (by
        # currency, then draw-down order).
        n_batch = 0
        while h < h_end and happenings.time[h] == t and happenings.phase[h] == EXPIRY:
            batch[n_batch] = happenings.grant[h] - first_grant
            n_batch += 1
            h += 1
        for k in range(len(wallets.balance)):
            while (
                wallets.expiring_head[k] < wallets.expiring_tail[k]
                and book.keys.expires[wallets.expiring[k, wallets.expiring_head[k]]] == t
            ):
                g = wallets.expiring[k, wallets.expiring_head[k]]
                wallets.expiring_head[k] += 1
                i = n_batch
                while i > 0 and grant_before(book.currency, book.keys, g, batch[i - 1]):
                    batch[i] = batch[i - 1]
                    i -= 1
                batch[i] = g
                n_batch += 1
        _close_batch(entries, book, wallets, c, t, batch, n_batch, EXPIRED)
        # 2. Voids.
        n_batch = 0
        while h < h_end and happenings.time[h] == t and happenings.phase[h] == VOID:
            batch[n_batch] = happenings.grant[h] - first_grant
            n_batch += 1
            h += 1
        _close_batch(entries, book, wallets, c, t, batch, n_batch, VOIDED)
        # 3. Grants taking effect, in draw-down order; each settles overdraft debt.
        while h < h_end and happenings.time[h] == t and happenings.phase[h] == TAKES_EFFECT:
            take_effect(entries, book, wallets, c, t, happenings.grant[h] - first_grant)
            h += 1
        # 4. Events in (timestamp, event_id) order, each followed by its auto-recharges.
        while e < e_end and events.time[e] == t:
            end = e + 1
            while end < e_end and not events.new_event[end]:
                end += 1
            replay_event(entries, book, wallets, events, settings, c, e, end, block, until)
            e = end


@njit(cache=True, nogil=True)
def replay_customers(
    first: int,
    end: int,
    grants: GrantColumns,
    happenings: Happenings,
    events: EventColumns,
    settings: RechargeSettings,
    n_currencies: int,
    block: bool,
    until: int,
    capacity: int,
    entries: Entries,
) -> None:  # pragma: no cover - compiled
    """Replay customers first … end − 1 into `entries` (room made beforehand: `columns.room`),
    with the time span of their rows and the grants the replay made for them.
    `capacity`: the most grants one of them can hold (its table grants, one OVERDRAFT grant per
    currency, one auto-recharge per consumption row)."""
    book = Book(
        remaining=np.zeros(capacity, dtype=np.int64),
        status=np.zeros(capacity, dtype=np.int64),
        currency=np.zeros(capacity, dtype=np.int64),
        amount=np.zeros(capacity, dtype=np.int64),
        kind=np.zeros(capacity, dtype=np.int64),
        ref=np.zeros(capacity, dtype=np.int64),
        keys=DrawdownKeys(
            priority=np.zeros(capacity, dtype=np.int64),
            expires=np.zeros(capacity, dtype=np.int64),
            type_rank=np.zeros(capacity, dtype=np.int64),
            effective=np.zeros(capacity, dtype=np.int64),
            id_rank=np.zeros(capacity, dtype=np.int64),
            recharge_number=np.zeros(capacity, dtype=np.int64),
        ),
        held=np.zeros(1, dtype=np.int64),
        rolls_to=np.zeros(capacity, dtype=np.int64),
    )
    wallets = Wallets(
        balance=np.zeros(n_currencies, dtype=np.int64),
        overdraft=np.zeros(n_currencies, dtype=np.int64),
        drawdown=np.zeros((n_currencies, capacity), dtype=np.int64),
        n_drawdown=np.zeros(n_currencies, dtype=np.int64),
        recharges=np.zeros(n_currencies, dtype=np.int64),
        spend_month=np.zeros(n_currencies, dtype=np.int64),
        spent=np.zeros(n_currencies, dtype=np.int64),
        expiring=np.zeros((n_currencies, capacity), dtype=np.int64),
        expiring_head=np.zeros(n_currencies, dtype=np.int64),
        expiring_tail=np.zeros(n_currencies, dtype=np.int64),
        totals=np.zeros(n_currencies, dtype=np.int64),
        touched=np.zeros(n_currencies, dtype=np.bool_),
    )
    batch = np.zeros(capacity, dtype=np.int64)
    for c in range(first, end):
        before = entries.written[0]
        replay_customer(
            entries, book, wallets, batch, grants, happenings, events, settings, c, block, until
        )
        # A customer's rows are in time order: its first and last row bound its times.
        after = entries.written[0]
        if after > before:
            entries.span[0] = min(entries.span[0], entries.rows[before, O_TIME])
            entries.span[1] = max(entries.span[1], entries.rows[after - 1, O_TIME])
        for k in range(n_currencies):
            entries.recharges[c * n_currencies + k] = wallets.recharges[k]
            entries.overdrafts[c * n_currencies + k] = wallets.overdraft[k] >= 0
