"""What is known at the forecast instant T, per customer and currency, as the simulation's arrays.

Read from the replay of the history up to T (its ledger: every grant's remaining credits, the
overdraft debt, the auto-recharges issued so far) and from the replay's own inputs (grants,
subscriptions' credit entitlements, auto-recharge settings): the grants usable at T, the grants that
take effect inside the horizon (scheduled grants and top-ups, recurring periods, the rollover
grants of periods ending inside it), every expiry and void inside the horizon, and the calendar
months over which the recharge spend limit counts. The rules are the ledger's (SPEC §5,
docs/ledger.md); this module only puts them in arrays:

* a unit's grants ("slots") are listed in draw-down order (`ledger.order`: priority, expiry with
  never last, promotional/recurring before paid, effective time, rollover grants first, grant id);
* a period grant that rolls over inside the horizon knows the slot of its rollover grant (listed by
  `ledger.recurring.rollover_grant_table`, the replay's own list) and the cap of what rolls;
* its happenings are sorted by time, then the order of things at one instant (`ledger.order.Phase`:
  expiries, voids, grants taking effect), then draw-down order;
* credits are integer minor units; recharge spend is counted in integer money units exactly as the
  ledger engine counts it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import numpy as np
import polars as pl

from pricing_lab.catalog.model import Catalog
from pricing_lab.errors import InputError, InvariantViolation
from pricing_lab.ledger.calendar import add_months, month_start
from pricing_lab.ledger.grant_table import explicit_grant_table, grant_table_schema
from pricing_lab.ledger.model import AutoRecharge, RecurringEntitlement, recurring_entitlements
from pricing_lab.ledger.order import ROLLOVER_SOURCE, TYPE_RANK, Phase
from pricing_lab.ledger.recurring import recurring_grant_table, rollover_grant_table
from pricing_lab.money import decimal_places, quantize, to_minor_units
from pricing_lab.simulation.customers import CustomerInputs
from pricing_lab.timeutil import DAY_US, EPOCH, NEVER_US, to_micros

KEYS = ["customer_id", "currency_id"]
TIMESTAMP = pl.Datetime("us", "UTC")
EXPIRY_MONTHS = {"none": 0, "1_month": 1, "1_year": 12}

# Columns of `CreditState.params` (one row per unit).
(
    P_SLOT0,  # first slot of the unit in the slot arrays
    P_SLOT1,  # one past its last slot
    P_HAPP0,  # first happening of the unit
    P_HAPP1,
    P_HIST0,  # first history day of the unit in BurnHistory.burn / events
    P_HISTN,  # history days of the unit (0: none)
    P_PROFILE,  # row of the unit's intraday profile in BurnHistory.profile
    P_SIMULATE,  # 1: enough history to simulate; 0: flagged, left alone
    P_OVERDRAFT,  # the overdraft grant's remaining at T (≤ 0)
    P_RECHARGE,  # 1: the unit has an auto-recharge setting
    P_THRESHOLD,  # minor units, rounded up as the ledger does
    P_TARGET,
    P_UNIT_PRICE,  # price of one minor unit in integer money units (the ledger engine's scale)
    P_LIMIT,  # monthly spend limit in the same money units; −1: no limit
    P_EXPIRY_MONTHS,  # a recharge grant expires this many months after it is issued; 0: never
    P_SPENT,  # recharge spend of T's calendar month before T, money units
    P_KEY,  # the unit's random-stream key (bits of a uint64)
) = range(17)
N_PARAMS = 17


@dataclass(frozen=True, slots=True, kw_only=True)
class CreditState:
    """Every unit's state at T and known future inside [T, end), as kernel arrays.

    `units`: customer_id, currency_id (sorted), precision, balance (minor units at T).
    `slots`: one row per grant a unit can draw inside the horizon, in draw-down order per unit:
    unit, grant_id, cost_basis (Decimal) and the kernel's columns (`run_out._slot_array`), among
    them `rolls_into` (the slot of the rollover grant a period grant expiring inside the horizon
    rolls into, −1: none) and `roll_cap` (the most that rolls, minor units).
    `happenings`: time (µs), phase (`Phase`), slot (index within its unit), sorted per unit.
    `month_starts`: UTC calendar month starts strictly inside (T, end) (the recharge spend
    restarts). `add_months_days`: for each UTC day from T's to end's, the day one month and one
    year later (`timeutil.add_months`), so the kernel dates recharge expiries by the same rule.
    """

    units: pl.DataFrame
    params: np.ndarray
    slots: pl.DataFrame
    happenings: pl.DataFrame
    month_starts: np.ndarray
    first_day: int
    add_months_days: np.ndarray


def credit_state(
    *,
    history_keys: pl.DataFrame,
    ledger: pl.DataFrame | None,
    grants: pl.DataFrame | None,
    customers: CustomerInputs,
    catalog: Catalog,
    as_of: datetime,
    end: datetime,
    seed: int,
) -> CreditState:
    """The state at `as_of` of every unit found in `history_keys` (customer_id, currency_id), in
    the replay's `ledger` and `grants` up to `as_of` (None: nothing before it), in the customers'
    grants and entitlements taking effect before `end`, or in their auto-recharge settings."""
    precisions = {c.id: c.precision for c in catalog.currencies}
    scale = max(precisions.values(), default=0)
    basis_scale = max(
        [decimal_places(g.cost_basis) for g in customers.grants]
        + [decimal_places(c.unit_price) for c in catalog.currencies],
        default=0,
    )
    schema = grant_table_schema(scale, basis_scale)
    t_us, end_us = to_micros(as_of), to_micros(end)
    held = _held_at(ledger, precisions)
    # The grants held at T are described by the replay itself (auto-recharge and rollover grants
    # included); those taking effect inside the horizon come from the inputs, and so do the
    # rollover grants of periods ending inside it (the ledger's list, up to the horizon's end).
    used = pl.DataFrame(schema=schema) if grants is None else grants.select(schema.names())
    usable = held.filter((pl.col("grant_type") != "OVERDRAFT") & (pl.col("remaining") > 0))
    active = usable.join(used.cast(schema), on=[*KEYS, "grant_id"], how="left")
    unknown = active.filter(pl.col("effective_at").is_null())
    if unknown.height:
        raise InvariantViolation(
            f"the ledger holds grant {unknown['grant_id'][0]!r} that the replay's grants do not "
            "describe (run-out forecast)"
        )
    entitlements = recurring_entitlements(customers.subscriptions, catalog)
    attributes = pl.concat(
        [
            explicit_grant_table(customers.grants, scale, basis_scale),
            recurring_grant_table(entitlements, end, scale).cast(schema),
        ]
    )
    inside = pl.col("effective_at").dt.epoch("us").is_between(t_us, end_us, closed="left")
    upcoming = attributes.filter(
        inside & (pl.col("voided_at").is_null() | (pl.col("voided_at") > pl.col("effective_at")))
    ).with_columns(
        _units("amount", scale, precisions).alias("remaining"), pl.lit(False).alias("active")
    )
    no_roll = {"rolls_from": pl.lit(None, dtype=pl.String), "cap": pl.lit(0, dtype=pl.Int64)}
    slots = pl.concat(
        [
            active.with_columns(pl.lit(True).alias("active"), **no_roll).select(_SLOT_COLUMNS),
            upcoming.with_columns(**no_roll).select(_SLOT_COLUMNS),
        ]
    )
    slots = pl.concat([slots, _rollover_slots(entitlements, slots, schema, scale, precisions, end)])
    units = _units_table(history_keys, held, slots, customers.auto_recharges).with_columns(
        pl.col("currency_id").replace_strict(precisions, return_dtype=pl.Int64).alias("precision")
    )
    slots = _linked(_ordered_slots(slots, units))
    happenings = _happenings(slots, t_us, end_us)
    params = np.zeros((units.height, N_PARAMS), dtype=np.int64)
    slot_bounds = _bounds(slots["unit"].to_numpy(), units.height)
    happening_bounds = _bounds(happenings["unit"].to_numpy(), units.height)
    params[:, P_SLOT0], params[:, P_SLOT1] = slot_bounds[:-1], slot_bounds[1:]
    params[:, P_HAPP0], params[:, P_HAPP1] = happening_bounds[:-1], happening_bounds[1:]
    params[:, P_OVERDRAFT] = units["overdraft"].to_numpy()
    params[:, P_KEY] = [_stream_key(c, k, seed) for c, k in units.select(KEYS).iter_rows()]
    _recharge_params(params, units, customers.auto_recharges, catalog, ledger, as_of, precisions)
    first_day = t_us // DAY_US
    days = np.arange(first_day, (end_us - 1) // DAY_US + 1)
    return CreditState(
        units=units.select(*KEYS, "precision", "balance"),
        params=params,
        slots=slots,
        happenings=happenings,
        month_starts=_month_starts(as_of, end),
        first_day=first_day,
        add_months_days=np.array(
            [[_days(add_months(EPOCH + timedelta(days=int(d)), m)) for m in (1, 12)] for d in days],
            dtype=np.int64,
        ).reshape(-1, 2),
    )


_SLOT_COLUMNS = [
    *KEYS,
    "grant_id",
    "type",
    "source",
    "priority",
    "effective_at",
    "expires_at",
    "voided_at",
    "cost_basis",
    "remaining",
    "active",
    "rolls_from",  # a rollover grant: the id of the period grant it receives credits from
    "cap",  # a rollover grant: the most it can receive (minor units)
]


def _rollover_slots(
    entitlements: tuple[RecurringEntitlement, ...],
    slots: pl.DataFrame,
    schema: pl.Schema,
    scale: int,
    precisions: dict[str, int],
    end: datetime,
) -> pl.DataFrame:
    """The rollover grants that periods ending inside [T, end) may make (SPEC §5), as slots that
    are not usable yet and hold nothing: the kernel fills one with what its period grant rolls at
    that grant's expiry. Only those of period grants the unit holds at T or receives inside the
    horizon: a grant held empty at T can roll nothing."""
    rollovers = rollover_grant_table(entitlements, end, precisions, scale)
    sources = slots.select(*KEYS, pl.col("grant_id").alias("rolls_from"))
    return (
        rollovers.join(sources, on=[*KEYS, "rolls_from"], how="semi")
        .with_columns(
            _units("amount", scale, precisions).alias("cap"),
            pl.col("cost_basis").cast(schema["cost_basis"]),
            pl.lit(0, dtype=pl.Int64).alias("remaining"),
            pl.lit(False).alias("active"),
        )
        .select(_SLOT_COLUMNS)
    )


def _linked(slots: pl.DataFrame) -> pl.DataFrame:
    """`slots` (ordered) with `rolls_into`, the slot of the rollover grant each period grant may
    roll into (−1: none), and `roll_cap`, the most that rolls (minor units)."""
    links = slots.filter(pl.col("rolls_from").is_not_null()).select(
        "unit",
        pl.col("rolls_from").alias("grant_id"),
        pl.col("slot").alias("rolls_into"),
        pl.col("cap").alias("roll_cap"),
    )
    return slots.join(
        links, on=["unit", "grant_id"], how="left", maintain_order="left"
    ).with_columns(pl.col("rolls_into").fill_null(-1), pl.col("roll_cap").fill_null(0))


def _units(column: str, scale: int, precisions: dict[str, int]) -> pl.Expr:
    """A Decimal column at `scale` places as integer minor units of each row's currency."""
    divisor = {k: 10 ** (scale - p) for k, p in precisions.items()}
    return (
        pl.col(column).to_physical()
        // pl.col("currency_id").replace_strict(divisor, return_dtype=pl.Int128)
    ).cast(pl.Int64)


def _held_at(ledger: pl.DataFrame | None, precisions: dict[str, int]) -> pl.DataFrame:
    """Every grant's remaining credits (minor units) after the ledger's last entry."""
    schema = {
        "customer_id": pl.String(),
        "currency_id": pl.String(),
        "grant_id": pl.String(),
        "grant_type": pl.String(),
        "remaining": pl.Int64(),
    }
    if ledger is None or ledger.height == 0:
        return pl.DataFrame(schema=schema)
    amount = ledger.schema["amount"]
    scale = amount.scale if isinstance(amount, pl.Decimal) else 0
    return (
        ledger.lazy()
        .group_by(*KEYS, "grant_id")
        .agg(pl.col("grant_type").first(), pl.col("amount").to_physical().sum())
        .with_columns(_units("amount", scale, precisions).alias("remaining"))
        .select(list(schema))
        .collect()
    )


def _units_table(
    history_keys: pl.DataFrame,
    held: pl.DataFrame,
    slots: pl.DataFrame,
    settings: tuple[AutoRecharge, ...],
) -> pl.DataFrame:
    """Every unit, sorted, with its index, balance at T and overdraft (minor units)."""
    recharge_keys = pl.DataFrame(
        [(s.customer_id, s.currency_id) for s in settings], schema=KEYS, orient="row"
    )
    keys = (
        pl.concat([history_keys.select(KEYS), held.select(KEYS), slots.select(KEYS), recharge_keys])
        .unique()
        .sort(KEYS)
        .with_row_index("unit")
        .with_columns(pl.col("unit").cast(pl.Int64))
    )
    balances = held.group_by(KEYS).agg(
        pl.col("remaining").sum().alias("balance"),
        pl.col("remaining").filter(pl.col("grant_type") == "OVERDRAFT").sum().alias("overdraft"),
    )
    return keys.join(balances, on=KEYS, how="left").with_columns(
        pl.col("balance", "overdraft").fill_null(0)
    )


def _ordered_slots(slots: pl.DataFrame, units: pl.DataFrame) -> pl.DataFrame:
    """The slots with their unit, in draw-down order per unit, with the kernel's key columns."""
    prefix = pl.concat_str(
        pl.col("customer_id"), pl.lit(":auto_recharge:"), pl.col("currency_id"), pl.lit(":")
    )
    return (
        slots.join(units.select(*KEYS, "unit"), on=KEYS)
        .with_columns(
            pl.col("type").replace_strict(TYPE_RANK, return_dtype=pl.Int64).alias("type_rank"),
            pl.col("expires_at").is_null().alias("never"),
            pl.col("effective_at").dt.epoch("us").alias("effective_us"),
            pl.col("expires_at").dt.epoch("us").fill_null(NEVER_US).alias("expires_us"),
            pl.col("voided_at").dt.epoch("us").fill_null(NEVER_US).alias("voided_us"),
            # The grant id is the draw-down order's last key: grants issued by an auto-recharge
            # inside the horizon are ordered against this one by where their id prefix sorts.
            ((pl.col("grant_id") < prefix) | pl.col("grant_id").str.starts_with(prefix)).alias(
                "before_recharges"
            ),
        )
        .with_columns((pl.col("source") != ROLLOVER_SOURCE).alias("not_rollover"))
        .sort(
            "unit",
            "priority",
            "never",
            "expires_us",
            "type_rank",
            "effective_us",
            "not_rollover",
            "grant_id",
        )
        .with_columns(pl.int_range(pl.len()).over("unit").cast(pl.Int64).alias("slot"))
    )


def _happenings(slots: pl.DataFrame, t_us: int, end_us: int) -> pl.DataFrame:
    """Expiries, voids and grants taking effect inside [T, end), in the order of things."""
    inside = pl.col("time").is_between(t_us, end_us, closed="left")
    frames = [
        slots.select("unit", "slot", pl.col("expires_us").alias("time"), pl.lit(int(Phase.EXPIRY))),
        slots.filter(
            (pl.col("voided_us") > pl.col("effective_us"))
            & (pl.col("voided_us") < pl.col("expires_us"))
        ).select("unit", "slot", pl.col("voided_us").alias("time"), pl.lit(int(Phase.VOID))),
        slots.select(
            "unit", "slot", pl.col("effective_us").alias("time"), pl.lit(int(Phase.TAKES_EFFECT))
        ),
    ]
    return (
        pl.concat([f.rename({"literal": "phase"}) for f in frames])
        .filter(inside)
        .with_columns(pl.col("phase").cast(pl.Int64))
        .sort("unit", "time", "phase", "slot")
    )


def _recharge_params(
    params: np.ndarray,
    units: pl.DataFrame,
    settings: tuple[AutoRecharge, ...],
    catalog: Catalog,
    ledger: pl.DataFrame | None,
    as_of: datetime,
    precisions: dict[str, int],
) -> None:
    """Each unit's auto-recharge setting in the ledger engine's integers, and its spend so far in
    T's calendar month (SPEC §5: the limit is per UTC calendar month)."""
    index = {key: i for i, key in enumerate(units.select(KEYS).iter_rows())}
    prices = {c.id: c.unit_price for c in catalog.currencies}
    spent: dict[tuple[str, str], int] = {}
    if ledger is not None and ledger.height:
        this_month = ledger.filter(
            (pl.col("entry_type") == "GRANTED")
            & (pl.col("grant_source") == "auto_recharge")
            & (pl.col("timestamp") >= month_start(as_of))
        )
        for customer, currency, amount in this_month.select(*KEYS, "amount").iter_rows():
            key = (customer, currency)
            spent[key] = spent.get(key, 0) + to_minor_units(amount, precisions[currency])
    for setting in settings:
        key = (setting.customer_id, setting.currency_id)
        row = params[index[key]]
        threshold, target, unit, limit = recharge_figures(
            setting, precisions[setting.currency_id], prices[setting.currency_id]
        )
        row[P_RECHARGE] = 1
        row[P_THRESHOLD], row[P_TARGET], row[P_UNIT_PRICE], row[P_LIMIT] = (
            threshold,
            target,
            unit,
            limit,
        )
        row[P_EXPIRY_MONTHS] = EXPIRY_MONTHS[setting.grant_expiry]
        row[P_SPENT] = spent.get(key, 0) * unit


def recharge_figures(
    setting: AutoRecharge, precision: int, unit_price: Decimal
) -> tuple[int, int, int, int]:
    """Threshold and target in minor units (rounded up, as compared exactly by the ledger), the
    price of one minor unit and the monthly limit (−1: none) in integer money units at a scale
    where both are whole."""
    threshold = to_minor_units(quantize(setting.threshold, precision, "up"), precision)
    target = to_minor_units(quantize(setting.target, precision, "up"), precision)
    limit = setting.monthly_spend_limit
    money_scale = max(
        precision + decimal_places(unit_price), 0 if limit is None else decimal_places(limit)
    )
    unit = int(unit_price.scaleb(money_scale - precision))
    scaled_limit = -1 if limit is None else int(limit.scaleb(money_scale))
    if scaled_limit >= 2**62:
        raise InputError(
            f"auto-recharge of customer {setting.customer_id!r}, currency "
            f"{setting.currency_id!r}: monthly_spend_limit too large for the forecast"
        )
    return threshold, target, unit, scaled_limit


def _bounds(unit_of_row: np.ndarray, n_units: int) -> np.ndarray:
    """Row offsets per unit of a table sorted on its unit column (n_units + 1 entries)."""
    return np.searchsorted(unit_of_row, np.arange(n_units + 1), side="left").astype(np.int64)


def _stream_key(customer_id: str, currency_id: str, seed: int) -> int:
    """A unit's random-stream key: its paths depend on the seed and on nothing but its own ids
    (not on which other customers are forecast with it)."""
    text = f"{seed}\x00{customer_id}\x00{currency_id}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


def _month_starts(as_of: datetime, end: datetime) -> np.ndarray:
    starts = []
    current = month_start(as_of)
    while True:
        current = add_months(current, 1)
        if current >= end:
            break
        starts.append(to_micros(current))
    return np.array(starts, dtype=np.int64)


def _days(value: datetime) -> int:
    return to_micros(value) // DAY_US
