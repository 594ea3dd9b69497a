"""Bucketed replays and comparisons on Ray in local mode (`ray.init(num_cpus=2)`, started once
for this module): the same bytes as a plain replay, a failed bucket retried, the CLI."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from pricing_lab.cli import main
from pricing_lab.scale import RayExecutor, simulate_in_buckets
from pricing_lab.scale.merge import merge_buckets
from pricing_lab.scale.run import run_buckets, write_buckets
from pricing_lab.scale.storage import Store
from pricing_lab.simulation.customers import customers_from_mapping
from pricing_lab.simulation.scenarios import compare, load_scenarios
from pricing_lab.simulation.simulate import simulate
from tests.scale.helpers import FailingOnce, attempts, differing_files, tie_inputs
from tests.simulation.helpers import catalog, load_events
from tests.simulation.test_scenarios import EVENTS, SCENARIOS_YAML, customers_doc
from tests.simulation.test_simulate import random_events, write_inputs

ray = pytest.importorskip("ray")  # the `ray` extra; installed by `make test`

# Opt-in: on this project's 2-core development machine Ray's local workers failed to register
# (the node started, tasks then waited for workers forever), so these tests run only when asked:
# `PRICING_LAB_RAY=1 pytest tests/scale/test_ray.py` (docs/scale-out.md). Until they have passed
# somewhere, Ray support is not counted as tested.
pytestmark = pytest.mark.skipif(
    os.environ.get("PRICING_LAB_RAY") != "1",
    reason="Ray tests are opt-in: set PRICING_LAB_RAY=1 (see docs/scale-out.md)",
)


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    # Ray gives its local node's agent processes 30 s to start (fixed in Ray): on a machine
    # loaded by other jobs they can miss it. Tried twice, then these tests are skipped
    # with that reason; any other failure fails them.
    for attempt in range(2):
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            break
        except Exception as exc:
            ray.shutdown()
            if "timed out during startup" not in str(exc):
                raise
            if attempt == 1:
                pytest.skip(f"Ray's local node did not start (machine overloaded): {exc}")
    # Ray workers get the driver's current folder on their path: they import `tests` too.
    yield
    ray.shutdown()


def test_ray_writes_the_bytes_of_a_plain_replay_for_1_3_and_16_buckets(tmp_path: Path) -> None:
    con, report, customers = tie_inputs()
    whole = simulate(con, catalog(), customers, ingest=report, enforcement="block")
    whole.write(tmp_path / "whole")
    executor = RayExecutor()
    for buckets in (1, 3, 16):
        out = tmp_path / f"ray{buckets}"
        simulate_in_buckets(
            con,
            catalog(),
            customers,
            out_dir=out,
            executor=executor,
            buckets=buckets,
            ingest=report,
            enforcement="block",
        )
        assert differing_files(tmp_path / "whole", out) == [], buckets
    executor.close()
    assert ray.is_initialized()  # a Ray the executor did not start stays up


def test_a_bucket_failing_once_on_ray_is_retried_and_overwrites(tmp_path: Path) -> None:
    con, report, customers = tie_inputs()
    simulate(con, catalog(), customers, ingest=report).write(tmp_path / "whole")
    store = Store.at(tmp_path / "job")
    job = write_buckets(con, catalog(), customers, store=store, buckets=3, ingest=report)
    markers = tmp_path / "markers"
    markers.mkdir()
    run_buckets(job, RayExecutor(), replay=FailingOnce(str(markers), bucket=2))
    assert [attempts(markers, b) for b in range(3)] == [1, 1, 2]
    merge_buckets(
        store, job.manifest, tmp_path / "out", rejected_events=job.rejected_events, ingest=report
    )
    assert differing_files(tmp_path / "whole", tmp_path / "out") == []


def test_a_comparisons_scenarios_on_ray_give_the_files_of_one_in_process(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIOS_YAML)
    base, scenarios = load_scenarios(path)
    con, _ = load_events(EVENTS)
    inputs = (con, catalog(), customers_from_mapping(customers_doc()), scenarios)
    here = compare(*inputs, base=base, out_dir=tmp_path / "here")
    on_ray = compare(
        *inputs,
        base=base,
        out_dir=tmp_path / "ray",
        executor=RayExecutor(),
        bucket_options={"buckets": 3},
    )
    assert on_ray.customers.equals(here.customers)
    assert on_ray.features.equals(here.features)
    assert on_ray.totals.equals(here.totals)
    names = sorted(p.name for p in (tmp_path / "here" / "scenarios").iterdir())
    assert len(names) == len(set(here.results)) >= 3
    for name in names:
        folder = Path("scenarios") / name
        assert differing_files(tmp_path / "here" / folder, tmp_path / "ray" / folder) == [], name
    assert on_ray.result(base).read_ledger().equals(here.result(base).read_ledger())


def test_the_cli_on_ray_writes_the_files_of_a_plain_simulate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = write_inputs(tmp_path / "in", random_events(300, seed=5), more=True)
    common = [
        "simulate", "--catalog", paths["catalog"], "--events", paths["events"],
        "--customers", paths["customers"], "--enforcement", "block",
    ]  # fmt: skip
    assert main([str(a) for a in [*common, "--out", tmp_path / "plain", "--partitions", 1]]) == 0
    status = main(
        [str(a) for a in [*common, "--out", tmp_path / "ray", "--executor", "ray", "--buckets", 4]]
    )
    err = capsys.readouterr().err
    assert status == 0, err
    assert "buckets: 4/4 done" in err
    assert differing_files(tmp_path / "plain", tmp_path / "ray") == []
    assert pl.read_parquet(tmp_path / "ray" / "ledger.parquet").height > 0
