"""`pricing-lab activity`: catalog events from a store, and a replay's stream sent as webhooks."""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any

from pricing_lab.errors import InputError


def register(subparsers: Any) -> None:
    """Add the `activity` command and its actions."""
    parser = subparsers.add_parser(
        "activity",
        help="credit activity: catalog events, send a replay's stream as webhooks",
        description="Credit activity: what a credit platform would send as webhooks. "
        "A replay's stream is the activity.parquet "
        "that `simulate` and `compare` write.",
    )
    actions = parser.add_subparsers(dest="activity_action", metavar="ACTION")
    actions.required = True

    catalog = actions.add_parser(
        "catalog",
        help="the catalog store's history as feature/plan/addon/... created|updated|archived "
        "|un_archived events",
    )
    catalog.add_argument(
        "--db", default="pricing_lab.duckdb", metavar="PATH", help="DuckDB file of the store"
    )
    catalog.add_argument("--out", type=Path, help="write the events to this Parquet file")
    catalog.add_argument("--json", action="store_true", help="print the events as JSON lines")
    catalog.set_defaults(handler=run_catalog)

    send = actions.add_parser(
        "send",
        help="post a replay's activity events, in order, as signed JSON webhooks",
        description="POST each event of ACTIVITY (activity.parquet, or the replay's output "
        "folder) to --to, in activity_id order, signed with HMAC-SHA256 (header "
        "Pricing-Lab-Signature: t=UNIX,v1=HEX over 't.BODY'), with an Idempotency-Key per event. "
        "5xx, 408, 425, 429 and timeouts are retried with exponential backoff; the cursor file "
        "records the last delivered event, so running again resumes after it.",
    )
    send.add_argument("activity", type=Path, metavar="ACTIVITY", help="activity.parquet or folder")
    send.add_argument("--to", required=True, metavar="URL", help="the webhook endpoint")
    send.add_argument(
        "--secret-env",
        default="PRICING_LAB_WEBHOOK_SECRET",
        metavar="NAME",
        help="environment variable holding the signing secret (default PRICING_LAB_WEBHOOK_SECRET)",
    )
    send.add_argument(
        "--cursor",
        type=Path,
        help="cursor file (default: ACTIVITY's folder/activity.cursor.json)",
    )
    send.add_argument("--rate", type=float, default=10.0, help="requests per second (default 10)")
    send.add_argument("--timeout", type=float, default=10.0, help="seconds per attempt (10)")
    send.add_argument("--max-retries", type=int, default=5, help="retries per event (5)")
    send.add_argument("--backoff", type=float, default=0.5, help="first retry delay, s (0.5)")
    send.add_argument("--max-events", type=int, help="send at most this many events this run")
    send.add_argument("--json", action="store_true", help="print the report as JSON")
    send.add_argument("--quiet", action="store_true", help="no progress on stderr")
    send.set_defaults(handler=run_send)


def run_catalog(args: argparse.Namespace) -> int:
    from pricing_lab.activity.catalog_events import catalog_activity
    from pricing_lab.catalog.store import open_store

    with open_store(Path(args.db), read_only=True) as store:
        events = catalog_activity(store)
    if args.out is not None:
        events.write_parquet(args.out)
    if args.json:
        for row in events.iter_rows(named=True):
            print(json.dumps({**row, "timestamp": row["timestamp"].isoformat()}))
    elif args.out is None:
        for row in events.iter_rows(named=True):
            stamp = row["timestamp"].isoformat()
            print(f"{row['activity_id']:>6}  {stamp}  {row['kind']:<28} {row['entity_id']} "
                  f"v{row['version']}")  # fmt: skip
    else:
        print(f"wrote {events.height} catalog events to {args.out}")
    return 0


def _valid_url(url: str) -> bool:
    """Whether `url` has a host and, if given, a port number (`http://[::1`, `http://h:x/` not)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        _ = parts.port  # ValueError for a port that is not a number in range
    except ValueError:
        return False
    return bool(parts.hostname)


def run_send(args: argparse.Namespace) -> int:
    from pricing_lab.activity.webhooks import SendOptions, read_activity, send_activity

    secret = os.environ.get(args.secret_env)
    if not secret:
        raise InputError(f"no signing secret: set the environment variable {args.secret_env}")
    if not args.to.startswith(("http://", "https://")) or not _valid_url(args.to):
        raise InputError(f"--to: not an http(s) URL: {args.to!r}")
    problems = [
        name
        for name, value in (
            ("--rate", args.rate),
            ("--timeout", args.timeout),
            ("--backoff", args.backoff),
        )
        if not 0 < value < math.inf  # NaN fails too
    ]
    if args.max_retries < 0 or (args.max_events is not None and args.max_events < 0):
        problems.append("--max-retries/--max-events")
    if problems:
        raise InputError(f"{', '.join(problems)}: must be a positive number")
    events = read_activity(args.activity)
    folder = args.activity if args.activity.is_dir() else args.activity.parent
    cursor = args.cursor or folder / "activity.cursor.json"
    from pricing_lab.progress import ProgressDisplay

    with ProgressDisplay(enabled=not args.quiet) as progress:
        progress.phase("sending the activity events", unit="events")
        report = send_activity(
            events,
            args.to,
            secret=secret.encode(),
            cursor=cursor,
            options=SendOptions(
                rate=args.rate,
                timeout=args.timeout,
                max_retries=args.max_retries,
                backoff=args.backoff,
                max_events=args.max_events,
            ),
            progress=progress.update,
        )
    if args.json:
        print(json.dumps({**report.to_dict(), "cursor": str(cursor)}, indent=2))
    else:
        print(
            f"delivered {report.delivered} events ({report.retries} retries), through "
            f"activity_id {report.last_activity_id}; {report.remaining} left; cursor {cursor}"
        )
    return 0
