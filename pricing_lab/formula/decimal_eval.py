"""Reference evaluator on Python `Decimal`: walks the tree for one row, never calls `eval`.

It is the executable statement of the value rules in docs/formulas.md; the compiled backends are
tested against it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, localcontext
from typing import Any

from pricing_lab.formula.ast import (
    COMPARE,
    Arithmetic,
    Call,
    Comparison,
    Dimension,
    Logical,
    Negate,
    Node,
    Not,
    Number,
    String,
    dimension_columns,
    dimensions,
)
from pricing_lab.formula.errors import FormulaOverflowError
from pricing_lab.formula.parser import MAX_INTEGER_DIGITS, WORKING_SCALE
from pricing_lab.money import quantum

Value = Decimal | bool | str | None

# Numeric text accepted from string-typed dimensions, by every backend (DuckDB and Polars use the
# pattern as it is): ASCII digits only, as SQL engines read them.
NUMERIC_TEXT_PATTERN = r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?"

_RESULT_LIMIT = Decimal(10) ** MAX_INTEGER_DIGITS
_INTERMEDIATE_LIMIT = Decimal(10) ** 38
_NUMERIC_TEXT = re.compile(NUMERIC_TEXT_PATTERN + r"\Z")
_ROUNDING = {"round": ROUND_HALF_UP, "ceil": ROUND_CEILING, "floor": ROUND_FLOOR}


def _places(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    return -exponent


def round_to_scale(
    value: Decimal, places: int = WORKING_SCALE, rounding: str = ROUND_HALF_UP
) -> Decimal:
    """`value` with at most `places` decimals (ROUND_HALF_UP is half away from zero)."""
    if _places(value) <= places:
        return value
    with localcontext() as ctx:
        ctx.prec = 200
        return value.quantize(quantum(places), rounding=rounding)


def dimension_number(value: Any) -> Decimal | None:
    """An event's dimension value as the exact decimal every backend uses (docs/formulas.md).

    Integers exactly; decimals rounded half away from zero to WORKING_SCALE places; doubles by
    their shortest round-trip text (0.1 is 0.1), then rounded; numeric text likewise; NaN,
    infinities, non-numeric text and doubles/text beyond the DECIMAL(38, 12) range are null.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return Decimal(int(value))
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        return round_to_scale(value) if value.is_finite() else None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return _bounded(round_to_scale(Decimal(repr(value))))
    if isinstance(value, str):
        if not _NUMERIC_TEXT.match(value):
            return None
        return _bounded(round_to_scale(Decimal(value)))
    return None


def _bounded(value: Decimal) -> Decimal | None:
    return value if abs(value) < _RESULT_LIMIT else None


def dimension_text(value: Any) -> str | None:
    """An event's dimension value as text, for `==` / `!=` against a string literal."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def divide(left: Decimal, right: Decimal) -> Decimal | None:
    """`left / right` rounded half away from zero to WORKING_SCALE places; None for / 0."""
    if right == 0:
        return None
    left_sign, left_digits, left_exp = left.as_tuple()
    right_sign, right_digits, right_exp = right.as_tuple()
    assert isinstance(left_exp, int) and isinstance(right_exp, int)
    numerator = int("".join(map(str, left_digits)) or "0")
    denominator = int("".join(map(str, right_digits)) or "0")
    # left/right * 10^S = numerator / denominator * 10^(left_exp - right_exp + S)
    shift = left_exp - right_exp + WORKING_SCALE
    if shift >= 0:
        numerator *= 10**shift
    else:
        denominator *= 10 ** (-shift)
    quotient, remainder = divmod(numerator, denominator)
    if 2 * remainder >= denominator:
        quotient += 1
    negative = left_sign != right_sign and quotient != 0
    return Decimal((1 if negative else 0, tuple(map(int, str(quotient))), -WORKING_SCALE))


def _check(value: Decimal) -> Decimal:
    if abs(value) >= _INTERMEDIATE_LIMIT:
        raise FormulaOverflowError(f"value out of range: {value:.6e}")
    return value


class _Evaluator:
    def __init__(self, row: Mapping[str, Any]) -> None:
        self.row = row

    def number(self, node: Node) -> Decimal | None:
        value = self.value(node)
        assert value is None or isinstance(value, Decimal)
        return value

    def condition(self, node: Node) -> bool | None:
        value = self.value(node)
        assert value is None or isinstance(value, bool)
        return value

    def value(self, node: Node) -> Value:
        if isinstance(node, Number):
            return node.value
        if isinstance(node, String):
            return node.value
        if isinstance(node, Dimension):
            return dimension_number(self.row.get(node.name))
        if isinstance(node, Negate):
            operand = self.number(node.operand)
            return None if operand is None else operand.copy_negate()  # exact: no context rounding
        if isinstance(node, Arithmetic):
            return self.arithmetic(node)
        if isinstance(node, Comparison):
            return self.comparison(node)
        if isinstance(node, Logical):
            left = self.condition(node.left)
            right = self.condition(node.right)
            if node.op == "and":
                if left is False or right is False:
                    return False
                return None if left is None or right is None else True
            if left is True or right is True:
                return True
            return None if left is None or right is None else False
        if isinstance(node, Not):
            inner = self.condition(node.operand)
            return None if inner is None else not inner
        return self.call(node)

    def arithmetic(self, node: Arithmetic) -> Decimal | None:
        left = self.number(node.left)
        right = self.number(node.right)
        if left is None or right is None:
            return None
        with localcontext() as ctx:
            ctx.prec = 200
            if node.op == "+":
                return _check(left + right)
            if node.op == "-":
                return _check(left - right)
            if node.op == "*":
                return _check(round_to_scale(left * right))
        quotient = divide(left, right)
        return None if quotient is None else _check(quotient)

    def comparison(self, node: Comparison) -> bool | None:
        if isinstance(node.left, String) or isinstance(node.right, String):
            left_text = self.text(node.left)
            right_text = self.text(node.right)
            if left_text is None or right_text is None:
                return None
            return (left_text == right_text) == (node.op == "==")
        left = self.number(node.left)
        right = self.number(node.right)
        if left is None or right is None:
            return None
        return bool(COMPARE[node.op](left, right))

    def text(self, node: Node) -> str | None:
        if isinstance(node, String):
            return node.value
        assert isinstance(node, Dimension)
        return dimension_text(self.row.get(node.name))

    def call(self, node: Node) -> Decimal | None:
        assert isinstance(node, Call)
        name, args = node.name, node.args
        if name == "if":
            chosen = args[1] if self.condition(args[0]) is True else args[2]
            return self.number(chosen)
        if name == "coalesce":
            for arg in args:
                value = self.number(arg)
                if value is not None:
                    return value
            return None
        values = [self.number(arg) for arg in args]
        if name in ("min", "max"):
            if any(v is None for v in values):
                return None
            present = [v for v in values if v is not None]
            return min(present) if name == "min" else max(present)
        operand = values[0]
        if operand is None:
            return None
        if name == "abs":
            return operand.copy_abs()  # exact: no context rounding
        digits = int(args[1].value) if len(args) == 2 and isinstance(args[1], Number) else 0
        return round_to_scale(operand, digits, _ROUNDING[name])


def evaluate(node: Node, row: Mapping[str, Any]) -> Decimal | None:
    """The formula's value for one event (`row`: dimension name → value; missing means null).
    Names match the row's keys as they match columns everywhere (`ast.dimension_columns`:
    case-insensitively, an exact match first).

    Raises FormulaOverflowError when a value leaves the DECIMAL(38, 12) range.
    """
    read = dimension_columns(dimensions(node), row)
    result = _Evaluator({name: row[key] for name, key in read.items()}).number(node)
    if result is not None and abs(result) >= _RESULT_LIMIT:
        raise FormulaOverflowError(f"result out of range: {result:.6e}")
    return result
