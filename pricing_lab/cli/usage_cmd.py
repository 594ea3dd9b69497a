"""`pricing-lab usage report`: ingest events and write a usage report to a file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pricing_lab.cli.rejections import (
    add_rejection_arguments,
    enforce,
    print_report,
    rejection_report,
)
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
        "--subscriptions",
        help="subscriptions: a .csv or .parquet table (customer_id, plan_id, start, end), or "
        "a customers input as for --customers",
    )
    report.add_argument(
        "--customers",
        type=Path,
        help="customers, as for simulate: a YAML file (its customers are the known ones: other "
        "customers' events are rejected), a folder of tables or a .duckdb file; their "
        "subscriptions set the plans and billing periods",
    )
    report.add_argument(
        "--rejected",
        type=Path,
        help="where to write the rejected rows (default: OUT's name with _rejected, e.g. "
        "usage_rejected.parquet; reported usage: _rejected_reported)",
    )
    report.add_argument(
        "--period",
        choices=("day", "week", "month", "billing"),
        default="month",
        help="usage per UTC day, ISO week (from Monday), calendar month, or billing period of "
        "each subscription (default month)",
    )
    report.add_argument("--out", required=True, help="output file (.parquet or .csv)")
    report.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    report.add_argument("--quiet", action="store_true", help="no progress on stderr")
    add_rejection_arguments(report)
    report.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace) -> int:
    import duckdb

    from pricing_lab.catalog.yaml_format import load_catalog_file
    from pricing_lab.events.ingest import ingest_events, ingest_reported_usage
    from pricing_lab.events.meters import metered_features, reject_unusable_values
    from pricing_lab.events.report import usage_report
    from pricing_lab.formula import check_formula
    from pricing_lab.output_staging import staged_files
    from pricing_lab.progress import ProgressDisplay
    from pricing_lab.simulation.costing import check_dimensions

    out = Path(args.out)
    suffix = out.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise InputError(f"{out}: the output must end in .parquet or .csv")
    if args.customers and args.subscriptions:
        raise InputError("give --customers or --subscriptions, not both")
    catalog = load_catalog_file(args.catalog, check_formula=check_formula)
    known, subscriptions = _customers(args)
    with ProgressDisplay(enabled=not args.quiet) as progress:
        progress.phase("reading and checking the events")
        con = duckdb.connect()
        ingested = ingest_events(con, args.events, customers=known)
        check_dimensions(con, {"catalog": catalog}, source=str(args.events))
        ingested = reject_unusable_values(con, catalog, ingested)
        reported = None
        if args.reported:
            progress.phase("reading the reported usage")
            ids = [
                f.id for f in metered_features(catalog) if f.meter and f.meter.source == "reported"
            ]
            reported = ingest_reported_usage(con, args.reported, customers=known, features=ids)
        progress.phase(f"aggregating usage per {args.period}")
        frame = usage_report(con, catalog, period=args.period, subscriptions=subscriptions)
        progress.phase("writing the report")
        rejected_path = Path(args.rejected or out.with_name(f"{out.stem}_rejected{suffix}"))
        reported_path = rejected_path.with_name(
            rejected_path.stem.replace("_rejected", "") + f"_rejected_reported{suffix}"
        )
        rejected = con.table(ingested.rejected_table).pl()
        reported_rows = None if reported is None else con.table(reported.rejected_table).pl()
        outputs = {out: frame, rejected_path: rejected}
        if reported_rows is not None:
            outputs[reported_path] = reported_rows
        # The report and its rejected rows are read together: written together, or none of them.
        with staged_files(outputs) as staged:
            for path, rows in outputs.items():
                _write(con, rows, path, into=staged.twin(path))
    reports = {
        "events": rejection_report(
            rejected,
            rows_read=ingested.rows_read,
            path=rejected_path,
            known_customers=known,
        )
    }
    if reported is not None and reported_rows is not None:
        reports["reported"] = rejection_report(
            reported_rows, rows_read=reported.rows_read, path=reported_path, known_customers=known
        )
    summary = {
        "out": str(out),
        "period": args.period,
        "rows": frame.height,
        "customers": frame["customer_id"].n_unique() if frame.height else 0,
        "features": frame["feature_id"].n_unique() if frame.height else 0,
        "events": ingested.to_dict(),
        "reported": reported.to_dict() if reported else None,
        "rejections": reports,
    }
    if args.json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        sys.stdout.write(
            f"{frame.height} report rows ({summary['customers']} customers, "
            f"{summary['features']} features) written to {out}\n"
            f"events: {ingested.counts()}\n"
        )
        for name, rejections in reports.items():
            sys.stdout.write(f"{name} ")
            print_report(rejections)
    enforce(args, reports)
    return 0


def _customers(args: argparse.Namespace) -> tuple[list[str] | None, Any]:
    """The known customer ids (None: any) and the subscriptions for the report."""
    from pricing_lab.events.report import SubscriptionSpan
    from pricing_lab.simulation.customers import load_customers
    from pricing_lab.timeutil import naive_utc

    source = args.customers or args.subscriptions
    if source is None:
        return None, None
    if args.subscriptions and Path(args.subscriptions).suffix.lower() in (".csv", ".parquet"):
        return None, args.subscriptions  # the simple table of docs/events.md
    customers = load_customers(source)
    spans = [
        SubscriptionSpan(
            customer_id=s.customer_id,
            plan_id=s.plan_id,
            start=naive_utc(s.start),
            end=None if s.end is None else naive_utc(s.end),
        )
        for s in customers.subscriptions
    ]
    known = sorted(customers.customer_ids) if customers.customer_ids is not None else None
    return known, spans


def _write(con: Any, frame: Any, path: Path, *, into: Path) -> None:
    """`frame` as the file `path` (.parquet, else CSV) with DuckDB's COPY, so decimals stay
    exact, written at `into` (its hidden twin until the report is complete). A DuckDB error
    names `path`."""
    import duckdb

    from pricing_lab.events.ingest import quote_literal

    view = "__pricing_lab_usage_output"
    con.register(view, frame.to_arrow())
    try:
        kind = "PARQUET" if path.suffix.lower() == ".parquet" else "CSV, HEADER TRUE"
        con.execute(f"COPY {view} TO {quote_literal(str(into))} (FORMAT {kind})")
    except duckdb.IOException as exc:
        raise duckdb.IOException(str(exc).replace(str(into), str(path))) from None
    finally:
        con.unregister(view)
