"""`interlock/failures.py`: the failure classification table (`classify`, `TREATMENTS`)."""

from __future__ import annotations

import pytest

from interlock.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ContentPolicyViolationError,
    ContextWindowExceededError,
    InterlockError,
    InternalServerError,
    MalformedResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    StreamInterruptedError,
)
from interlock.failures import TREATMENTS, FailureKind, classify


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (BadRequestError("x"), FailureKind.CALLER),
        (NotFoundError("x"), FailureKind.CALLER),
        (ContextWindowExceededError("x"), FailureKind.CONTEXT_WINDOW),
        (ContentPolicyViolationError("x"), FailureKind.CONTENT_POLICY),
        (RateLimitError("x"), FailureKind.RATE_LIMITED),
        (AuthenticationError("x"), FailureKind.BAD_CREDENTIALS),
        (PermissionDeniedError("x"), FailureKind.BAD_CREDENTIALS),
        (APITimeoutError("x"), FailureKind.TIMEOUT),
        (APIConnectionError("x"), FailureKind.CONNECTION),
        (StreamInterruptedError("x"), FailureKind.CONNECTION),
        (MalformedResponseError("x"), FailureKind.MALFORMED),
        (InternalServerError("x"), FailureKind.SERVER_ERROR),
        (ServiceUnavailableError("x"), FailureKind.SERVER_ERROR),
        (InterlockError("x"), FailureKind.SERVER_ERROR),
    ],
)
def test_classification_table(error: InterlockError, kind: FailureKind) -> None:
    assert classify(error) is kind
    t = TREATMENTS[kind]
    caller = kind in (FailureKind.CALLER, FailureKind.CONTEXT_WINDOW, FailureKind.CONTENT_POLICY)
    assert t.counts_against_health is not caller
    assert t.retry_elsewhere is not caller
