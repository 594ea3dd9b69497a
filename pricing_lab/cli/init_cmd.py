"""`pricing-lab init DIR`: a folder of commented starter files to begin with your own data.

The files ship in the package (`pricing_lab/data/starter/`): a catalog, customers, what-if
scenarios and a small events file that `simulate` and `compare` run as they are.
"""

from __future__ import annotations

import argparse
from importlib.resources import files
from pathlib import Path
from typing import Any

from pricing_lab.errors import InputError

STARTER_FILES = ("catalog.yaml", "customers.yaml", "scenarios.yaml", "events.csv")


def register(subparsers: Any) -> None:
    """Add the `init` command."""
    parser = subparsers.add_parser(
        "init",
        help="write starter files (catalog, customers, scenarios, events) into a folder",
        description=(
            "Write a commented starter catalog, customers, what-if scenarios and a small events "
            "file (709 synthetic usage events of four customers over two months) into DIR, ready "
            "for `pricing-lab simulate` and `pricing-lab compare`. Edit them to describe your "
            "own product and customers. Existing files are left alone unless --force is given."
        ),
    )
    parser.add_argument(
        "dir", metavar="DIR", type=Path, help="folder to write (created if missing)"
    )
    parser.add_argument("--force", action="store_true", help="overwrite existing starter files")
    parser.set_defaults(handler=run)


def next_steps(folder: Path) -> str:
    """The commands to run on the starter files of `folder`."""
    inputs = (
        f"--catalog {folder / 'catalog.yaml'} --events {folder / 'events.csv'} "
        f"--customers {folder / 'customers.yaml'}"
    )
    return "\n".join(
        [
            "next steps:",
            f"  pricing-lab simulate {inputs} --out {folder / 'results'}",
            f"  pricing-lab compare {inputs} --scenarios {folder / 'scenarios.yaml'} "
            f"--out {folder / 'comparison'}",
            f"  open {folder / 'comparison' / 'report.html'} in a browser",
            "more synthetic events: pricing-lab events generate --out events.parquet --help",
        ]
    )


def run(args: argparse.Namespace) -> int:
    folder: Path = args.dir
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: exists and is not a folder")
    existing = [name for name in STARTER_FILES if (folder / name).exists()]
    if existing and not args.force:
        raise InputError(
            f"{folder}: already has {', '.join(existing)}; nothing written "
            "(use --force to overwrite them)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    starter = files("pricing_lab.data").joinpath("starter")
    for name in STARTER_FILES:
        (folder / name).write_bytes(starter.joinpath(name).read_bytes())
        print(f"wrote {folder / name}")
    print(next_steps(folder))
    return 0
