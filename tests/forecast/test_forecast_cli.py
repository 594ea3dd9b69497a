"""`pricing-lab forecast`: the table, the readable summary, --json, --backtest, errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest

from pricing_lab.cli import main
from tests.forecast.helpers import CATALOG, DAY, START
from tests.simulation.test_simulate import files_limited_to

CUSTOMERS = """
customers:
  - id: poor
    grants:
      - {currency: CR, amount: 1450, type: PROMOTIONAL, effective_at: 2024-01-01}
  - id: rich
    top_ups:
      - {currency: CR, amount: 100000, cost_basis: 0.001, at: 2024-01-01}
"""


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    rows = [
        (f"{c}-{d:03d}", c, "call", f"{(START + d * DAY):%Y-%m-%d} 12:00:00")
        for c in ("poor", "rich")
        for d in range(30)
    ]
    events = tmp_path / "events.csv"
    pl.DataFrame(rows, schema=["event_id", "customer_id", "event_name", "timestamp"],
                 orient="row").write_csv(events)  # fmt: skip
    (tmp_path / "catalog.yaml").write_text(CATALOG)
    (tmp_path / "customers.yaml").write_text(CUSTOMERS)
    return {
        "events": events,
        "catalog": tmp_path / "catalog.yaml",
        "customers": tmp_path / "customers.yaml",
    }


def _args(files: dict[str, Path], *extra: str) -> list[str]:
    return [
        "forecast", "--catalog", str(files["catalog"]), "--events", str(files["events"]),
        "--customers", str(files["customers"]), *extra,
    ]  # fmt: skip


def test_forecast_writes_the_table_and_names_who_runs_out_first(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(_args(files, "--as-of", "2024-01-11", "--horizon", "30d", "--out", str(out))) == 0
    text, err = capsys.readouterr()
    assert "poor" in text and "P(run out) 100%" in text and "2024-01-15" in text
    # A long command: its steps on stderr, each with its time (README, "Command line").
    assert (
        "replaying the history before 2024-01-11 00:00 and forecasting 1,000 paths: done in" in err
    )
    table = pl.read_parquet(out / "forecast.parquet")
    assert table["customer_id"].to_list() == ["poor", "rich"]
    assert table["run_out_probability"].to_list() == [1.0, 0.0]


def test_forecast_json_and_csv(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "f.csv"
    args = _args(files, "--as-of", "2024-01-11", "--out", str(out), "--json", "--quiet")
    assert main(args) == 0
    printed = capsys.readouterr()
    assert printed.err == ""  # --quiet: no progress
    summary = json.loads(printed.out)
    assert summary["customer_currencies"] == 2
    assert [r["customer_id"] for r in summary["first_to_run_out"]] == ["poor"]
    # Numbers are JSON numbers, as in every --json: 1,450 credits less 10 calls of 100 by T.
    (poor,) = summary["first_to_run_out"]
    assert poor["balance"] == 450 and poor["run_out_probability"] == 1
    assert pl.read_csv(out).height == 2


def test_backtest_prints_calibration_and_errors(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bt"
    args = _args(files, "--backtest", "--horizon", "14d", "--cut", "2024-01-11", "--out", str(out))
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "calibration" in text and "90.0%" in text
    assert pl.read_parquet(out / "backtest.parquet").height == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--as-of", "2024-01-11", "--paths", "10"], "at least 1000"),
        (["--horizon", "30d"], "--as-of is required"),
        (["--as-of", "2024-01-11", "--horizon", "soon"], "horizon"),
        (["--as-of", "2024-01-11", "--cuts", "3"], "--cuts and --cut need --backtest"),
        (["--backtest", "--top", "5"], "--top is for a forecast's summary, not --backtest"),
    ],
)
def test_bad_input_is_one_message_and_exit_2(
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    assert main(_args(files, *extra, "--out", str(tmp_path / "x"))) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


SCENARIOS = """
scenarios:
  - name: generous
    grant_multipliers: {PROMOTIONAL: 10}
"""


def test_compare_forecast_horizon_without_forecast_is_refused(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "scenarios.yaml").write_text(SCENARIOS)
    args = [
        "compare", "--catalog", str(files["catalog"]), "--events", str(files["events"]),
        "--customers", str(files["customers"]), "--scenarios", str(tmp_path / "scenarios.yaml"),
        "--out", str(tmp_path / "cmp"), "--forecast-horizon", "14d", "--quiet",
    ]  # fmt: skip
    assert main(args) == 2  # a horizon alone would silently forecast nothing
    assert capsys.readouterr().err == "pricing-lab: --forecast-horizon needs --forecast\n"
    assert not (tmp_path / "cmp").exists()


def test_compare_forecasts_every_scenario_into_the_report(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # base: `poor` has 450 credits on 11 January and burns 100 a day: out on the 15th at noon;
    # `generous` gives it ten times the promotion (13,500 credits left): never within 30 days.
    (tmp_path / "scenarios.yaml").write_text(SCENARIOS)
    out = tmp_path / "cmp"
    args = [
        "compare", "--catalog", str(files["catalog"]), "--events", str(files["events"]),
        "--customers", str(files["customers"]), "--scenarios", str(tmp_path / "scenarios.yaml"),
        "--out", str(out), "--forecast", "2024-01-11", "--quiet",
    ]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "run-out forecast over 30d" in text  # the default horizon
    assert "more likely than not to run out" in text
    # per scenario: customer-currencies forecast, too little history, more likely than not
    assert re.search(r"^base\s+2\s+0\s+1$", text, re.MULTILINE), text
    assert re.search(r"^generous\s+2\s+0\s+0$", text, re.MULTILINE), text
    assert re.search(r"^base\s+.*%\s+\d+\s+\d+$", text, re.MULTILINE), text  # margin share
    table = pl.read_parquet(out / "forecast.parquet")
    poor = table.filter(pl.col("customer_id") == "poor")
    assert poor.select("scenario", "run_out_probability").rows() == [
        ("base", 1.0),
        ("generous", 0.0),
    ]
    assert f"{poor['run_out_p50'][0]:%Y-%m-%d %H}" == "2024-01-15 12"
    html = (out / "report.html").read_text()
    section = html[html.index("Run-out forecast") :]
    assert "customers who may run out per scenario: base 1, generous 0" in section


def test_compare_forecast_without_an_instant_starts_after_the_last_event(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "scenarios.yaml").write_text(SCENARIOS)
    out = tmp_path / "cmp"
    args = [
        "compare", "--catalog", str(files["catalog"]), "--events", str(files["events"]),
        "--customers", str(files["customers"]), "--scenarios", str(tmp_path / "scenarios.yaml"),
        "--out", str(out), "--forecast", "--json", "--quiet",
    ]  # fmt: skip
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [r["scenario"] for r in summary["forecast"]] == ["base", "generous"]
    as_of = pl.read_parquet(out / "forecast.parquet")["as_of"].unique().to_list()
    assert [f"{t:%Y-%m-%d %H:%M:%S.%f}" for t in as_of] == ["2024-01-30 12:00:00.000001"]


def test_rollover_before_the_forecast_instant_is_in_its_balance_and_inside_its_horizon_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 300 credits a month from 2023-12-05, 50% rolling over; one 1-credit call a day from
    # 2023-12-20 to 2024-01-10. At 2024-01-05: 300 - 16 = 284 left, 150 roll over (the cap), 134
    # expire; the rollover grant is drawn first, 6 calls to T: 144 + 300 = 444 credits at T.
    # Inside the horizon (to Feb 10), 25 calls to Feb 5 leave 119 in the rollover grant, which
    # expires (a rollover grant never rolls over), and 300 in the period's grant: 150 roll over,
    # 150 expire. Expected expired: 119 + 150 = 269.
    catalog = CATALOG.replace("per_unit: 100", "per_unit: 1").replace(
        "cadence: monthly}", "cadence: monthly, rollover: {max_percent: 50}}"
    )
    (tmp_path / "catalog.yaml").write_text(catalog)
    (tmp_path / "customers.yaml").write_text(
        "customers:\n  - id: sub\n    subscriptions:\n"
        "      - {subscription_id: s1, plan: basic, start: 2023-12-05}\n"
    )
    first = START - 12 * DAY
    days = [first + d * DAY for d in range(22)]
    rows = [(f"e{n:03d}", "sub", "call", f"{day:%Y-%m-%d} 12:00:00") for n, day in enumerate(days)]
    events = tmp_path / "events.csv"
    pl.DataFrame(rows, schema=["event_id", "customer_id", "event_name", "timestamp"],
                 orient="row").write_csv(events)  # fmt: skip
    out = tmp_path / "out"
    args = [
        "forecast", "--catalog", str(tmp_path / "catalog.yaml"), "--events", str(events),
        "--customers", str(tmp_path / "customers.yaml"), "--as-of", "2024-01-11",
        "--horizon", "30d", "--out", str(out),
    ]  # fmt: skip
    assert main(args) == 0
    assert "rollover" not in capsys.readouterr().err  # it is forecast: nothing to warn about
    table = pl.read_parquet(out / "forecast.parquet")
    assert [str(b) for b in table["balance"]] == ["444.00"]
    assert [str(e) for e in table["expected_expired"]] == ["269.00"]
    assert main([*args, "--json"]) == 0
    assert "rollover_not_forecast" not in json.loads(capsys.readouterr().out)


def test_top_zero_does_not_claim_that_nobody_runs_out(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _args(files, "--as-of", "2024-01-11", "--top", "0", "--out", str(tmp_path / "x"))
    assert main(args) == 2  # an empty list by request would read as "nobody runs out"
    assert "--top must be at least 1" in capsys.readouterr().err


def test_forecast_reports_and_writes_every_rejected_row_with_its_reason(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two bad rows beside the 60 good ones: a duplicate id and a customer not in the list.
    with files["events"].open("a") as events:
        events.write(
            "poor-000,poor,call,2024-01-02 12:00:00\nx-1,stranger,call,2024-01-02 12:00:00\n"
        )
    out = tmp_path / "f.parquet"
    assert main(_args(files, "--as-of", "2024-01-11", "--out", str(out), "--quiet")) == 0
    text = capsys.readouterr().out
    assert "rejected: 2 of 62 rows" in text and "unknown_customer: 1 (e.g. x-1)" in text
    rejected = pl.read_parquet(tmp_path / "f_rejected.parquet")
    assert rejected.select("event_id", "reason").sort("reason").rows() == [
        ("poor-000", "duplicate_event_id"),
        ("x-1", "unknown_customer"),
    ]
    strict = _args(files, "--as-of", "2024-01-11", "--out", str(out), "--quiet", "--strict")
    assert main([*strict, "--json"]) == 2  # for schedulers, as simulate's
    summary = json.loads(capsys.readouterr().out)
    assert summary["rejections"]["rejected"] == 2 and summary["events_rejected"] == 2


def test_a_formula_reading_a_column_the_events_lack_is_refused(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files["catalog"].write_text(
        CATALOG.replace("mode: per_unit, per_unit: 100}", "mode: formula, formula: 2 * tokns}", 1)
    )
    assert main(_args(files, "--as-of", "2024-01-11", "--out", str(tmp_path / "f"))) == 2
    assert "tokns" in capsys.readouterr().err  # named, as simulate names it, not 60 null costs


def test_a_forecast_whose_rejected_rows_cannot_be_written_leaves_both_earlier_files(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The forecast and its rejected rows are one result: a run that cannot write the second (a
    # full disk; here a file-size limit the small forecast fits in) leaves the earlier pair.
    with files["events"].open("a") as events:
        events.writelines(f"x-{i},stranger,call,2024-01-02 12:00:00\n" for i in range(3000))
    out = tmp_path / "out"
    assert main(_args(files, "--as-of", "2024-01-11", "--out", str(out), "--quiet")) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    limit = 6_144
    assert len(before["forecast.parquet"]) < limit < len(before["rejected_events.parquet"])
    capsys.readouterr()

    with files_limited_to(limit):
        status = main(_args(files, "--as-of", "2024-01-21", "--out", str(out), "--quiet"))

    assert status == 1
    # one readable line naming what went wrong, not an internal error
    error = capsys.readouterr().err
    assert error.startswith(f"pricing-lab: {out / 'rejected_events.parquet'}: could not be written")
    assert error.count("\n") == 1 and "internal error" not in error
    # the forecast as of 11 January and its rejected rows, byte for byte, and no other file
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
