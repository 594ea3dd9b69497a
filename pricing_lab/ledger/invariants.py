"""The ledger invariants of SPEC §5 (1, 2, 3 and 5), checked on the output tables of a replay.

`check_invariants` returns every problem found; `assert_invariants` raises `InvariantViolation`.
Both engines run the check at the end of every replay: a violation is a bug in pricing_lab. The
checks read only the outputs and the inputs (never engine state).

The check runs after every replay, so it is built to be cheap at 10M entries: the string keys are
encoded once as integer codes (customer and currency, grant), then small compiled loops walk the
ledger in entry order keeping running state per group in arrays — no sort, no group-by on strings.
Invariant 3 matches CONSUMED entries to costs (on (event_id, feature_id)) and costs to denied
events (on event_id) through a 64-bit hash of the keys, checks the strings of every match, and
falls back to comparing the strings themselves whenever the hashes could mislead (two table rows
with one hash, or a match whose strings differ): the result is exact either way. The hash table of
the costs' keys (`ConsumptionKeys`) depends on the events only, so replays of several scenarios
over the same events build it once (`consumption_keys(…, like=)`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import polars as pl
from numba import njit

from pricing_lab.errors import InvariantViolation, Problem
from pricing_lab.ledger.inputs import PreparedReplay, prepare
from pricing_lab.ledger.model import ReplayInput
from pricing_lab.ledger.order import TYPE_RANK
from pricing_lab.timeutil import NEVER_US

MAX_LISTED = 20


def check_invariants(
    ledger: pl.DataFrame,
    denied_events: pl.DataFrame,
    replay_input: ReplayInput | PreparedReplay,
    *,
    keys: ConsumptionKeys | None = None,
) -> list[Problem]:
    """Every breach of SPEC §5 invariants 1, 2, 3 and 5 in a replay's outputs (empty: all hold).

    1. per customer and currency, each `balance_after` is the running sum of `amount`;
    2. no grant's remaining amount goes below 0, except the OVERDRAFT grant's;
    3. overdraft mode: each event's CONSUMED amounts equal its cost, feature by feature; block mode:
       each event is either fully consumed or listed once in the denied events;
    5. each CONSUMED entry draws from the first grant in draw-down order that still had credits
       (the OVERDRAFT grant only when no other grant had any).

    `keys`: `consumption_keys(prepared.consumptions)` of this very prepared replay, when the
    caller keeps it for the next replay of the same events (built here otherwise).
    """
    prepared = replay_input if isinstance(replay_input, PreparedReplay) else prepare(replay_input)
    if keys is not None and keys.consumptions is not prepared.consumptions:
        keys = None  # it describes another table
    if not ledger["entry_id"].is_sorted():  # the engines write entries in order: no sort needed
        ledger = ledger.sort("entry_id", maintain_order=True)
    columns = _Columns.of(ledger)
    problems: list[Problem] = []
    problems += _entry_ids(ledger)
    problems += _running_sums(ledger, columns)
    problems += _remaining_never_negative(ledger, columns)
    problems += _costs_consumed(ledger, columns, denied_events, prepared, keys)
    problems += _drawdown_order(ledger, columns, prepared)
    return problems


def assert_invariants(
    ledger: pl.DataFrame,
    denied_events: pl.DataFrame,
    replay_input: ReplayInput | PreparedReplay,
    *,
    keys: ConsumptionKeys | None = None,
) -> None:
    """Raise `InvariantViolation` listing every broken invariant (always a pricing_lab bug)."""
    problems = check_invariants(ledger, denied_events, replay_input, keys=keys)
    if problems:
        lines = "\n".join(f"  {p}" for p in problems)
        raise InvariantViolation(
            f"the ledger breaks {len(problems)} SPEC §5 invariant check(s) — this is a bug in "
            f"pricing_lab, please report it:\n{lines}"
        )


KEY_COLUMNS = ("customer_id", "currency_id", "grant_id")
COST_KEYS = ["event_id", "feature_id"]  # what a CONSUMED entry and its cost row have in common
# Rows hashed at once (`_row_hash`), and whose hash match `_lookup` confirms on the strings.
CHECK_SLICE_ROWS = 2_000_000


@dataclass(frozen=True, slots=True)
class _KeyTable:
    """The rows of a table of string keys, findable by a 64-bit hash of their values."""

    keys: pl.DataFrame  # the key columns
    hashes: np.ndarray  # uint64 `_row_hash` of each row
    slots: np.ndarray  # `_hash_slots` of the rows (-1: an empty slot); empty unless `distinct`
    distinct: bool  # no two rows have one hash (otherwise the table cannot settle a lookup)


def _key_table(keys: pl.DataFrame) -> _KeyTable:
    hashes = np.asarray(_row_hash(keys), dtype=np.uint64)
    slots, distinct = _hash_slots(hashes)
    return _KeyTable(keys=keys, hashes=hashes, slots=slots, distinct=distinct)


@dataclass(frozen=True, slots=True)
class ConsumptionKeys:
    """The (event_id, feature_id) keys of a consumption table (`PreparedReplay.consumptions`) as
    a hash table, for invariant 3. It depends only on the events, not on their costs: scenarios
    over the same events share one (`consumption_keys(…, like=)`)."""

    consumptions: pl.DataFrame  # the table it describes (`check_invariants` uses it for no other)
    table: _KeyTable


def consumption_keys(
    consumptions: pl.DataFrame, *, like: ConsumptionKeys | None = None
) -> ConsumptionKeys:
    """The key table of `consumptions`; that of `like` (no work but a comparison) when `like`
    describes a table with the same keys, value for value and row by row."""
    keys = consumptions.select(COST_KEYS)
    if like is not None and _same_values(like.table.keys, keys):
        return replace(like, consumptions=consumptions)
    return ConsumptionKeys(consumptions=consumptions, table=_key_table(keys))


def _same_values(a: pl.DataFrame, b: pl.DataFrame) -> bool:
    return a.schema == b.schema and a.height == b.height and a.equals(b, null_equal=True)


@dataclass(frozen=True, slots=True)
class _Columns:
    """The ledger's columns as NumPy arrays, in entry order, for the compiled loops."""

    amount: np.ndarray  # int64 unscaled amounts
    balance: np.ndarray  # int64 unscaled balance_after
    group: np.ndarray  # code of (customer_id, currency_id), 0 ≤ code < n_groups
    n_groups: int
    grant: np.ndarray  # code of grant_id, 0 ≤ code < len(grant_ids)
    grant_ids: pl.Series  # grant_id of each code (None for the code of a null grant_id)
    consumed: np.ndarray  # bool: a CONSUMED entry
    granted: np.ndarray  # bool: a GRANTED entry
    overdraft: np.ndarray  # bool: an entry of the OVERDRAFT grant

    @staticmethod
    def of(ledger: pl.DataFrame) -> _Columns:
        # The key columns in threads (Polars releases the GIL): 0.54 → 0.33 s at 10M entries;
        # encoding them in one parallel select was slower.
        with ThreadPoolExecutor(max_workers=3) as pool:
            encoded = pool.map(_codes, [ledger[name] for name in KEY_COLUMNS])
            (customer, n_customers, _), (currency, n_currencies, _), (grant, _, grant_ids) = encoded
        flags = ledger.select(
            _unscaled("amount"),
            _unscaled("balance_after"),
            (pl.col("entry_type") == "CONSUMED").fill_null(False).alias("consumed"),
            (pl.col("entry_type") == "GRANTED").fill_null(False).alias("granted"),
            (pl.col("grant_type") == "OVERDRAFT").fill_null(False).alias("overdraft"),
        )
        return _Columns(
            amount=flags["amount"].to_numpy(),
            balance=flags["balance_after"].to_numpy(),
            group=customer * n_currencies + currency,
            n_groups=n_customers * n_currencies,
            grant=grant,
            grant_ids=grant_ids,
            consumed=flags["consumed"].to_numpy(),
            granted=flags["granted"].to_numpy(),
            overdraft=flags["overdraft"].to_numpy(),
        )


def _unscaled(name: str) -> pl.Expr:
    """A Decimal column's unscaled values as int64 (a null counts as 0: the engines write none)."""
    return pl.col(name).to_physical().cast(pl.Int64).fill_null(0)


def _codes(column: pl.Series) -> tuple[np.ndarray, int, pl.Series]:
    """Integer codes for a string column: 0 … k-1 for its k distinct values and k for null.
    Returns the codes (int64), k + 1, and the value of each code (None for the last)."""
    column = column.cast(pl.String)
    if column.null_count() == 0 and len(column) > 0 and (column == column[0]).all():
        # A single value (the currency, most often): nothing to encode.
        return np.zeros(len(column), dtype=np.int64), 2, pl.Series([column[0], None])
    # A fresh category mapping: its codes are dense from 0, and it is freed with the column (the
    # global one would keep every string it ever saw).
    categorical = column.cast(pl.Categorical(pl.Categories.random()))
    dtype = categorical.dtype
    assert isinstance(dtype, pl.Categorical)
    values = dtype.categories.to_series()
    codes = categorical.to_physical().cast(pl.Int64).fill_null(len(values)).to_numpy()
    return codes, len(values) + 1, values.extend(pl.Series([None], dtype=pl.String))


def _listed(ledger: pl.DataFrame, bad: np.ndarray, message: str) -> list[Problem]:
    """The first MAX_LISTED entries flagged in `bad`, by entry_id, then how many more there are."""
    rows = np.flatnonzero(bad)
    problems = [
        Problem(path=f"ledger[entry_id={entry_id}]", message=message)
        for entry_id in ledger["entry_id"].gather(rows[:MAX_LISTED]).to_list()
    ]
    if len(rows) > MAX_LISTED:
        problems.append(Problem(path="ledger", message=f"… {len(rows) - MAX_LISTED} more"))
    return problems


def _entry_ids(ledger: pl.DataFrame) -> list[Problem]:
    ids = ledger["entry_id"]
    if ids.null_count() == 0 and np.array_equal(ids.to_numpy(), np.arange(1, ledger.height + 1)):
        return []
    return [Problem(path="ledger.entry_id", message="entry ids are not 1, 2, … n")]


# --- invariant 1 -----------------------------------------------------------------------------


def _running_sums(ledger: pl.DataFrame, columns: _Columns) -> list[Problem]:
    bad = _running_sum_breaks(columns.group, columns.amount, columns.balance, columns.n_groups)
    return _listed(
        ledger, bad, "invariant 1: balance_after is not the running sum of amounts for its currency"
    )


@njit(cache=True)
def _running_sum_breaks(
    group: np.ndarray, amount: np.ndarray, balance: np.ndarray, n_groups: int
) -> np.ndarray:  # pragma: no cover - compiled
    """Entries whose balance is not the running sum of their group's amounts."""
    total = np.zeros(n_groups, dtype=np.int64)
    bad = np.zeros(len(group), dtype=np.bool_)
    for i in range(len(group)):
        total[group[i]] += amount[i]
        bad[i] = total[group[i]] != balance[i]
    return bad


# --- invariant 2 -----------------------------------------------------------------------------


def _remaining_never_negative(ledger: pl.DataFrame, columns: _Columns) -> list[Problem]:
    bad = _negative_remaining(
        columns.grant, columns.amount, columns.overdraft, len(columns.grant_ids)
    )
    return _listed(ledger, bad, "invariant 2: the grant's remaining amount goes below 0")


@njit(cache=True)
def _negative_remaining(
    grant: np.ndarray, amount: np.ndarray, overdraft: np.ndarray, n_grants: int
) -> np.ndarray:  # pragma: no cover - compiled
    """Entries after which their grant's remaining amount is below 0 (OVERDRAFT entries exempt)."""
    remaining = np.zeros(n_grants, dtype=np.int64)
    bad = np.zeros(len(grant), dtype=np.bool_)
    for i in range(len(grant)):
        remaining[grant[i]] += amount[i]
        bad[i] = remaining[grant[i]] < 0 and not overdraft[i]
    return bad


# --- invariant 3 -----------------------------------------------------------------------------


def _costs_consumed(
    ledger: pl.DataFrame,
    columns: _Columns,
    denied: pl.DataFrame,
    prepared: PreparedReplay,
    cost_keys: ConsumptionKeys | None,
) -> list[Problem]:
    """Invariant 3: compare each (event, feature)'s CONSUMED total with its cost, and check the
    denied events (block mode)."""
    consumptions = prepared.consumptions
    replayed, cost = _costs(prepared)
    keys = COST_KEYS
    table = cost_keys.table if cost_keys is not None else consumptions.select(keys)
    match = _lookup(table, replayed, ledger.select(keys), columns.consumed)
    if match is None:
        entries, cost_rows = _match_exactly(ledger, columns.consumed, consumptions, replayed)
    else:
        entries = np.flatnonzero(match >= 0)
        cost_rows = match[entries]
    consumed, has_consumed = _consumed_per_cost(entries, cost_rows, columns.amount, len(cost))

    problems: list[Problem] = []
    is_denied = np.zeros(len(cost), dtype=np.bool_)
    if prepared.source.enforcement == "block":
        denied_problems, is_denied = _denied_events(denied, consumptions, replayed)
        problems += denied_problems
    # A denied event must have no CONSUMED entry; any other costed pair must consume its cost.
    bad_costs = replayed & np.where(is_denied, has_consumed, ~has_consumed | (consumed != cost))
    bad = consumptions.select(keys).filter(pl.Series(bad_costs))
    # CONSUMED entries of a pair that has no cost are always wrong (listed once per pair).
    uncosted = columns.consumed.copy()
    uncosted[entries] = False
    if uncosted.any():
        extra = ledger.select(keys).filter(pl.Series(uncosted))
        bad = pl.concat([bad, extra.unique(maintain_order=True)])
    for event_id, feature_id in bad.head(MAX_LISTED).iter_rows():
        problems.append(
            Problem(
                path=f"ledger[event_id={event_id}, feature_id={feature_id}]",
                message="invariant 3: the CONSUMED amounts differ from the event's cost",
            )
        )
    return problems


def _costs(prepared: PreparedReplay) -> tuple[np.ndarray, np.ndarray]:
    """Per row of `prepared.consumptions`: whether it is a costed pair that is replayed (inside
    the horizon, cost above 0), and its cost unscaled at the ledger's scale."""
    scale = prepared.scale
    factors = {c.id: 10 ** (scale - c.precision) for c in prepared.currencies}
    if len(set(factors.values())) == 1:  # one currency, or all at one precision: no lookup
        factor = pl.lit(next(iter(factors.values())), dtype=pl.Int64)
    else:
        factor = pl.col("currency_id").replace_strict(factors, return_dtype=pl.Int64)
    costs = prepared.consumptions.select(
        (
            (pl.col("timestamp") >= prepared.start)
            & (pl.col("timestamp") < prepared.until)
            & (pl.col("cost_units") > 0)
        )
        .fill_null(False)  # an event that matched no feature has a row with a null cost
        .alias("replayed"),
        (pl.col("cost_units") * factor).fill_null(0).alias("cost"),
    )
    return costs["replayed"].to_numpy(), costs["cost"].to_numpy()


def _match_exactly(
    ledger: pl.DataFrame, consumed: np.ndarray, consumptions: pl.DataFrame, replayed: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(entry rows, cost rows): each CONSUMED entry with the replayed consumption row of its
    (event, feature), by a join on the strings (the slow, exact fallback of `_lookup`)."""
    keys = ["event_id", "feature_id"]
    costs = consumptions.select(keys).with_row_index("cost").filter(pl.Series(replayed))
    pairs = (
        ledger.select(keys)
        .with_row_index("entry")
        .filter(pl.Series(consumed))
        .join(costs, on=keys, how="inner")
    )
    return pairs["entry"].cast(pl.Int64).to_numpy(), pairs["cost"].cast(pl.Int64).to_numpy()


@njit(cache=True)
def _consumed_per_cost(
    entries: np.ndarray, cost_rows: np.ndarray, amount: np.ndarray, n_costs: int
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """Per cost row: the total consumed by its matched entries (as a positive amount), and whether
    it has any."""
    total = np.zeros(n_costs, dtype=np.int64)
    has = np.zeros(n_costs, dtype=np.bool_)
    for k in range(len(entries)):
        total[cost_rows[k]] -= amount[entries[k]]
        has[cost_rows[k]] = True
    return total, has


def _denied_events(
    denied: pl.DataFrame, consumptions: pl.DataFrame, replayed: np.ndarray
) -> tuple[list[Problem], np.ndarray]:
    """Block mode: the problems of the denied events table (an event denied twice, a denied
    event that is not a replayed costed one), and per consumption row whether its event is
    denied (set for replayed rows only)."""
    denied_ids = denied.select("event_id")
    everyone = np.ones(denied.height, dtype=np.bool_)
    match = _lookup(denied_ids, everyone, consumptions.select("event_id"), replayed)
    if match is None:  # two denied events with one hash: the same id twice, or a collision
        return _denied_events_exactly(denied_ids["event_id"], consumptions, replayed)
    # Distinct hashes: no event is denied twice.
    is_denied = match >= 0
    replayed_denied = np.zeros(denied.height, dtype=np.bool_)
    replayed_denied[match[is_denied]] = True
    return _unknown_denied(denied_ids["event_id"].filter(pl.Series(~replayed_denied))), is_denied


def _denied_events_exactly(
    denied_ids: pl.Series, consumptions: pl.DataFrame, replayed: np.ndarray
) -> tuple[list[Problem], np.ndarray]:
    """`_denied_events` by comparing the strings (slower, exact)."""
    problems: list[Problem] = []
    if denied_ids.is_duplicated().any():
        problems.append(Problem(path="denied_events", message="an event is denied twice"))
    costed_ids = consumptions["event_id"].filter(pl.Series(replayed))
    problems += _unknown_denied(denied_ids.filter(~denied_ids.is_in(costed_ids.implode())))
    is_denied = consumptions["event_id"].is_in(denied_ids.implode()).to_numpy() & replayed
    return problems, is_denied


def _unknown_denied(event_ids: pl.Series) -> list[Problem]:
    return [
        Problem(
            path=f"denied_events[event_id={event_id}]",
            message="invariant 3: a denied event that costs nothing or is not replayed",
        )
        for event_id in event_ids.head(MAX_LISTED).to_list()
    ]


def _row_hash(frame: pl.DataFrame) -> np.ndarray:
    """A 64-bit hash of each row of a frame of string columns (tests replace it with poor ones to
    exercise the exact fallbacks). Hashed a slice of rows at a time: at 15M rows, that takes a
    third of the transient memory of one pass over all rows, and less time."""
    hashes = np.empty(frame.height, dtype=np.uint64)
    row = pl.struct(pl.all().cast(pl.String)).hash()
    for lo in range(0, frame.height, CHECK_SLICE_ROWS):
        part = frame.slice(lo, CHECK_SLICE_ROWS).select(row).to_series()
        hashes[lo : lo + len(part)] = part.to_numpy()
    return hashes


def _lookup(
    table: pl.DataFrame | _KeyTable,
    in_table: np.ndarray,
    queries: pl.DataFrame,
    asked: np.ndarray,
) -> np.ndarray | None:
    """For each row of `queries` that is `asked`, the row of `table` (among those `in_table`)
    with the same values in every column; -1 if none (or not asked).

    A lookup by 64-bit row hash, then a check of the strings of every match: None when the hash
    cannot settle it exactly (two table rows with one hash, or a match whose strings differ); the
    caller then compares the strings itself, slowly. `table` is a frame or its prebuilt
    `_KeyTable` (which holds all its rows: those not `in_table` are dropped from the matches)."""
    if isinstance(table, _KeyTable):
        query_hashes = _row_hash(queries)
        keys = table
    else:
        with ThreadPoolExecutor(max_workers=2) as pool:  # the table and the queries' hashes
            built = pool.submit(_key_table, table)
            query_hashes = _row_hash(queries)
            keys = built.result()
    if not keys.distinct:
        return None
    match = _hash_probe(
        keys.slots, keys.hashes, in_table, np.asarray(query_hashes, dtype=np.uint64), asked
    )
    matched = match >= 0
    if matched.any():
        # Compare every query row with the row it matched, or with row 0 (spares gathering the
        # queries' side); the gathers are expressions so that Polars runs the columns in parallel,
        # a slice of rows at a time (the gathered strings take 16 bytes a row each).
        row = pl.Series(np.maximum(match, 0))
        rows = keys.keys
        unmatched = pl.Series(~matched)
        for lo in range(0, queries.height, CHECK_SLICE_ROWS):
            gathered = queries.slice(lo, CHECK_SLICE_ROWS).select(
                pl.col(name).eq_missing(pl.lit(rows[name]).gather(row.slice(lo, CHECK_SLICE_ROWS)))
                for name in rows.columns
            )
            same = pl.all_horizontal(pl.all()) | pl.lit(unmatched.slice(lo, CHECK_SLICE_ROWS))
            if not gathered.select(same).to_series().all():
                return None
    return match


@njit(cache=True, nogil=True)
def _hash_slots(table_hashes: np.ndarray) -> tuple[np.ndarray, bool]:  # pragma: no cover - compiled
    """An open-addressing hash table (linear probing, at most half full) of the table rows: the
    row in each slot (-1: empty), and whether the rows' hashes are all distinct (if not, the
    table is left unfinished and empty: a lookup would be ambiguous)."""
    bits = 1
    while (1 << bits) < 2 * len(table_hashes):
        bits += 1
    mask = np.int64((1 << bits) - 1)
    slots = np.full(1 << bits, -1, dtype=np.int32)
    for row in range(len(table_hashes)):
        slot = _slot(table_hashes[row], bits)
        while slots[slot] >= 0:
            if table_hashes[slots[slot]] == table_hashes[row]:
                return np.empty(0, dtype=np.int32), False
            slot = (slot + np.int64(1)) & mask
        slots[slot] = row
    return slots, True


@njit(cache=True, nogil=True)
def _hash_probe(
    slots: np.ndarray,
    table_hashes: np.ndarray,
    in_table: np.ndarray,
    query_hashes: np.ndarray,
    asked: np.ndarray,
) -> np.ndarray:  # pragma: no cover - compiled
    """For each asked query, the table row with the same hash if it is `in_table` (-1: none, or
    not asked), by one probe of `_hash_slots`' table (the table rows' hashes are distinct)."""
    bits = 0
    while (1 << bits) < len(slots):
        bits += 1
    mask = np.int64(len(slots) - 1)
    match = np.full(len(query_hashes), -1, dtype=np.int64)
    for i in range(len(query_hashes)):
        if not asked[i]:
            continue
        slot = _slot(query_hashes[i], bits)
        while slots[slot] >= 0:
            row = slots[slot]
            if table_hashes[row] == query_hashes[i]:
                if in_table[row]:
                    match[i] = row
                break
            slot = (slot + np.int64(1)) & mask
    return match


@njit(cache=True, nogil=True)
def _slot(value: np.uint64, bits: int) -> np.int64:  # pragma: no cover - compiled
    # Fibonacci hashing: the top bits of value × 2^64/φ, so that a poor hash (an injected one, in
    # tests) still spreads over the table.
    return np.int64((value * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - bits))


# --- invariant 5 -----------------------------------------------------------------------------


def _drawdown_order(
    ledger: pl.DataFrame, columns: _Columns, prepared: PreparedReplay
) -> list[Problem]:
    if ledger.height == 0:
        return []
    rank = _drawdown_ranks(ledger, columns, prepared)[columns.grant]
    n_ranks = len(columns.grant_ids)
    if not _one_group_per_grant(columns.group, rank, n_ranks):
        # A grant id under several customers or currencies (only in a broken ledger): follow each
        # (group, grant) pair on its own. Numbering the pairs in (group, rank) order keeps the
        # draw-down order within each group, which is all the loop compares.
        pairs = columns.group * n_ranks + rank
        unique_pairs, rank = np.unique(pairs, return_inverse=True)
        n_ranks = len(unique_pairs)
    bad = _drawdown_breaks(
        columns.group,
        rank,
        columns.consumed,
        columns.overdraft,
        columns.amount,
        columns.n_groups,
        n_ranks,
    )
    return _listed(
        ledger,
        bad,
        "invariant 5: drawn from a grant while one earlier in draw-down order had credits",
    )


def _drawdown_ranks(
    ledger: pl.DataFrame, columns: _Columns, prepared: PreparedReplay
) -> np.ndarray:
    """Each grant code's position in draw-down order (SPEC §5, `order.drawdown_key`): grants of the
    input, and auto-recharge grants as their GRANTED entry and the recharge settings describe
    them. Grants known to neither (the OVERDRAFT grant) come last."""
    known = prepared.grant_table.select(
        "grant_id",
        "priority",
        pl.col("expires_at").dt.epoch("us").fill_null(NEVER_US).alias("expires"),
        pl.col("effective_at").dt.epoch("us").alias("effective"),
    )
    # Per grant code: its first entry (for its grant type) and its first GRANTED entry (for an
    # auto-recharge grant's customer, currency and time); null when there is none.
    first, first_granted = _first_rows(columns.grant, columns.granted, len(columns.grant_ids))
    grants = pl.DataFrame(
        {
            "grant_id": columns.grant_ids,
            "first": pl.Series(first).set(pl.Series(first < 0), None),
            "granted": pl.Series(first_granted).set(pl.Series(first_granted < 0), None),
        }
    ).with_row_index("code")
    recharged = _recharge_grants(
        ledger,
        grants.filter(pl.col("grant_id").str.contains(":auto_recharge:", literal=True)),
        prepared,
    )
    order = (
        grants.select(
            "code",
            "grant_id",
            pl.lit(ledger["grant_type"]).gather(pl.col("first")).alias("grant_type"),
        )
        .join(
            pl.concat([known, recharged]).unique("grant_id", keep="first", maintain_order=True),
            on="grant_id",
            how="left",
            maintain_order="left",
        )
        .with_columns(
            pl.col("grant_type").replace_strict(TYPE_RANK, return_dtype=pl.Int64).alias("type_rank")
        )
        .sort(
            "priority",
            "expires",
            "type_rank",
            "effective",
            "grant_id",
            nulls_last=True,
            maintain_order=True,
        )["code"]
        .to_numpy()
    )
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(len(order))
    return ranks


def _recharge_grants(
    ledger: pl.DataFrame, grants: pl.DataFrame, prepared: PreparedReplay
) -> pl.DataFrame:
    """The draw-down keys of auto-recharge grants (`grants`: grant_id and the row of its GRANTED
    entry): priority 0, effective when granted, expiring as the customer's settings say."""
    expiry = {
        (s.customer_id, s.currency_id): s.grant_expiry for s in prepared.source.auto_recharges
    }
    settings = pl.DataFrame(
        {
            "customer_id": [key[0] for key in expiry],
            "currency_id": [key[1] for key in expiry],
            "expiry": list(expiry.values()),
        },
        schema={"customer_id": pl.String, "currency_id": pl.String, "expiry": pl.String},
    )
    rows = grants["granted"].drop_nulls()
    return (
        ledger.select("customer_id", "currency_id", pl.col("timestamp").alias("at"))[rows]
        .with_columns(grants["grant_id"].filter(grants["granted"].is_not_null()))
        .join(settings, on=["customer_id", "currency_id"], how="left", maintain_order="left")
        .select(
            "grant_id",
            pl.lit(0, dtype=pl.Int64).alias("priority"),
            pl.when(pl.col("expiry") == "1_month")
            .then(pl.col("at").dt.offset_by("1mo").dt.epoch("us"))
            .when(pl.col("expiry") == "1_year")
            .then(pl.col("at").dt.offset_by("1y").dt.epoch("us"))
            .otherwise(pl.lit(NEVER_US, dtype=pl.Int64))
            .alias("expires"),
            pl.col("at").dt.epoch("us").alias("effective"),
        )
    )


@njit(cache=True)
def _first_rows(
    grant: np.ndarray, granted: np.ndarray, n_grants: int
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """Per grant code: its first entry, and its first GRANTED entry (-1: none)."""
    first = np.full(n_grants, -1, dtype=np.int64)
    first_granted = np.full(n_grants, -1, dtype=np.int64)
    for i in range(len(grant) - 1, -1, -1):
        first[grant[i]] = i
        if granted[i]:
            first_granted[grant[i]] = i
    return first, first_granted


@njit(cache=True)
def _one_group_per_grant(
    group: np.ndarray, grant: np.ndarray, n_grants: int
) -> bool:  # pragma: no cover - compiled
    """Whether every grant's entries all have one customer and currency."""
    owner = np.full(n_grants, -1, dtype=np.int64)
    for i in range(len(group)):
        if owner[grant[i]] < 0:
            owner[grant[i]] = group[i]
        elif owner[grant[i]] != group[i]:
            return False
    return True


@njit(cache=True)
def _drawdown_breaks(
    group: np.ndarray,
    rank: np.ndarray,
    consumed: np.ndarray,
    overdraft: np.ndarray,
    amount: np.ndarray,
    n_groups: int,
    n_ranks: int,
) -> np.ndarray:  # pragma: no cover - compiled
    """CONSUMED entries drawn from a grant while one earlier in draw-down order had credits.

    Grants are identified by their rank in draw-down order; each belongs to one group (customer
    and currency). Per group, `first_live` is the smallest rank among its live grants (positive
    remaining, not the OVERDRAFT grant), n_ranks if none: a CONSUMED entry must draw from that
    grant, or from the OVERDRAFT grant when there is none. When the first live grant stops being
    live, the group's grants (a linked list through `next_grant`) are scanned for the next one.
    """
    remaining = np.zeros(n_ranks, dtype=np.int64)
    live = np.zeros(n_ranks, dtype=np.bool_)
    first_live = np.full(n_groups, n_ranks, dtype=np.int64)
    seen = np.zeros(n_ranks, dtype=np.bool_)
    first_grant = np.full(n_groups, -1, dtype=np.int64)
    next_grant = np.full(n_ranks, -1, dtype=np.int64)
    bad = np.zeros(len(group), dtype=np.bool_)
    for i in range(len(group)):
        c = group[i]
        g = rank[i]
        if not seen[g]:
            seen[g] = True
            next_grant[g] = first_grant[c]
            first_grant[c] = g
        if consumed[i]:
            if overdraft[i]:
                bad[i] = first_live[c] < n_ranks
            else:
                bad[i] = first_live[c] < g
        remaining[g] += amount[i]
        now_live = remaining[g] > 0 and not overdraft[i]
        if now_live and not live[g]:
            live[g] = True
            first_live[c] = min(first_live[c], g)
        elif live[g] and not now_live:
            live[g] = False
            if first_live[c] == g:
                first_live[c] = n_ranks
                other = first_grant[c]
                while other >= 0:
                    if live[other] and other < first_live[c]:
                        first_live[c] = other
                    other = next_grant[other]
    return bad
