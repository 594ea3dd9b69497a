"""Working memory on 4 KiB pages: the large NumPy arrays and Arrow buffers a replay writes once.

Rule: an array a replay fills once and then drops (the engine's columns and rows, the ledger's
output columns, the merge's gathered rows) is mapped without transparent huge pages. NumPy asks
the kernel for huge pages on every array of 4 MB or more, and so does Arrow's default memory pool;
a first write to a huge page costs about ten times a 4 KiB page's per byte where the machine's
memory balloon has handed free memory back to the host (the VMs this project is measured on;
figures in `benchmarks/README.md`), and only when huge pages are used again soon after they were
freed are they cheaper. The arrays here are written front to back once, so the fewer TLB
entries of huge pages gain them little.

Nothing here is process-wide: each array gets its own mapping, released with the array, and the
Arrow pool is passed call by call.
"""

from __future__ import annotations

import math
import mmap

import numpy as np
import pyarrow as pa

# NumPy's own huge-page threshold: smaller arrays keep NumPy's allocator.
_SMALLEST = 1 << 22

# The C library's allocator: large buffers are mapped without huge pages, returned when freed.
ARROW_POOL: pa.MemoryPool = pa.system_memory_pool()


def empty(shape: int | tuple[int, ...], dtype: type | np.dtype = np.int64) -> np.ndarray:
    """An uninitialised array (`np.empty`); from 4 MB, on its own mapping of 4 KiB pages."""
    dtype = np.dtype(dtype)
    count = shape if isinstance(shape, int) else math.prod(shape)
    if count * dtype.itemsize < _SMALLEST:
        return np.empty(shape, dtype=dtype)
    try:
        mapping = mmap.mmap(-1, count * dtype.itemsize)
    except OSError as exc:  # as `np.empty` would say it
        raise MemoryError(f"cannot map {count * dtype.itemsize:,} bytes: {exc}") from None
    if hasattr(mmap, "MADV_NOHUGEPAGE"):  # where huge pages are on for all memory
        mapping.madvise(mmap.MADV_NOHUGEPAGE)
    # The array holds the mapping; it is unmapped when the last view of it goes.
    return np.frombuffer(mapping, dtype=dtype, count=count).reshape(shape)
