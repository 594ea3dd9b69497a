"""The credits ledger (SPEC §5/§6): grants, draw-down, replay engines, invariants, balances."""

from pricing_lab.ledger.api import (
    ReplayResult,
    replay,
    replay_partition,
    run_engine,
    stderr_progress,
)
from pricing_lab.ledger.balances import CreditBalance, GrantBalance, balance_at
from pricing_lab.ledger.invariants import assert_invariants, check_invariants
from pricing_lab.ledger.model import (
    AutoRecharge,
    Consumption,
    DeniedEvent,
    Enforcement,
    FeatureCost,
    Grant,
    LedgerEntry,
    RecurringEntitlement,
    ReplayInput,
    Subscription,
    recurring_entitlements,
)

__all__ = [
    "AutoRecharge",
    "Consumption",
    "CreditBalance",
    "DeniedEvent",
    "Enforcement",
    "FeatureCost",
    "Grant",
    "GrantBalance",
    "LedgerEntry",
    "RecurringEntitlement",
    "ReplayInput",
    "ReplayResult",
    "Subscription",
    "assert_invariants",
    "balance_at",
    "check_invariants",
    "recurring_entitlements",
    "replay",
    "replay_partition",
    "run_engine",
    "stderr_progress",
]
