"""The fast engine keeps a replay's scratch arrays for the next one (`fast._Scratch`): what a
replay returned is never written over by later replays, a replay into arrays another replay
left (bigger, full of its rows) gives the reference ledger, and no more than SCRATCH_BYTES is
kept."""

from __future__ import annotations

import polars as pl
import pytest

from pricing_lab.ledger import ReplayInput
from pricing_lab.ledger import fast as fast_engine
from pricing_lab.ledger.api import run_engine
from pricing_lab.ledger.inputs import PreparedReplay, prepare
from tests.ledger.helpers import CR, at, event, grant, recharge


def _prepared(
    customers: int, events: int, enforcement: str, *, recharges: bool = True
) -> PreparedReplay:
    """Customers with 30 short grants each, auto-recharge on every other one. Without it, the
    ledger's columns are written into the kernel's buffer (`fast._output_buffers`)."""
    names = [f"c{i:02d}" for i in range(customers)]
    return prepare(
        ReplayInput(
            currencies=(CR,),
            grants=tuple(
                grant(f"{c}:g{j:02d}", "1", at(1 + j % 20), customer=c, expires=at(2 + j % 20))
                for c in names
                for j in range(30)
            ),
            auto_recharges=tuple(
                recharge("1", "3", limit="0.05", customer=c) for c in names[::2] if recharges
            ),
            consumptions=tuple(
                event(f"e{i:04d}", at(2 + i % 20, hour=i % 24), ("chat", "0.70"), customer=c)
                for i, c in ((i, names[i % customers]) for i in range(events))
            ),
            enforcement=enforcement,  # type: ignore[arg-type]
        )
    )


def _ipc(frame: pl.DataFrame) -> bytes:
    """The frame's bytes (a copy: a clone would share its buffers)."""
    return frame.write_ipc(None).getvalue()


@pytest.fixture
def empty_scratch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast_engine._Scratch, "kept", {})


@pytest.mark.usefixtures("empty_scratch")
def test_a_replays_outputs_are_not_written_over_by_the_next_replays() -> None:
    big, small = _prepared(12, 400, "block", recharges=False), _prepared(3, 30, "overdraft")
    ledger, denied = run_engine(big, "fast")
    assert denied.height > 0
    assert fast_engine._Scratch.kept  # this replay's arrays are kept for the next
    before = (_ipc(ledger), _ipc(denied))
    for later in (small, _prepared(12, 300, "overdraft", recharges=False)):
        run_engine(later, "fast")
        assert (_ipc(ledger), _ipc(denied)) == before


@pytest.mark.usefixtures("empty_scratch")
def test_a_replay_into_a_bigger_replays_arrays_gives_the_reference_ledger() -> None:
    big, small = _prepared(12, 400, "overdraft"), _prepared(5, 60, "block")
    run_engine(big, "fast")
    ledger, denied = run_engine(small, "fast")
    ledger_ref, denied_ref = run_engine(small, "reference")
    assert ledger.equals(ledger_ref)
    assert denied.equals(denied_ref)


@pytest.mark.usefixtures("empty_scratch")
def test_no_more_than_scratch_bytes_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    # 400 consumption rows: their table rows take 3,200 bytes, the new-event flags 400.
    monkeypatch.setattr(fast_engine, "SCRATCH_BYTES", 3_500)
    prepared = _prepared(12, 400, "overdraft")
    ledger, _ = run_engine(prepared, "fast")
    kept = fast_engine._Scratch.kept
    assert 0 < sum(array.nbytes for array in kept.values()) <= 3_500
    assert ledger.equals(run_engine(prepared, "reference")[0])
