"""`interlock/failures.py`: the failure classification table (`classify`, `TREATMENTS`)."""

from __future__ import annotations

import pytest

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
        (DeploymentNotFoundError("x", status_code=404), FailureKind.UNUSABLE),
        (DeploymentNotFoundError("x", status_code=400), FailureKind.UNUSABLE),
        (AccountError("x"), FailureKind.UNUSABLE),
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


def test_deployment_scoped_kinds_take_the_deployment_out_at_once_and_move_on() -> None:
    for kind in (FailureKind.BAD_CREDENTIALS, FailureKind.UNUSABLE):
        t = TREATMENTS[kind]
        assert (t.counts_against_health, t.cools_at_once, t.retry_elsewhere) == (True, True, True)
        assert t.fallback == "default"
    # a DeploymentNotFoundError is still a NotFoundError for callers who catch that
    assert isinstance(DeploymentNotFoundError("x"), NotFoundError)
