"""DuckDB backend: a formula tree as one DuckDB SQL expression of type DECIMAL(38, 12).

Exactness: every value is a DECIMAL whose scale is known statically (`scale.py`). Products that
would exceed 12 places are CAST to DECIMAL(38, 12), which DuckDB rounds half away from zero.
DuckDB divides decimals in DOUBLE, so `/` is done on HUGEINT: the dividend scaled to 13 places
over the divisor, truncated (`//` truncates toward zero), then the 13th place is rounded half away
from zero by a CAST to DECIMAL(38, 12) — exact, because half-away rounding depends only on the first
dropped digit. A zero divisor becomes NULL through NULLIF.
"""

from __future__ import annotations

from pricing_lab.formula.ast import Node
from pricing_lab.formula.parser import WORKING_SCALE
from pricing_lab.formula.sql_base import (
    NUMERIC_TEXT_PATTERN,
    SqlEmitter,
    quote_identifier,
    quote_string,
    type_precision_scale,
)

# Decimal digits of each integer type (DuckDB's own implicit casts use the same widths).
_INTEGER_DIGITS = {
    "TINYINT": 3,
    "SMALLINT": 5,
    "INTEGER": 10,
    "BIGINT": 19,
    "HUGEINT": 38,
    "UTINYINT": 3,
    "USMALLINT": 5,
    "UINTEGER": 10,
    "UBIGINT": 20,
    "UHUGEINT": 38,
    "INT1": 3,
    "INT2": 5,
    "INT4": 10,
    "INT8": 19,
    "INT": 10,
}
_FLOAT_TYPES = frozenset({"DOUBLE", "FLOAT", "REAL", "FLOAT4", "FLOAT8"})


def _power_of_ten(exponent: int) -> str:
    return f"CAST('1{'0' * exponent}' AS DECIMAL({exponent + 1}, 0))"


class DuckDBEmitter(SqlEmitter):
    """DuckDB dialect."""

    def dimension(self, name: str) -> tuple[str, int]:
        column = quote_identifier(name)
        working = self.decimal(38, WORKING_SCALE)
        types = self.column_types
        if types is None:
            return f"CAST({column} AS {working})", WORKING_SCALE
        if name not in types:
            return "CAST(NULL AS DECIMAL(1, 0))", 0
        type_name = types[name]
        if type_name in _INTEGER_DIGITS:
            return f"CAST({column} AS DECIMAL({_INTEGER_DIGITS[type_name]}, 0))", 0
        if type_name == "BOOLEAN":
            return f"CAST(CAST({column} AS TINYINT) AS DECIMAL(1, 0))", 0
        if type_name.startswith(("DECIMAL", "NUMERIC")):
            precision, places = type_precision_scale(type_name) or (18, 3)
            if places <= WORKING_SCALE:
                return column, places
            integer_digits = precision - places
            return (
                f"CAST({column} AS DECIMAL({integer_digits + WORKING_SCALE}, {WORKING_SCALE}))",
                (WORKING_SCALE),
            )
        if type_name in _FLOAT_TYPES:
            # Shortest round-trip text of the double (0.1 → '0.1'), then exact rounding.
            return (
                f"TRY_CAST(CAST(CAST({column} AS DOUBLE) AS VARCHAR) AS {working})",
                WORKING_SCALE,
            )
        text = column if type_name.startswith("VARCHAR") else f"CAST({column} AS VARCHAR)"
        numeric = f"regexp_full_match({text}, {quote_string(NUMERIC_TEXT_PATTERN)})"
        return f"TRY_CAST(CASE WHEN {numeric} THEN {text} END AS {working})", WORKING_SCALE

    def quotient(self, left: str, left_scale: int, right: str, right_scale: int) -> str:
        # left * 10^(13 + right_scale) as an integer, over right * 10^right_scale as an integer.
        shifted = f"CAST(({left} * {_power_of_ten(WORKING_SCALE + 1 + right_scale)}) AS HUGEINT)"
        divisor = right if right_scale == 0 else f"({right} * {_power_of_ten(right_scale)})"
        truncated = f"({shifted} // NULLIF(CAST({divisor} AS HUGEINT), 0))"
        tenth = (
            f"CAST('0.{'0' * WORKING_SCALE}1' AS DECIMAL({WORKING_SCALE + 1}, {WORKING_SCALE + 1}))"
        )
        return (
            f"CAST((CAST({truncated} AS DECIMAL(38, 0)) * {tenth}) "
            f"AS {self.decimal(38, WORKING_SCALE)})"
        )

    def least_greatest(self, name: str, args: list[str], simple: bool) -> str:
        # DuckDB's least/greatest skip NULLs; the rule says any NULL makes the result NULL.
        if simple:
            nulls = " OR ".join(f"{arg} IS NULL" for arg in args)
            return f"CASE WHEN {nulls} THEN NULL ELSE {name}({', '.join(args)}) END"
        return (
            f"list_reduce([{', '.join(args)}], lambda x, y: "
            f"CASE WHEN x IS NULL OR y IS NULL THEN NULL ELSE {name}(x, y) END)"
        )

    def ceil_floor(self, name: str, operand: str, digits: int) -> str:
        if digits == 0:
            return f"{name}({operand})"
        step = f"CAST('0.{'0' * (digits - 1)}1' AS DECIMAL({digits}, {digits}))"
        return f"({name}(({operand} * {_power_of_ten(digits)})) * {step})"


def to_duckdb_sql(node: Node, column_types: dict[str, str] | None = None) -> str:
    """The formula as a DuckDB expression of type DECIMAL(38, 12).

    `column_types` (dimension name → DuckDB type, e.g. from `relation.types`) lets the SQL read
    each column exactly as the rules say (integers at scale 0, doubles through their shortest
    text, absent dimensions as NULL). Without it every dimension is CAST to DECIMAL(38, 12).
    """
    return DuckDBEmitter(column_types).compile(node)
