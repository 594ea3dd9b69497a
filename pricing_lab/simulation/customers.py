"""Customer inputs of a replay (subscriptions, grants, top-ups, auto-recharge) from YAML or tables.

Two forms, documented in docs/customers.md:

* one YAML file with a `customers:` list (each customer with its subscriptions, grants, top-ups and
  auto-recharge settings), handy for a few hand-written customers;
* a folder of tables for thousands of customers: `subscriptions`, `grants`, `auto_recharge`
  (each `.csv` or `.parquet`; any may be missing), or the same tables in a DuckDB database.

Every problem is reported at once with where it came from (`customers[3].grants[0].amount`,
`grants.csv row 17: amount`). Amounts are read from their text into `Decimal`, never via float.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import duckdb

from pricing_lab.catalog.model import ID_PATTERN
from pricing_lab.catalog.validate import MAX_DECIMAL_PLACES, MAX_INTEGER_DIGITS
from pricing_lab.catalog.yaml_format import parse_yaml, read_text_file
from pricing_lab.errors import InputError, Problem, ValidationError
from pricing_lab.events.ingest import read_error
from pricing_lab.ledger.model import AutoRecharge, Grant, Subscription
from pricing_lab.limits import (
    GRANT_EXPIRIES,
    INPUT_GRANT_SOURCES,
    INPUT_GRANT_TYPES,
    TIMESTAMP_MIN,
)
from pricing_lab.timeutil import as_utc

_EARLIEST = datetime.fromisoformat(TIMESTAMP_MIN).replace(tzinfo=UTC)

# The replay's own limits (`pricing_lab.limits`): what a customer file accepts, the replay does.
GRANT_TYPES = INPUT_GRANT_TYPES
GRANT_SOURCES = INPUT_GRANT_SOURCES
TABLE_NAMES = ("subscriptions", "grants", "auto_recharge")


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerInputs:
    """What a replay knows of customers besides their usage.

    `customer_ids` lists the known customers (for `unknown_customer` rejection) when the input
    names them; None means any customer id in the events is accepted.
    """

    subscriptions: tuple[Subscription, ...] = ()
    grants: tuple[Grant, ...] = ()
    auto_recharges: tuple[AutoRecharge, ...] = ()
    customer_ids: frozenset[str] | None = None


@dataclass(slots=True)
class _Reader:
    """Collects problems while converting loosely typed values, each under its path."""

    problems: list[Problem] = field(default_factory=list)

    def problem(self, path: str, message: str) -> None:
        self.problems.append(Problem(path=path, message=message))

    def text(self, path: str, value: object, *, required: bool = True) -> str | None:
        if value is None or value == "":
            if required:
                self.problem(path, "missing")
            return None
        return str(value)

    def ident(self, path: str, value: object) -> str:
        text = self.text(path, value)
        if text is not None and not ID_PATTERN.match(text):
            self.problem(path, f"invalid id {text!r}")
        return text or ""

    def decimal(
        self, path: str, value: object, *, required: bool = True, positive: bool = False
    ) -> Decimal | None:
        if value is None or value == "":
            if required:
                self.problem(path, "missing")
            return None
        if isinstance(value, bool):
            self.problem(path, f"expected a number, got {value!r}")
            return None
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            self.problem(path, f"expected a number, got {value!r}")
            return None
        if not number.is_finite():
            self.problem(path, f"expected a finite number, got {value!r}")
            return None
        if number and number.adjusted() >= MAX_INTEGER_DIGITS:
            self.problem(path, f"must be less than 10^{MAX_INTEGER_DIGITS}, got {value!r}")
            return None
        if -number.as_tuple().exponent > MAX_DECIMAL_PLACES:  # type: ignore[operator]
            self.problem(path, f"at most {MAX_DECIMAL_PLACES} decimal places, got {value!r}")
            return None
        if positive and number <= 0:
            self.problem(path, f"must be > 0, got {number}")
        return number

    def integer(self, path: str, value: object, default: int = 0) -> int:
        if value is None or value == "":
            return default
        try:
            number = Decimal(str(value).strip())
            if not number.is_finite():
                raise InvalidOperation
        except InvalidOperation:
            self.problem(path, f"expected an integer, got {value!r}")
            return default
        if number and number.adjusted() >= 18:  # checked first: 1e999999999 is an integer too
            self.problem(path, f"must be less than 10^18 in size, got {value!r}")
            return default
        if number != number.to_integral_value():
            self.problem(path, f"expected an integer, got {value!r}")
            return default
        return int(number)

    def timestamp(self, path: str, value: object, *, required: bool = True) -> datetime | None:
        if value is None or value == "":
            if required:
                self.problem(path, "missing")
            return None
        try:
            if isinstance(value, datetime):
                instant = as_utc(value)
            elif isinstance(value, date):
                instant = as_utc(datetime(value.year, value.month, value.day))
            else:
                instant = as_utc(datetime.fromisoformat(str(value).strip().replace("Z", "+00:00")))
        except ValueError:
            self.problem(path, f"expected an ISO timestamp, got {value!r}")
            return None
        except OverflowError:  # an offset that moves year 1 or 9999 out of the calendar
            self.problem(path, f"timestamp out of range: {value!r}")
            return None
        # A time before the supported range (a 0001-01-01 placeholder, a typed 1024 for 2024)
        # would start the replay's horizon there: refused here, with its place. Later times are
        # fine (an `expires_at: 9999-12-31` meaning "never" does nothing within a horizon).
        if instant < _EARLIEST:
            self.problem(
                path,
                f"{value} is before {TIMESTAMP_MIN[:10]}, the earliest time a replay supports",
            )
            return None
        return instant

    def choice(self, path: str, value: object, options: Sequence[str], default: str) -> str:
        if value is None or value == "":
            return default
        text = str(value)
        if text not in options:
            self.problem(path, f"must be one of {', '.join(options)}; got {text!r}")
            return default
        return text


def load_customers(path: str | Path) -> CustomerInputs:
    """Read customer inputs from a YAML file, a folder of tables, or a DuckDB database file."""
    source = Path(path)
    if not source.exists():
        raise InputError(f"{source}: no such file or folder")
    if source.is_dir():
        return _from_tables(source)
    if source.suffix in (".duckdb", ".db"):
        try:
            con = duckdb.connect(str(source), read_only=True)
        except duckdb.Error as exc:
            raise InputError(f"{source}: not a DuckDB database: {_first_line(exc)}") from None
        with con:
            return customers_from_duckdb(con, source=str(source))
    if source.suffix in (".yaml", ".yml"):
        return _from_yaml(source)
    raise InputError(f"{source}: expected a .yaml file, a folder of tables or a .duckdb file")


def _from_yaml(path: Path) -> CustomerInputs:
    document = parse_yaml(read_text_file(path, what="customers"), source=str(path))
    if not isinstance(document, Mapping) or not isinstance(document.get("customers"), list):
        raise InputError(f"{path}: expected a mapping with a `customers:` list")
    return customers_from_mapping(document, source=str(path))


def customers_from_mapping(document: Mapping[str, Any], *, source: str = "") -> CustomerInputs:
    """Customer inputs from a parsed YAML-like mapping (`customers: [...]`)."""
    reader = _Reader()
    subscriptions: list[Subscription] = []
    grants: list[Grant] = []
    recharges: list[AutoRecharge] = []
    ids: list[str] = []
    for index, entry in enumerate(document.get("customers") or []):
        here = f"customers[{index}]"
        if not isinstance(entry, Mapping):
            reader.problem(here, "expected a mapping")
            continue
        unknown = set(entry) - {"id", "subscriptions", "grants", "top_ups", "auto_recharge"}
        for key in sorted(unknown, key=str):
            reader.problem(f"{here}.{key}", "unknown key")
        customer_id = reader.ident(f"{here}.id", entry.get("id"))
        ids.append(customer_id)
        for s_index, raw in enumerate(_list(reader, f"{here}.subscriptions", entry)):
            row = {"customer_id": customer_id, **raw}
            row.setdefault("subscription_id", f"{customer_id}:{s_index}")
            subscriptions.append(_subscription(reader, f"{here}.subscriptions[{s_index}]", row))
        for g_index, raw in enumerate(_list(reader, f"{here}.grants", entry)):
            row = {"customer_id": customer_id, **raw}
            row.setdefault("grant_id", f"{customer_id}:grant:{g_index}")
            grants.append(_grant(reader, f"{here}.grants[{g_index}]", row))
        for t_index, raw in enumerate(_list(reader, f"{here}.top_ups", entry)):
            row = {"customer_id": customer_id, "type": "PAID", "source": "top_up", **raw}
            row.setdefault("grant_id", f"{customer_id}:top_up:{t_index}")
            row.setdefault("effective_at", raw.get("at"))
            row.pop("at", None)
            grants.append(_grant(reader, f"{here}.top_ups[{t_index}]", row))
        recharge = entry.get("auto_recharge")
        recharge_list = recharge if isinstance(recharge, list) else [recharge] if recharge else []
        for r_index, raw in enumerate(recharge_list):
            path = f"{here}.auto_recharge" + (f"[{r_index}]" if isinstance(recharge, list) else "")
            if not isinstance(raw, Mapping):
                reader.problem(path, "expected a mapping")
                continue
            recharges.append(_auto_recharge(reader, path, {"customer_id": customer_id, **raw}))
    _check_unique(reader, "customers", ids, "customer id")
    return _checked_inputs(
        reader, source, ("grants", "auto_recharge"), subscriptions, grants, recharges, ids
    )


def _checked_inputs(
    reader: _Reader,
    source: str,
    where: tuple[str, str],
    subscriptions: list[Subscription],
    grants: list[Grant],
    recharges: list[AutoRecharge],
    customer_ids: list[str] | None = None,
) -> CustomerInputs:
    """The inputs once grant ids and auto-recharge settings are checked unique (`where`: the
    grants' and the auto-recharge settings' place in the input); every problem raised at once."""
    grants_at, recharges_at = where
    _check_unique(reader, grants_at, [g.grant_id for g in grants], "grant id")
    _check_unique(
        reader,
        recharges_at,
        [f"{r.customer_id}/{r.currency_id}" for r in recharges],
        "auto-recharge for customer/currency",
    )
    if reader.problems:
        raise ValidationError(reader.problems, source=source)
    return CustomerInputs(
        subscriptions=tuple(subscriptions),
        grants=tuple(grants),
        auto_recharges=tuple(recharges),
        customer_ids=None if customer_ids is None else frozenset(customer_ids),
    )


def _list(reader: _Reader, path: str, entry: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    key = path.rsplit(".", 1)[1]
    value = entry.get(key) or []
    if not isinstance(value, list):
        reader.problem(path, "expected a list")
        return []
    good = []
    for index, item in enumerate(value):
        if isinstance(item, Mapping):
            good.append(item)
        else:
            reader.problem(f"{path}[{index}]", "expected a mapping")
    return good


def _subscription(reader: _Reader, path: str, row: Mapping[str, Any]) -> Subscription:
    _unknown_keys(
        reader,
        path,
        row,
        {"subscription_id", "customer_id", "plan", "plan_id", "plan_version", "start", "end"}
        | {"addons"},
    )
    addons_value = row.get("addons") or ()
    if isinstance(addons_value, str):
        addons_value = [a for a in addons_value.replace(";", ",").split(",") if a.strip()]
    elif not isinstance(addons_value, list | tuple):
        reader.problem(f"{path}.addons", f"expected a list of add-on ids, got {addons_value!r}")
        addons_value = ()
    version = row.get("plan_version")
    start = reader.timestamp(f"{path}.start", row.get("start"))
    end = reader.timestamp(f"{path}.end", row.get("end"), required=False)
    if start and end and end <= start:
        reader.problem(f"{path}.end", "must be after start")
    return Subscription(
        subscription_id=str(row.get("subscription_id")),
        customer_id=reader.ident(f"{path}.customer_id", row.get("customer_id")),
        plan_id=reader.ident(f"{path}.plan", row.get("plan") or row.get("plan_id")),
        plan_version=None
        if version in (None, "")
        else reader.integer(f"{path}.plan_version", version),
        start=start or datetime.min,
        end=end,
        addons=tuple(str(a).strip() for a in addons_value),
    )


def _grant(reader: _Reader, path: str, row: Mapping[str, Any]) -> Grant:
    _unknown_keys(
        reader,
        path,
        row,
        {"grant_id", "customer_id", "currency", "currency_id", "amount", "type", "priority"}
        | {"effective_at", "expires_at", "cost_basis", "voided_at", "source"},
    )
    grant_type = reader.choice(f"{path}.type", row.get("type"), GRANT_TYPES, "PROMOTIONAL")
    source = reader.choice(f"{path}.source", row.get("source"), GRANT_SOURCES, "manual")
    cost_basis = reader.decimal(
        f"{path}.cost_basis", row.get("cost_basis"), required=source == "top_up"
    )
    if cost_basis is not None and cost_basis < 0:
        reader.problem(f"{path}.cost_basis", "must be >= 0")
    if cost_basis and grant_type == "PROMOTIONAL":
        reader.problem(f"{path}.cost_basis", "a PROMOTIONAL grant has cost basis 0")
    effective_at = reader.timestamp(f"{path}.effective_at", row.get("effective_at"))
    expires_at = reader.timestamp(f"{path}.expires_at", row.get("expires_at"), required=False)
    if effective_at and expires_at and expires_at <= effective_at:
        reader.problem(f"{path}.expires_at", "must be after effective_at")
    return Grant(
        grant_id=reader.text(f"{path}.grant_id", row.get("grant_id")) or "",
        customer_id=reader.ident(f"{path}.customer_id", row.get("customer_id")),
        currency_id=reader.text(f"{path}.currency", row.get("currency") or row.get("currency_id"))
        or "",
        amount=reader.decimal(f"{path}.amount", row.get("amount"), positive=True) or Decimal(1),
        type=grant_type,  # type: ignore[arg-type]
        priority=reader.integer(f"{path}.priority", row.get("priority")),
        effective_at=effective_at or datetime.min,
        expires_at=expires_at,
        cost_basis=cost_basis if cost_basis is not None else Decimal(0),
        voided_at=reader.timestamp(f"{path}.voided_at", row.get("voided_at"), required=False),
        source=source,  # type: ignore[arg-type]
    )


def _auto_recharge(reader: _Reader, path: str, row: Mapping[str, Any]) -> AutoRecharge:
    _unknown_keys(
        reader,
        path,
        row,
        {"customer_id", "currency", "currency_id", "threshold", "target", "monthly_spend_limit"}
        | {"grant_expiry"},
    )
    threshold = reader.decimal(f"{path}.threshold", row.get("threshold"))
    target = reader.decimal(f"{path}.target", row.get("target"))
    if threshold is not None and target is not None and target <= threshold:
        reader.problem(f"{path}.target", "must be greater than threshold")
    limit = reader.decimal(
        f"{path}.monthly_spend_limit", row.get("monthly_spend_limit"), required=False
    )
    return AutoRecharge(
        customer_id=reader.ident(f"{path}.customer_id", row.get("customer_id")),
        currency_id=reader.text(f"{path}.currency", row.get("currency") or row.get("currency_id"))
        or "",
        threshold=threshold if threshold is not None else Decimal(0),
        target=target if target is not None else Decimal(0),
        monthly_spend_limit=limit,
        grant_expiry=reader.choice(  # type: ignore[arg-type]
            f"{path}.grant_expiry", row.get("grant_expiry"), GRANT_EXPIRIES, "none"
        ),
    )


def _unknown_keys(reader: _Reader, path: str, row: Mapping[str, Any], known: set[str]) -> None:
    for key in sorted(set(row) - known, key=str):
        reader.problem(f"{path}.{key}", "unknown key")


def _check_unique(reader: _Reader, path: str, values: Iterable[str], what: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            reader.problem(path, f"duplicate {what} {value!r}")
        seen.add(value)


def _rows_of(con: duckdb.DuckDBPyConnection, sql: str, label: str) -> list[dict[str, Any]]:
    try:
        relation = con.sql(sql)
        columns = relation.columns
        return [dict(zip(columns, row)) for row in relation.fetchall()]
    except (duckdb.Error, ValueError, OverflowError) as exc:  # e.g. a date Python cannot hold
        raise InputError(f"{label}: cannot read: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    return next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


def _table_rows(
    reader: _Reader,
    label: str,
    rows: list[dict[str, Any]],
    convert: Callable[[_Reader, str, Mapping[str, Any]], Any],
) -> list[Any]:
    return [convert(reader, f"{label} row {index + 1}", row) for index, row in enumerate(rows)]


def _from_tables(folder: Path) -> CustomerInputs:
    con = duckdb.connect()
    found = False
    labels: dict[str, str] = {}
    for name in TABLE_NAMES:
        for suffix, reader_sql in ((".csv", "read_csv"), (".parquet", "read_parquet")):
            file = folder / f"{name}{suffix}"
            if file.exists():
                if name in labels:
                    raise InputError(
                        f"{folder}: both {labels[name]} and {file.name}; keep only one"
                    )
                found = True
                labels[name] = file.name
                options = ", all_varchar = true, header = true" if suffix == ".csv" else ""
                literal = str(file).replace("'", "''")
                query = f"SELECT * FROM {reader_sql}('{literal}'{options})"
                try:
                    con.execute(f'CREATE TABLE "{name}" AS {query}')
                except duckdb.Error as exc:  # the line and DuckDB's reason, as for events
                    raise read_error(str(file), exc) from None
    if not found:
        raise InputError(
            f"{folder}: no customer tables found (expected subscriptions, grants or auto_recharge"
            " as .csv or .parquet)"
        )
    return customers_from_duckdb(con, source=str(folder), labels=labels)


def customers_from_duckdb(
    con: duckdb.DuckDBPyConnection, *, source: str = "", labels: Mapping[str, str] | None = None
) -> CustomerInputs:
    """Customer inputs from tables `subscriptions`, `grants`, `auto_recharge` in a DuckDB database.

    Missing tables are empty. Columns are named like the YAML keys (`customer_id`, `plan_id`,
    `start`, `end`, `addons` separated by `;`; the grant fields of SPEC §5; auto-recharge fields).
    Problems are reported as `<table> row <n>.<column>` (n counts data rows from 1); `labels`
    names a table differently there (a file name, e.g. `grants.csv`).
    """
    names = {name: (labels or {}).get(name, name) for name in TABLE_NAMES}
    present = {row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    reader = _Reader()

    def rows(name: str) -> list[dict[str, Any]]:
        return _rows_of(con, f'SELECT * FROM "{name}"', names[name]) if name in present else []

    subscription_rows = rows("subscriptions")
    for index, row in enumerate(subscription_rows):
        if row.get("subscription_id") in (None, ""):
            row["subscription_id"] = f"{row.get('customer_id')}:{index}"
    subscriptions = _table_rows(reader, names["subscriptions"], subscription_rows, _subscription)
    grants = _table_rows(reader, names["grants"], rows("grants"), _grant)
    recharges = _table_rows(reader, names["auto_recharge"], rows("auto_recharge"), _auto_recharge)
    where = (names["grants"], names["auto_recharge"])
    return _checked_inputs(reader, source, where, subscriptions, grants, recharges)
