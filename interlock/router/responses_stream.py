"""The stream of Responses API events a caller iterates.

Its accounting, deadline and early-stop handling are `ChatStream`'s, reused whole:
each event travels through a `ChatStream` as a chunk that carries it, with the
output text of a delta event as the chunk's content (for the estimate when the
stream ends without usage) and the usage of the terminal event as the chunk's usage.
"""

from __future__ import annotations

from dataclasses import dataclass

from interlock.providers.openai_responses import ResponseEventSource
from interlock.responses_types import (
    TERMINAL_EVENTS,
    ResponseEvent,
    ResponseResult,
    ResponseUsage,
)
from interlock.router.attempt import Attempt
from interlock.router.closing import EndsEarly
from interlock.router.stream import ChatStream
from interlock.types import ChatCompletionChunk, ChoiceDelta, ChunkChoice, Usage

__all__ = ["ResponseStream", "open_response_events"]

_NO_CHOICES: list[ChunkChoice] = []  # never mutated: ChatStream only reads choices


@dataclass(slots=True)
class _EventChunk(ChatCompletionChunk):
    event: ResponseEvent | None = None


def _chunk(event: ResponseEvent) -> _EventChunk:
    delta = event.delta
    choices = (
        [ChunkChoice(0, ChoiceDelta(content=delta))]
        if delta and event.type.endswith(".delta")
        else _NO_CHOICES
    )
    usage: Usage | None = None
    if event.type in TERMINAL_EVENTS:
        body = event.data.get("response")
        u = body.get("usage") if isinstance(body, dict) else None
        if u:
            usage = ResponseUsage.from_dict(u).as_usage()
    return _EventChunk("", "", choices, usage, event=event)


class _Chunks:
    """A `ChunkSource` over a `ResponseEventSource`."""

    __slots__ = ("_source", "first")

    def __init__(self, source: ResponseEventSource) -> None:
        self._source = source
        self.first: ChatCompletionChunk = _chunk(source.first)

    async def next(self) -> ChatCompletionChunk | None:
        event = await self._source.next()
        return None if event is None else _chunk(event)

    def close(self) -> None:
        self._source.close()


class ResponseStream(EndsEarly):
    """An async iterator of `ResponseEvent`, from the first (``response.created``)
    to the terminal one (``response.completed``, ``response.incomplete`` or
    ``response.failed``).

    The reservation is settled exactly once, as for a chat stream: at the end (with
    the usage of the terminal event's response), when the stream is cut (a
    `StreamInterruptedError`, or the typed error of an ``error`` event, counted
    against the deployment), when the call's deadline passes, or when the caller
    stops early (`aclose()`, leaving ``async with``, dropping the object).
    """

    __slots__ = ("_chat", "events", "first", "response")

    cached = False

    def __init__(self, chat: ChatStream, first: ResponseEvent) -> None:
        self._chat = chat
        self.first = first
        """The first event (``response.created``, carrying the response's id)."""
        self.events = 0
        self.response: ResponseResult | None = None
        """The final response, once the terminal event has arrived."""

    @property
    def deployment_id(self) -> str:
        return self._chat.deployment_id

    @property
    def group(self) -> str:
        return self._chat.group

    @property
    def request_id(self) -> str:
        """The router call's id (`Router.aresponses`'s ``request_id=``, or one the
        router made), as on its hook events, spans and errors."""
        return self._chat.request_id

    @property
    def ttft(self) -> float:
        """Seconds from sending the request to its first event."""
        return self._chat.ttft

    @property
    def usage(self) -> ResponseUsage | None:
        """The usage of the final response, once it has arrived."""
        r = self.response
        return r.usage if r is not None else None

    @property
    def cost(self) -> float | None:
        """US dollars the response cost (as `ResponseResult.cost`), once the stream has
        ended; None before that or when unknown."""
        return self._chat.cost

    def __aiter__(self) -> ResponseStream:
        return self

    async def __anext__(self) -> ResponseEvent:
        chunk = await self._chat.__anext__()
        event = chunk.event if isinstance(chunk, _EventChunk) else None
        assert event is not None
        self.events += 1
        if event.type in TERMINAL_EVENTS:
            response = self.response = event.response
            if response is not None:
                response.request_id = self._chat.request_id
        return event

    def _abandon(self) -> None:
        self._chat._abandon()

    def _open(self) -> bool:
        return self._chat._open()

    def __repr__(self) -> str:
        return f"<ResponseStream {self.deployment_id} events={self.events}>"


def open_response_events(
    prompt_tokens: int, source: ResponseEventSource, attempt: Attempt
) -> ResponseStream:
    """The pipeline's `complete` for a stream: the caller's stream, which settles its
    attempt when it ends."""
    return ResponseStream(ChatStream(_Chunks(source), attempt, prompt_tokens), source.first)
