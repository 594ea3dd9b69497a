"""`pricing-lab forecast`: who runs out of credits within a horizon, and its backtest."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path
from typing import Any

from pricing_lab.cli.output import print_json
from pricing_lab.cli.rejections import (
    add_rejection_arguments,
    enforce,
    print_report,
    rejection_report,
)
from pricing_lab.errors import InputError, PricingLabError

_CUTS = 4  # backtest cut instants by default
_TOP = 10  # rows in a forecast's summary


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "forecast",
        help="run-out forecast: who runs out of credits within a horizon, when, how sure",
        description=(
            "Replay the usage before --as-of, then simulate the horizon many times (the known "
            "future: recurring grants, expiries, scheduled grants and top-ups, auto-recharge; "
            "burn drawn from each customer's own history). Writes one row per customer and "
            "currency: balance, probability of running out, p10/p50/p90 run-out instants, "
            "expected breakage. With --backtest: cut the history at several instants, forecast, "
            "replay what happened and score calibration and errors against a naive baseline."
        ),
    )
    from pricing_lab.cli.simulate_cmd import _timestamp

    parser.add_argument("--catalog", required=True, type=Path, help="YAML catalog file")
    parser.add_argument("--events", required=True, help="usage events: .parquet, .csv, .ndjson")
    parser.add_argument(
        "--customers",
        type=Path,
        help="customers: a YAML file, a folder of tables (.csv/.parquet) or a .duckdb file",
    )
    parser.add_argument("--as-of", type=_timestamp, help="forecast instant T (UTC ISO timestamp)")
    parser.add_argument(
        "--horizon", default="30d", help="how far after T: e.g. 30d, 2w, 36h (default 30d)"
    )
    parser.add_argument("--paths", type=int, default=1000, help="simulated paths (≥ 1000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same output)")
    parser.add_argument(
        "--enforcement",
        choices=("overdraft", "block"),
        default="overdraft",
        help="what happens when credits run out (default: overdraft)",
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="output: FILE.parquet / FILE.csv, or a folder"
    )
    parser.add_argument(
        "--backtest", action="store_true", help="backtest the forecast over the history instead"
    )
    parser.add_argument(
        "--cuts", type=int, help=f"backtest: number of cut instants (default {_CUTS})"
    )
    parser.add_argument(
        "--cut",
        type=_timestamp,
        action="append",
        help="backtest: a cut instant (repeat for several; overrides --cuts)",
    )
    parser.add_argument(
        "--top", type=int, default=None, help=f"rows in the summary (default {_TOP})"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    add_rejection_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import duckdb

    from pricing_lab.catalog.yaml_format import load_catalog_file
    from pricing_lab.cli.simulate_cmd import check_replay_inputs
    from pricing_lab.events.ingest import ingest_events
    from pricing_lab.forecast import parse_horizon
    from pricing_lab.forecast.run_out import check_options
    from pricing_lab.formula import check_formula
    from pricing_lab.progress import ProgressDisplay
    from pricing_lab.simulation.customers import CustomerInputs, load_customers

    horizon = parse_horizon(args.horizon)
    check_options(args.paths, args.enforcement)
    if args.top is not None and args.top < 1:
        raise InputError(f"--top must be at least 1 (rows in the summary), got {args.top}")
    if args.backtest and args.top is not None:  # else silently ignored: a backtest has no list
        raise InputError("--top is for a forecast's summary, not --backtest")
    if not args.backtest and args.as_of is None:
        raise InputError("--as-of is required (or --backtest)")
    if not args.backtest and (args.cuts is not None or args.cut):  # else silently ignored
        raise InputError("--cuts and --cut need --backtest")
    catalog = load_catalog_file(args.catalog, check_formula=check_formula)
    customers = load_customers(args.customers) if args.customers else CustomerInputs()
    check_replay_inputs(args, catalog, customers)
    if not Path(args.events).exists():
        raise InputError(f"{args.events}: no such events file")
    common: dict[str, Any] = {
        "horizon": horizon,
        "paths": args.paths,
        "seed": args.seed,
        "enforcement": args.enforcement,
    }
    from pricing_lab.forecast import run_out_ranking
    from pricing_lab.forecast.backtest import backtest_costed
    from pricing_lab.forecast.history import BurnModel
    from pricing_lab.forecast.run_out import LIKELY_TO_RUN_OUT, forecast_costed
    from pricing_lab.output_staging import staged_files
    from pricing_lab.simulation.costing import check_dimensions
    from pricing_lab.simulation.simulate import cost, with_ingest_rejected

    name = "backtest" if args.backtest else "forecast"
    with ProgressDisplay(enabled=not args.quiet) as progress:
        progress.phase("reading and checking the events")
        con = duckdb.connect()
        ids = sorted(customers.customer_ids) if customers.customer_ids is not None else None
        report = ingest_events(con, args.events, customers=ids)
        progress.note(f"events: {report.counts()}")
        # A meter or formula reading a column the events lack is refused, as by `simulate`.
        check_dimensions(con, {"catalog": catalog}, source=str(args.events))
        progress.phase("costing the events")
        costing = cost(con, catalog, customers)  # its rejected rows are reported like simulate's
        rejected = with_ingest_rejected(con, report, costing.rejected)
        if args.backtest:
            cuts = args.cut or (_CUTS if args.cuts is None else args.cuts)
            count = len(cuts) if isinstance(cuts, list) else cuts
            progress.phase(
                f"backtesting at {count} cuts: replaying the history, forecasting {args.paths:,} "
                "paths, replaying what happened"
            )
            rows = backtest_costed(
                con, catalog, customers, costing, cuts=cuts, events="events",
                model=BurnModel(), **common,
            )  # fmt: skip
        else:
            progress.phase(
                f"replaying the history before {args.as_of:%Y-%m-%d %H:%M} and forecasting "
                f"{args.paths:,} paths"
            )
            # `forecast` on the costing above (it would cost the same events again)
            table = forecast_costed(
                con, catalog, customers, costing, as_of=args.as_of, events="events",
                model=BurnModel(), **common,
            )  # fmt: skip
        progress.phase("writing the backtest" if args.backtest else "writing the forecast")
        path, rejected_path = _output_path(args.out, name), _rejected_path(args.out)
        # The forecast and its rejected rows are read together: written together, or neither.
        with staged_files([path, rejected_path]) as staged:
            _write(rows if args.backtest else table, path, into=staged.twin(path))
            _write(rejected, rejected_path, into=staged.twin(rejected_path))
    rejections = rejection_report(
        rejected,
        rows_read=report.rows_read,
        path=rejected_path,
        known_customers=customers.customer_ids,
    )
    if args.backtest:
        _backtest(args, rows, path, rejections)
        enforce(args, {"events": rejections})
        return 0
    ranking = run_out_ranking(table, _TOP if args.top is None else args.top)
    flagged = int(table["too_little_history"].sum())
    at_risk = int(table.filter(table["run_out_probability"] >= LIKELY_TO_RUN_OUT).height)
    if args.json:
        print_json(
            {
                "as_of": args.as_of,
                "horizon": args.horizon,
                "paths": args.paths,
                "seed": args.seed,
                "events_accepted": report.rows_read - rejected.height,
                "events_rejected": rejected.height,
                "customer_currencies": table.height,
                "too_little_history": flagged,
                "likely_to_run_out": at_risk,
                "first_to_run_out": ranking.to_dicts(),
                "out": path,
                "rejections": rejections,
            }
        )
        enforce(args, {"events": rejections})
        return 0
    print(
        f"forecast as of {args.as_of:%Y-%m-%d %H:%M} UTC over {args.horizon} "
        f"({args.paths} paths, seed {args.seed}): {table.height} customer-currencies, "
        f"{flagged} with too little history (fewer than 7 days with usage), {at_risk} more "
        "likely than not to run out"
    )
    if ranking.height:
        print("first to run out (p50 instant; p10 … p90):")
        for row in ranking.iter_rows(named=True):
            print(
                f"  {row['customer_id']:<16} {row['currency_id']:<10} "
                f"balance {row['balance']}  P(run out) {row['run_out_probability']:.0%}  "
                f"p50 {_when(row['run_out_p50'])}  "
                f"({_when(row['run_out_p10'])} … {_when(row['run_out_p90'])})"
            )
    else:
        print("nobody has a chance of running out within the horizon")
    print(f"wrote {path}")
    print_report(rejections)
    enforce(args, {"events": rejections})
    return 0


def _backtest(args: argparse.Namespace, rows: Any, path: Path, rejections: dict[str, Any]) -> None:
    """Print the summary of the backtest's `rows` (written to `path`) and the rejected rows."""
    from pricing_lab.forecast import backtest_summary

    summary = backtest_summary(rows)
    if args.json:
        print_json(
            {
                "horizon": args.horizon,
                "paths": args.paths,
                "cuts": summary.to_dicts(),
                "out": path,
                "rejections": rejections,
            }
        )
        return
    print(f"backtest over {args.horizon}, {summary.height - 1} cuts, {args.paths} paths:")
    print(f"  {'cut':<22}{'units':>6}{'flagged':>8}{'ran out':>8}{'calibration':>12}"
          f"{'p50 error d':>12}{'naive d':>9}{'ratio':>7}")  # fmt: skip
    for row in summary.iter_rows(named=True):
        print(
            f"  {row['cut']:<22}{row['units']:>6}{row['flagged']:>8}{row['ran_out']:>8}"
            f"{_share(row['calibration']):>12}{_number(row['p50_error_days']):>12}"
            f"{_number(row['naive_error_days']):>9}{_number(row['error_ratio']):>7}"
        )
    print(
        "calibration: share of customer-currencies whose actual run-out lies within [p10, p90], "
        "an actual 'after the horizon' counting by the part of its forecast probability between "
        "the 10% and 90% levels (target 70–90%); errors: median |actual − predicted| in days "
        "over those that ran out (target: ratio ≤ 0.8 of the naive baseline's)"
    )
    print(f"wrote {path}")
    print_report(rejections)


def _output_path(out: Path, name: str) -> Path:
    """`--out` itself when it is a .parquet or .csv file, else `<out>/<name>.parquet`."""
    return out if out.suffix.lower() in (".parquet", ".csv") else out / f"{name}.parquet"


def _rejected_path(out: Path) -> Path:
    """Where the rejected rows go: `<stem>_rejected.<suffix>` beside an output file (as
    `usage report` writes them), `<out>/rejected_events.parquet` in an output folder."""
    if out.suffix.lower() in (".parquet", ".csv"):
        return out.with_name(f"{out.stem}_rejected{out.suffix}")
    return _output_path(out, "rejected_events")


def _write(table: Any, path: Path, *, into: Path) -> None:
    """Write `table` as the file `path` (.csv, else Parquet) at `into` (its hidden twin until
    both files are complete)."""
    import polars as pl

    try:
        if path.suffix.lower() == ".csv":
            table.write_csv(into)
        else:
            table.write_parquet(into)
    except pl.exceptions.PolarsError as exc:  # Polars' word for a write the OS refused
        raise PricingLabError(f"{path}: could not be written ({exc})") from None


def _when(value: datetime | None) -> str:
    return "after horizon" if value is None else f"{value:%Y-%m-%d %H:%M}"


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"
