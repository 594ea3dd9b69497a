"""What commands print: numbers as JSON numbers, readable summaries, progress a person or a log
can follow."""

from __future__ import annotations

import io
import json
import time
from decimal import Decimal
from pathlib import Path

import pytest

from pricing_lab.cli import main
from pricing_lab.cli.output import json_text, with_numbers
from pricing_lab.progress import ProgressDisplay, duration


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
    assert [line.split(" · ")[0] for line in lines[:3]] == [
        "replaying: 8/32 customers",
        "replaying: 16/32 customers",
        "replaying: 32/32 customers",
    ]
    assert lines[3] == "events: 3 read" and lines[4].startswith("replaying: done in ")
    assert len(lines) == 5


def test_a_failing_command_shows_its_error_alone() -> None:
    for stream in (io.StringIO(), FakeTerminal()):
        with pytest.raises(ValueError), ProgressDisplay(stream) as progress:
            progress.phase("reading the events")
            raise ValueError("no such file")
        assert "done" not in stream.getvalue()
        assert stream.getvalue().endswith(("", "\r\x1b[K"))
    assert duration(3.25) == "3.2 s" and duration(125) == "2 min 05 s"


def test_simulate_and_compare_print_tables_and_json_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", str(tmp_path / "lab")]) == 0
    lab = tmp_path / "lab"
    common = [
        "--catalog", str(lab / "catalog.yaml"), "--events", str(lab / "events.csv"),
        "--customers", str(lab / "customers.yaml"),
    ]  # fmt: skip
    capsys.readouterr()
    assert main(["simulate", *common, "--out", str(tmp_path / "sim")]) == 0
    shown = capsys.readouterr()
    figures = [line.split("  ")[0] for line in shown.out.splitlines()[5:15]]
    assert figures == [
        "customers",
        "credits granted",
        "credits consumed",
        "credits expired",
        "credits voided",
        "credits rolled over",
        "final balance",
        "overdraft debt",
        "credit revenue",
        "breakage",
    ]
    assert "80.00 USD" in shown.out  # acme's 100,000-credit top-up at 0.0008 USD
    assert "per plan:" in shown.out and "…" not in shown.out  # nothing elided
    assert "replaying and checking the ledger: done in" in shown.err

    assert main(["simulate", *common, "--out", str(tmp_path / "s2"), "--json", "--quiet"]) == 0
    as_json = capsys.readouterr()
    assert as_json.err == ""
    summary = json.loads(as_json.out, parse_float=Decimal)
    assert summary["currencies"][0]["credit_revenue"] == Decimal("80")
    assert isinstance(summary["currencies"][0]["consumed"], Decimal)  # a number, not text
    assert summary["events"]["read"] == 709

    scenarios = ["--scenarios", str(lab / "scenarios.yaml")]
    out = ["--out", str(tmp_path / "cmp"), "--json", "--quiet"]
    assert main(["compare", *common, *scenarios, *out]) == 0
    result = json.loads(capsys.readouterr().out, parse_float=Decimal)
    rows = {row["scenario"]: row for row in result["scenarios"]}
    assert rows["base"]["consumed_change"] is None  # no change against itself
    assert rows["chat_x1.2"]["consumed_change"] > 0
    assert isinstance(rows["strict"]["events_denied"], int) and rows["strict"]["events_denied"] > 0
    assert result["totals"][0]["customers"] == 4  # counts are numbers, not text
