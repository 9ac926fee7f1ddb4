"""Bedrock error responses onto the error tree (status codes and exception types from
the Converse API reference's Errors section).

Reference: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html#API_runtime_Converse_Errors
"""

from __future__ import annotations

import orjson
import pytest

from interlock import Deployment
from interlock.errors import (
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ContextWindowExceededError,
    InterlockError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
)
from interlock.providers.bedrock import bedrock_error

D = Deployment(group="g", id="b-0", provider="bedrock", model="m", aws_region="us-east-1")
SECRET = "session-token-SECRET-42"


def err(status: int, kind: str, message: str, **headers: str) -> InterlockError:
    h = {"x-amzn-ErrorType": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"}
    return bedrock_error(D, status, {**h, **headers}, orjson.dumps({"message": message}), (SECRET,))


@pytest.mark.parametrize(
    ("status", "kind", "message", "expected"),
    [
        (429, "ThrottlingException", "Too many requests", RateLimitError),
        (400, "ServiceQuotaExceededException", "quota", RateLimitError),
        (429, "ModelNotReadyException", "not ready", ServiceUnavailableError),
        (503, "ServiceUnavailableException", "unavailable", ServiceUnavailableError),
        (500, "InternalServerException", "oops", InternalServerError),
        (424, "ModelErrorException", "model failed", InternalServerError),
        (408, "ModelTimeoutException", "timed out", APITimeoutError),
        (403, "AccessDeniedException", "no access to the model", PermissionDeniedError),
        (404, "ResourceNotFoundException", "no such model", NotFoundError),
        (403, "UnrecognizedClientException", "invalid token", AuthenticationError),
        (403, "InvalidSignatureException", "signature mismatch", AuthenticationError),
        (403, "ExpiredTokenException", "expired", AuthenticationError),
        (400, "ValidationException", "Input is too long for requested model.",
         ContextWindowExceededError),
        (400, "ValidationException", "The model returned the following errors: prompt is "
         "too long: 210000 tokens > 200000 maximum", ContextWindowExceededError),
        (400, "ValidationException", "Too many input tokens. Max input tokens: 8192, request "
         "input token count: 9000", ContextWindowExceededError),
        (400, "ValidationException", "temperature must be <= 1", BadRequestError),
    ],
)  # fmt: skip
def test_error_types_map(status: int, kind: str, message: str, expected: type) -> None:
    e = err(status, kind, message)
    assert type(e) is expected
    assert e.status_code == status
    assert e.deployment_id == "b-0"
    assert kind in str(e)


def test_retry_hint_and_secrets() -> None:
    e = err(429, "ThrottlingException", f"slow down {SECRET}", **{"retry-after": "3"})
    assert e.retry_after == 3
    assert SECRET not in str(e)
    assert "[redacted]" in str(e)


def test_untyped_errors_fall_back_to_the_status() -> None:
    e = bedrock_error(D, 502, {}, b"<html>bad gateway</html>", (SECRET,))
    assert isinstance(e, ServiceUnavailableError)
    e = bedrock_error(D, 400, {}, orjson.dumps({"__type": "x#ValidationException",
                                                "message": "Input is too long"}))  # fmt: skip
    assert isinstance(e, ContextWindowExceededError)
