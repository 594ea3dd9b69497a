"""Rows of one table found in another by their string keys, exactly: a compiled 64-bit hash table.

The invariant check matches each CONSUMED entry with its cost row on (event_id, feature_id) and
each denied event with its consumption rows, on tables of tens of millions of rows, after every
replay. Each row's key columns are hashed to 64 bits (Polars), the table side is put in an
open-addressing hash table (compiled), the query side probes it, and the strings of every match
are then compared: the answer is exact. When the hashes cannot settle a lookup (two table rows
with one hash, or a match whose strings differ) `lookup` says so (None) and the caller compares
the strings itself, slowly. (A Polars join on the strings, or on the 64-bit hashes, does the same
work several times slower at that size.)

Queries that come in runs (a customer's entries, whose costs are side by side in the table, in
the same order) can say so (`runs`): each query first tries the table row its run matched last
and the one after it, and probes the hash table only when neither has its hash. The table's hashes
being distinct, both find the same row; the run's rows are near each other in memory, a probe's
slot anywhere.

`encode` numbers the distinct values of one string column the same way: by their hashes in a
compiled hash table, then every row compared with its code's value (a Polars `Categorical` cast
does it exactly too, several times slower). Values known in advance (the grant table's ids) can
take the first codes, in their order, so that a code is also their row there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl
from numba import njit

# Rows hashed at once, and whose matches are confirmed on the strings at once: at 15M rows a
# slice at a time takes a third of the transient memory of one pass over all rows.
SLICE_ROWS = 2_000_000

RowHash = Callable[[pl.DataFrame], np.ndarray]


# Odd 64-bit multiplier (2^64/φ) mixing the hash of the columns before a row's next column in.
_MIX = np.uint64(0x9E3779B97F4A7C15)


def row_hash(frame: pl.DataFrame) -> np.ndarray:
    """A 64-bit hash of each row of a frame of string columns: each column's own hash (seeded
    by its position), mixed in column after column in place (no row-wise struct built)."""
    hashes = np.zeros(frame.height, dtype=np.uint64)
    for lo in range(0, frame.height, SLICE_ROWS):
        part = hashes[lo : lo + SLICE_ROWS]
        for seed, column in enumerate(frame.slice(lo, SLICE_ROWS).iter_columns()):
            column_hash = column.cast(pl.String).hash(seed=seed).to_numpy()
            if seed == 0:  # mixing it into zeros would leave it as it is
                part[:] = column_hash
            else:
                part *= _MIX  # wraps around modulo 2^64, as intended
                part ^= column_hash
    return hashes


@dataclass(frozen=True, slots=True)
class KeyTable:
    """The rows of a table of string keys, findable by a 64-bit hash of their values."""

    keys: pl.DataFrame  # the key columns
    hashes: np.ndarray  # uint64 hash of each row
    slots: np.ndarray  # `_hash_slots` of the rows (-1: an empty slot); empty unless `distinct`
    distinct: bool  # no two rows have one hash (otherwise the table cannot settle a lookup)


def key_table(keys: pl.DataFrame, hash_rows: RowHash = row_hash) -> KeyTable:
    hashes = np.asarray(hash_rows(keys), dtype=np.uint64)
    slots, distinct = _hash_slots(hashes)
    return KeyTable(keys=keys, hashes=hashes, slots=slots, distinct=distinct)


def lookup(
    table: pl.DataFrame | KeyTable,
    in_table: np.ndarray,
    queries: pl.DataFrame,
    asked: np.ndarray,
    hash_rows: RowHash = row_hash,
    runs: np.ndarray | None = None,
) -> np.ndarray | None:
    """For each row of `queries` that is `asked`, the row of `table` (among those `in_table`)
    with the same values in every column; -1 if none (or not asked). None when the hashes
    (`hash_rows`) cannot settle it exactly: the caller then compares the strings itself.
    `table` may be given as its `key_table` (by the same `hash_rows`).

    `runs`: optionally, a run number (≥ 0) per query, for queries whose rows of a run follow each
    other in the table (only the speed depends on it)."""
    keys = table if isinstance(table, KeyTable) else key_table(table, hash_rows)
    query_hashes = np.asarray(hash_rows(queries), dtype=np.uint64)
    if not keys.distinct:
        return None
    if runs is None or len(runs) == 0:
        runs = np.empty(0, dtype=np.uint32)
    n_runs = int(runs.max()) + 1 if len(runs) else 0
    match = _hash_probe(keys.slots, keys.hashes, in_table, query_hashes, asked, runs, n_runs)
    matched = match >= 0
    if matched.any():
        # Compare every query row with the row it matched, or with row 0 (spares gathering the
        # queries' side), a slice of rows and one column at a time: the gathered strings (16
        # bytes a row) of one column are freed before the next column's are gathered.
        row = pl.Series(np.maximum(match, 0))
        rows = keys.keys
        unmatched = pl.Series(~matched)
        for lo in range(0, queries.height, SLICE_ROWS):
            slice_rows = row.slice(lo, SLICE_ROWS)
            same = ~unmatched.slice(lo, SLICE_ROWS)  # rows still to confirm
            for name in rows.columns:
                gathered = rows[name].gather(slice_rows)
                same = same & queries[name].slice(lo, SLICE_ROWS).eq_missing(gathered)
                del gathered
            if not (same | unmatched.slice(lo, SLICE_ROWS)).all():
                return None
    return match


def encode(
    column: pl.Series,
    known: pl.Series | None = None,
    hash_rows: RowHash = row_hash,
    runs: np.ndarray | None = None,
) -> tuple[np.ndarray, pl.Series] | None:
    """Integer codes for a string column: equal values (nulls too) share a code, different
    values have different ones. The values of `known` (distinct, no null) take the codes 0 …
    len(known) − 1 in their order; the column's other values the next ones, in order of first
    appearance. Returns the codes (uint32) and the value of each code (`known` first), or None
    when the hashes (`hash_rows`) cannot settle it exactly (two known values with one hash, or
    two different values of the column with one): the caller then encodes the strings itself.

    `runs`: optionally, a run number (≥ 0) per row, for a column whose rows of a run often repeat
    the run's value before (only the speed depends on it)."""
    known = pl.Series(dtype=pl.String) if known is None else known.cast(pl.String)
    column = column.cast(pl.String)
    known_hashes = np.asarray(hash_rows(known.to_frame()), dtype=np.uint64)
    hashes = np.asarray(hash_rows(column.to_frame()), dtype=np.uint64)
    if runs is None or len(runs) == 0:
        runs = np.empty(0, dtype=np.uint32)
    n_runs = int(runs.max()) + 1 if len(runs) else 0
    codes, first_rows, distinct = _hash_codes(known_hashes, hashes, runs, n_runs)
    if not distinct:
        return None
    # One chunk: a gather from several chunks is many times slower.
    values = pl.concat([known, column.gather(first_rows)], rechunk=True)
    # Equal hashes are not yet equal values: every row is compared with its code's value.
    if not values.gather(codes).eq_missing(column).all():
        return None
    return codes, values


@njit(cache=True, nogil=True)
def _hash_codes(
    known: np.ndarray, hashes: np.ndarray, runs: np.ndarray, n_runs: int
) -> tuple[np.ndarray, np.ndarray, bool]:  # pragma: no cover - compiled
    """Codes by hash (`encode`): known[k]'s hash is code k, the other hashes numbered on in
    order of first appearance, in an open-addressing hash table (at most half full); a row with
    the hash its run (the previous row, without `runs`) had takes its code without a probe.
    Returns the code of each row, the row where each code after the known ones first appears,
    and whether the known hashes are distinct (if not, nothing else)."""
    codes = np.empty(len(hashes), dtype=np.uint32)
    first_rows = np.empty(len(hashes), dtype=np.int64)
    code_hash = np.empty(len(known) + len(hashes), dtype=np.uint64)
    bits = 4
    while (1 << bits) < 2 * len(known):
        bits += 1
    slot_code = np.full(1 << bits, -1, dtype=np.int32)
    slot_hash = np.zeros(1 << bits, dtype=np.uint64)  # beside the code: one place to look
    n_codes = 0
    last_code = np.full(max(n_runs, 1), -1, dtype=np.int64)  # each run's code before
    last_hash = np.zeros(max(n_runs, 1), dtype=np.uint64)
    for i in range(len(known) + len(hashes)):
        row = i - len(known)  # the known hashes first, then the column's rows
        wanted = known[i] if row < 0 else hashes[row]
        run = 0 if row < 0 or len(runs) == 0 else runs[row]
        if row >= 0 and last_code[run] >= 0 and last_hash[run] == wanted:
            codes[row] = last_code[run]
            continue
        mask = np.int64((1 << bits) - 1)
        slot = _slot(wanted, bits)
        while slot_code[slot] >= 0 and slot_hash[slot] != wanted:
            slot = (slot + np.int64(1)) & mask
        if slot_code[slot] >= 0:
            if row < 0:  # two known values with one hash
                return codes, first_rows[:0], False
            code = np.int64(slot_code[slot])
        else:  # a new hash
            code = np.int64(n_codes)
            slot_code[slot] = code
            slot_hash[slot] = wanted
            code_hash[code] = wanted
            if row >= 0:
                first_rows[code - len(known)] = row
            n_codes += 1
            if 2 * n_codes > (1 << bits):  # more than half full: twice the slots
                bits += 1
                mask = np.int64((1 << bits) - 1)
                slot_code = np.full(1 << bits, -1, dtype=np.int32)
                slot_hash = np.zeros(1 << bits, dtype=np.uint64)
                for other in range(n_codes):
                    slot = _slot(code_hash[other], bits)
                    while slot_code[slot] >= 0:
                        slot = (slot + np.int64(1)) & mask
                    slot_code[slot] = other
                    slot_hash[slot] = code_hash[other]
        if row >= 0:
            codes[row] = code
            last_code[run] = code
            last_hash[run] = wanted
    return codes, first_rows[: n_codes - len(known)], True


@njit(cache=True, nogil=True)
def _hash_slots(table_hashes: np.ndarray) -> tuple[np.ndarray, bool]:  # pragma: no cover - compiled
    """An open-addressing hash table (linear probing, at most half full) of the table rows: the
    row in each slot (-1: empty), and whether the rows' hashes are all distinct (if not, the
    table is left unfinished and empty: a lookup would be ambiguous)."""
    bits = 1
    while (1 << bits) < 2 * len(table_hashes):
        bits += 1
    mask = np.int64((1 << bits) - 1)
    slots = np.full(1 << bits, -1, dtype=np.int32)
    for row in range(len(table_hashes)):
        slot = _slot(table_hashes[row], bits)
        while slots[slot] >= 0:
            if table_hashes[slots[slot]] == table_hashes[row]:
                return np.empty(0, dtype=np.int32), False
            slot = (slot + np.int64(1)) & mask
        slots[slot] = row
    return slots, True


@njit(cache=True, nogil=True)
def _hash_probe(
    slots: np.ndarray,
    table_hashes: np.ndarray,
    in_table: np.ndarray,
    query_hashes: np.ndarray,
    asked: np.ndarray,
    runs: np.ndarray,
    n_runs: int,
) -> np.ndarray:  # pragma: no cover - compiled
    """For each asked query, the table row with the same hash if it is `in_table` (-1: none, or
    not asked): the row its run (`runs`, if given) found last or the next one when either has
    its hash, otherwise by a probe of `_hash_slots`' table (the table rows' hashes are distinct,
    so the row with a hash is one and the same whichever way it is found)."""
    bits = 0
    while (1 << bits) < len(slots):
        bits += 1
    mask = np.int64(len(slots) - 1)
    match = np.full(len(query_hashes), -1, dtype=np.int64)
    last = np.full(n_runs, -1, dtype=np.int64)  # the row each run found last
    for i in range(len(query_hashes)):
        if not asked[i]:
            continue
        wanted = query_hashes[i]
        row = np.int64(-1)
        before = last[runs[i]] if len(runs) else np.int64(-1)
        if before >= 0 and table_hashes[before] == wanted:
            row = before
        elif 0 <= before < len(table_hashes) - 1 and table_hashes[before + 1] == wanted:
            row = before + 1
        else:
            slot = _slot(wanted, bits)
            while slots[slot] >= 0:
                if table_hashes[slots[slot]] == wanted:
                    row = np.int64(slots[slot])
                    break
                slot = (slot + np.int64(1)) & mask
        if row >= 0:
            if len(runs):
                last[runs[i]] = row
            if in_table[row]:
                match[i] = row
    return match


@njit(cache=True, nogil=True)
def _slot(value: np.uint64, bits: int) -> np.int64:  # pragma: no cover - compiled
    # Fibonacci hashing: the top bits of value × 2^64/φ, so that a poor hash still spreads over
    # the table.
    return np.int64((value * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - bits))
