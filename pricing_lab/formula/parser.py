"""Recursive-descent parser: tokens → a type-checked formula tree.

Precedence, loosest first: `or`, `and`, `not`, comparisons (not chainable), `+ -`, `* /`, unary
minus, then literals, names, calls and parentheses. Type rules are checked here, where positions are
known: numbers and conditions never mix, strings appear only beside `==` / `!=`, function names and
argument counts are known. Nesting is bounded so no input reaches Python's recursion limit.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal, NoReturn

from pricing_lab.formula.ast import (
    Arithmetic,
    Call,
    Comparison,
    Dimension,
    FunctionName,
    Logical,
    Negate,
    Node,
    Not,
    Number,
    String,
    children,
)
from pricing_lab.formula.errors import FormulaError
from pricing_lab.formula.tokens import Token, tokenize
from pricing_lab.money import normalized

# Every arithmetic result keeps at most this many decimal places (see docs/formulas.md).
WORKING_SCALE = 12
# Values must stay below 10**MAX_INTEGER_DIGITS: DECIMAL(38, 12) leaves 26 integer digits.
MAX_INTEGER_DIGITS = 38 - WORKING_SCALE
MAX_NESTING = 64
# Depth of the tree (a long chain `a + b + c + …` is deep without parentheses); bounded so that the
# emitters, which recurse, never reach Python's recursion limit.
MAX_TREE_DEPTH = 200

Kind = Literal["number", "condition", "string"]

KEYWORDS = frozenset({"and", "or", "not"})
# name → (minimum, maximum) argument count; None: no maximum.
FUNCTIONS: dict[str, tuple[int, int | None]] = {
    "min": (2, None),
    "max": (2, None),
    "abs": (1, 1),
    "ceil": (1, 2),
    "floor": (1, 2),
    "round": (1, 2),
    "if": (3, 3),
    "coalesce": (2, None),
}
_COMPARISONS = frozenset({"<", "<=", ">", ">=", "==", "!="})
_KIND_NAMES = {"number": "a number", "condition": "a condition", "string": "a string"}


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0
        self.depth = 0

    # -- helpers -----------------------------------------------------------------------------
    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind != "end":
            self.index += 1
        return token

    def error(
        self, message: str, token: Token | None = None, offset: int | None = None
    ) -> NoReturn:
        where = offset if offset is not None else (token or self.current).offset
        raise FormulaError(message, text=self.text, offset=where)

    def describe(self, token: Token) -> str:
        if token.kind == "end":
            return "end of formula"
        return repr(token.text)

    def is_keyword(self, token: Token, word: str) -> bool:
        return token.kind == "name" and token.value.lower() == word

    def enter(self, token: Token) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            self.error(f"formula nested too deeply (at most {MAX_NESTING} levels)", token)

    def leave(self) -> None:
        self.depth -= 1

    def expect_kind(self, kind: Kind, want: Kind, offset: int, role: str) -> None:
        if kind == want:
            return
        if kind == "string":
            message = "a string can only be an operand of == or !="
        else:
            message = f"{role} must be {_KIND_NAMES[want]}, not {_KIND_NAMES[kind]}"
        self.error(message, offset=offset)

    # -- grammar -----------------------------------------------------------------------------
    def parse(self) -> Node:
        if self.current.kind == "end":
            self.error("empty formula")
        start = self.current.offset
        node, kind = self.parse_or()
        if self.current.kind != "end":
            token = self.current
            if token.kind == "rparen":
                self.error("unbalanced ')'", token)
            self.error(f"unexpected {self.describe(token)}", token)
        self.expect_kind(kind, "number", start, "a formula")
        if tree_depth(node) > MAX_TREE_DEPTH:
            self.error(
                f"formula too complex: more than {MAX_TREE_DEPTH} nested operations", offset=start
            )
        return node

    def parse_or(self) -> tuple[Node, Kind]:
        start = self.current.offset
        left, kind = self.parse_and()
        while self.is_keyword(self.current, "or"):
            self.expect_kind(kind, "condition", start, "an operand of 'or'")
            self.advance()
            right_start = self.current.offset
            right, right_kind = self.parse_and()
            self.expect_kind(right_kind, "condition", right_start, "an operand of 'or'")
            left, kind = Logical(op="or", left=left, right=right), "condition"
        return left, kind

    def parse_and(self) -> tuple[Node, Kind]:
        start = self.current.offset
        left, kind = self.parse_not()
        while self.is_keyword(self.current, "and"):
            self.expect_kind(kind, "condition", start, "an operand of 'and'")
            self.advance()
            right_start = self.current.offset
            right, right_kind = self.parse_not()
            self.expect_kind(right_kind, "condition", right_start, "an operand of 'and'")
            left, kind = Logical(op="and", left=left, right=right), "condition"
        return left, kind

    def parse_not(self) -> tuple[Node, Kind]:
        token = self.current
        if self.is_keyword(token, "not"):
            self.advance()
            self.enter(token)
            start = self.current.offset
            operand, kind = self.parse_not()
            self.leave()
            self.expect_kind(kind, "condition", start, "the operand of 'not'")
            return Not(operand=operand), "condition"
        return self.parse_comparison()

    def parse_comparison(self) -> tuple[Node, Kind]:
        start = self.current.offset
        left, left_kind, left_is_dim = self.parse_additive_with_flag()
        token = self.current
        if not (token.kind == "op" and token.value in _COMPARISONS):
            return left, left_kind
        self.advance()
        right_start = self.current.offset
        right, right_kind, right_is_dim = self.parse_additive_with_flag()
        op = token.value
        textual = left_kind == "string" or right_kind == "string"
        if textual:
            if op not in ("==", "!="):
                self.error(f"strings can only be compared with == or !=, not {op}", token)
            for kind, is_dim, offset in (
                (left_kind, left_is_dim, start),
                (right_kind, right_is_dim, right_start),
            ):
                if kind != "string" and not is_dim:
                    self.error(
                        "a string can only be compared with a dimension or a string", offset=offset
                    )
        else:
            self.expect_kind(left_kind, "number", start, f"an operand of {op}")
            self.expect_kind(right_kind, "number", right_start, f"an operand of {op}")
        following = self.current
        if following.kind == "op" and following.value in _COMPARISONS:
            self.error("comparisons cannot be chained; combine them with 'and'", following)
        node = Comparison(op=op, left=left, right=right)  # type: ignore[arg-type]
        return node, "condition"

    def parse_additive_with_flag(self) -> tuple[Node, Kind, bool]:
        before = self.index
        node, kind = self.parse_additive()
        is_dim = isinstance(node, Dimension) and self.index == before + 1
        return node, kind, is_dim

    def parse_additive(self) -> tuple[Node, Kind]:
        start = self.current.offset
        left, kind = self.parse_multiplicative()
        while self.current.kind == "op" and self.current.value in ("+", "-"):
            op = self.advance().value
            self.expect_kind(kind, "number", start, f"the left operand of {op}")
            right_start = self.current.offset
            right, right_kind = self.parse_multiplicative()
            self.expect_kind(right_kind, "number", right_start, f"the right operand of {op}")
            left, kind = Arithmetic(op=op, left=left, right=right), "number"  # type: ignore[arg-type]
        return left, kind

    def parse_multiplicative(self) -> tuple[Node, Kind]:
        start = self.current.offset
        left, kind = self.parse_unary()
        while self.current.kind == "op" and self.current.value in ("*", "/"):
            op = self.advance().value
            self.expect_kind(kind, "number", start, f"the left operand of {op}")
            right_start = self.current.offset
            right, right_kind = self.parse_unary()
            self.expect_kind(right_kind, "number", right_start, f"the right operand of {op}")
            left, kind = Arithmetic(op=op, left=left, right=right), "number"  # type: ignore[arg-type]
        return left, kind

    def parse_unary(self) -> tuple[Node, Kind]:
        token = self.current
        if token.kind == "op" and token.value == "-":
            self.advance()
            self.enter(token)
            start = self.current.offset
            operand, kind = self.parse_unary()
            self.leave()
            self.expect_kind(kind, "number", start, "the operand of unary -")
            return Negate(operand=operand), "number"
        if token.kind == "op" and token.value == "+":
            self.error("unary + is not allowed", token)
        return self.parse_primary()

    def parse_primary(self) -> tuple[Node, Kind]:
        token = self.current
        if token.kind == "number":
            self.advance()
            return self.number_literal(token), "number"
        if token.kind == "string":
            self.advance()
            return String(value=token.value), "string"
        if token.kind == "quoted_name":
            self.advance()
            return Dimension(name=token.value), "number"
        if token.kind == "lparen":
            self.advance()
            self.enter(token)
            node, kind = self.parse_or()
            self.leave()
            if self.current.kind != "rparen":
                self.error(
                    f"expected ')' to close the '(' at column {token.column}, "
                    f"found {self.describe(self.current)}"
                )
            self.advance()
            return node, kind
        if token.kind == "name":
            lowered = token.value.lower()
            if lowered in KEYWORDS:
                self.error(
                    f"unexpected keyword {token.value!r} (a dimension with this name must be "
                    f"written in backquotes: `{token.value}`)",
                    token,
                )
            self.advance()
            if self.current.kind == "lparen":
                return self.call(token)
            return Dimension(name=token.value), "number"
        if token.kind == "end":
            self.error("unexpected end of formula: expected a number, a name or '('", token)
        self.error(f"unexpected {self.describe(token)}: expected a number, a name or '('", token)

    def number_literal(self, token: Token) -> Number:
        integer, _, fraction = token.value.partition(".")
        fraction = fraction.rstrip("0")
        if len(fraction) > WORKING_SCALE:
            self.error(
                f"number {token.text} has {len(fraction)} decimal places; "
                f"at most {WORKING_SCALE} are allowed",
                token,
            )
        if len(integer.lstrip("0")) > MAX_INTEGER_DIGITS:
            self.error(
                f"number {token.text} is too large (at most {MAX_INTEGER_DIGITS} digits "
                "before the decimal point)",
                token,
            )
        # Normalised (`1.50` → `1.5`, `007` → `7`): equal values give equal trees.
        return Number(value=normalized(Decimal(token.value)))

    def call(self, name_token: Token) -> tuple[Node, Kind]:
        name = name_token.value.lower()
        if name not in FUNCTIONS:
            known = ", ".join(sorted(FUNCTIONS))
            self.error(f"unknown function {name_token.value!r} (known: {known})", name_token)
        open_token = self.advance()
        self.enter(open_token)
        args: list[tuple[Node, Kind, int, Token]] = []
        if self.current.kind != "rparen":
            while True:
                first = self.current
                node, kind = self.parse_or()
                args.append((node, kind, first.offset, first))
                if self.current.kind == "comma":
                    self.advance()
                    continue
                if self.current.kind != "rparen":
                    self.error(
                        f"expected ',' or ')' in the arguments of {name}, "
                        f"found {self.describe(self.current)}"
                    )
                break
        self.advance()
        self.leave()
        low, high = FUNCTIONS[name]
        count = len(args)
        if count < low or (high is not None and count > high):
            if high is None:
                wanted = f"at least {low} arguments"
            elif low == high:
                wanted = f"{low} argument" + ("s" if low != 1 else "")
            else:
                wanted = f"{low} to {high} arguments"
            self.error(f"{name}() takes {wanted}, got {count}", name_token)
        for position, (_, kind, offset, first) in enumerate(args):
            if name == "if" and position == 0:
                self.expect_kind(kind, "condition", offset, "the first argument of if()")
            elif name in ("ceil", "floor", "round") and position == 1:
                self.check_digits(name, args[1][0], first)
            else:
                self.expect_kind(kind, "number", offset, f"an argument of {name}()")
        function_name: FunctionName = name  # type: ignore[assignment]
        return Call(name=function_name, args=tuple(a[0] for a in args)), "number"

    def check_digits(self, name: str, node: Node, token: Token) -> None:
        if not isinstance(node, Number) or node.scale != 0 or not 0 <= node.value <= WORKING_SCALE:
            self.error(
                f"the digits of {name}() must be a whole number from 0 to {WORKING_SCALE}",
                token,
            )


def tree_depth(node: Node) -> int:
    """Height of a tree, computed without recursion."""
    deepest = 0
    stack = [(node, 1)]
    while stack:
        current, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children(current))
    return deepest


def parse(text: str) -> Node:
    """Parse and type-check formula text; raises FormulaError naming line and column."""
    if not isinstance(text, str):
        raise FormulaError(f"a formula must be text, not {type(text).__name__}")
    return _Parser(text).parse()
