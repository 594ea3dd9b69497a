"""The fast engine at a size where its parallel parts matter: many customers with skewed usage
(customer chunks replayed in threads, uneven chunks), tens of thousands of ledger rows (several
time buckets sorted in threads), auto-recharge, overdraft and expiries — the same ledger as the
reference engine."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import numpy as np
import polars as pl
import pytest

from pricing_lab.ledger import ReplayInput, check_invariants
from pricing_lab.ledger.api import run_engine
from pricing_lab.ledger.inputs import prepare
from tests.ledger.helpers import CR, TK, at, entitlement, grant, recharge


@pytest.mark.parametrize("enforcement", ["overdraft", "block"])
def test_many_skewed_customers_give_the_reference_ledger(enforcement: str) -> None:
    rng = np.random.default_rng(11)
    customers = [f"c{i:03d}" for i in range(120)]
    # Zipf-like: the first customers have most of the events (one chunk would hold them all).
    weights = 1.0 / np.arange(1, len(customers) + 1)
    owner = rng.choice(len(customers), size=24_000, p=weights / weights.sum())
    seconds = np.sort(rng.integers(0, 70 * 86_400, size=len(owner)))
    consumptions = pl.DataFrame(
        {
            "event_id": [f"e{i:06d}" for i in range(len(owner))],
            "customer_id": [customers[o] for o in owner],
            "timestamp": [at(1) + timedelta(seconds=int(s)) for s in seconds],
            "feature_id": rng.choice(["chat", "embed"], size=len(owner)).tolist(),
            "currency_id": ["CR"] * len(owner),
            "cost": pl.Series(
                [Decimal(int(c)).scaleb(-2) for c in rng.integers(0, 900, size=len(owner))],
                dtype=pl.Decimal(38, 2),
            ),
        }
    )
    replay_input = ReplayInput(
        currencies=(CR,),
        grants=tuple(
            grant(f"{c}:promo", "50", at(1), customer=c, expires=at(20)) for c in customers[::2]
        ),
        recurring=tuple(
            entitlement("pro", "100", at(1 + i % 28), customer=c) for i, c in enumerate(customers)
        ),
        auto_recharges=tuple(
            recharge("20", "200", limit="5", expiry="1_month", customer=c) for c in customers[::5]
        ),
        consumptions=consumptions,
        enforcement=enforcement,  # type: ignore[arg-type]
        scenario="scale",
    )
    prepared = prepare(replay_input)
    ledger_fast, denied_fast = run_engine(prepared, "fast")
    ledger_ref, denied_ref = run_engine(prepared, "reference")
    if enforcement == "overdraft":
        assert ledger_fast.height > 2 * 8192  # at least two time buckets to sort
    else:
        assert denied_fast.height > 1000
    assert ledger_fast.equals(ledger_ref)
    assert denied_fast.equals(denied_ref)
    assert check_invariants(ledger_fast, denied_fast, prepared) == []


def test_two_currencies_name_each_rows_customer_currency_and_grant_as_the_reference() -> None:
    # Table, auto-recharge and OVERDRAFT grants in both currencies for many customers: each
    # ledger row's customer, currency, grant type and source come from its grant (the fast
    # engine's output assembly looks them up by grant), so each kind must name the right ones.
    rng = np.random.default_rng(7)
    customers = [f"c{i:02d}" for i in range(40)]
    owner = rng.integers(0, len(customers), size=3_000)
    seconds = np.sort(rng.integers(0, 60 * 86_400, size=len(owner)))
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
                    Decimal(int(c)) if k == "TK" else Decimal(int(c)).scaleb(-2)
                    for c, k in zip(rng.integers(1, 900, size=len(owner)), currency, strict=True)
                ],
                dtype=pl.Decimal(38, 2),
            ),
        }
    )
    replay_input = ReplayInput(
        currencies=(CR, TK),
        grants=tuple(
            grant(f"{c}:{k}", "40", at(1), customer=c, currency=k, expires=at(25))
            for c in customers[::2]
            for k in ("CR", "TK")
        ),
        recurring=(),
        auto_recharges=tuple(
            recharge("5", "100", limit="3", customer=c, currency=k)
            for c, k in zip(customers[::3], ["CR", "TK"] * 20, strict=False)
        ),
        consumptions=consumptions,
        scenario="two",
    )
    prepared = prepare(replay_input)
    ledger_fast, denied_fast = run_engine(prepared, "fast")
    ledger_ref, denied_ref = run_engine(prepared, "reference")
    kinds = ledger_fast.group_by("grant_source", "currency_id").len()
    for source in ("auto_recharge", "overdraft"):
        assert kinds.filter(pl.col("grant_source") == source).height == 2, kinds
    assert ledger_fast.equals(ledger_ref)
    assert denied_fast.equals(denied_ref)
