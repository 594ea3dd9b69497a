"""The output files' schemas are declared once (`pricing_lab.outputs`) and written as declared."""

from __future__ import annotations

import polars as pl
import pytest

from pricing_lab.ledger import frames
from pricing_lab.ledger.grant_table import grant_table_schema
from pricing_lab.outputs import GRANTS, REJECTED_EVENTS
from pricing_lab.simulation.costing import REJECTED_COLUMNS


def test_a_file_schema_puts_each_decimal_at_its_scale() -> None:
    schema = GRANTS.schema(2, cost_basis=6)
    assert schema.names() == [
        "grant_id", "customer_id", "currency_id", "amount", "type", "priority", "effective_at",
        "expires_at", "cost_basis", "voided_at", "source", "scenario",
    ]  # fmt: skip
    assert schema["amount"] == pl.Decimal(38, 2)
    assert schema["cost_basis"] == pl.Decimal(38, 6)
    assert schema["effective_at"] == pl.Datetime("us", "UTC")
    assert schema["priority"] == pl.Int64()
    with pytest.raises(ValueError, match=r"grants\.parquet has no column money"):
        GRANTS.schema(2, money=6)


def test_writers_take_their_schemas_from_the_declarations() -> None:
    assert frames.grants_schema(4, 3) == GRANTS.schema(4, cost_basis=3)
    assert grant_table_schema(4, 3).names() == GRANTS.schema(0).names()[:-1]  # no scenario
    assert frames.ledger_schema(3)["balance_after"] == pl.Decimal(38, 3)
    assert dict(REJECTED_EVENTS.columns) == REJECTED_COLUMNS
