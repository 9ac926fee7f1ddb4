"""OpenAI's Responses API (``POST /responses``) over the OpenAI and Azure OpenAI
transports: the request body, the plain call and the stream of semantic events.

Paths (https://platform.openai.com/docs/api-reference/responses/create):

- OpenAI and OpenAI-compatible servers: ``{api_base}/responses`` (``api_base`` ends
  in ``/v1``), bearer key.
- Azure OpenAI, the v1 API (generally available; the default):
  ``{endpoint}/openai/v1/responses``, no ``api-version``, the deployment name as the
  body's ``model``
  (https://learn.microsoft.com/azure/ai-foundry/openai/how-to/responses).
- Azure OpenAI, the preview API, used when the deployment's `api_version` ends in
  ``-preview``: ``{endpoint}/openai/responses?api-version={api_version}``.

Both take the ``api-key`` header or a Microsoft Entra ID token, as chat does.
A stream is server-sent events whose ``data`` is the event (its ``type`` inside), and
ends after ``response.completed``, ``response.incomplete`` or ``response.failed``;
an ``error`` event is raised as the typed error its code maps to.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any, TypeVar

import aiohttp
import orjson
from yarl import URL

from interlock.config import Deployment
from interlock.errors import InterlockError, StreamInterruptedError
from interlock.providers.azure import AzureOpenAITransport
from interlock.providers.http import dumps_body, malformed, open_sse, post_bytes
from interlock.providers.openai import OpenAITransport, error_in_200, openai_error
from interlock.providers.params import call_headers
from interlock.providers.sse import SSEReader, read_error
from interlock.responses_types import TERMINAL_EVENTS, ResponseEvent, ResponseResult
from interlock.types import Request

__all__ = [
    "ResponseEventSource",
    "create_response",
    "open_response_stream",
    "responses_body",
    "responses_url",
    "serves_responses",
]

R = TypeVar("R")

_PARSE_ERRORS = (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError)


def serves_responses(transport: object) -> bool:
    """Whether `transport` speaks the Responses API (OpenAI's and Azure's, and every
    OpenAI-compatible preset, which share them)."""
    return isinstance(transport, OpenAITransport)


def responses_url(transport: OpenAITransport, d: Deployment) -> URL:
    """Where `d` takes Responses API calls (see the module's docstring)."""
    if isinstance(transport, AzureOpenAITransport):
        version = d.api_version or ""
        if version.endswith("-preview"):
            return URL(f"{d.api_base}/openai/responses", encoded=True).with_query(
                {"api-version": version}
            )
        return URL(f"{d.api_base}/openai/v1/responses", encoded=True)
    return URL(f"{d.api_base}/responses", encoded=True)


def responses_body(d: Deployment, request: Request, stream: bool) -> dict[str, Any]:
    """The body of ``POST /responses``: the deployment's model (on Azure, the
    deployment name), the input, the call's parameters, `extra_body` merged over them."""
    payload: dict[str, Any] = {"model": d.model, "input": request.input, **request.params}
    payload.pop("extra_headers", None)
    extra = payload.pop("extra_body", None)
    if extra:
        payload.update(extra)
    if stream:
        payload["stream"] = True
    else:
        payload.pop("stream_options", None)  # the API takes it only with stream
    return payload


# Not coroutine functions, as `OpenAITransport.chat`: with a key, `post_bytes`'s (or
# `open_sse`'s) coroutine is returned as it is, no frame of ours on every resumption.
def create_response(
    transport: OpenAITransport, d: Deployment, request: Request, timeout: float
) -> Coroutine[Any, Any, ResponseResult]:
    """One plain Responses call to `d`."""
    return _authorized(transport, d, timeout, partial(_create, transport, d, request, timeout))


def open_response_stream(
    transport: OpenAITransport, d: Deployment, request: Request, timeout: float
) -> Coroutine[Any, Any, ResponseEventSource]:
    """Open a streamed Responses call and read up to its first event within
    `timeout`, so a failure before any event is an ordinary (retryable) attempt
    failure."""
    return _authorized(transport, d, timeout, partial(_open, transport, d, request, timeout))


def _authorized(
    transport: OpenAITransport,
    d: Deployment,
    timeout: float,
    send: Callable[[], Coroutine[Any, Any, R]],
) -> Coroutine[Any, Any, R]:
    # An Entra ID token goes into the cached endpoint before `send` reads it, as for chat.
    if isinstance(transport, AzureOpenAITransport) and d.azure_ad_token_provider is not None:
        return transport._with_token(d, timeout, send)
    return send()


def _create(
    transport: OpenAITransport, d: Deployment, request: Request, timeout: float
) -> Coroutine[Any, Any, ResponseResult]:
    ep = transport._endpoint(d)
    body = dumps_body(responses_body(d, request, False))
    return post_bytes(
        transport._client, transport._deadlines, d, responses_url(transport, d), body,
        call_headers(ep.headers, request.params), ep.secret, timeout, openai_error,
        _response_result,
    )  # fmt: skip


def _response_result(d: Deployment, raw: bytes, secret: str | None) -> ResponseResult:
    try:
        data = orjson.loads(raw)
        if isinstance(data, dict) and "error" in data and "output" not in data:
            raise error_in_200(d, data, secret)
        return ResponseResult.from_dict(data, deployment_id=d.id or "", group=d.group)
    except _PARSE_ERRORS as exc:
        err = malformed(d, exc)
    raise err  # off the chain: the decoder's exception holds the body


def _open(
    transport: OpenAITransport, d: Deployment, request: Request, timeout: float
) -> Coroutine[Any, Any, ResponseEventSource]:
    ep = transport._endpoint(d)
    return open_sse(
        transport._client, transport._deadlines, d, responses_url(transport, d),
        dumps_body(responses_body(d, request, True)), call_headers(ep.headers, request.params),
        ep.secret, timeout, openai_error, lambda resp: ResponseEventSource(resp, d, ep.secret),
        "event",
    )  # fmt: skip


class ResponseEventSource:
    """An open stream of Responses API events; `first` is set once it has arrived."""

    __slots__ = ("_done", "_ended", "_reader", "_resp", "_secret", "deployment", "events", "first")

    first: ResponseEvent

    def __init__(
        self, resp: aiohttp.ClientResponse, deployment: Deployment, secret: str | None
    ) -> None:
        self._resp = resp
        self._reader = SSEReader(resp, idle_timeout=deployment.timeout)
        self._secret = secret
        self._done = False
        self._ended = False
        """A terminal event (``response.completed``, ...) has arrived."""
        self.deployment = deployment
        self.events = 0

    async def next(self) -> ResponseEvent | None:
        """The next event; None after the terminal one. Raises a typed error for an
        ``error`` event and `StreamInterruptedError` for a body that ends before a
        terminal event."""
        if self._done:
            return None
        d = self.deployment
        try:
            data = None if self._ended else await self._reader.read()
        except Exception as exc:  # typed below, or raised as it is
            self.close()
            err = read_error(d, exc, self.events)
            if err is None:
                raise
        else:
            if data is not None and data != b"[DONE]":
                return self._event(data)
            self.close()
            if self._ended or data is not None:
                return None
            err = StreamInterruptedError(
                f"stream ended without response.completed after {self.events} event(s)",
                deployment_id=d.id,
            )
        raise err

    def _event(self, data: bytes) -> ResponseEvent:
        d = self.deployment
        try:
            obj = orjson.loads(data)
            kind = obj["type"]
            if not isinstance(kind, str):
                raise TypeError("an event's type is a string")
        except _PARSE_ERRORS as exc:
            err: InterlockError = malformed(d, exc)
        else:
            if kind != "error":
                self.events += 1
                if kind in TERMINAL_EVENTS:
                    self._ended = True
                return ResponseEvent(kind, obj, d.id or "", d.group)
            err = _event_error(d, obj, self._secret)
        self.close()
        raise err

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._resp.close()


def _event_error(d: Deployment, event: dict[str, Any], secret: str | None) -> InterlockError:
    """An ``error`` event as the typed error of the same body with HTTP 200 (its
    ``code`` names the kind: ``rate_limit_exceeded``, ``server_error``, ...)."""
    body = {k: event.get(k) for k in ("message", "code", "param")}
    body["type"] = event.get("code") or "server_error"
    return error_in_200(d, {"error": body}, secret)
