"""The thread policy of processes that run bucket tasks side by side (pool and Ray workers).

A replay in one process spreads its work over every core: Polars, DuckDB and Arrow size their
thread pools by the CPU count, and the engine runs customer ranges in threads. Several such
processes on one machine (a process pool, or Ray workers, one per CPU) would each start a full
set of threads and slow each other down; a worker that runs one task per CPU does best with one
thread per library, the parallelism coming from the workers. So a worker process is started with
`worker_environment(threads)` in its environment, before it imports any of those libraries
(Polars and Arrow size their pools once, on import or first use):

* `POLARS_MAX_THREADS` — Polars' thread pool;
* `OMP_NUM_THREADS` — Arrow's CPU pool (it reads this variable) and OpenMP, where a library uses it;
* `NUMBA_NUM_THREADS` — numba's parallel loops.

DuckDB has no such variable: a bucket task opens its connection with `duckdb_config()`, the
worker's thread count when it runs in such a worker, DuckDB's default otherwise. The policy
applies only to processes the executors start (`executors.ProcessExecutor`'s initializer, each
Ray task's `runtime_env`); the user's own process is never changed. This module imports nothing
but the standard library, so a new worker can load it before anything else.
"""

from __future__ import annotations

import os

WORKER_THREADS = 1  # threads per library in a worker that runs one task per CPU
_THREADS_VARIABLE = "POLARS_MAX_THREADS"  # the variable `duckdb_config` follows


def worker_environment(threads: int = WORKER_THREADS) -> dict[str, str]:
    """The environment variables that limit a worker process's libraries to `threads`."""
    count = str(max(1, threads))
    return {_THREADS_VARIABLE: count, "OMP_NUM_THREADS": count, "NUMBA_NUM_THREADS": count}


def start_worker(threads: int = WORKER_THREADS) -> None:
    """A pool worker's initializer: the thread limits, set before its tasks import anything."""
    os.environ.update(worker_environment(threads))


def duckdb_config() -> dict[str, str | bool | int | float | list[str]]:
    """The config of a DuckDB connection opened by a bucket task: the worker's thread count in
    a worker started with `worker_environment`, DuckDB's own default elsewhere."""
    threads = os.environ.get(_THREADS_VARIABLE, "")
    return {"threads": int(threads)} if threads.isdigit() and int(threads) > 0 else {}
