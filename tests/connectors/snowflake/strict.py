"""A stricter stand-in: the test gateway's query layer makes fakesnow refuse what Snowflake refuses.

fakesnow tolerates things real Snowflake does not. In front of it, for every session (unless the
session logs in with the session parameter `PRICING_LAB_TEST_LENIENT = TRUE`, which the tests use
to show what plain fakesnow lets through), this layer reproduces:

- **MERGE with a duplicated source key** (error 100090, "Duplicate row detected during DML
  action"): a target row joined by more than one source row, in a MERGE with a WHEN MATCHED
  clause, fails the statement (fakesnow silently picks one). Stricter than Snowflake, whose docs
  leave a MERGE deterministic when the duplicates would write the same values.
- **COPY load metadata by file name and checksum**, kept per table for 64 days, with `FORCE`:
  without FORCE a file is skipped only when the same name *and* content was loaded into the table
  within 64 days (fakesnow skips by name alone, forever); a file whose metadata has expired is
  loaded again when it was modified within 64 days, skipped as "uncertain" otherwise. Re-creating,
  truncating or dropping the table forgets it. `advance_days(n)` moves this stand-in's clock.
- **PUT without OVERWRITE** keeps a staged file of the same name (fakesnow always replaces it).
- **Isolated sessions with lock waits**: a session's write waits while another session's open
  transaction has written (Snowflake's locks; coarser here: one lock for the whole database),
  then runs on what that transaction committed — DuckDB instead fails the second writer at once.
  `BEGIN` is deferred to the transaction's first write, so its reads before that see the latest
  committed data (read committed), like Snowflake's.
- **Statement-level rollback in a transaction**: a failed statement inside `BEGIN … COMMIT` is
  undone alone and the transaction goes on (DuckDB aborts the whole transaction); a DDL statement
  commits the open transaction first. Done by replaying the transaction's earlier statements.

Each behaviour has a test proving a naive exporter fails against it:
`tests/connectors/snowflake/test_strict_standin.py`.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp, parse_one
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from connectors.snowflake import local

LENIENT_PARAMETER = "PRICING_LAB_TEST_LENIENT"
LOAD_METADATA_DAYS = 64
DAY = 86400.0
LOCK_WAIT_SECONDS = 30.0
_SUCCESS = "SELECT 'Statement executed successfully.' AS \"status\""
_WRITES = (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Copy)
_DDL = (exp.Create, exp.Drop, exp.Alter, exp.TruncateTable)


@dataclass
class StrictRules:
    """The stand-in's own state: load metadata, staged files' times, sessions let through."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    # (database, schema, table, file path) -> (md5 of the file loaded, load time)
    loads: dict[tuple[str, str, str, str], tuple[str, float]] = field(default_factory=dict)
    modified: dict[str, float] = field(default_factory=dict)  # staged file -> last PUT time
    keep: set[str] = field(default_factory=set)  # bucket paths a PUT must not overwrite
    lenient: set[str] = field(default_factory=set)  # session tokens let through unchanged
    offset: float = 0.0
    # Sessions in BEGIN … COMMIT: token -> the statements run in its DuckDB transaction so far
    # (None until its first write starts that transaction).
    transactions: dict[str, list[dict[str, Any]] | None] = field(default_factory=dict)
    writer: str | None = None  # the session whose transaction holds the database's write lock
    released: threading.Condition = field(default_factory=threading.Condition)

    def take_write_lock(self, token: str, timeout: float = LOCK_WAIT_SECONDS) -> bool:
        with self.released:
            return self.released.wait_for(
                lambda: self.writer in (None, token), timeout
            ) and self._own(token)

    def _own(self, token: str) -> bool:
        self.writer = token
        return True

    def release_write_lock(self, token: str) -> None:
        with self.released:
            if self.writer == token:
                self.writer = None
                self.released.notify_all()

    def now(self) -> float:
        return time.time() + self.offset

    def advance_days(self, days: float) -> None:
        self.offset += days * DAY


def _server() -> Any:
    return importlib.import_module("fakesnow.server")


def _stage() -> Any:
    return importlib.import_module("fakesnow.transforms.stage")


def _true(node: exp.Expression | None) -> bool:
    """Whether an option's value is TRUE (sqlglot reads it as a Boolean or a word)."""
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    return node is not None and node.name.upper() == "TRUE"


def _error(code: int, message: str, sqlstate: str) -> JSONResponse:
    text = f"{code:06d}"
    return JSONResponse(
        {
            "data": {"errorCode": text, "sqlState": sqlstate},
            "code": text,
            "message": message,
            "success": False,
        }
    )


def after_login(rules: StrictRules, body: dict[str, Any], response: Response) -> None:
    """Remember the sessions that asked to be let through (`PRICING_LAB_TEST_LENIENT`)."""
    parameters = (body.get("data") or {}).get("SESSION_PARAMETERS") or {}
    if str(parameters.get(LENIENT_PARAMETER, "")).upper() in {"TRUE", "1"}:
        token = json.loads(bytes(response.body))["data"]["token"]
        with rules.lock:
            rules.lenient.add(token)


def query_handler(rules: StrictRules) -> Any:
    async def query_request(request: Request) -> Response:
        payload = await local._body_json(request)  # the local server's reader
        server = _server()
        auth = request.headers.get("Authorization") or ""
        token = auth[17:-1]
        connection = server.sessions.get(token)
        if connection is None or token in rules.lenient:
            return await local.query_request(local.with_body(request, payload))
        try:
            statement = parse_one(str(payload.get("sqlText") or ""), read="snowflake")
        except Exception:
            statement = None
        if isinstance(statement, exp.Merge):
            refused = await run_in_threadpool(_duplicate_merge, connection, statement)
            if refused is not None:
                return refused
        loading: list[tuple[tuple[str, str, str, str], str]] = []
        if isinstance(statement, exp.Copy):
            loading = await run_in_threadpool(_prepare_copy, rules, connection, statement)
        if isinstance(statement, exp.Create | exp.Drop | exp.TruncateTable):
            _forget_loads(rules, connection, statement)
        response = await _in_transactions(rules, request, token, payload, statement)
        answer = json.loads(bytes(response.body)) if response.status_code == 200 else {}
        if answer.get("success") and loading:
            with rules.lock:
                for key, digest in loading:
                    rules.loads[key] = (digest, rules.now())
        if answer.get("success") and isinstance(statement, exp.Put):
            _protect_existing(rules, statement, answer)
        return response

    return query_request


def bucket_handler(rules: StrictRules) -> Any:
    async def bucket_upload(request: Request) -> Response:
        path = request.path_params["path"]
        with rules.lock:
            kept = path in rules.keep
            rules.keep.discard(path)
        if kept:
            await request.body()
            return Response()  # PUT without OVERWRITE: the staged file stays as it was
        with rules.lock:
            rules.modified[os.path.join(_stage().LOCAL_BUCKET_PATH, path)] = rules.now()
        response: Response = await _server().bucket_upload(request)
        return response

    return bucket_upload


# -- sessions and transactions ------------------------------------------------------------------


def _word(statement: exp.Expression | None) -> str:
    if isinstance(statement, exp.Transaction):
        return "BEGIN"
    if isinstance(statement, exp.Commit):
        return "COMMIT"
    if isinstance(statement, exp.Rollback):
        return "ROLLBACK"
    return ""


def _succeeded(response: Response) -> bool:
    return response.status_code == 200 and bool(json.loads(bytes(response.body)).get("success"))


async def _run(request: Request, payload: dict[str, Any]) -> Response:
    response: Response = await local.query_request(local.with_body(request, payload))
    return response


async def _duck(request: Request, payload: dict[str, Any], sql: str) -> Response:
    return await _run(request, {**payload, "sqlText": sql, "bindings": None})


async def _in_transactions(
    rules: StrictRules,
    request: Request,
    token: str,
    payload: dict[str, Any],
    statement: exp.Expression | None,
) -> Response:
    """Run one statement with Snowflake's sessions: lock waits, deferred BEGIN, statement-level
    rollback, DDL committing the open transaction."""
    word = _word(statement)
    open_transaction = token in rules.transactions
    log = rules.transactions.get(token)
    if word == "BEGIN":
        rules.transactions.setdefault(token, None)
        return await _duck(request, payload, _SUCCESS)
    if word in ("COMMIT", "ROLLBACK"):
        rules.transactions.pop(token, None)
        if log is None:
            return await _duck(request, payload, _SUCCESS)
        response = await _run(request, payload)
        rules.release_write_lock(token)
        return response
    writes = isinstance(statement, _WRITES)
    if isinstance(statement, _DDL) and open_transaction:
        rules.transactions.pop(token, None)  # DDL commits the open transaction first
        if log is not None:
            await _duck(request, payload, "COMMIT")
            rules.release_write_lock(token)
        open_transaction, log = False, None
    if not (writes or isinstance(statement, _DDL)) or (open_transaction and log is not None):
        response = await _run(request, payload)
        if open_transaction and log is not None:
            response = await _statement_rollback(rules, request, token, payload, response)
        return response
    if not await run_in_threadpool(rules.take_write_lock, token):
        return _error(630, "Statement reached its lock wait timeout", "57014")
    if not open_transaction:
        try:
            return await _run(request, payload)
        finally:
            rules.release_write_lock(token)
    await _duck(request, payload, "BEGIN")
    rules.transactions[token] = []
    response = await _run(request, payload)
    return await _statement_rollback(rules, request, token, payload, response)


async def _statement_rollback(
    rules: StrictRules,
    request: Request,
    token: str,
    payload: dict[str, Any],
    response: Response,
) -> Response:
    """Keep what the transaction did before a failed statement: DuckDB aborted it all, so roll
    back and replay the statements that succeeded; the failure goes back to the client."""
    log = rules.transactions.get(token)
    if log is None:
        return response
    if _succeeded(response):
        log.append(payload)
        return response
    await _duck(request, payload, "ROLLBACK")
    await _duck(request, payload, "BEGIN")
    for earlier in log:
        await _run(request, earlier)
    return response


# -- MERGE ---------------------------------------------------------------------------------------


def _duplicate_merge(connection: Any, merge: exp.Merge) -> JSONResponse | None:
    whens = merge.args.get("whens")
    clauses = whens.expressions if isinstance(whens, exp.Whens) else (whens or [])
    if not any(w.args.get("matched") for w in clauses):
        return None
    target = merge.this
    alias = target.alias_or_name
    check = (
        f"SELECT COUNT(*) FROM (SELECT {alias}.rowid AS r FROM {target.sql('snowflake')} "
        f"INNER JOIN {merge.args['using'].sql('snowflake')} "
        f"ON {merge.args['on'].sql('snowflake')} GROUP BY {alias}.rowid HAVING COUNT(*) > 1)"
    )
    cursor = connection.cursor()
    cursor.execute(check)
    (count,) = cursor.fetchone()
    if not count:
        return None
    return _error(
        100090,
        "Duplicate row detected during DML action\nRow Values: [a target row matches "
        f"{count} source rows]",
        "42P18",
    )


# -- COPY load metadata --------------------------------------------------------------------------


def _copy_parts(connection: Any, copy: exp.Copy) -> tuple[tuple[str, str, str], str, bool]:
    table = copy.this.this if isinstance(copy.this, exp.Schema) else copy.this
    database = str(table.catalog or connection.database)
    schema = str(table.db or connection.schema)
    name = table.name if table.this.quoted else table.name.upper()
    source = copy.args["files"][0].this
    var = source.this if isinstance(source, exp.Var) else str(source.name)
    force = any(
        isinstance(p, exp.CopyParameter) and p.this.name.upper() == "FORCE" and _true(p.expression)
        for p in copy.args.get("params") or []
    )
    return (database, schema, name), str(var), force


def _staged_files(connection: Any, var: str) -> list[str]:
    stage = _stage()
    stage_var, _, path = var.lstrip("@").partition("/")
    catalog, schema, name = stage.parts_from_var(stage_var, connection.database, connection.schema)
    root = stage.internal_dir(f"{catalog}.{schema}.{name}", path)
    if os.path.isfile(root):
        return [root]
    return sorted(
        os.path.join(folder, file) for folder, _, files in os.walk(root) for file in files
    )


def _md5(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.md5(handle.read()).hexdigest()


def _prepare_copy(
    rules: StrictRules, connection: Any, copy: exp.Copy
) -> list[tuple[tuple[str, str, str, str], str]]:
    """Decide per staged file, as Snowflake's load metadata would, whether COPY loads it, and
    make fakesnow's own history say the same; returns what to record once COPY succeeded."""
    (database, schema, table), var, force = _copy_parts(connection, copy)
    if not var.startswith("@"):
        return []
    now = rules.now()
    loading = []
    duck = connection._duck_conn
    history = f"{database}._fs_information_schema._fs_load_history"
    for path in _staged_files(connection, var):
        key = (database, schema, table, path)
        digest = _md5(path)
        with rules.lock:
            record = rules.loads.get(key)
            modified = rules.modified.get(path, os.path.getmtime(path))
        if force:
            load = True
        elif record is not None and now - record[1] <= LOAD_METADATA_DAYS * DAY:
            load = record[0] != digest
        else:  # no metadata (or expired): load unless the file itself is older than 64 days
            load = now - modified <= LOAD_METADATA_DAYS * DAY
        duck.execute(
            f"DELETE FROM {history} WHERE FILE_NAME = ? AND TABLE_NAME = ? AND SCHEMA_NAME = ?",
            [path, table, schema],
        )
        if load:
            loading.append((key, digest))
        else:
            duck.execute(
                f"INSERT INTO {history} VALUES (?, ?, ?, ?, 'LOADED', 0, 0, NULL, NULL, NULL, "
                "NULL, 0, 1)",
                [schema, path, table, "1970-01-01T00:00:00+00:00"],
            )
    return loading


def _forget_loads(rules: StrictRules, connection: Any, statement: exp.Expression) -> None:
    kind = str(statement.args.get("kind") or "TABLE").upper()
    table = statement.find(exp.Table)
    if kind != "TABLE" or table is None:
        return
    if isinstance(statement, exp.Create) and statement.args.get("exists"):
        return  # CREATE … IF NOT EXISTS keeps an existing table (and its load metadata)
    database = str(table.catalog or connection.database)
    schema = str(table.db or connection.schema)
    name = table.name if table.this.quoted else table.name.upper()
    with rules.lock:
        for key in [k for k in rules.loads if k[:3] == (database, schema, name)]:
            del rules.loads[key]


# -- PUT -----------------------------------------------------------------------------------------


def _protect_existing(rules: StrictRules, put: exp.Put, answer: dict[str, Any]) -> None:
    overwrite = any(
        isinstance(p, exp.Property) and p.name.upper() == "OVERWRITE" and _true(p.args.get("value"))
        for p in put.args.get("properties") or []
    )
    url = str((answer.get("data") or {}).get("stageInfo", {}).get("presignedUrl") or "")
    if overwrite or "/fs_bucket/" not in url:
        return
    from urllib.parse import unquote

    path = unquote(url.split("/fs_bucket/", 1)[1])
    if os.path.isfile(os.path.join(_stage().LOCAL_BUCKET_PATH, path)):
        with rules.lock:
            rules.keep.add(path)
