"""Output tables of a replay: the ledger, denied-events and grants schemas, built from integer
minor units.

Both engines build their outputs here, so equal ledgers are equal DataFrames (and equal Parquet
bytes). The columns are those `pricing_lab.outputs` declares for each file (one declaration for
writers and readers); amount columns are `Decimal(38, p)` with p the largest precision of the
replay's currencies; each value is exact at its own currency's precision (a precision-2 currency
in a scale-4 column reads 1.2300).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from pricing_lab.ledger.model import ENTRY_TYPES
from pricing_lab.outputs import DENIED_EVENTS, GRANTS, LEDGER, UTC_TIME

TIMESTAMP = UTC_TIME


def ledger_schema(scale: int) -> pl.Schema:
    """The ledger's columns (SPEC §5, `outputs.LEDGER`), amounts at `scale` decimal places."""
    return LEDGER.schema(scale)


def denied_schema(scale: int) -> pl.Schema:
    """The denied events' columns (SPEC §5 `block` mode, `outputs.DENIED_EVENTS`), amounts at
    `scale` decimal places."""
    return DENIED_EVENTS.schema(scale)


def grants_schema(scale: int, money_scale: int) -> pl.Schema:
    """The grants a replay used (SPEC §6, `outputs.GRANTS`): amounts at `scale` places, cost
    bases (money per credit) at `money_scale`, then the scenario. The order of the columns is
    part of the contract (exports); the grant table (`grant_table.grant_table_schema`) is the
    same without `scenario`."""
    return GRANTS.schema(scale, cost_basis=money_scale)


def decimal_series(name: str, unscaled: np.ndarray, scale: int) -> pl.Series:
    """A Decimal(38, scale) column from int64 unscaled values, without Python objects.

    Arrow's decimal128 is a 16-byte little-endian two's-complement integer: the int64 is the low
    half and its sign extension the high half.
    """
    values = np.ascontiguousarray(unscaled, dtype=np.int64)
    pairs = np.empty((len(values), 2), dtype=np.int64)
    pairs[:, 0] = values
    pairs[:, 1] = values >> 63
    array = pa.Array.from_buffers(
        pa.decimal128(38, scale), len(values), [None, pa.py_buffer(pairs)]
    )
    series = pl.Series(name, array)
    assert isinstance(series, pl.Series)
    return series


def rescale(units: np.ndarray, precisions: np.ndarray, scale: int) -> np.ndarray:
    """Minor units at each row's currency precision → unscaled values at `scale` places."""
    factors = np.power(10, scale - precisions.astype(np.int64)).astype(np.int64)
    return units.astype(np.int64) * factors


def timestamps(name: str, micros: np.ndarray) -> pl.Series:
    """A UTC microsecond timestamp column from int64 microseconds since the epoch."""
    return pl.Series(name, np.asarray(micros, dtype=np.int64)).cast(TIMESTAMP)


def entry_type_series(codes: np.ndarray) -> pl.Series:
    """Entry type names from the codes of `model.ENTRY_TYPES`."""
    names = pl.Series("entry_type", list(ENTRY_TYPES), dtype=pl.String)
    return names.gather(pl.Series(np.asarray(codes, dtype=np.int64)))


def empty_ledger(scale: int) -> pl.DataFrame:
    """A ledger with no entries."""
    return pl.DataFrame(schema=ledger_schema(scale))
