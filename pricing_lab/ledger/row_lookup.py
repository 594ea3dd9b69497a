"""Rows of one table found in another by their string keys, exactly: a compiled 64-bit hash table.

The invariant check matches each CONSUMED entry with its cost row on (event_id, feature_id) and
each denied event with its consumption rows, on tables of tens of millions of rows, after every
replay. Each row's key columns are hashed to 64 bits (Polars), the table side is put in an
open-addressing hash table (compiled), the query side probes it, and the strings of every match
are then compared: the answer is exact. When the hashes cannot settle a lookup (two table rows
with one hash, or a match whose strings differ) `lookup` says so (None) and the caller compares
the strings itself, slowly. (A Polars join on the strings, or on the 64-bit hashes, does the same
work several times slower at that size.)
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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
            part *= _MIX  # wraps around modulo 2^64, as intended
            part ^= column.cast(pl.String).hash(seed=seed).to_numpy()
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
    table: pl.DataFrame,
    in_table: np.ndarray,
    queries: pl.DataFrame,
    asked: np.ndarray,
    hash_rows: RowHash = row_hash,
) -> np.ndarray | None:
    """For each row of `queries` that is `asked`, the row of `table` (among those `in_table`)
    with the same values in every column; -1 if none (or not asked). None when the hashes
    (`hash_rows`) cannot settle it exactly: the caller then compares the strings itself."""
    with ThreadPoolExecutor(max_workers=2) as pool:  # the table and the queries' hashes
        built = pool.submit(key_table, table, hash_rows)
        query_hashes = np.asarray(hash_rows(queries), dtype=np.uint64)
        keys = built.result()
    if not keys.distinct:
        return None
    match = _hash_probe(keys.slots, keys.hashes, in_table, query_hashes, asked)
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
) -> np.ndarray:  # pragma: no cover - compiled
    """For each asked query, the table row with the same hash if it is `in_table` (-1: none, or
    not asked), by one probe of `_hash_slots`' table (the table rows' hashes are distinct)."""
    bits = 0
    while (1 << bits) < len(slots):
        bits += 1
    mask = np.int64(len(slots) - 1)
    match = np.full(len(query_hashes), -1, dtype=np.int64)
    for i in range(len(query_hashes)):
        if not asked[i]:
            continue
        slot = _slot(query_hashes[i], bits)
        while slots[slot] >= 0:
            row = slots[slot]
            if table_hashes[row] == query_hashes[i]:
                if in_table[row]:
                    match[i] = row
                break
            slot = (slot + np.int64(1)) & mask
    return match


@njit(cache=True, nogil=True)
def _slot(value: np.uint64, bits: int) -> np.int64:  # pragma: no cover - compiled
    # Fibonacci hashing: the top bits of value × 2^64/φ, so that a poor hash still spreads over
    # the table.
    return np.int64((value * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - bits))
