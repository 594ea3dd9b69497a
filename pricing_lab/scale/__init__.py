"""Replays past one machine: customer buckets run by an executor, merged into the usual files.

`simulate_in_buckets` (and `pricing-lab simulate|compare --executor local|processes|ray`) splits
the customers into buckets by a stable hash of `customer_id` (`buckets`), replays each bucket as
one task (`bucket_replay`) on an executor (`executors`: in-process, a local process pool, Ray),
and merges the buckets' results into the files `simulate` writes, byte for byte (`merge`).
See docs/scale-out.md.

The names below load lazily, like `pricing_lab`'s: a pool worker imports this package to reach
its initializer (`workers.start_worker`) and must not load Polars before that has run.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pricing_lab.scale.bucket_replay import BucketDone, BucketTask, replay_bucket
    from pricing_lab.scale.buckets import bucket_of
    from pricing_lab.scale.executors import (
        Executor,
        LocalExecutor,
        ProcessExecutor,
        RayExecutor,
        executor_named,
    )
    from pricing_lab.scale.run import (
        BucketJob,
        run_buckets,
        simulate_in_buckets,
        write_buckets,
    )
    from pricing_lab.scale.sizing import AUTO

_EXPORTS = {
    "BucketDone": "pricing_lab.scale.bucket_replay",
    "BucketTask": "pricing_lab.scale.bucket_replay",
    "replay_bucket": "pricing_lab.scale.bucket_replay",
    "bucket_of": "pricing_lab.scale.buckets",
    "Executor": "pricing_lab.scale.executors",
    "LocalExecutor": "pricing_lab.scale.executors",
    "ProcessExecutor": "pricing_lab.scale.executors",
    "RayExecutor": "pricing_lab.scale.executors",
    "executor_named": "pricing_lab.scale.executors",
    "AUTO": "pricing_lab.scale.sizing",
    "BucketJob": "pricing_lab.scale.run",
    "run_buckets": "pricing_lab.scale.run",
    "simulate_in_buckets": "pricing_lab.scale.run",
    "write_buckets": "pricing_lab.scale.run",
}

__all__ = [
    "AUTO",
    "BucketDone",
    "BucketJob",
    "BucketTask",
    "Executor",
    "LocalExecutor",
    "ProcessExecutor",
    "RayExecutor",
    "bucket_of",
    "executor_named",
    "replay_bucket",
    "run_buckets",
    "simulate_in_buckets",
    "write_buckets",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pricing_lab.scale' has no attribute {name!r}")
