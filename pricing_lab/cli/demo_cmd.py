"""`pricing-lab demo`: the main job — sample catalog, real usage, replay, scenarios, HTML report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DEFAULT_OUT = "demo_out"


def register(subparsers: Any) -> None:
    """Add the `demo` command."""
    parser = subparsers.add_parser(
        "demo",
        help="the main job: replay real LLM usage through the sample catalog, compare scenarios",
        description=(
            "Build a local store with the sample AI catalog and the real LLM traces shipped in "
            "the package, replay the usage, compare the demo scenarios (base and chat output "
            "tokens at 1.2x), write Parquet results and a self-contained HTML report, and print a "
            "summary."
        ),
    )
    parser.add_argument(
        "--out",
        default=DEFAULT_OUT,
        type=Path,
        metavar="DIR",
        help=f"output folder (default: {DEFAULT_OUT})",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pricing_lab.cli.output import comparison_text
    from pricing_lab.output_staging import staged_outputs
    from pricing_lab.progress import ProgressDisplay
    from pricing_lab.simulation.demo import attribution_line, run_demo

    # Written whole or not at all: an interrupted demo leaves --out as it was.
    with ProgressDisplay(enabled=not args.quiet) as progress, staged_outputs(args.out) as staged:
        result = run_demo(staged.folder, progress=progress)
    print(comparison_text(result.comparison))
    print(f"{result.events:,} events replayed per scenario in {result.seconds:.1f} s")
    print(f"report: {staged.final(result.report)}")
    print(f"results: {args.out}/ (Parquet per scenario, comparison tables)")
    print(attribution_line())
    return 0
