"""A `ReplayInput` as both engines read it: checked (`checks`), horizon resolved, as tables.

`prepare` puts the input into tables, runs every check of `checks` once (a `ValidationError`
lists every problem), and returns a `PreparedReplay`: the grants (input and recurring) as one
table, the consumptions as one long table in integer minor units in the order of things
(`CONSUMPTION_SCHEMA`, `order.EVENT_SORT_COLUMNS`). The ledger rules live in the engines.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import polars as pl

from pricing_lab.catalog.model import CreditCurrency
from pricing_lab.errors import Problem, ValidationError
from pricing_lab.ledger import checks
from pricing_lab.ledger.grant_table import explicit_grant_table, grant_records
from pricing_lab.ledger.model import (
    AutoRecharge,
    Consumption,
    Enforcement,
    FeatureCost,
    Grant,
    ReplayInput,
)
from pricing_lab.ledger.order import EVENT_SORT_COLUMNS
from pricing_lab.ledger.recurring import recurring_grant_table, rollover_grant_table
from pricing_lab.money import decimal_places, from_minor_units, quantize
from pricing_lab.timeutil import EPOCH, MICROSECOND, as_utc

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
INPUT_COLUMNS = ("event_id", "customer_id", "timestamp", "feature_id", "currency_id", "cost")


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedReplay:
    """A checked replay input: what both engines start from."""

    currencies: tuple[CreditCurrency, ...]  # sorted by id
    scale: int  # decimal places of the output amount columns: the largest currency precision
    money_places: int  # the most decimal places of any cost basis or unit price
    start: datetime
    until: datetime
    # Every grant of the input, then every recurring period, then every rollover grant the replay
    # may make (engines apply the horizon), as one table (`grant_table.grant_table_schema`). A
    # rollover grant's amount there is its cap: what it receives is decided at the expiry of the
    # grant it rolls from (`rollovers`).
    grant_table: pl.DataFrame
    # The rollover grants of `grant_table`: grant_id, rolls_from (`recurring.rollover_grant_table`).
    rollovers: pl.DataFrame
    auto_recharges: tuple[AutoRecharge, ...]
    consumptions: pl.DataFrame  # CONSUMPTION_SCHEMA, in order.EVENT_SORT_COLUMNS order
    enforcement: Enforcement
    scenario: str

    def precision(self, currency_id: str) -> int:
        return next(c.precision for c in self.currencies if c.id == currency_id)


def prepare(replay_input: ReplayInput) -> PreparedReplay:
    """Check `replay_input` and resolve its defaults; raises `ValidationError` listing every
    problem (`checks`)."""
    currencies = tuple(sorted(replay_input.currencies, key=lambda c: c.id))
    precisions = {c.id: c.precision for c in replay_input.currencies}
    scale = max((c.precision for c in currencies), default=0)
    problems = [
        *checks.currency_problems(replay_input.currencies),
        *checks.policy_problems(replay_input.enforcement),
        *checks.grant_problems(replay_input.grants, precisions),
        *checks.recurring_problems(replay_input.recurring, precisions),
        *checks.recharge_problems(replay_input.auto_recharges, replay_input.currencies),
    ]
    data = _normalised(replay_input.consumptions, precisions, scale, problems)
    times = data["timestamp"]
    first, last = (times.min(), times.max()) if data.height else (None, None)
    start, until = default_horizon(
        replay_input,
        first if isinstance(first, datetime) else None,
        last if isinstance(last, datetime) else None,
    )
    problems += checks.horizon_problems(start, until)
    if problems:
        raise ValidationError(problems, source=f"replay {replay_input.scenario!r}")
    # The checks that need the input's tables: grant ids against every recurring period, events
    # in the order of things, the sizes the engines compute with.
    recurring = recurring_grant_table(replay_input.recurring, until, scale)
    rollovers = rollover_grant_table(replay_input.recurring, until, precisions, scale)
    basis_places = _basis_places(replay_input.grants)
    explicit = explicit_grant_table(replay_input.grants, scale, basis_places)
    ordered = in_engine_order(data)
    problems += checks.grant_id_problems(
        explicit["grant_id"], pl.concat([recurring["grant_id"], rollovers["grant_id"]])
    )
    problems += checks.event_problems(ordered)
    grant_table = pl.concat(
        [explicit, recurring, rollovers.drop("rolls_from")], how="vertical_relaxed"
    ).cast({"cost_basis": explicit.schema["cost_basis"]})
    problems += _size_problems(
        grant_table, ordered, replay_input.auto_recharges, currencies, start, until, scale
    )
    if problems:
        raise ValidationError(problems, source=f"replay {replay_input.scenario!r}")
    consumptions = ordered.select(
        *EVENT_SORT_COLUMNS[:3],
        "feature_id",
        "currency_id",
        (pl.col("scaled").to_physical() // pl.col("factor")).cast(pl.Int64).alias("cost_units"),
    ).select(list(CONSUMPTION_SCHEMA))
    prices = (decimal_places(c.unit_price) for c in currencies)
    return PreparedReplay(
        currencies=currencies,
        scale=scale,
        money_places=max([basis_places, *prices]),
        start=start,
        until=until,
        grant_table=grant_table,
        rollovers=rollovers.select("grant_id", "rolls_from"),
        auto_recharges=tuple(replay_input.auto_recharges),
        consumptions=consumptions,
        enforcement=replay_input.enforcement,
        scenario=replay_input.scenario,
    )


def _basis_places(grants: Sequence[Grant]) -> int:
    # Per distinct value: thousands of grants share a few cost bases (checked finite already).
    return max((decimal_places(basis) for basis in {g.cost_basis for g in grants}), default=0)


def _normalised(
    consumptions: object, precisions: dict[str, int], scale: int, problems: list[Problem]
) -> pl.DataFrame:
    """The consumptions as event columns (strings, UTC timestamps) with `scaled` (the cost at
    `scale` places), `factor` (10^(scale − its currency's precision), null for an unknown
    currency) and, when the input has more places than `scale`, `exact`; every row problem is
    appended to `problems` (`checks.consumption_problems`)."""
    empty = pl.DataFrame(
        schema={
            **{name: CONSUMPTION_SCHEMA[name] for name in INPUT_COLUMNS[:5]},
            "scaled": pl.Decimal(38, scale),
            "factor": pl.Int64(),
        }
    )
    frame = consumptions if isinstance(consumptions, pl.DataFrame) else records_frame(consumptions)  # type: ignore[arg-type]
    missing = [name for name in INPUT_COLUMNS if name not in frame.columns]
    if missing:
        problems.append(
            Problem(path="consumptions", message=f"missing columns: {', '.join(missing)}")
        )
        return empty
    cost_type = frame.schema["cost"]
    if cost_type.is_float():
        problems.append(
            Problem(path="consumptions.cost", message="costs must be decimals, never floats")
        )
        return empty
    # Casting to `scale` places loses digits only when the input has more places than that.
    fits_scale = cost_type.is_integer() or (
        isinstance(cost_type, pl.Decimal) and (cost_type.scale or 0) <= scale
    )
    timestamp = pl.col("timestamp")
    ts_type = frame.schema["timestamp"]
    if isinstance(ts_type, pl.Datetime) and ts_type.time_zone is None:
        timestamp = timestamp.dt.replace_time_zone("UTC")
    factors = {k: 10 ** (scale - p) for k, p in precisions.items()}
    data = frame.select(
        pl.col("event_id").cast(pl.String),
        pl.col("customer_id").cast(pl.String),
        timestamp.cast(pl.Datetime("us", "UTC")).alias("timestamp"),
        pl.col("feature_id").cast(pl.String),
        pl.col("currency_id").cast(pl.String),
        pl.col("cost").cast(pl.Decimal(38, scale), strict=False).alias("scaled"),
        pl.col("currency_id")
        .cast(pl.String)
        .replace_strict(factors, default=None, return_dtype=pl.Int64)
        .alias("factor"),
        *(
            []
            if fits_scale
            else [pl.col("cost").cast(pl.Decimal(38, 18), strict=False).alias("exact")]
        ),
        pl.col("cost").is_not_null().alias("__given"),
    )
    too_large = data.filter(pl.col("scaled").is_null() & pl.col("__given"))["event_id"]
    problems += checks.listed_events(too_large, f"cost too large for {scale} decimal places")
    data = data.drop("__given")
    problems += checks.consumption_problems(data)
    return empty if problems else data


def _size_problems(
    grant_table: pl.DataFrame,
    consumptions: pl.DataFrame,
    settings: Sequence[AutoRecharge],
    currencies: Sequence[CreditCurrency],
    start: datetime,
    until: datetime,
    scale: int,
) -> list[Problem]:
    """`checks.size_problems` for this replay's grants taking effect, costs replayed and
    auto-recharge targets (rounded up to their currency's precision)."""
    keys = ["customer_id", "currency_id"]
    inside = pl.col("effective_at").is_between(start, until, closed="left")
    grants = grant_table.filter(inside).select(*keys, "amount")
    costs = consumptions.filter(
        pl.col("timestamp").is_between(start, until, closed="left") & (pl.col("scaled") > 0)
    ).select(*keys, pl.col("scaled").alias("cost"))
    precisions = {c.id: c.precision for c in currencies}
    targets = pl.DataFrame(
        {
            "customer_id": [s.customer_id for s in settings],
            "currency_id": [s.currency_id for s in settings],
            "target": [quantize(s.target, precisions[s.currency_id], "up") for s in settings],
        },
        schema={
            "customer_id": pl.String,
            "currency_id": pl.String,
            "target": pl.Decimal(38, scale),
        },
    )
    # Every customer's bound is at most the sum over all of them: only a large sum is looked at
    # customer by customer.
    total = Decimal(0)
    for frame, name in ((grants, "amount"), (costs, "cost"), (targets, "target")):
        value = frame[name].sum()
        total += value if isinstance(value, Decimal) else Decimal(0)
    if total.scaleb(scale) <= checks.EXACT_UNITS:
        return []
    return checks.size_problems(grants, costs, targets, scale)


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


def in_engine_order(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` ordered on `order.EVENT_SORT_COLUMNS` (null feature first); a frame already in that
    order (as costing delivers it) is returned as it is, after one vectorised comparison of each
    row with the previous one."""
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


def prepared_grants(prepared: PreparedReplay) -> tuple[Grant, ...]:
    """Every grant of a prepared replay as a record (the input's, then the recurring ones, then
    the rollover grants at their caps)."""
    return grant_records(prepared.grant_table)


def consumption_records(prepared: PreparedReplay) -> list[Consumption]:
    """The consumptions as records (what the reference engine reads), in the table's row order."""
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
    places = [decimal_places(c) for c in costs if c is not None and c.is_finite()]
    big = any(c is not None and (not c.is_finite() or abs(c) >= 10**26) for c in costs)
    cost_series = (
        pl.Series("cost", [None if c is None else str(c) for c in costs], dtype=pl.String)
        if big
        else pl.Series("cost", costs, dtype=pl.Decimal(38, max(places, default=0)))
    )
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
            "cost": cost_series,
        }
    ).select(*INPUT_COLUMNS)
