"""Snowflake backend: a formula tree as one Snowflake SQL expression of type NUMBER(38, 12).

Snowflake keeps NUMBER exact and itself limits products and quotients to 12 places (scale rules in
Snowflake's "Arithmetic operators" page), rounding half away from zero; the CASTs below make the
working scale explicit. Division by zero becomes NULL through NULLIF, and LEAST/GREATEST already
return NULL when an argument is NULL in Snowflake. Identifiers are double-quoted, hence
case-sensitive: `tokens` matches a column created as "tokens", not an unquoted TOKENS.
"""

from __future__ import annotations

from collections.abc import Mapping

from pricing_lab.formula.ast import Node, Number
from pricing_lab.formula.parser import WORKING_SCALE
from pricing_lab.formula.render import render_number
from pricing_lab.formula.sql_base import SqlEmitter, decimal_digits, type_precision_scale

_INTEGER_TYPES = frozenset({"INT", "INTEGER", "BIGINT", "SMALLINT", "TINYINT", "BYTEINT"})


class SnowflakeEmitter(SqlEmitter):
    """Snowflake dialect."""

    decimal_type = "NUMBER"

    def typed_dimension(self, column: str, type_name: str) -> tuple[str, int]:
        working = self.decimal(38, WORKING_SCALE)
        if type_name in _INTEGER_TYPES:
            return column, 0
        if type_name.startswith(("NUMBER", "DECIMAL", "NUMERIC")):
            _, places = type_precision_scale(type_name) or (38, 0)
            if places <= WORKING_SCALE:
                return column, places
            return f"CAST({column} AS {working})", WORKING_SCALE
        if type_name.startswith(("VARCHAR", "TEXT", "STRING", "CHAR")):
            return f"TRY_TO_NUMBER({column}, 38, {WORKING_SCALE})", WORKING_SCALE
        return f"CAST({column} AS {working})", WORKING_SCALE

    def literal(self, node: Number) -> str:
        text = render_number(node.value)
        precision, _ = decimal_digits(text)
        # Snowflake types a short literal exactly; a longer one is spelled out as a CAST.
        return text if precision <= 18 else super().literal(node)

    def quotient(self, left: str, left_scale: int, right: str, right_scale: int) -> str:
        working = self.decimal(38, WORKING_SCALE)
        # A dividend at 12 places makes Snowflake keep 12 places in the quotient.
        dividend = left if left_scale == WORKING_SCALE else f"CAST({left} AS {working})"
        return f"CAST(({dividend} / NULLIF({right}, 0)) AS {working})"

    def least_greatest(self, name: str, args: list[str], simple: bool) -> str:
        return f"{name.upper()}({', '.join(args)})"

    def if_then_else(self, condition: str, then: str, otherwise: str) -> str:
        return f"IFF({condition}, {then}, {otherwise})"

    def ceil_floor(self, name: str, operand: str, digits: int) -> str:
        return f"{name.upper()}({operand}, {digits})"


def to_snowflake_sql(node: Node, column_types: Mapping[str, str] | None = None) -> str:
    """The formula as a Snowflake expression of type NUMBER(38, 12).

    `column_types` (dimension name → Snowflake type) avoids casts on integer columns and reads
    text columns with TRY_TO_NUMBER; without it every dimension is CAST to NUMBER(38, 12).
    """
    return SnowflakeEmitter(column_types).compile(node)
