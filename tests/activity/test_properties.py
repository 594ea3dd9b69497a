"""Random replays: the vectorised stream equals a plain row-by-row reading of SPEC §6 written
here, one entry at a time on Python `Decimal`s (the ledger scenarios of tests/ledger)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import Any

import polars as pl
from hypothesis import HealthCheck, given, settings

from pricing_lab.activity import KINDS, activity
from pricing_lab.errors import ValidationError
from pricing_lab.ledger import ReplayInput, replay
from pricing_lab.ledger.calendar import add_months, add_years
from pricing_lab.ledger.recurring import recurring_grants
from tests.ledger.test_properties import scenarios

THRESHOLDS = {"CR": (Decimal("5"), Decimal("12.5")), "TK": (Decimal("3"),)}
DAYS = 7
TRANSFERS = ("CONSUMPTION_TRANSFER_SOURCE", "CONSUMPTION_TRANSFER_TARGET")


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(scenarios())
def test_the_stream_equals_a_row_by_row_reading(replay_input: ReplayInput) -> None:
    try:
        result = replay(replay_input, engine="fast", check=False)
    except ValidationError:
        return  # an explicit `until` before the start
    thresholds = {c.id: THRESHOLDS[c.id] for c in replay_input.currencies}
    stream = activity(
        result.ledger,
        result.grants,
        replay_input.auto_recharges,
        replay_input.currencies,
        thresholds=thresholds,
        ending_soon_days=DAYS,
        until=result.until,
    )
    got = [
        (r["timestamp"], r["customer_id"], r["currency_id"], r["kind"], r["grant_id"],
         r["amount"], r["balance"], r["threshold"], r["money"])
        for r in stream.iter_rows(named=True)
    ]  # fmt: skip
    # Rollover grants expire with the next period of their own entitlement (tested by hand in
    # tests/ledger/test_rollover.py): their expiry is read from the replay's grants output.
    rolled = result.grants.filter(pl.col("source") == "rollover")
    expiries = dict(zip(rolled["grant_id"], rolled["expires_at"], strict=True))
    assert got == _reference(replay_input, result.ledger.rows(named=True), result.until, expiries)
    assert stream["activity_id"].to_list() == list(range(1, len(got) + 1))


def _reference(
    replay_input: ReplayInput,
    entries: list[dict[str, Any]],
    until: datetime,
    rollover_expiries: dict[str, datetime | None],
) -> list[tuple[Any, ...]]:
    rank = {kind: n for n, kind in enumerate(KINDS)}
    price = {c.id: c.unit_price for c in replay_input.currencies}
    precision = {c.id: c.precision for c in replay_input.currencies}
    settings_of = {(s.customer_id, s.currency_id): s for s in replay_input.auto_recharges}
    out: list[tuple[tuple[Any, ...], tuple[Any, ...]]] = []
    remaining: dict[str, Decimal] = {}
    reported: set[tuple[str, str, int, int]] = set()

    def add(i: int, kind: str, entry: dict[str, Any], **fields: Any) -> None:
        row = {
            "grant_id": entry["grant_id"], "amount": entry["amount"],
            "balance": entry["balance_after"], "threshold": None, "money": None, **fields,
        }  # fmt: skip
        threshold = row["threshold"]
        when, customer, currency = entry["timestamp"], entry["customer_id"], entry["currency_id"]
        highest_first = -(threshold if threshold is not None else Decimal(-1))
        key = (2 * i, when, customer, rank[kind], currency, highest_first, row["grant_id"] or "")
        shown = (row["grant_id"], row["amount"], row["balance"], threshold, row["money"])
        out.append((key, (when, customer, currency, kind, *shown)))

    for i, e in enumerate(entries):
        amount, after = e["amount"], e["balance_after"]
        before = after - amount
        kind_of_entry, grant_id = e["entry_type"], e["grant_id"]
        if kind_of_entry not in TRANSFERS:
            for t in sorted(THRESHOLDS[e["currency_id"]], reverse=True):
                if before >= t > after:
                    add(i, "credits.low_balance", e, grant_id=None, threshold=t)
        if kind_of_entry == "CONSUMED" and before > 0 >= after:
            add(i, "credits.depleted", e, grant_id=None)
        was = remaining.get(grant_id, Decimal(0))
        now = remaining[grant_id] = was + amount
        overdraft = e["grant_type"] == "OVERDRAFT"
        if overdraft and was >= 0 > now:
            add(i, "credits.overdraft_started", e)
        if overdraft and was < 0 <= now:
            add(i, "credits.overdraft_settled", e)
        names = {
            "GRANTED": "granted",
            "EXPIRED": "expired",
            "VOIDED": "voided",
            "ROLLED_OVER": "rolled_over",
        }
        if kind_of_entry in names:
            add(i, f"grant.{names[kind_of_entry]}", e)
        if kind_of_entry in ("CONSUMED", TRANSFERS[0]) and not overdraft and was > 0 == now:
            add(i, "grant.emptied", e)
        if kind_of_entry == "GRANTED" and e["grant_source"] == "auto_recharge":
            add(i, "auto_recharge.issued", e, money=amount * price[e["currency_id"]])
        setting = settings_of.get((e["customer_id"], e["currency_id"]))
        if kind_of_entry == "CONSUMED" and setting and setting.monthly_spend_limit is not None:
            later = [
                (j, f) for j, f in enumerate(entries[i + 1 :], start=i + 1)
                if f["customer_id"] == e["customer_id"] and f["timestamp"] == e["timestamp"]
            ]  # fmt: skip
            same_event = [f for _, f in later if f["event_id"] == e["event_id"]]
            last_here = not any(f["currency_id"] == e["currency_id"] for f in same_event)
            recharge_row = None
            for j, f in later:
                if f["entry_type"] == "CONSUMED" and f["event_id"] != e["event_id"]:
                    break
                if (f["entry_type"], f["grant_source"], f["currency_id"]) == (
                    "GRANTED", "auto_recharge", e["currency_id"]
                ):  # fmt: skip
                    recharge_row = j
                    break
            issued = entries[recharge_row]["amount"] if recharge_row is not None else Decimal(0)
            month = (e["customer_id"], e["currency_id"], e["timestamp"].year, e["timestamp"].month)
            if (
                last_here
                and after < setting.threshold
                and after + issued < setting.target
                and month not in reported
            ):
                reported.add(month)
                wanted = (setting.target - after).quantize(
                    Decimal(1).scaleb(-precision[e["currency_id"]]), rounding=ROUND_CEILING
                )
                at = recharge_row if recharge_row is not None else i
                add(
                    at,
                    "auto_recharge.spend_limit_reached",
                    entries[at],
                    grant_id=None if recharge_row is None else entries[at]["grant_id"],
                    amount=wanted - issued,
                    balance=after + issued,
                    threshold=setting.threshold,
                )
    for grant_id, customer, currency, expires in _expiring(
        replay_input, entries, until, rollover_expiries
    ):
        warn = expires - timedelta(days=DAYS)
        if warn >= until:
            continue
        seen = [(i, e) for i, e in enumerate(entries) if e["timestamp"] <= warn]
        left = sum((e["amount"] for _, e in seen if e["grant_id"] == grant_id), Decimal(0))
        if not any(e["grant_id"] == grant_id for _, e in seen) or left <= 0:
            continue
        mine = [e for _, e in seen if (e["customer_id"], e["currency_id"]) == (customer, currency)]
        balance = mine[-1]["balance_after"] if mine else Decimal(0)
        before = [
            i for i, e in enumerate(entries)
            if (e["timestamp"], e["customer_id"]) <= (warn, customer)
        ]  # fmt: skip
        position = 2 * before[-1] + 1 if before else -1
        key = (position, warn, customer, rank["grant.ending_soon"], currency, Decimal(1), grant_id)
        out.append((key, (warn, customer, currency, "grant.ending_soon", grant_id, left,
                          balance, None, None)))  # fmt: skip
    return [row for _, row in sorted(out, key=lambda item: item[0])]


def _expiring(
    replay_input: ReplayInput,
    entries: list[dict[str, Any]],
    until: datetime,
    rollover_expiries: dict[str, datetime | None],
) -> list[tuple[str, str, str, datetime]]:
    """Every grant with an expiry: input grants, recurring periods, auto-recharge grants,
    rollover grants (`rollover_expiries`)."""
    grants = [*replay_input.grants, *recurring_grants(replay_input.recurring, until)]
    found = [
        (g.grant_id, g.customer_id, g.currency_id, g.expires_at)
        for g in grants
        if g.expires_at is not None
    ]
    expiry = {(s.customer_id, s.currency_id): s.grant_expiry for s in replay_input.auto_recharges}
    for e in entries:
        if e["entry_type"] == "GRANTED" and e["grant_source"] == "auto_recharge":
            rule = expiry[(e["customer_id"], e["currency_id"])]
            if rule != "none":
                step = (
                    add_months(e["timestamp"], 1)
                    if rule == "1_month"
                    else add_years(e["timestamp"], 1)
                )
                found.append((e["grant_id"], e["customer_id"], e["currency_id"], step))
        expires = rollover_expiries.get(e["grant_id"])
        if e["entry_type"] == "GRANTED" and e["grant_source"] == "rollover" and expires:
            found.append((e["grant_id"], e["customer_id"], e["currency_id"], expires))
    return found
