"""Benchmark: ingest and validate N synthetic events from Parquet vs a plain DuckDB `COPY`.

`python -m benchmarks events [--rows=N] [--repeat=K]` (default 10,000,000 rows, best of 2).
Each measurement runs in a fresh child process so its peak memory (the child's `VmHWM`, which
includes DuckDB's own buffers) is its own. Prints events/s, CPU time, peak RSS and the ratios
ours / baseline (target ≤ 2×).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import peak_rss_bytes

DATA = Path(__file__).parent / "data"
TARGET_RATIO = 2.0


def _child(kind: str, path: str) -> None:
    import duckdb

    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    if kind == "copy":
        con.execute(f"CREATE TABLE t AS SELECT * FROM read_parquet('{path}') LIMIT 0")
        con.execute(f"COPY t FROM '{path}' (FORMAT parquet)")
        rows = con.execute("SELECT count(*) FROM t").fetchone()[0]  # type: ignore[index]
    else:
        from pricing_lab.events.ingest import ingest_events

        report = ingest_events(con, path)
        rows = report.accepted + report.rejected
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    peak_mib = peak_rss_bytes() / 1024**2
    print(json.dumps({"rows": rows, "seconds": seconds, "cpu": cpu, "peak_mib": peak_mib}))


def _measure(kind: str, path: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.events_bench", "--child", kind, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="events_bench")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=2)
    args, _ = parser.parse_known_args(argv)
    if args.child:
        _child(*args.child)
        return 0
    from pricing_lab.events.synthetic import generate_events

    path = DATA / f"events_{args.rows}.parquet"
    if not path.exists():
        started = time.perf_counter()
        generate_events(path, events=args.rows, customers=10_000, days=90, seed=42)
        print(f"generated {args.rows:,} events in {time.perf_counter() - started:.1f} s: {path}")
    best: dict[str, dict[str, float]] = {}
    for _ in range(max(1, args.repeat)):
        for kind in ("copy", "ingest"):
            result = _measure(kind, path)
            if kind not in best or result["seconds"] < best[kind]["seconds"]:
                best[kind] = result
    for kind, label in (("copy", "baseline DuckDB COPY"), ("ingest", "ingest_events")):
        r = best[kind]
        print(
            f"{label:22s} {int(r['rows']):>12,} rows  {r['seconds']:7.2f} s  "
            f"{r['rows'] / r['seconds']:>12,.0f} events/s  CPU {r['cpu']:6.2f} s  "
            f"peak RSS {r['peak_mib']:,.0f} MiB"
        )
    ratio = best["ingest"]["seconds"] / best["copy"]["seconds"]
    cpu_ratio = best["ingest"]["cpu"] / best["copy"]["cpu"]
    verdict = "OK" if ratio <= TARGET_RATIO else "ABOVE TARGET"
    print(f"ratio ingest / COPY: {ratio:.2f}x wall (target ≤ {TARGET_RATIO:.0f}x) {verdict}")
    print(f"ratio ingest / COPY: {cpu_ratio:.2f}x CPU time (steadier on a shared machine)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
