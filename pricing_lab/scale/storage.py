"""Where a bucketed replay keeps its files: a local folder or an object-storage URI.

A `Store` names a root (`/shared/run-7`, `s3://bucket/runs/7`, `gs://…`, or any URI
`pyarrow.fs.FileSystem.from_uri` knows) and reads and writes files under it by relative path.
It holds only its root text, so it travels to other processes and machines; each process opens
the file system itself. Object stores have no folders to create and no atomic rename: results
are written under fixed names and a bucket counts as done only once its last file (`done.json`)
is there, so a retried bucket overwrites its earlier files and nothing is read half-written.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pricing_lab.errors import InputError


@dataclass(frozen=True, slots=True)
class Store:
    """A root folder or URI; paths given to its methods are relative, with `/` separators."""

    root: str

    @classmethod
    def at(cls, place: str | Path) -> Store:
        """A store at a local folder (made absolute) or at a URI such as `s3://bucket/prefix`."""
        text = str(place)
        return cls(text if "://" in text else str(Path(text).resolve()))

    def create(self) -> None:
        """Create the root (a no-op on object stores where it exists); a place that cannot be
        used — an unknown URI scheme, a folder that cannot be made, an unreachable store — is
        bad input, named with the reason, before anything is written."""
        try:
            fs, base = self._fs()
            fs.create_dir(base, recursive=True)
        except (OSError, pa.ArrowException) as exc:
            raise InputError(f"work directory {self.root}: cannot write there: {exc}") from None

    def _fs(self) -> tuple[pafs.FileSystem, str]:
        if "://" in self.root:
            fs, base = pafs.FileSystem.from_uri(self.root)
            return fs, base
        return pafs.LocalFileSystem(), self.root

    def _path(self, relative: str) -> tuple[pafs.FileSystem, str]:
        fs, base = self._fs()
        return fs, posixpath.join(base, relative)

    def uri(self, relative: str) -> str:
        """The full name of `relative`, for messages."""
        return posixpath.join(self.root, relative)

    def write_table(self, relative: str, table: pa.Table, *, row_group_rows: int) -> None:
        fs, path = self._path(relative)
        fs.create_dir(posixpath.dirname(path), recursive=True)
        pq.write_table(
            table,
            path,
            filesystem=fs,
            row_group_size=row_group_rows,
            compression="zstd",
            compression_level=1,
        )

    def write_frame(self, relative: str, frame: pl.DataFrame, *, row_group_rows: int) -> None:
        """A Polars frame as Parquet, written by Polars: no Arrow copy of the frame first (a
        bucket task writes tables of millions of rows; this halves the writing's CPU)."""
        fs, path = self._path(relative)
        fs.create_dir(posixpath.dirname(path), recursive=True)
        with fs.open_output_stream(path) as out:
            frame.write_parquet(
                out, compression="zstd", compression_level=1, row_group_size=row_group_rows
            )

    def read_frame(self, relative: str) -> pl.DataFrame:
        """A Parquet file as a Polars frame, read by Polars."""
        fs, path = self._path(relative)
        if isinstance(fs, pafs.LocalFileSystem):
            return pl.read_parquet(path)
        with fs.open_input_file(path) as source:
            return pl.read_parquet(source)

    def read_table(self, relative: str) -> pa.Table:
        fs, path = self._path(relative)
        return pq.read_table(path, filesystem=fs)

    def parquet_file(self, relative: str) -> pq.ParquetFile:
        fs, path = self._path(relative)
        return pq.ParquetFile(fs.open_input_file(path))

    def write_text(self, relative: str, text: str) -> None:
        fs, path = self._path(relative)
        fs.create_dir(posixpath.dirname(path), recursive=True)
        with fs.open_output_stream(path) as out:
            out.write(text.encode("utf-8"))

    def read_text(self, relative: str) -> str:
        fs, path = self._path(relative)
        with fs.open_input_stream(path) as source:
            return bytes(source.read()).decode("utf-8")

    def exists(self, relative: str) -> bool:
        fs, path = self._path(relative)
        return fs.get_file_info(path).type != pafs.FileType.NotFound

    def remove(self, relative: str) -> None:
        """Delete the file or folder `relative` (nothing when it is not there)."""
        fs, path = self._path(relative)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.Directory:
            fs.delete_dir(path)
        elif info.type == pafs.FileType.File:
            fs.delete_file(path)
