"""`pricing-lab compare`: replay several what-if scenarios over the same events and report."""

from __future__ import annotations

import argparse
import io
from datetime import datetime
from pathlib import Path
from typing import Any

from pricing_lab.cli.rejections import enforce, print_report, rejection_report
from pricing_lab.cli.simulate_cmd import (
    activity_options,
    add_replay_arguments,
    load_inputs,
    output_folder,
)
from pricing_lab.errors import InputError
from pricing_lab.output_staging import staged_outputs
from pricing_lab.scale.cli_options import (
    add_scale_arguments,
    bucket_options,
    check_scale_arguments,
    executor_from_args,
)


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
    parser.add_argument("--out", required=True, type=output_folder, help="output folder")
    parser.add_argument("--json", action="store_true", help="print totals as JSON")
    parser.add_argument(
        "--forecast",
        nargs="?",
        const=_END,
        type=_forecast_instant,
        metavar="T",
        help=(
            "also forecast, per scenario, who runs out of credits within --forecast-horizon "
            "after T (UTC ISO timestamp; without T: just after the last event), from the usage "
            "before T: forecast.parquet and a run-out section in the report (docs/forecast.md)"
        ),
    )
    parser.add_argument(
        "--forecast-horizon",
        help="with --forecast: how far after T, e.g. 30d, 2w, 36h (default 30d)",
    )
    add_scale_arguments(parser)
    parser.set_defaults(handler=run)


_END = "end"  # --forecast without an instant: as of just after the last event
_DEFAULT_HORIZON = "30d"


def _forecast_instant(text: str) -> object:
    from pricing_lab.cli.simulate_cmd import _timestamp

    return _END if text == _END else _timestamp(text)


def run(args: argparse.Namespace) -> int:

    from pricing_lab.cli.output import print_json
    from pricing_lab.progress import ProgressDisplay
    from pricing_lab.report.build import write_comparison
    from pricing_lab.simulation.costing import check_dimensions
    from pricing_lab.simulation.scenarios import compare, load_scenarios

    check_scale_arguments(args)
    base, scenarios = load_scenarios(args.scenarios)
    if args.forecast is None and args.forecast_horizon is not None:
        raise InputError("--forecast-horizon needs --forecast")
    if args.forecast is not None:
        from pricing_lab.forecast import parse_horizon

        horizon_text = args.forecast_horizon or _DEFAULT_HORIZON
        horizon = parse_horizon(horizon_text)
    with ProgressDisplay(enabled=not args.quiet) as progress, staged_outputs(args.out) as staged:
        # Every file is written into `staged.folder` and moved into --out at the block's end:
        # a run that fails or is interrupted leaves --out as it was (pricing_lab.output_staging).
        # What is printed is made inside the block too: it may read the scenarios' ledgers.
        progress.phase("reading and checking the events")
        con, catalog, customers, report = load_inputs(args)
        # Each scenario's changed rates must read dimensions the events have, like the base's.
        changed = {s.name: s.apply(catalog, customers)[0] for s in scenarios}
        check_dimensions(con, {"catalog": catalog, **changed}, source=str(args.events))
        progress.note(f"events: {report.counts()}")
        with executor_from_args(args, progress.phase) as executor:
            comparison = compare(
                con,
                catalog,
                customers,
                scenarios,
                base=base,
                enforcement=args.enforcement,
                progress=progress.scenarios(unit="buckets done" if args.executor else ""),
                start=args.start,
                until=args.until,
                ingest=report,
                out_dir=staged.folder,  # each scenario written as soon as it is replayed
                executor=executor,  # None: in this process, without buckets
                bucket_options=bucket_options(args) | {"progress": progress.update},
                activity=activity_options(args, catalog.currencies),
            )
        forecast = None
        if args.forecast is not None:
            from pricing_lab.forecast import forecast_scenarios

            as_of = _last_event(con) if args.forecast == _END else args.forecast
            progress.phase(f"forecasting run-outs per scenario as of {as_of:%Y-%m-%d %H:%M} UTC")
            forecast = forecast_scenarios(
                con, catalog, customers, scenarios, base=base, as_of=as_of, horizon=horizon,
                enforcement=args.enforcement,
            )  # fmt: skip
        paths = write_comparison(comparison, staged.folder, forecast=forecast)
        output = _output(args, comparison, report, customers, forecast, paths=paths)
    if args.json:
        print_json(output["json"])
    else:
        print(output["text"])
    enforce(args, output["rejections"])
    return 0


def _output(
    args: argparse.Namespace,
    comparison: Any,
    report: Any,
    customers: Any,
    forecast: Any,
    *,
    paths: list[Path],
) -> dict[str, Any]:
    """What `compare` prints (`json` or `text`) and its rejection reports per scenario."""
    from pricing_lab.cli.output import comparison_json, comparison_text, rows
    from pricing_lab.simulation.scenarios import scenario_folder

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
    at_risk = None if forecast is None else _likely_to_run_out(forecast)
    if args.json:
        printed: dict[str, Any] = {
            "json": {
                **comparison_json(comparison),
                "events": report.to_dict(),
                "rejections": rejections,
                "margin": rows(margin),
                **({} if at_risk is None else {"forecast": rows(at_risk)}),
            }
        }
        return {**printed, "rejections": rejections}
    from pricing_lab.report.build import margin_totals_table
    from pricing_lab.report.tables import text_table

    text = io.StringIO()
    print(comparison_text(comparison), file=text)
    for name, rejected in rejections.items():
        print(f"scenario {name}: ", end="", file=text)
        print_report(rejected, out=text)
    margin_table = margin_totals_table(comparison)
    if margin_table is not None:
        print(
            "margin per scenario (change against the base in parentheses; the margin "
            "share's in percentage points):",
            file=text,
        )
        print(text_table(margin_table), file=text)
    if at_risk is not None:
        horizon_text = args.forecast_horizon or _DEFAULT_HORIZON
        print(f"run-out forecast over {horizon_text} (forecast.parquet):", file=text)
        print(text_table(_run_out_table(at_risk)), file=text)
    print(
        f"wrote {len(paths)} files into {args.out} (report: {args.out / 'report.html'})",
        file=text,
    )
    return {"text": text.getvalue().rstrip("\n"), "rejections": rejections}


def _last_event(con: Any) -> datetime:
    """Just after the last accepted event: a forecast from there sees the whole history."""
    from pricing_lab.timeutil import MICROSECOND, as_utc

    (last,) = con.execute("SELECT max(timestamp) FROM events").fetchone()
    if last is None:
        raise InputError("--forecast: there are no events to forecast from")
    return as_utc(last) + MICROSECOND


def _run_out_table(at_risk: Any) -> Any:
    from pricing_lab.report.tables import Column, Table

    return Table(
        title="run-out forecast per scenario",
        frame=at_risk,
        columns=[
            Column(name="scenario"),
            Column(name="customer_currencies", header="customer-currencies", kind="count"),
            Column(name="too_little_history", header="too little history", kind="count"),
            Column(
                name="likely_to_run_out", header="more likely than not to run out", kind="count"
            ),
        ],
    )


def _likely_to_run_out(forecast: Any) -> Any:
    """Per scenario: customer-currencies forecast, flagged, and with a run-out probability ≥ 50%."""
    import polars as pl

    from pricing_lab.forecast.run_out import LIKELY_TO_RUN_OUT

    return forecast.group_by("scenario", maintain_order=True).agg(
        pl.len().alias("customer_currencies"),
        pl.col("too_little_history").sum().alias("too_little_history"),
        (pl.col("run_out_probability") >= LIKELY_TO_RUN_OUT).sum().alias("likely_to_run_out"),
    )
