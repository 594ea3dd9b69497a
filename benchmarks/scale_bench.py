"""Bucketed replays: the same buckets one after another, on a process pool, and on Ray.

Workload: the replay benchmark's (`replay_bench`: synthetic events for 10k customers over 60
days, the sample catalog, plans, a promotional grant each, auto-recharge on 20%), `--rows`
events (default 1M; the issue's figure is 10M) in `--buckets` buckets (default 8).

The buckets are written once (`scale.write_buckets`: costing included, timed apart); then the
bucket replays run, taking turns, `--rounds` times each (default 2; the median is kept):

* one after another in this process (`LocalExecutor`): the baseline;
* on a local process pool of 2 workers (`ProcessExecutor(2)`, worker start-up included);
* on a private local Ray node of 2 CPUs (`RayExecutor()`; the node's start-up not timed).

It prints each executor's time and ratio, the merge time, and per bucket its events, replay
time and the peak memory of the process that ran it. Every executor's merged ledger is checked
to be byte for byte the baseline's.

Run: `uv run --frozen --no-sync python -m benchmarks scale --rows=10000000` (under
`flock /work/team/heavy.lock` on a shared machine).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.replay_bench import CUSTOMERS, DATA, DAYS, START, _rows, workload_customers
from pricing_lab.events.ingest import ingest_events
from pricing_lab.events.synthetic import generate_events
from pricing_lab.scale.bucket_replay import BucketDone
from pricing_lab.scale.executors import Executor, LocalExecutor, ProcessExecutor, RayExecutor
from pricing_lab.scale.merge import merge_buckets
from pricing_lab.scale.run import BucketJob, run_buckets, write_buckets
from pricing_lab.scale.storage import Store
from pricing_lab.simulation.demo import sample_catalog
from pricing_lab.simulation.partitioned import spilling_connection


def _option(argv: list[str], name: str, default: int) -> int:
    for index, arg in enumerate(argv):
        if arg.startswith(f"--{name}="):
            return int(arg.split("=", 1)[1].replace("_", ""))
        if arg == f"--{name}" and index + 1 < len(argv):
            return int(argv[index + 1].replace("_", ""))
    return default


def _timed(job: BucketJob, executor: Executor) -> tuple[float, list[BucketDone]]:
    began = time.perf_counter()
    done = run_buckets(job, executor)
    return time.perf_counter() - began, done


def main(argv: list[str]) -> int:
    rows = _rows(argv)
    buckets = _option(argv, "buckets", 8)
    rounds = _option(argv, "rounds", 2)
    events = DATA / f"replay_events_{rows}.parquet"
    if not events.exists():
        print(f"generating {rows:,} events for {CUSTOMERS:,} customers …", flush=True)
        generate_events(events, events=rows, customers=CUSTOMERS, days=DAYS, seed=7, start=START)
    executors: dict[str, Executor] = {
        "one after another": LocalExecutor(),
        "process pool (2)": ProcessExecutor(2),
    }
    began = time.perf_counter()
    on_ray = RayExecutor()  # a private local node, one CPU per core (`scale.local_ray`)
    try:
        cpus = on_ray.parallelism  # starts the node
        executors["ray (num_cpus=2)"] = on_ray
        print(f"local Ray ({cpus} CPUs) started in {time.perf_counter() - began:.1f} s")
    except Exception as exc:
        print(f"Ray did not start, measured without it: {exc}")
    with tempfile.TemporaryDirectory(dir=DATA) as scratch:
        con = spilling_connection(Path(scratch) / "duckdb")
        began = time.perf_counter()
        ingest = ingest_events(con, events)
        read = time.perf_counter() - began
        began = time.perf_counter()
        job = write_buckets(
            con,
            sample_catalog(),
            workload_customers(),
            store=Store.at(Path(scratch) / "job"),
            buckets=buckets,
            ingest=ingest,
        )
        written = time.perf_counter() - began
        print(f"{rows:,} events: read {read:.1f} s; costed and written in {buckets} buckets "
              f"{written:.1f} s")  # fmt: skip
        times: dict[str, list[float]] = {name: [] for name in executors}
        per_bucket: dict[str, list[BucketDone]] = {}
        ledgers: dict[str, bytes] = {}
        for _round in range(rounds):
            for name, executor in executors.items():
                seconds, done = _timed(job, executor)
                times[name].append(seconds)
                per_bucket[name] = done
                print(f"  {name}: {seconds:.1f} s", flush=True)
                if name not in ledgers:
                    out = Path(scratch) / f"out-{len(ledgers)}"
                    began = time.perf_counter()
                    merge_buckets(
                        job.store, job.manifest, out, rejected_events=job.rejected_events,
                        ingest=ingest,
                    )  # fmt: skip
                    print(f"  merge: {time.perf_counter() - began:.1f} s")
                    ledgers[name] = (out / "ledger.parquet").read_bytes()
        for executor in executors.values():
            executor.close()
        assert len(set(ledgers.values())) == 1, "executors wrote different ledgers"
        median = {name: statistics.median(values) for name, values in times.items()}
        base = median["one after another"]
        pool = median["process pool (2)"]
        print(f"bucket replays, median of {rounds}:")
        for name, seconds in median.items():
            print(f"  {name}: {seconds:.1f} s, {base / seconds:.2f}x the one-after-another time")
        print(f"  process pool vs one after another: {base / pool:.2f}x (target >= 1.5)")
        if "ray (num_cpus=2)" in median:
            ray_time = median["ray (num_cpus=2)"]
            print(f"  ray vs process pool: {ray_time / pool:.2f} (target <= 1.3)")
        print("per bucket (process pool): events, replay s, peak RSS of its worker")
        for done in per_bucket["process pool (2)"]:
            print(
                f"  bucket {done.bucket:4d}: {job.bucket_events[done.bucket]:>11,} events "
                f"{done.seconds:6.1f} s {done.peak_memory / (1 << 30):5.2f} GiB"
            )
        for done in per_bucket["one after another"][:1]:
            print(f"  (one after another, bucket 0: {done.seconds:.1f} s)")
    return 0
