"""`pricing-lab compare`: replay several what-if scenarios over the same events and report."""

from __future__ import annotations

import argparse
from pathlib import Path

from pricing_lab.cli.rejections import enforce, print_report, rejection_report
from pricing_lab.cli.simulate_cmd import activity_options, add_replay_arguments, load_inputs
from pricing_lab.scale.cli_options import add_scale_arguments, bucket_options, executor_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare what-if scenarios: Parquet results and a self-contained HTML report",
        description=(
            "Replay the base and every scenario of --scenarios over the same events; write "
            "comparison_customers/features/totals.parquet, the margin per scenario and customer "
            "(comparison_margin.parquet) and per scenario (comparison_margin_totals.parquet), "
            "comparison_activity.parquet (activity events per scenario, customer and kind), "
            "each scenario's outputs under scenarios/NAME/, and report.html (charts embedded, "
            "works offline)."
        ),
    )
    add_replay_arguments(parser)
    parser.add_argument("--scenarios", required=True, type=Path, help="scenario YAML file")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--json", action="store_true", help="print totals as JSON")
    add_scale_arguments(parser)
    parser.set_defaults(handler=run)


_MONEY = ["revenue", "breakage", "cost_to_serve", "gross_margin", "gross_margin_change"]


def run(args: argparse.Namespace) -> int:
    import polars as pl

    from pricing_lab.cli.output import comparison_json, comparison_text, print_json, rows
    from pricing_lab.progress import ProgressDisplay
    from pricing_lab.report.build import write_comparison
    from pricing_lab.simulation.costing import check_dimensions
    from pricing_lab.simulation.output_files import write_table
    from pricing_lab.simulation.scenarios import compare, load_scenarios, scenario_folder

    base, scenarios = load_scenarios(args.scenarios)
    with ProgressDisplay(enabled=not args.quiet) as progress:
        progress.phase("reading and checking the events")
        con, catalog, customers, report = load_inputs(args)
        # Each scenario's changed rates must read dimensions the events have, like the base's.
        changed = {s.name: s.apply(catalog, customers)[0] for s in scenarios}
        check_dimensions(con, {"catalog": catalog, **changed}, source=str(args.events))
        progress.note(
            f"events: {report.rows_read:,} read, {report.accepted:,} accepted, "
            f"{report.rejected:,} rejected"
        )
        with executor_from_args(args) as executor:
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
                executor=executor,  # None: in this process, without buckets
                bucket_options=bucket_options(args),
                activity=activity_options(args, catalog.currencies),
            )
        paths = write_comparison(comparison, args.out)
        paths.append(write_table(comparison.activity, args.out / "comparison_activity.parquet"))
    rejections = {
        name: rejection_report(
            comparison.result(name).rejected_events,
            rows_read=report.rows_read,
            path=scenario_folder(args.out, name) / "rejected_events.parquet",
            known_customers=customers.customer_ids,
        )
        for name in comparison.results
    }
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
        print_json(
            {
                **comparison_json(comparison),
                "events": report.to_dict(),
                "rejections": rejections,
                "margin": rows(margin),
            }
        )
    else:
        print(comparison_text(comparison))
        for name, rejected in rejections.items():
            print(f"scenario {name}: ", end="")
            print_report(rejected)
        print("margin (money; change against the base):")
        print(margin.with_columns(pl.col(_MONEY).cast(pl.Decimal(38, 2))))
        print(f"wrote {len(paths)} files into {args.out} (report: {args.out / 'report.html'})")
    enforce(args, rejections)
    return 0
