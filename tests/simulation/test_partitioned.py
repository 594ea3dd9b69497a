"""A replay in customer partitions writes exactly the files of the same replay held in memory."""

from __future__ import annotations

import random
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest

from pricing_lab.errors import InputError
from pricing_lab.events.ingest import ingest_events
from pricing_lab.events.real import DEFAULT_START, load_sample_events
from pricing_lab.ledger.balances import feature_summary, feature_totals
from pricing_lab.ledger.model import Enforcement
from pricing_lab.simulation import output_files, partitioned
from pricing_lab.simulation.customers import customers_from_mapping
from pricing_lab.simulation.demo import demo_customers, sample_catalog
from pricing_lab.simulation.partitioned import customer_ranges, simulate_partitioned
from pricing_lab.simulation.simulate import OUTPUT_FILES, LedgerOnDisk, cost, simulate
from tests.simulation.helpers import catalog, ev, load_events, naive
from tests.simulation.test_simulate import CUSTOMERS, cli, random_events, write_inputs

SMALL_ROW_GROUPS = 5_000  # so that the merge and the writer cross many row groups


def _same_files(left: Path, right: Path) -> None:
    for name in OUTPUT_FILES:
        assert (left / name).read_bytes() == (right / name).read_bytes(), name


@pytest.mark.parametrize("enforcement", ["overdraft", "block"])
def test_partitioned_replay_of_the_demo_writes_the_same_bytes(
    tmp_path: Path, enforcement: Enforcement, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(output_files, "ROW_GROUP_ROWS", SMALL_ROW_GROUPS)
    monkeypatch.setattr(partitioned, "_PART_BATCH_ROWS", 1000)  # ranges written in many batches
    con = duckdb.connect()
    ingest = load_sample_events(con)
    customers = demo_customers(con, start=DEFAULT_START)
    whole = simulate(con, sample_catalog(), customers, ingest=ingest, enforcement=enforcement)
    whole.write(tmp_path / "whole")
    assert pq.ParquetFile(tmp_path / "whole" / "ledger.parquet").num_row_groups > 5
    if enforcement == "block":
        assert whole.denied_events.height > 0
    for partitions in (3, 7):
        out = tmp_path / f"p{partitions}"
        done: list[tuple[int, int]] = []

        def progress(customers_done: int, total: int, done: list[tuple[int, int]] = done) -> None:
            done.append((customers_done, total))

        result = simulate_partitioned(
            con,
            sample_catalog(),
            customers,
            ingest=ingest,
            enforcement=enforcement,
            out_dir=out,
            partitions=partitions,
            progress=progress,
        )
        _same_files(tmp_path / "whole", out)
        assert len(done) == partitions and done[-1][0] == done[-1][1]
        assert result.balances.equals(whole.balances)
        assert result.summary_dict() == whole.summary_dict()
        assert result.read_ledger().equals(whole.ledger)  # read back from the folder
        with pytest.raises(LedgerOnDisk, match=r"read_ledger\(\)"):
            result.ledger  # noqa: B018  (not in memory: never read silently)
        assert not any(p.name.startswith(".") for p in out.iterdir())  # no scratch left


def _tie_rows() -> list[dict[str, object]]:
    """Six customers, many events at the same instants across customers (and ranges), an event
    rejected by its formula, and a negative-cost event that is the latest of all."""
    rng = random.Random(3)
    customers = ["ann", "bea", "cid", "dov", "eve", "fay"]
    rows = []
    for index in range(240):
        when = naive(rng.randint(1, 4), rng.choice([0, 12]), month=rng.choice([1, 2]))
        rows.append(
            ev(f"t{index:03d}", rng.choice(customers), "chat", when, tokens=rng.randint(0, 900))
        )
    rows.append(ev("null", "cid", "chat", naive(3)))  # no tokens: formula_null
    rows.append(ev("last", "fay", "chat", naive(28, 23, month=2), tokens=-5))  # formula_negative
    return rows


TIE_CUSTOMERS = {
    "customers": [
        {"id": "ann", "subscriptions": [{"plan": "basic", "start": "2024-01-01"}]},
        {"id": "bea", "subscriptions": [{"plan": "pro", "start": "2024-01-15"}]},
        {
            "id": "dov",
            "grants": [{"currency": "CR", "amount": 50, "effective_at": "2024-01-02",
                        "expires_at": "2024-01-20"}],
        },
        {
            "id": "eve",
            "subscriptions": [{"plan": "basic", "start": "2024-01-01"}],
            "auto_recharge": {"currency": "CR", "threshold": 20, "target": 200,
                              "monthly_spend_limit": 5, "grant_expiry": "1_month"},
        },
        {"id": "zed", "subscriptions": [{"plan": "pro", "start": "2024-01-01"}]},  # no events
    ]
}  # fmt: skip


@pytest.mark.parametrize("enforcement", ["overdraft", "block"])
def test_ties_across_ranges_rejections_and_the_horizon(
    tmp_path: Path, enforcement: Enforcement
) -> None:
    con, report = load_events(_tie_rows())
    customers = customers_from_mapping(TIE_CUSTOMERS)
    whole = simulate(con, catalog(), customers, ingest=report, enforcement=enforcement)
    whole.write(tmp_path / "whole")
    reasons = set(whole.rejected_events["reason"])
    assert {"formula_null", "formula_negative"} <= reasons
    # The latest event was rejected: the default horizon ends after the last costed one.
    assert whole.replay.until < naive(28, 23, month=2).replace(tzinfo=whole.replay.until.tzinfo)
    ledger = whole.ledger
    ties = ledger.group_by("timestamp").agg(pl.col("customer_id").n_unique().alias("n"))
    assert ties.filter(pl.col("n") >= 3).height > 0  # several customers at one instant
    ranges = customer_ranges(con, customers, 4)
    assert len(ranges) == 4 and ranges[-1].last == "zed"
    result = simulate_partitioned(
        con, catalog(), customers, ingest=report, enforcement=enforcement,
        out_dir=tmp_path / "parts", partitions=4,
    )  # fmt: skip
    _same_files(tmp_path / "whole", tmp_path / "parts")
    assert result.replay.until == whole.replay.until


def test_a_failed_partitioned_replay_leaves_earlier_outputs_as_they_were(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    con, report = load_events(_tie_rows())
    customers = customers_from_mapping(TIE_CUSTOMERS)
    out = tmp_path / "out"
    simulate_partitioned(
        con, catalog(), customers, ingest=report, out_dir=out, partitions=2
    )  # fmt: skip
    before = {name: (out / name).read_bytes() for name in OUTPUT_FILES}

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(output_files.TableWriter, "close", broken)
    with pytest.raises(OSError, match="disk full"):
        simulate_partitioned(
            con, catalog(), customers, ingest=report, out_dir=out, partitions=3,
            enforcement="block",
        )  # fmt: skip
    assert {name: (out / name).read_bytes() for name in OUTPUT_FILES} == before
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)


def test_cli_partitions_give_the_same_files_and_bad_counts_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = write_inputs(tmp_path / "in", random_events(300, seed=11), more=True)
    outs = []
    for partitions in ("1", "3", "auto"):
        out = tmp_path / f"out-{partitions}"
        status = cli(
            "simulate", "--catalog", paths["catalog"], "--events", paths["events"],
            "--customers", paths["customers"], "--out", out, "--partitions", partitions,
        )  # fmt: skip
        assert status == 0, capsys.readouterr().err
        outs.append(out)
    assert "3 customer partitions" in capsys.readouterr().err
    _same_files(outs[0], outs[1])
    _same_files(outs[0], outs[2])
    with pytest.raises(SystemExit) as exit_:  # argparse's own exit: one message, status 2
        cli(
            "simulate", "--catalog", paths["catalog"], "--events", paths["events"],
            "--out", tmp_path / "bad", "--partitions", "0",
        )  # fmt: skip
    assert exit_.value.code == 2
    assert "not a number of partitions" in capsys.readouterr().err


@pytest.mark.parametrize("with_customers", [False, True])
def test_no_events_gives_the_same_files(tmp_path: Path, with_customers: bool) -> None:
    con, report = load_events([])
    customers = customers_from_mapping(TIE_CUSTOMERS if with_customers else {"customers": []})
    simulate(con, catalog(), customers, ingest=report).write(tmp_path / "whole")
    simulate_partitioned(
        con, catalog(), customers, ingest=report, out_dir=tmp_path / "parts", partitions=3
    )
    _same_files(tmp_path / "whole", tmp_path / "parts")
    ledger = pl.read_parquet(tmp_path / "parts" / "ledger.parquet")
    assert (ledger.height > 0) == with_customers  # plan grants, even without usage


def _memory_limit_mib(con: duckdb.DuckDBPyConnection) -> float:
    [(limit,)] = con.execute("SELECT current_setting('memory_limit')").fetchall()
    number, unit = limit.split()
    return float(number) * {"KiB": 2**-10, "MiB": 1.0, "GiB": 2**10}[unit]


@pytest.mark.parametrize("in_file", [False, True])
def test_a_partitioned_replay_leaves_duckdb_as_it_was(tmp_path: Path, in_file: bool) -> None:
    con = partitioned.spilling_connection(tmp_path / "db") if in_file else duckdb.connect()
    con.execute("SET memory_limit = '512MB'")
    ingest = load_sample_events(con)
    customers = demo_customers(con, start=DEFAULT_START)
    simulate(con, sample_catalog(), customers, ingest=ingest).write(tmp_path / "whole")
    tables = con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()
    simulate_partitioned(
        con, sample_catalog(), customers, ingest=ingest, out_dir=tmp_path / "p", partitions=3
    )
    _same_files(tmp_path / "whole", tmp_path / "p")
    assert _memory_limit_mib(con) == pytest.approx(512 * 10**6 / 2**20, abs=0.5)
    assert con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall() == tables


def test_a_range_bigger_than_duckdbs_memory_cap_is_replayed(tmp_path: Path) -> None:
    # A range's costed rows can be more than DuckDB may hold under a partitioned replay's cap
    # (100M events in 2M-event ranges under 512 MB failed so): the range still replays, exactly.
    events = tmp_path / "events.parquet"
    duckdb.execute(
        "COPY (SELECT 'e' || i AS event_id, 'c' || (i % 40) AS customer_id, 'chat' AS event_name, "
        "TIMESTAMP '2024-01-01' + to_seconds(i * 7) AS timestamp, i % 900 AS tokens "
        f"FROM range(150000) AS t(i)) TO '{events}'"
    )
    memory = duckdb.connect()
    simulate(memory, catalog(), ingest=ingest_events(memory, str(events))).write(tmp_path / "whole")
    con = partitioned.spilling_connection(tmp_path / "db", memory_limit="32MB")
    ingest = ingest_events(con, str(events))
    simulate_partitioned(con, catalog(), ingest=ingest, out_dir=tmp_path / "p", partitions=1)
    _same_files(tmp_path / "whole", tmp_path / "p")


def test_event_ids_are_refused_once_ingested_and_checked_in_any_other_table(
    tmp_path: Path,
) -> None:
    rows = [
        ev("e1", "acme", "chat", naive(2), tokens=10),
        ev("e2", "bolt", "chat", naive(3), tokens=10),
        ev("e1", "bolt", "chat", naive(4), tokens=10),  # ingestion keeps the first e1
    ]
    con, report = load_events(rows)
    result = simulate_partitioned(
        con, catalog(), ingest=report, out_dir=tmp_path / "ingested", partitions=2
    )
    rejected = result.rejected_events.select("event_id", "reason", "detail").rows()
    assert rejected == [("e1", "duplicate_event_id", "event_id first seen at row 1")]
    consumed = result.read_ledger().filter(pl.col("entry_type") == "CONSUMED")
    served = consumed.select("event_id", "customer_id").unique(maintain_order=True)
    assert served.rows() == [("e1", "acme"), ("e2", "bolt")]
    # Rows added after ingestion, or a table ingestion did not build, are checked again.
    con.execute("INSERT INTO events SELECT * FROM events WHERE event_id = 'e2'")
    for ingest in (report, None):
        with pytest.raises(InputError, match=r"1 event ids appear more than once, e\.g\. 'e2'"):
            simulate_partitioned(
                con, catalog(), ingest=ingest, out_dir=tmp_path / "again", partitions=2
            )


@pytest.mark.parametrize("enforcement", ["overdraft", "block"])
def test_feature_totals_from_the_costs_are_those_of_the_ledger(enforcement: Enforcement) -> None:
    con, report = load_events(_tie_rows())
    customers = customers_from_mapping(TIE_CUSTOMERS)
    costing = cost(con, catalog(), customers)
    # A horizon leaving events out at both ends.
    result = simulate(
        con, catalog(), customers, ingest=report, costing=costing, enforcement=enforcement,
        start=naive(2, month=1), until=naive(3, 12, month=2),
    )  # fmt: skip
    if enforcement == "block":
        assert result.denied_events.height > 0
    totals = feature_totals(costing.consumptions, result.replay)
    assert totals.height > 1
    assert totals.equals(feature_summary(result.ledger))


def test_a_partitioned_replay_from_python_rejects_meter_values_that_are_not_numbers(
    tmp_path: Path,
) -> None:
    # As `simulate` from Python and the command line: text that is not a number is bad_value.
    frame = pl.DataFrame(
        {
            "event_id": ["ok", "word", "nan"],
            "customer_id": ["acme"] * 3,
            "event_name": ["chat"] * 3,
            "timestamp": [naive(day) for day in (2, 3, 4)],
            "tokens": ["50", "many", "NaN"],
        }
    )
    con = duckdb.connect()
    report = ingest_events(con, frame)
    customers = customers_from_mapping(CUSTOMERS)
    result = simulate_partitioned(
        con, catalog(), customers, ingest=report, out_dir=tmp_path / "out", partitions=2
    )
    rejected = pl.read_parquet(tmp_path / "out" / "rejected_events.parquet").sort("source_row")
    assert rejected.select("event_id", "reason").rows() == [
        ("word", "bad_value"),
        ("nan", "bad_value"),
    ]
    consumed = pl.read_parquet(tmp_path / "out" / "ledger.parquet").filter(
        pl.col("entry_type") == "CONSUMED"
    )
    assert consumed["event_id"].to_list() == ["ok"]
    assert result.summary_dict()["events"]["rejected_by_reason"] == {"bad_value": 2}
