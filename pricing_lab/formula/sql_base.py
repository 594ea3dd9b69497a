"""What the SQL backends share: one walk over the tree with a table of per-dialect spellings.

Each numeric piece of SQL comes with its static scale (see `scale.py`); a dialect subclass
decides how to write dimensions, literals, rounding products, quotients and functions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pricing_lab.formula import scale
from pricing_lab.formula.ast import (
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
    is_simple,
)
from pricing_lab.formula.parser import WORKING_SCALE
from pricing_lab.formula.render import render_number


def quote_identifier(name: str) -> str:
    """A double-quoted SQL identifier; embedded quotes are doubled, so no name can escape."""
    return '"' + name.replace('"', '""') + '"'


def quote_string(value: str) -> str:
    """A single-quoted SQL string literal with quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def decimal_digits(value_text: str) -> tuple[int, int]:
    """(precision, scale) of a plain decimal literal's text."""
    digits = value_text.lstrip("-")
    integer, _, fraction = digits.partition(".")
    integer = integer.lstrip("0")
    return max(1, len(integer) + len(fraction)), len(fraction)


_TYPE_ARGS = re.compile(r"\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)")


def type_precision_scale(type_name: str) -> tuple[int, int] | None:
    """(precision, scale) from `DECIMAL(18,3)` / `NUMBER(38, 0)`; None when not given."""
    match = _TYPE_ARGS.search(type_name)
    if not match:
        return None
    return int(match.group(1)), int(match.group(2) or 0)


class SqlEmitter:
    """Writes one formula tree as a SQL expression; subclasses supply the dialect."""

    decimal_type = "DECIMAL"

    def __init__(self, column_types: Mapping[str, str] | None = None) -> None:
        self.column_types = (
            None if column_types is None else {k: str(v).upper() for k, v in column_types.items()}
        )

    # -- entry point ----------------------------------------------------------------------------
    def compile(self, node: Node) -> str:
        sql, _ = self.emit(node)
        return f"CAST({sql} AS {self.decimal(38, WORKING_SCALE)})"

    def decimal(self, precision: int, places: int) -> str:
        return f"{self.decimal_type}({precision}, {places})"

    # -- per-dialect pieces (overridden) --------------------------------------------------------
    def dimension(self, name: str) -> tuple[str, int]:
        """A dimension's value and scale: CAST to the working type when column types are unknown,
        NULL when the column is absent, else as `typed_dimension` reads its type."""
        column = quote_identifier(name)
        types = self.column_types
        if types is None:
            return f"CAST({column} AS {self.decimal(38, WORKING_SCALE)})", WORKING_SCALE
        if name not in types:
            return f"CAST(NULL AS {self.decimal(1, 0)})", 0
        return self.typed_dimension(column, types[name])

    def typed_dimension(self, column: str, type_name: str) -> tuple[str, int]:
        """A quoted column of a known (upper-case) type as an exact number, and its scale."""
        raise NotImplementedError

    def dimension_text(self, name: str) -> str:
        column = quote_identifier(name)
        types = self.column_types
        if types is not None and name not in types:
            return "CAST(NULL AS VARCHAR)"
        if types is not None and types[name].startswith(("VARCHAR", "TEXT", "STRING")):
            return column
        return f"CAST({column} AS VARCHAR)"

    def literal(self, node: Number) -> str:
        text = render_number(node.value)
        precision, places = decimal_digits(text)
        return f"CAST({quote_string(text)} AS {self.decimal(precision, places)})"

    def product(self, left: str, right: str, rounded: bool) -> str:
        product = f"({left} * {right})"
        return f"CAST({product} AS {self.decimal(38, WORKING_SCALE)})" if rounded else product

    def quotient(self, left: str, left_scale: int, right: str, right_scale: int) -> str:
        raise NotImplementedError

    def least_greatest(self, name: str, args: list[str], simple: bool) -> str:
        raise NotImplementedError

    def if_then_else(self, condition: str, then: str, otherwise: str) -> str:
        return f"CASE WHEN {condition} THEN {then} ELSE {otherwise} END"

    def ceil_floor(self, name: str, operand: str, digits: int) -> str:
        raise NotImplementedError

    # -- the walk -------------------------------------------------------------------------------
    def emit(self, node: Node) -> tuple[str, int]:
        if isinstance(node, Number):
            return self.literal(node), node.scale
        if isinstance(node, Dimension):
            return self.dimension(node.name)
        if isinstance(node, Negate):
            operand, places = self.emit(node.operand)
            return f"(-{operand})", places
        if isinstance(node, Arithmetic):
            return self.arithmetic(node)
        if isinstance(node, Comparison):
            return self.comparison(node), scale.CONDITION
        if isinstance(node, Logical):
            left, _ = self.emit(node.left)
            right, _ = self.emit(node.right)
            return f"({left} {node.op.upper()} {right})", scale.CONDITION
        if isinstance(node, Not):
            operand, _ = self.emit(node.operand)
            return f"(NOT {operand})", scale.CONDITION
        if isinstance(node, Call):
            return self.call(node)
        raise AssertionError(f"a string literal outside a comparison: {node!r}")

    def aligned(self, emitted: list[tuple[str, int]]) -> tuple[list[str], int]:
        """Operands brought to one scale where it differs: engines that unify DECIMAL types by
        precision first (DuckDB: DECIMAL(38,0) with DECIMAL(2,1) gives DECIMAL(38,0)) would
        otherwise drop decimal places."""
        places = scale.common_scale(s for _, s in emitted)
        if all(s == places for _, s in emitted):
            return [sql for sql, _ in emitted], places
        target = self.decimal(38, places)
        return [sql if s == places else f"CAST({sql} AS {target})" for sql, s in emitted], places

    def arithmetic(self, node: Arithmetic) -> tuple[str, int]:
        left, left_scale = self.emit(node.left)
        right, right_scale = self.emit(node.right)
        if node.op in ("+", "-"):
            return f"({left} {node.op} {right})", scale.common_scale((left_scale, right_scale))
        if node.op == "*":
            rounded = scale.product_needs_rounding(left_scale, right_scale)
            return self.product(left, right, rounded), scale.product_scale(left_scale, right_scale)
        return self.quotient(left, left_scale, right, right_scale), scale.QUOTIENT_SCALE

    def comparison(self, node: Comparison) -> str:
        op = {"==": "=", "!=": "<>"}.get(node.op, node.op)
        if isinstance(node.left, String) or isinstance(node.right, String):
            left = self.text_operand(node.left)
            right = self.text_operand(node.right)
        else:
            (left, right), _ = self.aligned([self.emit(node.left), self.emit(node.right)])
        return f"({left} {op} {right})"

    def text_operand(self, node: Node) -> str:
        if isinstance(node, String):
            return quote_string(node.value)
        assert isinstance(node, Dimension)
        return self.dimension_text(node.name)

    def call(self, node: Call) -> tuple[str, int]:
        name = node.name
        if name == "if":
            condition, _ = self.emit(node.args[0])
            (then, otherwise), places = self.aligned([self.emit(a) for a in node.args[1:]])
            return self.if_then_else(condition, then, otherwise), places
        if name in ("coalesce", "min", "max"):
            args, places = self.aligned([self.emit(arg) for arg in node.args])
            if name == "coalesce":
                return f"coalesce({', '.join(args)})", places
            simple = all(is_simple(arg) for arg in node.args)
            function = "least" if name == "min" else "greatest"
            return self.least_greatest(function, args, simple), places
        operand, operand_scale = self.emit(node.args[0])
        if name == "abs":
            return f"abs({operand})", operand_scale
        digits = int(node.args[1].value) if len(node.args) == 2 else 0  # type: ignore[union-attr]
        if digits >= operand_scale:
            return operand, operand_scale
        if name == "round":
            return f"round({operand}, {digits})", digits
        return self.ceil_floor(name, operand, digits), digits
