"""The limits every input is held to, in one place: catalog, customer files and the replay.

A value the catalog or a customer file accepts is one the replay accepts, and the other way round.
"""

from __future__ import annotations

from datetime import UTC, datetime

# Decimal places of a credit currency (its `precision`, SPEC §2): the ledger keeps amounts at it.
MAX_PRECISION = 12
# Amounts, prices and cost bases are stored as DECIMAL(38, 12): at most 12 decimal places and
# 26 integer digits.
MAX_DECIMAL_PLACES = 12
MAX_INTEGER_DIGITS = 26

# What an input grant can be (SPEC §5). OVERDRAFT grants, and the grants the replay makes
# (auto-recharge, overdraft), are never input: their ids are reserved (see `RESERVED_ID_KINDS`).
# A grant recorded by an auto-recharge outside the replay may be given as input with source
# `auto_recharge` (a customer's history), under an id of its own.
INPUT_GRANT_TYPES: tuple[str, ...] = ("PAID", "PROMOTIONAL", "RECURRING")
INPUT_GRANT_SOURCES: tuple[str, ...] = ("manual", "plan", "addon", "top_up", "auto_recharge")
# The id kinds the replay makes: `{customer}:{kind}:{currency}…` (input ids may not start so).
RESERVED_ID_KINDS: tuple[str, ...] = ("auto_recharge", "overdraft")
GRANT_EXPIRIES: tuple[str, ...] = ("none", "1_month", "1_year")
ENFORCEMENTS: tuple[str, ...] = ("overdraft", "block")

# Instants a replay can work with: every date the ledger derives from an event (periods, a year's
# expiry, "ending soon" warnings, the horizon's end) stays a valid date. Event timestamps outside
# [TIMESTAMP_MIN, TIMESTAMP_END), such as the 0001-01-01 and 9999-12-31 placeholders of some
# exports, are `bad_timestamp`; a horizon must lie within [TIMESTAMP_MIN, TIMESTAMP_END].
TIMESTAMP_MIN = "1900-01-01 00:00:00"
TIMESTAMP_END = "2200-01-01 00:00:00"


def in_supported_range(instant: datetime) -> bool:
    """Whether a horizon bound (an aware instant) lies in [TIMESTAMP_MIN, TIMESTAMP_END]."""
    low, high = (
        datetime.fromisoformat(t).replace(tzinfo=UTC) for t in (TIMESTAMP_MIN, TIMESTAMP_END)
    )
    return low <= instant <= high


# The replay computes in 64-bit integers of the smallest unit of the replay's scale (the largest
# precision among its currencies): every amount and balance of one customer and currency, and
# every cost, must stay within ±EXACT_UNITS of that unit. The replay refuses, before it starts,
# an input that could go beyond (naming the customer, currency and limit), never wraps.
EXACT_UNITS = 2**63 - 1
