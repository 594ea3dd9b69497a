"""The rejection report of `simulate`, `compare` and `usage report`, and its gate for schedulers.

Every run says what it did not use: rejected rows by reason, with a few example event ids (or
input rows) and where the full list is written, on screen and in `--json`. `--max-rejected SHARE`
(and `--strict`, the same as 0) makes the run fail with exit status 2 when the rejected share of
the rows read is above it; the outputs are written first, so the rejected rows can be read.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

import polars as pl

from pricing_lab.errors import InputError

EXAMPLES = 3  # example event ids (or input rows) shown per reason


def add_rejection_arguments(parser: argparse.ArgumentParser) -> None:
    """`--max-rejected SHARE` and `--strict`."""
    gate = parser.add_mutually_exclusive_group()
    gate.add_argument(
        "--max-rejected",
        type=_share,
        metavar="SHARE",
        help="fail (exit 2) when more than SHARE of the rows read are rejected: 0.05 or 5%% "
        "(the outputs are still written)",
    )
    gate.add_argument(
        "--strict",
        action="store_true",
        help="fail (exit 2) when any row is rejected; the same as --max-rejected 0",
    )


def _share(text: str) -> float:
    value = text.strip()
    try:
        share = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a share: {text!r} (e.g. 0.05 or 5%)") from None
    if not 0 <= share <= 1:
        raise argparse.ArgumentTypeError(f"a share is between 0 and 1 (0% to 100%): {text!r}")
    return share


def rejection_report(
    rejected: pl.DataFrame,
    *,
    rows_read: int,
    path: Path | None = None,
    known_customers: Iterable[str] | None = None,
) -> dict[str, Any]:
    """JSON-ready summary of a run's rejected rows (the columns of `rejected_events.parquet`).

    `known_customers`: the customer list the run was given; unknown customer ids that match one
    of them except for case are listed under `case_mismatches` (ids are case-sensitive).
    """
    by_reason: dict[str, Any] = {}
    if rejected.height:
        for reason in sorted(rejected["reason"].drop_nulls().unique().to_list()):
            rows = rejected.filter(pl.col("reason") == reason).sort("source_row", nulls_last=True)
            ids = [e for e in rows["event_id"].to_list() if e] if "event_id" in rows.columns else []
            examples = ids[:EXAMPLES] or [
                f"row {r}" for r in rows["source_row"].drop_nulls().head(EXAMPLES).to_list()
            ]
            by_reason[str(reason)] = {"count": rows.height, "examples": examples}
    report: dict[str, Any] = {
        "rows_read": rows_read,
        "rejected": rejected.height,
        "share": round(rejected.height / rows_read, 6) if rows_read else 0.0,
        "by_reason": by_reason,
        "file": None if path is None else str(path),
    }
    if known_customers is not None and rejected.height:
        mismatches = _case_mismatches(rejected, known_customers)
        if mismatches:
            report["case_mismatches"] = mismatches
    return report


def _case_mismatches(rejected: pl.DataFrame, known: Iterable[str]) -> dict[str, Any]:
    by_lower: dict[str, str] = {}
    for customer in known:
        by_lower.setdefault(customer.lower(), customer)
    unknown = rejected.filter(pl.col("reason") == "unknown_customer")["customer_id"].drop_nulls()
    counts: dict[str, int] = {}
    for customer in unknown.to_list():
        if customer.lower() in by_lower:
            counts[customer] = counts.get(customer, 0) + 1
    if not counts:
        return {}
    ids = sorted(counts)
    return {
        "events": sum(counts.values()),
        "customers": {c: by_lower[c.lower()] for c in ids[: EXAMPLES * 3]},
    }


def print_report(report: Mapping[str, Any], *, out: TextIO | None = None) -> None:
    """The report as a few lines of text."""
    stream = out if out is not None else sys.stdout
    rejected, read = report["rejected"], report["rows_read"]
    if not rejected:
        stream.write(f"rejected: none of {read} rows\n")
        return
    stream.write(f"rejected: {rejected} of {read} rows ({report['share']:.2%})")
    stream.write(f", listed in {report['file']}\n" if report.get("file") else "\n")
    for reason, info in report["by_reason"].items():
        stream.write(f"  {reason}: {info['count']} (e.g. {', '.join(info['examples'])})\n")
    mismatches = report.get("case_mismatches")
    if mismatches:
        pairs = ", ".join(f"{k!r} → {v!r}" for k, v in mismatches["customers"].items())
        stream.write(
            f"  warning: {mismatches['events']} events name a known customer in another case "
            f"({pairs}); customer ids are case-sensitive\n"
        )


def max_share(args: argparse.Namespace) -> float | None:
    """The share the run may reject: `--max-rejected`, 0 with `--strict`, else None (no gate)."""
    if getattr(args, "strict", False):
        return 0.0
    share = getattr(args, "max_rejected", None)
    return None if share is None else float(share)


def enforce(args: argparse.Namespace, reports: Mapping[str, Mapping[str, Any]]) -> None:
    """Raise `InputError` (exit 2) when a report's rejected share is above the allowed one.

    `reports`: the run's reports by name (one per scenario for `compare`)."""
    allowed = max_share(args)
    if allowed is None:
        return
    over = [
        f"{name}: {r['rejected']} of {r['rows_read']} rows ({r['share']:.2%})"
        for name, r in reports.items()
        if r["rejected"] and (r["share"] > allowed or (allowed == 0))
    ]
    if over:
        limit = "--strict" if allowed == 0 else f"--max-rejected {allowed:.2%}"
        raise InputError(
            f"too many rejected rows for {limit}: " + "; ".join(over) + " (outputs written)"
        )
