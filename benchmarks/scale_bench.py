"""Bucketed replays: the same buckets one after another, on a process pool, and on Ray.

Workload: the replay benchmark's (`replay_bench`: synthetic events for 10k customers over 60
days, the sample catalog, plans, a promotional grant each, auto-recharge on 20%), `--rows`
events (default 1M; the issue's figure is 10M). `--tenants=K` (default 1) makes the workload K
tenants of that one: its events K times over, customer and event ids prefixed `tNN-`, so the
customers grow with the events (100k customers at `--rows=10000000 --tenants=10`) and the
per-customer sizes — the Zipf head among them — stay those of one tenant. `--buckets=N|auto`
(default auto: `scale.run.bucket_count` for a 2-worker pool).

The buckets are written once (`scale.write_buckets`: costing included, timed apart); then the
bucket replays run, taking turns, `--rounds` times each (default 2; the median is kept), on the
executors of `--executors` (default `local,one-worker,processes,ray`):

* `local`: one after another in this process (`LocalExecutor`, whose engine threads split a
  bucket's customers between the cores): the baseline;
* `one-worker`: the pool's bucket tasks one after another in a pool of one worker
  (`ProcessExecutor(1)`: the same task, the same one thread per library): the serial run of
  exactly the work the pool spreads over its workers;
* `processes`: a local process pool of 2 workers (`ProcessExecutor(2)`, worker start-up
  included);
* `ray`: a private local Ray node of 2 CPUs (`RayExecutor()`; the node's start-up not timed).

It prints each executor's time and ratio, the merge time, and per bucket its events, replay
time and the peak memory of the process that ran it (the worker's peak so far). Every
executor's merged ledger is checked to be byte for byte the first one's (with two or more).

Run: `uv run --frozen --no-sync python -m benchmarks scale --rows=10000000` (under
`flock /work/team/heavy.lock` on a shared machine); the 100M run of the pool alone:
`… scale --rows=10000000 --tenants=10 --executors=processes --rounds=1`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import duckdb

from benchmarks.replay_bench import CUSTOMERS, DATA, DAYS, START, _rows, workload_customers
from pricing_lab.events.ingest import ingest_events
from pricing_lab.events.synthetic import generate_events
from pricing_lab.scale.bucket_replay import BucketDone
from pricing_lab.scale.executors import Executor, LocalExecutor, ProcessExecutor, RayExecutor
from pricing_lab.scale.merge import merge_buckets
from pricing_lab.scale.run import AUTO, BucketJob, run_buckets, write_buckets
from pricing_lab.scale.storage import Store
from pricing_lab.simulation.customers import CustomerInputs
from pricing_lab.simulation.demo import sample_catalog
from pricing_lab.simulation.partitioned import spilling_connection

POOL = "process pool (2)"
NAMES = {
    "local": "one after another",
    "one-worker": "pool's tasks in one worker",
    "processes": POOL,
    "ray": "ray (num_cpus=2)",
}


def _option(argv: list[str], name: str, default: str) -> str:
    for index, arg in enumerate(argv):
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
        if arg == f"--{name}" and index + 1 < len(argv):
            return argv[index + 1]
    return default


def _number(text: str) -> int:
    return int(text.replace("_", ""))


def _timed(job: BucketJob, executor: Executor) -> tuple[float, list[BucketDone]]:
    began = time.perf_counter()
    done = run_buckets(job, executor)
    return time.perf_counter() - began, done


def _tenant(k: int) -> str:
    return f"t{k:02d}-"


def tenant_events(one: Path, tenants: int) -> Path:
    """The events of `one` for `tenants` tenants (ids prefixed per tenant), made once."""
    path = one.with_name(f"{one.stem}_x{tenants}.parquet")
    if tenants > 1 and not path.exists():
        print(f"writing the events of {tenants} tenants …", flush=True)
        parts = " UNION ALL ".join(
            f"SELECT * REPLACE ('{_tenant(k)}' || customer_id AS customer_id, "
            f"'{_tenant(k)}' || event_id AS event_id) FROM read_parquet('{one}')"
            for k in range(tenants)
        )
        partial = path.with_suffix(".partial")
        duckdb.connect().execute(
            f"COPY ({parts}) TO '{partial}' (FORMAT parquet, COMPRESSION zstd)"
        )
        partial.rename(path)
    return path if tenants > 1 else one


def tenant_customers(tenants: int) -> CustomerInputs:
    """`workload_customers()` for each tenant, ids prefixed like its events'."""
    one = workload_customers()
    if tenants == 1:
        return one

    def renamed(record: object, prefix: str, *keys: str) -> object:
        values = {key: prefix + getattr(record, key) for key in keys}
        return dataclasses.replace(record, **values)  # type: ignore[type-var]

    prefixes = [_tenant(k) for k in range(tenants)]
    return CustomerInputs(
        subscriptions=tuple(
            renamed(s, p, "customer_id", "subscription_id")
            for p in prefixes
            for s in one.subscriptions
        ),  # type: ignore[arg-type]
        grants=tuple(
            renamed(g, p, "customer_id", "grant_id") for p in prefixes for g in one.grants
        ),  # type: ignore[arg-type]
        auto_recharges=tuple(
            renamed(r, p, "customer_id") for p in prefixes for r in one.auto_recharges
        ),  # type: ignore[arg-type]
    )


def main(argv: list[str]) -> int:
    rows = _rows(argv)
    tenants = _number(_option(argv, "tenants", "1"))
    chosen = _option(argv, "buckets", "auto")
    buckets = AUTO if chosen == "auto" else _number(chosen)
    rounds = _number(_option(argv, "rounds", "2"))
    wanted = _option(argv, "executors", "local,one-worker,processes,ray").split(",")
    one = DATA / f"replay_events_{rows}.parquet"
    if not one.exists():
        print(f"generating {rows:,} events for {CUSTOMERS:,} customers …", flush=True)
        generate_events(one, events=rows, customers=CUSTOMERS, days=DAYS, seed=7, start=START)
    events = tenant_events(one, tenants)
    executors: dict[str, Executor] = {}
    if "local" in wanted:
        executors[NAMES["local"]] = LocalExecutor()
    if "one-worker" in wanted:
        executors[NAMES["one-worker"]] = ProcessExecutor(1)
    if "processes" in wanted:
        executors[POOL] = ProcessExecutor(2)
    if "ray" in wanted:
        began = time.perf_counter()
        on_ray = RayExecutor()  # a private local node, one CPU per core (`scale.local_ray`)
        try:
            cpus = on_ray.parallelism  # starts the node
            executors[NAMES["ray"]] = on_ray
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
            tenant_customers(tenants),
            store=Store.at(Path(scratch) / "job"),
            buckets=buckets,
            parallelism=2,
            ingest=ingest,
        )
        written = time.perf_counter() - began
        count = job.manifest.buckets
        print(f"{rows * tenants:,} events ({tenants} tenant(s)): read {read:.1f} s; costed and "
              f"written in {count} buckets {written:.1f} s", flush=True)  # fmt: skip
        times: dict[str, list[float]] = {name: [] for name in executors}
        per_bucket: dict[str, list[BucketDone]] = {}
        ledgers: dict[str, bytes] = {}
        for _round in range(rounds):
            for name, executor in executors.items():
                seconds, done = _timed(job, executor)
                times[name].append(seconds)
                per_bucket.setdefault(name, done)
                cpu = sum(d.cpu_seconds for d in done)
                print(f"  {name}: {seconds:.1f} s (buckets' CPU {cpu:.1f} s)", flush=True)
                if name not in ledgers and len(executors) > 1:
                    out = Path(scratch) / f"out-{len(ledgers)}"
                    began = time.perf_counter()
                    merge_buckets(
                        job.store, job.manifest, out, rejected_events=job.rejected_events,
                        ingest=ingest,
                    )  # fmt: skip
                    print(f"  merge: {time.perf_counter() - began:.1f} s", flush=True)
                    ledgers[name] = hashlib.sha256((out / "ledger.parquet").read_bytes()).digest()
                    shutil.rmtree(out)
        for executor in executors.values():
            executor.close()
        assert len(set(ledgers.values())) <= 1, "executors wrote different ledgers"
        median = {name: statistics.median(values) for name, values in times.items()}
        print(f"bucket replays, median of {rounds}:")
        for name, seconds in median.items():
            print(f"  {name}: {seconds:.1f} s")
        if NAMES["local"] in median and POOL in median:
            ratio = median[NAMES["local"]] / median[POOL]
            print(f"  process pool vs one after another: {ratio:.2f}x faster (target >= 1.5)")
        if NAMES["one-worker"] in median and POOL in median:
            ratio = median[NAMES["one-worker"]] / median[POOL]
            print(f"  process pool vs its tasks in one worker: {ratio:.2f}x faster (target >= 1.5)")
        if NAMES["ray"] in median and POOL in median:
            ratio = median[NAMES["ray"]] / median[POOL]
            print(f"  ray vs process pool: {ratio:.2f}x the pool's time (target <= 1.3)")
        for name, done in per_bucket.items():
            if name in (NAMES["local"], NAMES["one-worker"]):
                continue
            print(f"per bucket ({name}, first round): events, replay s (CPU), its worker's peak")
            for one_bucket in done:
                n = job.bucket_events[one_bucket.bucket]
                print(
                    f"  bucket {one_bucket.bucket:4d}: {n:>11,} events "
                    f"{one_bucket.seconds:6.1f} s (CPU {one_bucket.cpu_seconds:5.1f} s) "
                    f"{one_bucket.peak_memory / (1 << 30):5.2f} GiB"
                )
            sizes = [job.bucket_events[d.bucket] for d in done]
            rates = [d.cpu_seconds / max(job.bucket_events[d.bucket], 1) * 1e6 for d in done]
            peaks = [d.peak_memory / (1 << 30) for d in done]
            print(
                f"  {min(sizes):,}–{max(sizes):,} events per bucket; "
                f"{min(d.seconds for d in done):.1f}–{max(d.seconds for d in done):.1f} s; "
                f"median {statistics.median(rates):.2f} CPU s per million events; "
                f"worker peak {min(peaks):.2f}–{max(peaks):.2f} GiB"
            )
    return 0
