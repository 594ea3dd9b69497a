"""The reference replay: SPEC §5 one happening at a time on `Decimal`, to be read and trusted.

Each customer is replayed on its own (customers never share credits); the ledger is the customers'
entries one customer after the other in customer id order, each customer's part in the order of
things of `order.happening_key`. The fast engine must produce exactly this ledger.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import numpy as np
import polars as pl

from pricing_lab.ledger import frames
from pricing_lab.ledger.calendar import add_months, add_years, month_start
from pricing_lab.ledger.inputs import PreparedReplay, consumption_records, prepared_grants
from pricing_lab.ledger.model import (
    DENIED_REASON,
    AutoRecharge,
    Consumption,
    EntryType,
    Grant,
)
from pricing_lab.ledger.order import (
    Happening,
    Phase,
    drawdown_key,
    happening_key,
    overdraft_grant_id,
    recharge_grant_id,
)
from pricing_lab.money import quantize
from pricing_lab.timeutil import as_utc

ZERO = Decimal(0)

# One ledger row before entry ids: timestamp, customer, currency, entry type, grant, amount,
# balance after, event id, feature id.
EntryRow = tuple[datetime, str, str, EntryType, Grant, Decimal, Decimal, str | None, str | None]
DeniedRow = tuple[str, str, datetime, str, Decimal, Decimal]


@dataclass(slots=True)
class _GrantState:
    """A grant during the replay: its remaining credits and whether it can be drawn from."""

    grant: Grant
    remaining: Decimal = ZERO
    active: bool = False  # took effect and has not expired or been voided


@dataclass(slots=True)
class _CustomerReplay:
    """The replay of one customer: balances per currency, grant states, the entries written."""

    customer_id: str
    prepared: PreparedReplay
    recharges: dict[str, AutoRecharge]  # by currency
    precisions: dict[str, int]
    unit_prices: dict[str, Decimal]
    entries: list[EntryRow] = field(default_factory=list)
    denied: list[DeniedRow] = field(default_factory=list)
    balances: dict[str, Decimal] = field(default_factory=lambda: defaultdict(lambda: ZERO))
    states: dict[str, _GrantState] = field(default_factory=dict)
    overdrafts: dict[str, _GrantState] = field(default_factory=dict)
    recharge_counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    recharge_spend: dict[tuple[str, datetime], Decimal] = field(
        default_factory=lambda: defaultdict(lambda: ZERO)
    )
    queue: list[tuple[tuple[object, ...], int, Happening]] = field(default_factory=list)
    # The rollover grant each period grant may roll into, by that grant's id (at its cap: not
    # scheduled with the others; it takes effect only when something rolls over, see `close`).
    rollover_slots: dict[str, Grant] = field(default_factory=dict)
    sequence: itertools.count[int] = field(default_factory=itertools.count)

    # -- scheduling -------------------------------------------------------------------------------

    def schedule(self, happening: Happening) -> None:
        heapq.heappush(self.queue, (happening_key(happening), next(self.sequence), happening))

    def schedule_grant(self, grant: Grant) -> None:
        """A grant's start, expiry and void, when they fall inside the horizon.

        A grant voided at or before it takes effect never takes effect and writes nothing; one that
        takes effect before the horizon's start or at/after its end is not part of the replay.
        """
        start, until = self.prepared.start, self.prepared.until
        effective = as_utc(grant.effective_at)
        voided = as_utc(grant.voided_at) if grant.voided_at is not None else None
        if effective < start or effective >= until or (voided is not None and voided <= effective):
            return
        self.states[grant.grant_id] = _GrantState(grant=grant)
        self.schedule(Happening(timestamp=effective, phase=Phase.TAKES_EFFECT, grant=grant))
        if grant.expires_at is not None and as_utc(grant.expires_at) < until:
            self.schedule(
                Happening(timestamp=as_utc(grant.expires_at), phase=Phase.EXPIRY, grant=grant)
            )
        if voided is not None and voided < until:
            self.schedule(Happening(timestamp=voided, phase=Phase.VOID, grant=grant))

    def run(self) -> None:
        while self.queue:
            _, _, happening = heapq.heappop(self.queue)
            if happening.consumption is not None:
                self.consume(happening.consumption)
                continue
            assert happening.grant is not None
            state = self.states[happening.grant.grant_id]
            if happening.phase == Phase.TAKES_EFFECT:
                self.take_effect(state, happening.timestamp)
            elif happening.phase == Phase.EXPIRY:
                self.close(state, happening.timestamp, "EXPIRED")
            else:
                self.close(state, happening.timestamp, "VOIDED")

    # -- writing ----------------------------------------------------------------------------------

    def write(
        self,
        at: datetime,
        state: _GrantState,
        entry_type: EntryType,
        amount: Decimal,
        event_id: str | None = None,
        feature_id: str | None = None,
    ) -> None:
        """One ledger entry: moves `amount` into (or out of) the grant and the balance."""
        currency = state.grant.currency_id
        state.remaining += amount
        self.balances[currency] += amount
        self.entries.append(
            (
                at,
                self.customer_id,
                currency,
                entry_type,
                state.grant,
                amount,
                self.balances[currency],
                event_id,
                feature_id,
            )
        )

    # -- the rules --------------------------------------------------------------------------------

    def take_effect(self, state: _GrantState, at: datetime) -> None:
        """GRANTED, then settle overdraft debt from the new grant at once (SPEC §5)."""
        state.active = True
        self.write(at, state, "GRANTED", state.grant.amount)
        overdraft = self.overdrafts.get(state.grant.currency_id)
        if overdraft is not None and overdraft.remaining < 0:
            settled = min(state.remaining, -overdraft.remaining)
            self.write(at, state, "CONSUMPTION_TRANSFER_SOURCE", -settled)
            self.write(at, overdraft, "CONSUMPTION_TRANSFER_TARGET", settled)

    def close(self, state: _GrantState, at: datetime, entry_type: EntryType) -> None:
        """EXPIRED / VOIDED: what remains leaves; an empty or closed grant writes nothing.

        A period grant expiring because its entitlement's next period starts (it has a rollover
        grant) first rolls over min(remaining, cap) (SPEC §5): ROLLED_OVER, then EXPIRED for the
        rest; the rollover grant, worth what rolled, takes effect at this instant's take-effect
        phase. Nothing rolled: no rollover grant.
        """
        if not state.active:
            return
        state.active = False
        slot = self.rollover_slots.get(state.grant.grant_id) if entry_type == "EXPIRED" else None
        rolled = min(state.remaining, slot.amount) if slot is not None else ZERO
        if rolled > 0:
            self.write(at, state, "ROLLED_OVER", -rolled)
        if state.remaining > 0:
            self.write(at, state, entry_type, -state.remaining)
        if slot is not None and rolled > 0:
            self.schedule_grant(dataclasses.replace(slot, amount=rolled))

    def drawdown(self, currency: str) -> list[_GrantState]:
        """The grants an event can use now, in draw-down order (never the OVERDRAFT grant)."""
        usable = [
            s
            for s in self.states.values()
            if s.active and s.remaining > 0 and s.grant.currency_id == currency
        ]
        return sorted(usable, key=lambda s: drawdown_key(s.grant))

    def consume(self, consumption: Consumption) -> None:
        """An event: deny it (block mode), or consume each feature's cost, then auto-recharge."""
        at = as_utc(consumption.timestamp)
        costs = sorted((c for c in consumption.costs if c.cost > 0), key=lambda c: c.feature_id)
        if not costs:
            return  # costs nothing: writes nothing, never denied, no auto-recharge
        totals: dict[str, Decimal] = defaultdict(lambda: ZERO)
        for cost in costs:
            totals[cost.currency_id] += cost.cost
        if self.prepared.enforcement == "block":
            short = [c for c in sorted(totals) if totals[c] > self.balances[c]]
            if short:
                currency = short[0]  # one row per denied event: the first short currency
                self.denied.append(
                    (
                        consumption.event_id,
                        self.customer_id,
                        at,
                        currency,
                        totals[currency],
                        self.balances[currency],
                    )
                )
                return
        for cost in costs:
            left = cost.cost
            for state in self.drawdown(cost.currency_id):
                if left == 0:
                    break
                taken = min(left, state.remaining)
                self.write(at, state, "CONSUMED", -taken, consumption.event_id, cost.feature_id)
                left -= taken
            if left > 0:  # only in overdraft mode: block mode checked the balance above
                overdraft = self.overdraft(cost.currency_id, at)
                self.write(at, overdraft, "CONSUMED", -left, consumption.event_id, cost.feature_id)
        for currency in sorted(totals):
            self.auto_recharge(currency, at)

    def overdraft(self, currency: str, at: datetime) -> _GrantState:
        """The customer's OVERDRAFT grant in `currency`, created on first need (no GRANTED)."""
        if currency not in self.overdrafts:
            grant = Grant(
                grant_id=overdraft_grant_id(self.customer_id, currency),
                customer_id=self.customer_id,
                currency_id=currency,
                amount=ZERO,
                type="OVERDRAFT",
                effective_at=at,
                source="overdraft",
            )
            self.overdrafts[currency] = _GrantState(grant=grant, active=True)
        return self.overdrafts[currency]

    def auto_recharge(self, currency: str, at: datetime) -> None:
        """After a consumed event: top the balance back up to the target (SPEC §5)."""
        setting = self.recharges.get(currency)
        if setting is None or self.balances[currency] >= setting.threshold:
            return
        precision = self.precisions[currency]
        unit_price = self.unit_prices[currency]
        amount = quantize(setting.target - self.balances[currency], precision, "up")
        month = (currency, month_start(at))
        limit = setting.monthly_spend_limit
        if limit is not None and self.recharge_spend[month] + amount * unit_price > limit:
            amount = quantize((limit - self.recharge_spend[month]) / unit_price, precision, "down")
        if amount <= 0:
            return
        self.recharge_spend[month] += amount * unit_price
        number = self.recharge_counts[currency]
        self.recharge_counts[currency] += 1
        expires = {
            "none": None,
            "1_month": add_months(at, 1),
            "1_year": add_years(at, 1),
        }[setting.grant_expiry]
        grant = Grant(
            grant_id=recharge_grant_id(self.customer_id, currency, number),
            customer_id=self.customer_id,
            currency_id=currency,
            amount=amount,
            type="PAID",
            priority=0,
            effective_at=at,
            expires_at=expires,
            cost_basis=unit_price,
            source="auto_recharge",
        )
        state = _GrantState(grant=grant)
        self.states[grant.grant_id] = state
        self.take_effect(state, at)  # right after the event, before anything else at `at`
        if expires is not None and expires < self.prepared.until:
            self.schedule(Happening(timestamp=expires, phase=Phase.EXPIRY, grant=grant))


def replay_reference(
    prepared: PreparedReplay, progress: Callable[[int, int], None] | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The ledger and denied events of a prepared replay, computed one happening at a time."""
    start, until = prepared.start, prepared.until
    grants_by_customer: dict[str, list[Grant]] = defaultdict(list)
    for grant in prepared_grants(prepared):
        grants_by_customer[grant.customer_id].append(grant)
    events_by_customer: dict[str, list[Consumption]] = defaultdict(list)
    for consumption in consumption_records(prepared):
        if start <= as_utc(consumption.timestamp) < until:
            events_by_customer[consumption.customer_id].append(consumption)
    recharges: dict[str, dict[str, AutoRecharge]] = defaultdict(dict)
    for setting in prepared.auto_recharges:
        recharges[setting.customer_id][setting.currency_id] = setting
    precisions = {c.id: c.precision for c in prepared.currencies}
    unit_prices = {c.id: c.unit_price for c in prepared.currencies}
    rolls_from = dict(prepared.rollovers.select("grant_id", "rolls_from").iter_rows())
    entries: list[EntryRow] = []
    denied: list[DeniedRow] = []
    customers = sorted(set(grants_by_customer) | set(events_by_customer))
    for done, customer_id in enumerate(customers):
        customer = _CustomerReplay(
            customer_id=customer_id,
            prepared=prepared,
            recharges=recharges.get(customer_id, {}),
            precisions=precisions,
            unit_prices=unit_prices,
        )
        for grant in grants_by_customer.get(customer_id, []):
            if grant.grant_id in rolls_from:
                customer.rollover_slots[rolls_from[grant.grant_id]] = grant
            else:
                customer.schedule_grant(grant)
        for consumption in events_by_customer.get(customer_id, []):
            customer.schedule(
                Happening(
                    timestamp=as_utc(consumption.timestamp),
                    phase=Phase.EVENT,
                    consumption=consumption,
                )
            )
        customer.run()
        entries.extend(customer.entries)
        denied.extend(customer.denied)
        if progress is not None:
            progress(done + 1, len(customers))
    return _ledger_frame(entries, prepared), _denied_frame(denied, prepared)


def _scaled(amount: Decimal, scale: int) -> int:
    return int(amount.scaleb(scale))


def _ledger_frame(entries: list[EntryRow], prepared: PreparedReplay) -> pl.DataFrame:
    scale = prepared.scale
    schema = frames.ledger_schema(scale)
    if not entries:
        return pl.DataFrame(schema=schema)
    columns = list(zip(*entries, strict=True))
    grants: tuple[Grant, ...] = columns[4]
    return pl.DataFrame(
        [
            pl.Series("entry_id", np.arange(1, len(entries) + 1, dtype=np.int64)),
            pl.Series("timestamp", columns[0], dtype=frames.TIMESTAMP),
            pl.Series("customer_id", columns[1], dtype=pl.String),
            pl.Series("currency_id", columns[2], dtype=pl.String),
            pl.Series("entry_type", columns[3], dtype=pl.String),
            pl.Series("grant_id", [g.grant_id for g in grants], dtype=pl.String),
            pl.Series("grant_type", [g.type for g in grants], dtype=pl.String),
            pl.Series("grant_source", [g.source for g in grants], dtype=pl.String),
            frames.decimal_series(
                "amount", np.array([_scaled(a, scale) for a in columns[5]], dtype=np.int64), scale
            ),
            frames.decimal_series(
                "balance_after",
                np.array([_scaled(a, scale) for a in columns[6]], dtype=np.int64),
                scale,
            ),
            pl.Series("event_id", columns[7], dtype=pl.String),
            pl.Series("feature_id", columns[8], dtype=pl.String),
            pl.Series("scenario", [prepared.scenario] * len(entries), dtype=pl.String),
        ]
    ).cast(dict(schema))  # type: ignore[arg-type]


def _denied_frame(denied: list[DeniedRow], prepared: PreparedReplay) -> pl.DataFrame:
    scale = prepared.scale
    schema = frames.denied_schema(scale)
    if not denied:
        return pl.DataFrame(schema=schema)
    columns = list(zip(*denied, strict=True))
    return pl.DataFrame(
        [
            pl.Series("event_id", columns[0], dtype=pl.String),
            pl.Series("customer_id", columns[1], dtype=pl.String),
            pl.Series("timestamp", columns[2], dtype=frames.TIMESTAMP),
            pl.Series("reason", [DENIED_REASON] * len(denied), dtype=pl.String),
            pl.Series("currency_id", columns[3], dtype=pl.String),
            frames.decimal_series(
                "cost", np.array([_scaled(a, scale) for a in columns[4]], dtype=np.int64), scale
            ),
            frames.decimal_series(
                "balance", np.array([_scaled(a, scale) for a in columns[5]], dtype=np.int64), scale
            ),
            pl.Series("scenario", [prepared.scenario] * len(denied), dtype=pl.String),
        ]
    )
