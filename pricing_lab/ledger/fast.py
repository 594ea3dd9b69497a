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
from dataclasses import replace

import numpy as np
import polars as pl

from pricing_lab import small_pages
from pricing_lab.ledger.assembly import denied_frame, ledger_frame
from pricing_lab.ledger.columns import KernelInput, kernel_input
from pricing_lab.ledger.inputs import PreparedReplay
from pricing_lab.ledger.kernel import (
    N_DENIED,
    N_OUT,
    Entries,
    EventColumns,
    KernelRows,
    engine_threads,
    replay_customers,
)
from pricing_lab.timeutil import NEVER_US


def replay_fast(
    prepared: PreparedReplay, progress: Callable[[int, int], None] | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The ledger (in ledger order) and denied events of a prepared replay, from the kernel.
    `progress(done, total)` counts customers, called as each range of customers is done."""
    inputs = kernel_input(prepared)
    rows, denied = _run_kernel(inputs, progress)
    # Only the kernel reads the consumption rows' columns: freed before the outputs take their
    # memory, which then reuses those pages (pages freed a moment before cost the VM less than
    # pages it has handed back to the host).
    inputs = replace(inputs, events=_NO_EVENTS)
    return ledger_frame(rows, inputs, prepared), denied_frame(denied, inputs, prepared)


_NO_EVENTS = EventColumns(*(np.empty(0, dtype=np.int64),) * len(EventColumns._fields))


def _run_kernel(
    inputs: KernelInput, progress: Callable[[int, int], None] | None
) -> tuple[KernelRows, np.ndarray]:
    """The kernel's rows and what it made (`KernelRows`), and the denied rows of every range, in
    customer order."""
    chunks = inputs.chunks()
    room = inputs.room()
    # Only the pages of the rows written are ever touched.
    buffer = small_pages.empty((int(room[-1]), N_OUT))
    n_currencies = max(len(inputs.currency_ids), 1)
    n_pairs = max(len(inputs.customers) * n_currencies, 1)
    recharges = np.zeros(n_pairs, dtype=np.int64)
    overdrafts = np.zeros(n_pairs, dtype=np.bool_)

    def replay(chunk: tuple[int, int]) -> Entries:
        first, end = chunk
        n_denied = inputs.events_of(first, end) if inputs.block else 0
        entries = Entries(
            rows=buffer[room[first] : room[end]],
            denied=np.empty((n_denied, N_DENIED), dtype=np.int64),
            written=np.zeros(2, dtype=np.int64),
            span=np.array([NEVER_US, -1], dtype=np.int64),
            recharges=recharges,  # customers never share pairs: ranges write their own
            overdrafts=overdrafts,
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
    span = [NEVER_US, -1]
    with ThreadPoolExecutor(max_workers=engine_threads()) as pool:
        for (first, end), entries in zip(chunks, pool.map(replay, chunks), strict=True):
            starts.append(room[first])
            lengths.append(entries.written[0])
            denied.append(entries.denied[: entries.written[1]])
            span = [min(span[0], int(entries.span[0])), max(span[1], int(entries.span[1]))]
            if progress is not None:
                progress(end, len(inputs.customers))
    made = KernelRows(
        buffer=[buffer],
        starts=np.array(starts, dtype=np.int64),
        lengths=np.array(lengths, dtype=np.int64),
        span=np.array(span, dtype=np.int64),
        recharges=recharges,
        overdrafts=overdrafts,
    )
    return made, np.concatenate(denied) if denied else np.empty((0, N_DENIED), dtype=np.int64)
