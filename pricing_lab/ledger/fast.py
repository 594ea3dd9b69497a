"""The fast engine (the default): one compiled kernel over sorted columns in integer minor units.

It gives exactly the reference engine's ledger. Python only prepares columns (vectorised, Polars
and NumPy); the rules run in `_replay_kernel`, a numba function that walks customers in customer
id order and, per customer, the instants of its grant happenings and events in the order of
`order.happening_key`. Grants of one customer live in small arrays; the grants an event can draw
from are kept per currency in draw-down order. Compiled passes then put the kernel's rows in
ledger order and write the output columns straight into the buffers Arrow and Polars take over
(`_Columns.ledger`). Every pass over all rows runs on every core, in threads (compiled code
releases the GIL), and writes into memory NumPy allocated. Fresh pages cost a fault each: the
engine keeps a replay's scratch arrays for the next replay (`_Scratch`), and has NumPy ask for
plain pages, not huge ones, whose faults may compact memory first (`_small_pages`). Replays of
the same events one after another (a comparison's scenarios) share what depends on the events
alone (`EngineWork`).

Draw-down ties on `grant_id` need the order of ids the kernel creates
(`{customer}:auto_recharge:{currency}:{n}`) among the input's ids: input ids never start with that
prefix (a validation rule), so each input id sorts wholly before or after every recharge id of the
customer and currency. Ranks only break ties on every other key, so only grants that tie are
put in id order (`_tie_ranks`): an input grant's rank says on which side of the prefix its id
is and its place among the grants it ties with; recharge grants rank between the two sides and
compare among themselves on the decimal text of n.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import polars as pl
import pyarrow as pa
from numba import njit

from pricing_lab.ledger import frames
from pricing_lab.ledger.inputs import PreparedReplay
from pricing_lab.ledger.model import ENTRY_TYPES, GRANT_SOURCES, GRANT_TYPES, AutoRecharge
from pricing_lab.ledger.order import TYPE_RANK, Phase
from pricing_lab.money import quantize, to_minor_units
from pricing_lab.timeutil import DAY_US, NEVER_US, to_micros

try:
    from numpy._core import multiarray
except ImportError:  # NumPy 1.x
    from numpy.core import multiarray  # type: ignore[no-redef]

# NumPy's switch for huge pages (`_small_pages`): takes the new setting, returns the old one.
_set_madvise_hugepage: Callable[[bool], bool]
_set_madvise_hugepage = multiarray._set_madvise_hugepage  # type: ignore[attr-defined]

EXPIRY_CODES = {"none": 0, "1_month": 1, "1_year": 2}

# Kernel output columns (one int64 row per ledger entry).
O_TIME, O_CUSTOMER, O_CURRENCY, O_TYPE, O_KIND, O_REF, O_AMOUNT, O_BALANCE, O_EVENT = range(9)
N_OUT = 9
# Staged rows (in time buckets, `_stage_by_time`): time, amount and balance at the replay's scale,
# grant code, S_CODES = (customer × currencies + currency) << 10 | entry type << 7 | grant type
# << 5 | grant source << 2 | feature_id not null << 1 | event_id not null, then the event_id and
# feature_id string views.
S_TIME, S_AMOUNT, S_BALANCE, S_GRANT, S_CODES, S_EVENT_VIEWS = range(6)
N_STAGED = S_EVENT_VIEWS + 4
# The ledger's string columns built from views, in `_emit_ledger`'s order.
STRING_COLUMNS = (
    "customer_id",
    "currency_id",
    "entry_type",
    "grant_id",
    "grant_type",
    "grant_source",
    "event_id",
    "feature_id",
)
# Grant kinds in the kernel's output.
KIND_STATIC, KIND_RECHARGE, KIND_OVERDRAFT = 0, 1, 2
# Entry type codes = positions in model.ENTRY_TYPES.
GRANTED, CONSUMED, EXPIRED, VOIDED, TRANSFER_SOURCE, TRANSFER_TARGET = range(6)
# Grant types and sources of the grants the kernel makes (positions in model.GRANT_TYPES /
# model.GRANT_SOURCES).
GRANT_TYPE_PAID, GRANT_TYPE_OVERDRAFT = GRANT_TYPES.index("PAID"), GRANT_TYPES.index("OVERDRAFT")
GRANT_SOURCE_AUTO_RECHARGE = GRANT_SOURCES.index("auto_recharge")
GRANT_SOURCE_OVERDRAFT = GRANT_SOURCES.index("overdraft")
CHUNKS = 32  # customer chunks per replay, for progress reports
SCRATCH_BYTES = 128 << 20  # scratch arrays kept from one replay for the next (`_Scratch`)
# Draw-down ranks (`_tie_ranks`): input grants 2 × (SIDE × above + n), recharge grants between.
SIDE = 1 << 40
RECHARGE_RANK = 2 * SIDE - 1
EXPIRY, VOID, TAKES_EFFECT = int(Phase.EXPIRY), int(Phase.VOID), int(Phase.TAKES_EFFECT)
ROWS_PER_BUCKET, MAX_BUCKETS = 8192, 4096  # time buckets of the ledger-order pass
# A string column as Arrow string views: views (int64 pairs), not null, data buffers.
StringViews = tuple[np.ndarray, np.ndarray, list[pa.Buffer]]


@dataclass(slots=True)
class EngineWork:
    """What fast-engine replays of the same events, one after another (a comparison's
    scenarios), share: the columns the engine derives from the consumptions' event columns
    alone, not from their costs (`_EventSide`), kept for the last replay's
    `PreparedReplay.events_key` and used only by replays with the same key. Holding one keeps
    those columns (~40 bytes per consumption row) in memory."""

    events: _EventSide | None = None

    def event_side(self, prepared: PreparedReplay) -> _EventSide:
        """The event-side columns of `prepared`'s consumptions: those of the last replay when
        it had the same event columns, else new ones (kept for the next)."""
        events = self.events
        if events is None or events.key is not prepared.events_key:
            events = self.events = _EventSide(prepared.consumptions, prepared.events_key)
        return events


class _PageSetting:
    """How many replays run without huge pages, and NumPy's setting before the first."""

    lock = threading.Lock()
    replays = 0
    before = True


@contextmanager
def _small_pages() -> Iterator[None]:
    """NumPy's new arrays in plain pages meanwhile (the setting is the process's: it is put back
    when the last replay running ends).

    NumPy asks for huge pages for large arrays; with THP `defrag=madvise` a fault on such memory
    may compact memory first, which costs more than the faults it saves (measured: the engine
    of a 10M-event replay 5.9 -> 2.8 s)."""
    with _PageSetting.lock:
        if _PageSetting.replays == 0:
            _PageSetting.before = _set_madvise_hugepage(False)
        _PageSetting.replays += 1
    try:
        yield
    finally:
        with _PageSetting.lock:
            _PageSetting.replays -= 1
            if _PageSetting.replays == 0:
                _set_madvise_hugepage(_PageSetting.before)


def replay_fast(
    prepared: PreparedReplay,
    progress: Callable[[int, int], None] | None = None,
    *,
    work: EngineWork | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The ledger and denied events of a prepared replay, from the compiled kernel.

    `work`: what the previous replay of the same events left (see `EngineWork`); the outputs
    are the same with or without it."""
    with _small_pages():
        return _replay(prepared, progress, work)


def _replay(
    prepared: PreparedReplay,
    progress: Callable[[int, int], None] | None,
    work: EngineWork | None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    scratch = _Scratch()
    columns = _Columns(prepared, work, scratch)
    kernel_rows, denied_rows = _run_kernel(columns, progress)
    columns.drop_kernel_inputs()
    ledger, denied = columns.ledger(kernel_rows), columns.denied(denied_rows)
    scratch.give_back()  # the outputs never live in scratch arrays
    return ledger, denied


class _Scratch:
    """Scratch arrays of one replay, kept for the next while they fit in SCRATCH_BYTES.

    The first write to fresh memory costs a page fault per 4 KiB page (measured on this
    project's machines: ~0.45 ms per MB, about a third of a replay's time). A replay of a
    million events writes ~100 MB of arrays it drops at the end (the staged rows, the kept
    event rows); the next replay (a comparison's next scenario, a partitioned run's next
    range, a notebook's next try) writes into those pages instead. A replay takes the kept
    arrays (a replay running meanwhile in another thread makes its own) and gives them back when
    its outputs are built; arrays bigger than SCRATCH_BYTES are never held, so that a big
    replay still frees its kernel inputs as soon as the kernel has run.
    """

    lock = threading.Lock()
    kept: ClassVar[dict[str, np.ndarray]] = {}  # the process's kept arrays, by use

    def __init__(self) -> None:
        self.lent: dict[str, np.ndarray] = {}

    def array(self, use: str, shape: tuple[int, ...], dtype: type = np.int64) -> np.ndarray:
        """An uninitialised array of `shape` for `use`: in the kept array when it is big
        enough."""
        size = int(np.prod(shape))
        with _Scratch.lock:
            buffer = _Scratch.kept.pop(use, None)
        if buffer is None or buffer.size < size or buffer.dtype != dtype:
            buffer = None  # a kept array too small is let go before a new one is made
            buffer = np.empty(size, dtype=dtype)
        if buffer.nbytes <= SCRATCH_BYTES:
            self.lent[use] = buffer
        return buffer[:size].reshape(shape)

    def give_back(self) -> None:
        """Keep this replay's arrays for the next one, while all kept fit in SCRATCH_BYTES."""
        with _Scratch.lock:
            for use, buffer in self.lent.items():
                others = sum(b.nbytes for u, b in _Scratch.kept.items() if u != use)
                if others + buffer.nbytes <= SCRATCH_BYTES:
                    _Scratch.kept[use] = buffer
        self.lent.clear()


def _run_kernel(
    columns: _Columns, progress: Callable[[int, int], None] | None
) -> tuple[list[Any], np.ndarray]:
    """The kernel's ledger rows, as [one buffer, the parts of it (or not) that chunks wrote, in
    customer order], and its denied rows."""
    parts: list[np.ndarray] = []
    denials: list[np.ndarray] = []
    n_customers = len(columns.customers)
    chunks = columns.chunks()
    # One buffer for every chunk's rows, each chunk in its own region of room (`_Columns.room`):
    # only the pages of the rows written are ever touched, and the outputs reuse them
    # (`_output_buffers`).
    room = columns.room()
    rows = np.empty((int(room[-1]), N_OUT), dtype=np.int64)
    # Customers never share credits: chunks run on every core (the kernel releases the GIL),
    # and their rows are kept in chunk order.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        done = pool.map(
            lambda chunk: _replay_kernel(
                rows[room[chunk[0]] : room[chunk[1]]], *columns.kernel_args(*chunk)
            ),
            chunks,
        )
        for (_, hi), (out, n_out, denied, n_denied) in zip(chunks, done, strict=True):
            parts.append(out[:n_out])
            denials.append(denied[:n_denied])
            if progress is not None:
                progress(hi, n_customers)
    denied_rows = np.concatenate(denials) if denials else np.empty((0, 4), dtype=np.int64)
    return [rows, parts], denied_rows


class _Columns:
    """A prepared replay as the kernel's sorted columns, and the way back to output tables."""

    def __init__(
        self,
        prepared: PreparedReplay,
        work: EngineWork | None = None,
        scratch: _Scratch | None = None,
    ) -> None:
        self.prepared = prepared
        self.scratch = _Scratch() if scratch is None else scratch
        start_us, until_us = to_micros(prepared.start), to_micros(prepared.until)
        self.until_us = until_us
        self.currency_ids = [c.id for c in prepared.currencies]
        currency_code = {c: i for i, c in enumerate(self.currency_ids)}
        self.precisions = np.array([c.precision for c in prepared.currencies], dtype=np.int64)
        self.block = prepared.source.enforcement == "block"

        # The event rows are read on another core meanwhile (Polars and the compiled pass
        # release the GIL): the grants' columns are read in table order, then put in customer
        # order once the customers are known.
        with ThreadPoolExecutor(max_workers=1) as pool:
            reading = pool.submit(_EventColumns, prepared, start_us, until_us, work, self.scratch)
            # Grants that take part: take effect inside the horizon, not voided before that.
            table = prepared.grant_table
            effective = table["effective_at"].dt.epoch("us").to_numpy()
            voided = table["voided_at"].dt.epoch("us").fill_null(NEVER_US).to_numpy()
            takes_part = (effective >= start_us) & (effective < until_us) & (voided > effective)
            grants = table if takes_part.all() else table.filter(pl.Series(takes_part))
            grant_customers = grants["customer_id"]
            own_customers = grant_customers.gather(_run_starts(grant_customers)).unique().sort()
            own_code = _positions(grant_customers, own_customers)
            type_code = _codes(grants["type"], GRANT_TYPES)
            source_code = _codes(grants["source"], GRANT_SOURCES)
            currency = _codes(grants["currency_id"], self.currency_ids)
            amount = grants["amount"].to_physical()  # at the replay's scale
            factors = 10 ** (prepared.scale - self.precisions)
            if np.any(factors != 1):
                amount = amount // pl.Series(factors[currency])
            in_table_order = {
                "amount": amount.cast(pl.Int64).to_numpy(),
                "priority": grants["priority"].to_numpy().astype(np.int64),
                "expires": grants["expires_at"].dt.epoch("us").fill_null(NEVER_US).to_numpy(),
            }
            ids = _string_bytes(table["grant_id"])
            events = reading.result()
        self.customers = (
            pl.concat([events.run_customers, own_customers]).unique().sort()
        )  # sorted ids: a customer's code is its position
        n_customers, n_currencies = len(self.customers), len(self.currency_ids)

        # Grants by customer code (stable: the table order within a customer is kept), each
        # column put in that order as an array. `g_row`: each kernel grant's table row, its
        # code among the grant names (`_kernel_grant_names`).
        g_customer = _positions(own_customers, self.customers)[own_code]
        by_customer = np.argsort(g_customer, kind="stable")
        g_customer = g_customer[by_customer]
        self.g_row = np.flatnonzero(takes_part)[by_customer]
        self.g_type_code = type_code[by_customer]
        self.g_source_code = source_code[by_customer]
        self.g_currency = currency[by_customer]
        self.g_amount = in_table_order["amount"][by_customer]
        self.g_priority = in_table_order["priority"][by_customer]
        self.g_expires = in_table_order["expires"][by_customer]
        type_rank = np.array([TYPE_RANK[t] for t in GRANT_TYPES], dtype=np.int64)
        self.g_tclass = type_rank[self.g_type_code]
        self.g_effective = effective[self.g_row]
        g_voided = voided[self.g_row]
        self.g_start = np.searchsorted(g_customer, np.arange(n_customers + 1)).astype(np.int64)

        # Event rows (already in order.EVENT_SORT_COLUMNS order: see inputs.prepare).
        self.events = events
        self.e_time = events.time
        self.e_new = events.new_event
        self.e_currency = events.currency_codes(currency_code)
        self.e_cost = events.cost
        self.e_start = events.customer_starts(self.customers)

        # Auto-recharge settings per customer and currency; `setting`: the setting's position
        # in `prefixes`, its grant ids' prefix (−1: none).
        shape = (max(n_customers, 1), max(n_currencies, 1))
        self.ar_on = np.zeros(shape, dtype=np.bool_)
        self.ar_threshold = np.zeros(shape, dtype=np.int64)
        self.ar_target = np.zeros(shape, dtype=np.int64)
        self.ar_unit = np.zeros(shape, dtype=np.int64)
        self.ar_limit = np.full(shape, -1, dtype=np.int64)
        self.ar_expiry = np.zeros(shape, dtype=np.int64)
        setting = np.full(shape, -1, dtype=np.int64)
        owners = pl.Series([s.customer_id for s in prepared.source.auto_recharges], dtype=pl.String)
        replayed = owners.is_in(self.customers.implode())  # settings of customers replayed
        settings = tuple(itertools.compress(prepared.source.auto_recharges, replayed.to_list()))
        prefixes = pl.Series(
            [f"{s.customer_id}:auto_recharge:{s.currency_id}:" for s in settings], dtype=pl.String
        )
        if settings:
            c = _positions(owners.filter(replayed), self.customers)
            k = np.array([currency_code[s.currency_id] for s in settings], dtype=np.int64)
            # Settings repeat the same few figures: each is converted once.
            figures: dict[tuple[object, ...], tuple[int, int, int, int, int]] = {}
            keys = [_figures_key(s) for s in settings]
            for s, key in zip(settings, keys, strict=True):
                if key not in figures:
                    figures[key] = self._recharge_figures(s, currency_code[s.currency_id])
            values = np.array([figures[key] for key in keys], dtype=np.int64).T
            self.ar_on[c, k] = True
            self.ar_threshold[c, k], self.ar_target[c, k], self.ar_unit[c, k] = values[:3]
            self.ar_limit[c, k], self.ar_expiry[c, k] = values[3:]
            setting[c, k] = np.arange(len(settings))

        # Grant happenings, sorted on order.HAPPENING_SORT_COLUMNS, customer by customer: once
        # without ranks, which puts grants that tie on every other key side by side
        # (`_tie_ranks`), then with them if they reorder any.
        happenings = (
            self.g_start,
            g_voided,
            until_us,
            self.g_currency,
            self.g_priority,
            self.g_expires,
            self.g_tclass,
            self.g_effective,
        )
        unranked = _grant_happenings(*happenings, np.zeros_like(g_voided))
        h_start, _, h_phase, h_grant = unranked
        prefix_bytes = _string_bytes(prefixes)
        self.g_rank, reordered = _tie_ranks(
            h_start,
            h_phase,
            h_grant,
            self.g_currency,
            self.g_priority,
            self.g_expires,
            self.g_tclass,
            self.g_effective,
            self.g_row,
            setting,
            *ids,
            *prefix_bytes,
        )
        self.h_start, self.h_time, self.h_phase, self.h_grant = (
            _grant_happenings(*happenings, self.g_rank) if reordered else unranked
        )

        # Room for one customer's grants: its input grants, an overdraft grant per currency and,
        # with auto-recharge, at most one recharge per consumption row.
        recharging = np.max(self.ar_on, axis=1)[:n_customers]
        self.recharges_room = np.where(recharging, np.diff(self.e_start), 0)
        self.sizes = np.diff(self.g_start) + self.recharges_room + n_currencies + 1

    def drop_kernel_inputs(self) -> None:
        """Free the event columns only the kernel reads, once it has run (the outputs are built
        from the kernel's rows, the grants and `events.row`)."""
        none = np.empty(0, dtype=np.int64)
        self.e_time = self.e_currency = self.e_cost = none
        self.e_new = np.empty(0, dtype=np.bool_)
        self.events.drop_kernel_inputs()

    def _recharge_figures(self, setting: AutoRecharge, k: int) -> tuple[int, int, int, int, int]:
        """An auto-recharge setting of currency `k` in the kernel's integers: threshold and
        target in minor units, the price of one minor unit and the monthly spend limit (−1: none)
        in integer money units, and the expiry code."""
        precision = int(self.precisions[k])
        threshold = to_minor_units(quantize(setting.threshold, precision, "up"), precision)
        target = to_minor_units(quantize(setting.target, precision, "up"), precision)
        # Spend in integer money units at a scale where one minor unit's price is whole.
        price = self.prepared.currencies[k].unit_price
        price_places = max(-int(price.normalize().as_tuple().exponent), 0)
        limit = setting.monthly_spend_limit
        limit_places = 0 if limit is None else max(-int(limit.normalize().as_tuple().exponent), 0)
        money_scale = max(precision + price_places, limit_places)
        unit = int(price.scaleb(money_scale - precision))
        scaled_limit = -1
        if limit is not None:
            scaled_limit = int(limit.scaleb(money_scale))
            if scaled_limit >= 2**62:
                raise OverflowError("monthly_spend_limit too large for the fast engine")
        return threshold, target, unit, scaled_limit, EXPIRY_CODES[setting.grant_expiry]

    def room(self) -> np.ndarray:
        """Ledger rows before each customer (and, last, in all) if every customer wrote as many
        rows as it can: a grant (input or recharge) takes effect, settles debt (two rows) and
        closes once, and is emptied by at most one consumption row; each consumption row ends
        with at most one more entry (a partial draw or the overdraft)."""
        per_customer = np.diff(self.e_start) + 5 * (np.diff(self.g_start) + self.recharges_room)
        return np.concatenate([[0], np.cumsum(per_customer)]).astype(np.int64)

    def chunks(self) -> list[tuple[int, int]]:
        """Customer ranges of about equal numbers of consumption rows (customers' usage is
        skewed: a few customers can have most of the events)."""
        n_customers = len(self.customers)
        if n_customers == 0:
            return []
        n_rows = int(self.e_start[-1])
        targets = np.linspace(0, n_rows, CHUNKS + 1)[1:-1]
        cuts = np.clip(np.searchsorted(self.e_start, targets, side="right"), 0, n_customers)
        bounds = np.unique(np.concatenate([[0], cuts, [n_customers]]))
        return [(int(lo), int(hi)) for lo, hi in itertools.pairwise(bounds)]

    def kernel_args(self, lo: int, hi: int) -> tuple[Any, ...]:
        """The kernel's arguments for customers [lo, hi)."""
        return (
            lo,
            hi,
            len(self.currency_ids),
            self.block,
            self.until_us,
            int(self.sizes[lo:hi].max(initial=1)),
            self.g_start,
            self.g_currency,
            self.g_amount,
            self.g_priority,
            self.g_expires,
            self.g_tclass,
            self.g_effective,
            self.g_rank,
            self.h_start,
            self.h_time,
            self.h_phase,
            self.h_grant,
            self.e_start,
            self.e_time,
            self.e_new,
            self.e_currency,
            self.e_cost,
            self.ar_on,
            self.ar_threshold,
            self.ar_target,
            self.ar_unit,
            self.ar_limit,
            self.ar_expiry,
        )

    def _scaled(self, units: np.ndarray, currency: np.ndarray) -> np.ndarray:
        return frames.rescale(units, self.precisions[currency], self.prepared.scale)

    def _constant(self, name: str, value: str, n: int) -> pl.Series:
        return pl.Series(name, [value], dtype=pl.String).gather(np.zeros(n, dtype=np.int64))

    def ledger(self, kernel_rows: list[Any]) -> pl.DataFrame:
        """The ledger from the kernel's rows (`kernel_rows`: [rows, parts], the parts in customer
        order, most of them regions of rows), in ledger order (`api.chronological`). The list is
        emptied: the kernel's rows are freed once staged, unless the outputs reuse their memory.

        The kernel writes customer by customer, so a sort on time that keeps the row order at
        equal times puts the rows in ledger order (customer codes follow customer ids, and a
        customer's own order at one instant is its row order). Rows are moved in two passes
        that stay cache-friendly at tens of millions of rows: a stable scatter into time
        buckets (`_stage_by_time`), then a sort inside each bucket (`_emit_ledger`), which
        writes every output column in ledger order into NumPy buffers that Arrow and Polars
        take without a copy: strings as Arrow string views (16 bytes: a short string inline,
        else a reference into the data buffers of the table of names it comes from). Every pass
        runs on every core.
        """
        scale = self.prepared.scale
        rows, parts = kernel_rows
        kernel_rows.clear()
        n = sum(len(part) for part in parts)
        if n == 0:
            return frames.empty_ledger(scale)
        buffer = rows  # once staged, the kernel's rows are dead: outputs may reuse its pages
        rows, starts = _contiguous(rows, parts)
        lengths = np.array([len(part) for part in parts], dtype=np.int64)
        n_currencies = max(len(self.currency_ids), 1)
        n_pairs = max(len(self.customers) * n_currencies, 1)
        n_buckets = int(min(max(n // ROWS_PER_BUCKET, 1), MAX_BUCKETS))
        workers = os.cpu_count() or 1
        # Groups of whole parts with about equal numbers of rows, one per core.
        cuts = np.searchsorted(np.cumsum(lengths), np.linspace(0, n, workers + 1)[1:-1], "right")
        groups = [
            (starts[lo:hi], lengths[lo:hi])
            for lo, hi in itertools.pairwise([0, *np.unique(cuts).tolist(), len(parts)])
            if hi > lo
        ]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            # 1. The time span, and the grants the kernel made: recharges per customer ×
            # currency pair, pairs with an overdraft grant.
            recharges = np.zeros((len(groups), n_pairs), dtype=np.int64)
            overdrafts = np.zeros((len(groups), n_pairs), dtype=np.bool_)
            spans = list(
                pool.map(
                    lambda g: _span_and_grants(
                        rows, *groups[g], n_currencies, recharges[g], overdrafts[g]
                    ),
                    range(len(groups)),
                )
            )
            t0 = min(first for first, _ in spans)
            # Bucket of a row: (time − t0) >> shift (a shift, not a division, per row).
            shift = ((max(last for _, last in spans) - t0) // n_buckets).bit_length()
            grant_names, recharge_base, overdraft_code = self._kernel_grant_names(
                recharges.max(axis=0), np.logical_or.reduce(overdrafts, axis=0)
            )
            # 2. Rows per time bucket and group; a group's rows go after earlier groups' rows.
            counts = np.zeros((len(groups), n_buckets), dtype=np.int64)
            list(
                pool.map(
                    lambda g: _count_buckets(rows, *groups[g], t0, shift, counts[g]),
                    range(len(groups)),
                )
            )
            bucket_starts = np.concatenate([[0], np.cumsum(counts.sum(axis=0))]).astype(np.int64)
            fill_from = bucket_starts[:-1] + np.cumsum(counts, axis=0) - counts
            # 3. Rows into their buckets, as what the output columns need (`S_*`).
            event_ids, feature_ids = self.events.side.views()
            staged = self.scratch.array("staged", (n, N_STAGED))
            factors = 10 ** (scale - self.precisions).astype(np.int64)
            list(
                pool.map(
                    lambda g: _stage_by_time(
                        rows,
                        groups[g][0],
                        groups[g][1],
                        fill_from[g],
                        t0,
                        shift,
                        factors,
                        n_currencies,
                        self.g_row,
                        self.g_type_code,
                        self.g_source_code,
                        recharge_base,
                        overdraft_code,
                        self.events.row,
                        event_ids[0],
                        event_ids[1],
                        feature_ids[0],
                        feature_ids[1],
                        staged,
                    ),
                    range(len(groups)),
                )
            )
            # 4. Each bucket sorted, its rows written as output columns.
            tables = [
                _string_views(self.customers),
                _string_views(pl.Series(self.currency_ids, dtype=pl.String)),
                _string_views(pl.Series(ENTRY_TYPES, dtype=pl.String)),
                _string_views(grant_names),
                _string_views(pl.Series(GRANT_TYPES, dtype=pl.String)),
                _string_views(pl.Series(GRANT_SOURCES, dtype=pl.String)),
                event_ids,
                feature_ids,
            ]
            # One value for every row (the scenario, a replay's only currency): a Polars scalar
            # column, filled in only if something needs it.
            constants = {"scenario": self.prepared.source.scenario}
            if len(self.currency_ids) == 1:
                constants["currency_id"] = self.currency_ids[0]
            # views: string columns; numbers: entry_id, timestamp; money: amount,
            # balance_after as decimal128.
            written = max(int(start + length) for start, length in zip(starts, lengths))
            views, numbers, money = _output_buffers(
                buffer,
                written * N_OUT if rows is buffer else buffer.size + 1,
                [(len(tables), n, 2), (2, n), (2, n, 2)],
            )
            if not any(np.may_share_memory(array, buffer) for array in (views, numbers, money)):
                del buffer, rows, parts  # staged, and no output lives in them: free them now
            valid = np.empty((2, n), dtype=np.bool_)  # event_id, feature_id not null
            names = tuple(table[0] for table in tables)
            currency_column = "currency_id" not in constants
            cuts = np.searchsorted(bucket_starts, np.linspace(0, n, workers + 1))
            ranges = itertools.pairwise(np.unique(np.clip(cuts, 0, n_buckets)).tolist())
            list(
                pool.map(
                    lambda r: _emit_ledger(
                        r[0],
                        r[1],
                        staged,
                        bucket_starts,
                        n_currencies,
                        currency_column,
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
            name: _string_column(name, views[i], buffers, valid[i - 6] if i in (6, 7) else None)
            for i, (name, (_, _, buffers)) in enumerate(zip(STRING_COLUMNS, tables, strict=True))
            if name not in constants
        }
        timestamps = pa.Array.from_buffers(
            pa.timestamp("us", tz="UTC"), n, [None, pa.py_buffer(numbers[1])]
        )
        columns = {
            "entry_id": pl.Series("entry_id", numbers[0]),
            "timestamp": pl.Series("timestamp", timestamps),
            **strings,
            "amount": _decimal_column("amount", money[0], scale),
            "balance_after": _decimal_column("balance_after", money[1], scale),
        }
        ledger = pl.DataFrame(list(columns.values())).with_columns(
            pl.lit(value, dtype=pl.String).alias(name) for name, value in constants.items()
        )
        return ledger.select(frames.ledger_schema(scale).names())

    def _kernel_grant_names(
        self, recharges: np.ndarray, overdrafts: np.ndarray
    ) -> tuple[pl.Series, np.ndarray, np.ndarray]:
        """Every grant id a ledger row can name, and where the kernel's grants are among them.

        The names: the grant table's (codes 0 … G−1: `g_row`), then the auto-recharge grants
        (`recharges`: how many per customer × currency pair; the grant numbered n of pair p has
        code `recharge_base[p]` + n), then the overdraft grants (`overdrafts`: pairs that made
        one; code `overdraft_code[p]`).
        """
        n_currencies = max(len(self.currency_ids), 1)
        n_static = self.prepared.grant_table.height
        ends = np.cumsum(recharges)
        recharge_base = n_static + ends - recharges
        n_recharges = int(ends[-1]) if len(ends) else 0
        overdraft_code = n_static + n_recharges + np.cumsum(overdrafts) - 1
        customers = self.customers
        currencies = pl.Series(self.currency_ids, dtype=pl.String)
        ids = [self.prepared.grant_table["grant_id"]]
        if n_recharges:
            pairs = np.repeat(np.arange(len(recharges)), recharges)
            names = pl.DataFrame(
                {
                    "c": customers.gather(pairs // n_currencies),
                    "k": currencies.gather(pairs % n_currencies),
                    "n": np.arange(n_recharges) - (recharge_base[pairs] - n_static),
                }
            )
            id_parts = [pl.lit(":auto_recharge:"), pl.col("k"), pl.lit(":"), pl.col("n")]
            ids.append(names.select(pl.concat_str(pl.col("c"), *id_parts)).to_series())
        if overdrafts.any():
            pairs = np.flatnonzero(overdrafts)
            names = pl.DataFrame(
                {
                    "c": customers.gather(pairs // n_currencies),
                    "k": currencies.gather(pairs % n_currencies),
                }
            )
            id_parts = [pl.lit(":overdraft:"), pl.col("k")]
            ids.append(names.select(pl.concat_str(pl.col("c"), *id_parts)).to_series())
        return pl.concat(ids), recharge_base, overdraft_code

    def denied(self, rows: np.ndarray) -> pl.DataFrame:
        scale = self.prepared.scale
        if len(rows) == 0:
            return pl.DataFrame(schema=frames.denied_schema(scale))
        event_row = rows[:, 0]
        currency = rows[:, 1]
        n = len(rows)
        return pl.DataFrame(
            [
                self.events.column("event_id", event_row),
                self.events.column("customer_id", event_row),
                self.events.column("timestamp", event_row),
                self._constant("reason", "insufficient_credits", n),
                pl.Series("currency_id", self.currency_ids, dtype=pl.String).gather(currency),
                frames.decimal_series("cost", self._scaled(rows[:, 2], currency), scale),
                frames.decimal_series("balance", self._scaled(rows[:, 3], currency), scale),
                self._constant("scenario", self.prepared.source.scenario, n),
            ]
        )


def _figures_key(setting: AutoRecharge) -> tuple[object, ...]:
    """What an auto-recharge setting's kernel figures depend on."""
    return (
        setting.currency_id,
        setting.threshold,
        setting.target,
        setting.monthly_spend_limit,
        setting.grant_expiry,
    )


def _positions(values: pl.Series, names: Sequence[str] | pl.Series) -> np.ndarray:
    """Each value's position in `names` (distinct), as int64."""
    return values.cast(pl.Enum(names)).to_physical().cast(pl.Int64).to_numpy()


def _run_starts(values: pl.Series) -> np.ndarray:
    """The first position of each run of equal values."""
    return np.flatnonzero(values.ne_missing(values.shift(1)).to_numpy())


def _codes(values: pl.Series, names: Sequence[str]) -> np.ndarray:
    """`_positions`, encoded once per run of equal values (grant tables come in long runs)."""
    starts = _run_starts(values)
    return np.repeat(_positions(values.gather(starts), names), np.diff([*starts, len(values)]))


def _string_bytes(column: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """A string column (no nulls) as UTF-8: offsets (one more than values) and bytes."""
    array = column.to_arrow()
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    array = array.cast(pa.large_string())
    _, offsets, data = array.buffers()
    begin = array.offset
    offsets_array = np.frombuffer(offsets, dtype=np.int64)[begin : begin + len(array) + 1]
    if data is None:
        return offsets_array, np.empty(0, dtype=np.uint8)
    return offsets_array, np.frombuffer(data, dtype=np.uint8)


def _output_buffers(
    dead: np.ndarray, written: int, shapes: list[tuple[int, ...]]
) -> list[np.ndarray]:
    """Uninitialised int64 arrays of `shapes`, in the memory of `dead` (an int64 buffer no longer
    needed, written up to element `written`) when they cover all it had written: those pages are
    already mapped, where fresh memory costs a page fault per page on first write. Arrays are
    placed one after the other while they fit; if they would leave more than an eighth of their
    size in written pages unused (which the outputs would keep alive), all are fresh memory."""
    free = dead.reshape(-1)
    sizes = [int(np.prod(shape)) for shape in shapes]
    fitting = np.cumsum(sizes) <= len(free)
    placed = int(np.cumsum(sizes)[fitting][-1]) if fitting.any() else 0
    if placed == 0 or written - placed > sum(sizes) // 8:
        return [np.empty(shape, dtype=np.int64) for shape in shapes]
    arrays, used = [], 0
    for shape, size, fits in zip(shapes, sizes, fitting, strict=True):
        if fits:
            arrays.append(free[used : used + size].reshape(shape))
            used += size
        else:
            arrays.append(np.empty(shape, dtype=np.int64))
    return arrays


def _contiguous(rows: np.ndarray, parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's rows as one array and each part's first row in it: `rows` itself when every
    part is a region of it (a kernel that ran out of room wrote a new array: then all parts are
    copied into one)."""
    base, end = rows.ctypes.data, rows.ctypes.data + rows.nbytes
    if all(len(part) == 0 or base <= part.ctypes.data < end for part in parts):
        row_bytes = N_OUT * rows.itemsize
        starts = [(part.ctypes.data - base) // row_bytes if len(part) else 0 for part in parts]
        return rows, np.array(starts, dtype=np.int64)
    lengths = np.array([len(part) for part in parts], dtype=np.int64)
    return np.concatenate(parts), np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)


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


def _decimal_column(name: str, pairs: np.ndarray, scale: int) -> pl.Series:
    """A Decimal(38, scale) column from decimal128 values as (low, high) int64 pairs."""
    array = pa.Array.from_buffers(pa.decimal128(38, scale), len(pairs), [None, pa.py_buffer(pairs)])
    series = pl.Series(name, array)
    assert isinstance(series, pl.Series)
    return series


class _EventSide:
    """What the engine reads of a consumption table's event columns alone, not of its costs:
    the same for every replay of those events (`key`: the table's `PreparedReplay.events_key`).
    """

    def __init__(self, table: pl.DataFrame, key: object) -> None:
        self.key = key
        self.table = table
        customers, events = table["customer_id"], table["event_id"]
        new_customer = customers.ne_missing(customers.shift(1))
        self.run_customers = customers.filter(new_customer)  # one id per run of equal ids
        self.new_customer = new_customer.to_numpy()
        self.new_event = events.ne_missing(events.shift(1)).to_numpy()
        self.micros = table["timestamp"].dt.epoch("us").to_numpy()
        self._views: tuple[StringViews, StringViews] | None = None

    def views(self) -> tuple[StringViews, StringViews]:
        """The event_id and feature_id columns as string views (built on first use)."""
        if self._views is None:
            self._views = (
                _string_views(self.table["event_id"]),
                _string_views(self.table["feature_id"]),
            )
        return self._views


class _EventColumns:
    """The consumption rows the kernel replays, as integer columns in engine order.

    `inputs.prepare` hands over the consumptions in `order.EVENT_SORT_COLUMNS` order. Rows outside
    the horizon or costing nothing are left out; `row` keeps each kept row's position in the table
    so output columns (event_id, feature_id, …) are gathered from it once, at the end.
    """

    def __init__(
        self,
        prepared: PreparedReplay,
        start_us: int,
        until_us: int,
        work: EngineWork | None,
        scratch: _Scratch,
    ) -> None:
        table = prepared.consumptions
        self.table = table
        side = _EventSide(table, prepared.events_key) if work is None else work.event_side(prepared)
        self.side = side
        self.run_customers = side.run_customers
        n = table.height
        row = scratch.array("row", (n,))  # kept apart: the outputs need it after the kernel
        kept = scratch.array("kept", (3, n))  # time, cost, customer run
        new_event = scratch.array("new_event", (n,), np.bool_)
        n_kept = _kept_rows(
            side.micros,
            table["cost_units"].fill_null(0).to_numpy(),
            side.new_customer,
            side.new_event,
            start_us,
            until_us,
            row,
            kept,
            new_event,
        )
        self.row = row[:n_kept]
        self.time, self.cost, self._run = kept[:, :n_kept]
        self.new_event = new_event[:n_kept]

    def drop_kernel_inputs(self) -> None:
        """Free what only the kernel reads (times, costs, runs, new-event flags): once it has
        run, the outputs need only `row`."""
        self.time = self.cost = self._run = np.empty(0, dtype=np.int64)
        self.new_event = np.empty(0, dtype=np.bool_)

    def customer_starts(self, customers: pl.Series) -> np.ndarray:
        """The first kept row of each customer of `customers` (sorted ids; a customer without
        rows starts where the next one does), and the number of kept rows last."""
        run_code = _positions(self.run_customers, customers)  # increasing, as the runs
        first_run = np.searchsorted(run_code, np.arange(len(customers) + 1))
        return np.searchsorted(self._run, first_run).astype(np.int64)

    def currency_codes(self, currency_code: dict[str, int]) -> np.ndarray:
        if len(self.row) == 0:
            return np.empty(0, dtype=np.int64)
        if len(currency_code) == 1:
            return np.zeros(len(self.row), dtype=np.int64)
        codes = self.table["currency_id"].replace_strict(
            currency_code, default=-1, return_dtype=pl.Int64
        )
        return codes.to_numpy()[self.row]

    def positions(self, kept_row: np.ndarray) -> pl.Series:
        """The table positions of kept rows `kept_row` (null where it is −1)."""
        if len(self.row) == 0:
            return pl.Series([None] * len(kept_row), dtype=pl.Int64)
        return pl.Series(pa.array(self.row[np.maximum(kept_row, 0)], mask=kept_row < 0))

    def column(self, name: str, kept_row: np.ndarray) -> pl.Series:
        """Column `name` of the table at kept rows `kept_row` (null where it is −1)."""
        return self.table[name].gather(self.positions(kept_row))


# --------------------------------------------------------------------------------------------
# The kernel and its helpers (compiled; cache=True keeps compile time to the first run).


@njit(cache=True)
def _civil_from_days(days: int) -> tuple[int, int, int]:  # pragma: no cover - compiled
    """(year, month, day) of a day count since 1970-01-01 (proleptic Gregorian, H. Hinnant)."""
    z = days + 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return (y + 1 if m <= 2 else y), m, d


@njit(cache=True)
def _days_from_civil(y: int, m: int, d: int) -> int:  # pragma: no cover - compiled
    y = y - 1 if m <= 2 else y
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    mp = m - 3 if m > 2 else m + 9
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@njit(cache=True)
def _add_months(micros: int, months: int) -> int:  # pragma: no cover - compiled
    """`timeutil.add_months` on microseconds since the epoch (day clamped to the month's end)."""
    days = micros // DAY_US
    rest = micros - days * DAY_US
    y, m, d = _civil_from_days(days)
    index = m - 1 + months
    y2 = y + index // 12
    m2 = index % 12 + 1
    last = _days_from_civil(y2 + (1 if m2 == 12 else 0), 1 if m2 == 12 else m2 + 1, 1)
    last -= _days_from_civil(y2, m2, 1)
    return _days_from_civil(y2, m2, min(d, last)) * DAY_US + rest


@njit(cache=True)
def _month_key(micros: int) -> int:  # pragma: no cover - compiled
    y, m, _ = _civil_from_days(micros // DAY_US)
    return y * 12 + m - 1


@njit(cache=True)
def _digits_before(a: int, b: int) -> bool:  # pragma: no cover - compiled
    """str(a) < str(b) for non-negative integers (the order of ids ending in a number)."""
    da = np.zeros(20, dtype=np.int64)
    db = np.zeros(20, dtype=np.int64)
    na = 0
    x = a
    while True:
        da[na] = x % 10
        na += 1
        x //= 10
        if x == 0:
            break
    nb = 0
    x = b
    while True:
        db[nb] = x % 10
        nb += 1
        x //= 10
        if x == 0:
            break
    for i in range(min(na, nb)):
        ca, cb = da[na - 1 - i], db[nb - 1 - i]
        if ca != cb:
            return ca < cb
    return na < nb


@njit(cache=True, inline="always")
def _before(a: int, b: int, grants: Any) -> bool:  # pragma: no cover - compiled
    """Grant a before grant b (`grants`: the kernel's grant arrays): by currency, then
    `order.drawdown_key`."""
    _, _, currency, priority, expires, tclass, effective, rank, number, _, _, _ = grants
    if currency[a] != currency[b]:
        return currency[a] < currency[b]
    if priority[a] != priority[b]:
        return priority[a] < priority[b]
    if expires[a] != expires[b]:
        return expires[a] < expires[b]
    if tclass[a] != tclass[b]:
        return tclass[a] < tclass[b]
    if effective[a] != effective[b]:
        return effective[a] < effective[b]
    if rank[a] != rank[b]:
        return rank[a] < rank[b]
    return _digits_before(number[a], number[b])


@njit(cache=True, inline="always")
def _push(
    out: np.ndarray,
    n: int,
    t: int,
    customer: int,
    cur: int,
    etype: int,
    kind: int,
    ref: int,
    amount: int,
    balance: int,
    event_row: int,
) -> None:  # pragma: no cover - compiled
    """Write ledger row n (the kernel makes room for each customer's rows beforehand)."""
    if n >= out.shape[0]:
        raise IndexError("fast engine: ledger rows beyond the room made for them")
    out[n, 0] = t
    out[n, 1] = customer
    out[n, 2] = cur
    out[n, 3] = etype
    out[n, 4] = kind
    out[n, 5] = ref
    out[n, 6] = amount
    out[n, 7] = balance
    out[n, 8] = event_row


@njit(cache=True, nogil=True)
def _replay_kernel(
    out: np.ndarray,
    c_from: int,
    c_to: int,
    n_cur: int,
    block: bool,
    until: int,
    cap: int,
    g_start: np.ndarray,
    g_currency: np.ndarray,
    g_amount: np.ndarray,
    g_priority: np.ndarray,
    g_expires: np.ndarray,
    g_tclass: np.ndarray,
    g_effective: np.ndarray,
    g_rank: np.ndarray,
    h_start: np.ndarray,
    h_time: np.ndarray,
    h_phase: np.ndarray,
    h_grant: np.ndarray,
    e_start: np.ndarray,
    e_time: np.ndarray,
    e_new: np.ndarray,
    e_currency: np.ndarray,
    e_cost: np.ndarray,
    ar_on: np.ndarray,
    ar_threshold: np.ndarray,
    ar_target: np.ndarray,
    ar_unit: np.ndarray,
    ar_limit: np.ndarray,
    ar_expiry: np.ndarray,
) -> tuple[np.ndarray, int, np.ndarray, int]:  # pragma: no cover - compiled
    """Replay customers [c_from, c_to): ledger rows (columns O_*, written from the start of
    `out`, a new array if it runs out of room) and denied rows (event row, currency, cost,
    balance)."""
    n_out = 0
    denied = np.empty((16, 4), dtype=np.int64)
    n_denied = 0
    ncur = max(n_cur, 1)
    # One customer's grants (local index): input grants first, then the ones the kernel makes.
    remaining = np.zeros(cap, dtype=np.int64)
    state = np.zeros(cap, dtype=np.int64)  # 0 pending, 1 active, 2 closed
    currency = np.zeros(cap, dtype=np.int64)
    priority = np.zeros(cap, dtype=np.int64)
    expires = np.zeros(cap, dtype=np.int64)
    tclass = np.zeros(cap, dtype=np.int64)
    effective = np.zeros(cap, dtype=np.int64)
    rank = np.zeros(cap, dtype=np.int64)
    number = np.zeros(cap, dtype=np.int64)
    kind = np.zeros(cap, dtype=np.int64)
    ref = np.zeros(cap, dtype=np.int64)
    amount0 = np.zeros(cap, dtype=np.int64)
    grants = (
        remaining, state, currency, priority, expires, tclass, effective, rank, number, kind, ref,
        amount0,
    )  # fmt: skip
    # Per currency: usable grants in draw-down order, balance, overdraft grant, recharges.
    active = np.zeros((ncur, cap), dtype=np.int64)
    n_active = np.zeros(ncur, dtype=np.int64)
    balance = np.zeros(ncur, dtype=np.int64)
    overdraft = np.zeros(ncur, dtype=np.int64)
    recharges = np.zeros(ncur, dtype=np.int64)
    month = np.zeros(ncur, dtype=np.int64)
    spent = np.zeros(ncur, dtype=np.int64)
    queue = np.zeros((ncur, cap), dtype=np.int64)  # recharge grants by expiry, per currency
    q_head = np.zeros(ncur, dtype=np.int64)
    q_tail = np.zeros(ncur, dtype=np.int64)
    batch = np.zeros(cap, dtype=np.int64)
    totals = np.zeros(ncur, dtype=np.int64)
    touched = np.zeros(ncur, dtype=np.bool_)

    for c in range(c_from, c_to):
        gs = g_start[c]
        n_local = g_start[c + 1] - gs
        # The most rows this customer can write (see _Columns.room): `out` has room for them.
        n_rows = e_start[c + 1] - e_start[c]
        recharging = False
        for k in range(n_cur):
            recharging = recharging or ar_on[c, k]
        most = n_rows + 5 * (n_local + (n_rows if recharging else 0))
        if n_out + most > out.shape[0]:
            bigger = np.empty((max(n_out + most, 2 * out.shape[0]), N_OUT), dtype=np.int64)
            bigger[:n_out] = out[:n_out]
            out = bigger
        for i in range(n_local):
            gi = gs + i
            remaining[i] = 0
            state[i] = 0
            currency[i] = g_currency[gi]
            priority[i] = g_priority[gi]
            expires[i] = g_expires[gi]
            tclass[i] = g_tclass[gi]
            effective[i] = g_effective[gi]
            rank[i] = g_rank[gi]
            number[i] = 0
            kind[i] = 0
            ref[i] = gi
            amount0[i] = g_amount[gi]
        for k in range(ncur):
            n_active[k] = 0
            balance[k] = 0
            overdraft[k] = -1
            recharges[k] = 0
            month[k] = -1
            spent[k] = 0
            q_head[k] = 0
            q_tail[k] = 0
        hi, h_end = h_start[c], h_start[c + 1]
        ei, e_end = e_start[c], e_start[c + 1]
        while True:
            # The next instant: the earliest of the next grant happening, event, recharge expiry.
            t = NEVER_US
            if hi < h_end:
                t = h_time[hi]
            if ei < e_end and e_time[ei] < t:
                t = e_time[ei]
            for k in range(ncur):
                if q_head[k] < q_tail[k]:
                    qt = expires[queue[k, q_head[k]]]
                    if qt < t:
                        t = qt
            if t == NEVER_US or t >= until:
                break
            # 1. Expiries: input grants (sorted) merged with recharge grants, same order.
            n_batch = 0
            while hi < h_end and h_time[hi] == t and h_phase[hi] == 0:
                batch[n_batch] = h_grant[hi] - gs
                n_batch += 1
                hi += 1
            for k in range(ncur):
                while q_head[k] < q_tail[k] and expires[queue[k, q_head[k]]] == t:
                    g = queue[k, q_head[k]]
                    q_head[k] += 1
                    j = n_batch
                    while j > 0 and _before(g, batch[j - 1], grants):
                        batch[j] = batch[j - 1]
                        j -= 1
                    batch[j] = g
                    n_batch += 1
            # 2. Voids (input grants only), after the expiries of the instant.
            for phase in range(2):
                if phase == 1:
                    n_batch = 0
                    while hi < h_end and h_time[hi] == t and h_phase[hi] == 1:
                        batch[n_batch] = h_grant[hi] - gs
                        n_batch += 1
                        hi += 1
                for b in range(n_batch):
                    g = batch[b]
                    if state[g] != 1:
                        continue
                    state[g] = 2
                    if remaining[g] > 0:
                        k = currency[g]
                        left = remaining[g]
                        remaining[g] = 0
                        balance[k] -= left
                        _push(
                            out,
                            n_out,
                            t,
                            c,
                            k,
                            EXPIRED if phase == 0 else VOIDED,
                            kind[g],
                            ref[g] if kind[g] == 0 else number[g],
                            -left,
                            balance[k],
                            -1,
                        )
                        n_out += 1
                        for j in range(n_active[k]):
                            if active[k, j] == g:
                                for m in range(j, n_active[k] - 1):
                                    active[k, m] = active[k, m + 1]
                                n_active[k] -= 1
                                break
            # 3. Grants taking effect, in draw-down order; each settles overdraft debt.
            while hi < h_end and h_time[hi] == t and h_phase[hi] == 2:
                g = h_grant[hi] - gs
                hi += 1
                n_out = _take_effect(
                    g, t, c, out, n_out, grants, active, n_active, balance, overdraft
                )
            # 4. Events in (timestamp, event_id) order, each followed by its auto-recharge.
            while ei < e_end and e_time[ei] == t:
                ej = ei + 1
                while ej < e_end and not e_new[ej]:
                    ej += 1
                for k in range(ncur):
                    totals[k] = 0
                    touched[k] = False
                for r in range(ei, ej):
                    totals[e_currency[r]] += e_cost[r]
                    touched[e_currency[r]] = True
                allowed = True
                if block:
                    for k in range(ncur):
                        if touched[k] and totals[k] > balance[k]:
                            if n_denied == denied.shape[0]:
                                bigger = np.empty((denied.shape[0] * 2, 4), dtype=np.int64)
                                bigger[:n_denied] = denied[:n_denied]
                                denied = bigger
                            denied[n_denied, 0] = ei
                            denied[n_denied, 1] = k
                            denied[n_denied, 2] = totals[k]
                            denied[n_denied, 3] = balance[k]
                            n_denied += 1
                            allowed = False
                            break
                if allowed:
                    for r in range(ei, ej):
                        k = e_currency[r]
                        left = e_cost[r]
                        while left > 0 and n_active[k] > 0:
                            g = active[k, 0]
                            taken = min(left, remaining[g])
                            remaining[g] -= taken
                            balance[k] -= taken
                            left -= taken
                            _push(
                                out,
                                n_out,
                                t,
                                c,
                                k,
                                CONSUMED,
                                kind[g],
                                ref[g] if kind[g] == 0 else number[g],
                                -taken,
                                balance[k],
                                r,
                            )
                            n_out += 1
                            if remaining[g] == 0:
                                for m in range(n_active[k] - 1):
                                    active[k, m] = active[k, m + 1]
                                n_active[k] -= 1
                        if left > 0:
                            if overdraft[k] < 0:
                                g = n_local
                                n_local += 1
                                remaining[g] = 0
                                state[g] = 1
                                currency[g] = k
                                kind[g] = 2
                                ref[g] = 0
                                number[g] = 0
                                overdraft[k] = g
                            g = overdraft[k]
                            remaining[g] -= left
                            balance[k] -= left
                            _push(out, n_out, t, c, k, CONSUMED, 2, 0, -left, balance[k], r)
                            n_out += 1
                    for k in range(ncur):
                        if not touched[k] or not ar_on[c, k] or balance[k] >= ar_threshold[c, k]:
                            continue
                        amount = ar_target[c, k] - balance[k]
                        limit = ar_limit[c, k]
                        if limit >= 0:
                            key = _month_key(t)
                            if key != month[k]:
                                month[k] = key
                                spent[k] = 0
                            unit = ar_unit[c, k]
                            if unit > 0:
                                allowed_units = (limit - spent[k]) // unit
                                if amount > allowed_units:
                                    amount = allowed_units
                        if amount <= 0:
                            continue
                        if limit >= 0:
                            spent[k] += amount * ar_unit[c, k]
                        g = n_local
                        n_local += 1
                        remaining[g] = 0
                        state[g] = 0
                        currency[g] = k
                        priority[g] = 0
                        code = ar_expiry[c, k]
                        if code == 0:
                            expires[g] = NEVER_US
                        else:
                            expires[g] = _add_months(t, 1 if code == 1 else 12)
                        tclass[g] = 1
                        effective[g] = t
                        rank[g] = RECHARGE_RANK
                        number[g] = recharges[k]
                        recharges[k] += 1
                        kind[g] = 1
                        ref[g] = 0
                        amount0[g] = amount
                        n_out = _take_effect(
                            g, t, c, out, n_out, grants, active, n_active, balance, overdraft
                        )
                        if expires[g] < until:
                            queue[k, q_tail[k]] = g
                            q_tail[k] += 1
                ei = ej
    return out, n_out, denied, n_denied


@njit(cache=True, nogil=True)
def _kept_rows(
    time: np.ndarray,
    cost: np.ndarray,
    new_customer: np.ndarray,
    new_event: np.ndarray,
    start: int,
    until: int,
    kept_row: np.ndarray,
    kept: np.ndarray,
    kept_new_event: np.ndarray,
) -> int:  # pragma: no cover - compiled
    """The consumption rows inside [start, until) with a cost, in one pass: their table row (in
    `kept_row`), time, cost and customer run (runs of equal customer ids, counted from 0) in
    `kept`, whether each starts a new event among the kept rows; returns how many."""
    n_kept = 0
    run = -1
    event = 0
    last_event = -1
    for row in range(len(time)):
        run += new_customer[row]
        event += new_event[row]
        if start <= time[row] < until and cost[row] > 0:
            kept_row[n_kept] = row
            kept[0, n_kept] = time[row]
            kept[1, n_kept] = cost[row]
            kept[2, n_kept] = run
            kept_new_event[n_kept] = event != last_event
            last_event = event
            n_kept += 1
    return n_kept


@njit(cache=True, nogil=True)
def _grant_happenings(
    g_start: np.ndarray,
    g_voided: np.ndarray,
    until: int,
    g_currency: np.ndarray,
    g_priority: np.ndarray,
    g_expires: np.ndarray,
    g_tclass: np.ndarray,
    g_effective: np.ndarray,
    g_rank: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """The grants' expiries and voids before `until` and their taking effect, customer by
    customer in `order.HAPPENING_SORT_COLUMNS` order: (start per customer, time, phase, grant)."""
    n_customers = len(g_start) - 1
    n = 0
    for g in range(len(g_expires)):
        n += 1 + (g_expires[g] < until) + (g_voided[g] < until)
    h_start = np.empty(n_customers + 1, dtype=np.int64)
    h_time = np.empty(n, dtype=np.int64)
    h_phase = np.empty(n, dtype=np.int64)
    h_grant = np.empty(n, dtype=np.int64)
    keys = (g_currency, g_priority, g_expires, g_tclass, g_effective, g_rank)
    n = 0
    for c in range(n_customers):
        h_start[c] = n
        for g in range(g_start[c], g_start[c + 1]):
            for phase, t in (
                (EXPIRY, g_expires[g]),
                (VOID, g_voided[g]),
                (TAKES_EFFECT, g_effective[g]),
            ):
                if phase == TAKES_EFFECT or t < until:
                    h_time[n] = t
                    h_phase[n] = phase
                    h_grant[n] = g
                    n += 1
        _sort_happenings(h_start[c], n, h_time, h_phase, h_grant, keys)
    h_start[n_customers] = n
    return h_start, h_time, h_phase, h_grant


@njit(cache=True, nogil=True)
def _happens_before(
    i: int, j: int, h_time: np.ndarray, h_phase: np.ndarray, h_grant: np.ndarray, keys: Any
) -> bool:  # pragma: no cover - compiled
    """Happening i before happening j: time, phase, then the grants' currency and draw-down
    order (a total order: the grant ranks differ)."""
    if h_time[i] != h_time[j]:
        return h_time[i] < h_time[j]
    if h_phase[i] != h_phase[j]:
        return h_phase[i] < h_phase[j]
    return _grant_before(h_grant[i], h_grant[j], keys)


@njit(cache=True, nogil=True)
def _grant_before(a: int, b: int, keys: Any) -> bool:  # pragma: no cover - compiled
    """Grant a before grant b on `keys` (currency, then draw-down order; the ranks differ)."""
    for key in keys:  # NEVER_US expiries sort last, as never_expires would
        if key[a] != key[b]:
            return key[a] < key[b]
    return False


@njit(cache=True, nogil=True)
def _bytes_before(
    a: np.ndarray, a_lo: int, a_hi: int, b: np.ndarray, b_lo: int, b_hi: int
) -> bool:  # pragma: no cover - compiled
    """Bytes a[a_lo:a_hi] before b[b_lo:b_hi]: on UTF-8, the order of the strings' code points
    (Python's and Polars' string order)."""
    n = min(a_hi - a_lo, b_hi - b_lo)
    for i in range(n):
        if a[a_lo + i] != b[b_lo + i]:
            return a[a_lo + i] < b[b_lo + i]
    return a_hi - a_lo < b_hi - b_lo


@njit(cache=True, nogil=True)
def _ids_before(
    a: int, b: int, g_row: np.ndarray, offsets: np.ndarray, data: np.ndarray
) -> bool:  # pragma: no cover - compiled
    """The grant id of grant a before that of grant b."""
    ra, rb = g_row[a], g_row[b]
    return _bytes_before(data, offsets[ra], offsets[ra + 1], data, offsets[rb], offsets[rb + 1])


@njit(cache=True, nogil=True)
def _tie_ranks(
    h_start: np.ndarray,
    h_phase: np.ndarray,
    h_grant: np.ndarray,
    g_currency: np.ndarray,
    g_priority: np.ndarray,
    g_expires: np.ndarray,
    g_tclass: np.ndarray,
    g_effective: np.ndarray,
    g_row: np.ndarray,
    setting: np.ndarray,
    id_offsets: np.ndarray,
    id_data: np.ndarray,
    prefix_offsets: np.ndarray,
    prefix_data: np.ndarray,
) -> tuple[np.ndarray, bool]:  # pragma: no cover - compiled
    """Each grant's rank, the last key of the draw-down order (`_before`), which only grants of
    one customer and currency that tie on every other key ever compare: 2 × (SIDE × above +
    position among the grants it ties with, in grant id order). `above`: its id is above the
    prefix of the auto-recharge grants of its customer and currency (`setting[c, k]`: the
    prefix's position, −1 for none), whose rank is RECHARGE_RANK, between the two sides. Ids are
    never equal and never start with such a prefix, so ranks follow the grant ids.

    The happenings come sorted with every rank 0: grants that tie take effect one after the
    other (same time, then the same keys), as they do in every phase, in grant order. Also
    returns whether the ranks reorder any of them (else the happenings are already in order)."""
    rank = np.zeros(len(g_currency), dtype=np.int64)
    reordered = False
    tied = np.empty(0, dtype=np.int64)
    for c in range(len(h_start) - 1):
        h, h_end = h_start[c], h_start[c + 1]
        while h < h_end:
            if h_phase[h] != TAKES_EFFECT:
                h += 1
                continue
            first = h_grant[h]
            run_end = h + 1  # happenings [h, run_end) take effect together on equal keys
            while run_end < h_end and h_phase[run_end] == TAKES_EFFECT:
                g = h_grant[run_end]
                if (
                    g_effective[g] != g_effective[first]
                    or g_currency[g] != g_currency[first]
                    or g_priority[g] != g_priority[first]
                    or g_expires[g] != g_expires[first]
                    or g_tclass[g] != g_tclass[first]
                ):
                    break
                run_end += 1
            n_tied = run_end - h
            if n_tied > len(tied):
                tied = np.empty(2 * n_tied, dtype=np.int64)
            for i in range(n_tied):  # by grant id (insertion sort: ties are few)
                moving = h_grant[h + i]
                j = i
                while j > 0 and _ids_before(moving, tied[j - 1], g_row, id_offsets, id_data):
                    tied[j] = tied[j - 1]
                    j -= 1
                tied[j] = moving
            for i in range(n_tied):
                reordered = reordered or tied[i] != h_grant[h + i]
            p = setting[c, g_currency[first]]
            for i in range(n_tied):
                g = tied[i]
                above = 0
                if p >= 0:
                    row = g_row[g]
                    if _bytes_before(
                        prefix_data,
                        prefix_offsets[p],
                        prefix_offsets[p + 1],
                        id_data,
                        id_offsets[row],
                        id_offsets[row + 1],
                    ):
                        above = 1
                rank[g] = 2 * (above * SIDE + i)
            h = run_end
    return rank, reordered


@njit(cache=True, nogil=True)
def _sort_happenings(
    lo: int, hi: int, h_time: np.ndarray, h_phase: np.ndarray, h_grant: np.ndarray, keys: Any
) -> None:  # pragma: no cover - compiled
    """Sort happenings [lo, hi) in place: insertion sort (a customer has few grants), merge
    passes when it has many."""
    if hi - lo <= 32:
        for j in range(lo + 1, hi):
            t, phase, grant = h_time[j], h_phase[j], h_grant[j]
            i = j
            while i > lo:
                if h_time[i - 1] < t or (h_time[i - 1] == t and h_phase[i - 1] < phase):
                    break
                if (
                    h_time[i - 1] == t
                    and h_phase[i - 1] == phase
                    and not _grant_before(grant, h_grant[i - 1], keys)
                ):
                    break
                h_time[i], h_phase[i], h_grant[i] = h_time[i - 1], h_phase[i - 1], h_grant[i - 1]
                i -= 1
            h_time[i], h_phase[i], h_grant[i] = t, phase, grant
        return
    order = np.arange(lo, hi)
    spare = np.empty_like(order)
    width = 1
    while width < hi - lo:
        for left in range(0, hi - lo, 2 * width):
            mid, right = min(left + width, hi - lo), min(left + 2 * width, hi - lo)
            i, j = left, mid
            for to in range(left, right):
                take_right = j < right and (
                    i >= mid or _happens_before(order[j], order[i], h_time, h_phase, h_grant, keys)
                )
                if take_right:
                    spare[to] = order[j]
                    j += 1
                else:
                    spare[to] = order[i]
                    i += 1
        order, spare = spare, order
        width *= 2
    for column in (h_time, h_phase, h_grant):
        column[lo:hi] = column[order]


@njit(cache=True, nogil=True)
def _span_and_grants(
    rows: np.ndarray,
    starts: np.ndarray,
    lengths: np.ndarray,
    n_cur: int,
    recharges: np.ndarray,
    overdrafts: np.ndarray,
) -> tuple[int, int]:  # pragma: no cover - compiled
    """The first and last time of the kernel's rows (parts `starts`/`lengths` of `rows`), and
    the grants the kernel made: how many recharges per customer × currency pair (`recharges`),
    the pairs with an overdraft grant (`overdrafts`)."""
    t0 = np.iinfo(np.int64).max
    t1 = np.iinfo(np.int64).min
    for p in range(len(starts)):
        for r in range(starts[p], starts[p] + lengths[p]):
            t = rows[r, O_TIME]
            t0 = min(t0, t)
            t1 = max(t1, t)
            kind = rows[r, O_KIND]
            if kind != KIND_STATIC:
                pair = rows[r, O_CUSTOMER] * n_cur + rows[r, O_CURRENCY]
                if kind == KIND_RECHARGE:
                    recharges[pair] = max(recharges[pair], rows[r, O_REF] + 1)
                else:
                    overdrafts[pair] = True
    return t0, t1


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
    n_cur: int,
    g_row: np.ndarray,
    g_type_code: np.ndarray,
    g_source_code: np.ndarray,
    recharge_base: np.ndarray,
    overdraft_code: np.ndarray,
    e_row: np.ndarray,
    event_ids: np.ndarray,
    event_valid: np.ndarray,
    feature_ids: np.ndarray,
    feature_valid: np.ndarray,
    staged: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Move the kernel's rows into their time buckets of `staged` (bucket b from row
    fill_from[b] on), keeping their order, as what the output columns need (`S_*`): amounts at
    the replay's scale, the grant's code among the grant names (`_kernel_grant_names`), its
    type and source, and the event's event_id and feature_id views. Rows are read in kernel
    order, where grants and event rows (`e_row`: table positions) mostly go forward."""
    filled = fill_from.copy()
    for p in range(len(starts)):
        for r in range(starts[p], starts[p] + lengths[p]):
            b = (rows[r, O_TIME] - t0) >> shift
            to = filled[b]
            filled[b] = to + 1
            c, k, kind, ref = (
                rows[r, O_CUSTOMER],
                rows[r, O_CURRENCY],
                rows[r, O_KIND],
                rows[r, O_REF],
            )
            if kind == KIND_STATIC:
                grant, grant_type, source = g_row[ref], g_type_code[ref], g_source_code[ref]
            elif kind == KIND_RECHARGE:
                grant = recharge_base[c * n_cur + k] + ref
                grant_type, source = GRANT_TYPE_PAID, GRANT_SOURCE_AUTO_RECHARGE
            else:
                grant = overdraft_code[c * n_cur + k]
                grant_type, source = GRANT_TYPE_OVERDRAFT, GRANT_SOURCE_OVERDRAFT
            staged[to, S_TIME] = rows[r, O_TIME]
            staged[to, S_AMOUNT] = rows[r, O_AMOUNT] * factors[k]
            staged[to, S_BALANCE] = rows[r, O_BALANCE] * factors[k]
            staged[to, S_GRANT] = grant
            codes = ((c * n_cur + k) << 10) | (rows[r, O_TYPE] << 7) | (grant_type << 5)
            codes |= source << 2
            event = rows[r, O_EVENT]
            if event < 0:
                staged[to, S_CODES] = codes
                for column in range(S_EVENT_VIEWS, S_EVENT_VIEWS + 4):
                    staged[to, column] = 0
                continue
            position = e_row[event]
            staged[to, S_CODES] = codes | event_valid[position] | (feature_valid[position] << 1)
            staged[to, S_EVENT_VIEWS] = event_ids[position, 0]
            staged[to, S_EVENT_VIEWS + 1] = event_ids[position, 1]
            staged[to, S_EVENT_VIEWS + 2] = feature_ids[position, 0]
            staged[to, S_EVENT_VIEWS + 3] = feature_ids[position, 1]


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
    n_cur: int,
    currency_column: bool,
    tables: Any,
    numbers: np.ndarray,
    money: np.ndarray,
    views: np.ndarray,
    valid: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Buckets [b_from, b_to) of `staged`: sort each on time (stable), then write its rows'
    output columns: `numbers` (entry_id, timestamp), `money` (amount, balance_after as
    decimal128 pairs), `views` (the string columns of STRING_COLUMNS as views into `tables`;
    event_id and feature_id come staged) and `valid` (event_id, feature_id not null)."""
    customers, currencies, entry_types, grant_ids, grant_types, grant_sources, _, _ = tables
    times = np.empty(0, dtype=np.int64)  # one bucket's times, their order, sub-bucket counts
    order = np.empty(0, dtype=np.int64)
    counts = np.empty(0, dtype=np.int64)
    for b in range(b_from, b_to):
        lo, hi = bucket_starts[b], bucket_starts[b + 1]
        if hi == lo:
            continue
        if hi - lo > len(times):
            times = np.empty(hi - lo, dtype=np.int64)
            order = np.empty(hi - lo, dtype=np.int64)
            counts = np.empty(hi - lo + 2, dtype=np.int64)
        for i in range(lo, hi):
            times[i - lo] = staged[i, S_TIME]
        _order_by_time(times[: hi - lo], order, counts)
        for i in range(lo, hi):
            r = lo + order[i - lo]
            codes = staged[r, S_CODES]
            pair = codes >> 10
            c, k = pair // n_cur, pair % n_cur
            numbers[0, i] = i + 1
            numbers[1, i] = staged[r, S_TIME]
            amount, balance = staged[r, S_AMOUNT], staged[r, S_BALANCE]
            money[0, i, 0] = amount
            money[0, i, 1] = amount >> 63
            money[1, i, 0] = balance
            money[1, i, 1] = balance >> 63
            entry_type, grant_type, source = (codes >> 7) & 7, (codes >> 5) & 3, (codes >> 2) & 7
            grant = staged[r, S_GRANT]
            for half in range(2):
                views[0, i, half] = customers[c, half]
                if currency_column:
                    views[1, i, half] = currencies[k, half]
                views[2, i, half] = entry_types[entry_type, half]
                views[3, i, half] = grant_ids[grant, half]
                views[4, i, half] = grant_types[grant_type, half]
                views[5, i, half] = grant_sources[source, half]
                views[6, i, half] = staged[r, S_EVENT_VIEWS + half]
                views[7, i, half] = staged[r, S_EVENT_VIEWS + 2 + half]
            valid[0, i] = codes & 1
            valid[1, i] = (codes >> 1) & 1


@njit(cache=True, inline="always")
def _take_effect(
    g: int,
    t: int,
    c: int,
    out: np.ndarray,
    n_out: int,
    grants: Any,
    active: np.ndarray,
    n_active: np.ndarray,
    balance: np.ndarray,
    overdraft: np.ndarray,
) -> int:  # pragma: no cover - compiled
    """GRANTED, into the draw-down list, then settle overdraft debt from the new grant; returns
    the number of rows written."""
    remaining, state, currency, _, _, _, _, _, number, kind, ref, amount0 = grants
    k = currency[g]
    state[g] = 1
    remaining[g] = amount0[g]
    balance[k] += amount0[g]
    gref = ref[g] if kind[g] == 0 else number[g]
    _push(out, n_out, t, c, k, GRANTED, kind[g], gref, amount0[g], balance[k], -1)
    n_out += 1
    j = n_active[k]
    while j > 0 and _before(g, active[k, j - 1], grants):
        active[k, j] = active[k, j - 1]
        j -= 1
    active[k, j] = g
    n_active[k] += 1
    od = overdraft[k]
    if od >= 0 and remaining[od] < 0:
        settled = min(remaining[g], -remaining[od])
        remaining[g] -= settled
        balance[k] -= settled
        _push(out, n_out, t, c, k, TRANSFER_SOURCE, kind[g], gref, -settled, balance[k], -1)
        n_out += 1
        remaining[od] += settled
        balance[k] += settled
        _push(out, n_out, t, c, k, TRANSFER_TARGET, 2, 0, settled, balance[k], -1)
        n_out += 1
        if remaining[g] == 0:
            for m in range(j, n_active[k] - 1):
                active[k, m] = active[k, m + 1]
            n_active[k] -= 1
    return n_out
