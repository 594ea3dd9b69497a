"""`pricing-lab simulate|compare --executor …`: the files of the plain commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from pricing_lab.cli import main
from tests.scale.helpers import differing_files
from tests.simulation.helpers import events_frame
from tests.simulation.test_scenarios import CATALOG_YAML, EVENTS, SCENARIOS_YAML, customers_doc
from tests.simulation.test_simulate import random_events, write_inputs


def run(*args: object) -> int:
    return main([str(a) for a in args])


def test_simulate_on_a_process_pool_writes_the_files_of_a_plain_simulate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = write_inputs(tmp_path / "in", random_events(400, seed=11), more=True)
    common = [
        "simulate", "--catalog", paths["catalog"], "--events", paths["events"],
        "--customers", paths["customers"],
    ]  # fmt: skip
    assert run(*common, "--out", tmp_path / "plain", "--partitions", 1, "--quiet") == 0
    capsys.readouterr()
    status = run(*common, "--out", tmp_path / "pool", "--executor", "processes", "--buckets", 3)
    err = capsys.readouterr().err
    assert status == 0, err
    # Progress with elapsed time, as whole lines when stderr is not a terminal.
    assert "replaying in customer buckets: 3/3 buckets done · " in err and "\r" not in err
    assert differing_files(tmp_path / "plain", tmp_path / "pool") == []
    status = run(*common, "--out", tmp_path / "auto", "--executor", "local", "--quiet")
    assert status == 0
    assert differing_files(tmp_path / "plain", tmp_path / "auto") == []


def test_compare_in_buckets_writes_the_files_of_a_plain_compare(tmp_path: Path) -> None:
    import json

    (tmp_path / "catalog.yaml").write_text(CATALOG_YAML)
    (tmp_path / "scenarios.yaml").write_text(SCENARIOS_YAML)
    events_frame(EVENTS).write_parquet(tmp_path / "events.parquet")
    customers = customers_doc()["customers"]
    (tmp_path / "customers.yaml").write_text(
        "customers:\n" + "".join(f"  - {json.dumps(c)}\n" for c in customers)  # type: ignore[attr-defined]
    )
    common = [
        "compare", "--catalog", tmp_path / "catalog.yaml", "--events", tmp_path / "events.parquet",
        "--customers", tmp_path / "customers.yaml", "--scenarios", tmp_path / "scenarios.yaml",
        "--quiet",
    ]  # fmt: skip
    assert run(*common, "--out", tmp_path / "plain") == 0
    assert run(*common, "--out", tmp_path / "local", "--executor", "local", "--buckets", 2) == 0
    plain = sorted(p.relative_to(tmp_path / "plain") for p in (tmp_path / "plain").rglob("*.*"))
    local = sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*.*"))
    assert plain == local
    for relative in plain:
        if relative.suffix in (".parquet", ".json"):
            left, right = tmp_path / "plain" / relative, tmp_path / "local" / relative
            assert left.read_bytes() == right.read_bytes(), relative


def simulate_a_few_events(tmp_path: Path, *options: object) -> int:
    """`pricing-lab simulate` of five events into `tmp_path/out` with `options`."""
    paths = write_inputs(tmp_path, random_events(5, seed=1))
    return run(
        "simulate", "--catalog", paths["catalog"], "--events", paths["events"],
        "--out", tmp_path / "out", *options,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--buckets", "0", "not a number of buckets"),
        ("--buckets", "many", "not a number of buckets"),
        ("--executor", "spark", "invalid choice"),
        ("--task-memory", "-1", "not a memory size"),
    ],
)
def test_bad_scale_options_exit_2_with_one_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, message: str
) -> None:
    with pytest.raises(SystemExit) as stopped:
        simulate_a_few_events(tmp_path, "--executor", "local", option, value)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--buckets", "3"], "--buckets needs --executor"),
        (
            ["--executor", "processes", "--ray-address", "auto"],
            "--ray-address needs --executor ray",
        ),
        # alone, it names the one executor it works with (not "local, processes or ray")
        (["--ray-address", "auto"], "pricing-lab: --ray-address needs --executor ray\n"),
    ],
)
def test_bucket_options_without_their_executor_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str], message: str
) -> None:
    assert simulate_a_few_events(tmp_path, *options) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_ray_address_where_nothing_listens_exits_2_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket
    import time

    pytest.importorskip("ray")
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    began = time.monotonic()
    status = simulate_a_few_events(
        tmp_path, "--executor", "ray", "--ray-address", address, "--quiet"
    )
    assert status == 2
    err = capsys.readouterr().err
    assert f"no Ray cluster reachable at {address}" in err and "Traceback" not in err
    assert time.monotonic() - began < 60  # ray.init alone would retry for many minutes


@pytest.mark.parametrize("place", ["a-file/work", "bogus://bucket/work"])
def test_a_work_dir_that_cannot_be_used_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], place: str
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    work_dir = place if "://" in place else str(tmp_path / place)
    status = simulate_a_few_events(
        tmp_path, "--executor", "local", "--work-dir", work_dir, "--quiet"
    )
    assert status == 2
    err = capsys.readouterr().err
    assert f"work directory {work_dir}/base: cannot write there" in err
    assert "internal error" not in err


def test_ctrl_c_on_a_process_pool_is_one_line_and_exit_130(tmp_path: Path) -> None:
    # A terminal's Ctrl-C reaches the whole process group, pool workers included: the command
    # says 'interrupted' once, and no worker prints a KeyboardInterrupt traceback.
    import os
    import signal
    import subprocess
    import sys
    import time

    paths = write_inputs(tmp_path, random_events(40, seed=2))
    command = [sys.executable, "-m", "pricing_lab", "simulate", "--executor", "processes"]
    command += ["--buckets", "2", "--out", str(tmp_path / "out")]
    command += ["--catalog", str(paths["catalog"]), "--events", str(paths["events"])]

    def own_group() -> None:  # a process group as a shell's job, Ctrl-C as a terminal sends it
        os.setsid()
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    running = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        preexec_fn=own_group,
    )  # fmt: skip
    assert running.stderr is not None
    while "reading and checking the events: done" not in running.stderr.readline():
        pass  # progress lines (stderr is no terminal); then the workers start and import
    time.sleep(0.8)  # the workers are starting: a replay of 40 events in buckets takes seconds
    os.killpg(running.pid, signal.SIGINT)
    _, rest = running.communicate(timeout=120)
    assert (running.returncode, rest.splitlines()[-1:]) == (130, ["pricing-lab: interrupted"])
    assert "Traceback" not in rest and "KeyboardInterrupt" not in rest
    assert not (tmp_path / "out").exists()
