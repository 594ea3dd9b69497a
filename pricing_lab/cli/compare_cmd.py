"""`pricing-lab compare`: replay several what-if scenarios over the same events and report."""

from __future__ import annotations

import argparse
import json
import sys
from decimal import Decimal
from pathlib import Path

from pricing_lab.cli.simulate_cmd import add_replay_arguments, load_inputs


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare what-if scenarios: Parquet results and a self-contained HTML report",
        description=(
            "Replay the base and every scenario of --scenarios over the same events; write "
            "comparison_customers/features/totals.parquet, the margin per scenario and customer "
            "(comparison_margin.parquet) and per scenario (comparison_margin_totals.parquet), "
            "each scenario's outputs under scenarios/NAME/, and report.html (charts embedded, "
            "works offline)."
        ),
    )
    add_replay_arguments(parser)
    parser.add_argument("--scenarios", required=True, type=Path, help="scenario YAML file")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--json", action="store_true", help="print totals as JSON")
    parser.set_defaults(handler=run)


_MONEY = ["revenue", "breakage", "cost_to_serve", "gross_margin", "gross_margin_change"]


def run(args: argparse.Namespace) -> int:
    import polars as pl

    from pricing_lab.report.build import write_comparison
    from pricing_lab.simulation.scenarios import compare, load_scenarios

    base, scenarios = load_scenarios(args.scenarios)
    con, catalog, customers, report = load_inputs(args)

    def progress(name: str, done: int, total: int) -> None:
        if not args.quiet:
            label = "done" if done == total else f"replaying {name}"
            print(f"\rcompare: {done}/{total} scenarios, {label}   ", end="", file=sys.stderr)
            if done == total:
                print(file=sys.stderr)

    comparison = compare(
        con,
        catalog,
        customers,
        scenarios,
        base=base,
        enforcement=args.enforcement,
        progress=progress,
        start=args.start,
        until=args.until,
        ingest=report,
        out_dir=args.out,  # each scenario written as soon as it is replayed
    )
    paths = write_comparison(comparison, args.out)
    totals = comparison.totals.sort("scenario")
    margin = comparison.margin_totals.select(
        "scenario",
        "revenue",
        "breakage",
        "cost_to_serve",
        "gross_margin",
        "gross_margin_change",
        "margin_share",
        "negative_margin_customers",
    )
    if args.json:
        rows = [{k: str(v) for k, v in row.items()} for row in totals.iter_rows(named=True)]
        margin_rows = [
            {k: format(v, "f") if isinstance(v, Decimal) else v for k, v in row.items()}
            for row in margin.iter_rows(named=True)
        ]
        print(
            json.dumps(
                {
                    "base": base,
                    "totals": rows,
                    "margin": margin_rows,
                    "events": report.to_dict(),
                },
                indent=2,
            )
        )
    else:
        print(totals)
        print("margin (money; change against the base):")
        print(margin.with_columns(pl.col(_MONEY).cast(pl.Decimal(38, 2))))
        print(f"wrote {len(paths)} files into {args.out} (report: {args.out / 'report.html'})")
    return 0
