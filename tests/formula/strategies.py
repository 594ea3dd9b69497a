"""Hypothesis strategies: random formula trees (numbers and conditions) and random event rows."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import strategies as st

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
from pricing_lab.money import normalized

# Numeric dimensions of the random rows: integer, decimal(18, 6), double, mostly-null integer.
NUMERIC_DIMENSIONS = ("i", "d", "f", "n")
TEXT_DIMENSION = "s"
TEXTS = ("gpt-4o", "chat", "", "it's")


def _literal(digits: int, places: int) -> Number:
    return Number(value=normalized(Decimal(digits).scaleb(-places)))


literals = st.one_of(
    st.sampled_from([0, 1, 2, 1000, 10**6]).map(lambda v: Number(value=Decimal(v))),
    st.builds(_literal, st.integers(0, 10**6), st.integers(0, 6)),
    st.builds(_literal, st.integers(1, 99), st.integers(7, 12)),  # tiny
)
dimension_nodes = st.sampled_from(NUMERIC_DIMENSIONS).map(lambda name: Dimension(name=name))


def _numbers(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    conditions = _conditions(children)
    digits = st.one_of(st.none(), st.integers(0, 12).map(lambda d: Number(value=Decimal(d))))

    def rounding(name: str) -> st.SearchStrategy[Node]:
        return st.builds(
            lambda x, d: Call(name=name, args=(x,) if d is None else (x, d)),  # type: ignore[arg-type]
            children,
            digits,
        )

    return st.one_of(
        st.builds(Negate, operand=children),
        st.builds(
            Arithmetic, op=st.sampled_from(["+", "-", "*", "/"]), left=children, right=children
        ),
        st.builds(
            lambda name, args: Call(name=name, args=tuple(args)),
            st.sampled_from(["min", "max", "coalesce"]),
            st.lists(children, min_size=2, max_size=3),
        ),
        st.builds(lambda x: Call(name="abs", args=(x,)), children),
        rounding("round"),
        rounding("ceil"),
        rounding("floor"),
        st.builds(lambda c, a, b: Call(name="if", args=(c, a, b)), conditions, children, children),
    )


def _conditions(numbers: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    comparisons = st.one_of(
        st.builds(
            Comparison,
            op=st.sampled_from(["<", "<=", ">", ">=", "==", "!="]),
            left=numbers,
            right=st.one_of(literals, dimension_nodes),
        ),
        st.builds(
            Comparison,
            op=st.sampled_from(["==", "!="]),
            left=st.just(Dimension(name=TEXT_DIMENSION)),
            right=st.sampled_from(TEXTS).map(lambda v: String(value=v)),
        ),
    )
    return st.recursive(
        comparisons,
        lambda inner: st.one_of(
            st.builds(Logical, op=st.sampled_from(["and", "or"]), left=inner, right=inner),
            st.builds(Not, operand=inner),
        ),
        max_leaves=2,
    )


formulas: st.SearchStrategy[Node] = st.recursive(
    st.one_of(literals, dimension_nodes), _numbers, max_leaves=8
)

_special_floats = st.sampled_from(
    [0.0, -0.0, 0.1, 0.3, 1e-13, 5e-13, 2.5e-12, 1e-9, 123456789.123456789, 1e9, float("nan")]
)
rows = st.fixed_dictionaries(
    {
        "i": st.one_of(st.none(), st.sampled_from([0, 1, -1, 10**9]), st.integers(-(10**6), 10**6)),
        "d": st.one_of(
            st.none(),
            st.sampled_from([Decimal(0), Decimal("0.000001"), Decimal("-999999999.999999")]),
            st.builds(
                lambda v, p: Decimal(v).scaleb(-p), st.integers(-(10**9), 10**9), st.integers(0, 6)
            ),
        ),
        "f": st.one_of(
            st.none(),
            _special_floats,
            st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
        ),
        "n": st.one_of(st.none(), st.none(), st.integers(-5, 5)),
        "s": st.one_of(st.none(), st.sampled_from(TEXTS), st.text(max_size=3)),
    }
)
