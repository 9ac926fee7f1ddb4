"""Plumbing shared by the transports for non-OpenAI wire formats (Anthropic, Gemini):
posting JSON under the attempt's deadline, opening an SSE stream up to its first
chunk, and a stream base class that turns provider events into OpenAI-shaped chunks.
"""

from __future__ import annotations

import time
from collections import deque
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
    StreamInterruptedError,
)
from interlock.providers.http import (
    ErrorMapper,
    HttpClient,
    dumps_body,
    malformed,
    open_sse,
    post_bytes,
)
from interlock.providers.params import call_headers
from interlock.providers.sse import OpenChoices, SSEReader, read_error
from interlock.types import ChatCompletionChunk, ChoiceDelta, ChunkChoice, ReasoningBlock, Usage

__all__ = ["PARSE_ERRORS", "Endpoint", "NativeStream", "NativeTransport", "make_chunk"]

PARSE_ERRORS = (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError, IndexError)


@dataclass(slots=True, frozen=True)
class Endpoint:
    """What a transport needs for one deployment, computed once."""

    base: str
    headers: dict[str, str]
    secret: str | None
    deployment: Deployment | None = None
    """The settings it was made from: another object under the same id (after a
    runtime change) makes the endpoint again."""


def make_chunk(
    d: Deployment,
    id: str,
    model: str,
    created: int,
    choices: list[ChunkChoice],
    usage: Usage | None = None,
) -> ChatCompletionChunk:
    return ChatCompletionChunk(
        id=id,
        model=model,
        choices=choices,
        usage=usage,
        created=created,
        deployment_id=d.id or "",
        group=d.group,
    )


def delta_choice(
    index: int = 0,
    *,
    role: str | None = None,
    content: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    finish: str | None = None,
    reasoning_content: str | None = None,
    reasoning_blocks: list[ReasoningBlock] | None = None,
    annotations: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> ChunkChoice:
    delta = ChoiceDelta(
        role, content, tool_calls, None, reasoning_content, reasoning_blocks, annotations
    )
    return ChunkChoice(index, delta, finish, None, extra)


class NativeTransport:
    """Base of the Anthropic and Gemini transports; subclasses build endpoints and
    bodies and map error responses."""

    provider = "native"

    def __init__(self, client: HttpClient, deadlines: DeadlineWheel | None = None) -> None:
        self._client = client
        self._deadlines = deadlines or DeadlineWheel()
        self._endpoints: dict[str, Endpoint] = {}

    def _endpoint(self, d: Deployment) -> Endpoint:
        ep = self._endpoints.get(d.id or "")
        if ep is None or ep.deployment is not d:
            key = d.api_key_value()
            headers = {**self._headers(d, key), **d.headers}
            ep = self._endpoints[d.id or ""] = Endpoint(d.api_base, headers, key, d)
        return ep

    def forget(self, deployment_id: str) -> None:
        """Drop what was made for a deployment the router no longer has (its headers
        hold its key)."""
        self._endpoints.pop(deployment_id, None)

    def _headers(self, d: Deployment, key: str | None) -> dict[str, str]:
        raise NotImplementedError

    def _error(
        self, d: Deployment, status: int, headers: Mapping[str, str], raw: bytes, secret: str | None
    ) -> InterlockError:
        raise NotImplementedError

    async def _post(
        self, d: Deployment, ep: Endpoint, url: URL, payload: dict[str, Any], timeout: float,
        params: Mapping[str, Any] | None = None,
    ) -> Any:  # fmt: skip
        headers = call_headers(ep.headers, params) if params else ep.headers
        raw = await post_bytes(
            self._client, self._deadlines, d, url, dumps_body(payload), headers, ep.secret,
            timeout, self._error,
        )  # fmt: skip
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            err = malformed(d, exc)
        raise err  # off the chain: the decoder's exception holds the body

    async def _open(
        self,
        d: Deployment,
        ep: Endpoint,
        url: URL,
        payload: dict[str, Any],
        timeout: float,
        stream_cls: type[NativeStream],
        params: Mapping[str, Any] | None = None,
    ) -> NativeStream:
        def make(resp: aiohttp.ClientResponse) -> NativeStream:
            stream = stream_cls(resp, d, ep.secret)
            stream.error_mapper = self._error
            return stream

        headers = call_headers(ep.headers, params) if params else ep.headers
        return await open_sse(
            self._client, self._deadlines, d, url, dumps_body(payload), headers, ep.secret,
            timeout, self._error, make,
        )  # fmt: skip

    async def aclose(self) -> None:
        await self._client.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(open={self._client.is_open})"


class NativeStream:
    """An SSE stream whose events `_feed` turns into zero or more chunks.

    Subclasses set `finished` when the provider said the message is complete; a clean
    end of the body before that is a cut stream, unless every choice has already sent
    its finish_reason (the answer is complete; only the end marker is missing).
    """

    first: ChatCompletionChunk
    error_mapper: ErrorMapper | None = None
    """The transport's mapping of an error response, for errors sent as stream events."""

    def __init__(
        self,
        resp: aiohttp.ClientResponse,
        deployment: Deployment,
        secret: str | None,
    ) -> None:
        self._resp = resp
        self._reader = SSEReader(resp, idle_timeout=deployment.timeout)
        self._secret = secret
        self._pending: deque[ChatCompletionChunk] = deque()
        self._choices = OpenChoices()
        self._done = False
        self.finished = False
        self.deployment = deployment
        self.chunks = 0
        self.created = int(time.time())

    def _feed(self, data: bytes) -> None:
        raise NotImplementedError

    def _emit(self, chunk: ChatCompletionChunk) -> None:
        self._choices.note(chunk)
        self._pending.append(chunk)

    async def next(self) -> ChatCompletionChunk | None:
        while not self._pending:
            if self._done or self.finished:
                self.close()
                return None
            err = await self._read()
            if err is not None:
                self.close()
                raise err
        self.chunks += 1
        return self._pending.popleft()

    async def _read(self) -> InterlockError | None:
        """Read and feed one event; the error that ends the stream, if it ends."""
        d = self.deployment
        try:
            data = await self._reader.read()
        except Exception as exc:  # typed below, or raised as it is
            err = read_error(d, exc, self.chunks)
            if err is None:
                self.close()
                raise
            return err
        if data is None:
            if self._choices.complete:
                self.finished = True
                return None
            return StreamInterruptedError(
                f"stream ended before the message was complete, after {self.chunks} chunk(s)",
                deployment_id=d.id,
            )
        try:
            self._feed(data)
        except InterlockError as exc:
            return exc
        except PARSE_ERRORS as exc:
            return malformed(d, exc)
        return None

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._reader.close()
            self._resp.close()
