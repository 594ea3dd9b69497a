"""The fast engine (the default): one compiled kernel over sorted columns in integer minor units.

It gives exactly the reference engine's ledger. Python only prepares columns (vectorised, Polars
and NumPy) and builds the output columns; the rules run in `_replay_kernel`, a numba function that
walks customers in customer id order and, per customer, the instants of its grant happenings and
events in the order of `order.happening_key`. Grants of one customer live in small arrays; the
grants an event can draw from are kept per currency in draw-down order.

Draw-down ties on `grant_id` need the order of ids the kernel creates
(`{customer}:auto_recharge:{currency}:{n}`) among the input's ids: input ids never start with that
prefix (a validation rule), so each input id sorts wholly before or after every recharge id of the
customer and currency. Static grants get rank 2 × (position of their id in sorted order); recharge
grants get 2 × (number of input ids below the prefix) − 1, and compare among themselves on the
decimal text of n.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
from numba import njit

from pricing_lab.ledger import frames
from pricing_lab.ledger.inputs import PreparedReplay
from pricing_lab.ledger.model import ENTRY_TYPES, GRANT_SOURCES, GRANT_TYPES
from pricing_lab.ledger.order import TYPE_RANK, Phase
from pricing_lab.money import quantize, to_minor_units
from pricing_lab.timeutil import DAY_US, NEVER_US, to_micros

EXPIRY_CODES = {"none": 0, "1_month": 1, "1_year": 2}

# Kernel output columns (one int64 row per ledger entry).
O_TIME, O_CUSTOMER, O_CURRENCY, O_TYPE, O_KIND, O_REF, O_AMOUNT, O_BALANCE, O_EVENT = range(9)
N_OUT = 9
# Grant kinds in the kernel's output.
KIND_STATIC, KIND_RECHARGE, KIND_OVERDRAFT = 0, 1, 2
# Entry type codes = positions in model.ENTRY_TYPES.
GRANTED, CONSUMED, EXPIRED, VOIDED, TRANSFER_SOURCE, TRANSFER_TARGET = range(6)
CHUNKS = 32  # customer chunks per replay, for progress reports


def replay_fast(
    prepared: PreparedReplay, progress: Callable[[int, int], None] | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The ledger and denied events of a prepared replay, from the compiled kernel."""
    columns = _Columns(prepared)
    outs: list[np.ndarray] = []
    denials: list[np.ndarray] = []
    n_customers = len(columns.customers)
    chunks = columns.chunks()
    # Customers never share credits: chunks run on every core (the kernel releases the GIL),
    # and their rows are kept in chunk order.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        done = pool.map(lambda chunk: _replay_kernel(*columns.kernel_args(*chunk)), chunks)
        for (_, hi), (out, n_out, denied, n_denied) in zip(chunks, done, strict=True):
            outs.append(out[:n_out])
            denials.append(denied[:n_denied])
            if progress is not None:
                progress(hi, n_customers)
    denied_rows = np.concatenate(denials) if denials else np.empty((0, 4), dtype=np.int64)
    return columns.ledger(outs), columns.denied(denied_rows)


class _Columns:
    """A prepared replay as the kernel's sorted columns, and the way back to output tables."""

    def __init__(self, prepared: PreparedReplay) -> None:
        self.prepared = prepared
        start_us, until_us = to_micros(prepared.start), to_micros(prepared.until)
        self.until_us = until_us
        self.currency_ids = [c.id for c in prepared.currencies]
        currency_code = {c: i for i, c in enumerate(self.currency_ids)}
        self.precisions = np.array([c.precision for c in prepared.currencies], dtype=np.int64)
        self.block = prepared.source.enforcement == "block"

        # Grants that take part: take effect inside the horizon and are not voided before that.
        table = prepared.grant_table
        all_ids = table["grant_id"].sort()  # every grant id: ranks and recharge id positions
        effective = table["effective_at"].dt.epoch("us").to_numpy()
        voided = table["voided_at"].dt.epoch("us").fill_null(NEVER_US).to_numpy()
        takes_part = (effective >= start_us) & (effective < until_us) & (voided > effective)
        grants = table.filter(pl.Series(takes_part))

        events = _EventColumns(prepared.consumptions, start_us, until_us)
        self.customers = sorted(
            set(events.run_customers) | set(grants["customer_id"].unique().to_list())
        )
        customer_code = {c: i for i, c in enumerate(self.customers)}
        n_customers, n_currencies = len(self.customers), len(self.currency_ids)

        # Grants by customer code (stable: the table order within a customer is kept).
        g_customer = _codes(grants["customer_id"], customer_code)
        by_customer = np.argsort(g_customer, kind="stable")
        g_customer = g_customer[by_customer]
        grants = grants[pl.Series(by_customer)]
        scale = prepared.scale
        factor = {c.id: 10 ** (scale - c.precision) for c in prepared.currencies}
        self.grant_ids = grants["grant_id"]
        self.g_type_code = _codes(grants["type"], {t: i for i, t in enumerate(GRANT_TYPES)})
        self.g_source_code = _codes(grants["source"], {s: i for i, s in enumerate(GRANT_SOURCES)})
        self.g_currency = _codes(grants["currency_id"], currency_code)
        self.g_amount = (
            grants.select(
                (
                    pl.col("amount").to_physical()
                    // pl.col("currency_id").replace_strict(factor, return_dtype=pl.Int64)
                ).cast(pl.Int64)
            )
            .to_series()
            .to_numpy()
        )
        self.g_priority = grants["priority"].to_numpy().astype(np.int64, copy=False)
        self.g_expires = grants["expires_at"].dt.epoch("us").fill_null(NEVER_US).to_numpy()
        self.g_tclass = _codes(grants["type"], TYPE_RANK)
        self.g_effective = grants["effective_at"].dt.epoch("us").to_numpy()
        g_voided = grants["voided_at"].dt.epoch("us").fill_null(NEVER_US).to_numpy()
        self.g_rank = 2 * all_ids.search_sorted(self.grant_ids).to_numpy().astype(np.int64)
        self.g_start = np.searchsorted(g_customer, np.arange(n_customers + 1)).astype(np.int64)

        # Grant happenings, sorted on order.HAPPENING_SORT_COLUMNS.
        index = np.arange(grants.height, dtype=np.int64)
        expiring = index[self.g_expires < until_us]
        voiding = index[g_voided < until_us]
        h_grant = np.concatenate([expiring, voiding, index])
        h_time = np.concatenate(
            [self.g_expires[expiring], g_voided[voiding], self.g_effective[index]]
        )
        h_phase = np.concatenate(
            [
                np.full(len(expiring), int(Phase.EXPIRY), dtype=np.int64),
                np.full(len(voiding), int(Phase.VOID), dtype=np.int64),
                np.full(len(index), int(Phase.TAKES_EFFECT), dtype=np.int64),
            ]
        )
        h_customer = g_customer[h_grant]
        order = np.lexsort(
            (
                self.g_rank[h_grant],
                self.g_effective[h_grant],
                self.g_tclass[h_grant],
                self.g_expires[h_grant],  # NEVER_US sorts last, as never_expires would
                self.g_priority[h_grant],
                self.g_currency[h_grant],
                h_phase,
                h_time,
                h_customer,
            )
        )
        self.h_grant = h_grant[order]
        self.h_time = h_time[order]
        self.h_phase = h_phase[order]
        self.h_start = np.searchsorted(h_customer[order], np.arange(n_customers + 1)).astype(
            np.int64
        )

        # Event rows (already in order.EVENT_SORT_COLUMNS order: see inputs.prepare).
        self.events = events
        e_customer = events.customer_codes(self.customers)
        self.e_time = events.time
        self.e_new = events.new_event
        self.e_currency = events.currency_codes(currency_code)
        self.e_cost = events.cost
        self.e_start = np.searchsorted(e_customer, np.arange(n_customers + 1)).astype(np.int64)

        # Auto-recharge settings per customer and currency.
        shape = (max(n_customers, 1), max(n_currencies, 1))
        self.ar_on = np.zeros(shape, dtype=np.bool_)
        self.ar_threshold = np.zeros(shape, dtype=np.int64)
        self.ar_target = np.zeros(shape, dtype=np.int64)
        self.ar_unit = np.zeros(shape, dtype=np.int64)
        self.ar_limit = np.full(shape, -1, dtype=np.int64)
        self.ar_expiry = np.zeros(shape, dtype=np.int64)
        self.ar_rank = np.zeros(shape, dtype=np.int64)
        prices = {c.id: c.unit_price for c in prepared.currencies}
        settings = prepared.source.auto_recharges
        prefixes = pl.Series(
            [f"{s.customer_id}:auto_recharge:{s.currency_id}:" for s in settings], dtype=pl.String
        )
        ids_below = all_ids.search_sorted(prefixes).to_list()
        for setting, below in zip(settings, ids_below, strict=True):
            if setting.customer_id not in customer_code:
                continue
            c, k = customer_code[setting.customer_id], currency_code[setting.currency_id]
            precision = int(self.precisions[k])
            self.ar_on[c, k] = True
            self.ar_threshold[c, k] = to_minor_units(
                quantize(setting.threshold, precision, "up"), precision
            )
            self.ar_target[c, k] = to_minor_units(
                quantize(setting.target, precision, "up"), precision
            )
            # Spend in integer money units at a scale where one minor unit's price is whole.
            price = prices[setting.currency_id]
            price_places = max(-int(price.normalize().as_tuple().exponent), 0)
            limit = setting.monthly_spend_limit
            limit_places = (
                0 if limit is None else max(-int(limit.normalize().as_tuple().exponent), 0)
            )
            money_scale = max(precision + price_places, limit_places)
            self.ar_unit[c, k] = int(price.scaleb(money_scale - precision))
            if limit is not None:
                scaled_limit = int(limit.scaleb(money_scale))
                if scaled_limit >= 2**62:
                    raise OverflowError("monthly_spend_limit too large for the fast engine")
                self.ar_limit[c, k] = scaled_limit
            self.ar_expiry[c, k] = EXPIRY_CODES[setting.grant_expiry]
            self.ar_rank[c, k] = 2 * below - 1

        # Room for one customer's grants: its input grants, an overdraft grant per currency and,
        # with auto-recharge, at most one recharge per consumption row.
        recharging = np.max(self.ar_on, axis=1)[:n_customers]
        self.sizes = (
            np.diff(self.g_start)
            + np.where(recharging, np.diff(self.e_start), 0)
            + n_currencies
            + 1
        )

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
            self.ar_rank,
        )

    def _scaled(self, units: np.ndarray, currency: np.ndarray) -> np.ndarray:
        return frames.rescale(units, self.precisions[currency], self.prepared.scale)

    def _constant(self, name: str, value: str, n: int) -> pl.Series:
        return pl.Series(name, [value], dtype=pl.String).gather(np.zeros(n, dtype=np.int64))

    def ledger(self, chunks: list[np.ndarray]) -> pl.DataFrame:
        """The ledger from the kernel's rows (`chunks`, in customer order; emptied as they are
        read), in ledger order (`api.chronological`).

        The kernel writes customer by customer; a stable sort on (time, customer code) puts the
        rows in ledger order (customer codes follow customer ids, and a customer's own order at
        one instant is its row order). Strings are only gathered once, in the final order.
        """
        scale = self.prepared.scale
        if sum(len(chunk) for chunk in chunks) == 0:
            return frames.empty_ledger(scale)
        rows = _in_ledger_order(chunks)  # column-major from here: rows[O_TIME] is one column
        customer, currency = rows[O_CUSTOMER], rows[O_CURRENCY]
        grant_names, grant, grant_type, grant_source = self._grant_codes(rows)
        codes = pl.DataFrame(
            {
                "customer": customer,
                "currency": currency,
                "entry_type": rows[O_TYPE],
                "grant": grant,
                "grant_type": grant_type,
                "grant_source": grant_source,
                "event": self.events.positions(rows[O_EVENT]),
            }
        )

        def named(values: Sequence[str] | pl.Series, code: str) -> pl.Expr:
            return pl.lit(pl.Series(values, dtype=pl.String)).gather(pl.col(code))

        # Every string column is a gather by code; one select runs them on every core.
        strings = codes.select(
            named(self.customers, "customer").alias("customer_id"),
            named(self.currency_ids, "currency").alias("currency_id"),
            named(ENTRY_TYPES, "entry_type").alias("entry_type"),
            named(grant_names, "grant").alias("grant_id"),
            named(GRANT_TYPES, "grant_type").alias("grant_type"),
            named(GRANT_SOURCES, "grant_source").alias("grant_source"),
            self.events.gathered("event_id", "event"),
            self.events.gathered("feature_id", "event"),
        )
        n = rows.shape[1]
        return pl.DataFrame(
            [
                pl.Series("entry_id", np.arange(1, n + 1, dtype=np.int64)),
                frames.timestamps("timestamp", rows[O_TIME]),
                *strings.select("customer_id", "currency_id", "entry_type").get_columns(),
                *strings.select("grant_id", "grant_type", "grant_source").get_columns(),
                frames.decimal_series("amount", self._scaled(rows[O_AMOUNT], currency), scale),
                frames.decimal_series(
                    "balance_after", self._scaled(rows[O_BALANCE], currency), scale
                ),
                *strings.select("event_id", "feature_id").get_columns(),
                self._constant("scenario", self.prepared.source.scenario, n),
            ]
        )

    def _grant_codes(
        self, rows: np.ndarray
    ) -> tuple[pl.Series, np.ndarray, np.ndarray, np.ndarray]:
        """Every grant met (`rows`: column-major) and, per row, its grant's position among them,
        its type's position in `model.GRANT_TYPES` and its source's in `model.GRANT_SOURCES`.

        The grants met: the input grants (codes 0 … G−1), then the auto-recharge grants met in
        the rows, then the overdraft grants.
        """
        kind, ref = rows[O_KIND], rows[O_REF]
        customer, currency = rows[O_CUSTOMER], rows[O_CURRENCY]
        n_currencies = max(len(self.currency_ids), 1)
        static = kind == KIND_STATIC
        code = np.where(static, ref, 0)
        # Types and sources come from their few names by code: a gather from a small table.
        recharge = kind == KIND_RECHARGE
        type_code = np.full(len(kind), GRANT_TYPES.index("OVERDRAFT"), dtype=np.int64)
        type_code[static] = self.g_type_code[ref[static]]
        type_code[recharge] = GRANT_TYPES.index("PAID")
        source_code = np.full(len(kind), GRANT_SOURCES.index("overdraft"), dtype=np.int64)
        source_code[static] = self.g_source_code[ref[static]]
        source_code[recharge] = GRANT_SOURCES.index("auto_recharge")
        ids = [self.grant_ids]
        offset = len(self.grant_ids)
        for grant_kind in (KIND_RECHARGE, KIND_OVERDRAFT):
            mine = np.flatnonzero(kind == grant_kind)
            if len(mine) == 0:
                continue
            # One key per grant: (customer, currency) and, for recharges, the number n. An
            # overdraft grant is one per pair: pairs in use are numbered without a sort.
            pair = customer[mine] * n_currencies + currency[mine]
            if grant_kind == KIND_RECHARGE:
                unique, inverse = np.unique(pair * (1 << 31) + ref[mine], return_inverse=True)
                pairs = unique // (1 << 31)
            else:
                used = np.zeros(len(self.customers) * n_currencies, dtype=np.bool_)
                used[pair] = True
                unique = pairs = np.flatnonzero(used)
                inverse = (np.cumsum(used) - 1)[pair]
            code[mine] = offset + inverse
            offset += len(unique)
            names = pl.DataFrame(
                {
                    "c": pl.Series(self.customers, dtype=pl.String).gather(pairs // n_currencies),
                    "k": pl.Series(self.currency_ids, dtype=pl.String).gather(pairs % n_currencies),
                    "n": unique % (1 << 31),
                }
            )
            suffix = (
                [pl.lit(":auto_recharge:"), pl.col("k"), pl.lit(":"), pl.col("n").cast(pl.String)]
                if grant_kind == KIND_RECHARGE
                else [pl.lit(":overdraft:"), pl.col("k")]
            )
            ids.append(names.select(pl.concat_str(pl.col("c"), *suffix)).to_series())
        return pl.concat(ids), code, type_code, source_code

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


def _codes(values: pl.Series, code: dict[str, int]) -> np.ndarray:
    """Each value's code in `code`, as int64."""
    return values.replace_strict(code, return_dtype=pl.Int64).to_numpy()


def _in_ledger_order(chunks: list[np.ndarray]) -> np.ndarray:
    """The kernel's rows (`chunks` of rows, customer by customer) in ledger order, stable on
    (time, customer code), and column-major (`result[O_TIME]` is the time column), which is how
    the output columns read them. `chunks` is emptied on the way, so each chunk's memory goes
    as soon as its rows are moved.

    A customer code follows the customer id order, and a customer's own order at one instant is
    its row order, so a stable sort on (time, customer) is `api.chronological`. Rows are moved
    in two passes that stay cache-friendly at tens of millions of rows: a stable scatter into
    time buckets, then a sort inside each bucket (in threads) that writes the columns.
    """
    n = sum(len(chunk) for chunk in chunks)
    full = [chunk for chunk in chunks if len(chunk)]
    t0 = min(int(chunk[:, O_TIME].min()) for chunk in full)
    span = max(int(chunk[:, O_TIME].max()) for chunk in full) - t0 + 1
    bits = max(max(int(chunk[:, O_CUSTOMER].max()) for chunk in full), 1).bit_length()
    n_buckets = int(min(max(n // 8192, 1), 4096))
    if (span * n_buckets).bit_length() > 62 or span.bit_length() + bits > 62:
        rows = np.concatenate(full)
        chunks.clear()
        frame = pl.DataFrame({"t": rows[:, O_TIME], "c": rows[:, O_CUSTOMER]})
        order = frame.select(pl.arg_sort_by("t", "c", maintain_order=True)).to_series()
        return np.ascontiguousarray(rows[order.to_numpy()].T)
    starts = np.zeros(n_buckets + 1, dtype=np.int64)
    for chunk in full:
        _count_buckets(chunk, t0, span, starts)
    starts = np.cumsum(starts)
    filled = starts[:-1].copy()
    staged = np.empty((n, N_OUT), dtype=np.int64)
    chunks.clear()
    while full:
        _place_in_buckets(full.pop(0), t0, span, filled, staged)
    out = np.empty((N_OUT, n), dtype=np.int64)
    workers = os.cpu_count() or 1
    cuts = np.searchsorted(starts, np.linspace(0, n, workers + 1))
    ranges = list(itertools.pairwise(np.unique(np.clip(cuts, 0, n_buckets)).tolist()))
    # The compiled passes release the GIL; numba's own parallel loops would leave OpenMP threads
    # spinning after them, slowing the NumPy work that follows.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda r: _sort_buckets(staged, starts, out, t0, bits, r[0], r[1]), ranges))
    return out


class _EventColumns:
    """The consumption rows the kernel replays, as integer columns in engine order.

    `inputs.prepare` hands over the consumptions in `order.EVENT_SORT_COLUMNS` order. Rows outside
    the horizon or costing nothing are left out; `row` keeps each kept row's position in the table
    so output columns (event_id, feature_id, …) are gathered from it once, at the end.
    """

    def __init__(self, table: pl.DataFrame, start_us: int, until_us: int) -> None:
        self.table = table
        time = table["timestamp"].dt.epoch("us").to_numpy().astype(np.int64, copy=False)
        cost = table["cost_units"].fill_null(0).to_numpy().astype(np.int64, copy=False)
        self.row = np.flatnonzero((time >= start_us) & (time < until_us) & (cost > 0))
        self.time = time[self.row]
        self.cost = cost[self.row]
        customers = table["customer_id"]
        new_customer = customers.ne_missing(customers.shift(1))
        self.run_customers: list[str] = customers.filter(new_customer).to_list()
        self._run = (np.cumsum(new_customer.to_numpy()) - 1)[self.row]
        events = table["event_id"]
        event_run = np.cumsum(events.ne_missing(events.shift(1)).to_numpy())[self.row]
        self.new_event = np.ones(len(self.row), dtype=np.bool_)
        self.new_event[1:] = event_run[1:] != event_run[:-1]

    def customer_codes(self, customers: list[str]) -> np.ndarray:
        """Each kept row's position of its customer in `customers` (sorted ids)."""
        position = {c: i for i, c in enumerate(customers)}
        of_run = np.array([position[c] for c in self.run_customers], dtype=np.int64)
        return of_run[self._run] if len(of_run) else np.empty(0, dtype=np.int64)

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

    def gathered(self, name: str, positions: str) -> pl.Expr:
        """Column `name` of the table at the positions in column `positions` (null: null)."""
        return pl.lit(self.table[name]).gather(pl.col(positions)).alias(name)

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


@njit(cache=True)
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


@njit(cache=True)
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
) -> np.ndarray:  # pragma: no cover - compiled
    if n == out.shape[0]:
        bigger = np.empty((out.shape[0] * 2 + 16, out.shape[1]), dtype=np.int64)
        bigger[:n] = out[:n]
        out = bigger
    out[n, 0] = t
    out[n, 1] = customer
    out[n, 2] = cur
    out[n, 3] = etype
    out[n, 4] = kind
    out[n, 5] = ref
    out[n, 6] = amount
    out[n, 7] = balance
    out[n, 8] = event_row
    return out


@njit(cache=True, nogil=True)
def _replay_kernel(
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
    ar_rank: np.ndarray,
) -> tuple[np.ndarray, int, np.ndarray, int]:  # pragma: no cover - compiled
    """Replay customers [c_from, c_to): ledger rows (columns O_*) and denied rows
    (event row, currency, cost, balance)."""
    n_rows = e_start[c_to] - e_start[c_from]
    out = np.empty((n_rows + 2 * (g_start[c_to] - g_start[c_from]) + 16, N_OUT), dtype=np.int64)
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
                        out = _push(
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
                n_out, out = _take_effect(
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
                            out = _push(
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
                            out = _push(out, n_out, t, c, k, CONSUMED, 2, 0, -left, balance[k], r)
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
                        rank[g] = ar_rank[c, k]
                        number[g] = recharges[k]
                        recharges[k] += 1
                        kind[g] = 1
                        ref[g] = 0
                        amount0[g] = amount
                        n_out, out = _take_effect(
                            g, t, c, out, n_out, grants, active, n_active, balance, overdraft
                        )
                        if expires[g] < until:
                            queue[k, q_tail[k]] = g
                            q_tail[k] += 1
                ei = ej
    return out, n_out, denied, n_denied


@njit(cache=True, nogil=True)
def _count_buckets(
    rows: np.ndarray, t0: int, span: int, counts: np.ndarray
) -> None:  # pragma: no cover - compiled
    """Add the number of `rows` in each time bucket to counts[bucket + 1]."""
    n_buckets = len(counts) - 1
    for i in range(rows.shape[0]):
        counts[(rows[i, O_TIME] - t0) * n_buckets // span + 1] += 1


@njit(cache=True, nogil=True)
def _place_in_buckets(
    rows: np.ndarray, t0: int, span: int, filled: np.ndarray, staged: np.ndarray
) -> None:  # pragma: no cover - compiled
    """Move `rows` into `staged` at their bucket's next free row (`filled`), keeping order."""
    n_buckets = len(filled)
    for i in range(rows.shape[0]):
        b = (rows[i, O_TIME] - t0) * n_buckets // span
        to = filled[b]
        for column in range(N_OUT):
            staged[to, column] = rows[i, column]
        filled[b] = to + 1


@njit(cache=True, nogil=True)
def _sort_buckets(
    staged: np.ndarray,
    starts: np.ndarray,
    out: np.ndarray,
    t0: int,
    bits: int,
    b_from: int,
    b_to: int,
) -> None:  # pragma: no cover - compiled
    """Buckets [b_from, b_to) of `staged`, each stably sorted, into the columns `out`."""
    for b in range(b_from, b_to):
        lo, hi = starts[b], starts[b + 1]
        if hi == lo:
            continue
        keys = np.empty(hi - lo, dtype=np.int64)
        for j in range(lo, hi):
            keys[j - lo] = ((staged[j, O_TIME] - t0) << bits) | staged[j, O_CUSTOMER]
        order = np.argsort(keys, kind="mergesort")
        for j in range(hi - lo):
            for column in range(staged.shape[1]):
                out[column, lo + j] = staged[lo + order[j], column]


@njit(cache=True)
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
) -> tuple[int, np.ndarray]:  # pragma: no cover - compiled
    """GRANTED, into the draw-down list, then settle overdraft debt from the new grant."""
    remaining, state, currency, _, _, _, _, _, number, kind, ref, amount0 = grants
    k = currency[g]
    state[g] = 1
    remaining[g] = amount0[g]
    balance[k] += amount0[g]
    gref = ref[g] if kind[g] == 0 else number[g]
    out = _push(out, n_out, t, c, k, GRANTED, kind[g], gref, amount0[g], balance[k], -1)
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
        out = _push(out, n_out, t, c, k, TRANSFER_SOURCE, kind[g], gref, -settled, balance[k], -1)
        n_out += 1
        remaining[od] += settled
        balance[k] += settled
        out = _push(out, n_out, t, c, k, TRANSFER_TARGET, 2, 0, settled, balance[k], -1)
        n_out += 1
        if remaining[g] == 0:
            for m in range(j, n_active[k] - 1):
                active[k, m] = active[k, m + 1]
            n_active[k] -= 1
    return n_out, out
