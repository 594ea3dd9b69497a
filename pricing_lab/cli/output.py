"""What commands print: readable summary tables for people, JSON with real numbers for schedulers.

Tables come from `report.views` (the same figures the report and notebooks show). `json_text`
writes every number as a JSON number — exact decimals with all their digits (`426.96739`), never
a string and never through a binary float — and times as ISO 8601 text.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pricing_lab.report import format as fmt
from pricing_lab.report.tables import Column, Table, text_table

if TYPE_CHECKING:
    import polars as pl

    from pricing_lab.simulation.scenarios import Comparison
    from pricing_lab.simulation.simulate import SimulationResult

_DECIMAL_TEXT = re.compile(r"-?\d+(\.\d+)?")
# Keys of a summary whose values are names, never numbers, even when they look like one.
_NAME_KEYS = frozenset({"scenario", "start", "until", "reason"})


def json_text(value: Any, *, indent: int = 2, sort_keys: bool = False) -> str:
    """`value` as JSON: Decimals as exact numbers, datetimes and dates as ISO text, paths as
    text. Mappings, lists and tuples nest; anything else must be a JSON scalar."""
    return _encode(value, indent, sort_keys, 0)


def _encode(value: Any, indent: int, sort_keys: bool, depth: int) -> str:
    pad, inner = " " * (indent * depth), " " * (indent * (depth + 1))
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"not a finite number: {value}")
        return format(value, "f")
    if isinstance(value, int | float | str):
        return json.dumps(value)
    if isinstance(value, datetime | date):
        return json.dumps(value.isoformat())
    if isinstance(value, Path):
        return json.dumps(str(value))
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        keys = sorted(value, key=str) if sort_keys else list(value)
        items = [
            f"{inner}{json.dumps(str(key))}: {_encode(value[key], indent, sort_keys, depth + 1)}"
            for key in keys
        ]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list | tuple):
        if not value:
            return "[]"
        items = [f"{inner}{_encode(item, indent, sort_keys, depth + 1)}" for item in value]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def print_json(value: Any, *, sort_keys: bool = False) -> None:
    """Write `value` as JSON (see `json_text`) to stdout."""
    sys.stdout.write(json_text(value, sort_keys=sort_keys) + "\n")


def with_numbers(summary: Any, key: str = "") -> Any:
    """A replay summary (`SimulationResult.summary_dict()`, which writes decimals as text so
    that `summary.json` keeps every digit) with its decimal texts as exact numbers again. Ids
    (`*_id`) and names keep their text."""
    if isinstance(summary, Mapping):
        return {k: with_numbers(v, str(k)) for k, v in summary.items()}
    if isinstance(summary, list):
        return [with_numbers(item, key) for item in summary]
    if (
        isinstance(summary, str)
        and not key.endswith("_id")
        and key not in _NAME_KEYS
        and _DECIMAL_TEXT.fullmatch(summary)
    ):
        return Decimal(summary)
    return summary


def rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """A frame's rows as JSON-ready mappings (decimals stay exact)."""
    return list(frame.iter_rows(named=True))


def simulation_text(
    result: SimulationResult,
    summary: Mapping[str, Any],
    *,
    price_currencies: Mapping[str, str],
    paths: Sequence[Path],
) -> str:
    """What `pricing-lab simulate` prints: the horizon and events, then every key figure per
    currency and per plan, then the files written."""
    from pricing_lab.report import views  # the report's whole stack: only when printing one

    events = summary["events"]
    read = events.get("read")
    span = " → ".join(
        fmt.timestamp(datetime.fromisoformat(summary[key])) for key in ("start", "until")
    )
    lines = [
        f"scenario {result.scenario}: {span} UTC",
        "events: "
        + (f"{read:,} read, " if read is not None else "")
        + f"{events['rejected']:,} rejected, {events['denied']:,} denied; "
        f"{summary['ledger_entries']:,} ledger entries",
        "",
        text_table(views.replay_table(result.summary, price_currencies), transpose=True),
    ]
    plans = result.plan_summary
    if plans.height:
        lines += ["", "per plan:", text_table(_plan_table(plans))]
    lines += ["", "wrote " + ", ".join(str(p) for p in paths)]
    return "\n".join(lines)


def _plan_table(plans: pl.DataFrame) -> Table:
    return Table(
        title="per plan",
        frame=plans,
        columns=[
            Column(name="plan_id", header="plan"),
            Column(name="currency_id", header="currency"),
            Column(name="customers", kind="count"),
            Column(name="granted", header="credits granted", kind="credits"),
            Column(name="consumed", header="credits consumed", kind="credits"),
            Column(name="expired", header="credits expired", kind="credits"),
            Column(name="rolled_over", header="credits rolled over", kind="credits"),
        ],
    )


def comparison_text(comparison: Comparison) -> str:
    """The headline of a comparison, scenarios side by side, each figure with its change."""
    from pricing_lab.report import views  # the report's whole stack: only when printing one

    return text_table(views.headline_table(comparison), transpose=True)


def comparison_json(comparison: Comparison) -> dict[str, Any]:
    """`compare --json`: the base, the headline per scenario and the totals, numbers as numbers."""
    from pricing_lab.report.findings import headlines

    return {
        "base": comparison.base,
        "scenarios": rows(headlines(comparison)),
        "totals": rows(comparison.totals.sort("scenario")),
    }
