"""`pricing-lab init` writes starter files that `simulate` and `compare` run as they are;
`pricing-lab events generate` writes synthetic events."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from pricing_lab.cli import main


def test_init_writes_commented_starter_files_that_run_as_they_are(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = tmp_path / "lab"
    assert main(["init", str(lab)]) == 0
    for name in ("catalog.yaml", "customers.yaml", "scenarios.yaml"):
        text = (lab / name).read_text(encoding="utf-8")
        assert text.startswith("# Starter"), name  # commented for the analyst who edits it
    assert "pricing-lab compare" in capsys.readouterr().out  # the next steps

    inputs = [
        "--catalog", str(lab / "catalog.yaml"), "--events", str(lab / "events.csv"),
        "--customers", str(lab / "customers.yaml"), "--quiet",
    ]  # fmt: skip
    assert main(["simulate", *inputs, "--out", str(lab / "results"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["events"]["read"] == 709 and summary["events"]["rejected"] == 0
    assert summary["currencies"][0]["consumed"] > 0

    out = lab / "comparison"
    scenarios = ["--scenarios", str(lab / "scenarios.yaml")]
    assert main(["compare", *inputs, *scenarios, "--out", str(out), "--json"]) == 0
    headline = {row["scenario"]: row for row in json.loads(capsys.readouterr().out)["scenarios"]}
    assert list(headline) == ["base", "chat_x1.2", "bigger_free", "strict", "pro_rollover"]
    assert headline["strict"]["events_denied"] > 0  # the block scenario denies events
    assert headline["bigger_free"]["no_longer_run_out"] > 0
    assert headline["base"]["rolled_over"] == 0 < headline["pro_rollover"]["rolled_over"]
    assert (out / "report.html").exists()


def test_init_never_overwrites_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", str(tmp_path)]) == 0
    (tmp_path / "catalog.yaml").write_text("# mine\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["init", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "already has catalog.yaml" in error and "--force" in error
    assert (tmp_path / "catalog.yaml").read_text(encoding="utf-8") == "# mine\n"
    assert main(["init", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "catalog.yaml").read_text(encoding="utf-8").startswith("# Starter")


def test_events_generate_writes_the_same_events_in_any_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["events", "generate", "--events", "500", "--customers", "7", "--days", "10"]
    assert main([*common, "--out", str(tmp_path / "e.parquet"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["events"] == 500 and report["customers"] == 7
    assert main([*common, "--out", str(tmp_path / "e.csv")]) == 0
    assert "wrote 500 synthetic events of 7 customers" in capsys.readouterr().out
    parquet = pl.read_parquet(tmp_path / "e.parquet")
    csv = pl.read_csv(tmp_path / "e.csv")
    assert parquet.height == csv.height == 500
    assert parquet["event_id"].to_list() == csv["event_id"].to_list()
    assert parquet["customer_id"].n_unique() <= 7
    assert main([*common, "--out", str(tmp_path / "e.xlsx")]) == 2
    assert "must end in .parquet" in capsys.readouterr().err


def test_events_generate_refuses_a_negative_seed_as_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["events", "generate", "--out", str(tmp_path / "e.csv"), "--seed", "-1"])
    assert exit_.value.code == 2
    assert "argument --seed: not a whole number: '-1'" in capsys.readouterr().err
    assert not (tmp_path / "e.csv").exists()


@pytest.mark.parametrize(("start", "days"), [("9999-12-31", "30"), ("2199-12-15", "30")])
def test_events_generate_refuses_days_beyond_the_range_events_may_have(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], start: str, days: str
) -> None:
    # 30 days from 9999-12-31 reach year 10000; from 2199-12-15, past 2200-01-01: every event
    # would be rejected as bad_timestamp by simulate.
    out = tmp_path / "e.csv"
    assert main(["events", "generate", "--out", str(out), "--start", start, "--days", days]) == 2
    assert capsys.readouterr().err == (
        "pricing-lab: --start and --days: the events must lie from 1900-01-01 to 2200-01-01, "
        f"the range events may have; got 30 days from {start}\n"
    )
    assert not out.exists()
