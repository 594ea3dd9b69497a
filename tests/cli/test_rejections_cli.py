"""What a run did not use is on screen, in --json and behind --max-rejected / --strict; input it
cannot use is refused before it starts, with the place and a fix (issue 19)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from pricing_lab.cli import main
from tests.conftest import EXAMPLES

CATALOG = str(EXAMPLES / "ai_product.yaml")
HEADER = "event_id,customer_id,event_name,timestamp,model,input_tokens,output_tokens\n"


def events(tmp_path: Path, rows: str) -> str:
    path = tmp_path / "events.csv"
    path.write_text(HEADER + rows)
    return str(path)


def customers(tmp_path: Path, text: str = "customers:\n  - id: acme\n") -> str:
    path = tmp_path / "customers.yaml"
    path.write_text(text)
    return str(path)


ROWS = (
    "e1,acme,llm.request,2024-01-01,gpt-4o,10,20\n"
    "e2,ACME,llm.request,2024-01-02,gpt-4o,10,20\n"  # a known customer in another case
    "e3,acme,llm.request,2024-01-03,gpt-4o,10,\n"  # no output tokens: the formula is null
    "e4,acme,llm.request,9999-12-31,gpt-4o,10,20\n"  # outside the supported range
)


def simulate(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "simulate", "--catalog", CATALOG, "--events", events(tmp_path, ROWS), "--customers",
        customers(tmp_path), "--out", str(tmp_path / "out"), "--quiet", "--partitions", "1",
        *extra,
    ]  # fmt: skip


def test_simulate_reports_rejections_by_reason_with_examples_and_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(simulate(tmp_path, "--json")) == 0
    report = json.loads(capsys.readouterr().out)["rejections"]
    assert report["rows_read"] == 4 and report["rejected"] == 3
    assert report["by_reason"] == {
        "bad_timestamp": {"count": 1, "examples": ["e4"]},
        "formula_null": {"count": 1, "examples": ["e3"]},
        "unknown_customer": {"count": 1, "examples": ["e2"]},
    }
    assert report["case_mismatches"] == {"events": 1, "customers": {"ACME": "acme"}}
    assert report["file"] == str(tmp_path / "out" / "rejected_events.parquet")
    rejected = pl.read_parquet(report["file"]).sort("source_row")
    assert rejected["source_row"].to_list() == [2, 3, 4]  # every row leads back to its input row
    assert main(simulate(tmp_path)) == 0
    text = capsys.readouterr().out
    assert "rejected: 3 of 4 rows (75.00%)" in text
    assert "unknown_customer: 1 (e.g. e2)" in text
    assert "'ACME' → 'acme'" in text


@pytest.mark.parametrize(
    ("gate", "status"),
    [(("--strict",), 2), (("--max-rejected", "50%"), 2), (("--max-rejected", "0.8"), 0)],
)
def test_max_rejected_fails_the_run_with_exit_2_after_writing_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], gate: tuple[str, ...], status: int
) -> None:
    assert main(simulate(tmp_path, *gate)) == status
    assert (tmp_path / "out" / "rejected_events.parquet").exists()
    if status:
        assert "too many rejected rows" in capsys.readouterr().err


def test_a_formula_dimension_the_events_lack_is_refused_with_a_suggestion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        (EXAMPLES / "ai_product.yaml")
        .read_text()
        .replace("10 * output_tokens", "10 * output_tokns")
    )
    args = ["simulate", "--catalog", str(catalog), "--events", events(tmp_path, ROWS)]
    assert main([*args, "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "default_credit_rates[llm_chat].formula: the events have no dimension" in err
    assert "did you mean 'output_tokens'" in err


def test_usage_report_takes_customers_and_writes_its_rejected_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "usage.csv"
    args = [
        "usage", "report", "--catalog", CATALOG, "--events", events(tmp_path, ROWS),
        "--customers", customers(tmp_path), "--out", str(out), "--json",
    ]  # fmt: skip
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rejections"]["events"]["by_reason"]["unknown_customer"]["count"] == 1
    rejected = pl.read_csv(tmp_path / "usage_rejected.csv")
    assert sorted(rejected["reason"].to_list()) == ["bad_timestamp", "unknown_customer"]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("customers:\n  - id: acme\n    subscriptions:\n      - {plan: pro, start: 2024-13-01}\n",
         "customers[0].subscriptions[0].start: expected an ISO timestamp, got '2024-13-01'"),
        ("customers:\n  - id: acme\n    grants:\n      - {currency: credits, amount: 5, "
         "effective_at: 2024-01-01, priority: 1e999999999}\n", "customers[0].grants[0].priority"),
        ("customers:\n  - id: acme\n    subscriptions:\n      - {plan: pro, start: 2024-01-01, "
         "addons: 7}\n", "customers[0].subscriptions[0].addons"),
    ],
)  # fmt: skip
def test_bad_customer_files_name_the_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, where: str
) -> None:
    args = simulate(tmp_path)
    args[args.index("--customers") + 1] = customers(tmp_path, text)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert where in err and "internal error" not in err


def test_unusable_scenario_and_customer_files_are_one_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    latin1 = tmp_path / "scenarios.yaml"
    latin1.write_bytes("scenarios:\n  - name: caf\xe9\n".encode("latin-1"))
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    fake_db = tmp_path / "customers.duckdb"
    fake_db.write_text("not a database")
    base = ["--catalog", CATALOG, "--events", events(tmp_path, ROWS), "--out", str(tmp_path / "o")]
    for args, message in (
        (["compare", *base, "--scenarios", str(latin1)], "not UTF-8 text (line 2"),
        (["compare", *base, "--scenarios", str(folder)], "is a directory"),
        (["simulate", *base, "--customers", str(fake_db)], "not a DuckDB database"),
    ):
        assert main([*args, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert message in err and "internal error" not in err, err


def test_a_share_out_of_range_is_exit_2_with_a_plain_percent_sign(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(simulate(tmp_path, "--max-rejected", "150%"))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "a share is between 0 and 1 (0% to 100%): '150%'" in err
