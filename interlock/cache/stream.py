"""Streams through the cache: replaying a cached response, recording a live one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Protocol

from interlock.types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatMessage,
    Choice,
    ChoiceDelta,
    ChunkChoice,
    ReasoningBlock,
    Usage,
)

__all__ = ["CachedStream", "LiveStream", "StreamRecorder", "replay_chunks"]


class LiveStream(Protocol):
    """The live stream a recording passes through: the router's `ChatStream`, named by
    its shape because the cache sits below the router (docs/architecture.md)."""

    deployment_id: str
    group: str
    request_id: str
    ttft: float
    cost: float | None

    async def __anext__(self) -> ChatCompletionChunk: ...

    async def aclose(self) -> None: ...


REPLAY_PIECE_CHARS = 32
"""Content pieces of a replayed response not recorded from a stream are this long."""

OnComplete = Callable[[ChatCompletion, dict[int, list[int]]], Awaitable[None]]


def _split(text: str, lengths: list[int] | None) -> list[str]:
    if lengths and sum(lengths) == len(text):
        out, at = [], 0
        for n in lengths:
            out.append(text[at : at + n])
            at += n
        return out
    return [text[i : i + REPLAY_PIECE_CHARS] for i in range(0, len(text), REPLAY_PIECE_CHARS)]


def replay_chunks(
    c: ChatCompletion, pieces: dict[int, list[int]] | None = None
) -> list[ChatCompletionChunk]:
    """`c` as the chunks a provider would stream: per choice a role chunk, the content
    in pieces (where the original stream split it, if it was recorded from one), tool
    calls, refusal and a finish chunk; reasoning (text and signed blocks) before the
    content and annotations after it; then a usage chunk, details included, if `c` has
    usage."""

    def chunk(choices: list[ChunkChoice], usage: Usage | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=c.id,
            model=c.model,
            choices=choices,
            usage=usage,
            created=c.created,
            deployment_id=c.deployment_id,
            group=c.group,
            cached=True,
        )

    out: list[ChatCompletionChunk] = []
    for ch in c.choices:
        m = ch.message
        first = "" if m.content is not None else None
        out.append(chunk([ChunkChoice(ch.index, ChoiceDelta(role=m.role, content=first))]))
        if m.reasoning_content or m.reasoning_blocks:
            delta = ChoiceDelta(
                reasoning_content=m.reasoning_content, reasoning_blocks=m.reasoning_blocks
            )
            out.append(chunk([ChunkChoice(ch.index, delta)]))
        for piece in _split(m.content or "", (pieces or {}).get(ch.index)):
            out.append(chunk([ChunkChoice(ch.index, ChoiceDelta(content=piece))]))
        if m.tool_calls:
            calls = [{**tc, "index": i} for i, tc in enumerate(m.tool_calls)]
            out.append(chunk([ChunkChoice(ch.index, ChoiceDelta(tool_calls=calls))]))
        if m.refusal:
            out.append(chunk([ChunkChoice(ch.index, ChoiceDelta(refusal=m.refusal))]))
        if m.annotations:
            out.append(chunk([ChunkChoice(ch.index, ChoiceDelta(annotations=m.annotations))]))
        out.append(chunk([ChunkChoice(ch.index, ChoiceDelta(), ch.finish_reason, ch.logprobs)]))
    if c.usage is not None:
        out.append(chunk([], c.usage))
    return out


class _Choice:
    __slots__ = (
        "annotations",
        "blocks",
        "content",
        "finish",
        "logprobs",
        "pieces",
        "reasoning",
        "refusal",
        "role",
        "tools",
    )

    def __init__(self) -> None:
        self.role = "assistant"
        self.content: list[str] | None = None
        self.pieces: list[int] = []
        self.refusal: list[str] | None = None
        self.tools: dict[int, dict[str, Any]] = {}
        self.finish: str | None = None
        self.logprobs: Any = None
        # Reasoning is kept so that a replayed answer can be sent back as the provider
        # signed it (the next turn of a tool loop needs it).
        self.reasoning: list[str] | None = None
        self.blocks: list[ReasoningBlock] = []
        self.annotations: list[dict[str, Any]] = []


class StreamRecorder:
    """Assembles streamed chunks into the `ChatCompletion` they add up to."""

    __slots__ = ("_choices", "_first", "usage")

    def __init__(self) -> None:
        self._choices: dict[int, _Choice] = {}
        self._first: ChatCompletionChunk | None = None
        self.usage: Usage | None = None

    def add(self, chunk: ChatCompletionChunk) -> None:
        if self._first is None:
            self._first = chunk
        if chunk.usage is not None:
            self.usage = chunk.usage
        for cc in chunk.choices:
            st = self._choices.get(cc.index)
            if st is None:
                st = self._choices[cc.index] = _Choice()
            d = cc.delta
            if d.role:
                st.role = d.role
            if d.content is not None:
                if st.content is None:
                    st.content = []
                if d.content:
                    st.content.append(d.content)
                    st.pieces.append(len(d.content))
            if d.refusal:
                st.refusal = [*(st.refusal or []), d.refusal]
            if d.reasoning_content:
                st.reasoning = [*(st.reasoning or []), d.reasoning_content]
            if d.reasoning_blocks:
                st.blocks.extend(d.reasoning_blocks)
            if d.annotations:
                st.annotations.extend(d.annotations)
            for tc in d.tool_calls or ():
                _merge_tool_call(st.tools, tc)
            if cc.finish_reason is not None:
                st.finish = cc.finish_reason
            if cc.logprobs is not None:
                st.logprobs = _merge_logprobs(st.logprobs, cc.logprobs)

    @property
    def complete(self) -> bool:
        """Every choice seen has a finish reason (a cut stream has none)."""
        return bool(self._choices) and all(c.finish is not None for c in self._choices.values())

    def pieces(self) -> dict[int, list[int]]:
        return {i: c.pieces for i, c in self._choices.items()}

    def build(self) -> ChatCompletion:
        first = self._first
        if first is None:
            raise ValueError("no chunk was recorded")
        choices = []
        for i in sorted(self._choices):
            st = self._choices[i]
            tools = [st.tools[k] for k in sorted(st.tools)] or None
            msg = ChatMessage(
                st.role,
                "".join(st.content) if st.content is not None else None,
                tools,
                "".join(st.refusal) if st.refusal else None,
                reasoning_content="".join(st.reasoning) if st.reasoning else None,
                reasoning_blocks=st.blocks or None,
                annotations=st.annotations or None,
            )
            choices.append(Choice(i, msg, st.finish, st.logprobs))
        return ChatCompletion(
            id=first.id,
            model=first.model,
            choices=choices,
            usage=self.usage,
            created=first.created,
            deployment_id=first.deployment_id,
            group=first.group,
        )


def _merge_tool_call(tools: dict[int, dict[str, Any]], delta: dict[str, Any]) -> None:
    idx = int(delta.get("index", len(tools)))
    cur = tools.get(idx)
    if cur is None:
        cur = tools[idx] = {
            "id": None,
            "type": "function",
            "function": {"name": "", "arguments": ""},
        }
    if delta.get("id"):
        cur["id"] = delta["id"]
    if delta.get("type"):
        cur["type"] = delta["type"]
    fn = delta.get("function") or {}
    if fn.get("name"):
        cur["function"]["name"] += fn["name"]
    if fn.get("arguments"):
        cur["function"]["arguments"] += fn["arguments"]


def _merge_logprobs(have: Any, new: Any) -> Any:
    if have is None:
        return new
    if isinstance(have, dict) and isinstance(new, dict):
        out = dict(have)
        for k, v in new.items():
            prev = out.get(k)
            out[k] = prev + v if isinstance(prev, list) and isinstance(v, list) else v
        return out
    return new


class CachedStream:
    """A chat stream that passes through the response cache, with the interface of
    `ChatStream` (async iteration of `ChatCompletionChunk`, ``aclose()``, ``async
    with``, and `deployment_id`, `group`, `ttft`, `usage`, `chunks`, `cost`).

    Two kinds, told apart by `cached`:

    - replay (``cached=True``): a cached response as chunks; no provider is involved.
    - recording (``cached=False``): a live stream (a `LiveStream`) passed through unchanged;
      when it ends cleanly, the chunks are assembled into a `ChatCompletion` and
      stored. A stream that is cut, fails, or is closed early is never stored.
    """

    __slots__ = (
        "_live",
        "_on_complete",
        "_recorder",
        "_replay",
        "cached",
        "chunks",
        "deployment_id",
        "group",
        "request_id",
        "ttft",
        "usage",
    )

    def __init__(
        self,
        *,
        replay: list[ChatCompletionChunk] | None = None,
        live: LiveStream | None = None,
        on_complete: OnComplete | None = None,
        deployment_id: str = "",
        group: str = "",
    ) -> None:
        if (replay is None) == (live is None):
            raise ValueError("CachedStream needs exactly one of replay= and live=")
        self._replay = replay
        self._live = live
        self._on_complete = on_complete
        self._recorder = StreamRecorder() if live is not None else None
        self.cached = live is None
        self.deployment_id = live.deployment_id if live is not None else deployment_id
        self.group = live.group if live is not None else group
        self.request_id: str = live.request_id if live is not None else ""
        """The id of the call that returned the stream (as on a `ChatStream`)."""
        self.ttft: float = live.ttft if live is not None else 0.0
        self.usage: Usage | None = None
        self.chunks = 0

    @classmethod
    def from_completion(
        cls, c: ChatCompletion, pieces: dict[int, list[int]] | None = None
    ) -> CachedStream:
        """A replay of `c`."""
        chunks = replay_chunks(c, pieces)
        chunks.reverse()  # popped from the end
        return cls(replay=chunks, deployment_id=c.deployment_id, group=c.group)

    @classmethod
    def recording(cls, live: LiveStream, on_complete: OnComplete) -> CachedStream:
        """`live`, stored through `on_complete` when it ends cleanly."""
        return cls(live=live, on_complete=on_complete)

    @property
    def cost(self) -> float | None:
        """0.0 for a replay; for a recording, the live stream's cost once it ended."""
        return 0.0 if self._live is None else self._live.cost

    def __aiter__(self) -> CachedStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        if self._live is None:
            if not self._replay:
                raise StopAsyncIteration
            chunk = self._replay.pop()
        else:
            try:
                chunk = await self._live.__anext__()
            except StopAsyncIteration:
                await self._finish()
                raise
            except BaseException:
                self._recorder = None
                raise
            if self._recorder is not None:
                self._recorder.add(chunk)
        self.chunks += 1
        if chunk.usage is not None:
            self.usage = chunk.usage
        return chunk

    async def _finish(self) -> None:
        rec, self._recorder = self._recorder, None
        if rec is None or self._on_complete is None or not rec.complete:
            return
        await self._on_complete(rec.build(), rec.pieces())

    async def aclose(self) -> None:
        """Stop reading (a recording is then not stored)."""
        self._recorder = None
        self._replay = []
        if self._live is not None:
            await self._live.aclose()

    async def __aenter__(self) -> CachedStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        kind = "replay" if self.cached else "recording"
        return f"<CachedStream {kind} {self.deployment_id} chunks={self.chunks}>"
