"""The engine's boundary: `replay_partition` (tables in, tables out), the `grants` output, the
shared input limits, and the notice of a command that compiles."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from numba import njit

from pricing_lab.ledger import ReplayInput, replay, replay_partition
from pricing_lab.ledger.compile import (
    NOTICE,
    compile_notice,
    drop_stale_caches,
    record_sources,
)
from pricing_lab.ledger.frames import grants_schema
from pricing_lab.ledger.inputs import records_frame
from tests.ledger.helpers import CR, TK, at, entitlement, event, grant, recharge

GRANTS = (
    grant("acme:promo", "10", at(1), expires=at(20)),
    grant("acme:late", "5", at(3), type="PAID", cost_basis="0.02", source="top_up"),
    grant("acme:gone", "5", at(2), voided=at(2)),  # voided as it takes effect: never given
    grant("bob:tk", "4", at(1), customer="bob", currency="TK"),
    grant("acme:old", "3", at(1, month=12, year=2023)),  # before the horizon
)
RECURRING = (entitlement("pro", "7", at(1, hour=1), customer="bob"),)
RECHARGES = (recharge("2", "12", limit="1", expiry="1_month"),)
EVENTS = (
    event("e1", at(2), ("chat", "9.5")),
    event("e2", at(4), ("chat", "4"), ("img", "3", "TK")),
    event("b1", at(5), ("chat", "1"), customer="bob"),
)


def _input() -> ReplayInput:
    return ReplayInput(
        currencies=(CR, TK),
        grants=GRANTS,
        recurring=RECURRING,
        auto_recharges=RECHARGES,
        consumptions=EVENTS,
        start=at(1),
        until=at(1, month=3),
        scenario="s",
    )


def test_replay_partition_takes_tables_and_gives_the_replays_outputs() -> None:
    whole = replay(_input())
    tables = replay_partition(
        consumptions=records_frame(EVENTS),
        grants=whole.grants.filter(pl.col("grant_id").is_in([g.grant_id for g in GRANTS])).drop(
            "scenario"
        ),
        recurring=pl.DataFrame([_fields(r) for r in RECURRING]),
        auto_recharges=pl.DataFrame([_fields(r) for r in RECHARGES]),
        currencies=(CR, TK),
        start=at(1),
        until=at(1, month=3),
        scenario="s",
    )
    assert tables.ledger.equals(whole.ledger)
    assert tables.balances.equals(whole.balances)
    assert tables.grants.equals(whole.grants)


def _fields(record: object) -> dict[str, object]:
    return {name: getattr(record, name) for name in record.__slots__}  # type: ignore[attr-defined]


def test_partitions_of_customers_give_their_customers_entries() -> None:
    whole = replay(_input())
    for customer in ("acme", "bob"):
        part = replay_partition(
            consumptions=records_frame([e for e in EVENTS if e.customer_id == customer]),
            grants=[g for g in GRANTS if g.customer_id == customer],
            recurring=[r for r in RECURRING if r.customer_id == customer],
            auto_recharges=[r for r in RECHARGES if r.customer_id == customer],
            currencies=(CR, TK),
            start=at(1),
            until=at(1, month=3),
            scenario="s",
        )
        mine = whole.ledger.filter(pl.col("customer_id") == customer).drop("entry_id")
        assert part.ledger.drop("entry_id").equals(mine)


def test_the_grants_output_lists_every_grant_given_in_order() -> None:
    result = replay(_input())
    grants = result.grants
    assert grants.schema == grants_schema(2, 4)
    assert grants.select("grant_id", "effective_at").rows() == [
        ("acme:promo", at(1)),
        ("acme:auto_recharge:CR:0", at(2)),
        ("acme:late", at(3)),
        ("bob:tk", at(1)),
        ("bob:pro:CR:0", at(1, hour=1)),
        ("bob:pro:CR:1", at(1, hour=1, month=2)),
    ]
    recharge_row = grants.row(1, named=True)
    assert recharge_row["type"] == "PAID" and recharge_row["source"] == "auto_recharge"
    assert recharge_row["cost_basis"] == Decimal("0.01")  # the currency's unit price
    assert recharge_row["expires_at"] == at(2) + timedelta(days=31)  # 1_month
    assert recharge_row["amount"] == Decimal("11.50")  # 12 − 0.50
    # every grant of the output wrote its GRANTED entry, and nothing else did
    granted = result.ledger.filter(pl.col("entry_type") == "GRANTED")["grant_id"]
    assert sorted(granted.to_list()) == sorted(grants["grant_id"].to_list())
    assert set(grants["scenario"]) == {"s"}


def test_the_same_grants_whatever_the_input_order() -> None:
    shuffled = ReplayInput(
        currencies=(TK, CR),
        grants=tuple(reversed(GRANTS)),
        recurring=RECURRING,
        auto_recharges=RECHARGES,
        consumptions=tuple(reversed(EVENTS)),
        start=at(1),
        until=at(1, month=3),
        scenario="s",
    )
    assert replay(shuffled).grants.equals(replay(_input()).grants)


def test_an_input_grant_recorded_by_an_auto_recharge_is_accepted() -> None:
    # Customer files accept source auto_recharge (a customer's history), and so does the replay.
    given = grant(
        "acme:history", "5", at(1), type="PAID", cost_basis="0.01", source="auto_recharge"
    )
    result = replay(ReplayInput(currencies=(CR,), grants=(given,), consumptions=EVENTS[:1]))
    assert result.grants["source"].to_list() == ["auto_recharge"]


@njit(cache=False)
def _never_compiled_before(x: int) -> int:  # pragma: no cover - compiled
    return x + 1


def test_a_command_that_compiles_says_so_once() -> None:
    said: list[str] = []
    with compile_notice(said.append):
        assert _never_compiled_before(1) == 2
        assert _never_compiled_before(2.5) == 3.5  # another signature: compiled again, told once
    assert said == [NOTICE]
    with compile_notice(said.append):
        assert _never_compiled_before(3) == 4  # already compiled
    assert said == [NOTICE]


def test_set_up_drops_compiled_caches_built_from_other_sources(tmp_path: Path) -> None:
    """numba checks a cache against its own file only: a rule inlined from another module (the
    calendar twin in the kernel) could change under it. Set-up drops the caches when any source
    they come from changed since they were built."""
    for name in ("ledger", "forecast", "activity"):
        (tmp_path / name / "__pycache__").mkdir(parents=True)
        (tmp_path / name / "rules.py").write_text("A = 1\n")
    for name in ("timeutil.py", "limits.py", "money.py"):
        (tmp_path / name).write_text("")
    kernel_cache = tmp_path / "ledger" / "__pycache__" / "kernel.run-1.py311.nbi"

    def built() -> None:
        kernel_cache.write_bytes(b"machine code")
        record_sources(tmp_path)

    built()
    assert drop_stale_caches(tmp_path) == 0 and kernel_cache.exists()  # nothing changed
    (tmp_path / "forecast" / "rules.py").write_text("A = 2\n")  # another module's rule
    assert drop_stale_caches(tmp_path) == 1 and not kernel_cache.exists()
    built()
    (tmp_path / "timeutil.py").write_text("DAY = 86400\n")  # a constant read at compile time
    assert drop_stale_caches(tmp_path) == 1 and not kernel_cache.exists()


def test_a_grant_with_the_overdraft_source_is_refused() -> None:
    from pricing_lab.errors import ValidationError

    with pytest.raises(ValidationError, match="source must be one of"):
        replay(ReplayInput(currencies=(CR,), grants=(grant("g", "1", at(1), source="overdraft"),)))


def test_a_horizon_beyond_the_supported_range_is_refused_before_anything_is_built() -> None:
    # A monthly entitlement over a horizon to year 9999 would replay ~95,000 periods.
    from datetime import UTC, datetime

    from pricing_lab.errors import ValidationError

    far = datetime(9999, 12, 1, tzinfo=UTC)
    replay_input = ReplayInput(
        currencies=(CR,), recurring=(entitlement("e", "10", at(1)),), until=far
    )
    with pytest.raises(ValidationError) as error:
        replay(replay_input)
    assert "until: 9999-12-01T00:00:00+00:00 is outside the supported range" in str(error.value)
    assert "1900-01-01 to 2200-01-01" in str(error.value)
