"""The fast engine's input columns: a `PreparedReplay` as the kernel's integer arrays.

Customers get codes in customer id order, currencies in currency id order. The consumptions come
in the order of things already (`inputs.prepare`): the rows the kernel replays (inside the horizon,
cost above 0) are taken in one compiled pass, keeping each one's table row for the outputs. The
grants that take part (taking effect inside the horizon, not voided before) are grouped by customer
and their expiries, voids and taking effect sorted into the order of things
(`order.happens_before`) by a compiled pass per customer. Amounts become minor units of their
currency, money of auto-recharge spend integers of one scale (`money.spend_units`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import polars as pl
from numba import njit

from pricing_lab import small_pages
from pricing_lab.ledger.inputs import PreparedReplay
from pricing_lab.ledger.kernel import (
    NO_LIMIT,
    UNCOUNTED,
    EventColumns,
    GrantColumns,
    Happenings,
    RechargeSettings,
)
from pricing_lab.ledger.model import GRANT_SOURCES, GRANT_TYPES, AutoRecharge
from pricing_lab.ledger.order import (
    EXPIRY,
    ROLLOVER_SOURCE,
    TAKES_EFFECT,
    TYPE_RANK_BY_CODE,
    VOID,
    DrawdownKeys,
    above_recharge_ids,
    happens_before,
    id_ranks,
)
from pricing_lab.limits import GRANT_EXPIRIES
from pricing_lab.money import quantize, spend_units, to_minor_units
from pricing_lab.timeutil import NEVER_US, to_micros

CHUNKS = 32  # customer ranges per replay (threads take them in turn; progress is per range)


@dataclass(frozen=True, slots=True, kw_only=True)
class KernelInput:
    """Everything the kernel reads, and what the outputs need to name what it wrote."""

    customers: pl.Series  # customer ids by code (sorted)
    currency_ids: tuple[str, ...]  # by code (sorted)
    precisions: np.ndarray  # by currency code
    grants: GrantColumns
    grant_row: np.ndarray  # per GrantColumns entry: its row in the grant table
    grant_type: np.ndarray  # per GrantColumns entry: position in model.GRANT_TYPES
    grant_source: np.ndarray  # per GrantColumns entry: position in model.GRANT_SOURCES
    happenings: Happenings
    events: EventColumns
    event_row: np.ndarray  # per kept consumption row: its row in `prepared.consumptions`
    settings: RechargeSettings
    block: bool
    until: int

    def room(self) -> np.ndarray:
        """Ledger rows before each customer (and, last, in all) if every customer wrote as many
        rows as it can: a grant (table or auto-recharge) takes effect, settles debt (two rows)
        and closes once, and is emptied by at most one CONSUMED entry; each consumption row ends
        with at most one more (a partial draw or the overdraft)."""
        per_customer = np.diff(self.events.start) + 5 * (
            np.diff(self.grants.start) + self._recharges_room()
        )
        return np.concatenate([[0], np.cumsum(per_customer)]).astype(np.int64)

    def capacity(self, first: int, end: int) -> int:
        """The most grants one customer of first … end − 1 holds: its table grants, an
        OVERDRAFT grant per currency, at most one auto-recharge per consumption row."""
        sizes = np.diff(self.grants.start) + self._recharges_room() + len(self.currency_ids) + 1
        return int(sizes[first:end].max(initial=1))

    def events_of(self, first: int, end: int) -> int:
        """How many events customers first … end − 1 have (the most they can have denied)."""
        lo, hi = self.events.start[first], self.events.start[end]
        return int(np.count_nonzero(self.events.new_event[lo:hi]))

    def chunks(self) -> list[tuple[int, int]]:
        """Customer ranges of about equal numbers of consumption rows (usage is skewed: a few
        customers can have most of the events)."""
        n_customers = len(self.customers)
        if n_customers == 0:
            return []
        starts = self.events.start
        targets = np.linspace(0, starts[-1], CHUNKS + 1)[1:-1]
        cuts = np.clip(np.searchsorted(starts, targets, side="right"), 0, n_customers)
        bounds = np.unique(np.concatenate([[0], cuts, [n_customers]]))
        return [(int(lo), int(hi)) for lo, hi in itertools.pairwise(bounds)]

    def _recharges_room(self) -> np.ndarray:
        recharging = np.any(self.settings.on, axis=1)[: len(self.customers)]
        return np.where(recharging, np.diff(self.events.start), 0)


def kernel_input(prepared: PreparedReplay) -> KernelInput:
    """The kernel's arrays for a prepared replay. Two threads share the work: the consumption
    rows are taken on the second while the grants' columns are built (neither needs the other
    until the customers are numbered), then the grants' happenings are sorted there while the
    event columns and auto-recharge settings are built (the compiled passes and Polars release
    the GIL)."""
    start_us, until_us = to_micros(prepared.start), to_micros(prepared.until)
    currency_ids = tuple(c.id for c in prepared.currencies)
    precisions = np.array([c.precision for c in prepared.currencies], dtype=np.int64)
    table = prepared.consumptions
    with ThreadPoolExecutor(max_workers=1) as pool:
        taking = pool.submit(_kept_consumptions, table, start_us, until_us)
        # Grants that take part: take effect inside the horizon, not voided before that.
        grant_table = prepared.grant_table
        effective = grant_table["effective_at"].to_physical().to_numpy()
        voided = grant_table["voided_at"].to_physical().fill_null(NEVER_US).to_numpy()
        takes_part = (effective >= start_us) & (effective < until_us) & (voided > effective)
        grants = grant_table.filter(pl.Series(takes_part))
        grant_customers = grants["customer_id"].unique()
        currency_of_row = _positions(grants["currency_id"], currency_ids)
        amount = _minor_units(grants["amount"], currency_of_row, precisions, prepared.scale)
        recharging = pl.DataFrame(
            {
                "customer_id": [s.customer_id for s in prepared.auto_recharges],
                "currency_id": [s.currency_id for s in prepared.auto_recharges],
            },
            schema={"customer_id": pl.String, "currency_id": pl.String},
        )
        above = _above_recharge_ids(grants, recharging)
        rollover = (grants["source"] == ROLLOVER_SOURCE).to_numpy()
        # The ids' rank (a sort of the grant ids) is taken on the second thread too.
        ranking = pool.submit(id_ranks, grants["grant_id"], above, rollover)
        kept = taking.result()
        customers = pl.concat([kept.run_customers, grant_customers]).unique().sort()
        n_customers = len(customers)

        # Grants by customer code (stable: the table order within a customer is kept).
        owner = _positions(grants["customer_id"], customers)
        by_customer = np.argsort(owner, kind="stable")
        currency = currency_of_row[by_customer]
        grant_type = _positions(grants["type"], GRANT_TYPES)[by_customer]
        keys = DrawdownKeys(
            priority=grants["priority"].to_numpy().astype(np.int64)[by_customer],
            expires=grants["expires_at"].to_physical().fill_null(NEVER_US).to_numpy()[by_customer],
            type_rank=TYPE_RANK_BY_CODE[grant_type],
            effective=effective[takes_part][by_customer],
            id_rank=ranking.result()[by_customer],
            recharge_number=np.zeros(len(by_customer), dtype=np.int64),
        )
        grant_start = np.searchsorted(owner[by_customer], np.arange(n_customers + 1))
        grant_start = grant_start.astype(np.int64)
        # The grants' happenings are sorted on the second thread meanwhile.
        sorting = pool.submit(
            _grant_happenings,
            grant_start,
            voided[takes_part][by_customer],
            until_us,
            currency,
            keys,
        )
        grant_columns = GrantColumns(
            start=grant_start,
            currency=currency,
            amount=amount[by_customer],
            keys=keys,
            rolls_to=_rollover_links(grants, prepared.rollovers, by_customer),
            is_rollover=rollover[by_customer],
        )
        run_code = _positions(kept.run_customers, customers)  # increasing, as the runs are
        first_run = np.searchsorted(run_code, np.arange(n_customers + 1))
        events = EventColumns(
            start=np.searchsorted(kept.run, first_run).astype(np.int64),
            time=kept.time,
            new_event=kept.new_event,
            currency=_event_currencies(table["currency_id"], currency_ids, kept.row),
            cost=kept.cost,
        )
        settings = _recharge_settings(prepared, customers, currency_ids)
        grant_source = _positions(grants["source"], GRANT_SOURCES)[by_customer]
        happenings = sorting.result()
    return KernelInput(
        customers=customers,
        currency_ids=currency_ids,
        precisions=precisions,
        grants=grant_columns,
        grant_row=np.flatnonzero(takes_part)[by_customer],
        grant_type=grant_type,
        grant_source=grant_source,
        happenings=happenings,
        events=events,
        event_row=kept.row,
        settings=settings,
        block=prepared.enforcement == "block",
        until=until_us,
    )


class _Kept(NamedTuple):
    """The consumption rows the kernel replays (`_kept_consumptions`)."""

    run_customers: pl.Series  # the customer id of each run of equal customer ids, in order
    row: np.ndarray  # each kept row's row in the table (`index_dtype`)
    time: np.ndarray
    cost: np.ndarray
    run: np.ndarray  # its customer run (`index_dtype`)
    new_event: np.ndarray  # bool: it starts an event among the kept rows


def index_dtype(n: int) -> type[np.signedinteger]:
    """The integer type of indexes below `n`: 32 bits while they fit (half the memory; a table
    of 2^31 rows or more runs the compiled passes' 64-bit form, compiled at its first use)."""
    return np.int32 if n < 2**31 else np.int64


def _kept_consumptions(table: pl.DataFrame, start_us: int, until_us: int) -> _Kept:
    """The consumption rows inside [start_us, until_us) with a cost (`_kept_rows`)."""
    customer_column, event_column = table["customer_id"], table["event_id"]
    cost = table["cost_units"]
    n = table.height
    # Runs of equal ids (a null equal to a null), numbered from 0.
    customer_run = customer_column.rle_id().to_numpy()
    run_starts = np.flatnonzero(np.diff(customer_run, prepend=-1))
    row = small_pages.empty(n, index_dtype(n))
    run = small_pages.empty(n, index_dtype(n))
    time = small_pages.empty(n)
    kept_cost = small_pages.empty(n)
    new_event = small_pages.empty(n, np.bool_)
    n_kept = _kept_rows(
        table["timestamp"].to_physical().to_numpy(),  # microseconds (CONSUMPTION_SCHEMA)
        (cost.fill_null(0) if cost.null_count() else cost).to_numpy(),
        customer_run,
        event_column.rle_id().to_numpy(),
        start_us,
        until_us,
        row,
        time,
        kept_cost,
        run,
        new_event,
    )
    # Views of the kept rows: the room of the rows left out is not worth a copy.
    return _Kept(
        run_customers=customer_column.gather(run_starts),  # one id per run
        row=row[:n_kept],
        time=time[:n_kept],
        cost=kept_cost[:n_kept],
        run=run[:n_kept],
        new_event=new_event[:n_kept],
    )


def _above_recharge_ids(grants: pl.DataFrame, recharging: pl.DataFrame) -> np.ndarray:
    """`order.above_recharge_ids`, asked only of the grants of customers with an auto-recharge
    setting (False for the others, as it would answer)."""
    rows = grants["customer_id"].is_in(recharging["customer_id"].implode()).to_numpy()
    above = np.zeros(grants.height, dtype=np.bool_)
    if rows.any():
        above[rows] = above_recharge_ids(grants.filter(pl.Series(rows)), recharging)
    return above


def _minor_units(
    amounts: pl.Series, currency: np.ndarray, precisions: np.ndarray, scale: int
) -> np.ndarray:
    """Decimal amounts at `scale` places as minor units of each one's currency (exact: an
    amount has at most its currency's precision)."""
    unscaled = amounts.to_physical().cast(pl.Int64).to_numpy()
    factors = (10 ** (scale - precisions)).astype(np.int64)
    result: np.ndarray = unscaled // factors[currency]
    return result


def _event_currencies(
    currency_column: pl.Series, currency_ids: tuple[str, ...], event_row: np.ndarray
) -> np.ndarray:
    if len(currency_ids) == 1 or len(event_row) == 0:
        return np.zeros(len(event_row), dtype=np.int64)
    codes = currency_column.replace_strict(
        {k: i for i, k in enumerate(currency_ids)}, default=-1, return_dtype=pl.Int64
    )
    result: np.ndarray = codes.to_numpy()[event_row]
    return result


def _recharge_settings(
    prepared: PreparedReplay, customers: pl.Series, currency_ids: tuple[str, ...]
) -> RechargeSettings:
    """Auto-recharge settings per customer × currency (of the customers replayed)."""
    shape = (max(len(customers), 1), max(len(currency_ids), 1))
    settings = RechargeSettings(
        on=np.zeros(shape, dtype=np.bool_),
        threshold=np.zeros(shape, dtype=np.int64),
        target=np.zeros(shape, dtype=np.int64),
        unit_price=np.zeros(shape, dtype=np.int64),
        limit=np.full(shape, NO_LIMIT, dtype=np.int64),
        expiry=np.zeros(shape, dtype=np.int64),
    )
    owners = pl.Series([s.customer_id for s in prepared.auto_recharges], dtype=pl.String)
    replayed = owners.is_in(customers.implode()).to_list()
    chosen = tuple(itertools.compress(prepared.auto_recharges, replayed))
    if not chosen:
        return settings
    c = _positions(owners.filter(pl.Series(replayed)), customers)
    k = np.array([currency_ids.index(s.currency_id) for s in chosen], dtype=np.int64)
    # Settings repeat the same few figures: each distinct one is converted once.
    figures: dict[tuple[object, ...], tuple[int, int, int, int, int]] = {}
    for setting in chosen:
        key = _figures_key(setting)
        if key not in figures:
            figures[key] = _figures(setting, prepared)
    values = np.array([figures[_figures_key(s)] for s in chosen], dtype=np.int64).T
    settings.on[c, k] = True
    settings.threshold[c, k], settings.target[c, k], settings.unit_price[c, k] = values[:3]
    settings.limit[c, k], settings.expiry[c, k] = values[3:]
    return settings


def _figures_key(setting: AutoRecharge) -> tuple[object, ...]:
    """What an auto-recharge setting's kernel figures depend on."""
    return (
        setting.currency_id,
        setting.threshold,
        setting.target,
        setting.monthly_spend_limit,
        setting.grant_expiry,
    )


def _figures(setting: AutoRecharge, prepared: PreparedReplay) -> tuple[int, int, int, int, int]:
    """Threshold and target in minor units (rounded up: balances are whole minor units, so
    comparing with the rounded-up figure is comparing with the exact one), the price of one minor
    unit and the monthly spend limit in money units (`money.spend_units`), the expiry code."""
    currency = next(c for c in prepared.currencies if c.id == setting.currency_id)
    precision = currency.precision
    threshold = to_minor_units(quantize(setting.threshold, precision, "up"), precision)
    target = to_minor_units(quantize(setting.target, precision, "up"), precision)
    unit, limit = spend_units(currency.unit_price, precision, setting.monthly_spend_limit)
    expiry = GRANT_EXPIRIES.index(setting.grant_expiry)
    return threshold, target, unit, NO_LIMIT if limit is None else limit, expiry


def _positions(values: pl.Series, names: Sequence[str] | pl.Series) -> np.ndarray:
    """Each value's position in `names` (distinct), as int64."""
    return values.cast(pl.Enum(names)).to_physical().cast(pl.Int64).to_numpy()


@njit(cache=True, nogil=True)
def _kept_rows(
    time: np.ndarray,
    cost: np.ndarray,
    customer_run: np.ndarray,
    event_run: np.ndarray,
    start: int,
    until: int,
    kept_row: np.ndarray,
    kept_time: np.ndarray,
    kept_cost: np.ndarray,
    kept_run: np.ndarray,
    kept_new_event: np.ndarray,
) -> int:  # pragma: no cover - compiled
    """The consumption rows inside [start, until) with a cost, in one pass: their table row,
    time, cost and customer run (runs of equal customer ids), whether each starts a new event
    (run of equal event ids) among the kept rows; returns how many."""
    n_kept = 0
    last_event = -1
    for row in range(len(time)):
        if start <= time[row] < until and cost[row] > 0:
            kept_row[n_kept] = row
            kept_time[n_kept] = time[row]
            kept_cost[n_kept] = cost[row]
            kept_run[n_kept] = customer_run[row]
            kept_new_event[n_kept] = event_run[row] != last_event
            last_event = event_run[row]
            n_kept += 1
    return n_kept


def _rollover_links(
    grants: pl.DataFrame, rollovers: pl.DataFrame, by_customer: np.ndarray
) -> np.ndarray:
    """Per grant in `by_customer` order: the position (in that order) of the rollover grant it
    may roll into (`rollovers`: grant_id, rolls_from), −1 for none."""
    links = np.full(len(by_customer), -1, dtype=np.int64)
    if rollovers.is_empty():
        return links
    rows = grants.select("grant_id").with_row_index("row")
    pairs = rollovers.join(rows, on="grant_id").join(
        rows, left_on="rolls_from", right_on="grant_id", suffix="_from"
    )
    position = np.empty(len(by_customer), dtype=np.int64)
    position[by_customer] = np.arange(len(by_customer))
    slot = pairs["row"].to_numpy().astype(np.int64)
    source = pairs["row_from"].to_numpy().astype(np.int64)
    links[position[source]] = position[slot]
    return links


@njit(cache=True, nogil=True)
def _grant_happenings(
    grant_start: np.ndarray,
    voided: np.ndarray,
    until: int,
    currency: np.ndarray,
    keys: DrawdownKeys,
) -> Happenings:  # pragma: no cover - compiled
    """Every grant's taking effect, and its expiry and void before `until`, customer by customer
    in the order of things (`_sort_happenings`)."""
    n_customers = len(grant_start) - 1
    n = 0
    most = 0  # the most happenings of one customer
    for c in range(n_customers):
        first = n
        for g in range(grant_start[c], grant_start[c + 1]):
            n += 1 + (keys.expires[g] < until) + (voided[g] < until)
        most = max(most, n - first)
    start = np.empty(n_customers + 1, dtype=np.int64)
    time = np.empty(n, dtype=np.int64)
    phase = np.empty(n, dtype=np.int64)
    grant = np.empty(n, dtype=np.int64)
    scratch = np.empty((3, most), dtype=np.int64)
    n = 0
    for c in range(n_customers):
        start[c] = n
        for g in range(grant_start[c], grant_start[c + 1]):
            if keys.expires[g] < until:
                time[n], phase[n], grant[n] = keys.expires[g], EXPIRY, g
                n += 1
            if voided[g] < until:
                time[n], phase[n], grant[n] = voided[g], VOID, g
                n += 1
            time[n], phase[n], grant[n] = keys.effective[g], TAKES_EFFECT, g
            n += 1
        _sort_happenings(start[c], n, time, phase, grant, currency, keys, scratch)
    start[n_customers] = n
    return Happenings(start, time, phase, grant)


# Compiled without numba's reference counting, as the kernel's `replay_customer` is (see
# `kernel`): it allocates nothing, and `happens_before` is inlined into it.
@njit(nogil=True, **UNCOUNTED)
def _sort_happenings(
    lo: int,
    hi: int,
    time: np.ndarray,
    phase: np.ndarray,
    grant: np.ndarray,
    currency: np.ndarray,
    keys: DrawdownKeys,
    scratch: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Sort happenings lo … hi − 1 into the order of things, in place: an insertion sort (a
    customer has few grants), merge passes when it has many. `scratch`: 3 rows of room."""
    m = hi - lo
    order, spare = scratch[0], scratch[1]
    for j in range(m):
        order[j] = lo + j
    if m <= 32:
        for j in range(1, m):
            moving = order[j]
            i = j
            while i > 0 and happens_before(
                currency, keys,
                time[moving], phase[moving], grant[moving],
                time[order[i - 1]], phase[order[i - 1]], grant[order[i - 1]],
            ):  # fmt: skip
                order[i] = order[i - 1]
                i -= 1
            order[i] = moving
    else:
        width = 1
        while width < m:
            for left in range(0, m, 2 * width):
                mid, right = min(left + width, m), min(left + 2 * width, m)
                i, j = left, mid
                for to in range(left, right):
                    take_right = j < right and (
                        i >= mid
                        or happens_before(
                            currency, keys,
                            time[order[j]], phase[order[j]], grant[order[j]],
                            time[order[i]], phase[order[i]], grant[order[i]],
                        )
                    )  # fmt: skip
                    if take_right:
                        spare[to] = order[j]
                        j += 1
                    else:
                        spare[to] = order[i]
                        i += 1
            order, spare = spare, order
            width *= 2
    moved = scratch[2]
    for column in (time, phase, grant):
        for j in range(m):
            moved[j] = column[order[j]]
        for j in range(m):
            column[lo + j] = moved[j]
