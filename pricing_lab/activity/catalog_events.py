"""Catalog activity (SPEC §6): the catalog store's history as `feature.*`, `feature_group.*`,
`plan.*`, `addon.*` and `credit_currency.*` events (`created`, `updated`, `archived`,
`un_archived`)."""

from __future__ import annotations

import numpy as np
import polars as pl

from pricing_lab.catalog.store import CatalogStore
from pricing_lab.ledger.frames import TIMESTAMP

# The store's entity kinds → the event prefix. The default credit rates are not an entity SPEC
# §6 names: their versions send nothing.
ENTITY_PREFIX = {
    "feature": "feature",
    "feature_group": "feature_group",
    "plan": "plan",
    "addon": "addon",
    "currency": "credit_currency",
}
# The store's history events → the event suffix (a change is a new version: `updated`).
EVENT_SUFFIX = {
    "created": "created",
    "changed": "updated",
    "archived": "archived",
    "unarchived": "un_archived",
}


def catalog_activity_schema() -> pl.Schema:
    """`activity_id` (1, 2, … in history order), `timestamp` (publication time, UTC), `kind`
    (e.g. `plan.updated`), `entity_id`, `version` (the version the event leaves in force)."""
    columns: dict[str, pl.DataType] = {
        "activity_id": pl.Int64(),
        "timestamp": TIMESTAMP,
        "kind": pl.String(),
        "entity_id": pl.String(),
        "version": pl.Int64(),
    }
    return pl.Schema(columns)


def catalog_activity(store: CatalogStore) -> pl.DataFrame:
    """The catalog events of `store`'s whole history, in the order they happened."""
    return catalog_activity_from_history(store.history())


def catalog_activity_from_history(history: pl.DataFrame) -> pl.DataFrame:
    """Catalog events from a `CatalogStore.history()` table (`seq, occurred_at, kind, entity_id,
    event, version`), in `seq` order; the store keeps naive UTC times."""
    schema = catalog_activity_schema()
    events = history.filter(pl.col("kind").is_in(list(ENTITY_PREFIX))).sort("seq")
    if events.is_empty():
        return pl.DataFrame(schema=schema)
    moment = pl.col("occurred_at")
    if history.schema["occurred_at"].time_zone is None:  # type: ignore[attr-defined]
        moment = moment.dt.replace_time_zone("UTC")
    return events.select(
        pl.Series("activity_id", np.arange(1, events.height + 1, dtype=np.int64)),
        moment.cast(TIMESTAMP).alias("timestamp"),
        pl.concat_str(
            pl.col("kind").replace_strict(ENTITY_PREFIX, return_dtype=pl.String),
            pl.col("event").replace_strict(EVENT_SUFFIX, return_dtype=pl.String),
            separator=".",
        ).alias("kind"),
        "entity_id",
        pl.col("version").cast(pl.Int64),
    )
