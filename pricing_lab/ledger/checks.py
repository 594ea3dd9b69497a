"""The checks of a replay's inputs (SPEC §5): functions returning every problem with its place.

`inputs.prepare` runs them once, in `replay_problems`, before anything the engines read is built;
a replay with any problem stops there with a `ValidationError` listing them all. The limits are
those of catalog validation and customer files (`pricing_lab.limits`).

Exactness (SPEC §5): the engines compute in 64-bit integers of the replay's smallest unit
(`limits.EXACT_UNITS`). `size_problems` bounds what any balance, amount or cost of one customer
and currency can reach — its grants taking effect, plus its costs (an overdraft's debt, and what
an auto-recharge may top up from it), plus its auto-recharge target — and refuses the replay when
that bound is beyond the limit, naming the customer, currency and limit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal

import polars as pl

from pricing_lab.catalog.model import CreditCurrency, Rollover
from pricing_lab.errors import Problem
from pricing_lab.ledger.model import AutoRecharge, Grant, RecurringEntitlement
from pricing_lab.limits import (
    ENFORCEMENTS,
    EXACT_UNITS,
    GRANT_EXPIRIES,
    INPUT_GRANT_SOURCES,
    INPUT_GRANT_TYPES,
    MAX_DECIMAL_PLACES,
    MAX_INTEGER_DIGITS,
    MAX_PRECISION,
    RESERVED_ID_KINDS,
    TIMESTAMP_END,
    TIMESTAMP_MIN,
    in_supported_range,
)
from pricing_lab.money import decimal_places, quantize, spend_units
from pricing_lab.timeutil import as_utc

MAX_LISTED = 20  # problems listed per kind of consumption problem, then a count


def currency_problems(currencies: Sequence[CreditCurrency]) -> list[Problem]:
    """None at all (credits are counted in a currency), duplicate ids, a precision outside the
    limits, a negative or too precise unit price."""
    if not currencies:
        return [Problem(path="currencies", message="a replay needs at least one credit currency")]
    problems: list[Problem] = []
    seen: set[str] = set()
    for index, currency in enumerate(currencies):
        path = f"currencies[{index}]"
        if currency.id in seen:
            problems.append(Problem(path=path, message=f"duplicate currency id {currency.id!r}"))
        seen.add(currency.id)
        if not 0 <= currency.precision <= MAX_PRECISION:
            problems.append(Problem(path=path, message=f"precision must be 0 to {MAX_PRECISION}"))
        problems += _number_problems(f"{path}.unit_price", currency.unit_price)
        if _negative(currency.unit_price):
            problems.append(Problem(path=path, message="unit_price must not be negative"))
    return problems


def policy_problems(enforcement: str) -> list[Problem]:
    if enforcement in ENFORCEMENTS:
        return []
    allowed = ", ".join(ENFORCEMENTS)
    return [Problem(path="enforcement", message=f"must be one of {allowed}, not {enforcement!r}")]


def grant_problems(grants: Sequence[Grant], precisions: dict[str, int]) -> list[Problem]:
    """Each input grant on its own: currency, amount, type, source, cost basis, dates, and ids
    reserved for the grants the replay makes (duplicate ids: `grant_id_problems`)."""
    amount_messages, number_messages = _by_value(_amount_messages), _by_value(_number_messages)
    problems: list[Problem] = []
    for grant in grants:
        path = f"grants[{grant.grant_id}]"
        for kind in RESERVED_ID_KINDS:
            if grant.grant_id.startswith(f"{grant.customer_id}:{kind}:"):
                problems.append(
                    Problem(
                        path=path,
                        message=f"grant ids starting with '{grant.customer_id}:{kind}:' are "
                        "reserved for the grants the replay creates",
                    )
                )
        if grant.currency_id not in precisions:
            problems.append(Problem(path=path, message=f"unknown currency {grant.currency_id!r}"))
        problems += _at(path, amount_messages(grant.amount, precisions.get(grant.currency_id)))
        if grant.type not in INPUT_GRANT_TYPES:
            allowed = ", ".join(INPUT_GRANT_TYPES)
            problems.append(Problem(path=path, message=f"type must be one of {allowed}"))
        if grant.source not in INPUT_GRANT_SOURCES:
            allowed = ", ".join(INPUT_GRANT_SOURCES)
            problems.append(Problem(path=path, message=f"source must be one of {allowed}"))
        problems += _at(f"{path}.cost_basis", number_messages(grant.cost_basis))
        if _negative(grant.cost_basis):
            problems.append(Problem(path=path, message="cost_basis must not be negative"))
        if grant.expires_at is not None and as_utc(grant.expires_at) <= as_utc(grant.effective_at):
            problems.append(Problem(path=path, message="expires_at must be after effective_at"))
    return problems


def grant_id_problems(input_ids: pl.Series, recurring_ids: pl.Series) -> list[Problem]:
    """Grant ids used twice: among the input's grants, or by an input grant and a recurring
    period or rollover grant the replay makes (the input grant is reported, by its id)."""
    problems: list[Problem] = []
    made = recurring_ids.filter(recurring_ids.is_in(input_ids.implode()))
    taken = pl.concat([made, input_ids])
    again = taken.is_first_distinct().not_().slice(len(taken) - len(input_ids))
    made_ids = set(made.to_list())
    for index in again.arg_true().to_list():
        grant_id = input_ids[index]
        message = (
            f"{grant_id!r} is the id of a recurring or rollover grant the replay makes"
            if grant_id in made_ids
            else f"duplicate grant id {grant_id!r}"
        )
        problems.append(Problem(path=f"grants[{grant_id}]", message=message))
    if recurring_ids.is_duplicated().any():
        problems.append(Problem(path="recurring", message="recurring grant ids collide"))
    return problems


def recurring_problems(
    recurring: Sequence[RecurringEntitlement], precisions: dict[str, int]
) -> list[Problem]:
    amount_messages = _by_value(_amount_messages)
    problems: list[Problem] = []
    for entitlement in recurring:
        key = f"{entitlement.customer_id}:{entitlement.source_id}:{entitlement.currency_id}"
        path = f"recurring[{key}]"
        if entitlement.currency_id not in precisions:
            problems.append(
                Problem(path=path, message=f"unknown currency {entitlement.currency_id!r}")
            )
        problems += _at(
            path, amount_messages(entitlement.amount, precisions.get(entitlement.currency_id))
        )
        if entitlement.cadence not in ("monthly", "yearly"):
            problems.append(Problem(path=path, message="cadence must be monthly or yearly"))
        if entitlement.end is not None and as_utc(entitlement.end) <= as_utc(entitlement.start):
            problems.append(Problem(path=path, message="end must be after start"))
        problems += _rollover_problems(
            f"{path}.rollover", entitlement.rollover, precisions.get(entitlement.currency_id)
        )
    return problems


def _rollover_problems(
    path: str, rollover: Rollover | None, precision: int | None
) -> list[Problem]:
    """SPEC §5: at least one cap; max_amount > 0 at the currency's precision; 0 < max_percent ≤
    100 (the catalog's rule, for entitlements built in Python)."""
    if rollover is None:
        return []
    problems: list[Problem] = []
    if rollover.max_amount is None and rollover.max_percent is None:
        problems.append(Problem(path=path, message="give max_amount, max_percent or both"))
    if rollover.max_amount is not None:
        problems += _amount_problems(f"{path}.max_amount", rollover.max_amount, precision)
    percent = rollover.max_percent
    if percent is not None:
        problems += _number_problems(f"{path}.max_percent", percent)
        if percent.is_finite() and not 0 < percent <= 100:
            problems.append(Problem(path=f"{path}.max_percent", message="must be > 0 and <= 100"))
    return problems


def recharge_problems(
    settings: Sequence[AutoRecharge], currencies: Sequence[CreditCurrency]
) -> list[Problem]:
    """One setting per customer and currency, known currency and expiry, figures within limits
    (the spend arithmetic in the replay's integers included)."""
    by_id = {c.id: c for c in currencies}
    number_messages = _by_value(_number_messages)
    problems: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for setting in settings:
        path = f"auto_recharges[{setting.customer_id}:{setting.currency_id}]"
        key = (setting.customer_id, setting.currency_id)
        if key in seen:
            problems.append(
                Problem(path=path, message="one auto-recharge per customer and currency")
            )
        seen.add(key)
        currency = by_id.get(setting.currency_id)
        if currency is None:
            problems.append(Problem(path=path, message=f"unknown currency {setting.currency_id!r}"))
        if setting.grant_expiry not in GRANT_EXPIRIES:
            problems.append(
                Problem(
                    path=path, message=f"grant_expiry must be one of {', '.join(GRANT_EXPIRIES)}"
                )
            )
        for name in ("threshold", "target", "monthly_spend_limit"):
            value = getattr(setting, name)
            if value is not None:
                problems += _at(f"{path}.{name}", number_messages(value))
        if setting.monthly_spend_limit is not None and _negative(setting.monthly_spend_limit):
            problems.append(Problem(path=path, message="monthly_spend_limit must not be negative"))
        if _negative(setting.target) or _negative(setting.threshold):
            problems.append(Problem(path=path, message="threshold and target must not be negative"))
        limit = setting.monthly_spend_limit
        if currency is not None and limit is not None and limit.is_finite() and limit >= 0:
            unit, limit_units = spend_units(currency.unit_price, currency.precision, limit)
            if max(unit, limit_units or 0) > EXACT_UNITS:
                problems.append(
                    Problem(
                        path=path,
                        message=f"customer {setting.customer_id!r}, currency "
                        f"{setting.currency_id!r}: a monthly_spend_limit of "
                        f"{setting.monthly_spend_limit} is beyond what the replay computes "
                        f"exactly at that unit price ({EXACT_UNITS} units of the spend's last "
                        "decimal place)",
                    )
                )
    return problems


def horizon_problems(start: datetime, until: datetime) -> list[Problem]:
    """The horizon's bounds lie in the supported range (a horizon reaching year 9999 would
    replay thousands of years of periods) and its end is not before its start."""
    problems = [
        Problem(
            path=name,
            message=f"{as_utc(value).isoformat()} is outside the supported range "
            f"{TIMESTAMP_MIN[:10]} to {TIMESTAMP_END[:10]}",
        )
        for name, value in (("start", start), ("until", until))
        if not in_supported_range(as_utc(value))
    ]
    if until < start:
        problems.append(Problem(path="until", message="the horizon ends before it starts"))
    return problems


def consumption_problems(data: pl.DataFrame) -> list[Problem]:
    """Row checks of the consumptions, as normalised by `inputs` (`scaled`: the cost at the
    replay's scale, `factor`: 10^(scale − its currency's precision), `exact` when the input had
    more places than the scale)."""
    too_precise = (pl.col("scaled").to_physical() % pl.col("factor")) != 0
    if "exact" in data.columns:
        too_precise = too_precise | (pl.col("scaled") != pl.col("exact"))
    checks = {
        "event_id, customer_id and timestamp must not be null": pl.col("event_id").is_null()
        | pl.col("customer_id").is_null()
        | pl.col("timestamp").is_null(),
        "feature_id, currency_id and cost must be all set or all null": (
            pl.col("feature_id").is_null().cast(pl.Int8)
            + pl.col("currency_id").is_null().cast(pl.Int8)
            + pl.col("scaled").is_null().cast(pl.Int8)
        ).is_in([1, 2]),
        "unknown currency": pl.col("currency_id").is_not_null() & pl.col("factor").is_null(),
        "cost must not be negative": pl.col("scaled") < 0,
        "cost has more decimal places than its currency's precision": too_precise,
    }
    # One pass to learn which checks fail; rows are listed only for those.
    failing = data.select(
        cond.fill_null(False).any().alias(str(i)) for i, cond in enumerate(checks.values())
    ).row(0)
    problems: list[Problem] = []
    for (message, condition), fails in zip(checks.items(), failing, strict=True):
        if fails:
            bad = data.filter(condition.fill_null(False))["event_id"]
            problems += listed_events(bad, message)
    return problems


def event_problems(ordered: pl.DataFrame) -> list[Problem]:
    """Events whose rows disagree, in consumptions ordered on `order.EVENT_SORT_COLUMNS`: the same
    feature twice in one event, one event id with several customers or timestamps.

    In that order an event's rows are side by side; an event id met again elsewhere (under
    another customer or time) is found by hashing the ids of the runs of equal ids: distinct
    hashes settle it, and only ids whose hashes repeat are compared as text."""
    event, feature = pl.col("event_id"), pl.col("feature_id")
    same_event = event.eq_missing(event.shift(1))
    twice = ordered.filter(same_event & feature.eq_missing(feature.shift(1)))["event_id"]
    problems = listed_events(
        twice.unique(maintain_order=True), "the same feature appears twice in one event"
    )
    runs = ordered.filter(~same_event.fill_null(False))["event_id"]
    hashes = runs.hash()
    if hashes.n_unique() == len(runs):
        return problems
    maybe = runs.filter(hashes.is_duplicated())
    repeated = maybe.filter(maybe.is_duplicated()).unique().sort()
    return problems + listed_events(repeated, "one event id with several customers or timestamps")


def size_problems(
    grants: pl.DataFrame, costs: pl.DataFrame, targets: pl.DataFrame, scale: int
) -> list[Problem]:
    """Customers and currencies whose amounts could go beyond what the replay computes exactly.

    `grants`: customer_id, currency_id, amount of the grants taking effect in the horizon;
    `costs`: customer_id, currency_id, cost of the costs replayed; `targets`: customer_id,
    currency_id, target of the auto-recharge settings (all Decimal at `scale` places). A balance
    is at most the grants' amounts plus an auto-recharge target (a recharge tops up to the
    target at most), at least minus the costs (the overdraft's debt); a recharge at most the
    target plus that debt: the sum of the three bounds every amount and balance."""
    keys = ["customer_id", "currency_id"]
    total = pl.Decimal(38, scale)
    parts = [
        frame.select(*keys, pl.col(name).cast(total).alias("bound"))
        for frame, name in ((grants, "amount"), (costs, "cost"), (targets, "target"))
        if frame.height
    ]
    if not parts:
        return []
    limit = Decimal(EXACT_UNITS).scaleb(-scale)
    over = (
        pl.concat(parts)
        .group_by(keys)
        .agg(pl.col("bound").sum())
        .filter(pl.col("bound") > pl.lit(limit, dtype=total))
        .sort(keys)
    )
    return [
        Problem(
            path=f"customer {customer!r}, currency {currency!r}",
            message=f"its grants, costs and auto-recharge target add up to {bound} credits, "
            f"beyond the {limit} credits this replay computes exactly (64-bit integers at "
            f"{scale} decimal places, the largest precision among its currencies)",
        )
        for customer, currency, bound in over.head(MAX_LISTED).iter_rows()
    ] + (
        [
            Problem(
                path="customers", message=f"… and {over.height - MAX_LISTED} more beyond the limit"
            )
        ]
        if over.height > MAX_LISTED
        else []
    )


def listed_events(event_ids: pl.Series, message: str) -> list[Problem]:
    problems = [
        Problem(path=f"consumptions[event_id={event_id}]", message=message)
        for event_id in event_ids.head(MAX_LISTED).to_list()
    ]
    if len(event_ids) > MAX_LISTED:
        problems.append(
            Problem(
                path="consumptions", message=f"… and {len(event_ids) - MAX_LISTED} more: {message}"
            )
        )
    return problems


def _amount_problems(path: str, amount: Decimal, precision: int | None) -> list[Problem]:
    return _at(path, _amount_messages(amount, precision))


def _number_problems(path: str, value: Decimal) -> list[Problem]:
    return _at(path, _number_messages(value))


def _negative(value: Decimal) -> bool:
    """Below 0 (a NaN, reported as not finite, is not compared: comparing it raises)."""
    return not value.is_nan() and value < 0


def _at(path: str, messages: tuple[str, ...]) -> list[Problem]:
    return [Problem(path=path, message=message) for message in messages]


def _by_value(check: Callable[..., tuple[str, ...]]) -> Callable[..., tuple[str, ...]]:
    """`check` answering each distinct finite value once per wrapped function: thousands of
    customers' records share a few amounts, and the answers depend on the value only (equal
    decimals have the same places and digits). The memo lives as long as the wrapper, which
    the check functions below make per call."""
    answers: dict[tuple[object, ...], tuple[str, ...]] = {}

    def checked(value: Decimal, *rest: object) -> tuple[str, ...]:
        if not value.is_finite():  # a signalling NaN cannot be hashed
            return check(value, *rest)
        key = (value, *rest)
        found = answers.get(key)
        if found is None:
            found = answers[key] = check(value, *rest)
        return found

    return checked


def _amount_messages(amount: Decimal, precision: int | None) -> tuple[str, ...]:
    if not amount.is_finite() or amount <= 0:
        return ("amount must be greater than 0",)
    messages = _number_messages(amount)
    if not messages and precision is not None and amount != quantize(amount, precision):
        return (f"amount has more than {precision} decimal places",)
    return messages


def _number_messages(value: Decimal) -> tuple[str, ...]:
    """A figure the replay's tables cannot hold: not finite, too many places or digits."""
    if not value.is_finite():
        return ("must be a finite number",)
    if decimal_places(value) > MAX_DECIMAL_PLACES:
        return (f"at most {MAX_DECIMAL_PLACES} decimal places",)
    if abs(value) >= Decimal(10) ** MAX_INTEGER_DIGITS:
        return (f"must be less than 10^{MAX_INTEGER_DIGITS}",)
    return ()
