"""Scripted failures that `FakeUpstream` can inject into its responses.

A `Fault` is immutable data plus its OpenAI error rendering; build one with a
classmethod (`Fault.rate_limit()`, `Fault.drop()`, ...) so the defaults match what
the real API sends. A `FaultScript` decides which fault each request gets.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Literal, get_args

import orjson
from aiohttp import web

__all__ = ["Fault", "FaultKind", "FaultScript", "RetryAfterFormat"]

FaultKind = Literal[
    "rate_limit",
    "status",
    "context_window",
    "content_policy",
    "delay",
    "hang",
    "drop",
    "malformed",
    "cut_stream",
]
"""What a fault does; see the `Fault` classmethod of the same name."""

RetryAfterFormat = Literal["seconds", "ms", "http-date"]
"""How `Fault.rate_limit` spells its retry hint: `Retry-After: 1.5`,
`retry-after-ms: 1500`, or `Retry-After: <HTTP-date>`."""

_KINDS: frozenset[str] = frozenset(get_args(FaultKind))
_DEFAULT_MALFORMED = b'{"id": "chatcmpl-broken", "choices": ['

# The wording the real API uses, so code that inspects messages sees familiar text.
_STATUS_MESSAGES: dict[int, str] = {
    400: "Invalid request.",
    401: "Incorrect API key provided.",
    403: "You are not allowed to access this resource.",
    404: "The model does not exist or you do not have access to it.",
    429: "Rate limit reached. Please try again later.",
    500: "The server had an error while processing your request. Sorry about that!",
    502: "Bad gateway.",
    503: "The engine is currently overloaded, please try again later.",
    504: "Gateway timeout.",
    529: "Overloaded.",  # Anthropic's overloaded_error; HTTPStatus has no name for it
}
_STATUS_CODES: dict[int, str] = {401: "invalid_api_key", 429: "rate_limit_exceeded"}


def _error_body(
    message: str, type_: str = "invalid_request_error", param: str | None = None,
    code: str | None = None,
) -> bytes:  # fmt: skip
    error = {"message": message, "type": type_, "param": param, "code": code}
    return orjson.dumps({"error": error})


def _phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase + "."
    except ValueError:
        return f"HTTP {code}."


def _default_type(status: int) -> str:
    if status == 429:
        return "requests"
    return "server_error" if status >= 500 else "invalid_request_error"


def _check_seconds(where: str, name: str, value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{where}: {name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class Fault:
    """One scripted failure (or slowdown) for `FakeUpstream.push` / `always`.

    Only the fields that matter for `kind` are set; the rest keep their defaults.
    Error kinds (`rate_limit`, `status`, `context_window`, `content_policy`) answer
    with `http_status` and an OpenAI error body built from `message`, `error_type`,
    `param` and `error_code`, plus `headers`.
    """

    kind: FaultKind
    http_status: int | None = None
    message: str | None = None
    error_type: str | None = None
    error_code: str | None = None
    param: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    retry_after: float | None = None
    retry_after_format: RetryAfterFormat = "seconds"
    seconds: float = 0.0
    after_chunks: int = 0
    body: bytes = b""
    content_type: str = "application/json"

    def __post_init__(self) -> None:
        kind = self.kind
        if kind not in _KINDS:
            raise ValueError(f"Fault: kind must be one of {sorted(_KINDS)}, got {kind!r}")
        if kind == "rate_limit" and self.retry_after is not None:
            _check_seconds(f"Fault.{kind}", "retry_after", self.retry_after)
        if self.retry_after_format not in ("seconds", "ms", "http-date"):
            raise ValueError(
                f"Fault.{kind}: header must be 'seconds', 'ms' or 'http-date', "
                f"got {self.retry_after_format!r}"
            )
        if self.http_status is not None and not 400 <= self.http_status <= 599:
            raise ValueError(
                f"Fault.{kind}: http_status must be in 400-599, got {self.http_status!r}"
            )
        _check_seconds(f"Fault.{kind}", "seconds", self.seconds)
        if self.after_chunks < 0:
            raise ValueError(f"Fault.{kind}: after_chunks must be >= 0, got {self.after_chunks!r}")

    # -- constructors -------------------------------------------------------------

    @classmethod
    def rate_limit(
        cls, retry_after: float | None = 1.0, *, header: RetryAfterFormat = "seconds"
    ) -> Fault:
        """429 `rate_limit_exceeded`, with a retry hint unless `retry_after` is None.

        `header="seconds"` sends `Retry-After: 0.5` (fractions kept), `"ms"` sends
        `retry-after-ms: 500`, `"http-date"` sends `Retry-After` as an HTTP-date of
        now + `retry_after`, rounded up to a whole second.
        """
        return cls(
            kind="rate_limit",
            http_status=429,
            message="Rate limit reached for requests. Please try again later.",
            error_type="requests",
            error_code="rate_limit_exceeded",
            retry_after=None if retry_after is None else float(retry_after),
            retry_after_format=header,
        )

    @classmethod
    def status(
        cls,
        code: int,
        message: str | None = None,
        *,
        error_type: str | None = None,
        error_code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """Answer with HTTP `code` (400-599) and an OpenAI error body.

        `message`, `error_type` and `error_code` default to what the real API sends
        for that status (`server_error` for 5xx, `invalid_request_error` for 4xx).
        """
        if isinstance(code, bool) or not isinstance(code, int) or not 400 <= code <= 599:
            raise ValueError(f"Fault.status: code must be an int in 400-599, got {code!r}")
        return cls(
            kind="status",
            http_status=code,
            message=message if message is not None else _STATUS_MESSAGES.get(code) or _phrase(code),
            error_type=error_type if error_type is not None else _default_type(code),
            error_code=error_code if error_code is not None else _STATUS_CODES.get(code),
            headers=tuple((headers or {}).items()),
        )

    @classmethod
    def context_window(cls, *, limit: int = 8192, requested: int = 9000) -> Fault:
        """400 `context_length_exceeded`, worded like the real API."""
        if limit < 1:
            raise ValueError(f"Fault.context_window: limit must be >= 1, got {limit!r}")
        if requested < 0:
            raise ValueError(f"Fault.context_window: requested must be >= 0, got {requested!r}")
        return cls(
            kind="context_window",
            http_status=400,
            message=(
                f"This model's maximum context length is {limit} tokens. However, your "
                f"messages resulted in {requested} tokens. Please reduce the length of "
                "the messages."
            ),
            error_type="invalid_request_error",
            error_code="context_length_exceeded",
            param="messages",
        )

    @classmethod
    def content_policy(cls) -> Fault:
        """400 `content_policy_violation`: the request was refused by the safety system."""
        return cls(
            kind="content_policy",
            http_status=400,
            message=(
                "Your request was rejected as a result of our safety system. Your prompt "
                "may contain text that is not allowed by our content policy."
            ),
            error_type="invalid_request_error",
            error_code="content_policy_violation",
        )

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Answer normally, but only after `seconds` more (on top of `latency`)."""
        _check_seconds("Fault.delay", "seconds", seconds)
        return cls(kind="delay", seconds=float(seconds))

    @classmethod
    def hang(cls) -> Fault:
        """Never answer: the request stays open until the client gives up or the
        server stops (then the connection is closed without a response)."""
        return cls(kind="hang")

    @classmethod
    def drop(cls) -> Fault:
        """Close the connection without sending a single response byte."""
        return cls(kind="drop")

    @classmethod
    def malformed(
        cls, body: bytes = _DEFAULT_MALFORMED, *, content_type: str = "application/json"
    ) -> Fault:
        """200 with `body` that does not parse (by default truncated JSON)."""
        return cls(kind="malformed", body=bytes(body), content_type=content_type)

    @classmethod
    def cut_stream(cls, after_chunks: int) -> Fault:
        """For a streamed request: send headers and `after_chunks` SSE data frames,
        then close the connection (no finish chunk, no `[DONE]`). A request that is
        not streamed is dropped like `Fault.drop()`."""
        if isinstance(after_chunks, bool) or not isinstance(after_chunks, int):
            raise ValueError(f"Fault.cut_stream: after_chunks must be an int, got {after_chunks!r}")
        if after_chunks < 0:
            raise ValueError(f"Fault.cut_stream: after_chunks must be >= 0, got {after_chunks}")
        return cls(kind="cut_stream", after_chunks=after_chunks)

    # -- wire format --------------------------------------------------------------

    def error_body(self) -> bytes:
        """The OpenAI error body this fault answers with (for the error kinds)."""
        return _error_body(
            self.message or "Injected fault.", self.error_type or "server_error",
            self.param, self.error_code,
        )  # fmt: skip

    def response_headers(self) -> dict[str, str]:
        """The headers of this fault's error response, retry hint included.

        An `http-date` hint is computed from the wall clock at call time.
        """
        headers = {"Content-Type": "application/json", **dict(self.headers)}
        ra = self.retry_after
        if ra is None:
            pass
        elif self.retry_after_format == "ms":
            headers["retry-after-ms"] = str(round(ra * 1000))
        elif self.retry_after_format == "http-date":
            # HTTP-dates have whole seconds; round up so a client never retries early.
            headers["Retry-After"] = formatdate(math.ceil(time.time() + ra), usegmt=True)
        else:
            headers["Retry-After"] = f"{ra:.6f}".rstrip("0").rstrip(".")
        return headers

    def __repr__(self) -> str:
        # Only the fields that differ from the defaults: the rest is noise in logs.
        parts = [f"kind={self.kind!r}"]
        for f in dataclasses.fields(self):
            if f.name == "kind":
                continue
            value = getattr(self, f.name)
            if value != f.default:
                parts.append(f"{f.name}={value!r}")
        return f"Fault({', '.join(parts)})"


class FaultScript:
    """A FIFO queue of faults plus an optional standing fault.

    `FakeUpstream` is one; a fake for another wire format can reuse it. `take()`
    is synchronous so that faults follow request arrival order exactly.
    """

    def __init__(self) -> None:
        self._queue: deque[tuple[Fault, int]] = deque()
        self._pending = 0
        self._always: Fault | None = None

    def push(self, fault: Fault, times: int = 1) -> None:
        """Apply `fault` to each of the next `times` requests, after those already queued."""
        if not isinstance(fault, Fault):
            raise TypeError(f"push: fault must be a Fault, got {fault!r}")
        if not _positive_int(times):
            raise ValueError(f"push: times must be an int >= 1, got {times!r}")
        self._queue.append((fault, times))
        self._pending += times

    def always(self, fault: Fault | None) -> None:
        """Apply `fault` to every request while the queue is empty; None turns it off."""
        if fault is not None and not isinstance(fault, Fault):
            raise TypeError(f"always: fault must be a Fault or None, got {fault!r}")
        self._always = fault

    def clear(self) -> None:
        """Forget the queued faults and the `always` fault."""
        self._queue.clear()
        self._pending, self._always = 0, None

    @property
    def pending_faults(self) -> int:
        """How many queued fault applications remain (`always` not counted)."""
        return self._pending

    def take(self) -> Fault | None:
        """The fault for the request arriving now (consuming it from the queue)."""
        if not self._queue:
            return self._always
        fault, remaining = self._queue[0]
        if remaining == 1:
            self._queue.popleft()
        else:
            self._queue[0] = (fault, remaining - 1)
        self._pending -= 1
        return fault


_SILENT: frozenset[str] = frozenset({"hang", "drop", "cut_stream"})


def _drop(request: web.BaseRequest) -> web.StreamResponse:
    # With the transport closed, aiohttp's attempt to send the returned response
    # fails with a ConnectionResetError, which it treats as a client disconnect:
    # nothing is written or logged. close() first flushes what was already written
    # (the frames of a cut stream), then sends FIN.
    request.protocol.force_close()
    return web.Response()


async def _apply(fault: Fault, request: web.BaseRequest) -> web.StreamResponse | None:
    # Carry out `fault` on an aiohttp request: the response to return, or None to
    # answer normally. A cut_stream reaching here is for a request that is not streamed.
    kind = fault.kind
    if kind == "delay":
        await asyncio.sleep(fault.seconds)
        return None
    if kind == "hang":
        # Only cancellation ends this: the client leaving, or FakeUpstream.stop().
        await asyncio.get_running_loop().create_future()
    if kind in _SILENT:
        return _drop(request)
    if kind == "malformed":
        return web.Response(body=fault.body, headers={"Content-Type": fault.content_type})
    status = fault.http_status or 500
    return web.Response(body=fault.error_body(), status=status, headers=fault.response_headers())
