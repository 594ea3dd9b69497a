"""Synthetic usage events: a seeded, chunked generator writing up to 100M+ events to Parquet.

The events use the shared vocabulary (`llm.request`, `image.generated`, `summary.created`), with
heavy-tailed customer sizes (Zipf-like weights), a daily cycle (busy afternoons, quiet nights) and
a weekly one (weekends at 55 %). The same arguments always give the same file: every chunk draws
from its own random stream derived from `seed` and the chunk's index. Nothing is held in memory
beyond one chunk of numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pricing_lab.timeutil import as_utc, to_micros

CHUNK_ROWS = 1_000_000
DEFAULT_START = datetime(2024, 1, 1, tzinfo=UTC)
ZIPF_EXPONENT = 1.1

EVENT_KINDS = ("llm.request", "image.generated", "summary.created")
EVENT_KIND_WEIGHTS = (0.70, 0.10, 0.20)
LLM_MODELS = ("gpt-4o", "gpt-4o-mini", "llama-70b")
LLM_MODEL_WEIGHTS = (0.30, 0.50, 0.20)
WORKLOADS = ("code", "conversation")
WORKLOAD_WEIGHTS = (0.35, 0.65)
IMAGE_MODELS = ("dall-e-3", "sdxl")
RESOLUTIONS = ("512x512", "1024x1024")
DOC_TYPES = ("document", "email", "image")
DOC_TYPE_WEIGHTS = (0.5, 0.35, 0.15)
# Relative activity per UTC hour of day (a business-hours peak) and per weekday (Mon..Sun).
HOURLY_WEIGHTS = (
    0.25, 0.2, 0.18, 0.18, 0.2, 0.3, 0.5, 0.8, 1.1, 1.4, 1.6, 1.7,
    1.6, 1.7, 1.8, 1.8, 1.7, 1.5, 1.2, 1.0, 0.8, 0.6, 0.45, 0.3,
)  # fmt: skip
WEEKDAY_WEIGHTS = (1.0, 1.05, 1.05, 1.0, 0.95, 0.55, 0.5)

_MICROS_PER_HOUR = 3_600_000_000
_MICROS_PER_DAY = 24 * _MICROS_PER_HOUR


@dataclass(frozen=True, slots=True, kw_only=True)
class GeneratedEvents:
    """What `generate_events` wrote."""

    path: Path
    events: int
    customers: int
    days: int
    seed: int
    start: datetime


def customer_weights(customers: int, exponent: float = ZIPF_EXPONENT) -> np.ndarray:
    """Zipf-like share of traffic per customer rank: w_k ∝ 1 / k^exponent, k = 1..customers."""
    ranks = np.arange(1, customers + 1, dtype=np.float64)
    weights = ranks ** (-exponent)
    return weights / weights.sum()


def customer_ids(customers: int) -> list[str]:
    """Customer ids `cust-00001` … (rank order: `cust-00001` is the largest customer)."""
    width = max(5, len(str(customers)))
    return [f"cust-{k:0{width}d}" for k in range(1, customers + 1)]


def generate_events(
    path: str | Path,
    *,
    events: int,
    customers: int = 100,
    days: int = 30,
    seed: int = 0,
    start: datetime = DEFAULT_START,
    chunk_rows: int = CHUNK_ROWS,
) -> GeneratedEvents:
    """Write `events` synthetic usage events to the Parquet file `path`, chunk by chunk.

    Columns: event_id (`evt-<seed>-<index>`, unique and stable), customer_id, event_name,
    timestamp (naive UTC, µs, within `days` days from `start`), model, input_tokens,
    output_tokens, workload (llm.request), resolution, images (image.generated), doc_type, pages
    (summary.created); dimensions that do not apply to an event kind are null.
    Identical arguments give an identical file.
    """
    if events < 0 or customers < 1 or days < 1 or chunk_rows < 1:
        raise ValueError("events must be ≥ 0, customers, days and chunk_rows ≥ 1")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    start_micros = to_micros(start)
    weights = customer_weights(customers)
    # Day weights: weekly cycle on the weekday of each day of the span.
    weekdays = (np.arange(days) + as_utc(start).weekday()) % 7
    day_weights = np.asarray(WEEKDAY_WEIGHTS)[weekdays]
    day_weights = day_weights / day_weights.sum()
    hour_weights = np.asarray(HOURLY_WEIGHTS) / np.sum(HOURLY_WEIGHTS)
    names = pa.array(customer_ids(customers), pa.string())
    width = len(str(max(events - 1, 0)))
    chunks = (events + chunk_rows - 1) // chunk_rows
    seeds = np.random.SeedSequence(seed).spawn(max(chunks, 1))
    schema = _schema()
    with pq.ParquetWriter(out, schema, compression="zstd") as writer:
        for index in range(chunks):
            first = index * chunk_rows
            rows = min(chunk_rows, events - first)
            rng = np.random.default_rng(seeds[index])
            batch = _chunk(
                rng, first, rows, seed, width, names, weights, day_weights, hour_weights,
                start_micros,
            )  # fmt: skip
            writer.write_table(batch)
        if chunks == 0:
            writer.write_table(schema.empty_table())
    return GeneratedEvents(
        path=out, events=events, customers=customers, days=days, seed=seed, start=start
    )


def _schema() -> pa.Schema:
    return pa.schema(
        [
            ("event_id", pa.string()),
            ("customer_id", pa.dictionary(pa.int32(), pa.string())),
            ("event_name", pa.dictionary(pa.int8(), pa.string())),
            ("timestamp", pa.timestamp("us")),
            ("model", pa.dictionary(pa.int8(), pa.string())),
            ("input_tokens", pa.int64()),
            ("output_tokens", pa.int64()),
            ("workload", pa.dictionary(pa.int8(), pa.string())),
            ("resolution", pa.dictionary(pa.int8(), pa.string())),
            ("images", pa.int64()),
            ("doc_type", pa.dictionary(pa.int8(), pa.string())),
            ("pages", pa.int64()),
        ]
    )


def _categorical(
    indices: np.ndarray, values: tuple[str, ...], mask: np.ndarray | None, index_type: pa.DataType
) -> pa.DictionaryArray:
    arr = pa.array(indices.astype(np.int64), type=index_type, mask=mask)
    return pa.DictionaryArray.from_arrays(arr, pa.array(values, pa.string()))


def _chunk(
    rng: np.random.Generator,
    first: int,
    rows: int,
    seed: int,
    width: int,
    names: pa.Array,
    weights: np.ndarray,
    day_weights: np.ndarray,
    hour_weights: np.ndarray,
    start_micros: int,
) -> pa.Table:
    index = np.arange(first, first + rows, dtype=np.int64)
    ids = pc.utf8_lpad(pc.cast(pa.array(index), pa.string()), width=width, padding="0")
    event_id = pc.binary_join_element_wise(f"evt-{seed}-", ids, "")
    customer = rng.choice(len(weights), size=rows, p=weights).astype(np.int32)
    kind = rng.choice(len(EVENT_KINDS), size=rows, p=EVENT_KIND_WEIGHTS).astype(np.int8)
    day = rng.choice(len(day_weights), size=rows, p=day_weights)
    hour = rng.choice(24, size=rows, p=hour_weights)
    micros = (
        start_micros
        + day * _MICROS_PER_DAY
        + hour * _MICROS_PER_HOUR
        + rng.integers(0, _MICROS_PER_HOUR, size=rows)
    )
    is_llm = kind == 0
    is_image = kind == 1
    is_summary = kind == 2
    llm_model = rng.choice(3, size=rows, p=LLM_MODEL_WEIGHTS)
    image_model = rng.integers(0, 2, size=rows)
    model = np.where(is_llm, llm_model, 3 + image_model)
    input_tokens = np.rint(rng.lognormal(mean=6.5, sigma=1.1, size=rows)).astype(np.int64) + 1
    output_tokens = np.rint(rng.lognormal(mean=5.0, sigma=0.9, size=rows)).astype(np.int64) + 1
    workload = rng.choice(2, size=rows, p=WORKLOAD_WEIGHTS)
    resolution = rng.integers(0, 2, size=rows)
    images = rng.integers(1, 5, size=rows)
    doc_type = rng.choice(3, size=rows, p=DOC_TYPE_WEIGHTS)
    pages = rng.geometric(0.15, size=rows).astype(np.int64)
    return pa.table(
        {
            "event_id": event_id,
            "customer_id": pa.DictionaryArray.from_arrays(pa.array(customer), names),
            "event_name": _categorical(kind, EVENT_KINDS, None, pa.int8()),
            "timestamp": pa.array(micros, pa.timestamp("us")),
            "model": _categorical(model, LLM_MODELS + IMAGE_MODELS, is_summary, pa.int8()),
            "input_tokens": pa.array(input_tokens, mask=~is_llm),
            "output_tokens": pa.array(output_tokens, mask=~is_llm),
            "workload": _categorical(workload, WORKLOADS, ~is_llm, pa.int8()),
            "resolution": _categorical(resolution, RESOLUTIONS, ~is_image, pa.int8()),
            "images": pa.array(images.astype(np.int64), mask=~is_image),
            "doc_type": _categorical(doc_type, DOC_TYPES, ~is_summary, pa.int8()),
            "pages": pa.array(pages, mask=~is_summary),
        },
        schema=_schema(),
    )
