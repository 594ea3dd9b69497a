"""`pricing-lab compare`: replay several what-if scenarios over the same events and report."""

from __future__ import annotations

import argparse
from pathlib import Path

from pricing_lab.cli.simulate_cmd import add_replay_arguments, load_inputs


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare what-if scenarios: Parquet results and a self-contained HTML report",
        description=(
            "Replay the base and every scenario of --scenarios over the same events; write "
            "comparison_customers/features/totals.parquet, each scenario's outputs under "
            "scenarios/NAME/, and report.html (charts embedded, works offline)."
        ),
    )
    add_replay_arguments(parser)
    parser.add_argument("--scenarios", required=True, type=Path, help="scenario YAML file")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--json", action="store_true", help="print totals as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pricing_lab.cli.output import comparison_json, comparison_text, print_json
    from pricing_lab.progress import ProgressDisplay
    from pricing_lab.report.build import write_comparison
    from pricing_lab.simulation.scenarios import compare, load_scenarios

    base, scenarios = load_scenarios(args.scenarios)
    with ProgressDisplay(enabled=not args.quiet) as progress:
        progress.phase("reading and checking the events")
        con, catalog, customers, report = load_inputs(args)
        progress.note(
            f"events: {report.rows_read:,} read, {report.accepted:,} accepted, "
            f"{report.rejected:,} rejected"
        )
        comparison = compare(
            con,
            catalog,
            customers,
            scenarios,
            base=base,
            enforcement=args.enforcement,
            progress=progress.scenarios(),
            start=args.start,
            until=args.until,
            ingest=report,
            out_dir=args.out,  # each scenario written as soon as it is replayed
        )
        paths = write_comparison(comparison, args.out)
    if args.json:
        print_json({**comparison_json(comparison), "events": report.to_dict()})
    else:
        print(comparison_text(comparison))
        print(f"wrote {len(paths)} files into {args.out} (report: {args.out / 'report.html'})")
    return 0
