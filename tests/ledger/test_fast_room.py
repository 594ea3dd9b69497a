"""The fast engine when its row buffer is too small: a kernel chunk that outgrows the room made
for it writes its rows elsewhere, and output columns that find no spare memory get their own —
the ledger is still the reference engine's, in two currencies."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import numpy as np
import polars as pl
import pytest

from pricing_lab.ledger import ReplayInput
from pricing_lab.ledger import fast as fast_engine
from pricing_lab.ledger.api import run_engine
from pricing_lab.ledger.inputs import prepare
from tests.ledger.helpers import CR, TK, at, entitlement, grant, recharge


def _replay_input() -> ReplayInput:
    rng = np.random.default_rng(7)
    customers = [f"c{i:02d}" for i in range(40)]
    owner = rng.integers(0, len(customers), size=3_000)
    seconds = np.sort(rng.integers(0, 40 * 86_400, size=len(owner)))
    currency = rng.choice(["CR", "TK"], size=len(owner))
    consumptions = pl.DataFrame(
        {
            "event_id": [f"e{i:05d}" for i in range(len(owner))],
            "customer_id": [customers[o] for o in owner],
            "timestamp": [at(1) + timedelta(seconds=int(s)) for s in seconds],
            "feature_id": rng.choice(["chat", "embed"], size=len(owner)).tolist(),
            "currency_id": currency.tolist(),
            "cost": pl.Series(
                [
                    Decimal(int(c)).scaleb(-2 if k == "CR" else 0)
                    for c, k in zip(rng.integers(0, 400, size=len(owner)), currency, strict=True)
                ],
                dtype=pl.Decimal(38, 2),
            ),
        }
    )
    return ReplayInput(
        currencies=(CR, TK),
        grants=tuple(
            grant(f"{c}:promo", "30", at(1), customer=c, expires=at(15)) for c in customers[::3]
        ),
        recurring=tuple(
            entitlement("pro", "60", at(1 + i % 28), customer=c) for i, c in enumerate(customers)
        ),
        auto_recharges=tuple(
            recharge("10", "90", limit="3", expiry="1_month", customer=c) for c in customers[::4]
        ),
        consumptions=consumptions,
        scenario="room",
    )


@pytest.mark.parametrize("room", ["none", "as made"])
def test_a_kernel_without_room_gives_the_reference_ledger(
    room: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if room == "none":
        monkeypatch.setattr(
            fast_engine._Columns,
            "room",
            lambda self: np.zeros(len(self.customers) + 1, dtype=np.int64),
        )
    prepared = prepare(_replay_input())
    ledger_fast, denied_fast = run_engine(prepared, "fast")
    ledger_ref, denied_ref = run_engine(prepared, "reference")
    assert set(ledger_fast["currency_id"].unique()) == {"CR", "TK"}
    assert ledger_fast.equals(ledger_ref)
    assert denied_fast.equals(denied_ref)
