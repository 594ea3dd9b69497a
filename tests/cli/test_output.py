"""What commands print: numbers as JSON numbers, readable summaries, progress a person or a log
can follow."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from pricing_lab.cli.output import json_text, with_numbers
from pricing_lab.progress import ProgressDisplay, duration
from tests.conftest import EXAMPLES

SAMPLE_EVENTS = "sample_events.parquet"


def test_json_numbers_are_exact_numbers() -> None:
    text = json_text({"money": Decimal("26.96739"), "n": 3, "at": None, "xs": [Decimal("-0.10")]})
    assert json.loads(text, parse_float=Decimal) == {
        "money": Decimal("26.96739"),
        "n": 3,
        "at": None,
        "xs": [Decimal("-0.10")],
    }
    summary = {"scenario": "2", "currencies": [{"currency_id": "7", "consumed": "12.50"}]}
    assert with_numbers(summary) == {
        "scenario": "2",  # a name stays text even when it looks like a number
        "currencies": [{"currency_id": "7", "consumed": Decimal("12.50")}],
    }


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_redraws_the_elapsed_time_while_a_phase_is_silent() -> None:
    screen = FakeTerminal()
    with ProgressDisplay(screen) as progress:
        progress.phase("costing the events")
        time.sleep(2.3)  # the engine says nothing for a while
        progress.phase("replaying", unit="customers")
        progress.update(16, 32)
    drawn = screen.getvalue()
    # the status line was redrawn at least every second while costing said nothing
    assert drawn.count("\r\x1b[Kcosting the events · ") >= 3
    assert "replaying: 16/32 customers · " in drawn
    assert "costing the events: done in 2." in drawn


def test_progress_in_a_log_is_whole_lines() -> None:
    log = io.StringIO()
    with ProgressDisplay(log, line_every=0.0) as progress:
        progress.phase("replaying", unit="customers")
        for done in (8, 16, 32):
            progress.update(done, 32)
        progress.note("events: 3 read")
    text = log.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    assert lines[0] == "replaying …"
    assert [line.split(" · ")[0] for line in lines[1:4]] == [
        "replaying: 8/32 customers",
        "replaying: 16/32 customers",
        "replaying: 32/32 customers",
    ]
    assert lines[4] == "events: 3 read" and lines[5].startswith("replaying: done in ")
    assert duration(3.25) == "3.2 s" and duration(125) == "2 min 05 s"


@pytest.fixture(scope="module")
def sample_events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import duckdb

    from pricing_lab.events.real import load_sample_events

    path = tmp_path_factory.mktemp("events") / SAMPLE_EVENTS
    con = duckdb.connect()
    load_sample_events(con)
    con.sql(f"COPY events TO '{path}' (FORMAT PARQUET)")
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pricing_lab", *args], capture_output=True, text=True, check=False
    )


def test_simulate_and_compare_print_tables_and_json_numbers(
    sample_events: Path, tmp_path: Path
) -> None:
    common = [
        "--catalog",
        str(EXAMPLES / "ai_product.yaml"),
        "--events",
        str(sample_events),
        "--customers",
        str(EXAMPLES / "customers.yaml"),
    ]
    shown = run_cli("simulate", *common, "--out", str(tmp_path / "sim"))
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "credits consumed    190,484.74" in out and "credit revenue      426.97 USD" in out
    assert "enterprise" in out and "…" not in out  # every figure shown, nothing elided
    assert "replaying and checking the ledger: done in" in shown.stderr

    as_json = run_cli("simulate", *common, "--out", str(tmp_path / "sim2"), "--json", "--quiet")
    assert as_json.returncode == 0 and as_json.stderr == ""
    summary = json.loads(as_json.stdout, parse_float=Decimal)
    assert summary["currencies"][0]["consumed"] == Decimal("190484.74")
    assert summary["events"]["read"] == 40216 and summary["ledger_entries"] > 40216

    compared = run_cli(
        "compare",
        *common,
        "--scenarios",
        str(EXAMPLES / "scenarios.yaml"),
        "--out",
        str(tmp_path / "cmp"),
        "--json",
        "--quiet",
    )
    assert compared.returncode == 0, compared.stderr
    result = json.loads(compared.stdout, parse_float=Decimal)
    base, scenario = result["scenarios"]
    assert (base["customers_run_out"], scenario["customers_run_out"]) == (9, 11)
    assert scenario["newly_run_out"] == 2 and scenario["consumed_change"] == Decimal("5215.31")
    assert result["totals"][0]["customers"] == 50  # counts are numbers, not text
