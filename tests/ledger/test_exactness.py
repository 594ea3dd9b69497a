"""Exact at any size, or a clear refusal (SPEC §5 "Exactness").

The engines compute in 64-bit integers of the replay's smallest unit: at precision 9 that is about
9.22 billion credits per customer and currency. Within it, billions of credits, a long overdraft
and large single costs are exact (both engines agree to the last digit); beyond it, the replay is
refused before it starts, naming the customer, currency and limit — from Python and from the CLI
(exit 2).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from pricing_lab.catalog.model import CreditCurrency
from pricing_lab.errors import ValidationError
from pricing_lab.ledger import ReplayInput, replay
from tests.ledger.helpers import at, event, grant, run
from tests.simulation.helpers import CATALOG_YAML, ev, events_frame, naive
from tests.simulation.test_simulate import cli

P9 = CreditCurrency(id="P9", name="Nano credits", unit_price=Decimal("0.001"), precision=9)
LIMIT = "9223372036.854775807"  # 2^63 − 1 units of 10^-9 credits


def test_billions_of_credits_at_precision_9_are_exact() -> None:
    result = run(
        currencies=(P9,),
        grants=[grant("big", "4000000000.123456789", at(1), currency="P9")],
        consumptions=[
            event(f"e{i}", at(2, hour=i), ("chat", "999999999.999999999", "P9")) for i in range(4)
        ],
    )
    last = result.ledger.row(-1, named=True)
    assert last["balance_after"] == Decimal("0.123456793")
    assert result.balances["consumed"].to_list() == [Decimal("3999999999.999999996")]


def test_a_long_overdraft_at_precision_9_is_exact() -> None:
    # 2,000 events of 4,000,000.000000001 credits each, no grant: 8 billion credits of debt.
    cost = "4000000.000000001"
    result = run(
        currencies=(P9,),
        consumptions=[
            event(f"e{i:04d}", at(1 + i // 100, minute=i % 60), ("chat", cost, "P9"))
            for i in range(2000)
        ],
    )
    assert result.balances["overdraft_debt"].to_list() == [Decimal(cost) * 2000]
    assert result.ledger["balance_after"].min() == -Decimal(cost) * 2000


def _refusal(replay_input: ReplayInput) -> str:
    with pytest.raises(ValidationError) as error:
        replay(replay_input)
    return str(error.value)


def test_a_replay_that_could_go_beyond_the_limit_is_refused_naming_customer_currency_limit() -> (
    None
):
    message = _refusal(
        ReplayInput(
            currencies=(P9,),
            grants=(grant("big", "6000000000", at(1), currency="P9"),),
            consumptions=tuple(
                event(f"e{i}", at(2, hour=i), ("chat", "1000000000", "P9")) for i in range(4)
            ),
        )
    )
    assert "customer 'acme', currency 'P9'" in message
    assert f"beyond the {LIMIT} credits" in message


def test_a_single_cost_beyond_the_limit_is_refused() -> None:
    message = _refusal(
        ReplayInput(
            currencies=(P9,),
            consumptions=(event("e1", at(2), ("chat", "10000000000", "P9")),),
        )
    )
    assert "customer 'acme', currency 'P9'" in message
    assert LIMIT in message


def test_a_long_overdraft_beyond_the_limit_is_refused() -> None:
    message = _refusal(
        ReplayInput(
            currencies=(P9,),
            consumptions=tuple(
                event(f"e{i:04d}", at(1 + i // 100), ("chat", "4000000", "P9")) for i in range(2400)
            ),
        )
    )
    assert "customer 'acme', currency 'P9'" in message


def test_precision_12_is_accepted_as_the_catalog_accepts_it() -> None:
    p12 = CreditCurrency(id="P12", name="Pico", unit_price=Decimal("0.000001"), precision=12)
    result = run(
        currencies=(p12,),
        grants=[grant("g", "1000.000000000001", at(1), currency="P12")],
        consumptions=[event("e1", at(2), ("chat", "0.000000000003", "P12"))],
    )
    assert result.ledger["balance_after"].to_list()[-1] == Decimal("999.999999999998")


def test_the_cli_refuses_with_exit_2_and_one_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(CATALOG_YAML.replace("precision: 2", "precision: 9"))
    events = tmp_path / "events.parquet"
    # default rate: chat at 0.5 credits per token → 0.9 billion credits an event (costing rejects
    # a single cost of 10^9 or more at precision 9), 11 events: 9.9 billion credits of overdraft
    rows = [ev(f"e{i}", "acme", "chat", naive(5 + i), tokens=1_800_000_000) for i in range(11)]
    events_frame(rows).write_parquet(events)
    status = cli("simulate", "--catalog", catalog, "--events", events, "--out", tmp_path / "o")
    err = capsys.readouterr().err
    assert status == 2
    assert "customer 'acme', currency 'CR'" in err and LIMIT in err
    assert "Traceback" not in err and "internal error" not in err
