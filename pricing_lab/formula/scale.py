"""Static decimal scales shared by the compiled backends (DuckDB, Snowflake, Polars).

Every numeric sub-expression has a scale known at compile time: the number of decimal places its
values carry. Values follow one rule in every backend (docs/formulas.md): `+ - neg abs min max if
coalesce` are exact; `*` is exact and then rounded half away from zero to WORKING_SCALE places when
it has more; `/` is rounded half away from zero to WORKING_SCALE places. The scales below are the
smallest that hold those values exactly, so compiled SQL never rounds where the rule does not.
"""

from __future__ import annotations

from collections.abc import Iterable

from pricing_lab.formula.parser import WORKING_SCALE

# The "scale" the emitters give a condition (it has none).
CONDITION = -1


def common_scale(scales: Iterable[int]) -> int:
    """Scale of `a + b`, `a - b`, and of if/min/max/coalesce: every operand fits the largest
    (and where several values meet, each branch is cast to it)."""
    return max(scales)


def product_scale(left: int, right: int) -> int:
    """Scale of `a * b` after the rule's rounding."""
    return min(left + right, WORKING_SCALE)


def product_needs_rounding(left: int, right: int) -> bool:
    """True when the exact product has more places than the rule keeps."""
    return left + right > WORKING_SCALE


QUOTIENT_SCALE = WORKING_SCALE
