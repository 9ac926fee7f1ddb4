"""Which errors count against a deployment and which are worth another attempt."""

from __future__ import annotations

from enum import Enum

from interlock.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    InterlockError,
    InternalServerError,
    MalformedResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
)

__all__ = ["FailureKind", "classify"]


class FailureKind(Enum):
    """How the router treats an error."""

    CALLER = "caller"
    """Caused by the request (400, 404, 422, context window, content policy): neither
    retried on the group nor held against the deployment."""
    RATE_LIMITED = "rate_limited"
    """429: the deployment cools for its Retry-After; the request moves on."""
    BAD_CREDENTIALS = "bad_credentials"
    """401/403: a bad key takes only that deployment out; the request moves on."""
    TRANSIENT = "transient"
    """5xx, timeouts, connection errors, malformed responses: counts toward the
    consecutive-failure limit; the request moves on."""


_TABLE: tuple[tuple[type[InterlockError], FailureKind], ...] = (
    (BadRequestError, FailureKind.CALLER),
    (NotFoundError, FailureKind.CALLER),
    (RateLimitError, FailureKind.RATE_LIMITED),
    (AuthenticationError, FailureKind.BAD_CREDENTIALS),
    (PermissionDeniedError, FailureKind.BAD_CREDENTIALS),
    (APITimeoutError, FailureKind.TRANSIENT),
    (APIConnectionError, FailureKind.TRANSIENT),
    (MalformedResponseError, FailureKind.TRANSIENT),
    (InternalServerError, FailureKind.TRANSIENT),
)
_cache: dict[type[InterlockError], FailureKind] = {}


def classify(error: InterlockError) -> FailureKind:
    """The `FailureKind` of an error (by its class, first match in the table)."""
    cls = type(error)
    kind = _cache.get(cls)
    if kind is None:
        kind = next((k for base, k in _TABLE if isinstance(error, base)), FailureKind.TRANSIENT)
        _cache[cls] = kind
    return kind
