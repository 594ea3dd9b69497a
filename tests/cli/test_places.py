"""Where `simulate` and `compare` read and write: `--out` a folder (a file in its place is bad
input, exit 2); `--events` a file or a registered event source `NAME:SPEC`."""

from __future__ import annotations

from pathlib import Path

import pytest

from pricing_lab.cli import main
from tests.simulation.test_simulate import random_events, write_inputs


@pytest.mark.parametrize("command", ["simulate", "compare"])
@pytest.mark.parametrize("out", ["a-file", "a-file/results"])
def test_an_output_folder_where_a_file_is_exits_2_with_one_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, out: str
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    arguments = [command, "--catalog", "c.yaml", "--events", "e.csv", "--out", str(tmp_path / out)]
    if command == "compare":
        arguments += ["--scenarios", "s.yaml"]
    with pytest.raises(SystemExit) as stopped:
        main(arguments)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'a-file'} is a file, not a folder" in err
    assert "internal error" not in err and "Traceback" not in err


def test_events_of_an_unknown_source_name_the_sources_there_are(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = write_inputs(tmp_path, random_events(5, seed=1))
    status = main(
        ["simulate", "--catalog", str(paths["catalog"]), "--events", "snowflak:DB.S.T",
         "--out", str(tmp_path / "out")]
    )  # fmt: skip
    assert status == 2
    err = capsys.readouterr().err
    assert "snowflak:DB.S.T: no such events file, nor an event source 'snowflak'" in err
    assert "(event sources: snowflake)" in err  # registered by the connectors package


def test_compare_where_no_customer_has_a_margin_writes_its_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Blocked without grants, every event is denied: no customer has revenue, breakage or cost,
    # so the margin tables are empty, and the report still shows its (empty) margin section.
    paths = write_inputs(tmp_path, random_events(20, seed=1))
    scenarios = tmp_path / "s.yaml"
    scenarios.write_text(
        "scenarios:\n  - name: today\n  - name: chat_x2\n    rate_multipliers: {chat: 2}\n"
    )
    arguments = ["compare", "--catalog", paths["catalog"], "--events", paths["events"]]
    arguments += ["--scenarios", scenarios, "--enforcement", "block", "--out", tmp_path / "out"]
    assert main([*map(str, arguments), "--quiet"]) == 0
    assert "No customer has a negative margin" in (tmp_path / "out" / "report.html").read_text()
