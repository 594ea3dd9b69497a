"""Replays past one machine: customer buckets run by an executor, merged into the usual files.

`simulate_in_buckets` (and `pricing-lab simulate|compare --executor local|processes|ray`) splits
the customers into buckets by a stable hash of `customer_id` (`buckets`), replays each bucket as
one task (`bucket_replay`) on an executor (`executors`: in-process, a local process pool, Ray),
and merges the buckets' results into the files `simulate` writes, byte for byte (`merge`).
See docs/scale-out.md.
"""

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
    AUTO,
    BucketJob,
    bucket_progress,
    run_buckets,
    simulate_in_buckets,
    write_buckets,
)

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
    "bucket_progress",
    "executor_named",
    "replay_bucket",
    "run_buckets",
    "simulate_in_buckets",
    "write_buckets",
]
