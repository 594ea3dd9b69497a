"""The command-line options of a bucketed replay, shared by `simulate` and `compare`.

`--executor local|processes|ray` turns a replay into a bucketed one (`run.simulate_in_buckets`);
without it the commands run as before. `--buckets N|auto`, `--ray-address ADDR`, `--work-dir`
(where the buckets are written: a folder or object-storage URI every worker can read) and
`--task-memory GIB` (what one task may use; a customer needing more is refused up front).
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pricing_lab.errors import InputError
from pricing_lab.scale.executors import EXECUTORS, Executor, RayExecutor, executor_named
from pricing_lab.scale.sizing import AUTO, DEFAULT_TASK_MEMORY


def add_scale_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--executor`, `--buckets`, `--ray-address`, `--work-dir` and `--task-memory`."""
    group = parser.add_argument_group("scale-out (see docs/scale-out.md)")
    group.add_argument(
        "--executor",
        choices=EXECUTORS,
        help="replay the customers in buckets on this executor: local (in this process), "
        "processes (a local process pool), ray (a Ray cluster); the files are the same",
    )
    group.add_argument(
        "--buckets",
        type=_buckets,
        help="number of customer buckets with --executor (default auto: ~1M events each, at "
        "least two per parallel task)",
    )
    group.add_argument("--ray-address", help="Ray cluster to use (default: start a local Ray)")
    group.add_argument(
        "--work-dir",
        help="where the buckets are written: a folder or URI (s3://…) all workers can read "
        "(default: a temporary folder inside --out)",
    )
    group.add_argument(
        "--task-memory",
        type=_gib,
        help=f"GiB one bucket task may use (default {DEFAULT_TASK_MEMORY >> 30})",
    )


def check_scale_arguments(args: argparse.Namespace) -> None:
    """Refuse the bucket options without `--executor` (they would do nothing) and
    `--ray-address` with another executor."""
    if args.ray_address is not None and args.executor != "ray":
        used = "" if args.executor is None else f" (not {args.executor})"
        raise InputError(f"--ray-address needs --executor ray{used}")
    given = [
        option
        for option, value in (
            ("--buckets", args.buckets),
            ("--work-dir", args.work_dir),
            ("--task-memory", args.task_memory),
        )
        if value is not None
    ]
    if given and args.executor is None:
        raise InputError(f"{', '.join(given)} needs --executor local, processes or ray")


def _buckets(text: str) -> int:
    if text == "auto":
        return AUTO
    if text.isdigit() and 0 < int(text) <= 9999:
        return int(text)
    raise argparse.ArgumentTypeError(f"not a number of buckets (1-9999): {text!r} (or 'auto')")


def _gib(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"not a memory size in GiB: {text!r}")
    return int(value * (1 << 30))


@contextlib.contextmanager
def executor_from_args(
    args: argparse.Namespace, phase: Callable[[str], None] | None = None
) -> Iterator[Executor | None]:
    """The executor `--executor` names (None without the option), closed on exit. Ray is
    started or reached before it is handed over, shown by `phase` (the command's progress
    display) as a step of its own: a local node takes seconds to start."""
    if args.executor is None:
        yield None
        return
    executor = executor_named(args.executor, ray_address=args.ray_address)
    try:
        if isinstance(executor, RayExecutor):
            if phase is not None:
                phase(
                    "starting a local Ray node"
                    if args.ray_address is None
                    else f"connecting to the Ray cluster at {args.ray_address}"
                )
            executor.connect()
        yield executor
    finally:
        executor.close()


def bucket_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of `simulate_in_buckets` / `compare` the options give."""
    return {
        "buckets": AUTO if args.buckets is None else args.buckets,
        "work_dir": args.work_dir,
        "task_memory": DEFAULT_TASK_MEMORY if args.task_memory is None else args.task_memory,
    }


def simulate_over_executor(
    args: argparse.Namespace,
    con: Any,
    catalog: Any,
    customers: Any,
    options: dict[str, Any],
    phase: Callable[..., None],
    *,
    out_dir: Path | None = None,
) -> Any:
    """`pricing-lab simulate --executor …`: the bucketed replay, files written into `out_dir`
    (default `--out`);
    `phase` (the command's progress display) names its steps, and `options["progress"]` counts
    buckets done."""
    from pricing_lab.scale.run import simulate_in_buckets

    with executor_from_args(args, phase) as executor:
        phase("replaying in customer buckets", unit="buckets done")
        return simulate_in_buckets(
            con,
            catalog,
            customers,
            out_dir=Path(args.out) if out_dir is None else out_dir,
            executor=executor,
            **bucket_options(args),
            **options,
        )
