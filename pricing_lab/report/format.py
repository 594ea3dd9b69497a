"""How numbers read to people: credits, money, counts, changes, percentages, days and times.

One set of rules for the HTML report, the command line's tables and the notebook views: thousands
separators, money rounded half up to cents with its currency code, signed changes (`+1,234.50`),
percentages with one decimal, dates in UTC. These functions only format: the numbers themselves
stay exact `Decimal`s (or integers) everywhere else.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal

MISSING = "–"  # shown for a value that does not exist (a customer who never runs out)
CENT = Decimal("0.01")


def _decimal(value: Decimal | int | float) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def count(value: int | None) -> str:
    """A whole number with thousands separators: `12,345`."""
    return MISSING if value is None else f"{int(value):,}"


def credits(value: Decimal | int | float | None) -> str:
    """Credits as they are kept (at the currency's precision), with thousands separators."""
    if value is None:
        return MISSING
    number = _decimal(value)
    exponent = number.as_tuple().exponent
    places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    return f"{number:,.{places}f}"


def money(value: Decimal | int | float | None, currency: str = "") -> str:
    """Money rounded half up to cents, with its currency code when known: `26.97 USD`."""
    if value is None:
        return MISSING
    rounded = _decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)
    text = f"{rounded:,.2f}"
    return f"{text} {currency}" if currency else text


def signed(text: str, value: Decimal | int | float) -> str:
    """`text` (a formatted magnitude) with an explicit sign: `+1,234.50`, `-3`, `±0`."""
    if value > 0:
        return "+" + text
    if value < 0:
        return text if text.startswith("-") else "-" + text
    return "±" + text.lstrip("-")


def credits_change(value: Decimal | int | float | None) -> str:
    """A change in credits with its sign: `+5,215.31`."""
    return MISSING if value is None else signed(credits(value), value)


def money_change(value: Decimal | int | float | None, currency: str = "") -> str:
    """A change in money with its sign, rounded to cents: `-1.09 USD`."""
    if value is None:
        return MISSING
    rounded = _decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)
    return signed(money(value, currency), rounded)


def count_change(value: int | None) -> str:
    """A change in a count with its sign: `+2`."""
    return MISSING if value is None else signed(count(value), value)


def percent(value: float | Decimal | None, *, sign: bool = False) -> str:
    """A percentage with one decimal (`2.7%`; `+2.7%` with `sign`)."""
    if value is None:
        return MISSING
    number = float(value)
    if number != number:  # NaN: no base to compare with
        return MISSING
    text = f"{abs(number):,.1f}%"
    if not sign:
        return text if number >= 0 else "-" + text
    return signed(text, round(number, 1))


def days(value: float | None) -> str:
    """A shift in days, signed: `-2.4 days` (earlier), `+1.0 day` (later)."""
    if value is None:
        return MISSING
    rounded = round(float(value), 1)
    unit = "day" if abs(rounded) == 1 else "days"
    return signed(f"{abs(rounded):,.1f} {unit}", rounded)


def timestamp(value: datetime | date | None) -> str:
    """A time in UTC to the minute: `2024-01-05 13:20`; a date as `2024-01-05`."""
    if value is None:
        return MISSING
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return value.isoformat()


def label(name: str) -> str:
    """A column name as a header: `customers_run_out` → `customers run out`."""
    return name.replace("_", " ")
