"""Shared inputs of the scale-out tests: the tie-heavy replay of the partition tests, the demo,
a bucket task that fails once, and byte comparison of output folders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from pricing_lab.events.ingest import IngestReport
from pricing_lab.scale.bucket_replay import BucketDone, BucketTask, replay_bucket
from pricing_lab.simulation.customers import CustomerInputs, customers_from_mapping
from pricing_lab.simulation.simulate import OUTPUT_FILES
from tests.simulation.helpers import load_events
from tests.simulation.test_partitioned import TIE_CUSTOMERS, _tie_rows


def tie_inputs() -> tuple[duckdb.DuckDBPyConnection, IngestReport, CustomerInputs]:
    """Six customers with many events at the same instants, grants, a subscription change,
    auto-recharge, a customer without events, and events rejected by their formulas."""
    con, report = load_events(_tie_rows())
    return con, report, customers_from_mapping(TIE_CUSTOMERS)


def differing_files(left: Path, right: Path) -> list[str]:
    """The SPEC §6 output files whose bytes differ between two folders."""
    return [
        name for name in OUTPUT_FILES if (left / name).read_bytes() != (right / name).read_bytes()
    ]


@dataclass(frozen=True, slots=True)
class FailingOnce:
    """`replay_bucket`, except that the first attempt at `bucket` writes its results and then
    fails (a worker lost after writing): the retry must overwrite, not add."""

    marker_dir: str
    bucket: int

    def __call__(self, task: BucketTask) -> BucketDone:
        done = replay_bucket(task)
        marker = Path(self.marker_dir) / f"attempt-{task.bucket}"
        attempts = len(marker.read_text()) if marker.exists() else 0
        marker.write_text("x" * (attempts + 1))
        if task.bucket == self.bucket and attempts == 0:
            raise RuntimeError(f"worker lost after writing bucket {task.bucket}")
        return done


def attempts(marker_dir: Path, bucket: int) -> int:
    """How many times `FailingOnce` ran `bucket`."""
    marker = marker_dir / f"attempt-{bucket}"
    return len(marker.read_text()) if marker.exists() else 0


@dataclass(frozen=True, slots=True)
class AlwaysFailing:
    """A bucket task whose bucket `bucket` fails on every attempt."""

    bucket: int

    def __call__(self, task: BucketTask) -> BucketDone:
        if task.bucket == self.bucket:
            raise OSError("disk full")
        return replay_bucket(task)


def library_threads(_item: object) -> dict[str, int]:
    """The thread counts the libraries of the process running this task use."""
    import numba
    import polars as pl
    import pyarrow as pa

    from pricing_lab.ledger.kernel import engine_threads
    from pricing_lab.scale.workers import duckdb_config

    with duckdb.connect(config=duckdb_config()) as con:
        row = con.execute("SELECT current_setting('threads')").fetchone()
    assert row is not None
    return {
        "polars": pl.thread_pool_size(),
        "duckdb": int(row[0]),
        "arrow": pa.cpu_count(),
        "numba": numba.get_num_threads(),
        "engine": engine_threads(),
    }
