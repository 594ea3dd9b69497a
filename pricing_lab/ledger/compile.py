"""Compile the ledger engine and the forecast kernel once, during set-up:
`python -m pricing_lab.ledger.compile`.

The fast engine, the invariant check, the credit activity passes, the calendar twins and the
run-out forecast's Monte Carlo kernel (`pricing_lab.forecast.paths`) are numba functions cached
on disk (`cache=True`, next to their modules in `__pycache__`). Compiling them takes a while
(tens of seconds each); loading them from the cache takes well under a second. `make setup` (and
so `make demo` and `make test` on a fresh clone) runs this module, which replays a small input
that reaches every compiled function with the argument types real replays use (and makes its
activity stream), and runs a small forecast, so a user's first command (or notebook) loads them
instead of compiling them.

numba checks a cached function against its own file only, so a change to a rule inlined from
another module (a calendar or order twin inside the kernel) or to a constant read at compile time
would leave the old machine code in use. So this module keeps a digest of every source the compiled
functions come from or read (`COMPILED_SOURCES`) and, when it differs from the one the caches were
built from, removes those caches before compiling again.

`compile_notice(say)` is for commands: if anything compiles while it is active (a cache missing
or stale), `say` is called once, before the compile, with a line saying so.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
from numba.core import event

NOTICE = (
    "compiling the ledger engine / forecast kernel (once: later runs load it from its cache; "
    "`make setup` does it ahead of time)…"
)


PACKAGE = Path(__file__).resolve().parents[1]
# What the compiled functions are written in or read at compile time: the folders holding numba
# functions, and the modules they take constants from.
COMPILED_SOURCES = ("ledger", "forecast", "activity", "timeutil.py", "limits.py", "money.py")
DIGEST_NAME = "ledger/__pycache__/compiled-sources.sha256"


def sources_digest(package: Path = PACKAGE) -> str:
    """SHA-256 of the `COMPILED_SOURCES` files of `package` (names and contents, in order)."""
    digest = hashlib.sha256()
    for name in COMPILED_SOURCES:
        path = package / name
        for source in sorted(path.glob("*.py")) if path.is_dir() else [path]:
            digest.update(source.relative_to(package).as_posix().encode() + b"\0")
            digest.update(source.read_bytes() + b"\0")
    return digest.hexdigest()


def drop_stale_caches(package: Path = PACKAGE) -> int:
    """Remove numba's caches of the `COMPILED_SOURCES` folders of `package` unless they were
    built from its sources as they are (the digest `record_sources` wrote); returns how many
    cache files were removed."""
    recorded = package / DIGEST_NAME
    if recorded.exists() and recorded.read_text() == sources_digest(package):
        return 0
    stale = [
        cache
        for name in COMPILED_SOURCES
        if (package / name).is_dir()
        for cache in (package / name / "__pycache__").glob("*.nb[ic]")
    ]
    for cache in stale:
        cache.unlink(missing_ok=True)
    return len(stale)


def record_sources(package: Path = PACKAGE) -> None:
    """Write the digest of the sources the caches were just built from."""
    recorded = package / DIGEST_NAME
    try:
        recorded.parent.mkdir(exist_ok=True)
        recorded.write_text(sources_digest(package))
    except OSError:
        pass  # a read-only install: numba keeps its caches elsewhere, and checks them itself


@contextmanager
def compile_notice(say: Callable[[str], None]) -> Iterator[None]:
    """Call `say(NOTICE)` once if a compiled function is compiled (not loaded) meanwhile."""
    told: list[bool] = []

    class Listener(event.Listener):
        def on_start(self, _event: event.Event) -> None:
            if not told:
                told.append(True)
                say(NOTICE)

        def on_end(self, _event: event.Event) -> None:
            pass

    with event.install_listener("numba:compile", Listener()):
        yield


def warm_up() -> None:
    """Replay small inputs through every compiled function (both enforcement modes, two
    currencies, auto-recharge with limits and expiries, voids, recurring grants, overdraft),
    and make each replay's credit activity stream."""
    from pricing_lab.activity.stream import replay_activity
    from pricing_lab.catalog.model import CreditCurrency
    from pricing_lab.ledger.api import replay
    from pricing_lab.ledger.model import (
        AutoRecharge,
        Enforcement,
        Grant,
        RecurringEntitlement,
        ReplayInput,
    )

    start = datetime(2024, 1, 31, tzinfo=UTC)
    currencies = (
        CreditCurrency(id="CR", name="credits", unit_price=Decimal("0.01"), precision=2),
        CreditCurrency(id="TK", name="tokens", unit_price=Decimal("0.5"), precision=0),
    )
    customers = [f"c{i}" for i in range(40)]
    rows: list[tuple[str, str, datetime, str | None, str | None, Decimal | None]] = []
    for i in range(400):
        customer = customers[i % len(customers)]
        when = start + timedelta(hours=7 * i)
        rows.append((f"e{i:04d}", customer, when, "chat", "CR", Decimal(i % 50) / 4))
        if i % 3 == 0:
            rows.append((f"e{i:04d}", customer, when, "embed", "TK", Decimal(i % 7)))
        if i % 11 == 0:
            rows.append((f"n{i:04d}", customer, when, None, None, None))
    consumptions = pl.DataFrame(
        rows,
        schema={
            "event_id": pl.String,
            "customer_id": pl.String,
            "timestamp": pl.Datetime("us", "UTC"),
            "feature_id": pl.String,
            "currency_id": pl.String,
            "cost": pl.Decimal(38, 2),
        },
        orient="row",
    )
    grants = tuple(
        Grant(
            grant_id=f"{c}:promo",
            customer_id=c,
            currency_id="CR" if i % 2 else "TK",
            amount=Decimal(20),
            type="PROMOTIONAL",
            effective_at=start,
            expires_at=start + timedelta(days=10),
            voided_at=start + timedelta(days=5) if i % 5 == 0 else None,
        )
        for i, c in enumerate(customers)
    )
    recurring = tuple(
        RecurringEntitlement(
            customer_id=c,
            source_id="pro",
            source_kind="plan",
            currency_id="CR",
            amount=Decimal(30),
            cadence="monthly" if i % 3 else "yearly",
            start=start,
        )
        for i, c in enumerate(customers)
    )
    recharges = tuple(
        AutoRecharge(
            customer_id=c,
            currency_id="CR" if i % 2 else "TK",
            threshold=Decimal(5),
            target=Decimal(40),
            monthly_spend_limit=Decimal("0.6") if i % 4 else None,
            grant_expiry=("none", "1_month", "1_year")[i % 3],
        )
        for i, c in enumerate(customers[::2])
    )
    enforcements: tuple[Enforcement, ...] = ("overdraft", "block")
    for enforcement in enforcements:
        for table in (consumptions, consumptions.sort("event_id")):  # in order, and not
            replay_input = ReplayInput(
                currencies=currencies,
                grants=grants,
                recurring=recurring,
                auto_recharges=recharges,
                consumptions=table,
                enforcement=enforcement,
                scenario="warm-up",
            )
            replay_activity(replay(replay_input), replay_input)


def warm_up_forecast() -> None:
    """Run a small forecast (one customer, ten days of usage, 1,000 paths) through the kernel."""
    import duckdb

    from pricing_lab.catalog.yaml_format import load_catalog
    from pricing_lab.events.ingest import ingest_events
    from pricing_lab.forecast import forecast

    catalog = load_catalog(
        """
currencies:
  - {id: CR, name: Credits, unit_price: 0.001, precision: 2}
features:
  - {id: call, name: Call, type: metered,
     meter: {source: events, event_name: call, aggregation: count}}
default_credit_rates:
  - {feature: call, mode: per_unit, per_unit: 100}
"""
    )
    start = datetime(2024, 1, 1)
    rows = [(f"e{d}", "c", "call", start + timedelta(days=d, hours=12)) for d in range(10)]
    con = duckdb.connect()
    ingest_events(
        con,
        pl.DataFrame(
            rows, schema=["event_id", "customer_id", "event_name", "timestamp"], orient="row"
        ),
    )
    forecast(con, catalog, as_of=datetime(2024, 1, 11, tzinfo=UTC), horizon="30d")


def main() -> int:
    began = time.perf_counter()

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    drop_stale_caches()
    with compile_notice(say):
        warm_up()
        warm_up_forecast()
    record_sources()
    took = time.perf_counter() - began
    print(f"ledger engine and forecast kernel ready ({took:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
