"""small_pages: large working arrays behave as NumPy's own (shape, dtype, writes)."""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pricing_lab import small_pages


def test_large_arrays_are_ordinary_writable_arrays_and_zeros_read_as_zero() -> None:
    shape = (700_000, 3)  # 16.8 MB: its own mapping
    array = small_pages.empty(shape, np.int64)
    assert array.shape == shape and array.dtype == np.int64 and array.flags.writeable
    array[:] = 7
    assert int(array.sum()) == 7 * 2_100_000
    small = small_pages.empty((2, 3), np.int32)  # below 4 MB: NumPy's allocator
    assert small.shape == (2, 3) and small.dtype == np.int32


def test_arrow_pool_serves_compute_calls() -> None:
    taken = pc.take(pa.array([10, 20, 30]), pa.array([2, 0]), memory_pool=small_pages.ARROW_POOL)
    assert taken.to_pylist() == [30, 10]


def test_a_mapping_the_machine_cannot_give_is_a_memory_error_as_with_numpy() -> None:
    with pytest.raises(MemoryError):
        small_pages.empty(1 << 50)
