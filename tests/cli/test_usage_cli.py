"""`pricing-lab usage report`: writes the report file, prints JSON, bad input is exit 2."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tests.conftest import EXAMPLES


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pricing_lab", *args], capture_output=True, text=True, check=False
    )


def write_events(path: Path) -> Path:
    path.write_text(
        "event_id,customer_id,event_name,timestamp,model,input_tokens,output_tokens,doc_type\n"
        "e1,c1,llm.request,2024-01-31 10:00:00,gpt-4o,10,100,\n"
        "e2,c1,llm.request,2024-02-29 10:00:00,gpt-4o,10,250,\n"
        "e3,c1,summary.created,2024-02-01 10:00:00,,,,email\n"
        "e3,c1,summary.created,2024-02-01 10:00:00,,,,email\n"
        "e4,c2,llm.request,not-a-time,gpt-4o,1,1,\n"
    )
    return path


def test_usage_report_writes_parquet_and_json_summary(tmp_path: Path) -> None:
    events = write_events(tmp_path / "events.csv")
    subs = tmp_path / "subs.csv"
    subs.write_text("customer_id,plan_id,start,end\nc1,pro,2024-01-31 00:00:00,\n")
    out = tmp_path / "report.parquet"
    result = run_cli(
        "usage", "report", "--catalog", str(EXAMPLES / "ai_product.yaml"), "--events",
        str(events), "--subscriptions", str(subs), "--period", "billing", "--out", str(out),
        "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["events"]["rows_read"] == 5
    assert summary["events"]["rejected_by_reason"] == {
        "bad_timestamp": 1,
        "duplicate_event_id": 1,
    }
    rows = duckdb.sql(
        f"SELECT feature_id, period_start::VARCHAR, period_end::VARCHAR, reset_reason, "
        f"usage::VARCHAR, billable_usage::VARCHAR FROM '{out}' ORDER BY 1, 2"
    ).fetchall()
    assert rows == [
        ("llm_chat", "2024-01-31 00:00:00", "2024-02-29 00:00:00", "subscription_start",
         "100.000000000000", "1"),
        ("llm_chat", "2024-02-29 00:00:00", "2024-03-31 00:00:00", "period_start",
         "250.000000000000", "1"),
        ("summary_emails", "2024-01-31 00:00:00", "2024-02-29 00:00:00", "subscription_start",
         "1.000000000000", "1"),
    ]  # fmt: skip
    assert summary["rows"] == 3


def test_usage_report_csv_output(tmp_path: Path) -> None:
    events = write_events(tmp_path / "events.csv")
    out = tmp_path / "report.csv"
    result = run_cli(
        "usage", "report", "--catalog", str(EXAMPLES / "ai_product.yaml"), "--events",
        str(events), "--period", "month", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert out.read_text().splitlines()[0].startswith("customer_id,feature_id,plan_id")
    assert "1 rejected" not in result.stdout and "2 rejected" in result.stdout


def test_usage_report_bad_input_is_exit_2_without_traceback(tmp_path: Path) -> None:
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("event_id,customer_id,event_name,timestamp\na,b,c,2024-01-01,extra\n")
    result = run_cli(
        "usage", "report", "--catalog", str(EXAMPLES / "ai_product.yaml"), "--events",
        str(ragged), "--out", str(tmp_path / "r.parquet"),
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "ragged row" in result.stderr and "line 2" in result.stderr
    missing = run_cli(
        "usage", "report", "--catalog", str(tmp_path / "none.yaml"), "--events", str(ragged),
        "--out", str(tmp_path / "r.txt"),
    )  # fmt: skip
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_usage_help() -> None:
    result = run_cli("usage", "report", "--help")
    assert result.returncode == 0 and "--period" in result.stdout


def test_usage_report_shows_its_steps_unless_quiet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pricing_lab.cli import main

    events = write_events(tmp_path / "events.csv")
    args = [
        "usage", "report", "--catalog", str(EXAMPLES / "ai_product.yaml"), "--events",
        str(events), "--period", "month", "--out", str(tmp_path / "report.parquet"),
    ]  # fmt: skip
    assert main(args) == 0
    assert "aggregating usage per month: done in" in capsys.readouterr().err
    assert main([*args, "--quiet"]) == 0  # like every long command (README)
    assert capsys.readouterr().err == ""


def test_a_report_whose_rejected_rows_cannot_be_written_leaves_both_earlier_files(
    tmp_path: Path,
) -> None:
    # The report and its rejected rows are one result: a run that cannot write the second (a
    # full disk; here a file-size limit the small report fits in) leaves the earlier pair.
    events = tmp_path / "events.csv"
    events.write_text(
        "event_id,customer_id,event_name,timestamp,model,input_tokens,output_tokens\n"
        + "".join(f"e{i},c1,llm.request,2024-01-{1 + i:02d},gpt-4o,10,100\n" for i in range(20))
        + "".join(f"bad{i},c2,llm.request,not-a-time-{i},gpt-4o,1,1\n" for i in range(3000))
    )
    out = tmp_path / "out" / "usage.parquet"
    args = ["usage", "report", "--quiet", "--catalog", str(EXAMPLES / "ai_product.yaml"),
            "--events", str(events), "--out", str(out)]  # fmt: skip
    assert run_cli(*args, "--period", "day").returncode == 0
    before = {p.name: p.read_bytes() for p in out.parent.iterdir()}
    limit = 16_384
    assert len(before["usage.parquet"]) < limit < len(before["usage_rejected.parquet"])

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    failed = subprocess.run(
        [sys.executable, "-m", "pricing_lab", *args, "--period", "month"],
        capture_output=True, text=True, preexec_fn=small_files, timeout=120, check=False,
    )  # fmt: skip

    assert failed.returncode == 1, failed.stderr
    assert failed.stderr.splitlines()[-1].endswith("File too large")
    assert str(out.with_name("usage_rejected.parquet")) in failed.stderr  # names the file
    # the day report and its rejected rows, byte for byte, and no other file
    assert {p.name: p.read_bytes() for p in out.parent.iterdir()} == before
