"""`pricing-lab formula check`: validity, caret errors, dimensions and event coverage."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from pricing_lab.cli import main


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture()
def run_cli(capsys: pytest.CaptureFixture[str]):
    """The command line in this process (fast); one test below runs it as a real process."""

    def run(*args: str) -> Run:
        status = main(list(args))
        captured = capsys.readouterr()
        return Run(status, captured.out, captured.err)

    return run


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("events")
    path = folder / "events.parquet"
    con = duckdb.connect()
    con.sql(
        "COPY (SELECT * FROM (VALUES"
        " ('e1', 100, 10, NULL, '{\"extra\": 3}'),"
        " ('e2', NULL, 5, 1.5, '{}'),"
        " ('e3', 7, 20, 2.0, '{\"extra\": \"4\"}'),"
        " ('e4', 1, 100, 0.5, NULL)"
        ") t(event_id, input_tokens, output_tokens, ratio, properties))"
        f" TO '{path}' (FORMAT parquet)"
    )
    con.sql(f"COPY (SELECT * FROM '{path}') TO '{folder / 'events.csv'}'")
    con.sql(f"COPY (SELECT * FROM '{path}') TO '{folder / 'events.ndjson'}' (FORMAT json)")
    return path


def test_valid_formula_prints_canonical_text_and_dimensions(run_cli) -> None:
    result = run_cli("formula", "check", "(1.1 * b) + (2 * A)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["valid formula: 1.1 * b + 2 * A", "dimensions: A, b"]


def test_parse_error_is_exit_2_with_caret_and_no_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pricing_lab", "formula", "check", "1.1 * tokens +\n  nope(x)"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr == (
        "pricing-lab: line 2, column 3: unknown function 'nope' (known: abs, ceil, coalesce, "
        "floor, if, max, min, round)\n    nope(x)\n    ^\n"
    )


def test_parse_error_as_json(run_cli) -> None:
    result = run_cli("formula", "check", "a +", "--json")
    assert result.returncode == 2
    report = json.loads(result.stdout)
    assert report["valid"] is False
    assert report["error"].startswith("line 1, column 4: unexpected end of formula")


def test_coverage_against_an_event_file(run_cli, events: Path) -> None:
    result = run_cli(
        "formula",
        "check",
        "input_tokens - output_tokens + extra * 0 + gone",
        "--events",
        str(events),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["events"]
    assert report["rows"] == 4
    assert report["dimensions"]["input_tokens"] == {
        "column": "column",
        "null_events": 1,
        "null_share": 0.25,
    }
    assert report["dimensions"]["output_tokens"]["null_events"] == 0
    assert report["dimensions"]["extra"] == {
        "column": "properties",
        "null_events": 2,
        "null_share": 0.5,
    }
    assert report["dimensions"]["gone"]["null_share"] == 1.0
    # Every event has a null dimension (`gone`): all four would be rejected.
    assert report["rejected"] == {
        "formula_null": 4,
        "formula_negative": 0,
        "cost_out_of_range": 0,
        "total": 4,
    }


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".ndjson"])
def test_rejections_count_null_and_negative_costs(run_cli, events: Path, suffix: str) -> None:
    path = events.with_suffix(suffix)
    result = run_cli("formula", "check", "input_tokens - output_tokens", "--events", str(path))
    assert result.returncode == 0, result.stderr
    # e1: 90, e2: null, e3: -13, e4: -99
    assert "rejected: 3 of 4 events (1 null cost, 2 negative cost)" in result.stdout
    assert "input_tokens: null in 1 of 4 events (25.00%)" in result.stdout


def test_missing_or_unknown_event_file_is_exit_2(run_cli, tmp_path: Path) -> None:
    result = run_cli("formula", "check", "a", "--events", str(tmp_path / "nope.parquet"))
    assert result.returncode == 2
    assert "no such event file" in result.stderr
    other = tmp_path / "events.tsv"  # not an event file `simulate` reads either
    other.write_text("x")
    result = run_cli("formula", "check", "a", "--events", str(other))
    assert result.returncode == 2
    assert "unknown event file type" in result.stderr


def test_coverage_matches_dimensions_case_insensitively(run_cli, tmp_path: Path) -> None:
    # As in `simulate` (docs/events.md): `Input_Tokens` reads the column `input_tokens`, and `x`
    # reads the `properties` key `X`; a malformed `properties` value is null, not a failed check.
    path = tmp_path / "events.csv"
    path.write_text(
        'event_id,input_tokens,properties\ne1,10,"{""X"": 3}"\ne2,,"{""x"": 4}"\ne3,5,not json\n'
    )
    result = run_cli("formula", "check", "Input_Tokens + x", "--events", str(path), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["events"]
    assert report["dimensions"]["Input_Tokens"]["null_events"] == 1
    assert report["dimensions"]["x"] == {
        "column": "properties",
        "null_events": 1,
        "null_share": 0.333333,
    }
    assert report["rejected"]["total"] == 2 and report["rejected"]["formula_null"] == 2


def test_a_value_beyond_the_decimal_range_rejects_its_event_not_the_check(
    run_cli, tmp_path: Path
) -> None:
    path = tmp_path / "events.csv"
    path.write_text("event_id,x\ne1,90000000000000000000000000\ne2,5\ne3,-1\n")
    result = run_cli("formula", "check", "x * 100000", "--events", str(path))
    assert result.returncode == 0, result.stderr
    assert (
        "rejected: 2 of 3 events (0 null cost, 1 negative cost, "
        "1 out of the exact decimal range)" in result.stdout
    )
