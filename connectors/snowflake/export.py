"""The Snowflake load job: Parquet → PUT to a named stage → COPY INTO staging → MERGE → record.

`export_tables(connect, tables)` loads any `ExportTable`s (see `connectors.snowflake.tables`) into
the connection's current database and schema. Design (docs/snowflake-export.md):

- **Run id from content.** Each table's rows are sorted by key and written to Parquet; the table's
  content hash covers its definition and those bytes (for an incremental table: only the rows
  above the last successful export's watermark). A table whose hash equals the one recorded by
  the last successful export that included it does not move. The run id hashes the previous
  successful run id and the moving tables' hashes, so an interrupted run, started again on the
  same data, gets the same id and resumes with the per-table counts recorded before its MERGE.
- **Fenced.** Each attempt (one process's run) stages into its own stage path and its own
  transient staging tables, named by its lock holder id; every statement that changes a target
  or records the run checks in its own text that the attempt still holds the lock, and the MERGE
  source holds one row per key. A run that lost the lock (stalled past its lease and taken over)
  can never change a target table.
- **Recorded last.** EXPORT_RUN_TABLES rows (counts planned before MERGE, content hash,
  watermark) only count once the run's EXPORT_RUNS row exists, written after every MERGE.
- **Lock.** One row in EXPORT_LOCK, taken with a compare-and-set UPDATE holding a lease that is
  renewed after each table; a second export is refused (`ExportLockedError`) or waits.
- **Nothing left behind.** A run drops its staging tables and removes its stage files when it
  ends (success or failure); after taking the lock it removes what killed runs left (staging
  tables and stage paths of attempts other than itself and the current holder) and their local
  Parquet folders.
- **Bounded retries.** Each step is a retryable unit; transient driver errors are retried with
  exponential backoff on a fresh connection, for at most `RetryPolicy.give_up_after` seconds
  after the first failure; terminal ones stop with what to fix.
- **Fault injection.** `ExportOptions.fail_after(step, table)` (or the environment variable
  `PRICING_LAB_EXPORT_FAIL_AFTER=step[:table]`) runs after every step, so tests can stop an
  export anywhere and check that running it again ends in the same tables.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from connectors.snowflake import export_sql as sql
from connectors.snowflake.export_errors import (
    ExportError,
    ExportLockedError,
    ExportTerminalError,
    InjectedFault,
    LockLostError,
    RetriesExhaustedError,
    SchemaConflictError,
    classify,
    terminal_message,
)
from connectors.snowflake.tables import (
    EXPORT_LOCK,
    EXPORT_RUN_TABLES,
    EXPORT_RUNS,
    Column,
    ExportTable,
    content_digest,
    to_arrow,
)
from pricing_lab.errors import PricingLabError, Problem

FAIL_AFTER_ENV = "PRICING_LAB_EXPORT_FAIL_AFTER"
# Points an export passes, in order (per table: schema … merge); the fault hook runs at each.
STEPS = (
    "begin",
    "lock",
    "schema",
    "put",
    "copy",
    "plan",
    "merge",
    "before_record",
    "record",
    "cleanup",
)
WORK_DIR_PREFIX = "pricing-lab-export-"
FaultHook = Callable[[str, str], None]
Connect = Callable[[], Any]
T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff for transient errors: at most `attempts` tries per step, and no new
    try once `give_up_after` seconds have passed since the step first failed (so an unreachable
    Snowflake ends the export within about `give_up_after` + one try's timeouts)."""

    attempts: int = 5
    initial_delay: float = 0.5
    max_delay: float = 30.0
    multiplier: float = 2.0
    give_up_after: float = 45.0

    def delay(self, failed_attempts: int) -> float:
        """Seconds to wait after the n-th failed attempt (1-based)."""
        return min(self.max_delay, self.initial_delay * self.multiplier ** (failed_attempts - 1))


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportOptions:
    """How an export runs. The defaults suit a scheduled job."""

    dry_run: bool = False
    lock_ttl: timedelta = timedelta(minutes=30)
    lock_wait: float = 0.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    fail_after: FaultHook | None = None
    progress: Callable[[str], None] | None = None
    max_rows_per_file: int = 1_000_000
    sleep: Callable[[float], None] = time.sleep
    work_dir: Path | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TableReport:
    """What one table's export did. `status`: exported, resumed, unchanged or planned (dry run)."""

    name: str
    status: str
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    bytes: int = 0
    files: int = 0
    columns_added: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "rows": self.rows,
            "inserted": self.inserted,
            "updated": self.updated,
            "bytes": self.bytes,
            "files": self.files,
            "columns_added": list(self.columns_added),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportReport:
    """The outcome of one export run. `status`: succeeded, unchanged or dry_run."""

    status: str
    run_id: str | None
    tables: tuple[TableReport, ...]
    started_at: datetime
    finished_at: datetime
    resumed: bool = False
    database: str | None = None
    schema: str | None = None
    statements: tuple[str, ...] = ()

    @property
    def rows_inserted(self) -> int:
        return sum(t.inserted for t in self.tables)

    @property
    def rows_updated(self) -> int:
        return sum(t.updated for t in self.tables)

    @property
    def rows_exported(self) -> int:
        return sum(t.rows for t in self.tables)

    @property
    def bytes(self) -> int:
        return sum(t.bytes for t in self.tables)

    @property
    def duration_seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data (what `--json` prints)."""
        payload: dict[str, Any] = {
            "status": self.status,
            "run_id": self.run_id,
            "resumed": self.resumed,
            "database": self.database,
            "schema": self.schema,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "duration_seconds": round(self.duration_seconds, 3),
            "rows_exported": self.rows_exported,
            "rows_inserted": self.rows_inserted,
            "rows_updated": self.rows_updated,
            "bytes": self.bytes,
            "tables": [t.to_json() for t in self.tables],
        }
        if self.statements:
            payload["statements"] = list(self.statements)
        return payload

    def lines(self) -> list[str]:
        """The report as text lines for people."""
        where = f"{self.database}.{self.schema}" if self.database else "Snowflake"
        head = {
            "succeeded": f"export to {where} succeeded (run {self.run_id}"
            + (", resumed)" if self.resumed else ")"),
            "unchanged": f"export to {where}: nothing new since the last successful export",
            "dry_run": f"dry run against {where} (run {self.run_id}): nothing was written",
        }.get(self.status, self.status)
        out = [head]
        width = max([len(t.name) for t in self.tables] + [5])
        out.append(
            f"  {'table':<{width}}  {'status':<9} {'rows':>10} {'inserted':>10} "
            f"{'updated':>10} {'bytes':>12}"
        )
        for t in self.tables:
            added = f"  (+columns {', '.join(t.columns_added)})" if t.columns_added else ""
            out.append(
                f"  {t.name:<{width}}  {t.status:<9} {t.rows:>10,} {t.inserted:>10,} "
                f"{t.updated:>10,} {t.bytes:>12,}{added}"
            )
        out.append(
            f"  total: {self.rows_exported:,} rows exported, {self.rows_inserted:,} inserted, "
            f"{self.rows_updated:,} updated, {self.bytes:,} bytes in {self.duration_seconds:.2f} s"
        )
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


# -- connection with retries ----------------------------------------------------------------------


class _Session:
    """One connection to Snowflake, re-opened after transient errors; steps retried."""

    def __init__(self, connect: Connect, options: ExportOptions) -> None:
        self._connect = connect
        self._options = options
        self._connection: Any = None
        # True after a transient failure: the connection was dropped, Snowflake may be out of
        # reach, so best-effort clean-up is skipped rather than waiting for more timeouts.
        self.broken = False

    def _cursor(self) -> Any:
        if self._connection is None:
            self._connection = self._connect()
        return self._connection.cursor()

    def run(self, statement: str, params: dict[str, Any] | None = None) -> Any:
        """Execute one statement (no retry here: callers wrap a whole step in `retrying`)."""
        cursor = self._cursor()
        cursor.execute(statement, params)
        return cursor

    def rows(self, statement: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return list(self.run(statement, params).fetchall())

    def retrying(self, during: str, action: Callable[[], T]) -> T:
        """Run `action`, retrying transient errors with backoff; terminal ones stop the export."""
        policy = self._options.retry
        first_failure: float | None = None
        attempt = 0
        while True:
            attempt += 1
            try:
                result = action()
                self.broken = False
                return result
            except PricingLabError as exc:
                if classify(exc) == "terminal":
                    raise
                last: BaseException = exc
            except Exception as exc:
                if classify(exc) == "terminal":
                    raise ExportTerminalError(terminal_message(exc, during=during)) from exc
                last = exc
            self.drop()
            now = time.monotonic()
            first_failure = now if first_failure is None else first_failure
            delay = policy.delay(attempt)
            if attempt >= policy.attempts or now + delay - first_failure > policy.give_up_after:
                break
            self._report(
                f"transient error while {during} ({_short(last)}); retry {attempt} in {delay:.1f} s"
            )
            self._options.sleep(delay)
        raise RetriesExhaustedError(
            f"Snowflake export failed while {during} after {attempt} attempt(s) in "
            f"{time.monotonic() - first_failure:.0f} s: {_short(last)}. The error looks "
            "transient (network, server or lock contention): run the export again later; it "
            "resumes where it stopped."
        ) from last

    def execute(self, during: str, statement: str, params: dict[str, Any] | None = None) -> Any:
        return self.retrying(during, lambda: self.run(statement, params))

    def query(
        self, during: str, statement: str, params: dict[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        return self.retrying(during, lambda: self.rows(statement, params))

    def best_effort(self, statement: str, params: dict[str, Any] | None = None) -> bool:
        """Run a clean-up statement once, without retries; False when it failed (or Snowflake
        looked unreachable, when it is not tried at all)."""
        if self.broken:
            return False
        try:
            self.run(statement, params)
        except Exception:
            return False
        return True

    def _report(self, message: str) -> None:
        if self._options.progress is not None:
            self._options.progress(message)

    def drop(self) -> None:
        """Let go of a connection that failed: closed in the background, since logging out
        through a broken network would wait for the driver's timeouts."""
        self.broken = True
        connection, self._connection = self._connection, None
        if connection is not None:
            threading.Thread(
                target=_close_quietly, args=(connection,), name="close snowflake", daemon=True
            ).start()

    def close(self) -> None:
        if self.broken:
            self.drop()
            return
        connection, self._connection = self._connection, None
        if connection is not None:
            _close_quietly(connection)


def _close_quietly(connection: Any) -> None:
    with contextlib.suppress(Exception):  # a broken connection may fail to close
        connection.close()


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "msg", "") or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


# -- the lock -------------------------------------------------------------------------------------


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


_HOLDER_INFO = re.compile(r"^(?P<host>\S+) pid (?P<pid>\d+) ")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


class _Lock:
    """The export lock: a lease in EXPORT_LOCK taken by compare-and-set, renewed per table."""

    def __init__(self, session: _Session, options: ExportOptions, where: str) -> None:
        self._session = session
        self._options = options
        self._where = where
        self.holder = uuid.uuid4().hex
        self.info = f"{socket.gethostname()} pid {os.getpid()} at {_utcnow().isoformat()}Z"
        self.held = False

    @property
    def attempt(self) -> str:
        """This run's attempt id: names its staging tables and stage path."""
        return self.holder[:16]

    def params(self, **extra: Any) -> dict[str, Any]:
        return {"lock_name": sql.LOCK_NAME, "name": sql.LOCK_NAME, "holder": self.holder, **extra}

    def acquire(self) -> None:
        deadline = time.monotonic() + self._options.lock_wait
        while True:
            now = _utcnow()
            params = self.params(info=self.info, now=now, expires=now + self._options.lock_ttl)
            self._session.execute("taking the export lock", sql.ACQUIRE_LOCK, params)
            rows = self._session.query("reading the export lock", sql.READ_LOCK, self.params())
            if not rows:  # a new (or emptied) lock table: add its row, then try again
                self._session.execute("creating the export lock", sql.SEED_LOCK, self.params())
                continue
            if all(row[0] == self.holder for row in rows):
                self.held = True
                return
            others = [row for row in rows if row[0] != self.holder]
            holder, info, expires = others[0] if others else (None, "?", "?")
            if holder is not None and self._dead_here(str(info)):
                # Its process is gone from this machine: take over at once, compare-and-set on
                # the dead holder so that two runs taking over cannot both win.
                self._session.execute(
                    "taking over the lock of a dead export",
                    sql.TAKE_OVER_LOCK,
                    {**params, "dead": holder},
                )
                continue
            if time.monotonic() >= deadline:
                raise ExportLockedError(
                    f"another export to {self._where} is running (lock held by {info}, lease "
                    f"until {expires} UTC). It was refused so rows are never loaded twice: run "
                    "again when that export has finished, pass --wait SECONDS to wait for it, "
                    "or wait for the lease to expire if that export died.",
                    holder=str(info),
                    expires_at=str(expires),
                )
            self._options.sleep(min(1.0, max(0.0, deadline - time.monotonic())) or 0.05)

    @staticmethod
    def _dead_here(info: str) -> bool:
        match = _HOLDER_INFO.match(info)
        return (
            match is not None
            and match["host"] == socket.gethostname()
            and int(match["pid"]) != os.getpid()
            and not _pid_alive(int(match["pid"]))
        )

    def lost(self) -> LockLostError:
        self.held = False
        return LockLostError(
            f"the export lock on {self._where} expired and was taken by another export; "
            "this export stopped without changing any table. Run it again (it resumes) and "
            "raise the lock lease (--lock-ttl) if tables take longer than the lease to load."
        )

    def current_holder(self) -> str | None:
        rows = self._session.query("reading the export lock", sql.READ_LOCK, self.params())
        return None if not rows or rows[0][0] is None else str(rows[0][0])

    def verify(self) -> None:
        """Raise `LockLostError` unless this run still holds the lock (after a fenced change)."""
        if self.current_holder() != self.holder:
            raise self.lost()

    def still_held(self) -> bool | None:
        """Whether the lock is still this run's (None when that cannot be checked now)."""
        if self._session.broken:
            return None
        try:
            rows = self._session.rows(sql.READ_LOCK, self.params())
        except Exception:
            return None
        return bool(rows) and rows[0][0] == self.holder

    def renew(self) -> None:
        params = self.params(expires=_utcnow() + self._options.lock_ttl)
        cursor = self._session.execute("renewing the export lock", sql.RENEW_LOCK, params)
        if cursor.rowcount == 0:
            raise self.lost()

    def release(self) -> None:
        if not self.held:
            return
        # Once, without retries: if Snowflake is out of reach the lease expires on its own, and
        # the next export on this machine takes over a lock whose process is gone.
        self._session.best_effort(sql.RELEASE_LOCK, self.params())
        self.held = False


# -- preparing tables -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Prepared:
    table: ExportTable
    rows: int
    files: tuple[Path, ...]
    bytes: int
    content_hash: str
    watermark: str | None
    moves: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class _State:
    previous_run: str | None
    table_hash: dict[str, str]
    table_watermark: dict[str, str | None]
    columns: dict[str, dict[str, tuple[str, int | None]]]


def _watermark_filter(
    arrow: pa.Table, table: ExportTable, previous: str | None
) -> tuple[pa.Table, str | None]:
    """Rows above the previous watermark (per partition) and the watermark after this export."""
    assert table.incremental is not None
    column = table.column(table.incremental)
    parts = [table.column(p).sql_name for p in table.partition]
    entries: list[list[str]] = json.loads(previous) if previous else []
    if entries:
        marks = {
            **{
                name: pa.array([e[i] for e in entries], pa.string()) for i, name in enumerate(parts)
            },
            "__WATERMARK": pa.array([e[-1] for e in entries], pa.string()).cast(column.type.arrow),
        }
        known = pa.table(marks)
        if parts:
            joined = arrow.join(known, keys=parts, join_type="left outer")
        else:
            joined = arrow.append_column(
                "__WATERMARK", pa.repeat(known.column("__WATERMARK")[0], arrow.num_rows)
            )
        keep = pc.or_kleene(
            pc.is_null(joined.column("__WATERMARK")),
            pc.greater(joined.column(column.sql_name), joined.column("__WATERMARK")),
        )
        arrow = joined.filter(keep).drop_columns(["__WATERMARK"]).select(arrow.column_names)
        key_names = [table.column(k).sql_name for k in table.key]
        arrow = (
            arrow.sort_by([(name, "ascending") for name in key_names]) if arrow.num_rows else arrow
        )
    merged = {tuple(e[:-1]): e[-1] for e in entries}
    if arrow.num_rows:
        if not parts:
            merged[()] = _watermark_text(pc.max(arrow.column(column.sql_name)).as_py())
        else:
            grouped = arrow.group_by(parts).aggregate([(column.sql_name, "max")])
            for row in grouped.to_pylist():
                merged[tuple(str(row[p]) for p in parts)] = _watermark_text(
                    row[f"{column.sql_name}_max"]
                )
    if not merged:
        return arrow, None
    encoded = json.dumps([[*key, value] for key, value in sorted(merged.items())])
    return arrow, encoded


def _watermark_text(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _write_parquet(arrow: pa.Table, folder: Path, max_rows: int) -> tuple[Path, ...]:
    folder.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    count = max(1, -(-arrow.num_rows // max_rows))
    for index in range(count):
        chunk = arrow.slice(index * max_rows, max_rows)
        path = folder / f"part-{index:05d}.parquet"
        pq.write_table(chunk, path, compression="snappy")
        files.append(path)
    return tuple(files)


def _prepare(table: ExportTable, state: _State, folder: Path, options: ExportOptions) -> _Prepared:
    arrow = to_arrow(table)
    watermark: str | None = None
    if table.incremental is not None:
        arrow, watermark = _watermark_filter(arrow, table, state.table_watermark.get(table.name))
    files = _write_parquet(arrow, folder / table.name, options.max_rows_per_file)
    # One file in memory at a time, however many files a large table is split into.
    digest = content_digest(table, (path.read_bytes() for path in files))
    if table.incremental is not None:
        digest = hashlib.sha256(
            f"{digest}|{state.table_watermark.get(table.name)}".encode()
        ).hexdigest()
    exists = table.sql_name in state.columns
    if table.incremental is not None:
        moves = arrow.num_rows > 0 or not exists
    else:
        moves = state.table_hash.get(table.name) != digest or not exists
    return _Prepared(
        table=table,
        rows=arrow.num_rows,
        files=files,
        bytes=sum(path.stat().st_size for path in files),
        content_hash=digest,
        watermark=watermark,
        moves=moves,
    )


def _read_columns(session: _Session, schema: str) -> dict[str, dict[str, tuple[str, int | None]]]:
    """Table → column → (data type, numeric scale) of the target schema."""
    columns: dict[str, dict[str, tuple[str, int | None]]] = {}
    for table_name, column_name, data_type, scale in session.query(
        "reading the target schema", sql.describe_columns(schema)
    ):
        columns.setdefault(str(table_name).upper(), {})[str(column_name).upper()] = (
            str(data_type),
            None if scale is None else int(scale),
        )
    return columns


def _read_state(session: _Session, schema: str) -> _State:
    columns = _read_columns(session, schema)
    previous: str | None = None
    table_hash: dict[str, str] = {}
    table_watermark: dict[str, str | None] = {}
    if EXPORT_RUNS in columns and EXPORT_RUN_TABLES in columns:
        last = session.query("reading the last export run", sql.LAST_RUN)
        previous = str(last[0][0]) if last else None
        latest: dict[str, int] = {}
        for name, content_hash, watermark, seq in session.query(
            "reading the export history", sql.TABLE_HISTORY
        ):
            if int(seq) >= latest.get(name, -1):
                latest[name] = int(seq)
                table_hash[name] = str(content_hash)
                table_watermark[name] = None if watermark is None else str(watermark)
    return _State(
        previous_run=previous,
        table_hash=table_hash,
        table_watermark=table_watermark,
        columns=columns,
    )


def _schema_changes(prepared: Sequence[_Prepared], state: _State) -> dict[str, tuple[Column, ...]]:
    """Columns to add per table; raises `SchemaConflictError` listing every type change."""
    problems: list[Problem] = []
    additions: dict[str, tuple[Column, ...]] = {}
    for item in prepared:
        table = item.table
        existing = state.columns.get(table.sql_name)
        if existing is None:
            continue
        added: list[Column] = []
        for column in table.columns:
            found = existing.get(column.sql_name)
            if found is None:
                added.append(column)
            elif not column.type.same_as(found[0], found[1]):
                described = (
                    found[0]
                    if found[0].upper() not in {"NUMBER", "DECIMAL", "NUMERIC"}
                    else (f"NUMBER(38, {found[1]})")
                )
                problems.append(
                    Problem(
                        path=f"{table.sql_name}.{column.sql_name}",
                        message=f"is {described} in Snowflake but the export writes "
                        f"{column.type.sql}",
                    )
                )
        additions[table.name] = tuple(added)
    if problems:
        lines = "\n".join(f"  {p}" for p in problems)
        raise SchemaConflictError(
            f"the export refuses to change column types in place:\n{lines}\n"
            "  fix: rename or drop the Snowflake column (or the table) after saving what you need; "
            "new columns are added automatically, changed types never are. Nothing was loaded."
        )
    return additions


# -- the export -----------------------------------------------------------------------------------


def _env_fault_hook() -> FaultHook | None:
    spec = os.environ.get(FAIL_AFTER_ENV)
    if not spec:
        return None
    step, _, only_table = spec.partition(":")
    return fail_after(step, only_table or None)


def fail_after(step: str, table: str | None = None) -> FaultHook:
    """A fault hook that stops the export with `InjectedFault` right after `step` (of `table`)."""
    if step not in STEPS:
        raise ValueError(f"unknown export step {step!r}; steps: {', '.join(STEPS)}")

    def hook(done: str, table_name: str) -> None:
        if done == step and (table is None or table == table_name):
            raise InjectedFault(f"export stopped on purpose after step {step!r} of {table_name!r}")

    return hook


def export_tables(
    connect: Connect, tables: Iterable[ExportTable], options: ExportOptions | None = None
) -> ExportReport:
    """Export `tables` to the connection's current database and schema; returns the report.

    `connect()` opens a DB-API connection (e.g. `connectors.snowflake.auth.connect`, whose
    timeouts bound each request); it is called again after a transient error. Raises
    `ExportLockedError` when another export holds the lock, `LockLostError` when this one lost
    it, `SchemaConflictError` for a column type change, `ExportTerminalError` for what needs
    fixing (grants, objects), `RetriesExhaustedError` when transient errors persist, and
    `ValidationError` for rows that cannot be exported exactly. Running it again after any
    failure resumes and ends with the tables one uninterrupted run leaves.
    """
    options = options or ExportOptions()
    if options.fail_after is None and (hook := _env_fault_hook()) is not None:
        options = replace(options, fail_after=hook)
    table_list = list(tables)
    names = [t.name for t in table_list]
    if len(set(names)) != len(names):
        raise ExportTerminalError(f"a table is listed twice in the export: {names}")
    started = datetime.now(UTC)
    session = _Session(connect, options)
    remove_dead_work_dirs(options.work_dir)
    prefix = f"{WORK_DIR_PREFIX}{os.getpid()}-"
    with tempfile.TemporaryDirectory(prefix=prefix, dir=options.work_dir) as tmp:
        try:
            return _Export(session, table_list, options, Path(tmp), started).run()
        finally:
            session.close()


def remove_dead_work_dirs(work_dir: Path | None) -> list[Path]:
    """Remove the local Parquet folders of exports whose process is gone (killed runs)."""
    folder = Path(work_dir or tempfile.gettempdir())
    removed = []
    for path in folder.glob(f"{WORK_DIR_PREFIX}*-*"):
        pid = path.name[len(WORK_DIR_PREFIX) :].split("-", 1)[0]
        if path.is_dir() and pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


class _Export:
    def __init__(
        self,
        session: _Session,
        tables: list[ExportTable],
        options: ExportOptions,
        folder: Path,
        started: datetime,
    ) -> None:
        self.session = session
        self.tables = tables
        self.options = options
        self.folder = folder
        self.started = started
        self.statements: list[str] = []
        self.staged: list[str] = []  # this attempt's staging tables (dropped at the end)
        self.put_files = False

    def progress(self, message: str) -> None:
        if self.options.progress is not None:
            self.options.progress(message)

    def step_done(self, step: str, table: str) -> None:
        if self.options.fail_after is not None:
            self.options.fail_after(step, table)

    def sql(self, statement: str, params: dict[str, Any] | None = None) -> Any:
        """A statement that changes Snowflake: only recorded in a dry run, else executed."""
        if self.options.dry_run:
            self.statements.append(sql.render(statement, params))
            return None
        return self.session.run(statement, params)

    def unit(self, step: str, table: str, during: str, action: Callable[[], T]) -> T:
        """One step as a retryable unit; the fault hook runs inside it, after the step."""

        def attempt() -> T:
            result = action()
            self.step_done(step, table)
            return result

        return self.session.retrying(during, attempt)

    def run(self) -> ExportReport:
        session = self.session
        if not self.options.dry_run:
            self.step_done("begin", "")
        location = session.query("reading the current database and schema", sql.CURRENT_SCHEMA)
        database, schema = location[0] if location else (None, None)
        if not schema:
            raise ExportTerminalError(
                "the Snowflake connection has no current schema: set `database` and `schema` in "
                "the connection (connections.toml or SNOWFLAKE_DATABASE / SNOWFLAKE_SCHEMA)"
            )
        self.database, self.schema = str(database), str(schema)
        where = f"{database}.{schema}"
        lock = _Lock(session, self.options, where)
        if self.options.dry_run:
            return self._run_locked(lock)
        existing = _read_columns(session, self.schema)
        session.execute("creating the export stage", sql.create_stage())
        for name in (EXPORT_RUNS, EXPORT_RUN_TABLES, EXPORT_LOCK):
            if name not in existing:
                session.execute(f"creating {name}", sql.create_bookkeeping(name))
        try:
            lock.acquire()
            self.unit(
                "lock", "", "removing what killed exports left", lambda: self._leftovers(lock)
            )
            report = self._run_locked(lock)
            self.unit("cleanup", "", "removing the run's staging tables and files", lambda: None)
            self._clean_own(lock, strict=True)
            return report
        except BaseException as exc:
            self._clean_own(lock, strict=False)
            # A run that lost the lock may fail on what its successor removed (its staging
            # table, its files): that is the lost lock, said as such.
            expected = isinstance(exc, LockLostError | InjectedFault)
            if (
                isinstance(exc, Exception)
                and not expected
                and lock.held
                and lock.still_held() is False
            ):
                raise lock.lost() from exc
            raise
        finally:
            lock.release()

    def _leftovers(self, lock: _Lock) -> None:
        """Drop staging tables and stage paths of attempts other than this one and the current
        lock holder: what killed or superseded runs left. The holder is read after listing, so
        a run that took the lock meanwhile (and may be loading) is never touched."""
        tables = [
            row[0] for row in self.session.rows(sql.TABLES_IN_SCHEMA, {"schema": self.schema})
        ]
        files = [str(row[0]) for row in self.session.rows(sql.LIST_STAGE)]
        holder = lock.current_holder() or ""
        keep = {lock.attempt.upper(), holder[:16].upper()}
        # A staging table belongs to a target table of this schema (it is created first).
        targets = {str(name) for name in tables}
        for name in tables:
            match = sql.STAGING_PATTERN.match(str(name))
            if match is None or match["table"] not in targets:
                continue
            if (match["attempt"] or "") not in keep:
                self.progress(f"dropping {name}, left by an earlier export")
                self.session.run(sql.drop_table(str(name)))
        attempts = {path.split("/")[1] for path in files if path.count("/") >= 2}
        for attempt in sorted(attempts):
            if attempt.upper() not in keep:
                self.progress(f"removing stage files of an earlier export ({attempt})")
                self.session.best_effort(sql.remove_attempt_files(attempt))

    def _clean_own(self, lock: _Lock, *, strict: bool) -> None:
        """Drop this attempt's staging tables and remove its stage files. `strict`: retried and
        failing the run (the normal end); else once, best effort (after a failure: the next run
        removes what is left)."""
        if self.options.dry_run:
            return
        statements = [sql.drop_table(name) for name in self.staged]
        if self.put_files:
            statements.append(sql.remove_attempt_files(lock.attempt))
        for statement in statements:
            if strict and not statement.startswith("REMOVE"):
                self.session.execute("dropping a staging table", statement)
            else:
                self.session.best_effort(statement)
        self.staged.clear()
        self.put_files = False

    def _run_locked(self, lock: _Lock) -> ExportReport:
        state = _read_state(self.session, self.schema)
        prepared: list[_Prepared] = []
        for table in self.tables:
            item = _prepare(table, state, self.folder, self.options)
            prepared.append(item)
            self.progress(
                f"{table.name}: {item.rows:,} rows, {len(item.files)} file(s), "
                f"{item.bytes:,} bytes" + ("" if item.moves else " (unchanged, skipped)")
            )
        additions = _schema_changes(prepared, state)
        moving = [p for p in prepared if p.moves]
        unchanged = [
            TableReport(name=p.table.name, status="unchanged") for p in prepared if not p.moves
        ]
        if not moving:
            return self._report("unchanged", None, unchanged, resumed=False)
        run_id = hashlib.sha256(
            "|".join(
                [f"previous:{state.previous_run}"]
                + [f"{p.table.name}:{p.content_hash}" for p in moving]
            ).encode()
        ).hexdigest()[:20]
        plans: dict[str, tuple[int, int, str]] = {}
        if not self.options.dry_run:
            for name, inserted, updated, added in self.session.query(
                "reading the run's recorded plan", sql.RUN_PLAN, {"run_id": run_id}
            ):
                plans[str(name)] = (int(inserted), int(updated), str(added or ""))
        resumed = bool(plans)
        if resumed:
            self.progress(
                f"resuming unfinished run {run_id} ({len(plans)} table(s) already planned)"
            )
        reports: list[TableReport] = []
        for index, item in enumerate(moving, start=1):
            self.progress(f"[{index}/{len(moving)}] {item.table.name}: loading {item.rows:,} rows")
            reports.append(
                self._export_table(
                    item, run_id, lock, state, additions.get(item.table.name, ()), plans
                )
            )
            if not self.options.dry_run:
                lock.renew()
        if self.options.dry_run:
            self.statements.append(sql.render(sql.RECORD_RUN, {"run_id": run_id}))
            return self._report("dry_run", run_id, reports + unchanged, resumed=False)
        self.unit("before_record", "", "finishing the export", lambda: None)
        finished = datetime.now(UTC)
        params = lock.params(
            run_id=run_id,
            previous=state.previous_run,
            started=self.started.replace(tzinfo=None),
            finished=finished.replace(tzinfo=None),
            tables=",".join(r.name for r in reports),
            rows=sum(r.rows for r in reports),
            inserted=sum(r.inserted for r in reports),
            updated=sum(r.updated for r in reports),
            bytes=sum(r.bytes for r in reports),
            host=socket.gethostname(),
        )

        def record() -> None:
            self.sql(sql.RECORD_RUN, params)
            lock.verify()

        self.unit("record", "", "recording the export run", record)
        return self._report("succeeded", run_id, reports + unchanged, resumed=resumed)

    def _export_table(
        self,
        item: _Prepared,
        run_id: str,
        lock: _Lock,
        state: _State,
        added: tuple[Column, ...],
        plans: dict[str, tuple[int, int, str]],
    ) -> TableReport:
        table = item.table
        name = table.name
        target = table.sql_name
        attempt = lock.attempt

        def schema() -> None:
            if target not in state.columns:
                self.sql(sql.create_table(table))
            for column in added:
                self.sql(sql.add_column(table, column))

        def put_files() -> None:
            self.put_files = True
            for path in item.files:
                self.sql(sql.put(str(path.resolve()), attempt, table))

        def copy() -> None:
            staging = sql.staging_name(table, attempt)
            if staging not in self.staged:
                self.staged.append(staging)
            self.sql(sql.create_staging(table, attempt))
            cursor = self.sql(sql.copy_into_staging(attempt, table))
            if cursor is not None:
                self._check_staged(table, attempt, cursor.fetchall(), item.rows)

        self.unit("schema", name, f"creating or extending {target}", schema)
        self.unit("put", name, f"uploading the files of {target} (PUT)", put_files)
        self.unit("copy", name, f"loading {target} into its staging table (COPY INTO)", copy)
        added_names = ",".join(c.sql_name for c in added)
        if self.options.dry_run:
            held = lock.params()
            self.statements.extend(
                [
                    sql.render(sql.count_changes(table, attempt), held),
                    sql.render(sql.merge(table, attempt), held),
                ]
            )
            return TableReport(
                name=name,
                status="planned",
                rows=item.rows,
                bytes=item.bytes,
                files=len(item.files),
                columns_added=tuple(c.sql_name for c in added),
            )

        def plan() -> tuple[int, int, str]:
            if name in plans:
                return plans[name]
            counts = self.session.rows(sql.count_changes(table, attempt), lock.params())
            lock.verify()  # an empty count may come from a lost lock, not from no changes
            inserted, updated = int(counts[0][0] or 0), int(counts[0][1] or 0)
            params = lock.params(
                run_id=run_id,
                table=name,
                hash=item.content_hash,
                rows=item.rows,
                inserted=inserted,
                updated=updated,
                bytes=item.bytes,
                files=len(item.files),
                columns_added=added_names,
                watermark=item.watermark,
            )
            self.sql(sql.RECORD_TABLE, params)
            lock.verify()
            return inserted, updated, added_names

        def merge() -> None:
            self.sql(sql.merge(table, attempt), lock.params())
            lock.verify()

        inserted, updated, added_names = self.unit(
            "plan", name, f"counting and recording the changes to {target}", plan
        )
        self.unit("merge", name, f"merging into {target}", merge)
        return TableReport(
            name=name,
            status="resumed" if name in plans else "exported",
            rows=item.rows,
            inserted=inserted,
            updated=updated,
            bytes=item.bytes,
            files=len(item.files),
            columns_added=tuple(n for n in added_names.split(",") if n),
        )

    def _check_staged(
        self, table: ExportTable, attempt: str, result: list[Any], expected: int
    ) -> None:
        # COPY answers one row per file: file, status, rows_parsed, rows_loaded, ...
        count = sum(int(row[3] or 0) for row in result if len(row) > 3)
        if count != expected:
            raise ExportError(
                f"COPY INTO {sql.staging_name(table, attempt)} loaded {count} rows, expected "
                f"{expected}: the stage path {sql.stage_path(attempt, table)} lost or gained "
                "files. Run the export again."
            )

    def _report(
        self, status: str, run_id: str | None, tables: list[TableReport], *, resumed: bool
    ) -> ExportReport:
        order = {t.name: i for i, t in enumerate(self.tables)}
        return ExportReport(
            status=status,
            run_id=run_id,
            tables=tuple(sorted(tables, key=lambda t: order[t.name])),
            started_at=self.started,
            finished_at=datetime.now(UTC),
            resumed=resumed,
            database=self.database,
            schema=self.schema,
            statements=tuple(self.statements) if self.options.dry_run else (),
        )


__all__ = [
    "FAIL_AFTER_ENV",
    "STEPS",
    "ExportOptions",
    "ExportReport",
    "RetryPolicy",
    "TableReport",
    "export_tables",
    "fail_after",
]
