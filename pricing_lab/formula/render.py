"""Canonical text of a formula tree: minimal parentheses, one space around binary operators.

`parse(render(tree)) == tree` for every tree the parser produces.
"""

from __future__ import annotations

import re
from decimal import Decimal

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
)
from pricing_lab.formula.parser import KEYWORDS

_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

# Binding strength; a child binding more loosely than its place requires gets parentheses.
_OR, _AND, _NOT, _COMPARE, _ADD, _MUL, _UNARY, _ATOM = range(1, 9)
_ARITHMETIC_LEVEL = {"+": _ADD, "-": _ADD, "*": _MUL, "/": _MUL}


def render_number(value: Decimal) -> str:
    """A literal as the parser reads it: plain digits, never an exponent."""
    return format(value, "f")


def render_name(name: str) -> str:
    """A dimension name, backquoted unless it is a plain identifier and not a keyword."""
    if _PLAIN_NAME.match(name) and name.lower() not in KEYWORDS:
        return name
    return "`" + name.replace("`", "``") + "`"


def render_string(value: str) -> str:
    """A single-quoted string literal with quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def _level(node: Node) -> int:
    if isinstance(node, Logical):
        return _OR if node.op == "or" else _AND
    if isinstance(node, Not):
        return _NOT
    if isinstance(node, Comparison):
        return _COMPARE
    if isinstance(node, Arithmetic):
        return _ARITHMETIC_LEVEL[node.op]
    if isinstance(node, Negate):
        return _UNARY
    return _ATOM


def _wrap(node: Node, minimum: int) -> str:
    text = render(node)
    return f"({text})" if _level(node) < minimum else text


def render(node: Node) -> str:
    """The canonical text of `node`."""
    if isinstance(node, Number):
        return render_number(node.value)
    if isinstance(node, String):
        return render_string(node.value)
    if isinstance(node, Dimension):
        return render_name(node.name)
    if isinstance(node, Negate):
        return "-" + _wrap(node.operand, _UNARY)
    if isinstance(node, Not):
        return "not " + _wrap(node.operand, _NOT)
    if isinstance(node, Call):
        return f"{node.name}({', '.join(render(arg) for arg in node.args)})"
    level = _level(node)
    if isinstance(node, Comparison):
        # Comparisons do not chain: both operands must bind tighter.
        return f"{_wrap(node.left, level + 1)} {node.op} {_wrap(node.right, level + 1)}"
    # Left-associative: the right operand needs parentheses at the same level.
    return f"{_wrap(node.left, level)} {node.op} {_wrap(node.right, level + 1)}"
