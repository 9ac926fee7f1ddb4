"""The HTTP plumbing's pure parts: which failures are a stale pooled connection, what
each dependency exception becomes, and Retry-After values that are not numbers."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp.http_exceptions import BadStatusLine, LineTooLong

from interlock import (
    APIConnectionError,
    APITimeoutError,
    BadRequestError,
    Deployment,
    MalformedResponseError,
)
from interlock.providers.http import dumps_body, is_stale_connection, malformed, typed_error
from interlock.types import InvalidCount

KEY = "sk-http-secret-31337"
D = Deployment(group="g", model="m", id="g-0", api_key=KEY)


@pytest.mark.parametrize(
    ("exc", "stale"),
    [
        (aiohttp.ServerDisconnectedError(), True),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), True),
        (ConnectionResetError(104, "reset"), True),
        (aiohttp.ClientConnectorError(None, OSError(111, "refused")), False),  # type: ignore[arg-type]
        (aiohttp.ServerTimeoutError("read"), False),
        (aiohttp.ClientPayloadError("cut"), False),
        (TimeoutError(), False),
    ],
)
def test_which_failures_look_like_a_closed_pooled_connection(
    exc: BaseException, stale: bool
) -> None:
    assert is_stale_connection(exc) is stale


@pytest.mark.parametrize(
    ("exc", "cls", "message"),
    [
        (TimeoutError(), APITimeoutError, "no response within 2 s"),
        (aiohttp.ServerTimeoutError(), APITimeoutError, "no response within 2 s"),
        (
            aiohttp.ServerDisconnectedError(),
            APIConnectionError,
            "connection failed: ServerDisconnectedError",
        ),
        (
            aiohttp.ClientOSError(104, "Connection reset by peer"),
            APIConnectionError,
            "connection failed: ClientOSError: [Errno 104] Connection reset by peer",
        ),
        (
            aiohttp.ClientPayloadError(f"got {KEY}"),
            APIConnectionError,
            "connection failed: ClientPayloadError",
        ),
        (
            BadStatusLine(f"HELLO {KEY}"),
            MalformedResponseError,
            "unreadable response body (BadStatusLine)",
        ),
        (
            LineTooLong(KEY.encode(), 10),
            MalformedResponseError,
            "unreadable response body (LineTooLong)",
        ),
    ],
)
def test_each_dependency_exception_becomes_a_typed_error_quoting_nothing(
    exc: Exception, cls: type[Exception], message: str
) -> None:
    err = typed_error(D, KEY, exc, 2.0, "response")
    assert type(err) is cls
    assert err is not None
    assert err.message == message
    assert err.deployment_id == "g-0"


def test_exceptions_that_are_no_dependencys_are_left_alone() -> None:
    assert typed_error(D, KEY, RuntimeError("a bug"), 1.0, "response") is None
    err = BadRequestError("ours")
    assert typed_error(D, KEY, err, 1.0, "response") is err


def test_malformed_names_the_parser_error_or_the_bad_count() -> None:
    assert malformed(D, ValueError(KEY)).message == "unreadable response body (ValueError)"
    count = InvalidCount("usage.prompt_tokens is not a count (an integer >= 0)")
    assert malformed(D, count).message == (
        "invalid response: usage.prompt_tokens is not a count (an integer >= 0)"
    )


def test_an_unserializable_request_keeps_nothing_on_its_chain() -> None:
    with pytest.raises(BadRequestError) as exc:
        dumps_body({"x": {1, 2}})
    assert exc.value.__context__ is None
