"""The versioned catalog store in DuckDB: apply a catalog as a diff, keep every version and event.

Every entity (credit currency, feature, feature group, plan, add-on, and the default credit rate
set) is stored one row per version; a change to anything but the status publishes version n+1, and
archive / un-archive are history events. Nothing is ever deleted, so an id stays reserved. Amounts
are DECIMAL(38, 12); timestamps are UTC, stored as TIMESTAMP without a zone. The tables are listed
in docs/catalog.md.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, TypeAlias, cast

import duckdb
import polars as pl

from pricing_lab.catalog.model import (
    AddOn,
    BooleanEntitlement,
    Catalog,
    ConfigurationEntitlement,
    CreditCurrency,
    CreditEntitlement,
    CreditRate,
    DisplayUnit,
    Entitlement,
    Feature,
    FeatureGroup,
    GroupEntitlement,
    Meter,
    MeteredEntitlement,
    MeterFilter,
    Plan,
    Price,
    Rollover,
    Status,
    UnitCost,
    UnitNames,
)
from pricing_lab.catalog.validate import FormulaCheck, validate_catalog
from pricing_lab.errors import InputError, ValidationError
from pricing_lab.money import normalized
from pricing_lab.timeutil import as_utc, naive_utc

EntityKind = Literal[
    "currency", "feature", "feature_group", "plan", "addon", "default_credit_rates"
]
ENTITY_KINDS: tuple[EntityKind, ...] = (
    "currency",
    "feature",
    "feature_group",
    "plan",
    "addon",
    "default_credit_rates",
)
ChangeKind = Literal["created", "changed", "unchanged", "not_in_file"]
StatusChange = Literal["archived", "unarchived"]
DEFAULT_RATES_ID = "default"
Record: TypeAlias = CreditCurrency | Feature | FeatureGroup | Plan | AddOn | tuple[CreditRate, ...]

# Table name in DuckDB (prefixed, so a shared database stays readable) per public table name.
TABLES: dict[str, str] = {
    "credit_currencies": "catalog_credit_currencies",
    "features": "catalog_features",
    "feature_costs": "catalog_feature_costs",
    "feature_groups": "catalog_feature_groups",
    "feature_group_members": "catalog_feature_group_members",
    "plans": "catalog_plans",
    "addons": "catalog_addons",
    "entitlements": "catalog_entitlements",
    "credit_rates": "catalog_credit_rates",
    "entities": "catalog_entities",
    "history": "catalog_history",
    "default_credit_rate_sets": "catalog_default_credit_rate_sets",
}
_ORDER_BY: dict[str, str] = {
    "credit_currencies": "currency_id, version",
    "features": "feature_id, version",
    "feature_costs": "feature_id, version, position",
    "feature_groups": "group_id, version",
    "feature_group_members": "group_id, version, position",
    "plans": "plan_id, version",
    "addons": "addon_id, version",
    "entitlements": "owner_kind, owner_id, version, position",
    "credit_rates": "owner_kind, owner_id, version, position",
    "entities": "kind, entity_id",
    "history": "seq",
    "default_credit_rate_sets": "version",
}
_VERSION_TABLE: dict[EntityKind, str] = {
    "currency": "credit_currencies",
    "feature": "features",
    "feature_group": "feature_groups",
    "plan": "plans",
    "addon": "addons",
    "default_credit_rates": "credit_rates",
}
_AMOUNT = "DECIMAL(38, 12)"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS catalog_credit_currencies (
    currency_id VARCHAR NOT NULL, version INTEGER NOT NULL, published_at TIMESTAMP NOT NULL,
    name VARCHAR NOT NULL, unit_price {_AMOUNT} NOT NULL, price_currency VARCHAR NOT NULL,
    precision INTEGER NOT NULL, rounding VARCHAR NOT NULL,
    PRIMARY KEY (currency_id, version));
CREATE TABLE IF NOT EXISTS catalog_features (
    feature_id VARCHAR NOT NULL, version INTEGER NOT NULL, published_at TIMESTAMP NOT NULL,
    name VARCHAR NOT NULL, description VARCHAR NOT NULL, type VARCHAR NOT NULL,
    metadata VARCHAR NOT NULL, unit_singular VARCHAR, unit_plural VARCHAR,
    display_unit_singular VARCHAR, display_unit_plural VARCHAR, display_unit_factor {_AMOUNT},
    meter_source VARCHAR, meter_event_name VARCHAR, meter_aggregation VARCHAR,
    meter_dimension VARCHAR, meter_filters VARCHAR,
    PRIMARY KEY (feature_id, version));
CREATE TABLE IF NOT EXISTS catalog_feature_costs (
    feature_id VARCHAR NOT NULL, version INTEGER NOT NULL, position INTEGER NOT NULL,
    valid_from TIMESTAMP, formula VARCHAR NOT NULL,
    PRIMARY KEY (feature_id, version, position));
CREATE TABLE IF NOT EXISTS catalog_feature_groups (
    group_id VARCHAR NOT NULL, version INTEGER NOT NULL, published_at TIMESTAMP NOT NULL,
    name VARCHAR NOT NULL, description VARCHAR NOT NULL,
    PRIMARY KEY (group_id, version));
CREATE TABLE IF NOT EXISTS catalog_feature_group_members (
    group_id VARCHAR NOT NULL, version INTEGER NOT NULL, position INTEGER NOT NULL,
    feature_id VARCHAR NOT NULL,
    PRIMARY KEY (group_id, version, position));
CREATE TABLE IF NOT EXISTS catalog_plans (
    plan_id VARCHAR NOT NULL, version INTEGER NOT NULL, published_at TIMESTAMP NOT NULL,
    name VARCHAR NOT NULL, description VARCHAR NOT NULL, price_amount {_AMOUNT},
    price_cadence VARCHAR, price_currency VARCHAR,
    PRIMARY KEY (plan_id, version));
CREATE TABLE IF NOT EXISTS catalog_addons (
    addon_id VARCHAR NOT NULL, version INTEGER NOT NULL, published_at TIMESTAMP NOT NULL,
    name VARCHAR NOT NULL, description VARCHAR NOT NULL, price_amount {_AMOUNT},
    price_cadence VARCHAR, price_currency VARCHAR,
    PRIMARY KEY (addon_id, version));
CREATE TABLE IF NOT EXISTS catalog_entitlements (
    owner_kind VARCHAR NOT NULL, owner_id VARCHAR NOT NULL, version INTEGER NOT NULL,
    position INTEGER NOT NULL, kind VARCHAR NOT NULL, feature_id VARCHAR, group_id VARCHAR,
    value {_AMOUNT}, usage_limit {_AMOUNT}, period VARCHAR, currency_id VARCHAR,
    amount {_AMOUNT}, cadence VARCHAR,
    PRIMARY KEY (owner_kind, owner_id, version, position));
-- Rollover of a credit entitlement (SPEC §5); added after the first stores were made.
ALTER TABLE catalog_entitlements ADD COLUMN IF NOT EXISTS rollover_max_amount {_AMOUNT};
ALTER TABLE catalog_entitlements ADD COLUMN IF NOT EXISTS rollover_max_percent {_AMOUNT};
CREATE TABLE IF NOT EXISTS catalog_credit_rates (
    owner_kind VARCHAR NOT NULL, owner_id VARCHAR NOT NULL, version INTEGER NOT NULL,
    position INTEGER NOT NULL, feature_id VARCHAR NOT NULL, mode VARCHAR NOT NULL,
    per_unit {_AMOUNT}, formula VARCHAR, currency_id VARCHAR,
    PRIMARY KEY (owner_kind, owner_id, version, position));
CREATE TABLE IF NOT EXISTS catalog_default_credit_rate_sets (
    version INTEGER NOT NULL PRIMARY KEY, published_at TIMESTAMP NOT NULL);
CREATE TABLE IF NOT EXISTS catalog_entities (
    kind VARCHAR NOT NULL, entity_id VARCHAR NOT NULL, status VARCHAR NOT NULL,
    latest_version INTEGER NOT NULL, created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (kind, entity_id));
CREATE TABLE IF NOT EXISTS catalog_history (
    seq INTEGER NOT NULL PRIMARY KEY, occurred_at TIMESTAMP NOT NULL, kind VARCHAR NOT NULL,
    entity_id VARCHAR NOT NULL, event VARCHAR NOT NULL, version INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class EntityChange:
    """What applying a catalog does (or did) to one entity.

    `change`: created (version 1), changed (version n+1), unchanged, or not_in_file (the store
    keeps it as it is). `status_change` is set when the entity is archived or un-archived.
    `fields` names what changed (for `changed`).
    """

    kind: EntityKind
    id: str
    change: ChangeKind
    version_before: int | None
    version_after: int | None
    status_change: StatusChange | None = None
    fields: tuple[str, ...] = ()

    @property
    def is_change(self) -> bool:
        return self.change in ("created", "changed") or self.status_change is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class CatalogDiff:
    """The per-entity result of `CatalogStore.diff` / `apply`, in catalog order."""

    changes: tuple[EntityChange, ...]
    applied: bool

    @property
    def has_changes(self) -> bool:
        return any(change.is_change for change in self.changes)

    def counts(self) -> dict[str, int]:
        """How many entities were created, changed, unchanged, archived, unarchived, not in file."""
        result = dict.fromkeys(
            ("created", "changed", "unchanged", "archived", "unarchived", "not_in_file"), 0
        )
        for change in self.changes:
            result[change.change] += 1
            if change.status_change:
                result[change.status_change] += 1
        return result

    def to_polars(self) -> pl.DataFrame:
        """One row per entity: kind, id, change, status_change, version_before/after, fields."""
        return pl.DataFrame(
            {
                "kind": [c.kind for c in self.changes],
                "id": [c.id for c in self.changes],
                "change": [c.change for c in self.changes],
                "status_change": [c.status_change for c in self.changes],
                "version_before": [c.version_before for c in self.changes],
                "version_after": [c.version_after for c in self.changes],
                "fields": [", ".join(c.fields) for c in self.changes],
            },
            schema={
                "kind": pl.String,
                "id": pl.String,
                "change": pl.String,
                "status_change": pl.String,
                "version_before": pl.Int64,
                "version_after": pl.Int64,
                "fields": pl.String,
            },
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary (for `--json`)."""
        return {
            "applied": self.applied,
            "counts": self.counts(),
            "changes": [
                {
                    "kind": c.kind,
                    "id": c.id,
                    "change": c.change,
                    "status_change": c.status_change,
                    "version_before": c.version_before,
                    "version_after": c.version_after,
                    "fields": list(c.fields),
                }
                for c in self.changes
            ],
        }

    def lines(self) -> list[str]:
        """Readable lines: one per entity, then a total."""
        rows: list[str] = []
        width = max((len(c.id) for c in self.changes), default=0)
        for c in self.changes:
            versions = _versions_text(c)
            detail = f" ({', '.join(c.fields)})" if c.fields else ""
            change = c.change.replace("_", " ") + (
                f" + {c.status_change}" if c.status_change else ""
            )
            rows.append(f"{c.kind:<20} {c.id:<{width}}  {change:<22} {versions}{detail}".rstrip())
        counts = self.counts()
        verb = "applied" if self.applied else "would apply"
        summary = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in counts.items() if n)
        rows.append(f"{verb}: {summary or 'nothing'}")
        return rows

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def _repr_html_(self) -> str:
        from pricing_lab.catalog.html import diff_html

        return diff_html(self)


def _versions_text(change: EntityChange) -> str:
    if change.change == "created":
        return f"v{change.version_after}"
    if change.change == "changed":
        return f"v{change.version_before} → v{change.version_after}"
    return f"v{change.version_before}" if change.version_before else ""


@dataclass(slots=True)
class _Entity:
    status: Status
    latest: int
    versions: dict[int, Record] = field(default_factory=dict)
    published: dict[int, datetime] = field(default_factory=dict)


def _first_row(cursor: duckdb.DuckDBPyConnection) -> tuple[Any, ...] | None:
    """The first row of a query's result, reading the result to its end: DuckDB 2.0 keeps a
    connection busy while a result started by `execute` is unfinished."""
    rows = cursor.fetchall()
    return rows[0] if rows else None


def open_store(
    path: str | Path | duckdb.DuckDBPyConnection | None = None, *, read_only: bool = False
) -> CatalogStore:
    """Open a catalog store: in memory (default), in a DuckDB file, or on an open connection.

    Passing a connection lets other parts of pricing_lab share one database. The catalog tables
    (and the file's folder) are created if missing (not with `read_only`).
    """
    if isinstance(path, duckdb.DuckDBPyConnection):
        return CatalogStore(path)
    if path is None:
        return CatalogStore(duckdb.connect(), owns_connection=True)
    file = Path(path)
    if read_only and not file.exists():
        raise InputError(f"{file}: no catalog store (run `pricing-lab catalog apply FILE` first)")
    if not read_only:
        # A new store's folder is made, as an output folder is (`--db out/cat.duckdb`).
        file.parent.mkdir(parents=True, exist_ok=True)
    try:
        connection = duckdb.connect(str(file), read_only=read_only)
    except duckdb.Error as exc:
        raise InputError(f"{file}: cannot open the DuckDB store: {exc}") from None
    return CatalogStore(connection, owns_connection=True, create=not read_only)


class CatalogStore:
    """A versioned catalog in DuckDB. See `open_store`; read with `current()` and `tables()`."""

    def __init__(
        self,
        connection: duckdb.DuckDBPyConnection,
        *,
        owns_connection: bool = False,
        create: bool = True,
    ) -> None:
        self.connection = connection
        self._owns_connection = owns_connection
        if create:
            self.connection.execute(_SCHEMA)

    def close(self) -> None:
        """Close the connection if the store opened it."""
        if self._owns_connection:
            self.connection.close()

    def __enter__(self) -> CatalogStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ------------------------------------------------------------------------------

    def current(self) -> Catalog:
        """The catalog in force: the latest version of every entity, with its status."""
        return _current_catalog(self._load())

    def is_empty(self) -> bool:
        row = _first_row(self.connection.execute("SELECT count(*) FROM catalog_entities"))
        return row is None or row[0] == 0

    def version_count(self, kind: EntityKind, entity_id: str) -> int:
        """The latest version number of an entity (0 when it does not exist)."""
        row = _first_row(
            self.connection.execute(
                "SELECT latest_version FROM catalog_entities WHERE kind = ? AND entity_id = ?",
                [kind, entity_id],
            )
        )
        return int(row[0]) if row else 0

    def feature_version(self, feature_id: str, version: int | None = None) -> Feature:
        return cast(Feature, self._version("feature", feature_id, version))

    def currency_version(self, currency_id: str, version: int | None = None) -> CreditCurrency:
        return cast(CreditCurrency, self._version("currency", currency_id, version))

    def group_version(self, group_id: str, version: int | None = None) -> FeatureGroup:
        """A feature group as it was at `version` (default: the latest), with its current status."""
        return cast(FeatureGroup, self._version("feature_group", group_id, version))

    def plan_version(self, plan_id: str, version: int | None = None) -> Plan:
        """A plan as published at `version` (default: the latest), with its current status."""
        return cast(Plan, self._version("plan", plan_id, version))

    def addon_version(self, addon_id: str, version: int | None = None) -> AddOn:
        """An add-on as published at `version` (default: the latest), with its current status."""
        return cast(AddOn, self._version("addon", addon_id, version))

    def default_credit_rates(self, version: int | None = None) -> tuple[CreditRate, ...]:
        """The default credit rate set (customers without a subscription) at `version`."""
        state = self._load()
        if DEFAULT_RATES_ID not in state["default_credit_rates"]:
            return ()
        return cast(
            tuple[CreditRate, ...],
            _get_version(state, "default_credit_rates", DEFAULT_RATES_ID, version),
        )

    def version_at(self, kind: EntityKind, entity_id: str, at: datetime) -> int | None:
        """The version of an entity in force at `at`: the last one published at or before it."""
        # Default rate sets are published in their own table, one row per version.
        name = (
            "default_credit_rate_sets" if kind == "default_credit_rates" else _VERSION_TABLE[kind]
        )
        row = _first_row(
            self.connection.execute(
                f"SELECT max(version) FROM {TABLES[name]} "
                f"WHERE {_id_column(kind)} = ? AND published_at <= ?",
                [entity_id, naive_utc(at)],
            )
        )
        return int(row[0]) if row and row[0] is not None else None

    def expanded_entitlements(
        self,
        offer_id: str,
        version: int | None = None,
        *,
        at: datetime | None = None,
        kind: Literal["plan", "addon"] = "plan",
    ) -> tuple[Entitlement, ...]:
        """The entitlements of a plan (or add-on) version with feature groups expanded.

        Each group entitlement becomes one entitlement per feature of the group version in force
        at `at` (default: the latest group version): boolean features a `BooleanEntitlement`,
        metered ones an unlimited `MeteredEntitlement`. A feature granted directly keeps its
        direct entitlement (it carries the value or limit); a feature in several groups appears
        once. Order: as written, each group replaced by its features in group order.
        """
        state = self._load()
        offer = cast(Plan | AddOn, _get_version(state, kind, offer_id, version))
        covered = {
            e.feature
            for e in offer.entitlements
            if not isinstance(e, GroupEntitlement | CreditEntitlement)
        }
        result: list[Entitlement] = []
        for entitlement in offer.entitlements:
            if not isinstance(entitlement, GroupEntitlement):
                result.append(entitlement)
                continue
            group_entity = state["feature_group"][entitlement.group]
            group_version = (
                group_entity.latest
                if at is None
                else self.version_at("feature_group", entitlement.group, at)
            )
            if group_version is None:
                continue  # the group did not exist yet at `at`
            group = cast(FeatureGroup, group_entity.versions[group_version])
            for feature_id in group.features:
                if feature_id in covered:
                    continue
                covered.add(feature_id)
                feature = cast(Feature, _latest(state["feature"][feature_id]))
                if feature.type == "boolean":
                    result.append(BooleanEntitlement(feature=feature_id))
                elif feature.type == "metered":
                    result.append(MeteredEntitlement(feature=feature_id))
                # A configuration feature needs a value: validation requires a direct one.
        return tuple(result)

    def versions(self, kind: EntityKind) -> pl.DataFrame:
        """Every version of one kind of entity, as its version table (one row per version)."""
        name = _VERSION_TABLE[kind]
        if kind == "default_credit_rates":
            return self._frame(
                "SELECT * FROM catalog_credit_rates WHERE owner_kind = 'default' "
                "ORDER BY version, position"
            )
        return self._frame(f"SELECT * FROM {TABLES[name]} ORDER BY {_ORDER_BY[name]}")

    def history(self, kind: EntityKind | None = None, entity_id: str | None = None) -> pl.DataFrame:
        """History events (created, changed, archived, unarchived) in the order they happened."""
        where: list[str] = []
        params: list[object] = []
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        if entity_id is not None:
            where.append("entity_id = ?")
            params.append(entity_id)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        return self._frame(f"SELECT * FROM catalog_history{clause} ORDER BY seq", params)

    def tables(self) -> dict[str, pl.DataFrame]:
        """Every catalog table as a Polars DataFrame, by its public name (docs/catalog.md)."""
        return {
            name: self._frame(f"SELECT * FROM {table} ORDER BY {_ORDER_BY[name]}")
            for name, table in TABLES.items()
        }

    def _frame(self, sql: str, params: Sequence[object] = ()) -> pl.DataFrame:
        return self.connection.sql(sql, params=list(params) or None).pl()

    # -- changing -----------------------------------------------------------------------------

    def diff(self, catalog: Catalog, *, check_formula: FormulaCheck | None = None) -> CatalogDiff:
        """What `apply(catalog)` would do, without changing the store.

        Raises `ValidationError` (every problem, with its path) for an invalid catalog.
        """
        state = self._load()
        self._validate(catalog, state, check_formula)
        changes = _plan_changes(_records_by_key(catalog), state)
        return CatalogDiff(changes=tuple(changes), applied=False)

    def apply(
        self,
        catalog: Catalog,
        *,
        at: datetime | None = None,
        check_formula: FormulaCheck | None = None,
    ) -> CatalogDiff:
        """Apply a catalog: new versions only where something changed; returns the diff.

        Entities the catalog does not mention are kept as they are (nothing is deleted; archive
        with `status: archived`). `at` is the publication time (default: now, UTC); it must not
        be before the store's last change. Applying the same catalog twice changes nothing.
        Raises `ValidationError` listing every problem; then nothing is written.
        """
        published = self._publication_time(at)
        with self._transaction():
            state = self._load()
            self._validate(catalog, state, check_formula)
            records = _records_by_key(catalog)
            changes = _plan_changes(records, state)
            for change in changes:
                if change.change in ("created", "changed"):
                    assert change.version_after is not None
                    self._write_version(
                        change.kind,
                        change.id,
                        change.version_after,
                        records[(change.kind, change.id)],
                        published,
                    )
                status = _status_of(records.get((change.kind, change.id)))
                if change.change == "created":
                    self._insert_entity(change.kind, change.id, status, published)
                    self._event(published, change.kind, change.id, "created", 1)
                elif change.change == "changed":
                    assert change.version_after is not None
                    self._event(published, change.kind, change.id, "changed", change.version_after)
                if change.status_change is not None:
                    self._event(
                        published,
                        change.kind,
                        change.id,
                        change.status_change,
                        change.version_after or change.version_before or 1,
                    )
                if change.change == "changed" or (
                    change.status_change and change.change != "created"
                ):
                    self.connection.execute(
                        "UPDATE catalog_entities SET status = ?, "
                        "latest_version = ?, updated_at = ? WHERE kind = ? AND entity_id = ?",
                        [
                            status,
                            change.version_after or change.version_before,
                            published,
                            change.kind,
                            change.id,
                        ],
                    )
        return CatalogDiff(changes=tuple(changes), applied=True)

    def archive_feature(self, feature_id: str, *, at: datetime | None = None) -> bool:
        """Archive a feature (False if it already is). Refused while an active plan or add-on's
        current version grants it, directly or through a feature group's current version."""
        state = self._load()
        self._require("feature", feature_id, state)
        users = _offers_using(state, feature_id=feature_id)
        if users:
            raise InputError(f"cannot archive feature {feature_id!r}: {_usage_text(users)}")
        return self._set_status("feature", feature_id, "archived", at)

    def unarchive_feature(self, feature_id: str, *, at: datetime | None = None) -> bool:
        """Make an archived feature active again (False if it already is)."""
        self._require("feature", feature_id, self._load())
        return self._set_status("feature", feature_id, "active", at)

    def archive_group(self, group_id: str, *, at: datetime | None = None) -> bool:
        """Archive a feature group; refused while an active plan or add-on grants it."""
        state = self._load()
        self._require("feature_group", group_id, state)
        users = _offers_using(state, group_id=group_id)
        if users:
            raise InputError(f"cannot archive feature group {group_id!r}: {_usage_text(users)}")
        return self._set_status("feature_group", group_id, "archived", at)

    def unarchive_group(self, group_id: str, *, at: datetime | None = None) -> bool:
        """Make an archived feature group active again; refused if it holds archived features."""
        state = self._load()
        self._require("feature_group", group_id, state)
        group = cast(FeatureGroup, _latest(state["feature_group"][group_id]))
        archived = [f for f in group.features if state["feature"][f].status == "archived"]
        if archived:
            raise InputError(
                f"cannot un-archive feature group {group_id!r}: it contains archived "
                f"feature(s) {', '.join(map(repr, archived))}"
            )
        return self._set_status("feature_group", group_id, "active", at)

    def archive_plan(self, plan_id: str, *, at: datetime | None = None) -> bool:
        """Archive a plan: no new subscriptions; existing ones keep their version."""
        self._require("plan", plan_id, self._load())
        return self._set_status("plan", plan_id, "archived", at)

    def unarchive_plan(self, plan_id: str, *, at: datetime | None = None) -> bool:
        """Publish an archived plan again; refused if its current version grants an archived
        feature or group (that would newly grant it)."""
        return self._unarchive_offer("plan", plan_id, at)

    def archive_addon(self, addon_id: str, *, at: datetime | None = None) -> bool:
        """Archive an add-on."""
        self._require("addon", addon_id, self._load())
        return self._set_status("addon", addon_id, "archived", at)

    def unarchive_addon(self, addon_id: str, *, at: datetime | None = None) -> bool:
        """Publish an archived add-on again (same rule as `unarchive_plan`)."""
        return self._unarchive_offer("addon", addon_id, at)

    # -- internals ----------------------------------------------------------------------------

    def _unarchive_offer(
        self, kind: Literal["plan", "addon"], offer_id: str, at: datetime | None
    ) -> bool:
        state = self._load()
        self._require(kind, offer_id, state)
        offer = cast(Plan | AddOn, _latest(state[kind][offer_id]))
        blocked = sorted(_archived_grants(state, offer))
        if blocked:
            raise InputError(
                f"cannot un-archive {_noun(kind)} {offer_id!r}: its version "
                f"{state[kind][offer_id].latest} grants archived {', '.join(blocked)}"
            )
        return self._set_status(kind, offer_id, "active", at)

    def _require(self, kind: EntityKind, entity_id: str, state: _State) -> None:
        if entity_id not in state[kind]:
            raise InputError(f"unknown {_noun(kind)} {entity_id!r}")

    def _set_status(
        self, kind: EntityKind, entity_id: str, status: str, at: datetime | None
    ) -> bool:
        published = self._publication_time(at)
        with self._transaction():
            row = _first_row(
                self.connection.execute(
                    "SELECT status, latest_version FROM catalog_entities "
                    "WHERE kind = ? AND entity_id = ?",
                    [kind, entity_id],
                )
            )
            assert row is not None
            if row[0] == status:
                return False
            self.connection.execute(
                "UPDATE catalog_entities SET status = ?, updated_at = ? "
                "WHERE kind = ? AND entity_id = ?",
                [status, published, kind, entity_id],
            )
            event = "archived" if status == "archived" else "unarchived"
            self._event(published, kind, entity_id, event, int(row[1]))
        return True

    def _publication_time(self, at: datetime | None) -> datetime:
        published = naive_utc(at if at is not None else datetime.now(UTC))
        row = _first_row(self.connection.execute("SELECT max(occurred_at) FROM catalog_history"))
        last = row[0] if row else None
        if last is not None and published < last:
            raise InputError(
                f"publication time {published.isoformat()} is before the store's last change "
                f"({last.isoformat()})"
            )
        return published

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self.connection.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("COMMIT")

    def _validate(
        self, catalog: Catalog, state: _State, check_formula: FormulaCheck | None
    ) -> None:
        existing = _current_catalog(state)
        problems = validate_catalog(
            catalog,
            check_formula=check_formula,
            existing=existing if any(state.values()) else None,
        )
        if problems:
            raise ValidationError(problems)

    def _version(self, kind: EntityKind, entity_id: str, version: int | None) -> Record:
        return _get_version(self._load(), kind, entity_id, version)

    def _event(
        self, at: datetime, kind: EntityKind, entity_id: str, event: str, version: int
    ) -> None:
        row = _first_row(
            self.connection.execute("SELECT coalesce(max(seq), 0) FROM catalog_history")
        )
        seq = (row[0] if row else 0) + 1
        self.connection.execute(
            "INSERT INTO catalog_history VALUES (?, ?, ?, ?, ?, ?)",
            [seq, at, kind, entity_id, event, version],
        )

    def _insert_entity(self, kind: EntityKind, entity_id: str, status: str, at: datetime) -> None:
        self.connection.execute(
            "INSERT INTO catalog_entities VALUES (?, ?, ?, 1, ?, ?)",
            [kind, entity_id, status, at, at],
        )

    def _write_version(
        self, kind: EntityKind, entity_id: str, version: int, record: Record, at: datetime
    ) -> None:
        execute = self.connection.execute
        if kind == "currency":
            c = cast(CreditCurrency, record)
            execute(
                "INSERT INTO catalog_credit_currencies VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    c.id,
                    version,
                    at,
                    c.name,
                    c.unit_price,
                    c.price_currency,
                    c.precision,
                    c.rounding,
                ],
            )
        elif kind == "feature":
            f = cast(Feature, record)
            meter = f.meter
            execute(
                "INSERT INTO catalog_features VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    f.id,
                    version,
                    at,
                    f.name,
                    f.description,
                    f.type,
                    json.dumps(dict(f.metadata)),
                    f.units.singular if f.units else None,
                    f.units.plural if f.units else None,
                    f.display_unit.singular if f.display_unit else None,
                    f.display_unit.plural if f.display_unit else None,
                    f.display_unit.factor if f.display_unit else None,
                    meter.source if meter else None,
                    meter.event_name if meter else None,
                    meter.aggregation if meter else None,
                    meter.dimension if meter else None,
                    _filters_json(meter.filters) if meter else None,
                ],
            )
            for position, cost in enumerate(f.cost):
                execute(
                    "INSERT INTO catalog_feature_costs VALUES (?, ?, ?, ?, ?)",
                    [
                        f.id,
                        version,
                        position,
                        None if cost.valid_from is None else naive_utc(cost.valid_from),
                        cost.formula,
                    ],
                )
        elif kind == "feature_group":
            g = cast(FeatureGroup, record)
            execute(
                "INSERT INTO catalog_feature_groups VALUES (?, ?, ?, ?, ?)",
                [g.id, version, at, g.name, g.description],
            )
            for position, feature_id in enumerate(g.features):
                execute(
                    "INSERT INTO catalog_feature_group_members VALUES (?, ?, ?, ?)",
                    [g.id, version, position, feature_id],
                )
        elif kind in ("plan", "addon"):
            o = cast(Plan | AddOn, record)
            table = "catalog_plans" if kind == "plan" else "catalog_addons"
            execute(
                f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    o.id,
                    version,
                    at,
                    o.name,
                    o.description,
                    o.price.amount if o.price else None,
                    o.price.cadence if o.price else None,
                    o.price.currency if o.price else None,
                ],
            )
            for position, entitlement in enumerate(o.entitlements):
                execute(
                    "INSERT INTO catalog_entitlements VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [kind, o.id, version, position, *_entitlement_row(entitlement)],
                )
            self._write_rates(kind, o.id, version, o.credit_rates)
        else:
            execute("INSERT INTO catalog_default_credit_rate_sets VALUES (?, ?)", [version, at])
            self._write_rates(
                "default", DEFAULT_RATES_ID, version, cast(tuple[CreditRate, ...], record)
            )

    def _write_rates(
        self, owner_kind: str, owner_id: str, version: int, rates: tuple[CreditRate, ...]
    ) -> None:
        for position, rate in enumerate(rates):
            self.connection.execute(
                "INSERT INTO catalog_credit_rates VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    owner_kind,
                    owner_id,
                    version,
                    position,
                    rate.feature,
                    rate.mode,
                    rate.per_unit,
                    rate.formula,
                    rate.currency,
                ],
            )

    def _load(self) -> _State:
        return _load_state(self.connection)


# -- reading the tables back into records ---------------------------------------------------------

_State: TypeAlias = dict[EntityKind, dict[str, _Entity]]


def _load_state(connection: duckdb.DuckDBPyConnection) -> _State:
    state: _State = {kind: {} for kind in ENTITY_KINDS}
    for kind, entity_id, status, latest in connection.execute(
        "SELECT e.kind, e.entity_id, e.status, e.latest_version FROM catalog_entities e "
        "JOIN catalog_history h ON h.kind = e.kind AND h.entity_id = e.entity_id "
        "AND h.event = 'created' ORDER BY h.seq"
    ).fetchall():
        state[kind][entity_id] = _Entity(status=status, latest=latest)

    def rows(sql: str) -> list[tuple[Any, ...]]:
        return connection.execute(sql).fetchall()

    def put(kind: EntityKind, entity_id: str, version: int, at: datetime, record: Record) -> None:
        entity = state[kind][entity_id]
        entity.versions[version] = record
        entity.published[version] = at

    for cid, version, at, name, price, price_currency, precision, rounding in rows(
        "SELECT * FROM catalog_credit_currencies"
    ):
        put(
            "currency",
            cid,
            version,
            at,
            CreditCurrency(
                id=cid,
                name=name,
                unit_price=normalized(price),
                price_currency=price_currency,
                precision=precision,
                rounding=rounding,
            ),
        )
    costs: dict[tuple[str, int], list[UnitCost]] = {}
    for fid, version, _position, valid_from, formula in rows(
        "SELECT * FROM catalog_feature_costs ORDER BY feature_id, version, position"
    ):
        costs.setdefault((fid, version), []).append(
            UnitCost(formula=formula, valid_from=None if valid_from is None else as_utc(valid_from))
        )
    for row in rows("SELECT * FROM catalog_features"):
        (fid, version, at, name, description, ftype, metadata, u_one, u_many) = row[:9]
        (d_one, d_many, d_factor, source, event_name, aggregation, dimension, filters) = row[9:]
        put(
            "feature",
            fid,
            version,
            at,
            Feature(
                id=fid,
                name=name,
                type=ftype,
                description=description,
                metadata=json.loads(metadata),
                status=state["feature"][fid].status,
                units=UnitNames(singular=u_one, plural=u_many) if u_one is not None else None,
                display_unit=DisplayUnit(singular=d_one, plural=d_many, factor=normalized(d_factor))
                if d_one is not None
                else None,
                meter=Meter(
                    source=source,
                    event_name=event_name,
                    filters=_filters_from_json(filters),
                    aggregation=aggregation,
                    dimension=dimension,
                )
                if source is not None
                else None,
                cost=tuple(costs.get((fid, version), ())),
            ),
        )
    members: dict[tuple[str, int], list[str]] = {}
    for gid, version, _position, feature_id in rows(
        "SELECT * FROM catalog_feature_group_members ORDER BY group_id, version, position"
    ):
        members.setdefault((gid, version), []).append(feature_id)
    for gid, version, at, name, description in rows("SELECT * FROM catalog_feature_groups"):
        put(
            "feature_group",
            gid,
            version,
            at,
            FeatureGroup(
                id=gid,
                name=name,
                description=description,
                features=tuple(members.get((gid, version), [])),
                status=state["feature_group"][gid].status,
            ),
        )
    entitlements: dict[tuple[str, str, int], list[Entitlement]] = {}
    for row in rows(
        "SELECT * FROM catalog_entitlements ORDER BY owner_kind, owner_id, version, position"
    ):
        entitlements.setdefault((row[0], row[1], row[2]), []).append(_entitlement_from_row(row[4:]))
    rates: dict[tuple[str, str, int], list[CreditRate]] = {}
    for owner_kind, owner_id, version, _position, fid, mode, per_unit, formula, currency in rows(
        "SELECT * FROM catalog_credit_rates ORDER BY owner_kind, owner_id, version, position"
    ):
        rates.setdefault((owner_kind, owner_id, version), []).append(
            CreditRate(
                feature=fid,
                mode=mode,
                per_unit=None if per_unit is None else normalized(per_unit),
                formula=formula,
                currency=currency,
            )
        )
    for kind, record_type in (("plan", Plan), ("addon", AddOn)):
        offer_kind = cast(EntityKind, kind)
        for oid, version, at, name, description, amount, cadence, price_currency in rows(
            f"SELECT * FROM catalog_{kind}s"
        ):
            put(
                offer_kind,
                oid,
                version,
                at,
                record_type(
                    id=oid,
                    name=name,
                    description=description,
                    price=Price(amount=normalized(amount), cadence=cadence, currency=price_currency)
                    if amount is not None
                    else None,
                    entitlements=tuple(entitlements.get((kind, oid, version), [])),
                    credit_rates=tuple(rates.get((kind, oid, version), [])),
                    status=state[offer_kind][oid].status,
                ),
            )
    for version, at in rows("SELECT * FROM catalog_default_credit_rate_sets"):
        put(
            "default_credit_rates",
            DEFAULT_RATES_ID,
            version,
            at,
            tuple(rates.get(("default", DEFAULT_RATES_ID, version), [])),
        )
    return state


def _current_catalog(state: _State) -> Catalog:
    def latest(kind: EntityKind) -> list[Any]:
        return [_latest(entity) for entity in state[kind].values()]

    default = state["default_credit_rates"].get(DEFAULT_RATES_ID)
    return Catalog(
        currencies=tuple(latest("currency")),
        features=tuple(latest("feature")),
        feature_groups=tuple(latest("feature_group")),
        plans=tuple(latest("plan")),
        addons=tuple(latest("addon")),
        default_credit_rates=cast(tuple[CreditRate, ...], _latest(default)) if default else (),
    )


def _latest(entity: _Entity) -> Record:
    return entity.versions[entity.latest]


def _get_version(state: _State, kind: EntityKind, entity_id: str, version: int | None) -> Record:
    entity = state[kind].get(entity_id)
    if entity is None:
        raise KeyError(f"unknown {_noun(kind)} {entity_id!r}")
    number = entity.latest if version is None else version
    if number not in entity.versions:
        raise KeyError(
            f"{_noun(kind)} {entity_id!r} has no version {number} (latest is {entity.latest})"
        )
    return entity.versions[number]


def _id_column(kind: EntityKind) -> str:
    return {
        "currency": "currency_id",
        "feature": "feature_id",
        "feature_group": "group_id",
        "plan": "plan_id",
        "addon": "addon_id",
        "default_credit_rates": "'default'",
    }[kind]


def _noun(kind: EntityKind) -> str:
    return {
        "currency": "currency",
        "feature": "feature",
        "feature_group": "feature group",
        "plan": "plan",
        "addon": "add-on",
        "default_credit_rates": "default credit rate set",
    }[kind]


def _filters_json(filters: tuple[MeterFilter, ...]) -> str:
    def encode(value: object) -> object:
        if isinstance(value, tuple):
            return [encode(v) for v in value]
        if isinstance(value, Decimal):
            return {"decimal": str(value)}
        return value

    return json.dumps(
        [
            {"dimension": f.dimension, "operator": f.operator, "value": encode(f.value)}
            for f in filters
        ]
    )


def _filters_from_json(text: str | None) -> tuple[MeterFilter, ...]:
    def decode(value: Any) -> Any:
        if isinstance(value, list):
            return tuple(decode(v) for v in value)
        if isinstance(value, dict):
            return Decimal(value["decimal"])
        return value

    if not text:
        return ()
    return tuple(
        MeterFilter(dimension=f["dimension"], operator=f["operator"], value=decode(f["value"]))
        for f in json.loads(text)
    )


def _entitlement_row(entitlement: Entitlement) -> list[object]:
    """kind, feature_id, group_id, value, usage_limit, period, currency_id, amount, cadence,
    rollover_max_amount, rollover_max_percent."""
    if isinstance(entitlement, BooleanEntitlement):
        return ["boolean", entitlement.feature, *[None] * 9]
    if isinstance(entitlement, ConfigurationEntitlement):
        return ["configuration", entitlement.feature, None, entitlement.value, *[None] * 7]
    if isinstance(entitlement, MeteredEntitlement):
        return [
            "metered",
            entitlement.feature,
            None,
            None,
            entitlement.usage_limit,
            entitlement.period,
            *[None] * 5,
        ]
    if isinstance(entitlement, GroupEntitlement):
        return ["group", None, entitlement.group, *[None] * 8]
    rollover = entitlement.rollover
    return [
        "credit",
        *[None] * 5,
        entitlement.currency,
        entitlement.amount,
        entitlement.cadence,
        None if rollover is None else rollover.max_amount,
        None if rollover is None else rollover.max_percent,
    ]


def _entitlement_from_row(row: Sequence[Any]) -> Entitlement:
    kind, feature, group, value, limit, period, currency, amount, cadence, most, percent = row
    if kind == "boolean":
        return BooleanEntitlement(feature=feature)
    if kind == "configuration":
        return ConfigurationEntitlement(feature=feature, value=normalized(value))
    if kind == "metered":
        return MeteredEntitlement(
            feature=feature,
            usage_limit=None if limit is None else normalized(limit),
            period=period,
        )
    if kind == "group":
        return GroupEntitlement(group=group)
    rollover = None
    if most is not None or percent is not None:
        rollover = Rollover(
            max_amount=None if most is None else normalized(most),
            max_percent=None if percent is None else normalized(percent),
        )
    return CreditEntitlement(
        currency=currency, amount=normalized(amount), cadence=cadence, rollover=rollover
    )


# -- planning a diff ------------------------------------------------------------------------------


def _records_by_key(catalog: Catalog) -> dict[tuple[EntityKind, str], Record]:
    records: dict[tuple[EntityKind, str], Record] = {}
    for kind, items in (
        ("currency", catalog.currencies),
        ("feature", catalog.features),
        ("feature_group", catalog.feature_groups),
        ("plan", catalog.plans),
        ("addon", catalog.addons),
    ):
        for item in cast(Sequence[Any], items):
            records[(cast(EntityKind, kind), item.id)] = item
    if catalog.default_credit_rates:
        records[("default_credit_rates", DEFAULT_RATES_ID)] = catalog.default_credit_rates
    return records


def _status_of(record: Record | None) -> str:
    if record is None or isinstance(record, tuple | CreditCurrency):
        return "active"
    return record.status


def _changed_fields(old: Record, new: Record) -> tuple[str, ...]:
    if isinstance(old, tuple) or isinstance(new, tuple):
        return ("rates",) if old != new else ()
    return tuple(
        f.name
        for f in dataclasses.fields(new)
        if f.name not in ("status", "id") and getattr(old, f.name) != getattr(new, f.name)
    )


def _plan_changes(
    records: dict[tuple[EntityKind, str], Record], state: _State
) -> list[EntityChange]:
    changes: list[EntityChange] = []
    for (kind, entity_id), record in records.items():
        entity = state[kind].get(entity_id)
        status = _status_of(record)
        if entity is None:
            changes.append(
                EntityChange(
                    kind=kind,
                    id=entity_id,
                    change="created",
                    version_before=None,
                    version_after=1,
                    status_change="archived" if status == "archived" else None,
                )
            )
            continue
        fields = _changed_fields(_latest(entity), record)
        status_change: StatusChange | None = None
        if status != entity.status:
            status_change = "archived" if status == "archived" else "unarchived"
        changes.append(
            EntityChange(
                kind=kind,
                id=entity_id,
                change="changed" if fields else "unchanged",
                version_before=entity.latest,
                version_after=entity.latest + 1 if fields else entity.latest,
                status_change=status_change,
                fields=fields,
            )
        )
    for kind in ENTITY_KINDS:
        for entity_id in sorted(state[kind]):
            if (kind, entity_id) not in records:
                latest = state[kind][entity_id].latest
                changes.append(
                    EntityChange(
                        kind=kind,
                        id=entity_id,
                        change="not_in_file",
                        version_before=latest,
                        version_after=latest,
                    )
                )
    return changes


# -- archive rules --------------------------------------------------------------------------------


def _offers_using(
    state: _State, *, feature_id: str | None = None, group_id: str | None = None
) -> list[str]:
    """Active plans / add-ons whose current version grants the feature (or group)."""
    users: list[str] = []
    for kind in ("plan", "addon"):
        offer_kind = cast(EntityKind, kind)
        for offer_id in sorted(state[offer_kind]):
            entity = state[offer_kind][offer_id]
            if entity.status != "active":
                continue
            offer = cast(Plan | AddOn, _latest(entity))
            if _grants(state, offer, feature_id=feature_id, group_id=group_id):
                users.append(f"{_noun(offer_kind)} {offer_id!r} version {entity.latest}")
    return users


def _grants(
    state: _State, offer: Plan | AddOn, *, feature_id: str | None, group_id: str | None
) -> bool:
    for entitlement in offer.entitlements:
        if isinstance(entitlement, GroupEntitlement):
            if entitlement.group == group_id:
                return True
            group = cast(FeatureGroup, _latest(state["feature_group"][entitlement.group]))
            if feature_id is not None and feature_id in group.features:
                return True
        elif not isinstance(entitlement, CreditEntitlement) and entitlement.feature == feature_id:
            return True
    return False


def _archived_grants(state: _State, offer: Plan | AddOn) -> set[str]:
    found: set[str] = set()
    for entitlement in offer.entitlements:
        if isinstance(entitlement, GroupEntitlement):
            group_entity = state["feature_group"][entitlement.group]
            if group_entity.status == "archived":
                found.add(f"feature group {entitlement.group!r}")
            group = cast(FeatureGroup, _latest(group_entity))
            for member in group.features:
                if state["feature"][member].status == "archived":
                    found.add(f"feature {member!r}")
        elif (
            not isinstance(entitlement, CreditEntitlement)
            and state["feature"][entitlement.feature].status == "archived"
        ):
            found.add(f"feature {entitlement.feature!r}")
    return found


def _usage_text(users: list[str]) -> str:
    return "used by " + ", ".join(users)
