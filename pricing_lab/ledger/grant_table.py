"""Grants as one table: what the fast engine, the invariant check, the money figures and the
`grants` output read.

A replay for thousands of customers on monthly plans meets hundreds of thousands of grants; as
`Grant` records they would cost a Python object each, every replay. `inputs.prepare` keeps them as
one Polars table (`grant_table_schema`, the columns of the `grants` output in its order): the
input's grants, then every recurring period (`recurring.recurring_grant_table`). `grant_records`
turns rows back into records for the reference engine, which reads one grant at a time on purpose.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import polars as pl

from pricing_lab.ledger.model import Grant
from pricing_lab.outputs import GRANTS
from pricing_lab.timeutil import as_utc


def grant_table_schema(scale: int, basis_scale: int) -> pl.Schema:
    """The grant table's columns: amounts at `scale` places, cost bases at `basis_scale`.

    `expires_at` / `voided_at` are null for never; rows are in no particular order.
    """
    # The `grants` output's columns (`pricing_lab.outputs.GRANTS`) before its `scenario`.
    written = GRANTS.schema(scale, cost_basis=basis_scale)
    return pl.Schema({name: dtype for name, dtype in written.items() if name != "scenario"})


def explicit_grant_table(grants: Sequence[Grant], scale: int, basis_scale: int) -> pl.DataFrame:
    """`grants` (already checked) as a grant table."""
    schema = grant_table_schema(scale, basis_scale)
    return pl.DataFrame(
        {
            "grant_id": [g.grant_id for g in grants],
            "customer_id": [g.customer_id for g in grants],
            "currency_id": [g.currency_id for g in grants],
            "amount": [g.amount for g in grants],
            "type": [g.type for g in grants],
            "priority": [g.priority for g in grants],
            "effective_at": [as_utc(g.effective_at) for g in grants],
            "expires_at": [None if g.expires_at is None else as_utc(g.expires_at) for g in grants],
            "cost_basis": [g.cost_basis for g in grants],
            "voided_at": [None if g.voided_at is None else as_utc(g.voided_at) for g in grants],
            "source": [g.source for g in grants],
        },
        schema=schema,
    )


def grant_records(table: pl.DataFrame) -> tuple[Grant, ...]:
    """The rows of a grant table as `Grant` records, in row order (amounts and cost bases at the
    table's scales: 300 at scale 2 reads Decimal('300.00'), equal to Decimal(300)). Columns
    beyond the grant's fields (a `scenario`) are ignored."""
    names = list(grant_table_schema(0, 0))
    return tuple(
        Grant(
            grant_id=grant_id,
            customer_id=customer_id,
            currency_id=currency_id,
            amount=amount,
            type=grant_type,
            priority=priority,
            effective_at=effective_at,
            expires_at=expires_at,
            cost_basis=Decimal(cost_basis),
            voided_at=voided_at,
            source=source,
        )
        for (
            grant_id,
            customer_id,
            currency_id,
            amount,
            grant_type,
            priority,
            effective_at,
            expires_at,
            cost_basis,
            voided_at,
            source,
        ) in table.select(names).iter_rows()
    )
