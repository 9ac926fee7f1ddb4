"""Failure classification: the one table that says what the router does with an error.

Every error an attempt raises has a `FailureKind`; each kind has a `Treatment`:
whether it counts against the deployment's health, whether the call moves on to
another deployment (and then the fallback chain), and which special fallback chain
it jumps to. docs/resilience.md renders the same table for people.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal

from interlock.errors import (
    AccountError,
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ContentPolicyViolationError,
    ContextWindowExceededError,
    DeploymentNotFoundError,
    InterlockError,
    InternalServerError,
    MalformedResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
)

__all__ = [
    "COUNTED_KIND_NAMES",
    "RETRYABLE_KIND_NAMES",
    "TREATMENTS",
    "FailureKind",
    "Treatment",
    "classify",
    "treatment",
]


class FailureKind(Enum):
    """What went wrong, as far as routing is concerned."""

    CALLER = "caller"
    """400, 404, 422 that name nothing of the deployment (and unserializable requests):
    the request itself is wrong."""
    CONTEXT_WINDOW = "context_window"
    """The prompt does not fit the model: try the context-window fallbacks."""
    CONTENT_POLICY = "content_policy"
    """The provider refused the content: try the content-policy fallbacks."""
    RATE_LIMITED = "rate_limit"
    """429: the deployment cools for its Retry-After."""
    BAD_CREDENTIALS = "auth"
    """401/403: a bad key; that deployment alone is taken out."""
    UNUSABLE = "unusable"
    """The deployment cannot serve any request until someone fixes it: its model or
    deployment name is unknown (`DeploymentNotFoundError`) or its account cannot pay
    (`AccountError`); that deployment alone is taken out."""
    TIMEOUT = "timeout"
    """The attempt ran past the deployment's timeout."""
    CONNECTION = "connection"
    """Refused, reset or dropped connection; a stream cut mid-way."""
    SERVER_ERROR = "server_error"
    """5xx (and any error of unknown origin)."""
    MALFORMED = "malformed"
    """A response body that is not what the API promises."""


FallbackKind = Literal["default", "context_window", "content_policy"] | None


@dataclass(frozen=True, slots=True)
class Treatment:
    """What the router does after an attempt fails with one `FailureKind`."""

    counts_against_health: bool
    """Recorded as a failure of the deployment (ejection triggers, failure rate)."""
    cools_at_once: bool
    """Takes the deployment out immediately (429 Retry-After, bad key, unusable), no
    allowance."""
    retry_elsewhere: bool
    """The call moves on to a deployment it has not tried, then to the fallbacks."""
    fallback: FallbackKind
    """Which fallback chain a call takes when this error ends a group."""


_DEPLOYMENT_FAULT = Treatment(True, False, True, "default")

TREATMENTS: dict[FailureKind, Treatment] = {
    FailureKind.CALLER: Treatment(False, False, False, None),
    FailureKind.CONTEXT_WINDOW: Treatment(False, False, False, "context_window"),
    FailureKind.CONTENT_POLICY: Treatment(False, False, False, "content_policy"),
    FailureKind.RATE_LIMITED: Treatment(True, True, True, "default"),
    FailureKind.BAD_CREDENTIALS: Treatment(True, True, True, "default"),
    FailureKind.UNUSABLE: Treatment(True, True, True, "default"),
    FailureKind.TIMEOUT: _DEPLOYMENT_FAULT,
    FailureKind.CONNECTION: _DEPLOYMENT_FAULT,
    FailureKind.SERVER_ERROR: _DEPLOYMENT_FAULT,
    FailureKind.MALFORMED: _DEPLOYMENT_FAULT,
}
"""FailureKind -> Treatment: the classification table (docs/resilience.md)."""

# Most specific classes first: the first isinstance match wins.
_TABLE: tuple[tuple[type[InterlockError], FailureKind], ...] = (
    (DeploymentNotFoundError, FailureKind.UNUSABLE),
    (AccountError, FailureKind.UNUSABLE),
    (ContextWindowExceededError, FailureKind.CONTEXT_WINDOW),
    (ContentPolicyViolationError, FailureKind.CONTENT_POLICY),
    (BadRequestError, FailureKind.CALLER),
    (NotFoundError, FailureKind.CALLER),
    (RateLimitError, FailureKind.RATE_LIMITED),
    (AuthenticationError, FailureKind.BAD_CREDENTIALS),
    (PermissionDeniedError, FailureKind.BAD_CREDENTIALS),
    (APITimeoutError, FailureKind.TIMEOUT),
    (APIConnectionError, FailureKind.CONNECTION),
    (MalformedResponseError, FailureKind.MALFORMED),
    (InternalServerError, FailureKind.SERVER_ERROR),
)
_cache: dict[type[InterlockError], FailureKind] = {}

RETRYABLE_KIND_NAMES: tuple[str, ...] = tuple(
    k.value for k, t in TREATMENTS.items() if t.retry_elsewhere
)
"""Kinds after which a call is retried (the keys of `RetryPolicy.attempts_by_kind`)."""
COUNTED_KIND_NAMES: tuple[str, ...] = tuple(
    k.value for k, t in TREATMENTS.items() if t.counts_against_health and not t.cools_at_once
)
"""Kinds that have an allowance (the keys of `HealthPolicy.allowed_fails_by_kind`)."""


def classify(error: InterlockError) -> FailureKind:
    """The `FailureKind` of an error (by its class; unknown classes are server errors)."""
    cls = type(error)
    kind = _cache.get(cls)
    if kind is None:
        kind = next((k for base, k in _TABLE if isinstance(error, base)), FailureKind.SERVER_ERROR)
        _cache[cls] = kind
    return kind


def treatment(error: InterlockError) -> Treatment:
    """The `Treatment` of an error."""
    return TREATMENTS[classify(error)]
