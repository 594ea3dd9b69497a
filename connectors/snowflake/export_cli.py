"""`pricing-lab export snowflake`: the export for schedulers, with a report and exit statuses.

Added by `register_export(subparsers)`, which `connectors.snowflake.cli.register` calls. Exit
statuses: 0 the export succeeded (or there was nothing new), 1 it failed (safe to run again: it
resumes), 2 bad input or configuration (fix it first), 3 another export holds the lock.
Progress goes to stderr; the report to stdout, as text or as JSON (`--json`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from connectors.snowflake.auth import DEFAULT_TIMEOUT_SECONDS
from connectors.snowflake.export import ExportOptions, ExportReport, RetryPolicy, export_tables
from connectors.snowflake.export_sources import (
    catalog_tables,
    combine,
    result_file_names,
    results_folder_tables,
    select_tables,
)
from connectors.snowflake.tables import ExportTable, specs_by_name
from pricing_lab.errors import InputError, PricingLabError


def register_export(subparsers: Any) -> None:
    """Add `export snowflake` to the `pricing-lab` command line."""
    export = subparsers.add_parser(
        "export",
        help="export the catalog, ledgers and results to a warehouse",
        description="Export the catalog and replay results to a warehouse.",
    )
    targets = export.add_subparsers(dest="export_target", metavar="TARGET")
    targets.required = True
    parser = targets.add_parser(
        "snowflake",
        help="idempotent, resumable export to Snowflake (key-pair auth)",
        description="Load the catalog store and replay results into the connection's database "
        "and schema: Parquet files, PUT to a named stage, COPY INTO staging tables, MERGE into "
        "the target tables, the run recorded last in EXPORT_RUNS. Re-running changes nothing; "
        "an interrupted export resumes. Exit status: 0 ok, 1 export failed (run again to "
        "resume), 2 bad input or configuration, 3 another export is running.",
    )
    parser.add_argument(
        "--connection",
        metavar="NAME",
        help="connection in connections.toml (default: SNOWFLAKE_DEFAULT_CONNECTION_NAME, "
        "then `default`); SNOWFLAKE_* environment variables override it",
    )
    parser.add_argument("--db", type=Path, metavar="STORE", help="catalog store (DuckDB file)")
    parser.add_argument(
        "--results",
        type=Path,
        nargs="+",
        default=[],
        metavar="DIR",
        help="results folder(s) of `pricing-lab simulate`, `compare` or `demo`; read: "
        + ", ".join(result_file_names())
        + "; the folder name is the replay id",
    )
    parser.add_argument(
        "--tables", nargs="+", metavar="TABLE", help="export only these tables (default: all)"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the statements and row counts without writing anything",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for another running export instead of exiting with status 3",
    )
    parser.add_argument(
        "--lock-ttl",
        type=float,
        default=30.0,
        metavar="MINUTES",
        help="lease of the export lock, renewed after each table (default 30)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=5,
        metavar="N",
        help="attempts per step for transient errors, with exponential backoff (default 5); no "
        "new attempt once --timeout seconds have passed since the step first failed",
    )
    parser.add_argument(
        "--timeout",
        type=int,
        default=DEFAULT_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help=f"how long one request to Snowflake (login, statement) may take before it counts "
        f"as failed (default {DEFAULT_TIMEOUT_SECONDS}); an unreachable Snowflake ends the "
        "export with exit status 1 after about twice this. Raise it when one MERGE takes longer",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.set_defaults(handler=run_export_command)


def _tables(args: argparse.Namespace) -> list[ExportTable]:
    if args.tables is not None:
        specs_by_name(args.tables)  # unknown names are bad input, listed at once
    if args.db is None and not args.results:
        raise InputError("nothing to export: give --db STORE and/or --results DIR")
    tables: list[ExportTable] = []
    if args.db is not None:
        from pricing_lab.catalog.store import open_store

        with open_store(args.db, read_only=True) as store:
            tables.extend(catalog_tables(store))
    for folder in args.results:
        tables.extend(results_folder_tables(folder))
    return select_tables(combine(tables), args.tables)


def _connect_factory(connection: str | None, timeout: int) -> Callable[[], Any]:
    from connectors.snowflake.auth import SESSION_PARAMETERS, Timeouts, connect
    from connectors.snowflake.cli import passphrase_prompt
    from connectors.snowflake.config import resolve_credentials

    credentials = resolve_credentials(connection_name=connection)
    prompt = passphrase_prompt()
    timeouts = Timeouts.all(timeout)

    def open_connection() -> Any:
        return connect(
            credentials, prompt=prompt, session_parameters=SESSION_PARAMETERS, timeouts=timeouts
        )

    return open_connection


def _progress(quiet: bool) -> Callable[[str], None] | None:
    if quiet:
        return None

    def show(message: str) -> None:
        sys.stderr.write(f"export: {message}\n")
        sys.stderr.flush()

    return show


def run_export_command(args: argparse.Namespace) -> int:
    """Handler of `export snowflake`: returns the exit status; prints the report or the error."""
    try:
        # Written so that NaN fails each test (every comparison with NaN is false).
        if not (
            args.retries >= 1
            and args.timeout >= 1
            and 0 <= args.wait < math.inf
            and 0 < args.lock_ttl < math.inf
        ):
            raise InputError(
                "--retries and --timeout must be ≥ 1, --wait ≥ 0 and --lock-ttl > 0 "
                "(finite numbers)"
            )
        tables = _tables(args)
        options = ExportOptions(
            dry_run=args.dry_run,
            lock_wait=args.wait,
            lock_ttl=timedelta(minutes=args.lock_ttl),
            retry=RetryPolicy(attempts=args.retries, give_up_after=float(args.timeout)),
            progress=_progress(args.quiet),
        )
        report = export_tables(_connect_factory(args.connection, args.timeout), tables, options)
    except PricingLabError as exc:
        if args.json:
            error = {"status": "failed", "exit_status": exc.exit_code, "error": str(exc)}
            sys.stdout.write(json.dumps(error, indent=2) + "\n")
        sys.stderr.write(f"pricing-lab: {exc}\n")
        return exc.exit_code
    _print_report(report, as_json=args.json)
    return 0


def _print_report(report: ExportReport, *, as_json: bool) -> None:
    if as_json:
        payload = {**report.to_json(), "exit_status": 0}
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    if report.statements:
        sys.stdout.write("-- statements a run would send (nothing was written):\n")
        for statement in report.statements:
            sys.stdout.write(f"{statement};\n")
    sys.stdout.write("\n".join(report.lines()) + "\n")
