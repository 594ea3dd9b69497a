"""Property-based fuzz of every input file the CLI reads: never a traceback, nothing lost.

Hypothesis writes malformed catalogs, customer files (YAML and table folders), scenario files and
event files in every format (Parquet, CSV, NDJSON), runs the real command line in process
(`pricing_lab.cli.main`) and asserts: exit status 0 or 2, no traceback and no "internal error",
and for event files, accepted + rejected = rows read. The default budget is about 140 files (the
same ones each run, in well under a minute); `PRICING_LAB_LONG=1 pytest tests/fuzz` runs twenty
times as many (about 2,800), freshly random.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import string
import tempfile
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pricing_lab.cli import main
from tests.conftest import EXAMPLES

SCALE = 20 if os.environ.get("PRICING_LAB_LONG") == "1" else 1
CATALOG = EXAMPLES / "ai_product.yaml"


def budget(examples: int) -> Any:
    return settings(
        max_examples=examples * SCALE,
        deadline=None,
        derandomize=SCALE == 1,
        suppress_health_check=list(HealthCheck),
    )


def run(*args: str) -> tuple[int, str, str]:
    """The CLI in process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(list(args))
        except SystemExit as exc:  # argparse
            status = int(exc.code or 0)
    return status, out.getvalue(), err.getvalue()


def assert_clean(status: int, stderr: str) -> None:
    assert status in (0, 2), stderr
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr


# -- values a hostile file may hold ---------------------------------------------------------------

TIMES = [
    "2024-01-01T10:00:00Z", "2024-02-29 23:59:59.999999+01:00", "2024-13-01", "2024-02-30",
    "0001-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59.999999Z",
    "1899-12-31T23:59:59Z", "2199-12-31T23:59:59Z", "yesterday", "", " ", "\t", "1700000000",
    "2024-01-01T10:00:00 Europe/Paris", "infinity", "-infinity", "2024-01-01T25:00:00",
]  # fmt: skip
NUMBERS: list[Any] = [
    0, 1, -1, 10**30, 2**63 - 1, 2**64, -(2**63), 1e30, 1e308, 0.1, -0.0, 1.5e-12,
    float("nan"), float("inf"), Decimal("1" + "0" * 30), Decimal("0.0000000000001"),
]  # fmt: skip
texts = st.text(alphabet=string.printable + "éß\u00a0\u2028ΑΩ\x00\x1e", max_size=12)
scalars = st.one_of(
    st.none(), st.booleans(), st.sampled_from(NUMBERS), st.sampled_from(TIMES), texts,
    st.integers(min_value=-(2**70), max_value=2**70),
)  # fmt: skip
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=6,
)  # fmt: skip
ids = st.one_of(st.sampled_from(["acme", "ACME", "globex", "e1", "e1 ", ""]), texts, st.none())
names = st.sampled_from(["llm.request", "image.generated", "summary.created", "other", ""])
dimension_names = st.sampled_from(
    ["model", "Model", "input_tokens", "output_tokens", "OUTPUT_TOKENS", "images", "resolution",
     "doc_type", "pages", "source_row", "properties", "Event_ID", "x y", 'q"uote'],
)  # fmt: skip


@st.composite
def event_rows(draw: st.DrawFn) -> list[dict[str, Any]]:
    rows = []
    for _ in range(draw(st.integers(min_value=0, max_value=6))):
        row: dict[str, Any] = {
            "event_id": draw(st.one_of(st.sampled_from(["e1", "e2", "e3"]), ids)),
            "customer_id": draw(ids),
            "event_name": draw(st.one_of(names, st.none())),
            "timestamp": draw(st.one_of(st.sampled_from(TIMES), st.none())),
        }
        for _ in range(draw(st.integers(min_value=0, max_value=3))):
            row[draw(dimension_names)] = draw(values)
        if draw(st.booleans()):
            row["properties"] = draw(st.dictionaries(dimension_names, values, max_size=3))
        rows.append(row)
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return str(value)


def write_events(path: Path, rows: list[dict[str, Any]], fmt: str) -> int:
    """Write `rows` as `fmt`; returns the number of rows a reader must account for."""
    columns = list(dict.fromkeys(k for row in rows for k in row)) or ["event_id"]
    if fmt == "ndjson":
        lines = [json.dumps(row, default=str) for row in rows]
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        return len(rows)
    if fmt == "csv":
        import csv

        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            for row in rows:
                writer.writerow([_cell(row.get(c)) for c in columns])
        return len(rows)
    lowered: dict[str, str] = {}
    for column in columns:
        lowered.setdefault(column.lower(), column)
    data = {c: [_cell(row.get(c)) or None for row in rows] for c in lowered.values()}
    typed = {}
    for column, cells in data.items():
        numbers = [v for row in rows if isinstance(v := row.get(column), int | float)]
        if numbers and len(numbers) == len(rows) and all(isinstance(n, float) for n in numbers):
            typed[column] = pa.array(numbers, pa.float64())
        elif all(v is None for v in cells):
            typed[column] = pa.nulls(len(rows))
        else:
            typed[column] = pa.array(cells, pa.string())
    pq.write_table(
        pa.table(typed) if rows else pa.table({"event_id": pa.array([], pa.string())}), path
    )
    return len(rows)


@given(
    rows=event_rows(), fmt=st.sampled_from(["csv", "ndjson", "parquet"]), corrupt=st.integers(0, 9)
)
@budget(25)
def test_event_files_never_stop_a_run_and_every_row_is_counted(
    rows: list[dict[str, Any]], fmt: str, corrupt: int
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"events.{fmt}"
        written = write_events(path, rows, fmt)
        if corrupt == 0:  # a torn file: the whole file is refused, with its name
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2] + b"\xff\xfe\x00")
        out = Path(folder) / "out"
        status, stdout, stderr = run(
            "simulate", "--catalog", str(CATALOG), "--events", str(path), "--out", str(out),
            "--quiet", "--json", "--partitions", "1",
        )  # fmt: skip
        assert_clean(status, stderr)
        if status == 0:
            summary = json.loads(stdout)
            rejections = summary["rejections"]
            if corrupt != 0:
                assert rejections["rows_read"] == written
            assert summary["events"]["rejected"] == rejections["rejected"] <= written
        else:
            assert stderr.startswith("pricing-lab: ") and len(stderr.splitlines()) < 30, stderr


# -- YAML documents: a valid one, then broken in places -------------------------------------------


@st.composite
def mutated(draw: st.DrawFn, document: Any) -> str:
    """`document` with a few values replaced, keys dropped or added, as YAML text, sometimes
    with its text broken too."""
    doc = json.loads(json.dumps(document, default=str))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        node, path = doc, []
        while isinstance(node, dict | list) and node and draw(st.booleans()):
            key = draw(st.sampled_from(list(node) if isinstance(node, dict) else range(len(node))))
            path.append((node, key))
            node = node[key]
        if not path:
            continue
        parent, key = path[-1]
        action = draw(st.integers(0, 3))
        if action == 0 and isinstance(parent, dict):
            del parent[key]
        elif action == 1 and isinstance(parent, dict):
            parent[draw(texts)] = draw(values)
        else:
            parent[key] = draw(values)
    plain = json.loads(json.dumps(doc, default=str))  # Decimal values as their text
    text = yaml.safe_dump(plain, allow_unicode=True, sort_keys=False)
    breakage = draw(st.integers(0, 9))
    if breakage == 0:
        text = text[: len(text) // 2]
    elif breakage == 1:
        text = text.replace(":", draw(st.sampled_from([" ", ": [", ": &a *a", ":\t"])), 1)
    elif breakage == 2:
        text = text.replace("2024-01-01", draw(st.sampled_from(TIMES)))
    return text


CUSTOMERS = {
    "customers": [
        {
            "id": "acme",
            "subscriptions": [{"plan": "pro", "start": "2024-01-01", "addons": ["extra_credits"]}],
            "grants": [{"currency": "credits", "amount": 100, "effective_at": "2024-01-01",
                        "expires_at": "2024-02-01"}],
            "top_ups": [{"currency": "credits", "amount": 50, "cost_basis": 0.001,
                         "at": "2024-01-02"}],
            "auto_recharge": {"currency": "credits", "threshold": 10, "target": 100,
                              "monthly_spend_limit": 5, "grant_expiry": "1_month"},
        },
        {"id": "globex"},
    ]
}  # fmt: skip
SCENARIOS = {
    "base": "base",
    "scenarios": [
        {"name": "base"},
        {"name": "more", "rates": [{"feature": "llm_chat", "formula": "2 * output_tokens"}],
         "rate_multipliers": {"image_generation": 0.5}, "plan_credits": {"pro": 100},
         "grant_multipliers": {"PROMOTIONAL": 2}, "enforcement": "block",
         "auto_recharge": {"threshold": 1, "target": 10}},
    ],
}  # fmt: skip
EVENTS_CSV = (
    "event_id,customer_id,event_name,timestamp,model,input_tokens,output_tokens,images,"
    "resolution,doc_type,pages\n"
    "e1,acme,llm.request,2024-01-05T10:00:00Z,gpt-4o,100,200,,,,\n"
    "e2,globex,summary.created,2024-01-06T10:00:00Z,,,,,,email,3\n"
)


def events_file(folder: Path) -> Path:
    path = folder / "events.csv"
    path.write_text(EVENTS_CSV)
    return path


def run_on_sample(folder: Path, command: str, *extra: str) -> None:
    """`command` over the sample catalog and events with `extra` inputs: a clean outcome."""
    status, _, stderr = run(
        command, "--catalog", str(CATALOG), "--events", str(events_file(folder)),
        "--out", str(folder / "out"), "--quiet", *extra,
    )  # fmt: skip
    assert_clean(status, stderr)


def run_on_yaml(text: str, command: str, option: str, *extra: str) -> None:
    """`command` over the sample with `text` as the YAML file of `option`."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "input.yaml"
        path.write_text(text, encoding="utf-8")
        run_on_sample(Path(folder), command, option, str(path), *extra)


@given(text=mutated(yaml.safe_load(CATALOG.read_text())))
@budget(40)
def test_malformed_catalogs_are_one_clear_message(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "catalog.yaml"
        path.write_text(text, encoding="utf-8")
        status, _, stderr = run("catalog", "diff", str(path), "--db", str(Path(folder) / "c.db"))
        assert_clean(status, stderr)
        if status:
            assert str(path) in stderr


@given(text=mutated(CUSTOMERS))
@budget(20)
def test_malformed_customer_yaml_is_one_clear_message(text: str) -> None:
    run_on_yaml(text, "simulate", "--customers", "--partitions", "1")


TABLE_COLUMNS = {
    "subscriptions": ["customer_id", "plan_id", "start", "end", "addons"],
    "grants": ["grant_id", "customer_id", "currency_id", "amount", "type", "priority",
               "effective_at", "expires_at", "cost_basis", "voided_at", "source"],
    "auto_recharge": ["customer_id", "currency_id", "threshold", "target",
                      "monthly_spend_limit", "grant_expiry"],
}  # fmt: skip


@st.composite
def customer_tables(draw: st.DrawFn) -> dict[str, list[dict[str, Any]]]:
    tables = {}
    for name, columns in TABLE_COLUMNS.items():
        if draw(st.booleans()):
            picked = draw(st.lists(st.sampled_from([*columns, "junk"]), max_size=8, unique=True))
            tables[name] = [
                {c: draw(st.one_of(scalars, st.sampled_from(["pro", "credits", "acme"])))
                 for c in picked}
                for _ in range(draw(st.integers(min_value=0, max_value=3)))
            ]  # fmt: skip
    return tables


@given(tables=customer_tables(), fmt=st.sampled_from(["csv", "parquet"]))
@budget(20)
def test_malformed_customer_tables_are_one_clear_message(
    tables: dict[str, list[dict[str, Any]]], fmt: str
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        tables_dir = Path(folder) / "customers"
        tables_dir.mkdir()
        for name, rows in tables.items():
            write_events(tables_dir / f"{name}.{fmt}", rows, fmt)
        run_on_sample(Path(folder), "simulate", "--customers", str(tables_dir), "--partitions", "1")


@given(text=mutated(SCENARIOS))
@budget(6)
def test_malformed_scenario_files_are_one_clear_message(text: str) -> None:
    run_on_yaml(text, "compare", "--scenarios")


def test_unreadable_input_files_are_one_clear_message(tmp_path: Path) -> None:
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    events = events_file(tmp_path)
    out = str(tmp_path / "out")
    cases: Sequence[tuple[str, ...]] = [
        ("simulate", "--catalog", str(binary), "--events", str(events), "--out", out),
        ("simulate", "--catalog", str(folder), "--events", str(events), "--out", out),
        ("simulate", "--catalog", str(CATALOG), "--events", str(events), "--customers",
         str(binary), "--out", out),
        ("compare", "--catalog", str(CATALOG), "--events", str(events), "--scenarios",
         str(binary), "--out", out),
        ("compare", "--catalog", str(CATALOG), "--events", str(events), "--scenarios",
         str(folder), "--out", out),
        ("simulate", "--catalog", str(CATALOG), "--events", str(binary), "--out", out),
    ]  # fmt: skip
    for args in cases:
        status, _, stderr = run(*args, "--quiet")
        assert status == 2, (args, stderr)
        assert_clean(status, stderr)
