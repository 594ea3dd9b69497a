"""The formula syntax tree: small frozen nodes, no positions, no knowledge of any backend.

Two formulas that mean the same thing written differently (spacing, redundant parentheses, `1.50`
vs `1.5`, `MAX` vs `max`) parse to equal trees; `render` writes the canonical text back.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, TypeAlias

ArithmeticOp = Literal["+", "-", "*", "/"]
ComparisonOp = Literal["<", "<=", ">", ">=", "==", "!="]
LogicalOp = Literal["and", "or"]
FunctionName = Literal["min", "max", "abs", "ceil", "floor", "round", "if", "coalesce"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Number:
    """A decimal literal, normalised: no trailing zeros after the point, no exponent."""

    value: Decimal

    @property
    def scale(self) -> int:
        """Decimal places of the literal (0 for an integer)."""
        exponent = self.value.as_tuple().exponent
        assert isinstance(exponent, int)
        return max(0, -exponent)


@dataclass(frozen=True, slots=True, kw_only=True)
class String:
    """A single-quoted string literal; only an operand of `==` / `!=`."""

    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Dimension:
    """An event dimension (a column of the event table), by its exact name."""

    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Negate:
    """Unary minus."""

    operand: Node


@dataclass(frozen=True, slots=True, kw_only=True)
class Arithmetic:
    """`left op right` for + - * /."""

    op: ArithmeticOp
    left: Node
    right: Node


@dataclass(frozen=True, slots=True, kw_only=True)
class Comparison:
    """`left op right` for < <= > >= == !=; a condition (true, false or null)."""

    op: ComparisonOp
    left: Node
    right: Node


@dataclass(frozen=True, slots=True, kw_only=True)
class Logical:
    """`left and right`, `left or right` with SQL three-valued logic."""

    op: LogicalOp
    left: Node
    right: Node


@dataclass(frozen=True, slots=True, kw_only=True)
class Not:
    """`not operand` (null stays null)."""

    operand: Node


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """A function call; the name is lower case and the argument count already checked."""

    name: FunctionName
    args: tuple[Node, ...]


Node: TypeAlias = (
    Number | String | Dimension | Negate | Arithmetic | Comparison | Logical | Not | Call
)


def children(node: Node) -> tuple[Node, ...]:
    """The direct sub-nodes of `node`, left to right."""
    if isinstance(node, Negate | Not):
        return (node.operand,)
    if isinstance(node, Arithmetic | Comparison | Logical):
        return (node.left, node.right)
    if isinstance(node, Call):
        return node.args
    return ()


def dimensions(node: Node) -> tuple[str, ...]:
    """Sorted names of the dimensions a tree uses (iterative: trees can be deep)."""
    names: set[str] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, Dimension):
            names.add(current.name)
        stack.extend(children(current))
    return tuple(sorted(names))


def dimension_columns(names: Iterable[str], columns: Iterable[str]) -> dict[str, str]:
    """The column each dimension name reads, keyed by the name as written.

    Dimension names match columns case-insensitively, as DuckDB identifiers do (an exact match
    first): `Output_Tokens` reads the column `output_tokens`. A name with no column is left out
    (it is null in every row). Every backend reads columns by this rule."""
    present = list(columns)
    exact = set(present)
    by_lower = {column.lower(): column for column in reversed(present)}  # the first spelling
    found = {}
    for name in names:
        column = name if name in exact else by_lower.get(name.lower())
        if column is not None:
            found[name] = column
    return found


def is_simple(node: Node) -> bool:
    """Cheap to repeat (in SQL text or a Polars expression): a name or a literal, maybe negated."""
    while isinstance(node, Negate):
        node = node.operand
    return isinstance(node, Number | Dimension)


# A comparison's meaning on operands that overload the operators (Decimal, str, pl.Expr).
COMPARE: dict[ComparisonOp, Callable[[Any, Any], Any]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
