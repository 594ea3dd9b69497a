"""Executors: where bucket tasks run — in this process, in a local process pool, or on Ray.

One small protocol (`Executor.run(job, items, memory)`: yield each item's index with its result,
or with the exception it raised, as items finish) and three implementations. `run_all` is the one
loop over it: it retries what failed (a retried bucket overwrites its files, see
`bucket_replay`), reports progress and, when an item fails every attempt, stops with one message
naming it. Items are handed out largest first (by the memory each needs, which grows with its
events), so the biggest bucket does not start last and finish alone. Executors are context
managers: a pool or a Ray connection they opened is closed on exit; one executor can run several
jobs (a comparison's scenarios) in between.

The worker processes of the pool and of Ray run with one thread per library each
(`workers.worker_environment`): the parallelism comes from the workers, one per CPU.

Ray is an optional dependency (`pip install 'pricing-lab[ray]'`), imported only by `RayExecutor`.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import signal
import socket
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from types import TracebackType
from typing import Any, Protocol, TypeVar

from pricing_lab.errors import InputError, PricingLabError
from pricing_lab.scale.local_ray import LocalRay, start_local_ray
from pricing_lab.scale.workers import WORKER_THREADS, start_worker, worker_environment

Item = TypeVar("Item")
Result = TypeVar("Result")
Progress = Callable[[int, int], None]
ATTEMPTS = 3  # tries per item before the run stops
CONNECT_TIMEOUT = 10.0  # seconds to wait for a Ray cluster's address to accept a connection
EXECUTORS = ("local", "processes", "ray")


class TaskFailed(PricingLabError):
    """An item (a bucket) failed on every attempt."""


class ExecutorUnavailable(PricingLabError):
    """The executor could not be started or reached (e.g. no Ray cluster at the address)."""


class ClusterUnreachable(ExecutorUnavailable, InputError):
    """Nothing answers at the Ray address given (`--ray-address`): bad input, exit 2."""


class Executor(Protocol):
    """Runs one picklable function over items; `memory[i]`: bytes item i may need."""

    name: str

    @property
    def parallelism(self) -> int:
        """How many items run at once."""
        ...

    def run(
        self, job: Callable[[Any], Any], items: Sequence[Any], memory: Sequence[int]
    ) -> Iterator[tuple[int, Any]]:
        """Yield `(index, result)` as items finish; `result` is the exception an item raised."""
        ...

    def close(self) -> None:
        """Release what the executor opened (a pool, a Ray connection)."""
        ...


class _Closing:
    def close(self) -> None:
        pass

    def __enter__(self) -> Any:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


class LocalExecutor(_Closing):
    """Items one after the other in this process."""

    name = "local"

    @property
    def parallelism(self) -> int:
        return 1

    def run(
        self, job: Callable[[Any], Any], items: Sequence[Any], memory: Sequence[int]
    ) -> Iterator[tuple[int, Any]]:
        for index, item in enumerate(items):
            try:
                outcome = job(item)
            except Exception as exc:
                outcome = exc
            yield index, outcome


class ProcessExecutor(_Closing):
    """Items in a pool of `workers` local processes (default: one per CPU), each limited to
    `threads` threads per library (`workers.start_worker`, the pool's initializer).

    Workers are spawned, not forked: the parent holds DuckDB and Polars thread pools, which a
    fork would copy in whatever state they are in. A worker that dies breaks the pool: its items
    fail, and the next attempt runs in a new pool."""

    name = "processes"

    def __init__(self, workers: int | None = None, *, threads: int = WORKER_THREADS) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.threads = threads
        self._pool: ProcessPoolExecutor | None = None

    @property
    def parallelism(self) -> int:
        return self.workers

    def _open(self) -> ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=context,
                initializer=_start_pool_worker,
                initargs=(self.threads,),
            )
        return self._pool

    def run(
        self, job: Callable[[Any], Any], items: Sequence[Any], memory: Sequence[int]
    ) -> Iterator[tuple[int, Any]]:
        pool = self._open()
        futures: dict[Future[Any], int] = {
            pool.submit(job, item): i for i, item in enumerate(items)
        }
        broken = False
        while futures:
            finished, _ = wait(futures, return_when=FIRST_COMPLETED)
            for future in finished:
                index = futures.pop(future)
                error = future.exception()
                broken = broken or isinstance(error, BrokenProcessPool)
                yield index, error if error is not None else future.result()
        if broken:
            self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


def _start_pool_worker(threads: int) -> None:
    """A pool worker's initializer: the thread policy (`workers.start_worker`), and Ctrl-C ends
    the worker quietly. A terminal sends SIGINT to the whole process group: the command itself
    stops and says so once ('pricing-lab: interrupted'); a worker's KeyboardInterrupt would
    print its own traceback. SystemExit ends a waiting worker without one, and a running task
    with an error the pool hands to the (interrupted) parent."""
    start_worker(threads)
    signal.signal(signal.SIGINT, _end_quietly)


def _end_quietly(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


class RayExecutor(_Closing):
    """Items as Ray tasks, each asking for `num_cpus` CPUs and its item's memory, in a worker
    whose libraries use as many threads as the task has CPUs (a `runtime_env`).

    Connects to the cluster at `address` (`auto`, `10.0.0.5:6379`, or `ray://head:10001` with
    `ray[client]` installed); an address where nothing listens is refused at once;
    without one it starts a private Ray node on this machine (`local_ray`: one that starts on a
    loaded machine, where `ray.init()`'s may not). A Ray already initialised in this process is
    used as it is. What this executor started or connected is stopped on `close`."""

    name = "ray"

    def __init__(self, address: str | None = None, *, num_cpus: float = 1) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self._owned = False
        self._node: LocalRay | None = None

    def connect(self) -> None:
        """Start the private local node, or reach the cluster at `address`, now rather than at
        the first `parallelism` or `run` (a command shows it as a step of its own)."""
        self._ray()

    def _ray(self) -> Any:
        try:
            import ray
        except ModuleNotFoundError:
            raise InputError("the ray executor needs Ray: pip install 'pricing-lab[ray]'") from None
        if not ray.is_initialized():
            where = f"at {self.address}" if self.address else "locally"
            try:
                if self.address is None:
                    self._node = start_local_ray(os.cpu_count() or 1)
                    self._node.connect()
                else:
                    _check_reachable(self.address)
                    # Ray's INFO lines would land among the command's progress lines.
                    ray.init(
                        address=self.address, log_to_driver=False, logging_level=logging.WARNING
                    )
            except ClusterUnreachable:
                raise
            except Exception as exc:  # Ray raises plain exceptions: connection, start-up
                ray.shutdown()
                self._stop_node()
                raise ExecutorUnavailable(
                    f"Ray could not be started or reached {where}: {exc}"
                ) from None
            self._owned = True
        return ray

    @property
    def parallelism(self) -> int:
        cpus = self._ray().cluster_resources().get("CPU", 1)
        return max(1, int(cpus // self.num_cpus))

    def run(
        self, job: Callable[[Any], Any], items: Sequence[Any], memory: Sequence[int]
    ) -> Iterator[tuple[int, Any]]:
        ray = self._ray()
        remote = ray.remote(_call)  # a trampoline: `job` may be any picklable callable
        refs = {}
        for index, (item, need) in enumerate(zip(items, memory, strict=True)):
            options: dict[str, Any] = {
                "num_cpus": self.num_cpus,
                "max_retries": 0,
                "runtime_env": {"env_vars": worker_environment(math.ceil(self.num_cpus))},
            }
            if need > 0:
                options["memory"] = int(need)
            refs[remote.options(**options).remote(job, item)] = index
        while refs:
            finished, _ = ray.wait(list(refs), num_returns=1)
            for ref in finished:
                index = refs.pop(ref)
                try:
                    yield index, ray.get(ref)
                except ray.exceptions.RayTaskError as exc:  # the error the task raised
                    cause = exc.cause
                    yield index, cause if isinstance(cause, BaseException) else exc
                except Exception as exc:  # a lost worker, a task that could not be placed
                    yield index, exc

    def close(self) -> None:
        if self._owned:
            import ray

            ray.shutdown()
            self._owned = False
        self._stop_node()

    def _stop_node(self) -> None:
        if self._node is not None:
            self._node.stop()
            self._node = None


def _check_reachable(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Refuse a `host:port` (or `ray://host:port`) address where nothing accepts a connection:
    `ray.init` would retry it for many minutes. `auto` and other forms are left to Ray."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ClusterUnreachable(
            f"no Ray cluster reachable at {address} ({exc.strerror or exc}); check --ray-address"
        ) from None


def _call(job: Callable[[Any], Any], item: Any) -> Any:
    return job(item)


def executor_named(name: str, *, ray_address: str | None = None) -> Executor:
    """The executor for a `--executor` value: `local`, `processes` or `ray`."""
    if name == "local":
        return LocalExecutor()
    if name == "processes":
        return ProcessExecutor()
    if name == "ray":
        return RayExecutor(ray_address)
    raise InputError(f"unknown executor {name!r}: use one of {', '.join(EXECUTORS)}")


def run_all(
    executor: Executor,
    job: Callable[[Item], Result],
    items: Sequence[Item],
    *,
    memory: Sequence[int] | None = None,
    attempts: int = ATTEMPTS,
    progress: Progress | None = None,
    describe: Callable[[Item], str] = str,
) -> list[Result]:
    """`job` over every item on `executor`, results in item order; each failed item is tried
    again, up to `attempts` times in all, the largest (`memory`) first. An item refused as bad
    input (`InputError`) stops the run at once with that error: it would fail every attempt.
    `progress(done, total)` after each finished item."""
    needs = list(memory) if memory is not None else [0] * len(items)
    results: dict[int, Result] = {}
    pending = sorted(range(len(items)), key=lambda i: -needs[i])  # stable: ties in item order
    errors: dict[int, BaseException] = {}
    if progress is not None:
        progress(0, len(items))
    for _attempt in range(attempts):
        errors = {}
        outcomes = executor.run(job, [items[i] for i in pending], [needs[i] for i in pending])
        for position, outcome in outcomes:
            index = pending[position]
            if isinstance(outcome, InputError):
                raise outcome  # bad input (e.g. the replay's exactness refusal): no retry helps
            if isinstance(outcome, BaseException):
                errors[index] = outcome
                continue
            results[index] = outcome
            if progress is not None:
                progress(len(results), len(items))
        if not errors:
            return [results[i] for i in range(len(items))]
        pending = sorted(errors, key=lambda i: -needs[i])
    index = min(pending)
    error = errors[index]
    others = f" (and {len(pending) - 1} more)" if len(pending) > 1 else ""
    raise TaskFailed(
        f"{describe(items[index])} failed {attempts} times{others}; last error: "
        f"{type(error).__name__}: {error}"
    )
