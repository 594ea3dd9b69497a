"""Runs the benchmarks: `python -m benchmarks [NAME ...] [--rows N]`.

Each benchmark is a module `benchmarks/<name>_bench.py` with `main(argv) -> int`; it prints its
figures and the ratio against its baseline measured in the same process on the same data.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def available() -> list[str]:
    folder = Path(__file__).parent
    return sorted(
        info.name.removesuffix("_bench")
        for info in pkgutil.iter_modules([str(folder)])
        if info.name.endswith("_bench")
    )


def main(argv: list[str]) -> int:
    known = set(available())
    # Benchmark names come first; everything from the first option on is passed to each benchmark
    # (`--rows 1000000` and `--rows=1000000` both work).
    split = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    names, options = argv[:split], argv[split:]
    unknown = sorted(set(names) - known)
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(sorted(known))}")
        return 2
    status = 0
    for name in names or available():
        print(f"== {name} ==", flush=True)
        module = importlib.import_module(f"benchmarks.{name}_bench")
        status |= module.main(options)
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
