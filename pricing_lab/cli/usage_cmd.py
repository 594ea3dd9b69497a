"""`pricing-lab usage report`: ingest events and write a usage report (SPEC §4) to a file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pricing_lab.errors import InputError


def register(subparsers: Any) -> None:
    usage = subparsers.add_parser(
        "usage", help="usage events: reports per customer, feature and period"
    )
    commands = usage.add_subparsers(dest="usage_command", metavar="SUBCOMMAND")
    commands.required = True
    report = commands.add_parser(
        "report",
        help="aggregate usage per customer, feature and period into a Parquet or CSV file",
        description=(
            "Ingest usage events (Parquet, CSV or NDJSON), match them to the catalog's metered "
            "features and write usage per customer, feature and period, with reset markers at "
            "period starts and plan changes."
        ),
    )
    report.add_argument("--catalog", required=True, help="catalog YAML file")
    report.add_argument("--events", required=True, help="events file (.parquet, .csv, .ndjson)")
    report.add_argument("--reported", help="reported usage file (customer_id, feature_id, ...)")
    report.add_argument(
        "--subscriptions", help="subscriptions (.csv or .parquet: customer_id, plan_id, start, end)"
    )
    report.add_argument("--period", choices=("day", "week", "month", "billing"), default="month")
    report.add_argument("--out", required=True, help="output file (.parquet or .csv)")
    report.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    report.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace) -> int:
    import duckdb

    from pricing_lab.catalog.yaml_format import load_catalog_file
    from pricing_lab.events.ingest import ingest_events, ingest_reported_usage, quote_literal
    from pricing_lab.events.meters import metered_features
    from pricing_lab.events.report import usage_report

    out = Path(args.out)
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise InputError(f"{out}: the output must end in .parquet or .csv")
    catalog = load_catalog_file(args.catalog)
    con = duckdb.connect()
    ingested = ingest_events(con, args.events)
    reported = None
    if args.reported:
        ids = [f.id for f in metered_features(catalog) if f.meter and f.meter.source == "reported"]
        reported = ingest_reported_usage(con, args.reported, features=ids)
    frame = usage_report(con, catalog, period=args.period, subscriptions=args.subscriptions)
    con.register("__usage_report", frame.to_arrow())
    kind = "PARQUET" if out.suffix.lower() == ".parquet" else "CSV, HEADER TRUE"
    out.parent.mkdir(parents=True, exist_ok=True)
    con.execute(f"COPY __usage_report TO {quote_literal(str(out))} (FORMAT {kind})")
    summary = {
        "out": str(out),
        "period": args.period,
        "rows": frame.height,
        "customers": frame["customer_id"].n_unique() if frame.height else 0,
        "features": frame["feature_id"].n_unique() if frame.height else 0,
        "events": ingested.to_dict(),
        "reported": reported.to_dict() if reported else None,
    }
    if args.json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        sys.stdout.write(
            f"{frame.height} report rows ({summary['customers']} customers, "
            f"{summary['features']} features) written to {out}\n"
            f"events: {ingested.rows_read} read, {ingested.accepted} accepted, "
            f"{ingested.rejected} rejected {dict(ingested.rejected_by_reason)}\n"
        )
    return 0
