"""One rule, every form: the same cases through the definition and each of its twins.

Month stepping (`calendar`): `add_months` on datetimes, `add_months_us` (compiled) and
`add_months_array` (vectorised). Draw-down order (`order`): `drawdown_key` on records, the
compiled `drawdown_before` on integer keys (ids ranked with `id_ranks`, auto-recharge grants with
`RECHARGE_ID_RANK` and their number) and the vectorised `drawdown_sort_keys`.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import polars as pl
import pytest

from pricing_lab.ledger.calendar import (
    add_months,
    add_months_array,
    add_months_us,
    month_index_array,
    month_index_us,
    month_start,
)
from pricing_lab.ledger.grant_table import explicit_grant_table
from pricing_lab.ledger.model import Grant
from pricing_lab.ledger.order import (
    RECHARGE_ID_RANK,
    TYPE_RANK,
    DrawdownKeys,
    above_recharge_ids,
    drawdown_before,
    drawdown_key,
    drawdown_sort_keys,
    id_ranks,
    recharge_grant_id,
)
from pricing_lab.timeutil import NEVER_US, to_micros

# (anchor, months, expected): month ends, leap days, times of day, negative steps, years.
MONTH_CASES = [
    (datetime(2024, 1, 31, 10, 30, tzinfo=UTC), 1, datetime(2024, 2, 29, 10, 30, tzinfo=UTC)),
    (datetime(2023, 1, 31, tzinfo=UTC), 1, datetime(2023, 2, 28, tzinfo=UTC)),
    (datetime(2024, 1, 31, tzinfo=UTC), 2, datetime(2024, 3, 31, tzinfo=UTC)),
    (datetime(2024, 1, 31, tzinfo=UTC), 3, datetime(2024, 4, 30, tzinfo=UTC)),
    (
        datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
        12,
        datetime(2025, 2, 28, 23, 59, 59, 999999, tzinfo=UTC),
    ),
    (datetime(2024, 2, 29, tzinfo=UTC), 48, datetime(2028, 2, 29, tzinfo=UTC)),
    (datetime(2024, 12, 15, tzinfo=UTC), 1, datetime(2025, 1, 15, tzinfo=UTC)),
    (datetime(2024, 3, 31, tzinfo=UTC), -1, datetime(2024, 2, 29, tzinfo=UTC)),
    (datetime(1969, 12, 31, 12, tzinfo=UTC), 2, datetime(1970, 2, 28, 12, tzinfo=UTC)),
    (datetime(2024, 5, 1, tzinfo=UTC), 0, datetime(2024, 5, 1, tzinfo=UTC)),
]


@pytest.mark.parametrize(("anchor", "months", "expected"), MONTH_CASES)
def test_month_steps_agree_in_every_form(anchor: datetime, months: int, expected: datetime) -> None:
    assert add_months(anchor, months) == expected
    assert add_months_us(to_micros(anchor), months) == to_micros(expected)
    stepped = add_months_array(np.array([to_micros(anchor)]), np.array([months]))
    assert stepped.tolist() == [to_micros(expected)]


@pytest.mark.parametrize("anchor", [case[0] for case in MONTH_CASES])
def test_calendar_months_agree_in_every_form(anchor: datetime) -> None:
    start = month_start(anchor)
    assert month_index_us(to_micros(anchor)) == start.year * 12 + start.month - 1
    assert month_index_array(np.array([to_micros(anchor)])).tolist() == [
        start.year * 12 + start.month - 1
    ]


def test_many_month_steps_agree_with_the_definition() -> None:
    rng = np.random.default_rng(3)
    base = to_micros(datetime(2020, 1, 1, tzinfo=UTC))
    micros = base + rng.integers(0, 6 * 366 * 86_400 * 10**6, 300)
    months = rng.integers(-30, 30, 300)
    vectorised = add_months_array(micros, months)
    for us, step, got in zip(micros.tolist(), months.tolist(), vectorised.tolist(), strict=True):
        anchor = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)
        expected = to_micros(add_months(anchor, step))
        assert (got, add_months_us(us, step)) == (expected, expected)


T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _grant(grant_id: str, **fields: object) -> Grant:
    values: dict[str, object] = {
        "customer_id": "acme",
        "currency_id": "CR",
        "amount": Decimal(1),
        "type": "PROMOTIONAL",
        "effective_at": T0,
    } | fields
    return Grant(grant_id=grant_id, **values)  # type: ignore[arg-type]


# Grants that differ on one key at a time, and ties broken by id, on both sides of the customer's
# auto-recharge ids (`acme:auto_recharge:CR:…`).
GRANTS = [
    _grant("p1", priority=1),
    _grant("exp-late", expires_at=T0 + timedelta(days=9)),
    _grant("exp-soon", expires_at=T0 + timedelta(days=2)),
    _grant("paid", type="PAID", cost_basis=Decimal("0.01")),
    _grant("recurring", type="RECURRING", effective_at=T0 - timedelta(days=1)),
    _grant("promo-a"),
    _grant("acme:a"),
    _grant("acme:b"),
    _grant("zz", type="PAID", cost_basis=Decimal("0.01")),
    _grant("acme:auto", type="PAID", cost_basis=Decimal("0.01")),
    # rollover grants come before the other grants tied with them, in id order among themselves,
    # whichever side of the auto-recharge ids their ids sort
    _grant("acme:zz:rollover", type="RECURRING", source="rollover"),
    _grant("acme:a:rollover", type="RECURRING", source="rollover"),
    _grant(
        "recurring:rollover", type="RECURRING", source="rollover", effective_at=T0 + timedelta(1)
    ),
]
# Auto-recharge grants: PAID, priority 0, never expiring, effective at T0; numbers whose text
# order differs from their numeric order (10 before 2, 1 before 10 before 100, 19 before 9).
RECHARGE_NUMBERS = [0, 2, 10, 1, 100, 19, 9, 90]


def _recharge(number: int) -> Grant:
    grant_id = recharge_grant_id("acme", "CR", number)
    return _grant(grant_id, type="PAID", cost_basis=Decimal("0.01"), source="auto_recharge")


def test_drawdown_order_agrees_in_every_form() -> None:
    grants = GRANTS + [_recharge(n) for n in RECHARGE_NUMBERS]
    by_definition = [g.grant_id for g in sorted(grants, key=drawdown_key)]

    table = explicit_grant_table(GRANTS, 0, 2)
    vectorised = table.sort(drawdown_sort_keys())["grant_id"].to_list()
    assert vectorised == [g for g in by_definition if ":auto_recharge:" not in g]

    recharging = pl.DataFrame({"customer_id": ["acme"], "currency_id": ["CR"]})
    n = len(grants)
    keys = DrawdownKeys(
        priority=np.array([g.priority for g in grants], dtype=np.int64),
        expires=np.array(
            [NEVER_US if g.expires_at is None else to_micros(g.expires_at) for g in grants],
            dtype=np.int64,
        ),
        type_rank=np.array([TYPE_RANK[g.type] for g in grants], dtype=np.int64),
        effective=np.array([to_micros(g.effective_at) for g in grants], dtype=np.int64),
        id_rank=np.concatenate(
            [
                id_ranks(
                    table["grant_id"],
                    above_recharge_ids(table, recharging),
                    (table["source"] == "rollover").to_numpy(),
                ),
                np.full(len(RECHARGE_NUMBERS), RECHARGE_ID_RANK, dtype=np.int64),
            ]
        ),
        recharge_number=np.array([0] * len(GRANTS) + RECHARGE_NUMBERS, dtype=np.int64),
    )

    def compare(a: int, b: int) -> int:
        return -1 if drawdown_before(keys, a, b) else 1 if drawdown_before(keys, b, a) else 0

    compiled = sorted(range(n), key=functools.cmp_to_key(compare))
    assert [grants[i].grant_id for i in compiled] == by_definition
    # written by hand: the rollover grants of effective_at T0 lead the tie of priority 0, never
    # expiring, promotional/recurring, effective T0 (before "acme:a", whose id sorts first)
    tied = [g for g in by_definition if g in ("acme:a", "acme:a:rollover", "acme:zz:rollover")]
    assert tied == ["acme:a:rollover", "acme:zz:rollover", "acme:a"]
    # a total order: no two grants compare equal
    assert all(compare(a, b) != 0 for a in range(n) for b in range(n) if a != b)
