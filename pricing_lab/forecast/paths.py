# mypy: allow-untyped-defs
"""The forecast's Monte Carlo paths: one compiled pass per unit (customer × currency).

A path replays the unit's known future (`state.CreditState`) against burn drawn from its own history
(`history.BurnHistory`), day by day from T, and records the first instant a consumption leaves the
balance at or below 0 (or, in `block` mode, an event is denied). What one simulated day holds:

* its burn is a history day's burn, chosen by the burn model (blocks of consecutive history days
  aligned on T's weekday; with `resample_level`, from a per-path resample of the window's blocks);
* that burn is cut into the history day's number of events n, of equal cost to one minor unit
  (event i ends at cumulative burn ⌊i·b/n⌋); their instants are n independent draws from the
  unit's intraday profile, in order, sampled lazily: how many fall before a cut of the day is a
  binomial draw, and an event that matters gets its instant from the beta law of its rank given
  the last instant drawn (order statistics of uniform draws), so the waiting time to the next
  event after T is as random as the history says it is;
* the day is cut at each known happening (expiry, void, grant taking effect, a recharge grant's
  expiry, a calendar month start) and things at one instant follow the ledger's order: expiries,
  voids, grants taking effect (each settling overdraft debt), then events, each followed by its
  auto-recharge;
* a period grant expiring because the next period starts moves min(remaining, cap) into its
  rollover grant's slot (SPEC §5; only the rest is expired), and that slot takes effect in the
  take-effect phase of the same instant; a rollover grant never rolls over itself;
* each event's cost is drawn from the usable grants in draw-down order (the overdraft takes what
  they cannot cover, or in `block` mode an event costing more than the balance is denied);
  recharge grants join the draw-down order by their key, and the monthly spend limit is counted
  in the ledger engine's integer money units.

Runs of plain events are consumed in one step: the next event that matters (the run-out, a denial,
an auto-recharge trigger) is found by arithmetic on the event boundaries, so a path costs a few
steps per day whatever the number of events. Credits are int64 minor units throughout.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pricing_lab.forecast.state import (
    P_EXPIRY_MONTHS,
    P_HAPP0,
    P_HAPP1,
    P_HIST0,
    P_HISTN,
    P_KEY,
    P_LIMIT,
    P_OVERDRAFT,
    P_PROFILE,
    P_RECHARGE,
    P_SIMULATE,
    P_SLOT0,
    P_SLOT1,
    P_SPENT,
    P_TARGET,
    P_THRESHOLD,
    P_UNIT_PRICE,
)
from pricing_lab.timeutil import DAY_US, NEVER_US

HOUR_US = 3_600_000_000
DYNAMIC_CAP = 256  # recharge grants with credits left at one time, per path
# Recharge grants are compacted (the empty ones dropped) once this many are held: the kernel scans
# them for the next expiry at every step of a day.
DYNAMIC_COMPACT = 8
PAID_RANK = 1  # ledger.order.TYPE_RANK["PAID"]: recharge grants are PAID

# Columns of the slot array (one row per grant a unit can draw inside the horizon).
(
    S_REMAINING,  # credits at T (usable grants), the amount (grants taking effect later), or 0
    # (rollover grants: they receive what their period grant rolls over)
    S_ACTIVE,  # 1: usable at T
    S_PRIORITY,
    S_NEVER,  # 1: never expires
    S_EXPIRES,  # µs (NEVER_US: never)
    S_TYPE,  # draw-down type rank
    S_EFFECTIVE,  # µs
    S_BEFORE,  # 1: its id sorts before the unit's recharge grant ids
    S_ROLLS_INTO,  # the slot of the rollover grant it rolls into at its expiry (−1: none)
    S_ROLL_CAP,  # the most it rolls over (minor units)
) = range(10)
N_SLOT_COLUMNS = 10

# Columns of the happening array; phases are `ledger.order.Phase`.
H_TIME, H_PHASE, H_SLOT = range(3)
EXPIRY, VOID, TAKES_EFFECT = 0, 1, 2

# Columns of the per-unit result: paths that ran out, then the p10 / p50 / p90 instants.
R_COUNT, R_P10, R_P50, R_P90 = range(4)

# Scalars of one path's state (one int64 array, so helpers can change them).
(
    X_BALANCE,
    X_OVERDRAFT,
    X_SPENT,
    X_CAPPED,  # 1: this month's spend limit is used up (recharges issue nothing until the next)
    X_DYNAMIC,  # recharge grants in the dynamic arrays
    X_ORDER,  # entries in the draw-down order list
    X_RUN_OUT,  # the run-out instant (NEVER_US: not yet)
) = range(7)


@njit(nogil=True, cache=True)
def run_units(  # pragma: no cover - compiled
    lo: int,
    hi: int,
    params: np.ndarray,
    slots: np.ndarray,
    happenings: np.ndarray,
    burn: np.ndarray,
    events: np.ndarray,
    profile: np.ndarray,
    month_starts: np.ndarray,
    first_day: int,
    add_months_days: np.ndarray,
    t0: int,
    end: int,
    paths: int,
    block_days: int,
    resample_level: bool,
    block_mode: bool,
    out_run_out: np.ndarray,
    out_slot_expired: np.ndarray,
    out_recharge_expired: np.ndarray,
) -> None:
    """Simulate `paths` paths of units lo..hi−1 and write their results (see module doc)."""
    max_slots = 0
    for u in range(lo, hi):
        max_slots = max(max_slots, params[u, P_SLOT1] - params[u, P_SLOT0])
    rem = np.zeros(max_slots, np.int64)
    act = np.zeros(max_slots, np.bool_)
    order = np.zeros(max_slots + DYNAMIC_CAP, np.int64)
    d_rem = np.zeros(DYNAMIC_CAP, np.int64)
    d_exp = np.zeros(DYNAMIC_CAP, np.int64)
    d_eff = np.zeros(DYNAMIC_CAP, np.int64)
    d_act = np.zeros(DYNAMIC_CAP, np.bool_)
    x = np.zeros(7, np.int64)
    rng = np.zeros(1, np.uint64)
    run_out = np.zeros(paths, np.int64)
    n_days = (end - t0 + DAY_US - 1) // DAY_US
    for u in range(lo, hi):
        if params[u, P_SIMULATE] == 0:
            continue
        g0 = params[u, P_SLOT0]
        n_slots = params[u, P_SLOT1] - g0
        n_hist = params[u, P_HISTN]
        length = block_days if block_days > 1 and n_hist >= 2 * block_days else 1
        n_blocks = n_hist // length
        for p in range(paths):
            rng[0] = np.uint64(params[u, P_KEY]) ^ (
                np.uint64(p + 1) * np.uint64(0xD1B54A32D192ED03)
            )
            # The path's resample of the window's blocks, drawn lazily: block k of the resample
            # is history block `_mix(level + k) mod n_blocks` (0: no resample, block k itself).
            level = _mix(rng[0] + np.uint64(0x632BE59BD9B4E019)) | np.uint64(1)
            if not resample_level:
                level = np.uint64(0)
            run_out[p] = _path(
                u, p, params, slots, happenings, burn, events, profile, month_starts,
                first_day, add_months_days, t0, end, n_days, length, n_blocks, level, rng,
                block_mode, rem, act, order, d_rem, d_exp, d_eff, d_act, x, g0, n_slots,
                out_slot_expired, out_recharge_expired,
            )  # fmt: skip
        run_out.sort()
        count = 0
        for p in range(paths):
            if run_out[p] < NEVER_US:
                count += 1
        out_run_out[u, R_COUNT] = count
        # The q-quantile is the smallest instant with at least q of the paths at or before it
        # (paths that never run out count as after the horizon: NEVER_US).
        out_run_out[u, R_P10] = run_out[(paths * 1 + 9) // 10 - 1]
        out_run_out[u, R_P50] = run_out[(paths * 5 + 9) // 10 - 1]
        out_run_out[u, R_P90] = run_out[(paths * 9 + 9) // 10 - 1]


@njit(nogil=True, cache=True, inline="always")
def _mix(z):  # pragma: no cover - compiled
    """splitmix64's output function of a uint64."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(nogil=True, cache=True, inline="always")
def _below(z, n):  # pragma: no cover - compiled
    """A uniform uint64 mapped onto [0, n), n < 2³² (multiply and shift, no division)."""
    return np.int64(((z >> np.uint64(32)) * np.uint64(n)) >> np.uint64(32))


@njit(nogil=True, cache=True, inline="always")
def _random(rng: np.ndarray, n: int):  # pragma: no cover - compiled
    """A uniform integer in [0, n) from the path's splitmix64 stream."""
    rng[0] += np.uint64(0x9E3779B97F4A7C15)
    return _below(_mix(rng[0]), n)


@njit(nogil=True, cache=True, inline="always")
def _uniform(rng: np.ndarray) -> float:  # pragma: no cover - compiled
    """A uniform float in (0, 1) from the path's stream."""
    rng[0] += np.uint64(0x9E3779B97F4A7C15)
    return (np.float64(_mix(rng[0]) >> np.uint64(11)) + 0.5) / 9007199254740992.0


@njit(nogil=True, cache=True)
def _normal(rng: np.ndarray) -> float:  # pragma: no cover - compiled
    return np.sqrt(-2.0 * np.log(_uniform(rng))) * np.cos(2.0 * np.pi * _uniform(rng))


@njit(nogil=True, cache=True)
def _gamma(rng: np.ndarray, shape: float) -> float:  # pragma: no cover - compiled
    """A Gamma(shape, 1) draw, shape ≥ 1 (Marsaglia and Tsang)."""
    d = shape - 1.0 / 3.0
    c = 1.0 / np.sqrt(9.0 * d)
    while True:
        z = _normal(rng)
        v = 1.0 + c * z
        if v <= 0.0:
            continue
        v = v * v * v
        w = _uniform(rng)
        if w < 1.0 - 0.0331 * z**4 or np.log(w) < 0.5 * z * z + d * (1.0 - v + np.log(v)):
            return d * v


@njit(nogil=True, cache=True)
def _beta(rng: np.ndarray, a: int, b: int) -> float:  # pragma: no cover - compiled
    """A Beta(a, b) draw (a, b ≥ 1 integers): the a-th smallest of a + b − 1 uniform draws."""
    if a == 1:
        return 1.0 - _uniform(rng) ** (1.0 / b)
    g = _gamma(rng, a)
    return g / (g + _gamma(rng, b))


@njit(nogil=True, cache=True)
def _binomial(rng: np.ndarray, m: int, p: float):  # pragma: no cover - compiled
    """How many of m independent draws fall below probability p (exact for small m; otherwise a
    Poisson or normal approximation, kept within [0, m])."""
    if p <= 0.0:
        return 0
    if p >= 1.0:
        return m
    if m <= 32:
        count = 0
        for _ in range(m):
            if _uniform(rng) < p:
                count += 1
        return count
    mean = m * p
    if mean < 16.0:
        return min(_poisson(rng, mean), m)
    if m - mean < 16.0:
        return m - min(_poisson(rng, m - mean), m)
    k = np.int64(np.floor(mean + np.sqrt(mean * (1.0 - p)) * _normal(rng) + 0.5))
    return min(max(k, 0), m)


@njit(nogil=True, cache=True)
def _poisson(rng: np.ndarray, mean: float) -> int:  # pragma: no cover - compiled
    limit = np.exp(-mean)
    k = 0
    product = _uniform(rng)
    while product > limit:
        k += 1
        product *= _uniform(rng)
    return k


@njit(nogil=True, cache=True)
def _path(  # pragma: no cover - compiled
    u, p, params, slots, happenings, burn, events, profile, month_starts, first_day,
    add_months_days, t0, end, n_days, length, n_blocks, level, rng, block_mode, rem, act, order,
    d_rem, d_exp, d_eff, d_act, x, g0, n_slots, out_slot_expired, out_recharge_expired,
):  # fmt: skip
    """One path of unit `u`; returns its run-out instant (NEVER_US: not within the horizon)."""
    balance = params[u, P_OVERDRAFT]
    for s in range(n_slots):
        rem[s] = slots[g0 + s, S_REMAINING]
        act[s] = slots[g0 + s, S_ACTIVE] == 1
        order[s] = s
        if act[s]:
            balance += rem[s]
    x[X_BALANCE] = balance
    x[X_OVERDRAFT] = params[u, P_OVERDRAFT]
    x[X_SPENT] = params[u, P_SPENT]
    x[X_CAPPED] = 0
    x[X_DYNAMIC] = 0
    x[X_ORDER] = n_slots
    x[X_RUN_OUT] = NEVER_US
    recharge = params[u, P_RECHARGE] == 1
    limited = recharge and params[u, P_LIMIT] >= 0
    h = params[u, P_HAPP0]
    h_end = params[u, P_HAPP1]
    m = 0
    n_months = len(month_starts)
    h0 = params[u, P_HIST0]
    n_hist = params[u, P_HISTN]
    r = params[u, P_PROFILE]
    current = 0
    for d in range(n_days):
        # Once run out, a path without auto-recharge has nothing left to tell: no expiry to come
        # (breakage), the run-out instant taken.
        if x[X_RUN_OUT] != NEVER_US and h == h_end and not recharge:
            break
        ds = t0 + d * DAY_US
        de = min(ds + DAY_US, end)
        if d % length == 0:
            current = _random(rng, n_blocks)
            if level != 0:
                current = _below(
                    _mix(level + np.uint64(current) * np.uint64(0x9E3779B97F4A7C15)), n_blocks
                )
        day = h0 + n_hist - length * (current + 1) + d % length
        b = burn[day]
        n = events[day] if b > 0 else 0
        done = 0  # events of the day already simulated
        share = 0.0  # where the day's profile stands at t
        t = ds
        while True:
            tn = de
            if h < h_end and happenings[h, H_TIME] < tn:
                tn = happenings[h, H_TIME]
            for k in range(x[X_DYNAMIC]):
                if d_act[k] and d_exp[k] < tn:
                    tn = d_exp[k]
            if limited and m < n_months and month_starts[m] < tn:
                tn = month_starts[m]
            upper = 1.0
            if n > done:
                upper = _share_before(profile, r, tn - ds)
                if upper >= 1.0:
                    upto = n
                else:
                    upto = done + _binomial(rng, n - done, (upper - share) / (1.0 - share))
                if upto > done:
                    _events(
                        u, done, upto, b, n, ds, t, tn, share, upper, profile, r, params, slots,
                        block_mode, recharge, rem, act, order, d_rem, d_exp, d_eff, d_act, x,
                        n_slots, first_day, add_months_days, rng,
                    )  # fmt: skip
                    done = upto
            share = upper
            if tn >= de:
                break
            t = tn
            # Things at instant t, in the ledger's order: expiries, voids, grants taking effect.
            for k in range(x[X_DYNAMIC]):
                if d_act[k] and d_exp[k] == t:
                    out_recharge_expired[u] += d_rem[k]
                    x[X_BALANCE] -= d_rem[k]
                    d_rem[k] = 0
                    d_act[k] = False
            while h < h_end and happenings[h, H_TIME] == t:
                s = happenings[h, H_SLOT]
                phase = happenings[h, H_PHASE]
                if phase == TAKES_EFFECT:
                    act[s] = True
                    x[X_BALANCE] += rem[s]
                    rem[s] -= _settle(rem[s], x)
                elif act[s]:
                    if phase == EXPIRY:
                        # A period grant ending because the next period starts rolls
                        # min(remaining, cap) into its rollover grant, which takes effect later
                        # at this instant; only the rest expires.
                        into = slots[g0 + s, S_ROLLS_INTO]
                        if into >= 0:
                            rem[into] = min(rem[s], slots[g0 + s, S_ROLL_CAP])
                            out_slot_expired[g0 + s] += rem[s] - rem[into]
                        else:
                            out_slot_expired[g0 + s] += rem[s]
                    x[X_BALANCE] -= rem[s]
                    rem[s] = 0
                    act[s] = False
                h += 1
            while m < n_months and month_starts[m] == t:
                x[X_SPENT] = 0
                x[X_CAPPED] = 0
                m += 1
    return x[X_RUN_OUT]


@njit(nogil=True, cache=True, inline="always")
def _share_before(profile: np.ndarray, r: int, offset: int) -> float:  # pragma: no cover
    """Share of a day's burn before `offset` µs into the day, by the unit's profile."""
    if offset >= DAY_US:
        return 1.0
    k = offset // HOUR_US
    within = (offset - k * HOUR_US) / HOUR_US
    return profile[r, k] + (profile[r, k + 1] - profile[r, k]) * within


@njit(nogil=True, cache=True, inline="always")
def _offset_at(profile: np.ndarray, r: int, share: float):  # pragma: no cover
    """The offset into the day (µs) where the unit's profile reaches `share` of the day's burn."""
    k = 0
    while k < 23 and profile[r, k + 1] <= share:
        k += 1
    width = profile[r, k + 1] - profile[r, k]
    offset = k * HOUR_US + np.int64((share - profile[r, k]) / width * HOUR_US)
    return min(max(offset, 0), DAY_US - 1)


@njit(nogil=True, cache=True, inline="always")
def _position(i: int, b: int, n: int) -> int:  # pragma: no cover - compiled
    """Cumulative burn of the day after its event i (events of equal cost to one minor unit)."""
    return i * b // n


@njit(nogil=True, cache=True, inline="always")
def _first_reaching(i: int, need: int, b: int, n: int) -> int:  # pragma: no cover - compiled
    """The first event j > i such that events i+1..j cost at least `need` (n + 1: none today)."""
    start = _position(i, b, n)
    if need <= _position(i + 1, b, n) - start:
        return i + 1
    if need > b - start:
        return n + 1
    return ((start + need) * n + b - 1) // b


@njit(nogil=True, cache=True, inline="always")
def _events(  # pragma: no cover - compiled
    u, first, last, b, n, ds, t, tn, lower, upper, profile, r, params, slots, block_mode,
    recharge, rem, act, order, d_rem, d_exp, d_eff, d_act, x, n_slots, first_day,
    add_months_days, rng,
):  # fmt: skip
    """Events first+1..last of the day, which fall inside [t, tn) (profile shares [lower,
    upper)): consume, detect the run-out, deny (block mode) and auto-recharge, stepping from one
    event that matters to the next."""
    threshold = params[u, P_THRESHOLD]
    i = first
    drawn = first  # the last event whose instant was drawn (or `first`: at `lower`)
    at_share = lower
    while i < last:
        j = last + 1
        if x[X_RUN_OUT] == NEVER_US:
            j = min(j, _first_reaching(i, x[X_BALANCE], b, n))
        if block_mode:
            j = min(j, _first_reaching(i, x[X_BALANCE] + 1, b, n))
        if recharge and x[X_CAPPED] == 0:
            j = min(j, _first_reaching(i, x[X_BALANCE] - threshold + 1, b, n))
        if j > last:
            _consume(_position(last, b, n) - _position(i, b, n), x, rem, act, order, d_rem, d_act,
                     n_slots)  # fmt: skip
            return
        if j - 1 > i:
            _consume(_position(j - 1, b, n) - _position(i, b, n), x, rem, act, order, d_rem,
                     d_act, n_slots)  # fmt: skip
        cost = _position(j, b, n) - _position(j - 1, b, n)
        # Event j is the (j − drawn)-th of the last − drawn events left in (at_share, upper).
        at_share += (upper - at_share) * _beta(rng, j - drawn, last - j + 1)
        drawn = j
        at = ds + _offset_at(profile, r, at_share)
        at = min(max(at, t), tn - 1)
        i = j
        if block_mode and cost > x[X_BALANCE]:
            if x[X_RUN_OUT] == NEVER_US:
                x[X_RUN_OUT] = at
            if x[X_BALANCE] < b // n:  # every later event costs more than the balance
                return
            continue
        _consume(cost, x, rem, act, order, d_rem, d_act, n_slots)
        if x[X_RUN_OUT] == NEVER_US and x[X_BALANCE] <= 0:
            x[X_RUN_OUT] = at
        if recharge and x[X_CAPPED] == 0 and x[X_BALANCE] < threshold:
            _recharge(u, at, params, slots, order, d_rem, d_exp, d_eff, d_act, x, n_slots,
                      first_day, add_months_days)  # fmt: skip


@njit(nogil=True, cache=True, inline="always")
def _consume(amount, x, rem, act, order, d_rem, d_act, n_slots):  # pragma: no cover - compiled
    """Take `amount` from the usable grants in draw-down order; the overdraft takes the rest."""
    left = amount
    for k in range(x[X_ORDER]):
        if left == 0:
            break
        s = order[k]
        if s < n_slots:
            if act[s] and rem[s] > 0:
                take = min(rem[s], left)
                rem[s] -= take
                left -= take
        else:
            g = s - n_slots
            if d_act[g] and d_rem[g] > 0:
                take = min(d_rem[g], left)
                d_rem[g] -= take
                left -= take
    x[X_OVERDRAFT] -= left
    x[X_BALANCE] -= amount


@njit(nogil=True, cache=True, inline="always")
def _settle(amount: int, x: np.ndarray) -> int:  # pragma: no cover - compiled
    """A grant of `amount` taking effect settles overdraft debt at once; returns what it paid."""
    paid = min(amount, -x[X_OVERDRAFT]) if x[X_OVERDRAFT] < 0 else 0
    x[X_OVERDRAFT] += paid
    return paid


@njit(nogil=True, cache=True)
def _recharge(  # pragma: no cover - compiled
    u, at, params, slots, order, d_rem, d_exp, d_eff, d_act, x, n_slots, first_day,
    add_months_days,
):  # fmt: skip
    """The auto-recharge after an event at `at` left the balance below the threshold (SPEC §5)."""
    amount = params[u, P_TARGET] - x[X_BALANCE]
    limit = params[u, P_LIMIT]
    unit = params[u, P_UNIT_PRICE]
    if limit >= 0 and unit > 0:
        allowed = (limit - x[X_SPENT]) // unit
        if amount > allowed:
            amount = allowed
    if amount <= 0:
        x[X_CAPPED] = 1
        return
    if limit >= 0:
        x[X_SPENT] += amount * unit
    if x[X_DYNAMIC] >= DYNAMIC_COMPACT:
        _compact(order, d_rem, d_exp, d_eff, d_act, x, n_slots)
        if x[X_DYNAMIC] == DYNAMIC_CAP:
            raise ValueError("more recharge grants with credits left than the forecast holds")
    g = x[X_DYNAMIC]
    x[X_DYNAMIC] += 1
    months = params[u, P_EXPIRY_MONTHS]
    expires = NEVER_US
    if months > 0:
        day = at // DAY_US
        column = 0 if months == 1 else 1
        expires = add_months_days[day - first_day, column] * DAY_US + (at - day * DAY_US)
    d_rem[g] = amount
    d_exp[g] = expires
    d_eff[g] = at
    d_act[g] = True
    x[X_BALANCE] += amount
    d_rem[g] -= _settle(amount, x)
    # Into the draw-down order: after every grant whose key is smaller (older recharge grants
    # always are: earlier effective time and expiry).
    k = x[X_ORDER]
    while k > 0 and _after(order[k - 1], expires, at, slots, params[u, P_SLOT0], n_slots):
        order[k] = order[k - 1]
        k -= 1
    order[k] = n_slots + g
    x[X_ORDER] += 1


@njit(nogil=True, cache=True)
def _after(s, expires, at, slots, g0, n_slots):  # pragma: no cover - compiled
    """True when slot `s` comes after a recharge grant issued at `at`, expiring at `expires`,
    in draw-down order (priority 0, PAID)."""
    if s >= n_slots:
        return False
    row = g0 + s
    if slots[row, S_PRIORITY] != 0:
        return slots[row, S_PRIORITY] > 0
    never = expires == NEVER_US
    if (slots[row, S_NEVER] == 1) != never:
        return slots[row, S_NEVER] == 1
    if slots[row, S_EXPIRES] != expires:
        return slots[row, S_EXPIRES] > expires
    if slots[row, S_TYPE] != PAID_RANK:
        return slots[row, S_TYPE] > PAID_RANK
    if slots[row, S_EFFECTIVE] != at:
        return slots[row, S_EFFECTIVE] > at
    return slots[row, S_BEFORE] == 0


@njit(nogil=True, cache=True)
def _compact(order, d_rem, d_exp, d_eff, d_act, x, n_slots):  # pragma: no cover - compiled
    """Drop the recharge grants with nothing left (they can neither be drawn nor expire credits)."""
    kept = 0
    g_new = 0
    for k in range(x[X_ORDER]):
        s = order[k]
        if s >= n_slots:
            g = s - n_slots
            if not (d_act[g] and d_rem[g] > 0):
                continue
            d_rem[g_new], d_exp[g_new], d_eff[g_new], d_act[g_new] = (
                d_rem[g],
                d_exp[g],
                d_eff[g],
                d_act[g],
            )
            s = n_slots + g_new
            g_new += 1
        order[kept] = s
        kept += 1
    x[X_ORDER] = kept
    x[X_DYNAMIC] = g_new
