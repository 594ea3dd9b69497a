"""Real LLM request traces as usage events: Azure LLM inference 2023 (code, conversation), Mooncake.

The traces carry no tenant, so each request gets a customer by a stable hash of (trace, row
number) mapped onto Zipf-like weights over N customers (`cust-00001` is the largest): the same
arguments always give the same assignment, and customer sizes are heavy-tailed like real
SaaS usage. A request also gets a `model` by a second stable hash (gpt-4o 30 %, gpt-4o-mini
50 %, llama-70b 20 %). The ~1 hour traces are stretched by default onto `span` (60 days from
2024-01-01 UTC), keeping the order of requests, so credit burn over months can be replayed.

The package ships the three traces (all rows, as compact Parquet) under `pricing_lab/data/real/`
with `ATTRIBUTION.md`; keep that attribution wherever these rows are shipped or shown.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import duckdb
import numpy as np
import pyarrow as pa

from pricing_lab.errors import InputError
from pricing_lab.events.ingest import IngestReport, ingest_events, quote_literal
from pricing_lab.events.synthetic import (
    LLM_MODEL_WEIGHTS,
    LLM_MODELS,
    customer_ids,
    customer_weights,
)
from pricing_lab.timeutil import MICROSECOND, to_micros

TraceName = Literal["azure_code", "azure_conversation", "mooncake"]
PACKAGE_DATA = Path(__file__).resolve().parent.parent / "data" / "real"
DEFAULT_START = datetime(2024, 1, 1, tzinfo=UTC)
DEFAULT_SPAN = timedelta(days=60)
DEFAULT_CUSTOMERS = 50
ALL_TRACES: tuple[TraceName, ...] = ("azure_code", "azure_conversation", "mooncake")


@dataclass(frozen=True, slots=True, kw_only=True)
class Trace:
    """One real trace: its file stem, event id prefix, workload and column layout."""

    name: TraceName
    stem: str
    prefix: str
    workload: str
    kind: Literal["azure", "mooncake"]
    salt: int


TRACES: dict[str, Trace] = {
    "azure_code": Trace(
        name="azure_code",
        stem="azure_llm_2023_code",
        prefix="azure-code",
        workload="code",
        kind="azure",
        salt=0x0A2C0DE,
    ),
    "azure_conversation": Trace(
        name="azure_conversation",
        stem="azure_llm_2023_conv",
        prefix="azure-conv",
        workload="conversation",
        kind="azure",
        salt=0x0A2C0F,
    ),
    "mooncake": Trace(
        name="mooncake",
        stem="mooncake_fast25_conversation_trace",
        prefix="mooncake",
        workload="conversation",
        kind="mooncake",
        salt=0x3005CA,
    ),
}


def attribution() -> str:
    """The attribution text that must travel with the shipped trace rows."""
    return (PACKAGE_DATA / "ATTRIBUTION.md").read_text(encoding="utf-8")


def trace_file(trace: TraceName, source_dir: str | Path | None = None) -> Path:
    """The trace's file: the shipped Parquet, or `<stem>.csv` / `.parquet` in `source_dir`."""
    info = _trace(trace)
    folder = Path(source_dir) if source_dir is not None else PACKAGE_DATA
    for suffix in (".parquet", ".csv"):
        candidate = folder / f"{info.stem}{suffix}"
        if candidate.exists():
            return candidate
    raise InputError(f"{folder}: no {info.stem}.csv or .parquet")


def stable_uniform(salt: int, rows: np.ndarray) -> np.ndarray:
    """A reproducible number in [0, 1) per row: splitmix64 of (salt, row), top 53 bits."""
    with np.errstate(over="ignore"):
        z = rows.astype(np.uint64) + np.uint64(salt) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def assign_customers(
    trace: TraceName, rows: np.ndarray, customers: int = DEFAULT_CUSTOMERS
) -> np.ndarray:
    """Customer rank (0-based) per 1-based row number: stable hash onto Zipf-like weights."""
    cumulative = np.cumsum(customer_weights(customers))
    cumulative[-1] = 1.0
    u = stable_uniform(_trace(trace).salt, rows)
    return np.minimum(np.searchsorted(cumulative, u, side="right"), customers - 1)


def trace_events(
    con: duckdb.DuckDBPyConnection,
    trace: TraceName,
    *,
    source_dir: str | Path | None = None,
    customers: int = DEFAULT_CUSTOMERS,
    start: datetime = DEFAULT_START,
    span: timedelta | None = DEFAULT_SPAN,
) -> pa.Table:
    """The trace as an Arrow table of `llm.request` events, one per row of the trace file.

    Columns: event_id (`<prefix>-<row>`), customer_id, event_name, timestamp (naive UTC),
    input_tokens, output_tokens, model, workload, prefix_blocks (Mooncake only, else null).
    Time: request offsets from the trace's first request are stretched onto `span` from `start`
    (integer µs arithmetic, order kept); `span=None` keeps the real spacing, from the trace's own
    date for Azure and from `start` for Mooncake (whose file holds only offsets).
    """
    info = _trace(trace)
    path = trace_file(trace, source_dir)
    reader = _reader(path, info)
    try:
        table = con.sql(f"SELECT * FROM {reader}").to_arrow_table()
    except duckdb.Error as exc:
        raise InputError(f"{path}: cannot read the trace: {exc}") from exc
    n = table.num_rows
    rows = np.arange(1, n + 1, dtype=np.int64)
    if info.kind == "azure":
        stamps = table.column("TIMESTAMP").cast(pa.timestamp("ns")).cast(pa.int64())
        nanos = stamps.to_numpy()
        origin_us = int(nanos.min()) // 1000 if n else 0
        offsets = nanos // 1000 - origin_us
        inputs = table.column("ContextTokens").to_numpy()
        outputs = table.column("GeneratedTokens").to_numpy()
        blocks = pa.nulls(n, pa.int64())
    else:
        offsets = table.column("timestamp_ms").to_numpy().astype(np.int64) * 1000
        offsets = offsets - (int(offsets.min()) if n else 0)
        origin_us = to_micros(start)
        inputs = table.column("input_length").to_numpy()
        outputs = table.column("output_length").to_numpy()
        blocks = pa.array(table.column("num_prefix_blocks").to_numpy().astype(np.int64))
    if span is not None:
        duration = int(offsets.max()) if n else 0
        span_us = span // MICROSECOND - 1  # the last request lands inside the span
        if duration > 0:
            offsets = np.array([o * span_us // duration for o in offsets.tolist()], np.int64)
        origin_us = to_micros(start)
    micros = offsets.astype(np.int64) + np.int64(origin_us)
    ranks = assign_customers(trace, rows, customers)
    models = np.searchsorted(np.cumsum(LLM_MODEL_WEIGHTS), stable_uniform(info.salt + 1, rows))
    models = np.minimum(models, len(LLM_MODELS) - 1)
    names = pa.array(customer_ids(customers), pa.string())
    return pa.table(
        {
            "event_id": pa.array([f"{info.prefix}-{r:05d}" for r in rows.tolist()], pa.string()),
            "customer_id": names.take(pa.array(ranks)),
            "event_name": pa.array(["llm.request"] * n, pa.string()),
            "timestamp": pa.array(micros, pa.timestamp("us")),
            "input_tokens": pa.array(inputs.astype(np.int64)),
            "output_tokens": pa.array(outputs.astype(np.int64)),
            "model": pa.array(np.asarray(LLM_MODELS, dtype=object)[models], pa.string()),
            "workload": pa.array([info.workload] * n, pa.string()),
            "prefix_blocks": blocks,
        }
    )


def load_real_events(
    con: duckdb.DuckDBPyConnection,
    *,
    traces: Iterable[TraceName] = ALL_TRACES,
    source_dir: str | Path | None = None,
    customers: int = DEFAULT_CUSTOMERS,
    start: datetime = DEFAULT_START,
    span: timedelta | None = DEFAULT_SPAN,
    table: str = "events",
    rejected_table: str = "rejected_events",
) -> IngestReport:
    """Build events from the traces (see `trace_events`) and ingest them into `table`."""
    parts = [
        trace_events(con, t, source_dir=source_dir, customers=customers, start=start, span=span)
        for t in traces
    ]
    if not parts:
        raise InputError("no trace selected")
    combined = pa.concat_tables(parts)
    return ingest_events(con, combined, table=table, rejected_table=rejected_table)


def load_sample_events(
    con: duckdb.DuckDBPyConnection,
    *,
    traces: Iterable[TraceName] = ALL_TRACES,
    customers: int = DEFAULT_CUSTOMERS,
    start: datetime = DEFAULT_START,
    span: timedelta | None = DEFAULT_SPAN,
    table: str = "events",
    rejected_table: str = "rejected_events",
) -> IngestReport:
    """Ingest the real traces shipped inside the package (works offline). See ATTRIBUTION.md."""
    return load_real_events(
        con,
        traces=traces,
        customers=customers,
        start=start,
        span=span,
        table=table,
        rejected_table=rejected_table,
    )


def build_package_data(source_dir: str | Path, out_dir: str | Path = PACKAGE_DATA) -> list[Path]:
    """Convert the trace CSVs of `source_dir` to the compact Parquet files shipped in the package.

    Every row and column is kept (Azure timestamps at their full 100 ns precision).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    written = []
    for info in TRACES.values():
        source = Path(source_dir) / f"{info.stem}.csv"
        target = out / f"{info.stem}.parquet"
        con.execute(
            f"COPY (SELECT * FROM {_reader(source, info)}) TO {quote_literal(str(target))} "
            "(FORMAT PARQUET, COMPRESSION ZSTD, COMPRESSION_LEVEL 19)"
        )
        written.append(target)
    return written


def _reader(path: Path, info: Trace) -> str:
    if path.suffix == ".parquet":
        return f"read_parquet({quote_literal(str(path))})"
    types = "{'TIMESTAMP': 'TIMESTAMP_NS'}" if info.kind == "azure" else "{}"
    return f"read_csv({quote_literal(str(path))}, header = true, types = {types})"


def _trace(name: str) -> Trace:
    try:
        return TRACES[name]
    except KeyError:
        raise InputError(f"unknown trace {name!r}: use {', '.join(TRACES)}") from None
