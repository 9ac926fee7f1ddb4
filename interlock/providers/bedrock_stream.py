"""Bedrock ConverseStream: AWS event-stream messages as OpenAI-shaped chunks.

The body is ``application/vnd.amazon.eventstream``: binary messages (a prelude with
lengths and a CRC, typed headers, a payload, a CRC of the whole). botocore's
`EventStreamBuffer` is a pure parser that works without botocore's HTTP stack, so it
decodes them here (checksums included). Each message's ``:message-type`` header is
``event`` (then ``:event-type`` names it and the payload is JSON) or ``exception``
(``:exception-type``, e.g. ``throttlingException``, with ``{"message"}``).

Events (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html):
``messageStart {role}``, ``contentBlockStart {contentBlockIndex, start: {toolUse:
{toolUseId, name}}}``, ``contentBlockDelta {contentBlockIndex, delta: {text} |
{toolUse: {input}} | {reasoningContent: ...}}``, ``contentBlockStop
{contentBlockIndex}``, ``messageStop {stopReason}``, ``metadata {usage, metrics}`` (the
last one).

A reasoning block has no start event: its deltas
(https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ReasoningContentBlockDelta.html)
each hold one of ``text``, ``signature`` or ``redactedContent`` (base64 in the JSON
payload). The text pieces are passed on as they come; the block is gathered and sent
whole, once, at its ``contentBlockStop``, since only a whole block can be sent back.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import aiohttp
import orjson

from interlock.config import Deployment
from interlock.errors import (
    APITimeoutError,
    BadRequestError,
    ContextWindowExceededError,
    InterlockError,
    InternalServerError,
    RateLimitError,
    ServiceUnavailableError,
    StreamInterruptedError,
)
from interlock.providers.bedrock_converse import (
    finish_reason,
    join_redacted,
    reasoning_block,
    usage_of,
)
from interlock.providers.credentials import require
from interlock.providers.http import malformed
from interlock.providers.native import PARSE_ERRORS, delta_choice, make_chunk
from interlock.types import ChatCompletionChunk

__all__ = ["BedrockStream", "stream_error"]

_STREAM_ERRORS: dict[str, type[InterlockError]] = {
    "throttlingexception": RateLimitError,
    "servicequotaexceededexception": RateLimitError,
    "serviceunavailableexception": ServiceUnavailableError,
    "modelnotreadyexception": ServiceUnavailableError,
    "modeltimeoutexception": APITimeoutError,
    "validationexception": BadRequestError,
    "internalserverexception": InternalServerError,
    "modelstreamerrorexception": InternalServerError,
}
_CONTEXT_MARKERS = ("too long", "too many input tokens", "exceed context limit",
                    "context length", "context window")  # fmt: skip


def scrub_all(text: str, secrets: Iterable[str]) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, "[redacted]")
    return text


def stream_error(d: Deployment, kind: str, message: str, secrets: Iterable[str]) -> InterlockError:
    """The error for a mid-stream exception message (``:exception-type``)."""
    cls = _STREAM_ERRORS.get(kind.lower(), InternalServerError)
    text = f"bedrock sent {kind} mid-stream: {scrub_all(message, secrets)}"
    if cls is BadRequestError and any(m in message.lower() for m in _CONTEXT_MARKERS):
        cls = ContextWindowExceededError
    return cls(text, deployment_id=d.id)


class BedrockStream:
    """An open ConverseStream response; `next()` returns its chunks."""

    first: ChatCompletionChunk

    def __init__(
        self, resp: aiohttp.ClientResponse, deployment: Deployment, secrets: tuple[str, ...]
    ) -> None:
        self._resp = resp
        self._buffer = require("botocore.eventstream", "bedrock").EventStreamBuffer()
        self._secrets = secrets
        self._pending: deque[ChatCompletionChunk] = deque()
        self._done = False
        self._stopped = False  # messageStop seen
        self.finished = False  # metadata seen: nothing more will come
        self.deployment = deployment
        self.chunks = 0
        self.created = int(time.time())
        self._id = f"chatcmpl-bedrock-{id(self):x}{self.created:x}"
        self._tools: dict[int, int] = {}  # contentBlockIndex -> tool_calls index
        # contentBlockIndex -> the block's text, signature and redactedContent pieces
        self._reasoning: dict[int, tuple[list[str], list[str], list[str]]] = {}
        self._handlers: dict[str, Callable[[Any], None]] = {
            "messageStart": self._message_start,
            "contentBlockStart": self._block_start,
            "contentBlockDelta": self._block_delta,
            "contentBlockStop": self._block_stop,
            "messageStop": self._message_stop,
            "metadata": self._metadata,
        }

    async def next(self) -> ChatCompletionChunk | None:
        while not self._pending:
            if self._done or self.finished:
                self.close()
                return None
            message = await self._read_message()
            if message is None:
                self.close()
                if self._stopped:  # the metadata event is optional
                    return None
                raise StreamInterruptedError(
                    f"stream ended before messageStop, after {self.chunks} chunk(s)",
                    deployment_id=self.deployment.id,
                )
            failure: InterlockError | None = None
            try:
                self._feed(message)
            except InterlockError:
                self.close()
                raise
            except PARSE_ERRORS as exc:
                self.close()
                failure = malformed(self.deployment, exc)
            if failure is not None:
                raise failure  # off the chain: the parser's exception may quote the body
        self.chunks += 1
        return self._pending.popleft()

    async def _read_message(self) -> Any:
        """The next complete event-stream message; None at a clean end of the body."""
        d = self.deployment
        while True:
            failure: InterlockError | None = None
            try:
                return next(self._buffer)
            except StopIteration:
                pass
            except Exception as exc:  # botocore's ParserError family: bad CRC, lengths
                self.close()
                failure = malformed(d, exc)
            if failure is not None:
                raise failure  # off the chain: the parser's exception may quote the body
            try:
                async with asyncio.timeout(d.timeout):
                    data = await self._resp.content.readany()
            except TimeoutError:
                self.close()
                raise StreamInterruptedError(
                    f"no event for {d.timeout:.3g} s after {self.chunks} chunk(s)",
                    deployment_id=d.id,
                ) from None
            except (aiohttp.ClientError, OSError) as exc:
                self.close()
                raise StreamInterruptedError(
                    f"stream cut after {self.chunks} chunk(s): {type(exc).__name__}",
                    deployment_id=d.id,
                ) from None
            if not data:
                return None
            self._buffer.add_data(data)

    def _feed(self, message: Any) -> None:
        headers = message.headers
        kind = headers.get(":message-type")
        if kind in ("exception", "error"):
            name = str(headers.get(":exception-type") or headers.get(":error-code") or kind)
            body = orjson.loads(message.payload) if message.payload else {}
            text = str(body.get("message") or body.get("Message") or headers.get(":error-message"))
            raise stream_error(self.deployment, name, text, self._secrets)
        handler = self._handlers.get(str(headers.get(":event-type")))
        if handler is not None:
            handler(orjson.loads(message.payload))
        # Unknown events carry nothing for the caller.

    def _chunk(self, **delta: Any) -> None:
        d = self.deployment
        self._pending.append(
            make_chunk(d, self._id, d.model, self.created, [delta_choice(**delta)])
        )

    def _message_start(self, event: Any) -> None:
        self._chunk(role=str(event.get("role") or "assistant"), content="")

    def _block_start(self, event: Any) -> None:
        use = (event.get("start") or {}).get("toolUse")
        if use is not None:
            index = self._tools[int(event["contentBlockIndex"])] = len(self._tools)
            fn = {"name": use["name"], "arguments": ""}
            self._chunk(tool_calls=[{"index": index, "id": use["toolUseId"], "type": "function",
                                     "function": fn}])  # fmt: skip

    def _block_delta(self, event: Any) -> None:
        delta = event["delta"]
        if "text" in delta:
            self._chunk(content=delta["text"])
        elif "toolUse" in delta:
            index = self._tools[int(event["contentBlockIndex"])]
            args = {"arguments": delta["toolUse"].get("input") or ""}
            self._chunk(tool_calls=[{"index": index, "function": args}])
        elif "reasoningContent" in delta:
            self._reasoning_delta(int(event["contentBlockIndex"]), delta["reasoningContent"])

    def _reasoning_delta(self, index: int, piece: Any) -> None:
        text, signature, redacted = self._reasoning.setdefault(index, ([], [], []))
        if piece.get("text"):
            text.append(str(piece["text"]))
            self._chunk(reasoning_content=text[-1])
        if piece.get("signature"):
            signature.append(str(piece["signature"]))
        if piece.get("redactedContent"):
            redacted.append(str(piece["redactedContent"]))

    def _block_stop(self, event: Any) -> None:
        parts = self._reasoning.pop(int(event.get("contentBlockIndex", -1)), None)
        if parts is None:
            return  # a text or toolUse block: its pieces are already out
        text, signature, redacted = parts
        block = reasoning_block(
            "".join(text), "".join(signature), join_redacted(redacted) if redacted else ""
        )
        if block is not None:
            self._chunk(reasoning_blocks=[block])

    def _message_stop(self, event: Any) -> None:
        self._stopped = True
        self._chunk(finish=finish_reason(event.get("stopReason"), self.deployment))

    def _metadata(self, event: Any) -> None:
        self.finished = True
        usage = usage_of(event.get("usage"))
        d = self.deployment
        if d.stream_usage and usage is not None:
            self._pending.append(make_chunk(d, self._id, d.model, self.created, [], usage))

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._resp.close()

    def __repr__(self) -> str:
        return f"BedrockStream(deployment={self.deployment.id!r}, chunks={self.chunks})"
