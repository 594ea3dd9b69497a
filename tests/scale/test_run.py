"""Bucketed replays in this process and in a process pool: the files of a plain replay, byte for
byte, whatever the bucket count; failed buckets retried; oversized customers refused up front."""

from __future__ import annotations

import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from pricing_lab.activity.stream import ActivityOptions
from pricing_lab.errors import InputError
from pricing_lab.events.real import DEFAULT_START, load_sample_events
from pricing_lab.ledger.model import Enforcement
from pricing_lab.scale import LocalExecutor, ProcessExecutor, merge, simulate_in_buckets
from pricing_lab.scale.executors import TaskFailed, run_all
from pricing_lab.scale.merge import merge_buckets
from pricing_lab.scale.run import run_buckets, write_buckets
from pricing_lab.scale.storage import Store
from pricing_lab.simulation import output_files
from pricing_lab.simulation.demo import demo_customers, sample_catalog
from pricing_lab.simulation.simulate import OUTPUT_FILES, simulate
from tests.scale.helpers import (
    AlwaysFailing,
    FailingOnce,
    attempts,
    differing_files,
    library_threads,
    tie_inputs,
)
from tests.simulation.helpers import CATALOG_YAML, catalog


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessExecutor]:
    with ProcessExecutor(2) as executor:
        yield executor


@pytest.mark.parametrize("enforcement", ["overdraft", "block"])
def test_every_bucket_count_writes_the_bytes_of_a_plain_replay(
    tmp_path: Path, enforcement: Enforcement, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(output_files, "ROW_GROUP_ROWS", 64)  # the merge crosses row groups
    con, report, customers = tie_inputs()
    whole = simulate(con, catalog(), customers, ingest=report, enforcement=enforcement)
    whole.write(tmp_path / "whole")
    for buckets in (1, 3, 16):
        out = tmp_path / f"b{buckets}"
        progress: list[tuple[int, int]] = []
        result = simulate_in_buckets(
            con,
            catalog(),
            customers,
            out_dir=out,
            buckets=buckets,
            ingest=report,
            enforcement=enforcement,
            progress=lambda done, total, seen=progress: seen.append((done, total)),
        )
        assert differing_files(tmp_path / "whole", out) == [], buckets
        assert progress[0] == (0, buckets) and progress[-1] == (buckets, buckets)
        assert result.read_ledger().equals(whole.ledger)  # read back from the folder
        assert result.summary_dict() == whole.summary_dict()
        assert sorted(p.name for p in out.iterdir()) == sorted(
            p.name for p in (tmp_path / "whole").iterdir()
        )  # no scratch folder left


def test_the_demo_on_a_process_pool_writes_the_bytes_of_a_plain_replay(
    tmp_path: Path, pool: ProcessExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(output_files, "ROW_GROUP_ROWS", 5_000)
    con = duckdb.connect()
    ingest = load_sample_events(con)
    customers = demo_customers(con, start=DEFAULT_START)
    whole = simulate(con, sample_catalog(), customers, ingest=ingest, enforcement="block")
    whole.write(tmp_path / "whole")
    assert whole.denied_events.height > 0
    simulate_in_buckets(
        con,
        sample_catalog(),
        customers,
        out_dir=tmp_path / "pool",
        executor=pool,
        buckets=5,
        ingest=ingest,
        enforcement="block",
    )
    assert differing_files(tmp_path / "whole", tmp_path / "pool") == []


def test_pool_workers_use_one_thread_per_library_and_leave_this_process_alone(
    pool: ProcessExecutor,
) -> None:
    before = dict(os.environ)
    in_workers = run_all(pool, library_threads, [0, 1])
    assert in_workers == [{"polars": 1, "duckdb": 1, "arrow": 1, "numba": 1, "engine": 1}] * 2
    assert dict(os.environ) == before
    here = library_threads(0)
    assert here["duckdb"] == os.cpu_count()  # this process: DuckDB's default, every core


def test_the_biggest_items_are_handed_out_first_and_results_kept_in_order() -> None:
    started: list[str] = []

    def job(item: str) -> str:
        started.append(item)
        return item.upper()

    results = run_all(LocalExecutor(), job, ["a", "b", "c", "d"], memory=[1, 30, 20, 30])
    assert started == ["b", "d", "c", "a"]
    assert results == ["A", "B", "C", "D"]


def test_a_bucket_that_fails_once_is_retried_and_overwrites(
    tmp_path: Path, pool: ProcessExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    con, report, customers = tie_inputs()
    # Low-balance thresholds travel in the manifest to every bucket's activity stream.
    low = ActivityOptions(thresholds={"CR": (Decimal("150"), Decimal("12.5"))}, ending_soon_days=3)
    # Plan credits roll over (zed never uses its Pro credits): the rollover travels in the
    # bucket files to every bucket.
    rolling = catalog(
        CATALOG_YAML.replace("cadence: monthly}", "cadence: monthly, rollover: {max_percent: 50}}")
    )
    whole = simulate(con, rolling, customers, ingest=report, activity=low)
    whole.write(tmp_path / "whole")
    assert "ROLLED_OVER" in set(whole.ledger["entry_type"])
    assert whole.activity is not None
    assert "credits.low_balance" in set(whole.activity["kind"])
    store = Store.at(tmp_path / "job")
    job = write_buckets(
        con, rolling, customers, store=store, buckets=3, ingest=report, activity=low
    )
    markers = tmp_path / "markers"
    markers.mkdir()
    done = run_buckets(job, pool, replay=FailingOnce(str(markers), bucket=1))
    assert [d.bucket for d in done] == [0, 1, 2]
    assert [attempts(markers, b) for b in range(3)] == [1, 2, 1]
    merge_buckets(
        store, job.manifest, tmp_path / "out", rejected_events=job.rejected_events, ingest=report
    )
    assert differing_files(tmp_path / "whole", tmp_path / "out") == []
    # An output file the merge has no rule for is named, and nothing is written.
    monkeypatch.setattr(merge, "OUTPUT_FILES", (*OUTPUT_FILES, "rollovers.parquet"))
    with pytest.raises(ValueError, match=r"no rule for output file\(s\) rollovers\.parquet"):
        merge_buckets(store, job.manifest, tmp_path / "again", rejected_events=job.rejected_events)
    assert not (tmp_path / "again").exists()


def test_a_bucket_failing_every_attempt_stops_the_run_with_its_name(tmp_path: Path) -> None:
    con, report, customers = tie_inputs()
    store = Store.at(tmp_path / "job")
    job = write_buckets(con, catalog(), customers, store=store, buckets=3, ingest=report)
    with pytest.raises(TaskFailed) as failed:
        run_buckets(job, LocalExecutor(), replay=AlwaysFailing(bucket=2))
    assert "bucket=0002 failed 3 times" in str(failed.value)
    assert "OSError: disk full" in str(failed.value)


def test_a_customer_too_big_for_a_task_is_named_before_anything_runs(tmp_path: Path) -> None:
    con, report, customers = tie_inputs()
    events = dict(con.execute("SELECT customer_id, count(*) FROM events GROUP BY 1").fetchall())
    biggest = max(events, key=lambda c: events[c])
    from pricing_lab.scale import run

    # Memory for every customer but the biggest one(s).
    limit = run.task_memory_needed(events[biggest]) - 1
    named = sum(1 for n in events.values() if n == events[biggest])
    with pytest.raises(InputError) as refused:
        simulate_in_buckets(
            con, catalog(), customers, out_dir=tmp_path / "out", task_memory=limit, ingest=report
        )
    assert f"'{biggest}' ({events[biggest]:,} events)" in str(refused.value)
    assert f"{named} customer(s) too big" in str(refused.value)
    assert list((tmp_path / "out").iterdir()) == []  # nothing written, no scratch left


def test_a_bucket_refused_as_bad_input_stops_the_run_with_the_replays_message(
    tmp_path: Path, pool: ProcessExecutor
) -> None:
    # SPEC §5 "Exactness": 11 events of 0.9 billion credits at precision 9 go beyond the 64-bit
    # limit. The bucket's refusal comes back from the worker whole (its problems, not one per
    # character) and at once: no retry can change bad input.
    from tests.simulation.helpers import ev, events_frame, naive

    con = duckdb.connect()
    rows = [ev(f"e{i}", "acme", "chat", naive(5 + i), tokens=1_800_000_000) for i in range(11)]
    con.register("frame", events_frame(rows).to_arrow())
    con.execute("CREATE TABLE events AS SELECT * FROM frame")
    nano = catalog(CATALOG_YAML.replace("precision: 2", "precision: 9"))
    with pytest.raises(InputError) as refused:
        simulate_in_buckets(con, nano, out_dir=tmp_path / "out", executor=pool, buckets=2)
    message = str(refused.value)
    assert "1 problem:" in message and "failed" not in message
    assert "customer 'acme', currency 'CR'" in message and "9223372036.854775807" in message
    assert list((tmp_path / "out").iterdir()) == []
