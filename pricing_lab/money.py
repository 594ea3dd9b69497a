"""Exact money and credit arithmetic: rounding modes of SPEC §2 and integer minor units."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, localcontext
from typing import Literal

Rounding = Literal["half_up", "up", "down"]

# "up" and "down" are toward +infinity / -infinity: a cost is never negative when it is kept, so for
# kept costs they equal away-from-zero / toward-zero. Documented in docs/rules.md.
_DECIMAL_ROUNDING: dict[str, str] = {
    "half_up": ROUND_HALF_UP,
    "up": ROUND_CEILING,
    "down": ROUND_FLOOR,
}

# Enough digits for NUMBER(38, s) amounts and for intermediate formula results.
PRECISION_DIGITS = 60


def quantum(precision: int) -> Decimal:
    """The smallest step at `precision` decimal places: 2 → Decimal('0.01')."""
    return Decimal(1).scaleb(-precision)


def quantize(amount: Decimal, precision: int, rounding: Rounding = "half_up") -> Decimal:
    """Round `amount` to `precision` decimal places with one of the currency rounding modes."""
    with localcontext() as ctx:
        ctx.prec = PRECISION_DIGITS
        return amount.quantize(quantum(precision), rounding=_DECIMAL_ROUNDING[rounding])


def normalized(value: Decimal) -> Decimal:
    """`value` exactly, without trailing zeros or exponent: 1.500 → 1.5, 1E+3 → 1000, 0.00 → 0.

    Unlike `Decimal.normalize`, never rounds to the context precision (amounts have up to 38
    digits, the default context keeps 28).
    """
    if not value.is_finite():
        return value
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    with localcontext() as ctx:
        ctx.prec = len(digits) + max(exponent, 0)
        if value == value.to_integral_value():
            return value.quantize(Decimal(1))
        return value.normalize()


def decimal_places(value: Decimal) -> int:
    """Decimal places `value` needs exactly: 1.500 → 1, 1E+3 → 0."""
    exponent = normalized(value).as_tuple().exponent
    return max(-exponent, 0) if isinstance(exponent, int) else 0


def to_minor_units(amount: Decimal, precision: int) -> int:
    """An amount already at `precision` places as an integer count of minor units (exact)."""
    scaled = amount.scaleb(precision)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} has more than {precision} decimal places")
    return int(scaled)


def from_minor_units(units: int, precision: int) -> Decimal:
    """Integer minor units back to a Decimal with exactly `precision` places."""
    return Decimal(units).scaleb(-precision).quantize(quantum(precision))


def spend_units(
    unit_price: Decimal, precision: int, limit: Decimal | None
) -> tuple[int, int | None]:
    """An auto-recharge's money in integers (SPEC §5 monthly spend limits): the price of one minor
    unit of a currency at `precision`, and `limit` (None: none), both in units of the smallest
    money scale at which both are whole."""
    limit_places = 0 if limit is None else decimal_places(limit)
    scale = max(precision + decimal_places(unit_price), limit_places)
    unit = int(unit_price.scaleb(scale - precision))
    return unit, None if limit is None else int(limit.scaleb(scale))
