"""Bounded failure: Snowflake unreachable at the start or in the middle of a run.

The export talks to the gateway through a TCP proxy that cuts (resets, then refuses) or stalls
(black-holes) the connection. With small timeouts (1 s) each failure ends in one clear error
within seconds — the same arithmetic as the defaults' two minutes (docs/snowflake-export.md) —
and a re-run once the network is back ends with the tables of one uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from connectors.snowflake.auth import Timeouts, connect
from connectors.snowflake.config import SnowflakeCredentials
from connectors.snowflake.export import ExportOptions, RetryPolicy, export_tables
from connectors.snowflake.export_errors import RetriesExhaustedError
from tests.connectors.snowflake.conftest import TEST_SESSION_PARAMETERS
from tests.connectors.snowflake.export_support import (
    LEDGER_V2,
    fetch,
    sample_tables,
    schema_connect,
    snapshot,
    table_names,
)
from tests.connectors.snowflake.gateway import LoginGateway
from tests.connectors.snowflake.proxy import FaultyProxy

TABLES = ["PLANS", "LEDGER_ENTRIES", "EXPORT_RUNS", "EXPORT_RUN_TABLES"]
TIMEOUT = 1  # seconds, for every request (login, statements, socket reads)
# Two tries' timeouts plus the driver's and our backoff, with room for a loaded machine.
BOUND = 15.0


@pytest.fixture()
def proxy(snowflake_server: LoginGateway) -> Iterator[FaultyProxy]:
    running = FaultyProxy(snowflake_server.port).start()
    yield running
    running.stop()


def _through(proxy: FaultyProxy, credentials: SnowflakeCredentials, schema: str) -> Any:
    via = dataclasses.replace(credentials, port=proxy.port, schema=schema)

    def open_connection() -> Any:
        return connect(
            via, session_parameters=TEST_SESSION_PARAMETERS, timeouts=Timeouts.all(TIMEOUT)
        )

    return open_connection


def _options(**changes: Any) -> ExportOptions:
    retry = RetryPolicy(attempts=5, initial_delay=0.1, max_delay=0.5, give_up_after=TIMEOUT)
    return ExportOptions(retry=retry, **changes)


def test_snowflake_unreachable_at_the_start_fails_fast_with_one_clear_error(
    registered_snowflake_credentials: SnowflakeCredentials, proxy: FaultyProxy
) -> None:
    target = schema_connect(registered_snowflake_credentials)
    proxy.cut()
    started = time.monotonic()

    with pytest.raises(RetriesExhaustedError) as failed:
        export_tables(
            _through(proxy, registered_snowflake_credentials, target.schema),
            sample_tables(ledger=LEDGER_V2),
            _options(),
        )

    assert time.monotonic() - started < BOUND
    message = str(failed.value)
    assert "could not be reached" in message and "run the export again" in message
    assert failed.value.exit_code == 1


@pytest.mark.parametrize("fault", ["cut", "stall"])
def test_snowflake_lost_mid_run_fails_in_bounded_time_and_a_rerun_completes(
    registered_snowflake_credentials: SnowflakeCredentials, proxy: FaultyProxy, fault: str
) -> None:
    credentials = registered_snowflake_credentials
    reference = schema_connect(credentials)
    export_tables(reference, sample_tables(ledger=LEDGER_V2))
    expected = snapshot(reference, TABLES)
    target = schema_connect(credentials)
    times: dict[str, float] = {}

    def lose_the_network(step: str, table: str) -> None:
        if step == "copy" and table == "ledger_entries" and "lost" not in times:
            times["lost"] = time.monotonic()
            getattr(proxy, fault)()

    with pytest.raises(RetriesExhaustedError):
        export_tables(
            _through(proxy, credentials, target.schema),
            sample_tables(ledger=LEDGER_V2),
            _options(fail_after=lose_the_network, lock_ttl=timedelta(seconds=1)),
        )
    assert time.monotonic() - times["lost"] < BOUND

    proxy.restore()
    time.sleep(1.1)  # the failed run could not release its lock: its short lease runs out
    rerun = export_tables(
        _through(proxy, credentials, target.schema), sample_tables(ledger=LEDGER_V2), _options()
    )

    assert rerun.status == "succeeded"
    assert snapshot(target, TABLES) == expected
    assert table_names(target) == {*TABLES, "EXPORT_LOCK"}  # the failed run's staging is gone
    assert fetch(target, "LIST @PRICING_LAB_EXPORT_STAGE") == []
