"""Accounting and limits: in-flight requests, RPM/TPM windows, token estimates, the
capacity queue, spend and budgets, and the ledger shared through Redis."""

from interlock.limits.ledger import Blocked, Exhaustion, Ledger, Reservation, exhaustion
from interlock.limits.queue import WaitQueue
from interlock.limits.shared import RedisLedger, SharedLedger
from interlock.limits.spend import (
    BudgetCounter,
    BudgetStatus,
    SpendReport,
    attach_budgets,
    spend_report,
)
from interlock.limits.tokens import (
    TokenCounter,
    estimate_embedding_tokens,
    estimate_input_tokens,
    estimate_text_tokens,
)
from interlock.records.window import RateWindow

__all__ = [
    "Blocked",
    "BudgetCounter",
    "BudgetStatus",
    "Exhaustion",
    "Ledger",
    "RateWindow",
    "RedisLedger",
    "Reservation",
    "SharedLedger",
    "SpendReport",
    "TokenCounter",
    "WaitQueue",
    "attach_budgets",
    "estimate_embedding_tokens",
    "estimate_input_tokens",
    "estimate_text_tokens",
    "exhaustion",
    "spend_report",
]
