"""`pricing-lab events generate`: synthetic usage events in the shared event vocabulary."""

from __future__ import annotations

import argparse
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pricing_lab.errors import InputError
from pricing_lab.timeutil import as_utc

FORMATS = {".parquet": None, ".csv": "CSV, HEADER TRUE", ".ndjson": "JSON", ".json": "JSON"}


def register(subparsers: Any) -> None:
    """Add the `events` command and its `generate` action."""
    events = subparsers.add_parser("events", help="usage events: generate synthetic ones")
    actions = events.add_subparsers(dest="events_action", metavar="ACTION")
    actions.required = True
    generate = actions.add_parser(
        "generate",
        help="write synthetic usage events to a Parquet, CSV or NDJSON file",
        description=(
            "Write seeded synthetic usage events: llm.request (model, input_tokens, "
            "output_tokens, workload), image.generated (model, resolution, images) and "
            "summary.created (doc_type, pages), for customers cust-00001 … of heavy-tailed "
            "sizes, with a daily and weekly cycle. The same arguments always write the same "
            "events. The format follows the file's suffix: .parquet (any size, written in "
            "chunks), .csv or .ndjson."
        ),
    )
    generate.add_argument("--out", required=True, type=Path, help="output file")
    generate.add_argument("--events", type=_count, default=10_000, help="events (default 10000)")
    generate.add_argument("--customers", type=_count, default=100, help="customers (default 100)")
    generate.add_argument("--days", type=_count, default=30, help="days covered (default 30)")
    generate.add_argument("--seed", type=_count, default=0, help="random seed ≥ 0 (default 0)")
    generate.add_argument(
        "--start", type=_day, default=None, help="first day, UTC (default 2024-01-01)"
    )
    generate.add_argument("--json", action="store_true", help="print what was written as JSON")
    generate.set_defaults(handler=run_generate)


def _count(text: str) -> int:
    if text.replace("_", "").isdigit():
        return int(text.replace("_", ""))
    raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")


def _day(text: str) -> datetime:
    try:
        return as_utc(datetime.fromisoformat(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date: {text!r}") from None


def _check_span(start: datetime, days: int) -> None:
    """The events' days lie in the range events may have: events beyond it would all be
    rejected as `bad_timestamp` (docs/events.md), or not be dates at all (year 10000)."""
    from pricing_lab.limits import TIMESTAMP_END, TIMESTAMP_MIN, in_supported_range

    try:
        end = start + timedelta(days=days)
    except OverflowError:
        end = None
    if not in_supported_range(start) or end is None or not in_supported_range(end):
        raise InputError(
            f"--start and --days: the events must lie from {TIMESTAMP_MIN[:10]} to "
            f"{TIMESTAMP_END[:10]}, the range events may have; got {days:,} days from "
            f"{start:%Y-%m-%d}"
        )


def run_generate(args: argparse.Namespace) -> int:
    from pricing_lab.cli.output import print_json
    from pricing_lab.events.synthetic import DEFAULT_START, generate_events

    out: Path = args.out
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise InputError(f"{out}: the file must end in {', '.join(FORMATS)}")
    if args.customers < 1 or args.days < 1:
        raise InputError("--customers and --days must be at least 1")
    _check_span(args.start or DEFAULT_START, args.days)
    options = {
        "events": args.events,
        "customers": args.customers,
        "days": args.days,
        "seed": args.seed,
        "start": args.start or DEFAULT_START,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    kind = FORMATS[suffix]
    if kind is None:
        written = generate_events(out, **options)
    else:
        import duckdb

        from pricing_lab.events.ingest import quote_literal

        with tempfile.TemporaryDirectory() as scratch:
            written = generate_events(Path(scratch) / "events.parquet", **options)
            duckdb.connect().execute(
                f"COPY (SELECT * FROM read_parquet({quote_literal(str(written.path))})) "
                f"TO {quote_literal(str(out))} (FORMAT {kind})"
            )
    report = {
        "out": str(out),
        "events": written.events,
        "customers": written.customers,
        "days": written.days,
        "seed": written.seed,
        "start": written.start,
    }
    if args.json:
        print_json(report)
    else:
        print(
            f"wrote {written.events:,} synthetic events of {written.customers:,} customers over "
            f"{written.days} days from {written.start:%Y-%m-%d} to {out}"
        )
    return 0
