"""Where exported rows come from: the catalog store, replay results in Python or on disk.

Each function turns one source into `ExportTable`s of `connectors.snowflake.tables`; the load job
never sees a catalog or a ledger. Sources are duck-typed: a catalog store is anything with
`tables() -> dict[str, DataFrame]` (`pricing_lab.catalog.store.CatalogStore`), a replay result
anything with `scenario`, `ledger` and `summary` frames (`pricing_lab.ledger.api.ReplayResult`).
A results folder is read by the file names `pricing_lab.outputs` publishes.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from connectors.snowflake.tables import (
    ADDONS,
    CREDIT_CURRENCIES,
    CREDIT_RATES,
    ENTITLEMENTS,
    FEATURE_COSTS,
    FEATURE_GROUP_MEMBERS,
    FEATURE_GROUPS,
    FEATURES,
    GRANTS,
    LEDGER_ENTRIES,
    OUTPUT_SPECS,
    PLANS,
    REPLAY_SUMMARIES,
    SCENARIO_COMPARISONS,
    ExportTable,
    TableSpec,
    to_arrow,
)
from pricing_lab import outputs
from pricing_lab.errors import InputError
from pricing_lab.outputs import result_file_names

# Catalog table → (spec, entity kind whose current status is joined on, id column).
_CATALOG: tuple[tuple[TableSpec, str | None, str | None], ...] = (
    (FEATURES, "feature", "feature_id"),
    (FEATURE_COSTS, None, None),
    (FEATURE_GROUPS, "feature_group", "group_id"),
    (FEATURE_GROUP_MEMBERS, None, None),
    (PLANS, "plan", "plan_id"),
    (ADDONS, "addon", "addon_id"),
    (ENTITLEMENTS, None, None),
    (CREDIT_CURRENCIES, None, None),
    (CREDIT_RATES, None, None),
)


def catalog_tables(store: Any) -> list[ExportTable]:
    """The catalog tables (every version) of a catalog store, with each entity's current status."""
    frames: dict[str, pl.DataFrame] = store.tables()
    entities = frames.get("entities")
    result: list[ExportTable] = []
    for spec, kind, id_column in _CATALOG:
        frame = frames.get(spec.name)
        if frame is None:
            raise InputError(f"the catalog store has no {spec.name!r} table")
        if kind is not None and id_column is not None and entities is not None:
            status = entities.filter(pl.col("kind") == kind).select(
                pl.col("entity_id").alias(id_column), pl.col("status")
            )
            frame = frame.drop("status", strict=False).join(status, on=id_column, how="left")
        result.append(spec.bind(frame))
    return result


def ledger_table(ledger: pl.DataFrame | pa.Table, *, replay_id: str) -> ExportTable:
    """A ledger (SPEC §5 columns) as `ledger_entries` rows of replay `replay_id`."""
    frame = _polars(ledger)
    frame = _with_default(frame, "replay_id", replay_id)
    return LEDGER_ENTRIES.bind(frame)


def grants_table(grants: pl.DataFrame | pa.Table, *, replay_id: str, scenario: str) -> ExportTable:
    """Grants (SPEC §5 fields) of one replay and scenario."""
    frame = _polars(grants)
    frame = _with_default(frame, "replay_id", replay_id)
    frame = _with_default(frame, "scenario", scenario)
    return GRANTS.bind(frame)


def summary_rows(
    summary: pl.DataFrame | pa.Table,
    *,
    replay_id: str,
    scenario: str,
    level: str = "total",
    id_column: str | None = None,
) -> pl.DataFrame:
    """A wide summary (one row per currency, or per currency and `id_column`) in long form:
    one row per numeric metric, as `replay_summaries` wants it."""
    frame = _polars(summary)
    if "scenario" in frame.columns:
        frame = frame.drop("scenario")
    keys = [c for c in ("currency_id", id_column) if c is not None and c in frame.columns]
    # Decimal and integer metrics only: a float column would not be exact, so it is left out.
    metrics = [
        c
        for c in frame.columns
        if c not in keys and frame[c].dtype.is_numeric() and not frame[c].dtype.is_float()
    ]
    if not metrics:
        return pl.DataFrame(schema={c.name: pl.String for c in REPLAY_SUMMARIES.columns})
    long = frame.select(*keys, *[pl.col(m).cast(pl.String) for m in metrics]).unpivot(
        index=keys, on=metrics, variable_name="metric", value_name="value"
    )
    return long.select(
        pl.lit(replay_id).alias("replay_id"),
        pl.lit(scenario).alias("scenario"),
        pl.lit(level).alias("level"),
        (pl.col(id_column) if id_column in keys else pl.lit("")).cast(pl.String).alias("level_id"),
        (pl.col("currency_id") if "currency_id" in keys else pl.lit("")).alias("currency_id"),
        pl.col("metric"),
        pl.col("value"),
    )


def replay_tables(result: Any, *, replay_id: str) -> list[ExportTable]:
    """The ledger and summary of a replay result (`pricing_lab.ledger.api.ReplayResult`)."""
    scenario = str(result.scenario)
    return [
        ledger_table(result.ledger, replay_id=replay_id),
        REPLAY_SUMMARIES.bind(summary_rows(result.summary, replay_id=replay_id, scenario=scenario)),
    ]


def results_folder_tables(folder: str | Path) -> list[ExportTable]:
    """The tables of a results folder as `pricing-lab simulate`, `compare` and `demo` write it:
    each replay's output files (`pricing_lab.outputs.REPLAY_FILES`) and `summary.json`, in the
    folder itself and in each `scenarios/NAME/`, and a comparison's tables. The folder's name is
    the replay id; each replay's scenario comes from its summary.json (else its ledger)."""
    path = Path(folder)
    if not path.is_dir():
        raise InputError(f"{path}: no such results folder")
    replay_id = path.resolve().name
    found: list[ExportTable] = []
    folders = sorted(p for p in (path / outputs.SCENARIOS_FOLDER).glob("*") if p.is_dir())
    compared = _compared_scenarios(path)
    if compared is not None:
        # A comparison written again into the same folder leaves the folders of scenarios it no
        # longer has: only those comparison.json names are this comparison's.
        named = {outputs.scenario_folder_name(name) for name in compared}
        folders = [p for p in folders if p.name in named]
    replays = [path, *folders]
    for replay in replays:
        scenario = _scenario_of(replay)
        for output in outputs.REPLAY_FILES:
            file = replay / output.file
            if not file.is_file():
                continue
            frame = _read_parquet(file)
            if "scenario" not in frame.columns:
                frame = frame.with_columns(pl.lit(scenario).alias("scenario"))
            if output.row_number is not None:
                frame = frame.with_row_index(output.row_number, offset=1).with_columns(
                    pl.col(output.row_number).cast(pl.Int64)
                )
            frame = _with_default(frame, "replay_id", replay_id)
            found.append(OUTPUT_SPECS[output.name].bind(frame))
        summary_file = replay / outputs.SUMMARY_FILE
        if summary_file.is_file():
            found.append(
                REPLAY_SUMMARIES.bind(summary_json_rows(summary_file, replay_id=replay_id))
            )
    about = path / outputs.COMPARISON_FILES[0]
    customers_file = path / outputs.COMPARISON_FILES[1]
    if about.is_file() and customers_file.is_file():
        base = str(_comparison_json(about)["base"])
        features_file = path / outputs.COMPARISON_FILES[2]
        features = _read_parquet(features_file) if features_file.is_file() else None
        rows = comparison_rows(
            _read_parquet(customers_file), features, base=base, comparison_id=replay_id
        )
        found.append(SCENARIO_COMPARISONS.bind(rows))
    found = combine(found)
    if not found:
        raise InputError(
            f"{path}: no result files found (looked for {', '.join(result_file_names())})"
        )
    return found


def _compared_scenarios(path: Path) -> list[str] | None:
    """The scenarios `comparison.json` in `path` names (None: no comparison there)."""
    about = path / outputs.COMPARISON_FILES[0]
    if not about.is_file():
        return None
    return [str(name) for name in _comparison_json(about)["scenarios"]]


def _comparison_json(about: Path) -> dict[str, Any]:
    """`comparison.json`: `base` and `scenarios` (names), or bad input naming the file."""
    try:
        about_json = json.loads(about.read_text(encoding="utf-8"))
        if not isinstance(about_json["scenarios"], list):
            raise TypeError("scenarios is not a list")
        str(about_json["base"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{about}: not a readable comparison.json ({exc})") from None
    return dict(about_json)


def _scenario_of(replay: Path) -> str:
    """A replay folder's scenario: its summary.json's, else its ledger's, else its name under
    scenarios/ (else `base`)."""
    summary = replay / outputs.SUMMARY_FILE
    if summary.is_file():
        try:
            name = json.loads(summary.read_text(encoding="utf-8")).get("scenario")
        except (OSError, ValueError, AttributeError):
            name = None
        if isinstance(name, str) and name:
            return name
    ledger = replay / outputs.LEDGER.file
    if ledger.is_file():
        single = _single(_read_parquet(ledger), "scenario")
        if single:
            return single
    return replay.name if replay.parent.name == outputs.SCENARIOS_FOLDER else "base"


def _read_parquet(file: Path) -> pl.DataFrame:
    try:
        return pl.read_parquet(file)
    except Exception as exc:  # polars raises several types for a damaged or foreign file
        raise InputError(f"{file}: not a readable Parquet file ({type(exc).__name__})") from None


# summary.json section → (level, id column) of its `replay_summaries` rows.
_SUMMARY_LEVELS = (
    ("currencies", "total", None),
    ("features", "feature", "feature_id"),
    ("plans", "plan", "plan_id"),
)


def summary_json_rows(path: Path, *, replay_id: str) -> pl.DataFrame:
    """`summary.json` of `pricing-lab simulate` as `replay_summaries` rows: the totals per
    currency, per feature and per plan (decimals are strings there, read exactly)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable summary.json: {exc}") from None
    scenario = str(document.get("scenario") or "base")
    parts = []
    for section, level, id_column in _SUMMARY_LEVELS:
        rows = document.get(section) or []
        if not rows:
            continue
        frame = pl.DataFrame([{k: _exact(v) for k, v in row.items()} for row in rows])
        parts.append(
            summary_rows(
                frame, replay_id=replay_id, scenario=scenario, level=level, id_column=id_column
            )
        )
    if not parts:
        return pl.DataFrame(schema={c.name: pl.String for c in REPLAY_SUMMARIES.columns})
    return pl.concat(parts, how="vertical_relaxed")


def _exact(value: Any) -> Any:
    """Numbers written as text in summary.json become Decimals; everything else stays."""
    if isinstance(value, str):
        try:
            return Decimal(value)
        except ArithmeticError:
            return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    return value


_COMPARED = ("consumed", "events_denied", "recharge_revenue", "breakage")


def comparison_rows(
    customers: pl.DataFrame,
    features: pl.DataFrame | None,
    *,
    base: str,
    comparison_id: str,
) -> pl.DataFrame:
    """The comparison tables of `pricing-lab compare` as `scenario_comparisons` rows: per
    customer (consumed, events denied, recharge revenue, breakage, run-out time) and per feature
    (consumed), each with the base value, the scenario value and the change."""
    amount = pl.Decimal(38, 12)
    parts = [
        customers.select(
            pl.col("scenario"),
            pl.col("customer_id"),
            pl.lit("").alias("feature_id"),
            pl.col("currency_id"),
            pl.lit(metric).alias("metric"),
            (pl.col(metric) - pl.col(f"{metric}_change")).cast(amount).alias("base_value"),
            pl.col(metric).cast(amount).alias("scenario_value"),
            pl.col(f"{metric}_change").cast(amount).alias("delta"),
            pl.lit(None, pl.Datetime("us")).alias("base_time"),
            pl.lit(None, pl.Datetime("us")).alias("scenario_time"),
        )
        for metric in _COMPARED
    ]
    if "base_runout_at" in customers.columns:
        parts.append(
            customers.select(
                pl.col("scenario"),
                pl.col("customer_id"),
                pl.lit("").alias("feature_id"),
                pl.col("currency_id"),
                pl.lit("runout_at").alias("metric"),
                pl.lit(None, amount).alias("base_value"),
                pl.lit(None, amount).alias("scenario_value"),
                pl.lit(None, amount).alias("delta"),
                pl.col("base_runout_at").dt.replace_time_zone(None).alias("base_time"),
                pl.col("runout_at").dt.replace_time_zone(None).alias("scenario_time"),
            )
        )
    if features is not None:
        parts.append(
            features.select(
                pl.col("scenario"),
                pl.lit("").alias("customer_id"),
                pl.col("feature_id"),
                pl.col("currency_id"),
                pl.lit("consumed").alias("metric"),
                (pl.col("consumed") - pl.col("consumed_change")).cast(amount).alias("base_value"),
                pl.col("consumed").cast(amount).alias("scenario_value"),
                pl.col("consumed_change").cast(amount).alias("delta"),
                pl.lit(None, pl.Datetime("us")).alias("base_time"),
                pl.lit(None, pl.Datetime("us")).alias("scenario_time"),
            )
        )
    rows = pl.concat(parts, how="vertical_relaxed")
    return rows.select(
        pl.lit(comparison_id).alias("comparison_id"),
        pl.lit(base).alias("base_scenario"),
        *rows.columns,
    )


def combine(tables: Iterable[ExportTable]) -> list[ExportTable]:
    """One `ExportTable` per name: the rows of same-named tables (e.g. several results folders)
    put together, in first-seen order. Types are normalised to the table's before concatenating."""
    groups: dict[str, list[ExportTable]] = {}
    for table in tables:
        groups.setdefault(table.name, []).append(table)
    combined: list[ExportTable] = []
    for group in groups.values():
        if len(group) == 1:
            combined.append(group[0])
            continue
        frame = pa.concat_tables([to_arrow(t) for t in group])
        combined.append(dataclasses.replace(group[0], frame=frame))
    return combined


def select_tables(tables: Sequence[ExportTable], names: Sequence[str] | None) -> list[ExportTable]:
    """Only the tables named (all for None); a name with no source is an `InputError`."""
    if names is None:
        return list(tables)
    by_name = {t.name: t for t in tables}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise InputError(
            f"no source for table(s) {', '.join(missing)}: catalog tables come from --db STORE, "
            f"{' / '.join(OUTPUT_SPECS)} / replay_summaries / scenario_comparisons from "
            "--results DIR"
        )
    return [by_name[n] for n in names]


def _polars(frame: pl.DataFrame | pa.Table) -> pl.DataFrame:
    if isinstance(frame, pl.DataFrame):
        return frame
    result = pl.from_arrow(frame)
    assert isinstance(result, pl.DataFrame)
    return result


def _with_default(frame: pl.DataFrame, column: str, value: str) -> pl.DataFrame:
    """`frame` with `column` set to `value` when the frame has no such column."""
    return frame if column in frame.columns else frame.with_columns(pl.lit(value).alias(column))


def _single(frame: pl.DataFrame, column: str) -> str | None:
    if column not in frame.columns or frame.height == 0:
        return None
    values = frame[column].unique().to_list()
    return str(values[0]) if len(values) == 1 else None
