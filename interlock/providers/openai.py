"""The OpenAI-compatible transport: chat completions (plain and SSE) and embeddings
against any server that speaks OpenAI's wire format at `api_base`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from yarl import URL

from interlock.config import Deployment
from interlock.deadline import DeadlineWheel
from interlock.errors import (
    InterlockError,
    InternalServerError,
    StreamInterruptedError,
)
from interlock.providers.http import (
    HttpClient,
    dumps_body,
    error_body_fields,
    error_from_response,
    malformed,
    open_sse,
    post_bytes,
    scrub,
)
from interlock.providers.sse import OpenChoices, SSEReader, read_error
from interlock.types import ChatCompletion, ChatCompletionChunk, EmbeddingResponse, Request

__all__ = ["OpenAIStream", "OpenAITransport"]

_PARSE_ERRORS = (
    orjson.JSONDecodeError,
    KeyError,
    TypeError,
    ValueError,
    AttributeError,
    IndexError,
)


@dataclass(slots=True, frozen=True)
class _Endpoint:
    chat: URL
    embeddings: URL
    headers: dict[str, str]
    secret: str | None


class OpenAITransport:
    """Speaks OpenAI's HTTP API over the router's shared session."""

    provider = "openai"

    def __init__(self, client: HttpClient, deadlines: DeadlineWheel | None = None) -> None:
        self._client = client
        self._deadlines = deadlines or DeadlineWheel()
        self._endpoints: dict[str, _Endpoint] = {}

    def _endpoint(self, d: Deployment) -> _Endpoint:
        ep = self._endpoints.get(d.id or "")
        if ep is None:
            key = d.api_key_value()
            headers = {"Content-Type": "application/json"}
            if key:
                headers["Authorization"] = f"Bearer {key}"
            ep = _Endpoint(
                URL(f"{d.api_base}/chat/completions", encoded=True),
                URL(f"{d.api_base}/embeddings", encoded=True),
                headers,
                key,
            )
            self._endpoints[d.id or ""] = ep
        return ep

    def _payload(
        self, d: Deployment, head: dict[str, Any], params: dict[str, Any]
    ) -> dict[str, Any]:
        # `extra_body` merges into the top level, after (and over) the common parameters.
        payload = {"model": d.model, **head, **params}
        extra = payload.pop("extra_body", None)
        if extra:
            payload.update(extra)
        return payload

    async def chat(self, d: Deployment, request: Request, timeout: float) -> ChatCompletion:
        ep = self._endpoints.get(d.id or "") or self._endpoint(d)
        body = dumps_body(self._payload(d, {"messages": request.messages}, request.params))
        raw = await post_bytes(
            self._client, self._deadlines, d, ep.chat, body, ep.headers, ep.secret, timeout,
            openai_error,
        )  # fmt: skip
        try:
            return ChatCompletion.from_dict(
                orjson.loads(raw), deployment_id=d.id or "", group=d.group
            )
        except _PARSE_ERRORS as exc:
            err = malformed(d, exc)
        raise err  # off the chain: the decoder's exception holds the body

    async def embed(self, d: Deployment, request: Request, timeout: float) -> EmbeddingResponse:
        ep = self._endpoint(d)
        body = dumps_body(self._payload(d, {"input": request.input}, request.params))
        raw = await post_bytes(
            self._client, self._deadlines, d, ep.embeddings, body, ep.headers, ep.secret,
            timeout, openai_error,
        )  # fmt: skip
        try:
            return EmbeddingResponse.from_dict(
                orjson.loads(raw), deployment_id=d.id or "", group=d.group
            )
        except _PARSE_ERRORS as exc:
            err = malformed(d, exc)
        raise err  # off the chain: the decoder's exception holds the body

    async def open_stream(self, d: Deployment, request: Request, timeout: float) -> OpenAIStream:
        ep = self._endpoint(d)
        payload = self._payload(d, {"messages": request.messages}, request.params)
        payload["stream"] = True
        if d.stream_usage and "stream_options" not in payload:
            payload["stream_options"] = {"include_usage": True}
        return await open_sse(
            self._client, self._deadlines, d, ep.chat, dumps_body(payload), ep.headers,
            ep.secret, timeout, openai_error, lambda resp: OpenAIStream(resp, d, ep.secret),
        )  # fmt: skip

    async def aclose(self) -> None:
        await self._client.aclose()

    def __repr__(self) -> str:
        return f"OpenAITransport(open={self._client.is_open})"


class OpenAIStream:
    """An open SSE stream of `chat.completion.chunk` events."""

    __slots__ = (
        "_choices",
        "_done",
        "_reader",
        "_resp",
        "_secret",
        "chunks",
        "deployment",
        "first",
    )

    first: ChatCompletionChunk

    def __init__(
        self, resp: aiohttp.ClientResponse, deployment: Deployment, secret: str | None
    ) -> None:
        self._resp = resp
        self._reader = SSEReader(resp, idle_timeout=deployment.timeout)
        self._secret = secret
        self._done = False
        self._choices = OpenChoices()
        self.deployment = deployment
        self.chunks = 0

    async def next(self) -> ChatCompletionChunk | None:
        if self._done:
            return None
        d = self.deployment
        try:
            data = await self._reader.read()
        except Exception as exc:  # typed below, or raised as it is
            self.close()
            err = read_error(d, exc, self.chunks)
            if err is None:
                raise
        else:
            if data is not None and data != b"[DONE]":
                return self._chunk(data)
            self.close()
            if data is not None or self._choices.complete:
                return None
            err = StreamInterruptedError(
                f"stream ended without [DONE] after {self.chunks} chunk(s)", deployment_id=d.id
            )
        raise err

    def _chunk(self, data: bytes) -> ChatCompletionChunk:
        d = self.deployment
        try:
            obj = orjson.loads(data)
            if isinstance(obj, dict) and "error" in obj and "choices" not in obj:
                obj = None
            else:
                chunk = ChatCompletionChunk.from_dict(obj, deployment_id=d.id or "", group=d.group)
        except _PARSE_ERRORS as exc:
            err: InterlockError = malformed(d, exc)
        else:
            if obj is not None:
                self._choices.note(chunk)
                self.chunks += 1
                return chunk
            message, _, _ = error_body_fields(data)
            err = InternalServerError(
                f"{d.provider} sent an error mid-stream: {scrub(message, self._secret)}",
                deployment_id=d.id,
            )
        self.close()
        raise err

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._resp.close()


def openai_error(
    d: Deployment, status: int, headers: Mapping[str, str], raw: bytes, secret: str | None
) -> InterlockError:
    """OpenAI's error bodies and status codes onto the error tree."""
    return error_from_response(
        status, headers, raw, provider=d.provider, deployment_id=d.id or "", secret=secret
    )
