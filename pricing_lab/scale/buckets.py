"""Customer buckets: a stable hash of `customer_id`, and the bucket layout on disk.

A bucket is every customer whose id hashes to it, with everything their replay needs: costed
consumptions, grants, the recurring entitlements of their subscriptions, auto-recharge settings
and the subscriptions themselves (for the per-plan totals). Customers never share credits
(SPEC §5), so a bucket replays on its own and gives exactly its customers' part of the whole
replay. The replay-wide values (horizon, currencies, enforcement, scenario, engine, decimal
places of amounts and money, the activity stream's options) are decided once, before any bucket
runs, and written in the manifest. Layout under a job's root (a `storage.Store`):

    manifest.json                       replay-wide values, bucket count, format version
    currencies.parquet                  the catalog's credit currencies
    serving.parquet                     costs to serve of the events not rejected (`margin`)
    inputs/bucket=0042/consumptions.parquet   costed, in customer, time, event order
    inputs/bucket=0042/grants.parquet         (and recurring, auto_recharges, subscriptions)
    results/bucket=0042/…                     written by the bucket's replay (`bucket_replay`)

The hash is the first 8 bytes of SHA-256 of the UTF-8 id, big-endian, modulo the bucket count:
the same bucket on every machine, Python version and run (Python's `hash` is salted per process).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import polars as pl

from pricing_lab.activity.stream import ActivityOptions
from pricing_lab.catalog.model import CreditCurrency
from pricing_lab.ledger.model import AutoRecharge, Grant, RecurringEntitlement, Subscription
from pricing_lab.scale.records import records_table, table_records
from pricing_lab.scale.storage import Store

FORMAT_VERSION = 3  # 3: recurring entitlements carry their rollover
ROW_GROUP_ROWS = 1 << 16  # rows per row group of the bucket files: read back a group at a time
MANIFEST = "manifest.json"
CURRENCIES = "currencies.parquet"
SERVING = "serving.parquet"
_RECORD_FILES: dict[str, type] = {
    "grants": Grant,
    "recurring": RecurringEntitlement,
    "auto_recharges": AutoRecharge,
    "subscriptions": Subscription,
}


def bucket_of(customer_id: str, buckets: int) -> int:
    """The bucket (0 … buckets − 1) of one customer id: stable across machines and runs."""
    return customer_hash(customer_id) % buckets


def customer_hash(customer_id: str) -> int:
    """The number a customer's bucket is taken modulo the bucket count of: the first 8 bytes of
    the SHA-256 of the UTF-8 id, big-endian."""
    digest = hashlib.sha256(customer_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def bucket_folder(bucket: int) -> str:
    """The folder name of one bucket, e.g. `bucket=0042` (Hive style, sorted as numbers)."""
    return f"bucket={bucket:04d}"


def input_path(bucket: int, name: str) -> str:
    return f"inputs/{bucket_folder(bucket)}/{name}.parquet"


def result_path(bucket: int, name: str) -> str:
    return f"results/{bucket_folder(bucket)}/{name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """The replay-wide values every bucket shares, decided before any bucket runs."""

    buckets: int
    start: datetime
    until: datetime
    enforcement: str
    scenario: str
    engine: str
    scale: int  # decimal places of credit amounts (the largest currency precision)
    money_scale: int  # decimal places of money columns over the whole replay's grants
    activity: ActivityOptions | None = None  # None: the replay derives no activity stream

    def to_json(self) -> str:
        values = {
            "format_version": FORMAT_VERSION,
            "buckets": self.buckets,
            "start": self.start.isoformat(),
            "until": self.until.isoformat(),
            "enforcement": self.enforcement,
            "scenario": self.scenario,
            "engine": self.engine,
            "scale": self.scale,
            "money_scale": self.money_scale,
            "activity": None if self.activity is None else _activity_json(self.activity),
        }
        return json.dumps(values, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        values = json.loads(text)
        version = values.pop("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"bucket manifest format {version}, this version reads {FORMAT_VERSION}"
            )
        values["start"] = datetime.fromisoformat(values["start"])
        values["until"] = datetime.fromisoformat(values["until"])
        chosen = values.pop("activity")
        return cls(**values, activity=None if chosen is None else _activity_options(chosen))


def _activity_json(options: ActivityOptions) -> dict[str, Any]:
    thresholds = {c: [str(t) for t in ts] for c, ts in sorted(options.thresholds.items())}
    return {"thresholds": thresholds, "ending_soon_days": options.ending_soon_days}


def _activity_options(values: dict[str, Any]) -> ActivityOptions:
    return ActivityOptions(
        thresholds={c: tuple(Decimal(t) for t in ts) for c, ts in values["thresholds"].items()},
        ending_soon_days=int(values["ending_soon_days"]),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class BucketInputs:
    """Everything one bucket's customers need for their replay, besides the manifest."""

    consumptions: pl.DataFrame
    grants: tuple[Grant, ...] = ()
    recurring: tuple[RecurringEntitlement, ...] = ()
    auto_recharges: tuple[AutoRecharge, ...] = ()
    subscriptions: tuple[Subscription, ...] = ()


def write_job_header(
    store: Store, manifest: Manifest, currencies: Iterable[CreditCurrency]
) -> None:
    """The manifest and the currencies: what every bucket reads first."""
    table = records_table(tuple(currencies), CreditCurrency)
    store.write_table(CURRENCIES, table, row_group_rows=ROW_GROUP_ROWS)
    store.write_text(MANIFEST, manifest.to_json())


def read_job_header(store: Store) -> tuple[Manifest, tuple[CreditCurrency, ...]]:
    manifest = Manifest.from_json(store.read_text(MANIFEST))
    return manifest, table_records(store.read_table(CURRENCIES), CreditCurrency)


def write_customer_records(
    store: Store,
    bucket: int,
    *,
    grants: Iterable[Grant],
    recurring: Iterable[RecurringEntitlement],
    auto_recharges: Iterable[AutoRecharge],
    subscriptions: Iterable[Subscription],
) -> None:
    """One bucket's customer inputs (every file written, empty ones too: a bucket is whole)."""
    given = {
        "grants": tuple(grants),
        "recurring": tuple(recurring),
        "auto_recharges": tuple(auto_recharges),
        "subscriptions": tuple(subscriptions),
    }
    for name, kind in _RECORD_FILES.items():
        table = records_table(given[name], kind)
        store.write_table(input_path(bucket, name), table, row_group_rows=ROW_GROUP_ROWS)


def write_consumptions(store: Store, bucket: int, consumptions: pl.DataFrame) -> None:
    """One bucket's costed consumptions (in costing's order: customer, time, event)."""
    store.write_frame(
        input_path(bucket, "consumptions"), consumptions, row_group_rows=ROW_GROUP_ROWS
    )


def read_bucket_inputs(store: Store, bucket: int) -> BucketInputs:
    """What `write_customer_records` and `write_consumptions` wrote for `bucket`."""
    frame = store.read_frame(input_path(bucket, "consumptions"))
    records: dict[str, Any] = {
        name: table_records(store.read_table(input_path(bucket, name)), kind)
        for name, kind in _RECORD_FILES.items()
    }
    return BucketInputs(consumptions=frame, **records)
