"""The fast engine's outputs: the kernel's rows as the ledger and denied-events tables.

The kernel writes customer by customer, so a sort on time that keeps the row order at equal times
puts its rows in ledger order (customer codes follow customer ids, and a customer's own order at
one instant is its row order; `api.chronological`). Compiled passes do it in a way that stays
cache-friendly at tens of millions of rows, split across cores in threads: from the time span
of the kernel's rows (which the kernel reports, with the grants it made), count rows per time
bucket (`_count_buckets`); move rows into their buckets, keeping their order, as what the output
columns need (`_stage_by_time`); then sort each bucket and write every output column straight into
NumPy buffers that Arrow and Polars take without a copy (`_emit_ledger`): strings as Arrow string
views (16 bytes: a short string inline, else a reference into the data buffers of the table of
names it comes from), amounts as decimal128.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
import polars as pl
import pyarrow as pa
from numba import njit

from pricing_lab import small_pages
from pricing_lab.ledger import frames
from pricing_lab.ledger.columns import KernelInput
from pricing_lab.ledger.inputs import PreparedReplay
from pricing_lab.ledger.kernel import (
    D_BALANCE,
    D_COST,
    D_CURRENCY,
    D_EVENT,
    KIND_RECHARGE,
    KIND_TABLE,
    N_OUT,
    O_AMOUNT,
    O_BALANCE,
    O_CURRENCY,
    O_CUSTOMER,
    O_EVENT,
    O_KIND,
    O_REF,
    O_TIME,
    O_TYPE,
    KernelRows,
    engine_threads,
)
from pricing_lab.ledger.model import DENIED_REASON, ENTRY_TYPES, GRANT_SOURCES, GRANT_TYPES
from pricing_lab.ledger.order import overdraft_grant_ids, recharge_grant_ids

# Staged rows (in time buckets, `_stage_by_time`): time, amount and balance at the replay's
# scale, grant code among the grant names (its customer, currency, type and source are the
# grant's: `GrantNames`), S_CODES = (consumption table row of a CONSUMED entry's event + 1, 0
# for none) << 5 | entry type << 2 | feature_id not null << 1 | event_id not null. The staged
# rows are fresh memory, so they hold only what the grant code and the table row do not give:
# the emit reads the rest (the event's event_id and feature_id views) by them.
S_TIME, S_AMOUNT, S_BALANCE, S_GRANT, S_CODES = range(5)
N_STAGED = 5
# Grant types and sources of the grants the kernel makes (positions in model.GRANT_TYPES /
# model.GRANT_SOURCES).
PAID_CODE, OVERDRAFT_CODE = GRANT_TYPES.index("PAID"), GRANT_TYPES.index("OVERDRAFT")
AUTO_RECHARGE_SOURCE, OVERDRAFT_SOURCE = (
    GRANT_SOURCES.index("auto_recharge"),
    GRANT_SOURCES.index("overdraft"),
)
# The ledger's string columns built from views, in `_emit_ledger`'s order; the last,
# currency_id, only when the replay has more than one currency (else it is a constant column).
STRING_COLUMNS = (
    "customer_id",
    "entry_type",
    "grant_id",
    "grant_type",
    "grant_source",
    "event_id",
    "feature_id",
    "currency_id",
)
ROWS_PER_BUCKET, MAX_BUCKETS = 8192, 4096  # time buckets of the ledger-order pass
# A grant's facts (`_facts`): customer code << FACT_CUSTOMER | currency code << FACT_CURRENCY |
# grant type << 3 | grant source.
FACT_CURRENCY, FACT_CUSTOMER = 6, 30
CURRENCY_MASK = (1 << (FACT_CUSTOMER - FACT_CURRENCY)) - 1
# A string column as Arrow string views: views (int64 pairs), not null, data buffers.
StringViews = tuple[np.ndarray, np.ndarray, list[pa.Buffer]]


class GrantNames(NamedTuple):
    """Every grant a ledger row can name, by grant code (`_grant_names`)."""

    ids: pl.Series  # grant_id
    recharge_base: np.ndarray  # per customer × currency pair: its first auto-recharge's code
    overdraft_code: np.ndarray  # per customer × currency pair: its OVERDRAFT grant's code
    facts: np.ndarray  # per code: its customer, currency, type and source (`_facts`)


def ledger_frame(made: KernelRows, inputs: KernelInput, prepared: PreparedReplay) -> pl.DataFrame:
    """The ledger, in ledger order, from the kernel's rows (`made`, whose buffer is taken: once
    its rows are staged, its memory holds the output columns, `_in_dead_memory`)."""
    kernel_rows = made.buffer  # emptied below: nothing else holds the buffer then
    starts, lengths = made.starts, made.lengths
    scale = prepared.scale
    n = int(lengths.sum())
    if n == 0:
        return frames.empty_ledger(scale)
    n_currencies = max(len(inputs.currency_ids), 1)
    n_buckets = int(min(max(n // ROWS_PER_BUCKET, 1), MAX_BUCKETS))
    workers = engine_threads()
    # Groups of whole ranges with about equal numbers of rows, one per core.
    cuts = np.searchsorted(np.cumsum(lengths), np.linspace(0, n, workers + 1)[1:-1], "right")
    groups = [
        (starts[lo:hi], lengths[lo:hi])
        for lo, hi in itertools.pairwise([0, *np.unique(cuts).tolist(), len(lengths)])
        if hi > lo
    ]
    consumptions = prepared.consumptions
    with ThreadPoolExecutor(max_workers=workers) as pool:

        def each_group(task: Callable[[int], Any]) -> list[Any]:
            return list(pool.map(task, range(len(groups))))

        # 1. Bucket of a row: (time − t0) >> shift (a shift, not a division, per row).
        t0 = int(made.span[0])
        shift = ((int(made.span[1]) - t0) // n_buckets).bit_length()
        grants = _grant_names(inputs, prepared, made.recharges, made.overdrafts)
        # 2. Rows per time bucket and group; a group's rows go after earlier groups' rows.
        counts = np.zeros((len(groups), n_buckets), dtype=np.int64)
        each_group(lambda g: _count_buckets(kernel_rows[0], *groups[g], t0, shift, counts[g]))
        bucket_starts = np.concatenate([[0], np.cumsum(counts.sum(axis=0))]).astype(np.int64)
        fill_from = bucket_starts[:-1] + np.cumsum(counts, axis=0) - counts
        # 3. Rows into their buckets, as what the output columns need (`S_*`).
        event_ids = _string_views(consumptions["event_id"])
        feature_ids = _string_views(consumptions["feature_id"])
        staged = small_pages.empty((n, N_STAGED))
        factors = (10 ** (scale - inputs.precisions)).astype(np.int64)
        each_group(
            lambda g: _stage_by_time(
                kernel_rows[0],
                groups[g][0],
                groups[g][1],
                fill_from[g],
                t0,
                shift,
                factors,
                n_currencies,
                inputs.grant_row,
                grants.recharge_base,
                grants.overdraft_code,
                inputs.event_row,
                event_ids[1],
                feature_ids[1],
                staged,
            )
        )
        # One value for every row (the scenario, a replay's only currency): a Polars scalar
        # column, filled in only if something needs it.
        constants = {"scenario": prepared.scenario}
        if len(inputs.currency_ids) == 1:
            constants["currency_id"] = inputs.currency_ids[0]
        currency_column = "currency_id" not in constants
        # Staged: the kernel's rows are dead, and the output columns take their pages, the
        # largest first. views: the string columns; money: amount, balance_after as
        # decimal128; numbers: entry_id, timestamp.
        n_views = len(STRING_COLUMNS) - (not currency_column)
        views, money, numbers = _in_dead_memory(
            kernel_rows.pop(), starts * N_OUT, lengths * N_OUT, [(n_views, n, 2), (2, n, 2), (2, n)]
        )
        # 4. Each bucket sorted, its rows written as output columns.
        tables = [
            _string_views(inputs.customers),
            _string_views(pl.Series(ENTRY_TYPES, dtype=pl.String)),
            _string_views(grants.ids),
            _string_views(pl.Series(GRANT_TYPES, dtype=pl.String)),
            _string_views(pl.Series(GRANT_SOURCES, dtype=pl.String)),
            event_ids,
            feature_ids,
            _string_views(pl.Series(inputs.currency_ids, dtype=pl.String)),
        ]
        valid = small_pages.empty((2, n), np.bool_)  # event_id, feature_id not null
        names = tuple(table[0] for table in tables)
        cuts = np.searchsorted(bucket_starts, np.linspace(0, n, workers + 1))
        ranges = list(itertools.pairwise(np.unique(np.clip(cuts, 0, n_buckets)).tolist()))
        list(
            pool.map(
                lambda r: _emit_ledger(
                    r[0],
                    r[1],
                    staged,
                    bucket_starts,
                    currency_column,
                    grants.facts,
                    names,
                    numbers,
                    money,
                    views,
                    valid,
                ),
                ranges,
            )
        )
    strings = {
        name: _string_column(name, views[i], buffers, valid[i - 5] if i in (5, 6) else None)
        for i, (name, (_, _, buffers)) in enumerate(zip(STRING_COLUMNS, tables, strict=True))
        if name not in constants
    }
    timestamps = pa.Array.from_buffers(
        pa.timestamp("us", tz="UTC"), n, [None, pa.py_buffer(numbers[1])]
    )
    columns = {
        "entry_id": _int64_column("entry_id", numbers[0]),
        "timestamp": pl.Series("timestamp", timestamps),
        **strings,
        "amount": _decimal_column("amount", money[0], scale),
        "balance_after": _decimal_column("balance_after", money[1], scale),
    }
    ledger = pl.DataFrame(list(columns.values())).with_columns(
        pl.lit(value, dtype=pl.String).alias(name) for name, value in constants.items()
    )
    return ledger.select(frames.ledger_schema(scale).names())


def _in_dead_memory(
    dead: np.ndarray, starts: np.ndarray, lengths: np.ndarray, shapes: list[tuple[int, ...]]
) -> list[np.ndarray]:
    """Uninitialised int64 arrays of `shapes` in the memory of `dead` (an int64 array no longer
    needed, of which the kernel wrote elements [starts[i], starts[i] + lengths[i]) of its flat
    form), one after the other: the pages it wrote are mapped already, where fresh memory costs
    a page fault and the zeroing of a page on first write. Arrays that do not fit after the
    others are fresh memory. The outputs keep all of `dead` alive: if the written elements they
    leave unused come to more than an eighth of their size, all are fresh memory."""
    free = dead.reshape(-1)
    sizes = [int(np.prod(shape)) for shape in shapes]
    ends = np.cumsum(sizes)
    fits = ends <= len(free)
    placed = int(ends[fits][-1]) if fits.any() else 0
    unused = int(np.clip(starts + lengths - np.maximum(starts, placed), 0, None).sum())
    if placed == 0 or unused > sum(sizes) // 8:
        return [small_pages.empty(shape) for shape in shapes]
    return [
        free[end - size : end].reshape(shape) if fit else small_pages.empty(shape)
        for shape, size, end, fit in zip(shapes, sizes, ends.tolist(), fits, strict=True)
    ]


def denied_frame(denied: np.ndarray, inputs: KernelInput, prepared: PreparedReplay) -> pl.DataFrame:
    """The denied events (block mode) from the kernel's denied rows, in customer order."""
    scale = prepared.scale
    if len(denied) == 0:
        return pl.DataFrame(schema=frames.denied_schema(scale))
    rows = pl.Series(inputs.event_row[denied[:, D_EVENT]])
    currency = denied[:, D_CURRENCY]
    factors = (10 ** (scale - inputs.precisions[currency])).astype(np.int64)
    n = len(denied)
    consumptions = prepared.consumptions
    return pl.DataFrame(
        [
            consumptions["event_id"].gather(rows),
            consumptions["customer_id"].gather(rows),
            consumptions["timestamp"].gather(rows),
            _constant("reason", DENIED_REASON, n),
            pl.Series("currency_id", inputs.currency_ids, dtype=pl.String).gather(currency),
            frames.decimal_series("cost", denied[:, D_COST] * factors, scale),
            frames.decimal_series("balance", denied[:, D_BALANCE] * factors, scale),
            _constant("scenario", prepared.scenario, n),
        ]
    )


def _constant(name: str, value: str, n: int) -> pl.Series:
    return pl.Series(name, [value], dtype=pl.String).gather(np.zeros(n, dtype=np.int64))


def _grant_names(
    inputs: KernelInput, prepared: PreparedReplay, recharges: np.ndarray, overdrafts: np.ndarray
) -> GrantNames:
    """Every grant id a ledger row can name, where the kernel's grants are among them, and
    each one's customer, currency, type and source.

    The names: the grant table's (codes 0 … G−1: table rows), then the auto-recharge grants
    (`recharges`: how many per customer × currency pair; the grant numbered n of pair p has code
    `recharge_base[p]` + n), then the overdraft grants (`overdrafts`: pairs that made one; code
    `overdraft_code[p]`), named by `order.recharge_grant_id` / `order.overdraft_grant_id`.
    """
    n_currencies = max(len(inputs.currency_ids), 1)
    if n_currencies > CURRENCY_MASK:  # the facts hold a currency code in that many bits
        raise ValueError(f"a replay takes at most {CURRENCY_MASK:,} currencies")
    n_table = prepared.grant_table.height
    ends = np.cumsum(recharges)
    recharge_base = n_table + ends - recharges
    n_recharges = int(ends[-1]) if len(ends) else 0
    overdraft_code = n_table + n_recharges + np.cumsum(overdrafts) - 1
    overdraft_pairs = np.flatnonzero(overdrafts)
    recharge_pairs = np.repeat(np.arange(len(recharges)), recharges)
    # Codes of table rows that take no part are never named: their facts stay 0.
    n_names = n_table + n_recharges + len(overdraft_pairs)
    facts = np.zeros(n_names, dtype=np.int64)
    owner = np.repeat(np.arange(len(inputs.customers)), np.diff(inputs.grants.start))
    facts[inputs.grant_row] = _facts(
        owner, inputs.grants.currency, inputs.grant_type, inputs.grant_source
    )
    facts[n_table : n_table + n_recharges] = _facts(
        recharge_pairs // n_currencies,
        recharge_pairs % n_currencies,
        PAID_CODE,
        AUTO_RECHARGE_SOURCE,
    )
    facts[n_table + n_recharges :] = _facts(
        overdraft_pairs // n_currencies,
        overdraft_pairs % n_currencies,
        OVERDRAFT_CODE,
        OVERDRAFT_SOURCE,
    )
    currencies = pl.Series(inputs.currency_ids, dtype=pl.String)
    ids = [prepared.grant_table["grant_id"]]
    if n_recharges:
        names = pl.DataFrame(
            {
                "c": inputs.customers.gather(recharge_pairs // n_currencies),
                "k": currencies.gather(recharge_pairs % n_currencies),
                "n": np.arange(n_recharges) - (recharge_base[recharge_pairs] - n_table),
            }
        )
        ids.append(names.select(recharge_grant_ids("c", "k", "n")).to_series())
    if len(overdraft_pairs):
        names = pl.DataFrame(
            {
                "c": inputs.customers.gather(overdraft_pairs // n_currencies),
                "k": currencies.gather(overdraft_pairs % n_currencies),
            }
        )
        ids.append(names.select(overdraft_grant_ids("c", "k")).to_series())
    return GrantNames(
        ids=pl.concat(ids),
        recharge_base=recharge_base,
        overdraft_code=overdraft_code,
        facts=facts,
    )


def _facts(customer: Any, currency: Any, grant_type: Any, source: Any) -> np.ndarray:
    """A grant's customer and currency codes, type and source (positions in model.GRANT_TYPES
    and model.GRANT_SOURCES) in one integer: what the output columns read of it, in one read."""
    packed = np.left_shift(customer, FACT_CUSTOMER, dtype=np.int64)
    packed |= np.left_shift(currency, FACT_CURRENCY, dtype=np.int64)
    return packed | (np.left_shift(grant_type, 3, dtype=np.int64) | source)


def _string_views(column: pl.Series) -> StringViews:
    """A string column as Arrow string views: the 16-byte views (as int64 pairs), whether each
    value is not null, and the data buffers the long values point into."""
    array = column.to_arrow(compat_level=pl.CompatLevel.newest())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array.type != pa.string_view():
        array = array.cast(pa.string_view())
    buffers = array.buffers()
    begin = array.offset
    views = np.frombuffer(buffers[1], dtype=np.int64).reshape(-1, 2)[begin : begin + len(array)]
    if array.null_count:
        valid = array.is_valid().to_numpy(zero_copy_only=False)
    else:
        valid = np.ones(len(array), dtype=np.bool_)
    return views, valid, [buffer for buffer in buffers[2:] if buffer is not None]


def _string_column(
    name: str, views: np.ndarray, buffers: list[pa.Buffer], valid: np.ndarray | None
) -> pl.Series:
    """A Polars string column from string views (null where `valid` is False)."""
    validity = None
    if valid is not None and not valid.all():
        validity = pa.py_buffer(np.packbits(valid, bitorder="little"))
    array = pa.Array.from_buffers(
        pa.string_view(), len(views), [validity, pa.py_buffer(views), *buffers]
    )
    series = pl.Series(name, array)
    assert isinstance(series, pl.Series)
    return series


def _int64_column(name: str, values: np.ndarray) -> pl.Series:
    """An Int64 column on `values`' memory (through Arrow: a Series made from a NumPy array
    copies it)."""
    array = pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])
    series = pl.Series(name, array)
    assert isinstance(series, pl.Series)
    return series


def _decimal_column(name: str, pairs: np.ndarray, scale: int) -> pl.Series:
    """A Decimal(38, scale) column from decimal128 values as (low, high) int64 pairs."""
    array = pa.Array.from_buffers(pa.decimal128(38, scale), len(pairs), [None, pa.py_buffer(pairs)])
    series = pl.Series(name, array)
    assert isinstance(series, pl.Series)
    return series


@njit(cache=True, nogil=True)
def _count_buckets(
    rows: np.ndarray,
    starts: np.ndarray,
    lengths: np.ndarray,
    t0: int,
    shift: int,
    counts: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Add the number of rows in each time bucket ((time − t0) >> shift) to `counts`."""
    for p in range(len(starts)):
        for r in range(starts[p], starts[p] + lengths[p]):
            counts[(rows[r, O_TIME] - t0) >> shift] += 1


@njit(cache=True, nogil=True)
def _stage_by_time(
    rows: np.ndarray,
    starts: np.ndarray,
    lengths: np.ndarray,
    fill_from: np.ndarray,
    t0: int,
    shift: int,
    factors: np.ndarray,
    n_currencies: int,
    grant_row: np.ndarray,
    recharge_base: np.ndarray,
    overdraft_code: np.ndarray,
    event_row: np.ndarray,
    event_valid: np.ndarray,
    feature_valid: np.ndarray,
    staged: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Move the kernel's rows into their time buckets of `staged` (bucket b from row
    fill_from[b] on), keeping their order, as what the output columns need (`S_*`): amounts at
    the replay's scale, the grant's code among the grant names (`_grant_names`), the entry
    type and the event's table row."""
    filled = fill_from.copy()
    for p in range(len(starts)):
        for r in range(starts[p], starts[p] + lengths[p]):
            b = (rows[r, O_TIME] - t0) >> shift
            to = filled[b]
            filled[b] = to + 1
            kind, ref = rows[r, O_KIND], rows[r, O_REF]
            pair = rows[r, O_CUSTOMER] * n_currencies + rows[r, O_CURRENCY]
            if kind == KIND_TABLE:  # `ref`: the grant's index in the kernel's grant columns
                grant = grant_row[ref]
            elif kind == KIND_RECHARGE:
                grant = recharge_base[pair] + ref
            else:
                grant = overdraft_code[pair]
            k = rows[r, O_CURRENCY]
            staged[to, S_TIME] = rows[r, O_TIME]
            staged[to, S_AMOUNT] = rows[r, O_AMOUNT] * factors[k]
            staged[to, S_BALANCE] = rows[r, O_BALANCE] * factors[k]
            staged[to, S_GRANT] = grant
            codes = rows[r, O_TYPE] << 2
            event = rows[r, O_EVENT]
            if event >= 0:
                position = event_row[event]
                codes |= ((position + 1) << 5) | event_valid[position]
                codes |= feature_valid[position] << 1
            staged[to, S_CODES] = codes


@njit(cache=True, nogil=True)
def _order_by_time(
    times: np.ndarray, order: np.ndarray, counts: np.ndarray
) -> None:  # pragma: no cover - compiled
    """order[:len(times)]: the positions of `times` sorted, equal times in position order.

    A counting sort into sub-buckets of equal time width (a power of two, so that a shift finds
    the sub-bucket: between len(times) / 4 and len(times) / 2 of them), then an insertion sort of
    each (a merge sort past 64 rows): one bucket's rows stay in cache throughout.
    """
    m = len(times)
    first, last = times.min(), times.max()
    n_sub = m // 2 + 1
    shift = 0  # sub-bucket of a time: (time − first) >> shift, below n_sub
    while (last - first) >> shift >= n_sub:
        shift += 1
    counts[: n_sub + 1] = 0
    for j in range(m):
        counts[((times[j] - first) >> shift) + 1] += 1
    for sub in range(n_sub):
        counts[sub + 1] += counts[sub]
    for j in range(m):
        sub = (times[j] - first) >> shift
        order[counts[sub]] = j
        counts[sub] += 1
    start = 0
    for sub in range(n_sub):
        end = counts[sub]  # the scatter moved each sub-bucket's start to its end
        if end - start > 64:
            segment = order[start:end].copy()
            by_time = np.argsort(times[segment], kind="mergesort")
            for j in range(end - start):
                order[start + j] = segment[by_time[j]]
        else:
            for j in range(start + 1, end):
                moving = order[j]
                t = times[moving]
                i = j
                while i > start and times[order[i - 1]] > t:
                    order[i] = order[i - 1]
                    i -= 1
                order[i] = moving
        start = end


@njit(cache=True, nogil=True)
def _emit_ledger(
    b_from: int,
    b_to: int,
    staged: np.ndarray,
    bucket_starts: np.ndarray,
    currency_column: bool,
    grant_facts: np.ndarray,
    tables: Any,
    numbers: np.ndarray,
    money: np.ndarray,
    views: np.ndarray,
    valid: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Buckets [b_from, b_to) of `staged`: sort each on time (stable), then write its rows'
    output columns: `numbers` (entry_id, timestamp), `money` (amount, balance_after as
    decimal128 pairs), `views` (the string columns of STRING_COLUMNS as views into `tables`;
    event_id and feature_id by the staged table row; currency_id only if `currency_column`)
    and `valid` (event_id, feature_id not null)."""
    customers, entry_types, grant_ids, grant_types, grant_sources = tables[:5]
    event_ids, feature_ids, currencies = tables[5:]
    # One bucket's times, their order, sub-bucket counts, and each row's grant code and event
    # (-1 for none).
    times = np.empty(0, dtype=np.int64)
    order = np.empty(0, dtype=np.int64)
    counts = np.empty(0, dtype=np.int64)
    row_grant = np.empty(0, dtype=np.int64)
    row_event = np.empty(0, dtype=np.int64)
    for b in range(b_from, b_to):
        lo, hi = bucket_starts[b], bucket_starts[b + 1]
        if hi == lo:
            continue
        if hi - lo > len(times):
            times = np.empty(hi - lo, dtype=np.int64)
            order = np.empty(hi - lo, dtype=np.int64)
            counts = np.empty(hi - lo + 2, dtype=np.int64)
            row_grant = np.empty(hi - lo, dtype=np.int64)
            row_event = np.empty(hi - lo, dtype=np.int64)
        for i in range(lo, hi):
            times[i - lo] = staged[i, S_TIME]
        _order_by_time(times[: hi - lo], order, counts)
        for i in range(lo, hi):
            r = lo + order[i - lo]
            grant, codes = staged[r, S_GRANT], staged[r, S_CODES]
            numbers[0, i] = i + 1
            numbers[1, i] = staged[r, S_TIME]
            amount, balance = staged[r, S_AMOUNT], staged[r, S_BALANCE]
            money[0, i, 0] = amount
            money[0, i, 1] = amount >> 63
            money[1, i, 0] = balance
            money[1, i, 1] = balance >> 63
            entry_type = (codes >> 2) & 7
            for half in range(2):
                views[1, i, half] = entry_types[entry_type, half]
            valid[0, i] = codes & 1
            valid[1, i] = (codes >> 1) & 1
            row_grant[i - lo] = grant
            row_event[i - lo] = (codes >> 5) - 1
        # What the grant and the event give is read at random from tables of every grant and of
        # every consumption: in loops of their own, many of those reads are in flight at once.
        for i in range(lo, hi):
            grant = row_grant[i - lo]
            facts = grant_facts[grant]
            c, k = facts >> FACT_CUSTOMER, (facts >> FACT_CURRENCY) & CURRENCY_MASK
            grant_type, source = (facts >> 3) & 7, facts & 7
            for half in range(2):
                views[0, i, half] = customers[c, half]
                views[2, i, half] = grant_ids[grant, half]
                views[3, i, half] = grant_types[grant_type, half]
                views[4, i, half] = grant_sources[source, half]
                if currency_column:
                    views[7, i, half] = currencies[k, half]
        for i in range(lo, hi):
            event = row_event[i - lo]
            for half in range(2):
                views[5, i, half] = event_ids[event, half] if event >= 0 else 0
                views[6, i, half] = feature_ids[event, half] if event >= 0 else 0
