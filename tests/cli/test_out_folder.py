"""`--out` is written whole or not at all: a run that fails while writing (a full disk, here a
file-size limit) leaves the earlier run's files as they were, and no folder where none was."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

from tests.simulation.test_simulate import cli, random_events, write_inputs

# Below the ledger's size (~10 KB for these events): writing it fails with "File too large",
# as on a full disk. Python ignores SIGXFSZ, so the write fails instead of killing the process.
FILE_SIZE_LIMIT = 4096


def _with_small_files(*arguments: object) -> subprocess.CompletedProcess:
    """`pricing-lab ARGUMENTS` in a fresh process that cannot write files past the limit."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))

    command = [sys.executable, "-m", "pricing_lab", *map(str, arguments)]
    return subprocess.run(
        command, capture_output=True, text=True, preexec_fn=limit, timeout=120, check=False
    )


def _simulate_with_small_files(
    paths: dict[str, Path], out: Path, *more: str
) -> subprocess.CompletedProcess:
    return _with_small_files(
        "simulate", "--quiet", "--scenario", "again", "--catalog", paths["catalog"],
        "--events", paths["events"], "--out", out, "--customers", paths["customers"], *more,
    )  # fmt: skip


def test_a_run_failing_while_writing_leaves_the_earlier_outputs_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = write_inputs(tmp_path / "in", random_events(300, seed=3))
    out = tmp_path / "out"
    args = ["--catalog", paths["catalog"], "--events", paths["events"], "--out", out]
    assert cli("simulate", "--quiet", *args, "--customers", paths["customers"]) == 0
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert before["ledger.parquet"].__len__() > FILE_SIZE_LIMIT  # the second run cannot write it

    # In one partition: no DuckDB scratch file, so the first file too large is the ledger.
    failed = _simulate_with_small_files(paths, out, "--partitions", "1")

    assert failed.returncode == 1, failed.stderr
    [line] = failed.stderr.strip().splitlines()  # one message naming --out, no traceback
    assert line.startswith(f"pricing-lab: {out}: ") and line.endswith("File too large")
    # Every file of the first run, byte for byte, and nothing else (no staging folder).
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_full_scratch_disk_is_one_message_and_leaves_no_output_folder(tmp_path: Path) -> None:
    paths = write_inputs(tmp_path / "in", random_events(300, seed=3))
    out = tmp_path / "out"

    # Partitions (the default) spill the events to a DuckDB scratch file: it cannot grow.
    failed = _simulate_with_small_files(paths, out)

    assert failed.returncode == 1, failed.stderr
    [line] = failed.stderr.strip().splitlines()
    assert line.startswith("pricing-lab: IO Error: Could not write file")
    assert line.endswith("File too large")
    assert "internal error" not in line
    assert not out.exists()


def test_an_output_duckdb_cannot_finish_writing_is_one_line_naming_it(tmp_path: Path) -> None:
    # DuckDB's COPY reports an asynchronous write's OS error inside JSON: the line says it plainly.
    paths = write_inputs(tmp_path / "in", random_events(300, seed=3))
    out = tmp_path / "usage.parquet"
    failed = _with_small_files(
        "usage", "report", "--quiet", "--catalog", paths["catalog"], "--events", paths["events"],
        "--period", "day", "--out", out,
    )  # fmt: skip
    assert failed.returncode == 1, failed.stderr
    assert failed.stderr.splitlines()[-1:] == [
        f'pricing-lab: IO Error: Could not write file "{out}": File too large'
    ]
    assert not out.exists()  # DuckDB removes what it began
