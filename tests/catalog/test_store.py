"""The versioned DuckDB catalog store: diffs, versions, history, archive rules, group expansion."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pricing_lab.catalog.model import (
    BooleanEntitlement,
    Catalog,
    ConfigurationEntitlement,
    CreditEntitlement,
    FeatureGroup,
    MeteredEntitlement,
)
from pricing_lab.catalog.store import CatalogStore, open_store
from pricing_lab.catalog.yaml_format import dump_catalog, load_catalog, load_catalog_file
from pricing_lab.errors import InputError, ValidationError
from tests.conftest import EXAMPLES

SAMPLE = EXAMPLES / "ai_product.yaml"
T1 = datetime(2024, 1, 1, tzinfo=UTC)
T2 = datetime(2024, 2, 1, tzinfo=UTC)
T3 = datetime(2024, 3, 1, tzinfo=UTC)

SMALL = """\
currencies:
  - {id: credits, name: Credits, unit_price: 0.001}
features:
  - {id: sso, name: SSO, type: boolean}
  - {id: seats, name: Seats, type: configuration}
  - {id: chat, name: Chat, type: metered, meter: {source: events, event_name: llm.request}}
  - {id: images, name: Images, type: metered, meter: {source: events, event_name: image.generated}}
feature_groups:
  - {id: ai, name: AI, features: [chat]}
plans:
  - id: pro
    name: Pro
    price: {amount: 20}
    entitlements:
      - {kind: group, group: ai}
      - {kind: configuration, feature: seats, value: 5}
      - {kind: credit, currency: credits, amount: 1000}
    credit_rates:
      - {feature: chat, mode: per_unit, per_unit: 2.5}
  - id: team
    name: Team
    entitlements:
      - {kind: boolean, feature: sso}
"""


@pytest.fixture()
def store() -> CatalogStore:
    return open_store()


def small() -> Catalog:
    return load_catalog(SMALL)


def test_yaml_store_yaml_round_trip(store: CatalogStore) -> None:
    catalog = load_catalog_file(SAMPLE)
    store.apply(catalog, at=T1)
    assert store.current() == catalog
    assert dump_catalog(store.current()) == dump_catalog(catalog)


def test_amounts_with_38_digits_are_read_back_exactly(store: CatalogStore) -> None:
    # 26 integer digits and 12 decimal places: more digits than Python's default precision (28).
    price = Decimal("12345678901234567890123456.123456789012")
    catalog = load_catalog(
        f"currencies:\n  - {{id: credits, name: Credits, unit_price: {price}}}\n"
    )
    store.apply(catalog, at=T1)
    assert store.current().currency("credits").unit_price == price
    assert not store.apply(catalog, at=T2).has_changes


def test_round_trip_survives_reopening_a_file_store(tmp_path: Path) -> None:
    catalog = load_catalog_file(SAMPLE)
    with open_store(tmp_path / "cat.duckdb") as first:
        first.apply(catalog, at=T1)
    with open_store(tmp_path / "cat.duckdb", read_only=True) as second:
        assert second.current() == catalog


def test_applying_the_same_catalog_twice_changes_nothing(store: CatalogStore) -> None:
    first = store.apply(small(), at=T1)
    assert first.counts()["created"] == 8  # 1 currency, 4 features, 1 group, 2 plans
    tables_before = store.tables()
    second = store.apply(small(), at=T2)
    assert not second.has_changes
    assert {c.change for c in second.changes} == {"unchanged"}
    for name, frame in store.tables().items():
        assert frame.equals(tables_before[name]), name


def test_diff_does_not_write(store: CatalogStore) -> None:
    diff = store.diff(small())
    assert diff.counts()["created"] == 8 and not diff.applied
    assert store.is_empty()


def test_changing_a_group_makes_version_2_and_keeps_version_1(store: CatalogStore) -> None:
    store.apply(small(), at=T1)
    changed = small()
    changed = dataclasses.replace(
        changed,
        feature_groups=(FeatureGroup(id="ai", name="AI", features=("chat", "images")),),
    )
    diff = store.apply(changed, at=T2)
    group_change = next(c for c in diff.changes if c.id == "ai")
    assert (group_change.change, group_change.version_before, group_change.version_after) == (
        "changed",
        1,
        2,
    )
    assert group_change.fields == ("features",)
    assert [c.change for c in diff.changes if c.id != "ai"] == ["unchanged"] * 7
    assert store.group_version("ai", 1).features == ("chat",)
    assert store.group_version("ai", 2).features == ("chat", "images")
    assert store.group_version("ai").features == ("chat", "images")
    members = store.tables()["feature_group_members"]
    assert members.select("version", "position", "feature_id").rows() == [
        (1, 0, "chat"),
        (2, 0, "chat"),
        (2, 1, "images"),
    ]
    # The plan itself did not change: still version 1.
    assert store.version_count("plan", "pro") == 1


def test_changing_a_plan_publishes_a_new_version(store: CatalogStore) -> None:
    store.apply(small(), at=T1)
    catalog = small()
    pro = catalog.plan("pro")
    cheaper = dataclasses.replace(pro, price=dataclasses.replace(pro.price, amount=Decimal(15)))  # type: ignore[arg-type]
    store.apply(dataclasses.replace(catalog, plans=(cheaper, catalog.plan("team"))), at=T2)
    assert store.plan_version("pro", 1).price.amount == Decimal(20)  # type: ignore[union-attr]
    assert store.plan_version("pro", 2).price.amount == Decimal(15)  # type: ignore[union-attr]
    versions = store.versions("plan")
    assert versions.filter(pl.col("plan_id") == "pro")["version"].to_list() == [1, 2]
    assert versions["price_amount"].dtype == pl.Decimal(38, 12)
    history = store.history("plan", "pro")
    assert history.select("event", "version").rows() == [("created", 1), ("changed", 2)]
    assert history["occurred_at"].to_list() == [datetime(2024, 1, 1), datetime(2024, 2, 1)]


def test_entities_missing_from_the_file_are_kept(store: CatalogStore) -> None:
    store.apply(small(), at=T1)
    catalog = small()
    diff = store.apply(dataclasses.replace(catalog, plans=(catalog.plan("pro"),)), at=T2)
    assert next(c for c in diff.changes if c.id == "team").change == "not_in_file"
    assert [p.id for p in store.current().plans] == ["pro", "team"]


def test_group_expands_at_the_version_in_force(store: CatalogStore) -> None:
    store.apply(small(), at=T1)
    wider = dataclasses.replace(
        small(), feature_groups=(FeatureGroup(id="ai", name="AI", features=("chat", "images")),)
    )
    store.apply(wider, at=T3)
    seats = ConfigurationEntitlement(feature="seats", value=Decimal(5))
    grant = CreditEntitlement(currency="credits", amount=Decimal(1000))
    assert store.expanded_entitlements("pro", 1, at=T2) == (
        MeteredEntitlement(feature="chat"),
        seats,
        grant,
    )
    assert store.expanded_entitlements("pro", 1, at=T3) == (
        MeteredEntitlement(feature="chat"),
        MeteredEntitlement(feature="images"),
        seats,
        grant,
    )
    assert store.version_at("feature_group", "ai", T2) == 1
    assert store.version_at("feature_group", "ai", datetime(2023, 1, 1)) is None


def test_a_direct_grant_wins_over_the_group(store: CatalogStore) -> None:
    catalog = small()
    pro = catalog.plan("pro")
    limited = MeteredEntitlement(feature="chat", usage_limit=Decimal(100))
    pro = dataclasses.replace(pro, entitlements=(*pro.entitlements, limited))
    store.apply(dataclasses.replace(catalog, plans=(pro, catalog.plan("team"))), at=T1)
    expanded = store.expanded_entitlements("pro")
    assert [e for e in expanded if getattr(e, "feature", None) == "chat"] == [limited]


def test_archived_feature_cannot_be_newly_granted(store: CatalogStore) -> None:
    store.apply(small(), at=T1)
    store.archive_plan("team", at=T2)
    assert store.archive_feature("sso", at=T2)
    assert store.current().feature("sso").status == "archived"
    # Publishing the plan again would newly grant it.
    with pytest.raises(
        InputError,
        match="cannot un-archive plan 'team': its version 1 grants archived feature 'sso'",
    ):
        store.unarchive_plan("team", at=T3)
    # A file granting it in an active plan is refused too; the store keeps the id reserved.
    catalog = store.current()
    active_team = dataclasses.replace(catalog.plan("team"), status="active")
    with pytest.raises(ValidationError) as raised:
        store.apply(dataclasses.replace(catalog, plans=(active_team,)), at=T3)
    assert [str(p) for p in raised.value.problems] == [
        "plans[0].entitlements[0].feature: feature 'sso' is archived and cannot be granted"
    ]


def test_feature_used_by_a_published_version_cannot_be_archived(store: CatalogStore) -> None:
    store.apply(small(), at=T1)
    with pytest.raises(
        InputError, match="cannot archive feature 'sso': used by plan 'team' version 1"
    ):
        store.archive_feature("sso", at=T2)
    with pytest.raises(
        InputError, match="cannot archive feature 'chat': used by plan 'pro' version 1"
    ):
        store.archive_feature("chat", at=T2)  # through the group 'ai'
    assert store.current().feature("sso").status == "active"
    # Archiving by file, while a stored plan not in the file grants it, is refused as well.
    catalog = small()
    sso = dataclasses.replace(catalog.feature("sso"), status="archived")
    with pytest.raises(ValidationError) as raised:
        store.apply(Catalog(features=(sso,)), at=T2)
    assert [str(p) for p in raised.value.problems] == [
        "features[0].status: cannot archive feature 'sso': the stored active plan 'team' grants it"
    ]


def test_archive_and_unarchive_are_history_events(store: CatalogStore) -> None:
    store.apply(small(), at=T1)
    assert store.archive_feature("images", at=T2)
    assert not store.archive_feature("images", at=T2)  # already archived: nothing recorded
    assert store.unarchive_feature("images", at=T3)
    assert store.history("feature", "images").select("event", "version").rows() == [
        ("created", 1),
        ("archived", 1),
        ("unarchived", 1),
    ]
    assert store.version_count("feature", "images") == 1  # status is not a new version


def test_archived_id_stays_reserved(store: CatalogStore) -> None:
    store.apply(small(), at=T1)
    store.archive_feature("images", at=T2)
    reused = Catalog(
        features=(
            dataclasses.replace(
                small().feature("images"), type="boolean", meter=None, status="active"
            ),
        )
    )
    with pytest.raises(ValidationError) as raised:
        store.apply(reused, at=T3)
    assert [str(p) for p in raised.value.problems] == [
        "features[0].type: cannot change the type of stored feature 'images' from metered to "
        "boolean (use a new id)"
    ]


def test_status_in_the_file_archives_and_unarchives(store: CatalogStore) -> None:
    store.apply(small(), at=T1)
    catalog = small()
    archived_team = dataclasses.replace(catalog.plan("team"), status="archived")
    diff = store.apply(
        dataclasses.replace(catalog, plans=(catalog.plan("pro"), archived_team)), at=T2
    )
    team = next(c for c in diff.changes if c.id == "team")
    assert (team.change, team.status_change, team.version_after) == ("unchanged", "archived", 1)
    assert store.current().plan("team").status == "archived"
    assert "unchanged + archived" in str(diff)


def test_invalid_apply_writes_nothing(store: CatalogStore) -> None:
    bad = load_catalog(SMALL.replace("    name: Team\n", "    name: Team\n    status: active\n"))
    bad = dataclasses.replace(bad, plans=(*bad.plans, bad.plan("pro")))
    with pytest.raises(ValidationError):
        store.apply(bad, at=T1)
    assert store.is_empty()


def test_publication_time_cannot_go_back(store: CatalogStore) -> None:
    store.apply(small(), at=T2)
    with pytest.raises(InputError, match="before the store's last change"):
        store.archive_plan("team", at=T1)


def test_tables_have_relational_schemas_and_exact_amounts(store: CatalogStore) -> None:
    store.apply(load_catalog_file(SAMPLE), at=T1)
    tables = store.tables()
    assert set(tables) >= {
        "features",
        "feature_groups",
        "feature_group_members",
        "plans",
        "addons",
        "entitlements",
        "credit_currencies",
        "credit_rates",
        "entities",
        "history",
    }
    currencies = tables["credit_currencies"]
    assert currencies["unit_price"].dtype == pl.Decimal(38, 12)
    assert currencies["unit_price"].to_list() == [Decimal("0.001")]
    entitlements = tables["entitlements"].filter(pl.col("owner_id") == "pro")
    assert entitlements["kind"].to_list() == [
        "group",
        "group",
        "metered",
        "configuration",
        "credit",
    ]
    # Independent check with SQL: credits granted per plan per month.
    grants = dict(
        store.connection.execute(
            "SELECT owner_id, sum(amount) FROM catalog_entitlements "
            "WHERE kind = 'credit' AND owner_kind = 'plan' GROUP BY owner_id"
        ).fetchall()
    )
    assert grants == {"free": 500, "pro": 25000, "enterprise": 600000}
    rates = tables["credit_rates"]
    assert rates.filter(pl.col("owner_kind") == "default").height == 5


def test_store_shares_an_existing_connection() -> None:
    connection = duckdb.connect()
    open_store(connection).apply(small(), at=T1)
    again = open_store(connection)
    assert again.plan_version("pro").name == "Pro"
    assert connection.execute("SELECT count(*) FROM catalog_plans").fetchone() == (2,)


def test_unknown_version_is_a_key_error(store: CatalogStore) -> None:
    store.apply(small(), at=T1)
    with pytest.raises(KeyError, match="has no version 7"):
        store.plan_version("pro", 7)
    assert store.plan_version("team").entitlements == (BooleanEntitlement(feature="sso"),)


def test_single_row_lookups_leave_the_shared_connection_usable(store: CatalogStore) -> None:
    # DuckDB 2.0 keeps a connection busy while a result started by `execute` is unfinished: every
    # lookup must read its result to the end, or the caller's next query on it fails.
    store.apply(small(), at=T1)
    assert store.version_at("plan", "pro", T2) == 1
    assert store.version_count("plan", "pro") == 1
    assert not store.is_empty()
    assert store.history().height > 0
    assert store.connection.sql("SELECT 42").fetchall() == [(42,)]


def test_rollover_round_trips_and_a_change_publishes_a_new_version(store: CatalogStore) -> None:
    text = SMALL.replace(
        "{kind: credit, currency: credits, amount: 1000}",
        "{kind: credit, currency: credits, amount: 1000, rollover: {max_percent: 50}}",
    )
    store.apply(load_catalog(text), at=T1)
    wider = text.replace("{max_percent: 50}", "{max_amount: 250.5, max_percent: 50}")
    store.apply(load_catalog(wider), at=T2)
    first = store.plan_version("pro", 1).entitlements[2]
    second = store.plan_version("pro", 2).entitlements[2]
    assert isinstance(first, CreditEntitlement) and isinstance(second, CreditEntitlement)
    assert first.rollover is not None and second.rollover is not None
    assert (first.rollover.max_amount, first.rollover.max_percent) == (None, Decimal(50))
    assert (second.rollover.max_amount, second.rollover.max_percent) == (
        Decimal("250.5"),
        Decimal(50),
    )
    dumped = dump_catalog(store.current())
    assert "rollover:" in dumped and "max_amount: 250.5" in dumped and "max_percent: 50" in dumped
    assert load_catalog(dumped) == store.current()
