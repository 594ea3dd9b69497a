"""The files a replay writes and their columns: one declaration per output, for every reader.

`simulate` writes `REPLAY_FILES` (and `summary.json`) into its `--out` folder; `compare` and
`demo` write them per scenario under `scenarios/NAME/`, beside `COMPARISON_FILES`. Each
`OutputFile` names its file, its columns (Polars types; a `Decimal` column's scale is the
replay's, so only its kind is declared) and what identifies a row within one replay of one
scenario. Readers — the Snowflake export first — take names and schemas from here instead of
declaring them again; a new output (credit activity, rollovers, margin) is one more entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

UTC_TIME = pl.Datetime("us", "UTC")


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputFile:
    """One Parquet output of a replay.

    `key`: the columns that identify a row within one replay of one scenario; empty when no
    column does, and then `row_number` names a column numbering the rows 1, 2, … in the file's
    order (the writers' order is deterministic). `incremental`: a column that only grows as a
    replay's horizon grows (a longer replay appends rows above it).
    """

    name: str
    file: str
    columns: Mapping[str, pl.DataType | type[pl.DataType]]
    key: tuple[str, ...] = ()
    row_number: str | None = None
    incremental: str | None = None
    description: str = ""

    def schema(self, scale: int, **scales: int) -> pl.Schema:
        """The file's columns as written: each Decimal column at `scale` decimal places, or at
        the places `scales` gives it by name (e.g. `cost_basis=money_scale`)."""
        unknown = sorted(set(scales) - set(self.columns))
        if unknown:
            raise ValueError(f"{self.file} has no column {', '.join(unknown)}")
        columns: dict[str, pl.DataType] = {}
        for name, dtype in self.columns.items():
            if dtype is pl.Decimal or isinstance(dtype, pl.Decimal):
                columns[name] = pl.Decimal(38, scales.get(name, scale))
            else:
                columns[name] = dtype() if isinstance(dtype, type) else dtype
        return pl.Schema(columns)


LEDGER = OutputFile(
    name="ledger_entries",
    file="ledger.parquet",
    description="Ledger entries (SPEC §5), in ledger order.",
    key=("entry_id",),
    incremental="entry_id",
    columns={
        "entry_id": pl.Int64,
        "timestamp": UTC_TIME,
        "customer_id": pl.String,
        "currency_id": pl.String,
        "entry_type": pl.String,
        "grant_id": pl.String,
        "grant_type": pl.String,
        "grant_source": pl.String,
        "amount": pl.Decimal,
        "balance_after": pl.Decimal,
        "event_id": pl.String,
        "feature_id": pl.String,
        "scenario": pl.String,
    },
)
GRANTS = OutputFile(
    name="grants",
    file="grants.parquet",
    description="Credit grants: input, recurring, rollover and auto-recharge.",
    key=("grant_id",),
    columns={
        "grant_id": pl.String,
        "customer_id": pl.String,
        "currency_id": pl.String,
        "amount": pl.Decimal,
        "type": pl.String,
        "priority": pl.Int64,
        "effective_at": UTC_TIME,
        "expires_at": UTC_TIME,
        "cost_basis": pl.Decimal,
        "voided_at": UTC_TIME,
        "source": pl.String,
        "scenario": pl.String,
    },
)
BALANCES = OutputFile(
    name="balances",
    file="balances.parquet",
    description="Per customer and currency: granted, consumed, … final balance.",
    key=("customer_id", "currency_id"),
    columns={
        "customer_id": pl.String,
        "currency_id": pl.String,
        "granted": pl.Decimal,
        "consumed": pl.Decimal,
        "expired": pl.Decimal,
        "voided": pl.Decimal,
        "rolled_over": pl.Decimal,
        "final_balance": pl.Decimal,
        "overdraft_debt": pl.Decimal,
        "first_zero_at": UTC_TIME,
        "recharges_issued": pl.Int64,
        "recharge_spend": pl.Decimal,
        "breakage": pl.Decimal,
        "events_denied": pl.Int64,
    },
)
DENIED_EVENTS = OutputFile(
    name="denied_events",
    file="denied_events.parquet",
    description="Events denied in block mode, one row per event.",
    key=("event_id",),
    columns={
        "event_id": pl.String,
        "customer_id": pl.String,
        "timestamp": UTC_TIME,
        "reason": pl.String,
        "currency_id": pl.String,
        "cost": pl.Decimal,
        "balance": pl.Decimal,
        "scenario": pl.String,
    },
)
REJECTED_EVENTS = OutputFile(
    name="rejected_events",
    file="rejected_events.parquet",
    description="Events rejected on reading or costing, each with its reason.",
    row_number="rejected_row",
    columns={
        "source_row": pl.Int64,
        "event_id": pl.String,
        "customer_id": pl.String,
        "event_name": pl.String,
        "timestamp": pl.String,
        "reason": pl.String,
        "detail": pl.String,
    },
)

MARGIN = OutputFile(
    name="margin",
    file="margin.parquet",
    description="Revenue recognised, breakage, cost to serve and gross margin per customer, "
    "currency, feature and plan (docs/margin.md).",
    # currency_id (usage no rate priced) and feature_id (breakage) may be null: rows are
    # numbered instead, in the file's order (sorted on the four keys).
    row_number="margin_row",
    columns={
        "customer_id": pl.String,
        "currency_id": pl.String,
        "feature_id": pl.String,
        "plan_id": pl.String,
        "revenue": pl.Decimal,
        "breakage": pl.Decimal,
        "cost_to_serve": pl.Decimal,
        "events": pl.Int64,
        "unknown_cost_events": pl.Int64,
        "gross_margin": pl.Decimal,
        # The file's float ratios margin_share and unknown_cost_share are left out: readers
        # that keep only exact columns work them out from the ones above.
    },
)

ACTIVITY = OutputFile(
    name="credit_activity",
    file="activity.parquet",
    description="The credit activity stream (SPEC §6), in stream order (docs/activity.md).",
    key=("activity_id",),
    # Events before a replay's horizon depend on nothing after it: a longer replay appends.
    incremental="activity_id",
    columns={
        "activity_id": pl.Int64,
        "timestamp": UTC_TIME,
        "customer_id": pl.String,
        "currency_id": pl.String,
        "kind": pl.String,
        "grant_id": pl.String,
        "amount": pl.Decimal,
        "balance": pl.Decimal,
        "threshold": pl.Decimal,
        "money": pl.Decimal,
        "scenario": pl.String,
    },
)

# What one replay writes, besides SUMMARY_FILE.
REPLAY_FILES: tuple[OutputFile, ...] = (
    LEDGER,
    GRANTS,
    BALANCES,
    DENIED_EVENTS,
    REJECTED_EVENTS,
    MARGIN,
    ACTIVITY,
)
SUMMARY_FILE = "summary.json"
# What `compare` (and `demo`) write beside the scenarios' folders.
SCENARIOS_FOLDER = "scenarios"
COMPARISON_FILES = (
    "comparison.json",
    "comparison_customers.parquet",
    "comparison_features.parquet",
    "comparison_totals.parquet",
)


def scenario_folder_name(scenario: str) -> str:
    """The folder of a scenario's outputs under `SCENARIOS_FOLDER`: its name with every character
    but letters, digits, `-`, `_` and `.` written `_` (`scenarios.validate_scenarios` refuses two
    names with one folder, and `.` / `..`)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in scenario)


def result_file_names() -> list[str]:
    """The files of a results folder its readers take (the Snowflake export's `--results`), as
    `simulate`, `compare` and `demo` write them: for help texts and errors."""
    return [
        *(o.file for o in REPLAY_FILES),
        SUMMARY_FILE,
        *COMPARISON_FILES[:3],
        f"{SCENARIOS_FOLDER}/NAME/…",
    ]


__all__ = [
    "ACTIVITY",
    "BALANCES",
    "COMPARISON_FILES",
    "DENIED_EVENTS",
    "GRANTS",
    "LEDGER",
    "MARGIN",
    "REJECTED_EVENTS",
    "REPLAY_FILES",
    "SCENARIOS_FOLDER",
    "SUMMARY_FILE",
    "OutputFile",
    "result_file_names",
    "scenario_folder_name",
]
