"""Accounting and limits: in-flight requests, RPM/TPM windows, token estimates, the
capacity queue, spend and budgets, and the ledger shared through Redis."""

from interlock.limits.diagnose import Diagnosis, diagnose
from interlock.limits.ledger import Blocked, Ledger, Reservation
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
    "Diagnosis",
    "Ledger",
    "RateWindow",
    "RedisLedger",
    "Reservation",
    "SharedLedger",
    "SpendReport",
    "TokenCounter",
    "WaitQueue",
    "attach_budgets",
    "diagnose",
    "estimate_embedding_tokens",
    "estimate_input_tokens",
    "estimate_text_tokens",
    "spend_report",
]
