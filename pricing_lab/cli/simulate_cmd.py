"""`pricing-lab simulate`: replay usage events through a catalog and write the replay's outputs."""

from __future__ import annotations

import argparse
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pricing_lab.cli.rejections import (
    add_rejection_arguments,
    enforce,
    print_report,
    rejection_report,
)
from pricing_lab.errors import InputError
from pricing_lab.output_staging import staged_outputs
from pricing_lab.scale.cli_options import add_scale_arguments, check_scale_arguments
from pricing_lab.timeutil import as_utc, naive_utc

if TYPE_CHECKING:
    import duckdb


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="replay usage events through a catalog: ledger, balances, summary",
        description=(
            "Replay usage events through a catalog, the customers' subscriptions, grants and "
            "auto-recharge settings, and write ledger.parquet, grants.parquet, "
            "denied_events.parquet, rejected_events.parquet, balances.parquet, margin.parquet, "
            "activity.parquet and summary.json into --out."
        ),
    )
    add_replay_arguments(parser)
    parser.add_argument("--out", required=True, type=output_folder, help="output folder")
    parser.add_argument("--scenario", default="base", help="scenario name written in the ledger")
    parser.add_argument(
        "--engine",
        choices=("fast", "reference"),
        default="fast",
        help="ledger engine (both give identical outputs; reference is slow)",
    )
    parser.add_argument(
        "--partitions",
        type=_partitions,
        default=AUTO,
        help="replay the customers in N partitions, one at a time, to bound memory (the files "
        f"are identical); default auto: one per {EVENTS_PER_PARTITION:,} events",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_scale_arguments(parser)
    parser.set_defaults(handler=run)


AUTO = 0
# A range's replay holds its costed rows, its ledger and its outputs in memory: at 1.75M events
# a range, 10M events replay in 6 ranges with a peak under 3 GB (benchmarks/README.md).
EVENTS_PER_PARTITION = 1_750_000


def _partitions(text: str) -> int:
    if text == "auto":
        return AUTO
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise argparse.ArgumentTypeError(f"not a number of partitions: {text!r} (or 'auto')")


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    """The inputs shared by `simulate` and `compare`."""
    parser.add_argument("--catalog", required=True, type=Path, help="YAML catalog file")
    parser.add_argument(
        "--events",
        required=True,
        help=(
            "usage events: a .parquet, .csv or .ndjson file, or a warehouse source such as "
            "snowflake:DB.SCHEMA.TABLE or 'snowflake:SELECT …' (with the snowflake extra "
            "installed; docs/scale-out.md)"
        ),
    )
    parser.add_argument(
        "--customers",
        type=Path,
        help="customers: a YAML file, a folder of subscriptions/grants/auto_recharge tables "
        "(.csv/.parquet) or a .duckdb file",
    )
    parser.add_argument(
        "--enforcement",
        choices=("overdraft", "block"),
        default="overdraft",
        help="what happens when credits run out (default: overdraft)",
    )
    parser.add_argument("--start", type=_timestamp, help="horizon start (UTC ISO timestamp)")
    parser.add_argument("--until", type=_timestamp, help="horizon end, exclusive (UTC ISO)")
    parser.add_argument(
        "--low-balance",
        action="append",
        default=[],
        type=_low_balance,
        metavar="CURRENCY=AMOUNT[,AMOUNT...]",
        help="low-balance thresholds of the activity stream (repeat per currency); default none",
    )
    parser.add_argument(
        "--ending-soon-days",
        type=int,
        default=7,
        help="days before a grant expires that grant.ending_soon is sent (default 7)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    add_rejection_arguments(parser)


def _low_balance(text: str) -> tuple[str, tuple[Decimal, ...]]:
    currency, _, amounts = text.partition("=")
    try:
        values = tuple(Decimal(a.strip()) for a in amounts.split(","))
    except InvalidOperation:
        values = ()
    if not currency or not values or not all(v.is_finite() for v in values):
        raise argparse.ArgumentTypeError(
            f"not CURRENCY=AMOUNT[,AMOUNT...]: {text!r} (e.g. credits=1000,100)"
        )
    return currency, values


def activity_options(args: argparse.Namespace, currencies: Any) -> Any:
    """The activity options of `--low-balance` / `--ending-soon-days`, checked against the
    catalog's currencies before anything is replayed."""
    from pricing_lab.activity.stream import ActivityOptions, check_options

    thresholds: dict[str, tuple[Decimal, ...]] = {}
    for currency, values in args.low_balance:
        thresholds[currency] = thresholds.get(currency, ()) + values
    options = ActivityOptions(thresholds=thresholds, ending_soon_days=args.ending_soon_days)
    check_options(options, currencies)
    return options


def output_folder(text: str) -> Path:
    """`--out`: a folder, existing or not; refused when it, or the nearest of its parents that
    exists, is a file (nothing could be written there)."""
    folder = Path(text)
    place = folder
    while not place.exists() and place != place.parent:
        place = place.parent
    if place.exists() and not place.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: {place} is a file, not a folder")
    return folder


def _timestamp(text: str) -> datetime:
    """A UTC instant of the command line (`--start`, `--until`, `--as-of`, `--cut`, `--forecast
    T`), in the range events may have (up to its end inclusive): a horizon reaching year 9999
    would replay thousands of years of monthly periods."""
    from pricing_lab.limits import TIMESTAMP_END, TIMESTAMP_MIN, in_supported_range

    try:
        value = as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO timestamp: {text!r}") from None
    if not in_supported_range(value):
        raise argparse.ArgumentTypeError(
            f"outside the supported range {TIMESTAMP_MIN[:10]} to {TIMESTAMP_END[:10]}: {text!r}"
        )
    return value


def check_replay_inputs(args: argparse.Namespace, catalog: Any, customers: Any) -> None:
    """Refuse, before any event is read, what no replay can use: a catalog without a credit
    currency (an empty or wrong file: there would be nothing to burn), and customers naming
    plans, add-ons or currencies the catalog does not have (every problem at once, under the
    customers file's name)."""
    from pricing_lab.errors import ValidationError
    from pricing_lab.simulation.simulate import customer_problems

    if not catalog.currencies:
        raise InputError(
            f"{args.catalog}: the catalog has no credit currency, so a replay has nothing to "
            "burn (docs/catalog.md)"
        )
    problems = customer_problems(customers, catalog)
    if problems:
        raise ValidationError(problems, source=str(args.customers))


def load_inputs(args: argparse.Namespace, *, spilling: bool = False):  # type: ignore[no-untyped-def]
    """Open a store, load the catalog, customers and events named by `args`.

    The store is in memory, or with `spilling` a database file in a temporary folder with
    DuckDB's memory capped (`partitioned.spilling_connection`), removed at exit."""
    import atexit
    import shutil
    import tempfile

    import duckdb

    from pricing_lab.catalog.yaml_format import load_catalog_file
    from pricing_lab.events.ingest import ingest_events
    from pricing_lab.events.meters import reject_unusable_values
    from pricing_lab.events.plugins import plugin_events, source_name, source_names
    from pricing_lab.events.warehouse_costing import scenario_catalogs
    from pricing_lab.formula import check_formula
    from pricing_lab.simulation.costing import check_dimensions
    from pricing_lab.simulation.customers import CustomerInputs, load_customers

    catalog = load_catalog_file(args.catalog, check_formula=check_formula)
    customers = load_customers(args.customers) if args.customers else CustomerInputs()
    check_replay_inputs(args, catalog, customers)
    # `NAME:SPEC` of a registered source (e.g. snowflake:DB.SCHEMA.TABLE), or a file; a
    # warehouse source evaluates the meters and rates of the catalog and scenarios there
    ids = sorted(customers.customer_ids) if customers.customer_ids is not None else None
    source = plugin_events(
        str(args.events), lambda: scenario_catalogs(args, catalog, customers), customers=ids
    )
    if source is None and not Path(args.events).exists():
        name = source_name(str(args.events))
        if name is not None:
            known = ", ".join(source_names()) or "none installed"
            raise InputError(
                f"{args.events}: no such events file, nor an event source {name!r} "
                f"(event sources: {known})"
            )
        raise InputError(f"{args.events}: no such events file")
    if spilling:
        from pricing_lab.simulation.partitioned import spilling_connection

        scratch = tempfile.mkdtemp(prefix="pricing-lab-duckdb-")
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)
        con = spilling_connection(scratch)
    else:
        con = duckdb.connect()
    report = ingest_events(con, args.events if source is None else source, customers=ids)
    check_dimensions(con, {"catalog": catalog}, source=str(args.events))
    report = reject_unusable_values(con, catalog, report)
    return con, catalog, customers, report


def run(args: argparse.Namespace) -> int:
    from pricing_lab.cli.output import print_json, simulation_text, with_numbers
    from pricing_lab.progress import ProgressDisplay
    from pricing_lab.simulation.partitioned import simulate_partitioned
    from pricing_lab.simulation.simulate import OUTPUT_FILES, cost, simulate

    check_scale_arguments(args)
    with ProgressDisplay(enabled=not args.quiet) as progress, staged_outputs(args.out) as staged:
        # Every file is written into `staged.folder` and moved into --out at the block's end:
        # a run that fails or is interrupted leaves --out as it was (pricing_lab.output_staging).
        progress.phase("reading and checking the events")
        con, catalog, customers, report = load_inputs(args, spilling=args.partitions != 1)
        partitions = args.partitions or -(-report.accepted // EVENTS_PER_PARTITION)
        progress.note(
            f"events: {report.counts()}"
            + (f"; {partitions} customer partitions" if partitions > 1 else "")
        )
        options: dict[str, Any] = {
            "ingest": report,
            "enforcement": args.enforcement,
            "start": args.start,
            "until": args.until,
            "scenario": args.scenario,
            "engine": args.engine,
            "progress": progress.update,
            "activity": activity_options(args, catalog.currencies),
        }
        if args.executor is not None:  # customer buckets on an executor (pricing_lab.scale)
            from pricing_lab.scale.cli_options import simulate_over_executor

            result = simulate_over_executor(
                args, con, catalog, customers, options, progress.phase, out_dir=staged.folder
            )
            paths = [args.out / name for name in OUTPUT_FILES]
        elif partitions > 1:
            progress.phase(
                f"costing, replaying, checking and writing {partitions} partitions",
                unit="customers",
            )
            result = simulate_partitioned(
                con, catalog, customers, out_dir=staged.folder, partitions=partitions, **options
            )
            paths = [args.out / name for name in OUTPUT_FILES]
        else:
            progress.phase("costing the events")
            costing = cost(con, catalog, customers)
            progress.phase("replaying and checking the ledger", unit="customers")
            result = simulate(con, catalog, customers, costing=costing, **options)
            progress.phase("writing the outputs")
            paths = [staged.final(path) for path in result.write(staged.folder)]
        progress.phase("summarising")
        summary = result.summary_dict()
        outside = _outside_horizon(con, report.table, args.start, args.until)
    rejections = rejection_report(
        result.rejected_events,
        rows_read=report.rows_read,
        path=args.out / "rejected_events.parquet",
        known_customers=customers.customer_ids,
    )
    if args.json:
        counted = {} if outside is None else {"events_outside_horizon": outside}
        print_json({**with_numbers(summary), "rejections": rejections, **counted}, sort_keys=True)
    else:
        prices = {c.id: c.price_currency for c in catalog.currencies}
        print(simulation_text(result, summary, price_currencies=prices, paths=paths))
        print_report(rejections)
        if outside:
            print(
                f"{outside:,} accepted events lie outside --start/--until and were not replayed "
                "(the horizon leaves them out; they are not rejected)"
            )
    enforce(args, {result.scenario: rejections})
    return 0


def _outside_horizon(
    con: duckdb.DuckDBPyConnection, table: str, start: datetime | None, until: datetime | None
) -> int | None:
    """How many accepted events (table `table`) lie before `start` or at or after `until` (None
    when neither was given): the horizon leaves them out of the replay, so the command says how
    many."""
    from pricing_lab.events.ingest import quote_ident

    if start is None and until is None:
        return None
    bounds = [
        *(["timestamp < ?"] if start is not None else []),
        *(["timestamp >= ?"] if until is not None else []),
    ]
    values = [naive_utc(t) for t in (start, until) if t is not None]
    [(count,)] = con.execute(
        f"SELECT count(*) FROM {quote_ident(table)} WHERE {' OR '.join(bounds)}", values
    ).fetchall()
    return int(count)
