"""Bucketed replays and comparisons on Ray: a private local node (one per CPU, started once for
this module by `RayExecutor()`): the same bytes as a plain replay for 1, 3 and 16 buckets, a
failed bucket retried, a comparison's scenarios, the CLI."""

from __future__ import annotations

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


@pytest.fixture(scope="module")
def on_ray() -> Iterator[RayExecutor]:
    """One private local Ray node for the module (`RayExecutor()` starts it; ~20-30 s on a
    loaded 2-core machine), stopped at the end."""
    with RayExecutor() as executor:
        assert executor.parallelism >= 1  # starts the node and connects
        yield executor
    assert not ray.is_initialized()


def test_bucketed_replays_on_a_local_ray_node(
    on_ray: RayExecutor,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    subtests: pytest.Subtests,
) -> None:
    # One test with subtests, not four tests: the test runner's workers take tests one by one,
    # and each worker given one of four tests would start a Ray node of its own.
    for name in ("buckets", "retry", "compare", "cli"):
        (tmp_path / name).mkdir()
    with subtests.test("1, 3 and 16 buckets give a plain replay's bytes"):
        _bytes_of_a_plain_replay_for_1_3_and_16_buckets(on_ray, tmp_path / "buckets")
    with subtests.test("a bucket failing once is retried and overwrites"):
        _a_bucket_failing_once_is_retried_and_overwrites(on_ray, tmp_path / "retry")
    with subtests.test("a comparison's scenarios"):
        _a_comparisons_scenarios_give_the_files_of_one_in_process(on_ray, tmp_path / "compare")
    with subtests.test("the CLI"):
        _the_cli_writes_the_files_of_a_plain_simulate(on_ray, tmp_path / "cli", capsys)


def _bytes_of_a_plain_replay_for_1_3_and_16_buckets(on_ray: RayExecutor, tmp_path: Path) -> None:
    con, report, customers = tie_inputs()
    whole = simulate(con, catalog(), customers, ingest=report, enforcement="block")
    whole.write(tmp_path / "whole")
    executor = RayExecutor()  # uses the Ray this process is connected to
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


def _a_bucket_failing_once_is_retried_and_overwrites(on_ray: RayExecutor, tmp_path: Path) -> None:
    con, report, customers = tie_inputs()
    simulate(con, catalog(), customers, ingest=report).write(tmp_path / "whole")
    store = Store.at(tmp_path / "job")
    job = write_buckets(con, catalog(), customers, store=store, buckets=3, ingest=report)
    markers = tmp_path / "markers"
    markers.mkdir()
    run_buckets(job, on_ray, replay=FailingOnce(str(markers), bucket=2))
    assert [attempts(markers, b) for b in range(3)] == [1, 1, 2]
    merge_buckets(
        store, job.manifest, tmp_path / "out", rejected_events=job.rejected_events, ingest=report
    )
    assert differing_files(tmp_path / "whole", tmp_path / "out") == []


def _a_comparisons_scenarios_give_the_files_of_one_in_process(
    on_ray: RayExecutor, tmp_path: Path
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIOS_YAML)
    base, scenarios = load_scenarios(path)
    con, _ = load_events(EVENTS)
    inputs = (con, catalog(), customers_from_mapping(customers_doc()), scenarios)
    here = compare(*inputs, base=base, out_dir=tmp_path / "here")
    there = compare(
        *inputs,
        base=base,
        out_dir=tmp_path / "ray",
        executor=on_ray,
        bucket_options={"buckets": 3},
    )
    assert there.customers.equals(here.customers)
    assert there.features.equals(here.features)
    assert there.totals.equals(here.totals)
    names = sorted(p.name for p in (tmp_path / "here" / "scenarios").iterdir())
    assert len(names) == len(set(here.results)) >= 3
    for name in names:
        folder = Path("scenarios") / name
        assert differing_files(tmp_path / "here" / folder, tmp_path / "ray" / folder) == [], name
    assert there.result(base).read_ledger().equals(here.result(base).read_ledger())


def _the_cli_writes_the_files_of_a_plain_simulate(
    on_ray: RayExecutor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--executor ray` uses the Ray this process is connected to (`on_ray`'s node)."""
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
    assert "starting a local Ray node" in err  # its own step: a node takes seconds to start
    assert "replaying in customer buckets: 4/4 buckets done · " in err
    assert differing_files(tmp_path / "plain", tmp_path / "ray") == []
    assert pl.read_parquet(tmp_path / "ray" / "ledger.parquet").height > 0
