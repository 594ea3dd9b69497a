"""Customer buckets: a stable hash, whole customers per bucket, the horizon decided up front."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from pricing_lab.catalog.model import Rollover
from pricing_lab.ledger.model import AutoRecharge, Grant, RecurringEntitlement, Subscription
from pricing_lab.scale.buckets import bucket_of, read_bucket_inputs, read_job_header
from pricing_lab.scale.records import records_table, table_records
from pricing_lab.scale.run import bucket_count, write_buckets
from pricing_lab.scale.storage import Store
from pricing_lab.simulation.simulate import simulate
from tests.scale.helpers import tie_inputs
from tests.simulation.helpers import catalog

# Pinned: a bucket must not move between machines, Python versions or releases, or buckets
# written by one run could not be read by another.
PINNED = {"acme": (0, 0, 872), "ann": (2, 14, 870), "Ünïcødé-客户": (1, 5, 317), "": (1, 4, 652)}


def test_the_bucket_of_a_customer_is_pinned_and_the_same_in_every_process() -> None:
    for customer, expected in PINNED.items():
        assert tuple(bucket_of(customer, n) for n in (3, 16, 1000)) == expected
    code = "from pricing_lab.scale import bucket_of; print(bucket_of('ann', 1000))"
    for seed in ("1",):  # this process's hash seed is random: another seed, the same bucket
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == "870"


def test_customer_records_survive_parquet_exactly() -> None:
    when = datetime(2024, 1, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    grants = (
        Grant(
            grant_id="g1",
            customer_id="ann",
            currency_id="CR",
            amount=Decimal("1.50"),
            type="PAID",
            effective_at=when,
            expires_at=None,
            cost_basis=Decimal("0.0100"),
            priority=3,
        ),
    )
    subscriptions = (
        Subscription(
            subscription_id="s", customer_id="ann", plan_id="pro", start=when, addons=("a", "b")
        ),
    )
    recharges = (
        AutoRecharge(
            customer_id="ann", currency_id="CR", threshold=Decimal("1E+1"), target=Decimal(200)
        ),
    )
    recurring = tuple(
        RecurringEntitlement(
            customer_id="ann",
            source_id="pro",
            source_kind="plan",
            currency_id="CR",
            amount=Decimal("100.0"),
            cadence="monthly",
            start=when,
            rollover=rollover,
        )
        for rollover in (None, Rollover(max_percent=Decimal("50.0")))
    )
    for records, kind in (
        (grants, Grant),
        (subscriptions, Subscription),
        (recharges, AutoRecharge),
        (recurring, RecurringEntitlement),
    ):
        back = table_records(records_table(records, kind), kind)
        assert back == records
        assert [str(x) for r in back for x in vars_of(r)] == [
            str(x) for r in records for x in vars_of(r)
        ]  # 1.50 stays 1.50, not 1.5


def vars_of(record: object) -> list[object]:
    return [getattr(record, name) for name in record.__slots__]  # type: ignore[attr-defined]


def test_each_bucket_holds_whole_customers_and_the_manifest_the_whole_horizon(
    tmp_path: Path,
) -> None:
    con, report, customers = tie_inputs()
    store = Store.at(tmp_path / "job")
    job = write_buckets(con, catalog(), customers, store=store, buckets=3, ingest=report)
    assert sorted(p.name for p in (tmp_path / "job" / "inputs").iterdir()) == [
        "bucket=0000",
        "bucket=0001",
        "bucket=0002",
    ]
    seen: dict[str, int] = {}
    for bucket in range(3):
        inputs = read_bucket_inputs(store, bucket)
        owners = (
            set(inputs.consumptions["customer_id"])
            | {g.customer_id for g in inputs.grants}
            | {s.customer_id for s in inputs.subscriptions}
            | {r.customer_id for r in inputs.auto_recharges}
            | {r.customer_id for r in inputs.recurring}
        )
        for customer in owners:
            assert customer not in seen, f"{customer} in buckets {seen.get(customer)} and {bucket}"
            seen[customer] = bucket
            assert bucket_of(customer, 3) == bucket
    assert set(seen) == {"ann", "bea", "cid", "dov", "eve", "fay", "zed"}
    # Every costed event is in exactly one bucket; rejected ones in none.
    whole = simulate(con, catalog(), customers, ingest=report)
    costed = pl.concat(read_bucket_inputs(store, b).consumptions for b in range(3))
    rejected = set(whole.rejected_events["event_id"])
    accepted = set(con.table("events").pl()["event_id"])
    assert set(costed["event_id"]) == accepted - rejected
    assert set(job.rejected_events["event_id"]) == set(whole.rejected_events["event_id"])
    assert not set(costed["event_id"]) & set(whole.rejected_events["event_id"])
    # The horizon is the whole replay's, decided before any bucket ran.
    manifest, currencies = read_job_header(store)
    assert (manifest.start, manifest.until) == (whole.replay.start, whole.replay.until)
    assert currencies == catalog().currencies
    assert sum(job.bucket_events) == report.accepted


@pytest.mark.parametrize("buckets", [1, 16])
def test_empty_buckets_are_whole_too(tmp_path: Path, buckets: int) -> None:
    con, report, customers = tie_inputs()
    store = Store.at(tmp_path)
    write_buckets(con, catalog(), customers, store=store, buckets=buckets, ingest=report)
    filled = [read_bucket_inputs(store, b).consumptions.height for b in range(buckets)]
    assert len(filled) == buckets and sum(filled) > 0
    if buckets == 16:
        assert 0 in filled  # seven customers in sixteen buckets: some are empty, and readable


def test_auto_buckets_follow_the_memory_model_and_keep_every_worker_busy() -> None:
    # Tasks of 2 GiB: half of (2 GiB − 512 MiB) / 900 bytes = 894,784 events per bucket.
    ten_million = {f"c{i}": 1_000 for i in range(10_000)}
    assert bucket_count(ten_million, parallelism=2) == 12
    hundred_million = {f"c{i}": 1_000 for i in range(100_000)}
    assert bucket_count(hundred_million, parallelism=2) == 112  # same size: flat per bucket
    # Tasks given less memory get smaller buckets: half of (1 GiB − 512 MiB) / 900 = 298,261.
    assert bucket_count(ten_million, parallelism=2, task_memory=1 << 30) == 34
    # Few events: still two buckets per worker, so the load balances.
    assert bucket_count({"a": 10, "b": 5}, parallelism=8) == 16
    assert bucket_count(ten_million, buckets=3, parallelism=2) == 3  # as asked


def test_auto_buckets_keep_two_big_customers_apart_when_together_they_pass_the_task_memory() -> (
    None
):
    # 10M events as above (12 buckets), plus two customers of 1.2M events that hash into the
    # same one of 12 buckets: together 2.4M events, over a 2 GiB task by the memory model (512
    # MiB + 900 bytes per event), each alone under it.
    events = {f"c{i}": 1_000 for i in range(10_000)}
    same = [
        c for c in (f"big{i}" for i in range(1_000)) if bucket_of(c, 12) == bucket_of("big0", 12)
    ]
    big = {same[0]: 1_200_000, same[1]: 1_200_000}
    count = bucket_count({**events, **big}, parallelism=2)
    assert count > 12 and bucket_of(same[0], count) != bucket_of(same[1], count)
    sizes = [0] * count
    for customer, n in {**events, **big}.items():
        sizes[bucket_of(customer, count)] += n
    assert 512 * 2**20 + 900 * max(sizes) <= 2 * 2**30
    # A customer bigger than the 2 GiB aim alone (but within the default 8 GiB task) keeps its
    # bucket; the count is not raised for it.
    assert bucket_count({**events, "huge": 3_000_000}, parallelism=2) == 15
