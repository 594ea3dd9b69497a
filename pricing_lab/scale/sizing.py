"""The memory model of a bucket task: what one bucket's replay needs, and the sizes `auto` aims at.

Kept apart from `run` (which loads the whole replay stack) so the command line can show these
defaults without loading it.
"""

from __future__ import annotations

AUTO = 0  # `buckets=AUTO`: buckets sized for AUTO_TASK_MEMORY, at least two per parallel task
# Peak memory of a bucket's replay: a fixed part (interpreter, libraries, compiled engine) and a
# part per event of the bucket (costed rows, ledger, checks, revenue), measured on pool workers
# (0.42–0.57 GiB and 670–750 bytes; benchmarks/README.md "scale-out") with a margin.
TASK_BASE_MEMORY = 512 << 20
BYTES_PER_EVENT = 900
DEFAULT_TASK_MEMORY = 8 << 30
# `auto` sizes buckets for tasks of 2 GiB, a CPU's share of memory on common machines, at half
# what such a task holds on average: buckets of hashed customers are uneven (a big customer
# lands in one), and many buckets per worker balance the load (the largest go first).
AUTO_TASK_MEMORY = 2 << 30
