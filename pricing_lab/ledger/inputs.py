"""Checks and normalises a `ReplayInput` for both engines: every problem listed, horizon resolved.

The engines share this step so that they see exactly the same inputs: validated grants (explicit
and recurring), the horizon `[start, until)`, and the consumptions as one long table in integer
minor units (`CONSUMPTION_SCHEMA`). The ledger rules themselves live in the engines.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import polars as pl

from pricing_lab.catalog.model import CreditCurrency
from pricing_lab.errors import Problem, ValidationError
from pricing_lab.ledger.grant_table import explicit_grant_table, grant_records
from pricing_lab.ledger.model import (
    ENFORCEMENTS,
    GRANT_EXPIRIES,
    GRANT_SOURCES,
    GRANT_TYPES,
    Consumption,
    CostedConsumptions,
    FeatureCost,
    Grant,
    ReplayInput,
)
from pricing_lab.ledger.order import EVENT_SORT_COLUMNS
from pricing_lab.ledger.recurring import recurring_grant_table
from pricing_lab.money import decimal_places, from_minor_units
from pricing_lab.timeutil import EPOCH, MICROSECOND, as_utc

MAX_PRECISION = 9  # keeps every amount in int64 minor units with room to spare
MAX_LISTED = 20  # problems listed per kind of consumption problem

# The consumptions as both engines read them: one row per event and matched feature; an event with
# no cost has one row with null feature_id / currency_id / cost_units. cost_units is the cost in
# minor units of its currency (cost × 10^precision, exact).
_CONSUMPTION_COLUMNS: dict[str, pl.DataType] = {
    "event_id": pl.String(),
    "customer_id": pl.String(),
    "timestamp": pl.Datetime("us", "UTC"),
    "feature_id": pl.String(),
    "currency_id": pl.String(),
    "cost_units": pl.Int64(),
}
CONSUMPTION_SCHEMA = pl.Schema(_CONSUMPTION_COLUMNS)


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedReplay:
    """A validated replay input: what both engines start from."""

    source: ReplayInput
    currencies: tuple[CreditCurrency, ...]  # sorted by id
    scale: int  # decimal places of the output amount columns: the largest currency precision
    start: datetime
    until: datetime
    # Explicit and recurring grants, every one of them (engines apply the horizon), as one table
    # (`grant_table.grant_table_schema`): the input's grants first, in input order.
    grant_table: pl.DataFrame
    consumptions: pl.DataFrame  # CONSUMPTION_SCHEMA, in order.EVENT_SORT_COLUMNS order
    # Whether `consumptions` keeps the input's row order (as costing delivers it): only then can
    # a replay of the same events take over its checked event columns (`prepare(like=…)`).
    in_input_order: bool = False
    # Stands for the event columns of `consumptions` (ids, customers, timestamps, features and
    # their row order): a replay that took them over from an earlier one (`prepare(like=…)`)
    # holds the earlier one's key, so engines may reuse what they derived from those columns.
    events_key: object = field(default_factory=object, compare=False, repr=False)

    def precision(self, currency_id: str) -> int:
        return next(c.precision for c in self.currencies if c.id == currency_id)

    @property
    def grants(self) -> tuple[Grant, ...]:
        """Every grant as a record (the input's, then the recurring ones); built on each call."""
        explicit = tuple(self.source.grants)
        return explicit + grant_records(self.grant_table.slice(len(explicit)))

    @property
    def money_places(self) -> int:
        """The most decimal places of any cost basis or unit price (normalised)."""
        basis_type = self.grant_table.schema["cost_basis"]
        assert isinstance(basis_type, pl.Decimal)
        prices = (decimal_places(c.unit_price) for c in self.currencies)
        return max(basis_type.scale or 0, *prices)


def prepare(replay_input: ReplayInput, *, like: PreparedReplay | None = None) -> PreparedReplay:
    """Validate `replay_input` and resolve its defaults; raises `ValidationError` listing every
    problem.

    `like`: an earlier prepared replay, e.g. of another scenario over the same events. What the
    two inputs provably share is taken over instead of being checked and built again: the event
    columns (ids, customers, timestamps, features: their checks and engine order) when they equal
    the earlier input's, value for value; the grant table when the grants, recurring grants,
    currencies and horizon end are equal. Everything else (costs, currencies, settings) is checked
    as always, so the result and the problems listed are those of `prepare(replay_input)`.
    """
    problems: list[Problem] = []
    currencies = tuple(sorted(replay_input.currencies, key=lambda c: c.id))
    precisions: dict[str, int] = {}
    for index, currency in enumerate(replay_input.currencies):
        path = f"currencies[{index}]"
        if currency.id in precisions:
            problems.append(Problem(path=path, message=f"duplicate currency id {currency.id!r}"))
        if not 0 <= currency.precision <= MAX_PRECISION:
            problems.append(Problem(path=path, message=f"precision must be 0 to {MAX_PRECISION}"))
        if currency.unit_price < 0:
            problems.append(Problem(path=path, message="unit_price must not be negative"))
        precisions[currency.id] = currency.precision
    if replay_input.enforcement not in ENFORCEMENTS:
        problems.append(
            Problem(
                path="enforcement",
                message=f"must be one of {', '.join(ENFORCEMENTS)}, not "
                f"{replay_input.enforcement!r}",
            )
        )
    checked = _checked_events(like, replay_input)
    frame, in_input_order = _consumption_frame(
        replay_input.consumptions, precisions, problems, checked
    )
    times = frame["timestamp"]
    first, last = (times.min(), times.max()) if frame.height else (None, None)
    start, until = default_horizon(
        replay_input,
        first if isinstance(first, datetime) else None,
        last if isinstance(last, datetime) else None,
    )
    same_grants = _same_grants(like, replay_input, until)
    if not same_grants:  # the earlier replay's grants passed these checks
        problems.extend(_recurring_problems(replay_input, precisions))
    problems.extend(_recharge_problems(replay_input, precisions))
    if until < start:
        problems.append(Problem(path="until", message="the horizon ends before it starts"))
    scale = max((c.precision for c in currencies), default=0)
    if like is not None and same_grants:
        grant_table = like.grant_table
    else:
        recurring = (
            recurring_grant_table(replay_input.recurring, until, scale)
            if not problems
            else recurring_grant_table((), until, scale)
        )
        problems.extend(_grant_problems(replay_input.grants, recurring["grant_id"], precisions))
        basis_scale = max((decimal_places(g.cost_basis) for g in replay_input.grants), default=0)
        grant_table = pl.concat(
            [
                explicit_grant_table(replay_input.grants, scale, basis_scale),
                recurring.cast({"cost_basis": pl.Decimal(38, basis_scale)}),
            ]
        )
    if problems:
        raise ValidationError(problems, source=f"replay {replay_input.scenario!r}")
    events_key = like.events_key if like is not None and checked is not None else object()
    return PreparedReplay(
        source=replay_input,
        currencies=currencies,
        scale=scale,
        start=start,
        until=until,
        grant_table=grant_table,
        consumptions=frame,
        in_input_order=in_input_order,
        events_key=events_key,
    )


# The consumption columns that describe events rather than costs: what replays of one set of
# events with different costs have in common.
_EVENT_COLUMNS = ("event_id", "customer_id", "timestamp", "feature_id")


def _input_frame(consumptions: object) -> pl.DataFrame:
    if isinstance(consumptions, CostedConsumptions):
        return consumptions.frame
    if isinstance(consumptions, pl.DataFrame):
        return consumptions
    assert isinstance(consumptions, Iterable)
    return records_frame(consumptions)


def _checked_events(like: PreparedReplay | None, replay_input: ReplayInput) -> pl.DataFrame | None:
    """`like`'s checked event columns (`_EVENT_COLUMNS`, cast and in engine order) when
    `replay_input`'s consumptions have the same event columns as `like`'s input, value for value
    and in the same row order, and `like` checked at least as much of them; otherwise None."""
    if like is None or not like.in_input_order:
        return None
    earlier, given = like.source.consumptions, replay_input.consumptions
    if not isinstance(earlier, pl.DataFrame | CostedConsumptions) or not isinstance(
        given, pl.DataFrame | CostedConsumptions
    ):
        return None  # records: building their table costs more than checking it
    if isinstance(earlier, CostedConsumptions) and not isinstance(given, CostedConsumptions):
        return None  # costing's guarantees spared `like` checks this input needs
    earlier_frame, frame = _input_frame(earlier), _input_frame(given)
    names = list(_EVENT_COLUMNS)
    if any(name not in frame.columns for name in names):
        return None
    before, now = earlier_frame.select(names), frame.select(names)
    if before.schema != now.schema or not before.equals(now, null_equal=True):
        return None
    return like.consumptions.select(names)


def _same_grants(like: PreparedReplay | None, replay_input: ReplayInput, until: datetime) -> bool:
    """Whether `like` has the grant table `replay_input` would get: same grants, recurring
    grants, currencies and horizon end (recurring grants are issued up to it)."""
    if like is None or like.until != until:
        return False
    earlier = like.source
    return (
        tuple(earlier.currencies) == tuple(replay_input.currencies)
        and tuple(earlier.grants) == tuple(replay_input.grants)
        and tuple(earlier.recurring) == tuple(replay_input.recurring)
    )


def consumption_records(prepared: PreparedReplay) -> list[Consumption]:
    """The consumptions as records (what the reference engine reads), in the table's row order."""
    source = prepared.source.consumptions
    if not isinstance(source, pl.DataFrame | CostedConsumptions):
        return list(source)
    precisions = {c.id: c.precision for c in prepared.currencies}
    by_event: dict[str, tuple[str, datetime, list[FeatureCost]]] = {}
    for (
        event_id,
        customer_id,
        timestamp,
        feature_id,
        currency_id,
        units,
    ) in prepared.consumptions.iter_rows():
        entry = by_event.setdefault(event_id, (customer_id, timestamp, []))
        if feature_id is not None:
            entry[2].append(
                FeatureCost(
                    feature_id=feature_id,
                    currency_id=currency_id,
                    cost=from_minor_units(units, precisions[currency_id]),
                )
            )
    return [
        Consumption(
            event_id=event_id, customer_id=customer, timestamp=timestamp, costs=tuple(costs)
        )
        for event_id, (customer, timestamp, costs) in by_event.items()
    ]


def records_frame(consumptions: Iterable[Consumption]) -> pl.DataFrame:
    """Consumption records as the long input table (`event_id, customer_id, timestamp,
    feature_id, currency_id, cost`), one row per event and feature."""
    columns: dict[str, list[object]] = {
        name: [] for name in ("event_id", "customer_id", "timestamp", "feature_id", "currency_id")
    }
    costs: list[Decimal | None] = []
    for consumption in consumptions:
        rows: Sequence[FeatureCost | None] = consumption.costs or (None,)
        for cost in rows:
            columns["event_id"].append(consumption.event_id)
            columns["customer_id"].append(consumption.customer_id)
            columns["timestamp"].append(as_utc(consumption.timestamp))
            columns["feature_id"].append(None if cost is None else cost.feature_id)
            columns["currency_id"].append(None if cost is None else cost.currency_id)
            costs.append(None if cost is None else cost.cost)
    scale = max((-c.as_tuple().exponent for c in costs if c is not None), default=0)  # type: ignore[operator]
    return pl.DataFrame(
        {
            **{
                name: pl.Series(name, values, dtype=pl.String)
                for name, values in columns.items()
                if name != "timestamp"
            },
            "timestamp": pl.Series(
                "timestamp", columns["timestamp"], dtype=pl.Datetime("us", "UTC")
            ),
            "cost": pl.Series("cost", costs, dtype=pl.Decimal(38, max(scale, 0))),
        }
    ).select("event_id", "customer_id", "timestamp", "feature_id", "currency_id", "cost")


def _consumption_frame(
    consumptions: object,
    precisions: dict[str, int],
    problems: list[Problem],
    checked_events: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, bool]:
    """The consumptions as `CONSUMPTION_SCHEMA`, appending every problem found to `problems`, and
    whether that keeps the input's row order.

    `checked_events`: the event columns of these consumptions as an earlier replay checked and
    ordered them (see `_checked_events`); then only the cost columns are checked here."""
    trusted = isinstance(consumptions, CostedConsumptions)
    frame = _input_frame(consumptions)
    required = ("event_id", "customer_id", "timestamp", "feature_id", "currency_id", "cost")
    missing = [name for name in required if name not in frame.columns]
    if missing:
        problems.append(
            Problem(path="consumptions", message=f"missing columns: {', '.join(missing)}")
        )
        return pl.DataFrame(schema=CONSUMPTION_SCHEMA), False
    cost_type = frame.schema["cost"]
    if cost_type.is_float():
        problems.append(
            Problem(path="consumptions.cost", message="costs must be decimals, never floats")
        )
        return pl.DataFrame(schema=CONSUMPTION_SCHEMA), False
    scale = max(precisions.values(), default=0)
    known = pl.Series(list(precisions), dtype=pl.String)
    factors = {k: 10 ** (scale - p) for k, p in precisions.items()}
    # Casting to `scale` places loses digits only when the input has more places than that.
    fits_scale = cost_type.is_integer() or (
        isinstance(cost_type, pl.Decimal) and (cost_type.scale or 0) <= scale
    )
    cost_columns = frame.select(
        pl.col("currency_id").cast(pl.String),
        pl.col("cost").cast(pl.Decimal(38, scale)).alias("scaled"),
        *([] if fits_scale else [pl.col("cost").cast(pl.Decimal(38, 18)).alias("exact")]),
    )
    events = checked_events if checked_events is not None else _event_columns(frame)
    data = pl.concat([events, cost_columns], how="horizontal").with_columns(
        unscaled=pl.col("scaled").to_physical(),
        factor=pl.col("currency_id").replace_strict(factors, default=None, return_dtype=pl.Int64),
    )
    too_precise = (pl.col("unscaled") % pl.col("factor")) != 0
    if not fits_scale:
        too_precise = too_precise | (pl.col("scaled") != pl.col("exact"))
    checks = {} if checked_events is not None else _EVENT_CHECKS.copy()
    checks |= {
        "feature_id, currency_id and cost must be all set or all null": (
            pl.col("feature_id").is_null().cast(pl.Int8)
            + pl.col("currency_id").is_null().cast(pl.Int8)
            + pl.col("scaled").is_null().cast(pl.Int8)
        ).is_in([1, 2]),
        "unknown currency": pl.col("currency_id").is_not_null()
        & ~pl.col("currency_id").is_in(known.implode()),
        "cost must not be negative": pl.col("scaled") < 0,
        "cost has more decimal places than its currency's precision": too_precise,
    }
    # One pass to learn which checks fail; rows are listed only for those.
    failing = data.select(
        cond.fill_null(False).any().alias(str(i)) for i, cond in enumerate(checks.values())
    ).row(0)
    for (message, condition), fails in zip(checks.items(), failing, strict=True):
        if not fails:
            continue
        bad = data.filter(condition.fill_null(False))
        for event_id in bad["event_id"].head(MAX_LISTED).to_list():
            problems.append(Problem(path=f"consumptions[event_id={event_id}]", message=message))
        if bad.height > MAX_LISTED:
            problems.append(
                Problem(
                    path="consumptions", message=f"… and {bad.height - MAX_LISTED} more: {message}"
                )
            )
    if not trusted and checked_events is None:
        problems.extend(_event_problems(data))
    if problems:
        return pl.DataFrame(schema=CONSUMPTION_SCHEMA), False
    table = data.select(
        "event_id",
        "customer_id",
        "timestamp",
        "feature_id",
        "currency_id",
        (pl.col("unscaled") // pl.col("factor")).cast(pl.Int64).alias("cost_units"),
    )
    if checked_events is not None:
        return table, True  # the earlier replay found these events in engine order
    ordered = in_engine_order(table)
    return ordered, ordered is table


_EVENT_CHECKS = {
    "event_id, customer_id and timestamp must not be null": pl.col("event_id").is_null()
    | pl.col("customer_id").is_null()
    | pl.col("timestamp").is_null(),
}


def _event_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """The input's `_EVENT_COLUMNS` as strings and UTC timestamps (unchecked)."""
    timestamp = pl.col("timestamp")
    ts_type = frame.schema["timestamp"]
    if isinstance(ts_type, pl.Datetime) and ts_type.time_zone is None:
        timestamp = timestamp.dt.replace_time_zone("UTC")
    return frame.select(
        pl.col("event_id").cast(pl.String),
        pl.col("customer_id").cast(pl.String),
        timestamp.cast(pl.Datetime("us", "UTC")).alias("timestamp"),
        pl.col("feature_id").cast(pl.String),
    )


def _event_problems(data: pl.DataFrame) -> list[Problem]:
    """Events whose rows disagree: a feature twice, or several customers or timestamps."""
    problems: list[Problem] = []
    duplicates = data.filter(pl.struct("event_id", "feature_id").is_duplicated())
    for event_id in duplicates["event_id"].unique(maintain_order=True).head(MAX_LISTED).to_list():
        problems.append(
            Problem(
                path=f"consumptions[event_id={event_id}]",
                message="the same feature appears twice in one event",
            )
        )
    inconsistent = (
        data.group_by("event_id")
        .agg(pl.col("customer_id").n_unique().alias("c"), pl.col("timestamp").n_unique().alias("t"))
        .filter((pl.col("c") > 1) | (pl.col("t") > 1))
        .sort("event_id")
    )
    for event_id in inconsistent["event_id"].head(MAX_LISTED).to_list():
        problems.append(
            Problem(
                path=f"consumptions[event_id={event_id}]",
                message="one event id with several customers or timestamps",
            )
        )
    return problems


def in_engine_order(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` ordered on `order.EVENT_SORT_COLUMNS` (null feature first); a frame already in that
    order (as costing delivers it) is returned as it is, after one cheap check."""
    if frame.height < 2:
        return frame
    c, t, e, f = (pl.col(name) for name in EVENT_SORT_COLUMNS)

    def later(column: pl.Expr) -> pl.Expr:
        return column > column.shift(1)

    def same(column: pl.Expr) -> pl.Expr:
        return column == column.shift(1)

    feature_later = later(f).fill_null(f.shift(1).is_null() & f.is_not_null())
    ordered = later(c) | (same(c) & (later(t) | (same(t) & (later(e) | (same(e) & feature_later)))))
    if frame.select(ordered.slice(1).all()).item():
        return frame
    return frame.sort(list(EVENT_SORT_COLUMNS), nulls_last=False)


def default_horizon(
    replay_input: ReplayInput, first_event: datetime | None, last_event: datetime | None
) -> tuple[datetime, datetime]:
    """The horizon of `replay_input` with SPEC §5 defaults for what it leaves open, given its
    first and last event times (None: no event): start = earliest event, grant or subscription
    start; until = one microsecond after the last event (with no event: after the last grant or
    subscription start)."""
    starts = [as_utc(g.effective_at) for g in replay_input.grants]
    starts += [as_utc(r.start) for r in replay_input.recurring]
    if replay_input.start is not None:
        start = as_utc(replay_input.start)
    else:
        start = min([*starts, *([first_event] if first_event is not None else [])], default=EPOCH)
    if replay_input.until is not None:
        until = as_utc(replay_input.until)
    elif last_event is not None:
        until = last_event + MICROSECOND
    else:
        until = max(starts, default=start - MICROSECOND) + MICROSECOND
    return start, until


def _amount_problems(path: str, amount: Decimal, precision: int | None) -> list[Problem]:
    if not amount.is_finite() or amount <= 0:
        return [Problem(path=path, message="amount must be greater than 0")]
    if precision is not None and amount != amount.quantize(Decimal(1).scaleb(-precision)):
        return [Problem(path=path, message=f"amount has more than {precision} decimal places")]
    return []


def _grant_problems(
    grants: Sequence[Grant], recurring_ids: pl.Series, precisions: dict[str, int]
) -> list[Problem]:
    problems: list[Problem] = []
    explicit_ids = pl.Series([g.grant_id for g in grants], dtype=pl.String)
    # Only the recurring ids an input grant also has can clash.
    seen = set(recurring_ids.filter(recurring_ids.is_in(explicit_ids.implode())).to_list())
    for index, grant in enumerate(grants):
        path = f"grants[{index}]"
        if grant.grant_id in seen:
            problems.append(Problem(path=path, message=f"duplicate grant id {grant.grant_id!r}"))
        seen.add(grant.grant_id)
        for reserved in ("auto_recharge", "overdraft"):
            if grant.grant_id.startswith(f"{grant.customer_id}:{reserved}:"):
                problems.append(
                    Problem(
                        path=path,
                        message=f"grant ids starting with '{grant.customer_id}:{reserved}:' are "
                        "reserved for the grants the replay creates",
                    )
                )
        if grant.currency_id not in precisions:
            problems.append(Problem(path=path, message=f"unknown currency {grant.currency_id!r}"))
        problems.extend(_amount_problems(path, grant.amount, precisions.get(grant.currency_id)))
        if grant.type not in GRANT_TYPES or grant.type == "OVERDRAFT":
            problems.append(
                Problem(path=path, message="type must be PAID, PROMOTIONAL or RECURRING")
            )
        if grant.source not in GRANT_SOURCES or grant.source in ("auto_recharge", "overdraft"):
            problems.append(
                Problem(path=path, message="source must be manual, plan, addon or top_up")
            )
        if grant.cost_basis < 0:
            problems.append(Problem(path=path, message="cost_basis must not be negative"))
        if grant.expires_at is not None and as_utc(grant.expires_at) <= as_utc(grant.effective_at):
            problems.append(Problem(path=path, message="expires_at must be after effective_at"))
    if recurring_ids.is_duplicated().any():
        problems.append(Problem(path="recurring", message="recurring grant ids collide"))
    return problems


def _recurring_problems(replay_input: ReplayInput, precisions: dict[str, int]) -> list[Problem]:
    problems: list[Problem] = []
    for index, entitlement in enumerate(replay_input.recurring):
        path = f"recurring[{index}]"
        if entitlement.currency_id not in precisions:
            problems.append(
                Problem(path=path, message=f"unknown currency {entitlement.currency_id!r}")
            )
        problems.extend(
            _amount_problems(path, entitlement.amount, precisions.get(entitlement.currency_id))
        )
        if entitlement.cadence not in ("monthly", "yearly"):
            problems.append(Problem(path=path, message="cadence must be monthly or yearly"))
        if entitlement.end is not None and as_utc(entitlement.end) <= as_utc(entitlement.start):
            problems.append(Problem(path=path, message="end must be after start"))
    return problems


def _recharge_problems(replay_input: ReplayInput, precisions: dict[str, int]) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for index, setting in enumerate(replay_input.auto_recharges):
        path = f"auto_recharges[{index}]"
        key = (setting.customer_id, setting.currency_id)
        if key in seen:
            problems.append(
                Problem(path=path, message="one auto-recharge per customer and currency")
            )
        seen.add(key)
        if setting.currency_id not in precisions:
            problems.append(Problem(path=path, message=f"unknown currency {setting.currency_id!r}"))
        if setting.grant_expiry not in GRANT_EXPIRIES:
            problems.append(
                Problem(
                    path=path, message=f"grant_expiry must be one of {', '.join(GRANT_EXPIRIES)}"
                )
            )
        if setting.monthly_spend_limit is not None and setting.monthly_spend_limit < 0:
            problems.append(Problem(path=path, message="monthly_spend_limit must not be negative"))
        if setting.target < 0 or setting.threshold < 0:
            problems.append(Problem(path=path, message="threshold and target must not be negative"))
    return problems
