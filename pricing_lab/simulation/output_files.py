"""Output tables as Parquet: one writer, fixed row groups, the same bytes for the same rows.

A replay held in memory (`SimulationResult.write`) and a replay run in customer partitions
(`partitioned.simulate_partitioned`, which writes its ledger piece by piece while merging) both
write through `TableWriter`. Row groups hold exactly `ROW_GROUP_ROWS` rows (the last one the
rest) and every row group is one contiguous Arrow chunk, so the bytes depend only on the rows,
not on how they were produced or chunked.

Each row group is encoded and compressed by the writer's own thread while the caller prepares
the next rows (Parquet encoding releases the GIL): the same calls on the same file writer in the
same order, so the same bytes, with the encoding on a second core.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pricing_lab import small_pages

ROW_GROUP_ROWS = 1 << 18
# zstd level 1: output files are written once and read a few times, so write speed is worth a
# slightly larger file.
_PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 1, "write_statistics": False}


def polars_frame(table: pa.Table) -> pl.DataFrame:
    """An Arrow table as a Polars frame (without a copy where the types allow)."""
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def arrow_schema(schema: pl.Schema) -> pa.Schema:
    """The Arrow schema Polars frames of `schema` convert to (strings as string views)."""
    return pl.DataFrame(schema=schema).to_arrow(compat_level=pl.CompatLevel.newest()).schema


class TableWriter:
    """Writes frames of one schema to one Parquet file, in order, in fixed-size row groups."""

    def __init__(self, path: str | Path, schema: pl.Schema) -> None:
        self._schema = schema
        self._arrow_schema = arrow_schema(schema)
        self._writer = pq.ParquetWriter(
            str(path), self._arrow_schema, memory_pool=small_pages.ARROW_POOL, **_PARQUET_OPTIONS
        )
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        # One row group at a time is encoded in the background: memory holds one group more.
        self._encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet-writer")
        self._encoding: Future[None] | None = None

    @property
    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema of the rows written (`arrow_schema` of the file's schema)."""
        return self._arrow_schema

    def write(self, frame: pl.DataFrame) -> None:
        """Append `frame`'s rows (its schema must be the writer's)."""
        if frame.schema != self._schema:
            raise ValueError(f"frame schema {frame.schema} is not the file's {self._schema}")
        self.write_arrow(frame.to_arrow(compat_level=pl.CompatLevel.newest()))

    def write_arrow(self, table: pa.Table) -> None:
        """Append `table`'s rows (its schema must be the writer's `arrow_schema`): the same
        bytes as the frame of the same rows. A row group already one chunk is not copied."""
        if table.schema != self._arrow_schema:
            raise ValueError(f"table schema {table.schema} is not the file's {self._arrow_schema}")
        if table.num_rows == 0:
            return
        self._pending.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows >= ROW_GROUP_ROWS:
            self._flush(final=False)

    def close(self) -> None:
        try:
            self._flush(final=True)
            self._wait()
        finally:
            self._abandon()

    def _wait(self) -> None:
        """Wait for the row group being encoded; its error, if any, is raised here."""
        encoding, self._encoding = self._encoding, None
        if encoding is not None:
            encoding.result()

    def _abandon(self) -> None:
        self._encoder.shutdown(wait=True)
        self._writer.close()

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if kind is None:
            self.close()
        else:
            self._abandon()

    def _flush(self, *, final: bool) -> None:
        if not self._pending:
            return
        table = pa.concat_tables(self._pending)
        written = 0
        while table.num_rows - written >= ROW_GROUP_ROWS or (final and written < table.num_rows):
            size = min(ROW_GROUP_ROWS, table.num_rows - written)
            group = table.slice(written, size).combine_chunks(small_pages.ARROW_POOL)
            self._wait()
            self._encoding = self._encoder.submit(
                self._writer.write_table, group, row_group_size=size
            )
            written += size
        rest = table.slice(written)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows


def write_table(frame: pl.DataFrame, path: str | Path) -> Path:
    """Write `frame` to the Parquet file `path` (see `TableWriter`)."""
    with TableWriter(path, frame.schema) as writer:
        writer.write(frame)
    return Path(path)
