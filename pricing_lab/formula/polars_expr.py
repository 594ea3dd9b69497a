"""Polars backend: a formula tree as one `pl.Expr` of dtype Decimal(38, 12).

Polars' Decimal arithmetic is exact but rounds half to even and gives a product the larger
operand scale, so the walk controls scales itself: a product is computed at the full scale of
both operands, then rounded half away from zero to 12 places when it has more. Division is done
on Int128 inside a vectorised batch function (the dividend scaled to 13 places over the divisor,
truncated, then rounded half away from zero), exactly as the DuckDB backend does; a batch
function is also how `min`/`max` of non-trivial arguments see each argument once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Final

import polars as pl
import polars.selectors as cs

from pricing_lab.formula import scale
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
    is_simple,
)
from pricing_lab.formula.decimal_eval import NUMERIC_TEXT_PATTERN
from pricing_lab.formula.parser import WORKING_SCALE

_HALF_AWAY: Final = "half_away_from_zero"


def _decimal(places: int) -> pl.Decimal:
    return pl.Decimal(38, places)


def _lit(value: Decimal | int, places: int) -> pl.Expr:
    return pl.lit(Decimal(value), dtype=_decimal(places))


def _column(name: str) -> pl.Expr:
    # by_name takes the name literally: `*` or `^…$` are not patterns here.
    return cs.by_name(name).as_expr()


def _rescale(expr: pl.Expr, current: int, places: int) -> pl.Expr:
    """`expr` (Decimal(38, current)) as Decimal(38, places); no cast when already there."""
    return expr if current == places else expr.cast(_decimal(places))


def _aligned(emitted: list[tuple[pl.Expr, int]]) -> tuple[list[pl.Expr], int]:
    """Operands brought to their common scale (see `scale.common_scale`)."""
    places = scale.common_scale(s for _, s in emitted)
    return [_rescale(expr, s, places) for expr, s in emitted], places


def _extreme(name: str, args: list[pl.Expr]) -> pl.Expr:
    """min/max of the arguments, null when any is null (Polars' horizontal ones skip nulls)."""
    horizontal = pl.min_horizontal(args) if name == "min" else pl.max_horizontal(args)
    any_null = pl.any_horizontal([arg.is_null() for arg in args])
    return pl.when(any_null).then(None).otherwise(horizontal)


def _round_to(expr: pl.Expr, places: int) -> pl.Expr:
    return expr.round(places, mode=_HALF_AWAY).cast(_decimal(places))


def _double_to_decimal(column: pl.Expr) -> pl.Expr:
    """Shortest round-trip text of the double, parsed where it is exact, rounded half away."""
    value = column.cast(pl.Float64)
    text = value.cast(pl.String)
    magnitude = value.abs()
    return (
        pl.when(magnitude < 1)
        .then(_round_to(text.cast(_decimal(38), strict=False), WORKING_SCALE))
        .when(magnitude < 1e22)
        .then(_round_to(text.cast(_decimal(16), strict=False), WORKING_SCALE))
        .otherwise(text.cast(_decimal(WORKING_SCALE), strict=False))
    )


def _text_to_decimal(text: pl.Expr) -> pl.Expr:
    numeric = text.str.contains(f"^(?:{NUMERIC_TEXT_PATTERN})$")
    return pl.when(numeric).then(text.cast(_decimal(WORKING_SCALE), strict=False))


def _batch(args: list[pl.Expr], function: Callable[[pl.DataFrame], pl.Series]) -> pl.Expr:
    """Apply a vectorised function to several expressions, each evaluated once."""
    fields = [arg.alias(f"f{i}") for i, arg in enumerate(args)]
    return pl.struct(fields).map_batches(
        lambda series: function(series.struct.unnest()),
        return_dtype=_decimal(WORKING_SCALE),
        is_elementwise=True,
    )


def _divide_batch(right_scale: int) -> Callable[[pl.DataFrame], pl.Series]:
    def divide(frame: pl.DataFrame) -> pl.Series:
        numerator = (pl.col("f0") * _lit(10 ** (WORKING_SCALE + 1 + right_scale), 0)).cast(
            pl.Int128
        )
        denominator = (pl.col("f1") * _lit(10**right_scale, 0)).cast(pl.Int128)
        denominator = pl.when(denominator != 0).then(denominator)
        truncated = (numerator.abs() // denominator.abs()) * (numerator.sign() * denominator.sign())
        thirteen = truncated.cast(_decimal(0)) * _lit(
            Decimal(1).scaleb(-WORKING_SCALE - 1), WORKING_SCALE + 1
        )
        return frame.select(_round_to(thirteen, WORKING_SCALE)).to_series()

    return divide


def _extreme_batch(name: str) -> Callable[[pl.DataFrame], pl.Series]:
    def extreme(frame: pl.DataFrame) -> pl.Series:
        expr = _extreme(name, [pl.col(c) for c in frame.columns])
        return frame.select(expr.cast(_decimal(WORKING_SCALE))).to_series()

    return extreme


class PolarsEmitter:
    """Builds the expression; `schema` (column → dtype) selects the exact reading per type."""

    def __init__(self, schema: Mapping[str, pl.DataType] | None = None) -> None:
        self.schema = schema

    def column_name(self, name: str) -> str | None:
        """The frame's column dimension `name` reads (`ast.dimension_columns`: case-insensitive,
        exact first), None when absent; `name` itself without a schema."""
        if self.schema is None:
            return name
        return dimension_columns([name], self.schema).get(name)

    def compile(self, node: Node) -> pl.Expr:
        expr, places = self.emit(node)
        return _rescale(expr, places, WORKING_SCALE)

    def dimension(self, name: str) -> tuple[pl.Expr, int]:
        if self.schema is None:
            return _column(name).cast(_decimal(WORKING_SCALE)), WORKING_SCALE
        found = self.column_name(name)
        if found is None:
            return pl.lit(None, dtype=_decimal(0)), 0
        dtype = self.schema[found]
        column = _column(found)
        if dtype.is_integer():
            return column.cast(_decimal(0)), 0
        if dtype == pl.Boolean:
            return column.cast(pl.Int8).cast(_decimal(0)), 0
        if isinstance(dtype, pl.Decimal):
            places = dtype.scale or 0
            if places <= WORKING_SCALE:
                return column.cast(_decimal(places)), places
            return _round_to(column, WORKING_SCALE), WORKING_SCALE
        if dtype.is_float():
            return _double_to_decimal(column), WORKING_SCALE
        text = column if dtype == pl.String else column.cast(pl.String)
        return _text_to_decimal(text), WORKING_SCALE

    def text(self, node: Node) -> pl.Expr:
        if isinstance(node, String):
            return pl.lit(node.value, dtype=pl.String)
        assert isinstance(node, Dimension)
        found = self.column_name(node.name)
        if found is None:
            return pl.lit(None, dtype=pl.String)
        column = _column(found)
        if self.schema is not None and self.schema[found] == pl.Boolean:
            return pl.when(column).then(pl.lit("true")).when(~column).then(pl.lit("false"))
        return column.cast(pl.String)

    def emit(self, node: Node) -> tuple[pl.Expr, int]:
        if isinstance(node, Number):
            return _lit(node.value, node.scale), node.scale
        if isinstance(node, Dimension):
            return self.dimension(node.name)
        if isinstance(node, Negate):
            operand, places = self.emit(node.operand)
            return -operand, places
        if isinstance(node, Arithmetic):
            return self.arithmetic(node)
        if isinstance(node, Comparison):
            return self.comparison(node), scale.CONDITION
        if isinstance(node, Logical):
            left, _ = self.emit(node.left)
            right, _ = self.emit(node.right)
            return (left & right) if node.op == "and" else (left | right), scale.CONDITION
        if isinstance(node, Not):
            operand, _ = self.emit(node.operand)
            return ~operand, scale.CONDITION
        if isinstance(node, Call):
            return self.call(node)
        raise AssertionError(f"a string literal outside a comparison: {node!r}")

    def arithmetic(self, node: Arithmetic) -> tuple[pl.Expr, int]:
        left, left_scale = self.emit(node.left)
        right, right_scale = self.emit(node.right)
        if node.op in ("+", "-"):
            (left, right), places = _aligned([(left, left_scale), (right, right_scale)])
            return (left + right if node.op == "+" else left - right), places
        if node.op == "*":
            # Polars gives a product the larger operand scale: widen one operand to both scales.
            exact = _rescale(left, left_scale, left_scale + right_scale) * right
            if scale.product_needs_rounding(left_scale, right_scale):
                return _round_to(exact, WORKING_SCALE), WORKING_SCALE
            return exact, left_scale + right_scale
        return _batch([left, right], _divide_batch(right_scale)), scale.QUOTIENT_SCALE

    def comparison(self, node: Comparison) -> pl.Expr:
        if isinstance(node.left, String) or isinstance(node.right, String):
            left, right = self.text(node.left), self.text(node.right)
        else:
            (left, right), _ = _aligned([self.emit(node.left), self.emit(node.right)])
        result: pl.Expr = COMPARE[node.op](left, right)
        return result

    def call(self, node: Call) -> tuple[pl.Expr, int]:
        name = node.name
        if name == "if":
            condition, _ = self.emit(node.args[0])
            (then, other), places = _aligned([self.emit(arg) for arg in node.args[1:]])
            return pl.when(condition).then(then).otherwise(other), places
        if name in ("coalesce", "min", "max"):
            args, places = _aligned([self.emit(arg) for arg in node.args])
            if name == "coalesce":
                return pl.coalesce(args), places
            if all(is_simple(arg) for arg in node.args):
                return _extreme(name, args), places
            result = _batch(args, _extreme_batch(name))
            return result.cast(_decimal(places)), places
        operand, operand_scale = self.emit(node.args[0])
        if name == "abs":
            return operand.abs(), operand_scale
        digits = int(node.args[1].value) if len(node.args) == 2 else 0  # type: ignore[union-attr]
        if digits >= operand_scale:
            return operand, operand_scale
        if name == "round":
            return _round_to(operand, digits), digits
        if digits == 0:
            stepped = operand.ceil() if name == "ceil" else operand.floor()
            return stepped.cast(_decimal(0)), 0
        shifted = operand * _lit(10**digits, 0)
        stepped = shifted.ceil() if name == "ceil" else shifted.floor()
        back = stepped * _lit(Decimal(1).scaleb(-digits), digits)
        return back.cast(_decimal(digits)), digits


def to_polars(node: Node, schema: Mapping[str, pl.DataType] | None = None) -> pl.Expr:
    """The formula as a Polars expression of dtype Decimal(38, 12).

    Pass the frame's `schema` so each column is read exactly by its dtype (and absent dimensions
    are null); without it every dimension is cast to Decimal(38, 12).
    """
    return PolarsEmitter(schema).compile(node)
