"""Accounting: in-flight requests, RPM/TPM windows, token estimates."""

from interlock.limits.ledger import Ledger, Reservation
from interlock.limits.tokens import (
    estimate_embedding_tokens,
    estimate_input_tokens,
    estimate_text_tokens,
)
from interlock.limits.window import SlidingWindow

__all__ = [
    "Ledger",
    "Reservation",
    "SlidingWindow",
    "estimate_embedding_tokens",
    "estimate_input_tokens",
    "estimate_text_tokens",
]
