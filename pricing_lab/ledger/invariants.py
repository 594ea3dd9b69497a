"""The ledger invariants of SPEC §5 (1, 2, 3 and 5), checked on the output tables of a replay.

`check_invariants` returns every problem found; `assert_invariants` raises `InvariantViolation`.
Both engines run the check at the end of every replay: a violation is a bug in pricing_lab. The
checks read only the outputs and the inputs (never engine state).

The check runs after every replay, so it is built to be cheap at 10M entries: the string keys are
encoded once as integer codes (customer and currency, grant) by their hashes, exactly
(`row_lookup.encode`), then small compiled loops walk the ledger in entry order keeping running
state per group in arrays — no sort, no group-by on strings. A grant's code is its row in the
grant table of the inputs (the grants it does not list, the OVERDRAFT and auto-recharge grants,
numbered after them), so the draw-down order is sorted on that table as it is, with no join.
Sums are checked for overflow: a balance or amount beyond the 64-bit integers the engines compute
with (a wrapped value) is reported, never taken at its wrapped value. Invariant 3 matches CONSUMED
entries to costs (on (event_id, feature_id)) and costs to denied events (on event_id) with
`row_lookup`, exactly: a customer's CONSUMED entries follow their costs' order (both in the order
of things), so the lookup follows each customer's entries as a run.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import polars as pl
from numba import njit

from pricing_lab import small_pages
from pricing_lab.errors import InvariantViolation, Problem
from pricing_lab.ledger.grants import recharge_grants
from pricing_lab.ledger.inputs import PreparedReplay, prepare
from pricing_lab.ledger.model import ReplayInput
from pricing_lab.ledger.order import drawdown_sort_keys
from pricing_lab.ledger.row_lookup import KeyTable, RowHash, encode, key_table, lookup, row_hash

MAX_LISTED = 20
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def check_invariants(
    ledger: pl.DataFrame,
    denied_events: pl.DataFrame,
    replay_input: ReplayInput | PreparedReplay,
    *,
    hash_rows: RowHash = row_hash,
) -> list[Problem]:
    """Every breach of SPEC §5 invariants 1, 2, 3 and 5 in a replay's outputs (empty: all hold).

    1. per customer and currency, each `balance_after` is the running sum of `amount` (and no
       running sum, amount or balance goes beyond the engines' 64-bit integers);
    2. no grant's remaining amount goes below 0, except the OVERDRAFT grant's;
    3. overdraft mode: each event's CONSUMED amounts equal its cost, feature by feature; block mode:
       each event is either fully consumed or listed once in the denied events;
    5. each CONSUMED entry draws from the first grant in draw-down order that still had credits
       (the OVERDRAFT grant only when no other grant had any);

    and rollover conserves credit: each ROLLED_OVER entry (−x on a grant) has, at the same instant
    for the same customer and currency, the GRANTED entry (+x) of the grant `{its id}:rollover`,
    and every rollover grant's GRANTED entry has its ROLLED_OVER entry.

    `hash_rows`: the 64-bit row hash that encodes the keys and matches entries to costs
    (`row_lookup`); any function gives the same answer, a poor one only makes the check slower.
    """
    prepared = replay_input if isinstance(replay_input, PreparedReplay) else prepare(replay_input)
    if not ledger["entry_id"].is_sorted():  # the engines write entries in order: no sort needed
        ledger = ledger.sort("entry_id", maintain_order=True)
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The costs side of invariant 3 reads only the inputs: it is built on a second thread
        # while the ledger's columns are read (Polars and the compiled loops let go of the GIL).
        costs = pool.submit(_Costs.of, prepared, hash_rows)
        columns = _Columns.of(ledger, prepared.grant_table["grant_id"], hash_rows)
        costs_side = costs.result()
    problems: list[Problem] = []
    problems += _entry_ids(ledger)
    problems += _listed(
        ledger,
        columns.beyond,
        "invariant 1: an amount or balance beyond the 64-bit integers the replay computes with",
    )
    problems += _running_sums(ledger, columns)
    problems += _remaining_never_negative(ledger, columns)
    problems += _costs_consumed(ledger, columns, denied_events, prepared, costs_side, hash_rows)
    problems += _drawdown_order(ledger, columns, prepared)
    problems += _rollovers_conserve(ledger)
    return problems


def assert_invariants(
    ledger: pl.DataFrame,
    denied_events: pl.DataFrame,
    replay_input: ReplayInput | PreparedReplay,
) -> None:
    """Raise `InvariantViolation` listing every broken invariant (always a pricing_lab bug)."""
    problems = check_invariants(ledger, denied_events, replay_input)
    if problems:
        lines = "\n".join(f"  {p}" for p in problems)
        raise InvariantViolation(
            f"the ledger breaks {len(problems)} SPEC §5 invariant check(s) — this is a bug in "
            f"pricing_lab, please report it:\n{lines}"
        )


COST_KEYS = ["event_id", "feature_id"]  # what a CONSUMED entry and its cost row have in common


@dataclass(frozen=True, slots=True)
class _Columns:
    """The ledger's columns as NumPy arrays, in entry order, for the compiled loops."""

    amount: np.ndarray  # int64 unscaled amounts
    balance: np.ndarray  # int64 unscaled balance_after
    beyond: np.ndarray  # bool: the amount or balance does not fit in int64 (read as 0 above)
    customer: np.ndarray  # code of customer_id (uint32)
    group: np.ndarray  # code of (customer_id, currency_id), 0 ≤ code < n_groups
    n_groups: int
    grant: np.ndarray  # code of grant_id (uint32), 0 ≤ code < len(grant_ids)
    grant_ids: pl.Series  # grant_id of each code (None for the code of a null grant_id)
    table_grants: int  # codes below it are the rows of the grant table (0 or all of them)
    consumed: np.ndarray  # bool: a CONSUMED entry
    overdraft: np.ndarray  # bool: an entry of the OVERDRAFT grant

    @staticmethod
    def of(ledger: pl.DataFrame, table_grant_ids: pl.Series, hash_rows: RowHash) -> _Columns:
        customer, customer_ids, _ = _codes(ledger["customer_id"], hash_rows)
        currency, currency_ids, _ = _codes(ledger["currency_id"], hash_rows)
        # A customer's entries mostly draw from the grant its entry before drew from.
        grant, grant_ids, table_grants = _codes(
            ledger["grant_id"], hash_rows, table_grant_ids, runs=customer
        )
        n_currencies = len(currency_ids)
        flags = ledger.select(
            _unscaled("amount"),
            _unscaled("balance_after"),
            (_beyond("amount") | _beyond("balance_after")).alias("beyond"),
            (pl.col("entry_type") == "CONSUMED").fill_null(False).alias("consumed"),
            (pl.col("grant_type") == "OVERDRAFT").fill_null(False).alias("overdraft"),
        )
        group = small_pages.empty(len(customer))  # customer × currency
        np.multiply(customer, n_currencies, out=group, dtype=np.int64)
        group += currency
        return _Columns(
            amount=flags["amount"].to_numpy(),
            balance=flags["balance_after"].to_numpy(),
            beyond=flags["beyond"].to_numpy(),
            customer=customer,
            group=group,
            n_groups=len(customer_ids) * n_currencies,
            grant=grant,
            grant_ids=grant_ids,
            table_grants=table_grants,
            consumed=flags["consumed"].to_numpy(),
            overdraft=flags["overdraft"].to_numpy(),
        )


def _unscaled(name: str) -> pl.Expr:
    """A Decimal column's unscaled values as int64 (a null, or a value beyond int64, counts as 0:
    the engines write neither, `_beyond` reports the second)."""
    return pl.col(name).to_physical().cast(pl.Int64, strict=False).fill_null(0)


def _beyond(name: str) -> pl.Expr:
    unscaled = pl.col(name).to_physical()
    return ((unscaled < INT64_MIN) | (unscaled > INT64_MAX)).fill_null(False)


def _codes(
    column: pl.Series,
    hash_rows: RowHash,
    known: pl.Series | None = None,
    runs: np.ndarray | None = None,
) -> tuple[np.ndarray, pl.Series, int]:
    """Integer codes for a string column (uint32, 0 ≤ code < len(values)), the value of each
    code (None for the code of null), and how many of the first codes are the values of `known`
    (distinct), in its order: all of them, or none when the hashes cannot settle it
    (`row_lookup.encode`, `runs` as there)."""
    column = column.cast(pl.String)
    if known is None and column.null_count() == 0 and len(column) and (column == column[0]).all():
        # A single value (the currency, most often): nothing to encode.
        return np.zeros(len(column), dtype=np.uint32), pl.Series([column[0]]), 0
    if known is not None and (encoded := encode(column, known, hash_rows, runs)) is not None:
        return encoded[0], encoded[1], len(known)
    if (encoded := encode(column, None, hash_rows, runs)) is not None:
        return encoded[0], encoded[1], 0
    # When the hashes cannot settle it: a fresh category mapping (exact, slower). Its codes are
    # dense from 0, and it is freed with the column (the global one would keep every string it
    # ever saw).
    categorical = column.cast(pl.Categorical(pl.Categories.random()))
    dtype = categorical.dtype
    assert isinstance(dtype, pl.Categorical)
    values = dtype.categories.to_series()
    codes = categorical.to_physical()
    if codes.null_count():
        codes = codes.fill_null(len(values))
    return codes.to_numpy(), values.extend(pl.Series([None], dtype=pl.String)), 0


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
    if ids.null_count() == 0 and _counts_from_one(ids.to_numpy()):
        return []
    return [Problem(path="ledger.entry_id", message="entry ids are not 1, 2, … n")]


@njit(cache=True)
def _counts_from_one(ids: np.ndarray) -> bool:  # pragma: no cover - compiled
    """Whether `ids` are 1, 2, … len(ids)."""
    i = 0
    while i < len(ids) and ids[i] == i + 1:
        i += 1
    return i == len(ids)


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
    """Entries whose balance is not the running sum of their group's amounts, or whose running
    sum leaves the int64 range (an engine computing in int64 would have wrapped there)."""
    total = np.zeros(n_groups, dtype=np.int64)
    bad = np.zeros(len(group), dtype=np.bool_)
    for i in range(len(group)):
        overflows = _add_overflows(total[group[i]], amount[i])
        total[group[i]] += amount[i]
        bad[i] = overflows or total[group[i]] != balance[i]
    return bad


@njit(cache=True, inline="always")
def _add_overflows(a: int, b: int) -> bool:  # pragma: no cover - compiled
    """Whether a + b leaves the int64 range."""
    return (b > 0 and a > INT64_MAX - b) or (b < 0 and a < INT64_MIN - b)


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
        overflows = _add_overflows(remaining[grant[i]], amount[i])
        remaining[grant[i]] += amount[i]
        bad[i] = overflows or (remaining[grant[i]] < 0 and not overdraft[i])
    return bad


# --- invariant 3 -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Costs:
    """Invariant 3's side of the inputs: per row of `prepared.consumptions`."""

    keys: KeyTable  # the rows' COST_KEYS, findable by hash (`row_lookup.key_table`)
    replayed: np.ndarray  # bool: a costed pair that is replayed (in the horizon, cost above 0)
    cost: np.ndarray  # int64: the cost unscaled at the ledger's scale

    @staticmethod
    def of(prepared: PreparedReplay, hash_rows: RowHash) -> _Costs:
        replayed, cost = _costs(prepared)
        keys = key_table(prepared.consumptions.select(COST_KEYS), hash_rows)
        return _Costs(keys=keys, replayed=replayed, cost=cost)


def _costs_consumed(
    ledger: pl.DataFrame,
    columns: _Columns,
    denied: pl.DataFrame,
    prepared: PreparedReplay,
    costs: _Costs,
    hash_rows: RowHash,
) -> list[Problem]:
    """Invariant 3: compare each (event, feature)'s CONSUMED total with its cost, and check the
    denied events (block mode)."""
    consumptions = prepared.consumptions
    replayed, cost = costs.replayed, costs.cost
    keys = COST_KEYS
    queries = ledger.select(keys)
    match = lookup(costs.keys, replayed, queries, columns.consumed, hash_rows, columns.customer)
    if match is None:
        entries, cost_rows = _match_exactly(ledger, columns.consumed, consumptions, replayed)
    else:
        entries = np.flatnonzero(match >= 0)
        cost_rows = match[entries]
    consumed, has_consumed = _consumed_per_cost(entries, cost_rows, columns.amount, len(cost))

    problems: list[Problem] = []
    is_denied = np.zeros(len(cost), dtype=np.bool_)
    if prepared.enforcement == "block":
        denied_problems, is_denied = _denied_events(denied, consumptions, replayed, hash_rows)
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
    (event, feature), by a join on the strings (the slow, exact fallback of `row_lookup`)."""
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
    denied: pl.DataFrame, consumptions: pl.DataFrame, replayed: np.ndarray, hash_rows: RowHash
) -> tuple[list[Problem], np.ndarray]:
    """Block mode: the problems of the denied events table (an event denied twice, a denied
    event that is not a replayed costed one), and per consumption row whether its event is
    denied (set for replayed rows only)."""
    denied_ids = denied.select("event_id")
    everyone = np.ones(denied.height, dtype=np.bool_)
    match = lookup(denied_ids, everyone, consumptions.select("event_id"), replayed, hash_rows)
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


def _rollovers_conserve(ledger: pl.DataFrame) -> list[Problem]:
    """ROLLED_OVER −x on grant g ⇔ GRANTED +x on `{g}:rollover` at the same instant (few rows:
    one per rolled period at most)."""
    keys = ["customer_id", "currency_id", "timestamp", "grant_id"]
    rolled = ledger.filter(pl.col("entry_type") == "ROLLED_OVER").select(
        "entry_id",
        *keys[:3],
        pl.concat_str(pl.col("grant_id"), pl.lit(":rollover")).alias("grant_id"),
        (-pl.col("amount")).alias("amount"),
    )
    arrived = ledger.filter(
        (pl.col("entry_type") == "GRANTED") & (pl.col("grant_source") == "rollover")
    ).select("entry_id", *keys, "amount")
    if rolled.is_empty() and arrived.is_empty():
        return []
    matched = rolled.join(arrived, on=[*keys, "amount"], how="full", coalesce=True, suffix="_in")
    unmatched = (
        matched.filter(pl.col("entry_id").is_null() | pl.col("entry_id_in").is_null())
        .select(pl.coalesce("entry_id", "entry_id_in").alias("entry_id"))
        .sort("entry_id")
    )
    return [
        Problem(
            path=f"ledger[entry_id={entry_id}]",
            message="rollover: a ROLLED_OVER entry without its rollover grant's GRANTED entry "
            "of the same amount at the same instant, or the other way round",
        )
        for entry_id in unmatched["entry_id"].head(MAX_LISTED).to_list()
    ]


def _drawdown_ranks(
    ledger: pl.DataFrame, columns: _Columns, prepared: PreparedReplay
) -> np.ndarray:
    """Each grant code's position in draw-down order (`order.drawdown_sort_keys`): grants of the
    input and recurring periods (the grant table), and auto-recharge grants as their GRANTED entry
    and the recharge settings describe them (`grants.recharge_grants`). Grants known to neither
    (the OVERDRAFT grant) come last."""
    described = ["grant_id", "priority", "expires_at", "type", "effective_at", "source"]
    table = prepared.grant_table.select(described)
    # The codes from `table_grants` on are ids the table does not have (unless no code is the
    # table's): only their entries can describe an auto-recharge grant that counts.
    others = ledger.filter(pl.Series(columns.grant >= columns.table_grants))
    known = pl.concat(
        [
            table.clear() if columns.table_grants else table,
            recharge_grants(others, prepared).select(described),
        ]
    ).unique("grant_id", keep="first", maintain_order=True)
    rest = pl.DataFrame({"grant_id": columns.grant_ids[columns.table_grants :]})
    described_codes = pl.concat(
        [
            table.head(columns.table_grants),
            rest.join(known, on="grant_id", how="left", maintain_order="left"),
        ]
    )
    order = _sort_order(described_codes, drawdown_sort_keys())
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(len(order))
    return ranks


def _sort_order(frame: pl.DataFrame, keys: list[pl.Expr]) -> np.ndarray:
    """The rows of `frame` in the order `frame.sort(keys, nulls_last=True, maintain_order=True)`
    puts them, for keys of integers, booleans, times or strings: each key as integers (a string
    by its rank among the key's strings) after a key of its own saying whether it is null, then a
    stable `np.lexsort` (a Polars sort on several keys compares encoded rows, slower)."""
    integers: list[np.ndarray] = []
    for key in frame.select(key.alias(str(i)) for i, key in enumerate(keys)).iter_columns():
        if key.dtype == pl.String:
            key = key.rank("dense")
        assert key.dtype.is_integer() or key.dtype.is_temporal() or key.dtype == pl.Boolean
        integers += [
            key.is_null().to_numpy(),
            key.to_physical().cast(pl.Int64).fill_null(0).to_numpy(),
        ]
    return np.lexsort(integers[::-1])


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
