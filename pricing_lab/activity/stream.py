"""The credit activity stream of SPEC §6: what a credit platform would send, derived from a ledger.

`activity(ledger, grants, auto_recharges, currencies, …)` is a pure function over a replay's
outputs: every kind of `KINDS` comes from the ledger's entries (in ledger order), the grants'
`expires_at` (`grant.ending_soon`) and the auto-recharge settings (`spend_limit_reached`). It
works on columns: amounts become int64 units at the ledger's scale (read from the Decimal128
buffers, no Python objects), each kind is one vectorised filter, and only the few events of one
kind are sorted into the stream's order at the end. Rules chosen where SPEC is silent are in
docs/activity.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, Decimal

import numpy as np
import polars as pl
import pyarrow as pa

from pricing_lab.activity import passes
from pricing_lab.catalog.model import CreditCurrency
from pricing_lab.errors import Problem, ValidationError
from pricing_lab.ledger.api import ReplayResult
from pricing_lab.ledger.frames import TIMESTAMP, decimal_series
from pricing_lab.ledger.model import AutoRecharge, ReplayInput
from pricing_lab.limits import EXACT_UNITS, MAX_DECIMAL_PLACES
from pricing_lab.money import decimal_places, quantum
from pricing_lab.timeutil import DAY_US, as_utc, to_micros

# SPEC §6's kinds, in SPEC §6's order: at one entry (or one instant without an entry), events of
# several kinds come in this order.
KINDS: tuple[str, ...] = (
    "credits.low_balance",
    "credits.depleted",
    "credits.overdraft_started",
    "credits.overdraft_settled",
    "grant.granted",
    "grant.expired",
    "grant.voided",
    "grant.rolled_over",
    "grant.emptied",
    "grant.ending_soon",
    "auto_recharge.issued",
    "auto_recharge.spend_limit_reached",
)
_RANK = {kind: rank for rank, kind in enumerate(KINDS)}
_ENTRY_KINDS = {
    "GRANTED": "grant.granted",
    "EXPIRED": "grant.expired",
    "VOIDED": "grant.voided",
    "ROLLED_OVER": "grant.rolled_over",
}
_TRANSFERS = ("CONSUMPTION_TRANSFER_SOURCE", "CONSUMPTION_TRANSFER_TARGET")
DEFAULT_ENDING_SOON_DAYS = 7

# Thresholds per currency id: the balances below which `credits.low_balance` is sent.
Thresholds = Mapping[str, Sequence[Decimal]]


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityOptions:
    """How a replay derives its activity stream: low-balance `thresholds` per currency id (none
    by default: no `credits.low_balance` unless asked) and `ending_soon_days` (7)."""

    thresholds: Mapping[str, tuple[Decimal, ...]] = field(default_factory=dict)
    ending_soon_days: int = DEFAULT_ENDING_SOON_DAYS


DEFAULT_ACTIVITY = ActivityOptions()


def check_options(options: ActivityOptions, currencies: Iterable[CreditCurrency]) -> None:
    """Raise `ValidationError` listing every problem of `options` (unknown currencies, thresholds
    that are not numbers, days below 1): what a replay checks before it starts."""
    chosen = {c: tuple(Decimal(str(t)) for t in ts) for c, ts in options.thresholds.items()}
    _check(chosen, options.ending_soon_days, tuple(currencies))


def replay_activity(
    result: ReplayResult, replay_input: ReplayInput, options: ActivityOptions | None = None
) -> pl.DataFrame:
    """The activity stream of a replay's `result` (its ledger and the grants it used) with the
    auto-recharge settings and currencies of its `replay_input` (see `activity`)."""
    chosen = options if options is not None else DEFAULT_ACTIVITY
    return activity(
        result.ledger,
        result.grants,
        replay_input.auto_recharges,
        replay_input.currencies,
        thresholds=chosen.thresholds,
        ending_soon_days=chosen.ending_soon_days,
        scenario=result.scenario,
        until=result.until,
    )


def merged_activity(parts: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """The streams of replays of disjoint, ascending customer ranges as one stream: at one
    instant a lower range's customers come first, so a stable sort on time gives SPEC §6's order;
    `activity_id` is numbered again."""
    filled = [p for p in parts if p.height] or list(parts[:1])
    merged = pl.concat(filled, how="vertical_relaxed").sort("timestamp", maintain_order=True)
    return merged.with_columns(
        pl.int_range(1, merged.height + 1, dtype=pl.Int64, eager=True).alias("activity_id")
    )


def activity_schema(scale: int, threshold_scale: int, money_scale: int) -> pl.Schema:
    """The activity stream's columns (SPEC §6): credits at `scale` places, thresholds at
    `threshold_scale`, the money of `auto_recharge.issued` at `money_scale`."""
    columns: dict[str, pl.DataType] = {
        "activity_id": pl.Int64(),
        "timestamp": TIMESTAMP,
        "customer_id": pl.String(),
        "currency_id": pl.String(),
        "kind": pl.String(),
        "grant_id": pl.String(),
        "amount": pl.Decimal(38, scale),
        "balance": pl.Decimal(38, scale),
        "threshold": pl.Decimal(38, threshold_scale),
        "money": pl.Decimal(38, money_scale),
        "scenario": pl.String(),
    }
    return pl.Schema(columns)


def activity(
    ledger: pl.DataFrame,
    grants: pl.DataFrame,
    auto_recharges: Iterable[AutoRecharge],
    currencies: Iterable[CreditCurrency],
    *,
    thresholds: Thresholds | None = None,
    ending_soon_days: int = DEFAULT_ENDING_SOON_DAYS,
    scenario: str | None = None,
    until: datetime | None = None,
) -> pl.DataFrame:
    """The credit activity stream (SPEC §6) of one replay, in SPEC §6's order.

    `ledger`: the replay's ledger (`frames.ledger_schema`, in ledger order). `grants`: its grants
    (at least `grant_id` and `expires_at`: a replay result's `grants`).
    `thresholds`: per currency id, the low-balance thresholds (none: no `credits.low_balance`).
    `ending_soon_days`: how long before `expires_at` `grant.ending_soon` is sent. `scenario`: the
    name written in every row (default: the ledger's). `until`: the replay's horizon end (default
    one microsecond after the last entry); no `grant.ending_soon` at or after it.

    Bad thresholds or days raise `ValidationError` listing every problem.
    """
    currency_list = tuple(currencies)
    settings = tuple(auto_recharges)
    chosen = {cid: tuple(Decimal(str(t)) for t in ts) for cid, ts in (thresholds or {}).items()}
    _check(chosen, ending_soon_days, currency_list)
    scale = ledger.schema["amount"].scale if "amount" in ledger.schema else 0  # type: ignore[attr-defined]
    if scenario is None:
        scenario = str(ledger["scenario"][0]) if ledger.height else "base"
    threshold_scale = max(
        [scale]
        + [decimal_places(t) for ts in chosen.values() for t in ts]
        + [decimal_places(s.threshold) for s in settings]
    )
    money_scale = scale + max((decimal_places(c.unit_price) for c in currency_list), default=0)
    schema = activity_schema(scale, min(threshold_scale, 38), min(money_scale, 38))
    if ledger.is_empty():
        return pl.DataFrame(schema=schema)
    until_us = _last_instant(ledger) + 1 if until is None else to_micros(as_utc(until))
    walked = _walk(ledger, grants, ending_soon_days, until_us)
    rows = walked.rows
    pieces = [
        *_low_balance(rows, chosen, scale, threshold_scale),
        _depleted(rows),
        *_grant_kinds(rows),
        _recharges_issued(rows, currency_list, scale),
        _spend_limit_reached(walked, settings, currency_list, scale, threshold_scale),
        _ending_soon(walked),
    ]
    found = [p.select(_PIECE) for p in pieces if p.height]
    if not found:
        return pl.DataFrame(schema=schema)
    events = pl.concat(found, how="vertical")
    ordered = events.sort(
        # Events caused by no entry share a position when no entry lies between them: time and
        # customer order them.
        ["position", "at", "customer_id", "rank", "currency_id", "threshold", "grant_id"],
        descending=[False, False, False, False, False, True, False],
        nulls_last=True,
        maintain_order=True,
    )
    return _stream(ordered, scale, schema, scenario)


def activity_counts(activity_table: pl.DataFrame) -> pl.DataFrame:
    """How many events of each kind each customer would receive, per scenario: `scenario`,
    `customer_id`, `kind`, `events` (kinds in SPEC §6 order, kinds a customer gets none of left
    out)."""
    return (
        activity_table.group_by("scenario", "customer_id", "kind")
        .agg(pl.len().cast(pl.Int64).alias("events"))
        .with_columns(pl.col("kind").replace_strict(_RANK, return_dtype=pl.Int64).alias("__rank"))
        .sort("scenario", "customer_id", "__rank")
        .drop("__rank")
    )


# ---------------------------------------------------------------------------------------------
# The ledger as columns.

_PIECE = [
    "position",
    "rank",
    "at",
    "customer_id",
    "currency_id",
    "kind",
    "grant_id",
    "amount",
    "balance",
    "threshold",
    "money",
]


def _check(
    thresholds: Mapping[str, tuple[Decimal, ...]],
    days: int,
    currencies: Sequence[CreditCurrency],
) -> None:
    problems: list[Problem] = []
    known = {c.id for c in currencies}
    # The ledger's scale: its amounts are at the largest precision among the replay's currencies.
    scale = max((c.precision for c in currencies), default=0)
    for currency_id, values in thresholds.items():
        if currency_id not in known:
            problems.append(Problem(path=f"thresholds[{currency_id}]", message="unknown currency"))
        for value in values:
            if not value.is_finite():
                message = f"not a number: {value}"
            elif decimal_places(value) > MAX_DECIMAL_PLACES:
                message = f"{value} has more than {MAX_DECIMAL_PLACES} decimal places"
            elif abs(value).scaleb(places := max(scale, decimal_places(value))) > EXACT_UNITS:
                # Balances are 64-bit units of the ledger's scale (limits.EXACT_UNITS): no
                # balance reaches such a threshold, and it could not be written beside them.
                message = (
                    f"{value} is beyond what the replay computes exactly ({EXACT_UNITS} units "
                    f"of {Decimal(1).scaleb(-places)} credits)"
                )
            else:
                continue
            problems.append(Problem(path=f"thresholds[{currency_id}]", message=message))
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        problems.append(
            Problem(path="ending_soon_days", message=f"must be a whole number ≥ 1, got {days!r}")
        )
    if problems:
        raise ValidationError(problems, source="activity")


def _unscaled(series: pl.Series) -> np.ndarray:
    """int64 unscaled values of a Decimal(38, s) column, from its decimal128 buffer (a value
    beyond int64 raises: the ledger's engines work in int64 units too)."""
    array = series.rechunk().to_arrow()
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    words = np.frombuffer(array.buffers()[1], dtype=np.int64)
    pairs = words[2 * array.offset : 2 * (array.offset + len(array))].reshape(-1, 2)
    low = pairs[:, 0]
    if not np.array_equal(pairs[:, 1], low >> 63):
        raise ValueError(f"{series.name}: a value does not fit in 64 bits")
    if array.null_count:
        raise ValueError(f"{series.name}: null amounts in a ledger")
    return low


@dataclass(frozen=True, slots=True, kw_only=True)
class _Walked:
    """The ledger as the kinds read it: `rows` (Polars: `row`, `at` µs, ids, `entry_type`,
    `amt` / `bal` / `before` in units at the ledger's scale, `found` flags of `passes.walk`),
    the per-entry grant codes and facts the compiled passes take with the customer and currency
    codes of each grant, and the warnings of `grant.ending_soon` with the grant's remaining and
    the balance at their instant."""

    rows: pl.DataFrame
    at: np.ndarray
    grant: np.ndarray
    customer_of: np.ndarray
    currency_of: np.ndarray
    facts: np.ndarray
    warnings: pl.DataFrame


def _last_instant(ledger: pl.DataFrame) -> int:
    return to_micros(ledger["timestamp"][-1])


def _codes(values: pl.Series) -> np.ndarray:
    """Dense codes 0, 1, … of a string column without nulls (its own categories, nothing
    global), as the categories' uint32."""
    return values.cast(pl.Categorical(pl.Categories.random())).to_physical().to_numpy()


def _walk(ledger: pl.DataFrame, grants: pl.DataFrame, days: int, until_us: int) -> _Walked:
    amounts = _unscaled(ledger["amount"])
    balances = _unscaled(ledger["balance_after"])
    at = ledger["timestamp"].dt.epoch("us").to_numpy()
    grant = _codes(ledger["grant_id"])
    n_grants = int(grant.max()) + 1
    # Each grant belongs to one customer and currency: their codes come from its first entry.
    owners = ledger.select("grant_id", "customer_id", "currency_id")[
        pl.Series(passes.first_rows(grant, n_grants))
    ]
    customer_of = _codes(owners["customer_id"])
    currency_ids = sorted(set(owners["currency_id"]))
    currency_of = (
        owners["currency_id"]
        .replace_strict({c: i for i, c in enumerate(currency_ids)}, return_dtype=pl.Int64)
        .to_numpy()
    )
    group_of = customer_of.astype(np.int64) * len(currency_ids) + currency_of
    entry_type = pl.col("entry_type")
    facts = (
        ledger.select(
            (entry_type == "CONSUMED").cast(pl.Int8) * passes.CONSUMED
            + (entry_type == "CONSUMPTION_TRANSFER_SOURCE").cast(pl.Int8) * passes.TRANSFER_SOURCE
            + (pl.col("grant_type") == "OVERDRAFT").cast(pl.Int8) * passes.OVERDRAFT
            + ((entry_type == "GRANTED") & (pl.col("grant_source") == "auto_recharge")).cast(
                pl.Int8
            )
            * passes.RECHARGE_GRANTED
        )
        .to_series()
        .to_numpy()
    )
    warnings = _warnings(grants, owners.with_row_index("code"), days, until_us)
    warn_grant = warnings["code"].to_numpy().astype(np.uint32)
    found, warn_remaining, warn_balance = passes.walk(
        at,
        grant,
        group_of,
        amounts,
        balances,
        facts,
        n_grants,
        max(int(group_of.max()) + 1, 1),
        warnings["__warn"].to_numpy(),
        warn_grant,
        group_of[warn_grant],
    )
    rows = pl.DataFrame(
        {
            "row": pl.int_range(ledger.height, dtype=pl.Int64, eager=True),
            "at": at,
            "customer_id": ledger["customer_id"],
            "currency_id": ledger["currency_id"],
            "entry_type": ledger["entry_type"],
            "grant_id": ledger["grant_id"],
            "grant_source": ledger["grant_source"],
            "event_id": ledger["event_id"],
            "amt": amounts,
            "bal": balances,
            "before": balances - amounts,
            "found": found,
        }
    )
    return _Walked(
        rows=rows,
        at=at,
        grant=grant,
        customer_of=customer_of,
        currency_of=currency_of,
        facts=facts,
        warnings=warnings.with_columns(
            pl.Series("remaining", warn_remaining), pl.Series("balance", warn_balance)
        ),
    )


def _warnings(grants: pl.DataFrame, owners: pl.DataFrame, days: int, until_us: int) -> pl.DataFrame:
    """The instants of `grant.ending_soon` before `until_us`, for grants with entries in the
    ledger (a grant without one never took effect), sorted by instant."""
    empty = owners.clear().with_columns(pl.lit(0, dtype=pl.Int64).alias("__warn"))
    if "expires_at" not in grants.columns or grants.is_empty():
        return empty
    warn = (
        grants.filter(pl.col("expires_at").is_not_null())
        .select(
            "grant_id",
            (pl.col("expires_at").dt.epoch("us") - days * DAY_US).alias("__warn"),
        )
        .filter(pl.col("__warn") < until_us)
    )
    return owners.join(warn, on="grant_id", how="inner").sort("__warn", "code")


def _piece(rows: pl.DataFrame, kind: str, **columns: pl.Expr) -> pl.DataFrame:
    """Events of `kind` caused by the entries `rows`: placed at their entry, `amount` the entry's
    amount and `balance` its balance after unless `columns` says otherwise."""
    base: dict[str, pl.Expr] = {
        "position": pl.col("row") * 2,
        "rank": pl.lit(_RANK[kind], dtype=pl.Int64),
        "at": pl.col("at"),
        "customer_id": pl.col("customer_id"),
        "currency_id": pl.col("currency_id"),
        "kind": pl.lit(kind),
        "grant_id": pl.col("grant_id"),
        "amount": pl.col("amt"),
        "balance": pl.col("bal"),
        "threshold": pl.lit(None, dtype=pl.Int64),
        "money": pl.lit(None, dtype=pl.Int64),
    }
    base.update(columns)
    return rows.select(**base)


def _ceil_units(value: Decimal, scale: int) -> int:
    """The smallest multiple of 10^-scale at or above `value`, in units of 10^-scale."""
    return int((value / quantum(scale)).to_integral_value(rounding=ROUND_CEILING))


# ---------------------------------------------------------------------------------------------
# One function per kind (or group of kinds).


def _low_balance(
    rows: pl.DataFrame,
    thresholds: Mapping[str, tuple[Decimal, ...]],
    scale: int,
    threshold_scale: int,
) -> list[pl.DataFrame]:
    """`credits.low_balance`: an entry takes the balance from at or above a threshold to below it.

    A transfer pair (debt settled from a new grant) leaves the balance as it was: its entries
    cross no threshold. Balances are multiples of the unit, so `b < t` is `b < ceil(t)` in units.
    """
    moving = ~pl.col("entry_type").is_in(_TRANSFERS)
    pieces = []
    for currency_id, values in sorted(thresholds.items()):
        for value in sorted(set(values)):
            units = _ceil_units(value, scale)
            # One pass over the columns, integers first: only the crossing rows are copied.
            crossed = rows.filter(
                (pl.col("bal") < units)
                & (pl.col("before") >= units)
                & (pl.col("currency_id") == currency_id)
                & moving
            )
            pieces.append(
                _piece(
                    crossed,
                    "credits.low_balance",
                    grant_id=pl.lit(None, dtype=pl.String),
                    threshold=pl.lit(_threshold_units(value, threshold_scale), dtype=pl.Int64),
                )
            )
    return pieces


def _threshold_units(value: Decimal, threshold_scale: int) -> int:
    """A threshold as units at the stream's threshold scale (which has room for its places)."""
    return int(value.scaleb(threshold_scale))


def _depleted(rows: pl.DataFrame) -> pl.DataFrame:
    """`credits.depleted`: a CONSUMED entry takes the balance from above 0 to 0 or below."""
    hit = rows.filter(
        (pl.col("entry_type") == "CONSUMED") & (pl.col("before") > 0) & (pl.col("bal") <= 0)
    )
    return _piece(hit, "credits.depleted", grant_id=pl.lit(None, dtype=pl.String))


def _grant_kinds(rows: pl.DataFrame) -> list[pl.DataFrame]:
    """Overdraft started / settled, one event per GRANTED, EXPIRED, VOIDED, ROLLED_OVER entry, and
    `grant.emptied` (a grant other than the overdraft reaching 0 by consumption or transfer), the
    walk's flags telling which entries did what."""

    def flagged(bit: int) -> pl.Expr:
        return (pl.col("found") & bit) != 0

    pieces = [
        _piece(rows.filter(flagged(passes.OVERDRAFT_STARTED)), "credits.overdraft_started"),
        _piece(rows.filter(flagged(passes.OVERDRAFT_SETTLED)), "credits.overdraft_settled"),
    ]
    for entry_type, kind in _ENTRY_KINDS.items():
        pieces.append(_piece(rows.filter(pl.col("entry_type") == entry_type), kind))
    pieces.append(_piece(rows.filter(flagged(passes.EMPTIED)), "grant.emptied"))
    return pieces


def _unit_prices(currencies: Sequence[CreditCurrency], money_digits: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "currency_id": [c.id for c in currencies],
            "__price": [int(c.unit_price.scaleb(money_digits)) for c in currencies],
        },
        schema={"currency_id": pl.String, "__price": pl.Int64},
    )


def _recharges_issued(
    rows: pl.DataFrame, currencies: Sequence[CreditCurrency], scale: int
) -> pl.DataFrame:
    """`auto_recharge.issued`: each auto-recharge grant's GRANTED entry, with its money (credits ×
    the currency's unit price; units at the ledger scale + the unit prices' places)."""
    digits = max((decimal_places(c.unit_price) for c in currencies), default=0)
    issued = rows.filter(
        (pl.col("entry_type") == "GRANTED") & (pl.col("grant_source") == "auto_recharge")
    ).join(_unit_prices(currencies, digits), on="currency_id", how="left", maintain_order="left")
    return _piece(
        issued,
        "auto_recharge.issued",
        money=(pl.col("amt").cast(pl.Int128) * pl.col("__price")).cast(pl.Int64, strict=True),
    )


def _spend_limit_reached(
    walked: _Walked,
    settings: Sequence[AutoRecharge],
    currencies: Sequence[CreditCurrency],
    scale: int,
    threshold_scale: int,
) -> pl.DataFrame:
    """`auto_recharge.spend_limit_reached`: after a consumed event leaves the balance below the
    threshold, the monthly limit cut the recharge (it is issued short of the target) or skipped
    it; once per customer, currency and calendar month (the first time).

    Without the limit the recharge brings the balance to the target or above, so the limit was
    at work exactly when the balance after the event and its recharge is still below the target.
    The event is placed at the recharge's GRANTED entry when one was issued, else at the event's
    last CONSUMED entry in that currency; `amount` is the credits the limit held back.
    """
    limited = [s for s in settings if s.monthly_spend_limit is not None]
    if not limited:
        return pl.DataFrame()
    precision = {c.id: c.precision for c in currencies}
    setting_frame = pl.DataFrame(
        {
            "customer_id": [s.customer_id for s in limited],
            "currency_id": [s.currency_id for s in limited],
            "__threshold": [_ceil_units(s.threshold, scale) for s in limited],
            "__target": [_ceil_units(s.target, scale) for s in limited],
            "__setting": list(range(len(limited))),
        },
        schema={
            "customer_id": pl.String,
            "currency_id": pl.String,
            "__threshold": pl.Int64,
            "__target": pl.Int64,
            "__setting": pl.Int64,
        },
    )
    highest = int(setting_frame["__threshold"].max())  # type: ignore[arg-type]
    rows = walked.rows
    # Only the columns the event is made of are copied, for the CONSUMED entries below a
    # threshold.
    low = (
        rows.lazy()
        .filter((pl.col("bal") < highest) & (pl.col("entry_type") == "CONSUMED"))
        .select("row", "at", "customer_id", "currency_id", "bal")
        .join(
            setting_frame.lazy(),
            on=["customer_id", "currency_id"],
            how="inner",
            maintain_order="left",
        )
        .filter(pl.col("bal") < pl.col("__threshold"))
        .collect()
    )
    if low.is_empty():
        return pl.DataFrame()
    # Whether each entry is a CONSUMED entry of the same event as the CONSUMED entry before it
    # (comparing the event ids with those one row up, without a shifted copy of them).
    consumed = (walked.facts & passes.CONSUMED) != 0
    event_ids = rows["event_id"]
    same_event = np.zeros(rows.height, dtype=np.bool_)
    if rows.height > 1:
        same_id = (event_ids.slice(1) == event_ids.slice(0, rows.height - 1)).fill_null(False)
        same_event[1:] = same_id.to_numpy() & consumed[1:] & consumed[:-1]
    last, recharge = passes.after_events(
        low["row"].to_numpy(),
        walked.at,
        walked.grant,
        walked.customer_of,
        walked.currency_of,
        walked.facts,
        same_event,
    )
    issued = np.where(recharge >= 0, rows["amt"].to_numpy()[np.maximum(recharge, 0)], 0)
    key = ["customer_id", "currency_id", "__month"]
    short = (
        low.with_columns(
            pl.Series("__recharge", recharge),
            pl.Series("__issued", issued),
            pl.Series("__last", last),
        )
        .filter(pl.col("__last") & (pl.col("bal") + pl.col("__issued") < pl.col("__target")))
        .with_columns(pl.col("at").cast(TIMESTAMP).dt.truncate("1mo").alias("__month"))
    )
    first = short.filter(pl.int_range(pl.len()).over(key) == 0)
    held_back = [
        _held_back(limited[s].target, bal, got, scale, precision[limited[s].currency_id])
        for s, bal, got in first.select("__setting", "bal", "__issued").iter_rows()
    ]
    grant_ids = rows["grant_id"]
    recharged = first["__recharge"]
    return _piece(
        first.with_columns(
            pl.Series("__held", held_back, dtype=pl.Int64),
            pl.Series(
                "__grant",
                [None if r < 0 else grant_ids[r] for r in recharged],
                dtype=pl.String,
            ),
            pl.Series(
                "__threshold_units",
                [
                    _threshold_units(limited[s].threshold, threshold_scale)
                    for s in first["__setting"]
                ],
                dtype=pl.Int64,
            ),
        ),
        "auto_recharge.spend_limit_reached",
        position=pl.when(pl.col("__recharge") >= 0)
        .then(pl.col("__recharge"))
        .otherwise(pl.col("row"))
        * 2,
        grant_id=pl.col("__grant"),
        amount=pl.col("__held"),
        balance=pl.col("bal") + pl.col("__issued"),
        threshold=pl.col("__threshold_units"),
    )


def _held_back(target: Decimal, balance: int, issued: int, scale: int, precision: int) -> int:
    """Credits (units at `scale`) the limit held back: the full recharge (target − balance,
    rounded up to the currency's precision) minus what was issued."""
    wanted = (target - Decimal(balance).scaleb(-scale)).quantize(
        quantum(precision), rounding=ROUND_CEILING
    )
    return int(wanted.scaleb(scale)) - issued


def _ending_soon(walked: _Walked) -> pl.DataFrame:
    """`grant.ending_soon`: `days` × 24 h before a grant's `expires_at`, when the grant is in force
    then with credits left after every entry at that instant. Caused by no entry: it comes after
    the customer's entries at that instant."""
    found = walked.warnings.filter(pl.col("remaining") > 0)
    if found.is_empty():
        return pl.DataFrame()
    position = _after_instant(walked.rows, found)
    return found.select(
        pl.Series("position", position, dtype=pl.Int64),
        pl.lit(_RANK["grant.ending_soon"], dtype=pl.Int64).alias("rank"),
        pl.col("__warn").alias("at"),
        "customer_id",
        "currency_id",
        pl.lit("grant.ending_soon").alias("kind"),
        "grant_id",
        pl.col("remaining").alias("amount"),
        "balance",
        pl.lit(None, dtype=pl.Int64).alias("threshold"),
        pl.lit(None, dtype=pl.Int64).alias("money"),
    )


def _after_instant(rows: pl.DataFrame, found: pl.DataFrame) -> np.ndarray:
    """Sort positions (2 × row + 1) just after the last ledger entry that comes before or at
    (instant, customer) in ledger order: after every entry before the instant, and at the
    instant after the entries of customers up to this one."""
    times = rows["at"].to_numpy()
    instants = found["__warn"].to_numpy()
    after = np.searchsorted(times, instants, side="right")
    tied = np.flatnonzero((after > 0) & (times[np.maximum(after - 1, 0)] == instants))
    if len(tied):
        customers = found["customer_id"]
        first = np.searchsorted(times, instants[tied], side="left")
        for i, lo, hi in zip(tied, first, after[tied], strict=True):
            ids = rows["customer_id"].slice(int(lo), int(hi - lo))
            after[i] = lo + int((ids <= customers[int(i)]).sum())
    return (2 * after.astype(np.int64) - 1).astype(np.int64)


def _stream(ordered: pl.DataFrame, scale: int, schema: pl.Schema, scenario: str) -> pl.DataFrame:
    """The sorted events as the stream's columns: ids 1, 2, …; units back to decimals."""
    threshold_scale = schema["threshold"].scale  # type: ignore[attr-defined]
    money_scale = schema["money"].scale  # type: ignore[attr-defined]
    count = ordered.height
    columns = [
        pl.int_range(1, count + 1, dtype=pl.Int64, eager=True).alias("activity_id"),
        ordered["at"].cast(TIMESTAMP).alias("timestamp"),
        ordered["customer_id"],
        ordered["currency_id"],
        ordered["kind"],
        ordered["grant_id"],
        _decimals("amount", ordered["amount"], scale, scale),
        _decimals("balance", ordered["balance"], scale, scale),
        _decimals("threshold", ordered["threshold"], threshold_scale, threshold_scale),
        _decimals("money", ordered["money"], money_scale, money_scale),
        pl.Series("scenario", [scenario] * count, dtype=pl.String),
    ]
    return pl.DataFrame(columns).cast(schema)


def _decimals(name: str, units: pl.Series, scale: int, target_scale: int) -> pl.Series:
    """A Decimal(38, target_scale) column from int64 units at `scale` (nulls kept)."""
    if units.null_count() == len(units):
        return pl.Series(name, [None] * len(units), dtype=pl.Decimal(38, target_scale))
    values = decimal_series(name, units.fill_null(0).to_numpy(), scale)
    if scale != target_scale:
        values = values.cast(pl.Decimal(38, target_scale))
    if not units.null_count():
        return values
    return pl.select(pl.when(units.is_not_null()).then(values).alias(name)).to_series()
