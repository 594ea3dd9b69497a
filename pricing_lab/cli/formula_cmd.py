"""`pricing-lab formula check "EXPR" [--events FILE] [--json]`: validity, dimensions, coverage."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pricing_lab.errors import InputError
from pricing_lab.formula import Formula, FormulaError
from pricing_lab.formula.duckdb_sql import out_of_range_sql
from pricing_lab.formula.sql_base import quote_identifier, quote_string

_READERS = {"parquet": "read_parquet", "csv": "read_csv_auto", "ndjson": "read_json_auto"}


def register(subparsers: Any) -> None:
    """Add the `formula` command."""
    parser = subparsers.add_parser(
        "formula",
        help="check a consumption formula",
        description="Consumption formulas: the expression language of credit rates "
        "(docs/formulas.md).",
    )
    actions = parser.add_subparsers(dest="formula_action", metavar="ACTION")
    actions.required = True
    check = actions.add_parser(
        "check",
        help="validate a formula; with --events, report dimension coverage and rejections",
        description="Validate EXPR (a parse error shows the position with a caret, exit 2), "
        "list the dimensions it reads and its canonical text. With --events FILE (Parquet, CSV "
        "or NDJSON), report for each dimension the share of events where it is null or missing, "
        "and how many events the formula would reject (null or negative cost).",
    )
    check.add_argument("expr", metavar="EXPR", help="the formula text")
    check.add_argument("--events", metavar="FILE", help="event file: .parquet, .csv, .ndjson/.json")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(handler=run_check)


def run_check(args: argparse.Namespace) -> int:
    """Handler of `formula check`."""
    try:
        formula = Formula.parse(args.expr)
    except FormulaError as exc:
        if args.json:
            print(json.dumps({"valid": False, "error": str(exc)}, indent=2))
            return 2
        raise
    report: dict[str, Any] = {
        "valid": True,
        "formula": formula.text,
        "dimensions": list(formula.dimensions),
    }
    if args.events:
        report["events"] = coverage(formula, Path(args.events))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(_text(report))
    return 0


def coverage(formula: Formula, path: Path) -> dict[str, Any]:
    """Null share per dimension and rejected-event counts of `formula` over an event file."""
    import duckdb

    if not path.is_file():
        raise InputError(f"{path}: no such event file")
    # The event files `simulate` reads, by the same suffixes.
    from pricing_lab.events.ingest import SUFFIX_FORMATS

    kind = SUFFIX_FORMATS.get(path.suffix.lower())
    if kind is None:
        known = ", ".join(SUFFIX_FORMATS)
        raise InputError(f"{path}: unknown event file type {path.suffix!r} (known: {known})")
    reader = _READERS[kind]
    con = duckdb.connect()
    literal = quote_string(str(path))
    try:
        source = con.sql(f"SELECT * FROM {reader}({literal})")
    except duckdb.Error as exc:
        raise InputError(f"{path}: cannot read events: {exc}") from exc
    # Dimensions match columns case-insensitively, as everywhere (docs/events.md). One that is
    # not a column but a `properties` key (in any spelling of that key) is read from it as text.
    matched = formula.dimension_columns(source.columns)
    properties = next((c for c in source.columns if c.lower() == "properties"), None)
    from_properties = [d for d in formula.dimensions if d not in matched]
    if from_properties and properties is not None:
        json_value = f"TRY_CAST({quote_identifier(properties)} AS JSON)"
        spellings: dict[str, list[str]] = {}
        for (key,) in (
            source.select(f"unnest(json_keys({json_value})) AS k").distinct().order("k").fetchall()
        ):
            spellings.setdefault(str(key).lower(), []).append(str(key))
        extracts = ", ".join(
            "coalesce("
            + ", ".join(
                f"json_extract_string({json_value}, {_json_path(key)})"
                for key in spellings.get(name.lower(), [name])
            )
            + f") AS {quote_identifier(name)}"
            for name in from_properties
        )
        source = source.select(f"*, {extracts}")
        matched = formula.dimension_columns(source.columns)
    present = [d for d in formula.dimensions if d in matched]
    types = dict(zip(source.columns, (str(t) for t in source.types), strict=True))
    sql = formula.to_duckdb_sql(types)
    # As in a replay (docs/events.md): a value beyond the exact decimal range fails that event's
    # cost (`cost_out_of_range`), never the whole check. The second TRY is in an outer SELECT, as
    # in costing: in one SELECT, DuckDB shares the formula between both TRYs and raises.
    value = (
        source.select(f"*, TRY({sql}) AS {_VALUE}")
        .select(
            f"{_VALUE} AS value, CASE WHEN {_VALUE} IS NULL THEN {out_of_range_sql(sql)} "
            "ELSE FALSE END AS out_of_range"
        )
        .set_alias("v")
    )
    nulls = ", ".join(
        f"count(*) FILTER (WHERE {quote_identifier(d)} IS NULL) AS {quote_identifier('n:' + d)}"
        for d in present
    )
    source_counts = source.aggregate(f"count(*) AS rows{', ' + nulls if nulls else ''}")
    try:
        counted = source_counts.fetchall()[0]
        rejected_null, rejected_negative, out_of_range = value.aggregate(
            "count(*) FILTER (WHERE value IS NULL AND NOT out_of_range), "
            "count(*) FILTER (WHERE value < 0), count(*) FILTER (WHERE out_of_range)"
        ).fetchall()[0]
    except duckdb.Error as exc:
        raise FormulaError(f"evaluating the formula over {path} failed: {exc}") from exc
    rows = int(counted[0])
    null_counts = dict(zip(present, (int(c) for c in counted[1:]), strict=True))
    dimensions: dict[str, Any] = {}
    for name in formula.dimensions:
        missing = name not in matched
        count = rows if missing else null_counts[name]
        dimensions[name] = {
            "column": "missing"
            if missing
            else ("properties" if name in from_properties else "column"),
            "null_events": count,
            "null_share": round(count / rows, 6) if rows else 0.0,
        }
    return {
        "file": str(path),
        "rows": rows,
        "dimensions": dimensions,
        "rejected": {
            "formula_null": int(rejected_null),
            "formula_negative": int(rejected_negative),
            "cost_out_of_range": int(out_of_range),
            "total": int(rejected_null) + int(rejected_negative) + int(out_of_range),
        },
    }


_VALUE = "__pricing_lab_formula_value"


def _json_path(name: str) -> str:
    return quote_string('$."' + name.replace("\\", "\\\\").replace('"', '\\"') + '"')


def _text(report: dict[str, Any]) -> str:
    lines = [
        f"valid formula: {report['formula']}",
        "dimensions: " + (", ".join(report["dimensions"]) or "(none)"),
    ]
    events = report.get("events")
    if events:
        rows = events["rows"]
        lines.append(f"events: {rows} in {events['file']}")
        for name, info in events["dimensions"].items():
            where = " (missing from the file)" if info["column"] == "missing" else ""
            if info["column"] == "properties":
                where = " (from properties)"
            lines.append(
                f"  {name}: null in {info['null_events']} of {rows} events "
                f"({info['null_share']:.2%}){where}"
            )
        rejected = events["rejected"]
        lines.append(
            f"rejected: {rejected['total']} of {rows} events "
            f"({rejected['formula_null']} null cost, {rejected['formula_negative']} negative cost"
            + (
                f", {rejected['cost_out_of_range']} out of the exact decimal range)"
                if rejected["cost_out_of_range"]
                else ")"
            )
        )
    return "\n".join(lines)
