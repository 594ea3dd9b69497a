"""DuckDB backend: a formula tree as one DuckDB SQL expression of type DECIMAL(38, 12).

Exactness: every value is a DECIMAL whose scale is known statically (`scale.py`). Products that
would exceed 12 places are CAST to DECIMAL(38, 12), which DuckDB rounds half away from zero.
DuckDB divides decimals in DOUBLE, so `/` is done on HUGEINT: the dividend scaled to 13 places
over the divisor, truncated (`//` truncates toward zero), then the 13th place is rounded half away
from zero by a CAST to DECIMAL(38, 12) — exact, because half-away rounding depends only on the first
dropped digit. A zero divisor becomes NULL through NULLIF.

DuckDB divides HUGEINTs (and casts DECIMAL(>18) down or to integers) with a bit-by-bit long
division, ~0.5 µs a value, so two exact fast paths come first:

- a divisor that is a literal ±10^e is a product with the literal ±10^-e: exact, and rounded half
  away from zero at 12 places by the same CAST as any product (the rule rounds a quotient and a
  product alike);
- otherwise, where the scaled dividend and the scaled divisor fit 18 digits (`TRY_CAST` to
  DECIMAL(18, s) is NULL where they do not), the same truncated quotient is computed on BIGINT
  and rounded by a CAST of DECIMAL(18, 13) to 12 places; rows where that is NULL (out of range,
  NULL operands, a zero divisor) take the exact HUGEINT path through `coalesce`. That repeats the
  operands' SQL once, so it is only done while they are short (no exponential growth when
  divisions nest).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from pricing_lab.formula import scale
from pricing_lab.formula.ast import Arithmetic, Negate, Node, Number
from pricing_lab.formula.decimal_eval import NUMERIC_TEXT_PATTERN
from pricing_lab.formula.parser import WORKING_SCALE
from pricing_lab.formula.sql_base import SqlEmitter, quote_string, type_precision_scale

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

# Operand SQL longer than this (together) is not repeated for the 64-bit division fast path.
_FAST_DIVISION_MAX_SQL = 4000
# Digits of the scaled dividend / divisor on the 64-bit path: |T| <= |N| < 10^18, so the
# truncated quotient at 13 places is a DECIMAL(18, 13) (DuckDB keeps DECIMAL(18) on int64).
_FAST_DIVIDEND_DIGITS = 18
_FAST_DIVISOR_DIGITS = 18


def _literal_divisor(node: Node) -> Decimal | None:
    """The value of a divisor written as a literal, possibly negated (`-1000`)."""
    negative = False
    while isinstance(node, Negate):
        negative = not negative
        node = node.operand
    if not isinstance(node, Number):
        return None
    return -node.value if negative else node.value


def _power_of_ten_exponent(value: Decimal) -> int | None:
    """e when |value| is exactly 10^e, else None."""
    if value == 0:
        return None
    sign, digits, exponent = value.normalize().as_tuple()
    del sign
    if digits != (1,) or not isinstance(exponent, int):
        return None
    return exponent


class DuckDBEmitter(SqlEmitter):
    """DuckDB dialect."""

    def typed_dimension(self, column: str, type_name: str) -> tuple[str, int]:
        working = self.decimal(38, WORKING_SCALE)
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
                WORKING_SCALE,
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

    def arithmetic(self, node: Arithmetic) -> tuple[str, int]:
        if node.op == "/":
            divisor = _literal_divisor(node.right)
            if divisor is not None and (exponent := _power_of_ten_exponent(divisor)) is not None:
                left, left_scale = self.emit(node.left)
                return self.shift(left, left_scale, -exponent, divisor < 0)
            if divisor is not None and divisor != 0:
                left, left_scale = self.emit(node.left)
                right, right_scale = self.emit(node.right)
                unscaled = int(divisor.scaleb(right_scale))
                fast = None
                if abs(unscaled) < 10**_FAST_DIVISOR_DIGITS:
                    fast = f"CAST({unscaled} AS BIGINT)"
                return self.divide(left, left_scale, right, right_scale, fast), (
                    scale.QUOTIENT_SCALE
                )
        return super().arithmetic(node)

    def power_of_ten(self, exponent: int, negative: bool = False) -> str:
        """±10^exponent as an exact literal: `CAST('1000' AS DECIMAL(4, 0))`, `CAST('0.01' AS
        DECIMAL(2, 2))`."""
        return self.literal(Number(value=Decimal(-1 if negative else 1).scaleb(exponent)))

    def shift(self, left: str, left_scale: int, places: int, negative: bool) -> tuple[str, int]:
        """left × ±10^places, exact, then rounded half away from zero to 12 places if longer:
        the quotient left / ±10^-places."""
        factor = self.power_of_ten(places, negative)
        if places >= 0:
            # Widened first: DuckDB keeps a product of two DECIMAL(<=18) in int64 and fails on
            # overflow. The value keeps its scale (a product by an integer).
            return f"(CAST({left} AS DECIMAL(38, {left_scale})) * {factor})", left_scale
        # × 10^-k multiplies the unscaled integer by 1 (never overflows); scale left_scale + k.
        product = f"({left} * {factor})"
        exact_scale = left_scale - places
        if exact_scale <= WORKING_SCALE:
            return product, exact_scale
        return f"CAST({product} AS {self.decimal(38, WORKING_SCALE)})", WORKING_SCALE

    def quotient(self, left: str, left_scale: int, right: str, right_scale: int) -> str:
        return self.divide(left, left_scale, right, right_scale, None)

    def divide(
        self, left: str, left_scale: int, right: str, right_scale: int, fast_divisor: str | None
    ) -> str:
        """left / right rounded half away from zero to 12 places; NULL for a zero divisor.

        `fast_divisor`: the divisor's unscaled integer as BIGINT SQL when it is a constant."""
        # left * 10^(13 + right_scale), an integer at scale left_scale (widened: see `shift`).
        shifted = (
            f"(CAST({left} AS DECIMAL(38, {left_scale})) * "
            f"{self.power_of_ten(WORKING_SCALE + 1 + right_scale)})"
        )
        # right * 10^right_scale, an integer at scale right_scale.
        divisor = (
            f"CAST({right} AS DECIMAL(38, {right_scale}))"
            if right_scale == 0
            else f"(CAST({right} AS DECIMAL(38, {right_scale})) * {self.power_of_ten(right_scale)})"
        )
        truncated = f"(CAST({shifted} AS HUGEINT) // NULLIF(CAST({divisor} AS HUGEINT), 0))"
        tenth = self.power_of_ten(-WORKING_SCALE - 1)
        working = self.decimal(38, WORKING_SCALE)
        exact = f"CAST((CAST({truncated} AS DECIMAL(38, 0)) * {tenth}) AS {working})"
        if len(left) + (0 if fast_divisor else len(right)) > _FAST_DIVISION_MAX_SQL:
            return exact
        if fast_divisor is None:
            digits = _FAST_DIVISOR_DIGITS
            fast_divisor = (
                f"CAST(TRY_CAST({divisor} AS DECIMAL({digits}, {right_scale})) AS BIGINT)"
            )
        # NULL unless |left * 10^(13 + right_scale)| < 10^18: then exact on int64.
        numerator = (
            f"CAST(TRY_CAST({shifted} AS DECIMAL({_FAST_DIVIDEND_DIGITS}, {left_scale})) AS BIGINT)"
        )
        fast = (
            f"CAST((CAST(({numerator} // NULLIF({fast_divisor}, 0)) AS DECIMAL(18, 0)) * {tenth})"
            f" AS {working})"
        )
        return f"coalesce({fast}, {exact})"

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
        shifted = f"({operand} * {self.power_of_ten(digits)})"
        return f"({name}({shifted}) * {self.power_of_ten(-digits)})"


def to_duckdb_sql(node: Node, column_types: Mapping[str, str] | None = None) -> str:
    """The formula as a DuckDB expression of type DECIMAL(38, 12).

    `column_types` (dimension name → DuckDB type, e.g. from `relation.types`) lets the SQL read
    each column exactly as the rules say (integers at scale 0, doubles through their shortest
    text, absent dimensions as NULL). Without it every dimension is CAST to DECIMAL(38, 12).
    """
    return DuckDBEmitter(column_types).compile(node)


def out_of_range_sql(sql: str) -> str:
    """SQL that is true where a formula's expression `sql`, evaluated under `TRY` to NULL, was
    NULL because a value left the exact decimal range rather than because the formula is null
    there: asking whether it is null fails too. (Only meaningful where `TRY(sql)` is NULL.)"""
    return f"TRY(({sql}) IS NULL) IS NULL"
