"""The fast engine (the default): the compiled kernel over a prepared replay's integer columns.

It gives exactly the reference engine's ledger. `columns` turns the prepared replay into the
kernel's arrays, `kernel` applies the rules of SPEC §5 customer by customer, `assembly` turns the
rows it wrote into the output tables. Customers never share credits: ranges of customers with
about equal numbers of consumption rows replay in threads (the kernel releases the GIL), each
writing its own region of one row buffer, sized beforehand by a bound on the rows a customer can
write (`KernelInput.room`).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl

from pricing_lab.ledger.assembly import denied_frame, ledger_frame
from pricing_lab.ledger.columns import KernelInput, kernel_input
from pricing_lab.ledger.inputs import PreparedReplay
from pricing_lab.ledger.kernel import N_DENIED, N_OUT, Entries, engine_threads, replay_customers


def replay_fast(
    prepared: PreparedReplay, progress: Callable[[int, int], None] | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The ledger (in ledger order) and denied events of a prepared replay, from the kernel.
    `progress(done, total)` counts customers, called as each range of customers is done."""
    inputs = kernel_input(prepared)
    rows, denied = _run_kernel(inputs, progress)
    return ledger_frame(rows, inputs, prepared), denied_frame(denied, inputs, prepared)


def _run_kernel(
    inputs: KernelInput, progress: Callable[[int, int], None] | None
) -> tuple[list[np.ndarray], np.ndarray]:
    """[the kernel's row buffer, each range's first row, each range's row count], and the denied
    rows of every range, in customer order."""
    chunks = inputs.chunks()
    room = inputs.room()
    # Only the pages of the rows written are ever touched.
    buffer = np.empty((int(room[-1]), N_OUT), dtype=np.int64)
    n_currencies = max(len(inputs.currency_ids), 1)

    def replay(chunk: tuple[int, int]) -> Entries:
        first, end = chunk
        n_denied = inputs.events_of(first, end) if inputs.block else 0
        entries = Entries(
            rows=buffer[room[first] : room[end]],
            denied=np.empty((n_denied, N_DENIED), dtype=np.int64),
            written=np.zeros(2, dtype=np.int64),
        )
        replay_customers(
            first,
            end,
            inputs.grants,
            inputs.happenings,
            inputs.events,
            inputs.settings,
            n_currencies,
            inputs.block,
            inputs.until,
            inputs.capacity(first, end),
            entries,
        )
        return entries

    starts, lengths, denied = [], [], []
    with ThreadPoolExecutor(max_workers=engine_threads()) as pool:
        for (first, end), entries in zip(chunks, pool.map(replay, chunks), strict=True):
            starts.append(room[first])
            lengths.append(entries.written[0])
            denied.append(entries.denied[: entries.written[1]])
            if progress is not None:
                progress(end, len(inputs.customers))
    return [
        buffer,
        np.array(starts, dtype=np.int64),
        np.array(lengths, dtype=np.int64),
    ], np.concatenate(denied) if denied else np.empty((0, N_DENIED), dtype=np.int64)
