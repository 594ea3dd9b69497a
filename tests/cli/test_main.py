"""The command line's contract: help for every command, bad input is exit 2 with one message."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pricing_lab", *args], capture_output=True, text=True, check=False
    )


def run_script(script: str) -> subprocess.CompletedProcess[str]:
    """`script` run by a fresh interpreter (what a user's shell starts)."""
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=120
    )


def test_help_lists_commands() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    assert "COMMAND" in result.stdout


def test_version(capsys) -> None:
    from pricing_lab.cli import build_parser

    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out == "pricing-lab 0.1.0\n"  # pyproject.toml's version


def test_unknown_command_is_exit_2_without_traceback() -> None:
    result = run_cli("no-such-command")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "invalid choice" in result.stderr


def test_output_cut_off_by_the_reader_is_no_internal_error() -> None:
    # `pricing-lab … --json | head -c 100`: the reader closes the pipe before the output ends.
    script = (
        "import sys\n"
        "from pricing_lab.cli import main\n"
        "sys.stdout.close = lambda: None\n"
        "def cut(*args): raise BrokenPipeError(32, 'Broken pipe')\n"
        "sys.stdout.write = cut\n"
        "raise SystemExit(main(['formula', 'check', 'a + b']))\n"
    )
    result = run_script(script)
    assert result.returncode == 141
    assert result.stderr == ""


def test_activity_send_refuses_a_timeout_that_is_not_a_number_as_bad_input(
    tmp_path, monkeypatch, capsys
) -> None:
    from pricing_lab.cli import main

    monkeypatch.setenv("HOOK_SECRET", "s")
    command = ["activity", "send", str(tmp_path), "--to", "http://127.0.0.1:9/", "--secret-env"]
    assert main([*command, "HOOK_SECRET", "--timeout", "nan", "--rate", "inf"]) == 2
    assert capsys.readouterr().err == "pricing-lab: --rate, --timeout: must be a positive number\n"


def test_an_output_place_that_cannot_be_made_is_one_message_exit_2(tmp_path, capsys) -> None:
    from pricing_lab.cli import main

    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    out = str(a_file / "events.csv")  # a folder would have to be made where a file is
    assert main(["events", "generate", "--out", out, "--events", "10"]) == 2
    assert capsys.readouterr().err == f"pricing-lab: {a_file}: exists and is not a folder\n"


def test_an_output_file_duckdb_cannot_create_is_one_message_exit_2(tmp_path, capsys) -> None:
    # /proc takes no new files: DuckDB's COPY fails with the OS's reason, a place the user named.
    from pricing_lab.cli import main
    from tests.simulation.test_simulate import random_events, write_inputs

    paths = write_inputs(tmp_path, random_events(5, seed=1))
    arguments = ["usage", "report", "--catalog", paths["catalog"], "--events", paths["events"]]
    assert main([*map(str, arguments), "--out", "/proc/usage.parquet", "--quiet"]) == 2
    assert capsys.readouterr().err == (
        'pricing-lab: IO Error: Cannot open file "/proc/usage.parquet": No such file or directory\n'
    )


@pytest.mark.parametrize(
    "args",
    [
        ["simulate", "--until", "9999-12-01"],
        ["compare", "--start", "1899-12-31T23:59:59Z"],
        ["forecast", "--as-of", "2200-01-01T00:00:01"],
    ],
)
def test_instants_outside_the_supported_range_are_bad_input(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # As event times (docs/events.md): a horizon to year 9999 would replay millennia of periods.
    from pricing_lab.cli import build_parser

    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args([*args, "--catalog", "c.yaml", "--events", "e.csv"])
    assert stopped.value.code == 2
    assert "outside the supported range 1900-01-01 to 2200-01-01" in capsys.readouterr().err


def test_ctrl_c_while_the_commands_load_is_one_line_and_exit_130() -> None:
    # A real SIGINT, delivered while the command modules are being imported (before any command
    # runs): the shell's status for an interrupt, no traceback.
    script = (
        "import os, signal\n"
        "from pricing_lab import cli\n"
        "load = cli.importlib.import_module\n"
        "def interrupted(name, *args):\n"
        "    if name == 'pricing_lab.cli.simulate_cmd':\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    return load(name, *args)\n"
        "cli.importlib.import_module = interrupted\n"
        "raise SystemExit(cli.main(['simulate', '--help']))\n"
    )
    result = run_script(script)
    assert (result.returncode, result.stderr) == (130, "pricing-lab: interrupted\n")


def test_ctrl_c_during_simulate_is_exit_130_and_leaves_no_output_folder(tmp_path) -> None:
    import signal

    from pricing_lab.events.synthetic import generate_events
    from tests.simulation.test_simulate import CATALOG_YAML

    events, out = tmp_path / "events.parquet", tmp_path / "out"
    generate_events(events, events=100_000, customers=20)
    (tmp_path / "catalog.yaml").write_text(CATALOG_YAML)
    command = [sys.executable, "-m", "pricing_lab", "simulate", "--catalog"]
    command += [str(tmp_path / "catalog.yaml"), "--events", str(events), "--out", str(out)]
    running = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert running.stderr is not None
    # Progress comes in whole lines when stderr is no terminal: the events are read, and the
    # costing and replay (seconds for 100k events) have begun.
    assert running.stderr.readline().startswith("events: 100,000 read")
    running.send_signal(signal.SIGINT)
    _, rest = running.communicate(timeout=120)
    assert (running.returncode, rest.splitlines()[-1:]) == (130, ["pricing-lab: interrupted"]), rest
    assert "Traceback" not in rest
    assert not out.exists()


@pytest.mark.parametrize("command", ["simulate", "forecast"])
def test_customers_naming_what_the_catalog_lacks_are_refused_under_their_file_first(
    tmp_path, capsys, command: str
) -> None:
    from pricing_lab.cli import main
    from tests.simulation.test_simulate import CATALOG_YAML

    (tmp_path / "catalog.yaml").write_text(CATALOG_YAML)
    customers = tmp_path / "customers.yaml"
    customers.write_text(
        "customers:\n  - id: acme\n    subscriptions: [{plan: gold, start: 2024-01-01}]\n"
    )
    arguments = [
        command,
        "--catalog",
        str(tmp_path / "catalog.yaml"),
        "--customers",
        str(customers),
    ]
    # The events file does not exist: the customers are checked before any event is read.
    arguments += ["--events", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "out")]
    assert main([*arguments, *(["--as-of", "2024-02-01"] if command == "forecast" else [])]) == 2
    assert capsys.readouterr().err == (
        f"pricing-lab: {customers}: 1 problem:\n"
        "  subscriptions[acme:0].plan_id: unknown plan 'gold'\n"
    )


def test_ctrl_c_that_a_library_raises_as_its_own_error_is_still_an_interrupt() -> None:
    # DuckDB stops a query on SIGINT and raises RuntimeError("Query interrupted"), not
    # KeyboardInterrupt (seen in `simulate`, at random moments): the command still ends as
    # interrupted, not as an internal error. The handler below does what DuckDB does, at once.
    script = (
        "import os, signal\n"
        "import pricing_lab.cli.simulate_cmd as command\n"
        "from pricing_lab.cli import main\n"
        "def run(args):\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "        signal.pause()\n"
        "    except KeyboardInterrupt:\n"
        "        raise RuntimeError('Query interrupted') from None\n"
        "command.run = run\n"
        "raise SystemExit(main(['simulate', '--catalog', 'c', '--events', 'e', '--out', 'o']))\n"
    )
    result = run_script(script)
    assert (result.returncode, result.stderr) == (130, "pricing-lab: interrupted\n")


@pytest.mark.parametrize("command", ["simulate", "forecast"])
def test_a_catalog_without_currencies_is_bad_input_before_the_events(
    tmp_path, capsys, command: str
) -> None:
    from pricing_lab.cli import main

    (tmp_path / "catalog.yaml").write_text("")  # an empty file, or the wrong one
    arguments = [command, "--catalog", str(tmp_path / "catalog.yaml"), "--out", str(tmp_path / "o")]
    arguments += ["--events", str(tmp_path / "missing.csv")]  # not read: the catalog is refused
    assert main([*arguments, *(["--as-of", "2024-02-01"] if command == "forecast" else [])]) == 2
    assert capsys.readouterr().err == (
        f"pricing-lab: {tmp_path / 'catalog.yaml'}: the catalog has no credit currency, so a "
        "replay has nothing to burn (docs/catalog.md)\n"
    )
