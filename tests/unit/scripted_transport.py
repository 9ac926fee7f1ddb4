"""A scripted in-memory `Transport` for unit tests of the router.

Each deployment gets a FIFO queue of `Step`s (and an optional standing step); a call
takes the next one. Steps can fail with any `InterlockError`, take fake time (the
`FakeClock` is advanced inside the attempt), hang until cancelled, wait for a gate,
emulate a transport that honours its timeout, or, for streams, cut after k chunks.
Every call is logged with the timeout the router gave it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from interlock import (
    APITimeoutError,
    ChatCompletion,
    ChatCompletionChunk,
    ChatMessage,
    Choice,
    ChoiceDelta,
    ChunkChoice,
    Deployment,
    Embedding,
    EmbeddingResponse,
    InterlockError,
    Request,
    Router,
    StreamInterruptedError,
    Usage,
)
from interlock.testing import FakeClock

__all__ = [
    "HANG",
    "MESSAGES",
    "OK",
    "REPLY",
    "TIMEOUT",
    "USAGE",
    "Call",
    "ScriptedStream",
    "ScriptedTransport",
    "Step",
    "dep",
    "fail",
    "first_candidate",
    "make_router",
    "until",
]

REPLY = "one two three four five six"
USAGE = Usage(prompt_tokens=11, completion_tokens=7, total_tokens=18)
MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": "hello there"}]


@dataclass(frozen=True, slots=True)
class Step:
    """What one attempt at one deployment does."""

    error: type[InterlockError] | None = None
    message: str = "scripted failure"
    status_code: int | None = None
    retry_after: float | None = None
    takes: float = 0.0
    """Fake seconds the attempt lasts: the clock is advanced before the outcome."""
    hang: bool = False
    """Never answer; only cancellation ends the attempt."""
    gate: asyncio.Event | None = None
    """Wait for this event, then carry on."""
    timeout: bool = False
    """Behave like a transport whose attempt ran out of time: advance the clock by the
    timeout the router gave and raise APITimeoutError."""
    cut_after: int | None = None
    """Streams: deliver this many chunks (0: none, failing the open), then interrupt."""
    stream_usage: bool = True
    """Streams: end with a usage chunk."""


OK = Step()
HANG = Step(hang=True)
TIMEOUT = Step(timeout=True)


def fail(
    error: type[InterlockError],
    message: str = "scripted failure",
    *,
    status_code: int | None = None,
    retry_after: float | None = None,
    takes: float = 0.0,
) -> Step:
    return Step(
        error=error, message=message, status_code=status_code, retry_after=retry_after, takes=takes
    )


@dataclass(frozen=True, slots=True)
class Call:
    deployment_id: str
    kind: str
    timeout: float
    group: str


class ScriptedStream:
    """A `ChunkSource` over prepared chunks; optionally interrupted after k of them."""

    def __init__(
        self,
        chunks: list[ChatCompletionChunk],
        deployment_id: str,
        cut_after: int | None,
        gate: Callable[[int], asyncio.Event | None],
    ) -> None:
        self.first = chunks[0]
        self._rest = deque(chunks[1:])
        self._delivered = 1
        self._cut_after = cut_after
        self._deployment_id = deployment_id
        self._gate = gate
        self.closed = 0
        self.reads = 0

    async def next(self) -> ChatCompletionChunk | None:
        self.reads += 1
        event = self._gate(self._delivered)
        if event is not None:
            await event.wait()
        if self._cut_after is not None and self._delivered >= self._cut_after:
            raise StreamInterruptedError(
                f"scripted cut after {self._delivered} chunk(s)", deployment_id=self._deployment_id
            )
        if not self._rest:
            return None
        self._delivered += 1
        return self._rest.popleft()

    def close(self) -> None:
        self.closed += 1


class ScriptedTransport:
    """Implements `interlock.Transport` from per-deployment scripts."""

    def __init__(self, clock: FakeClock | None = None, *, reply: str = REPLY) -> None:
        self.clock = clock
        self.reply = reply
        self._queues: dict[str, deque[Step]] = {}
        self._always: dict[str, Step] = {}
        self.calls: list[Call] = []
        self.streams: list[ScriptedStream] = []
        self.hanging = 0
        self.closed = False
        self.stream_gates: dict[int, asyncio.Event] = {}
        """Chunk index -> event a stream read waits on before delivering the next chunk."""

    # -- scripting ---------------------------------------------------------------

    def push(self, deployment_id: str, *steps: Step) -> None:
        self._queues.setdefault(deployment_id, deque()).extend(steps)

    def always(self, deployment_id: str, step: Step | None) -> None:
        if step is None:
            self._always.pop(deployment_id, None)
        else:
            self._always[deployment_id] = step

    def served(self, deployment_id: str) -> int:
        return sum(1 for c in self.calls if c.deployment_id == deployment_id)

    @property
    def order(self) -> list[str]:
        return [c.deployment_id for c in self.calls]

    # -- Transport ---------------------------------------------------------------

    async def _begin(self, kind: str, d: Deployment, request: Request, timeout: float) -> Step:
        assert d.id is not None
        self.calls.append(Call(d.id, kind, timeout, request.group))
        queue = self._queues.get(d.id)
        step = queue.popleft() if queue else self._always.get(d.id, OK)
        if step.takes:
            assert self.clock is not None, "Step.takes needs a FakeClock"
            self.clock.advance(step.takes)
        if step.hang:
            self.hanging += 1
            try:
                await asyncio.get_running_loop().create_future()
            finally:
                self.hanging -= 1
        if step.gate is not None:
            await step.gate.wait()
        if step.timeout:
            assert self.clock is not None, "Step.timeout needs a FakeClock"
            self.clock.advance(timeout)
            raise APITimeoutError(f"no response within {timeout:.3g} s", deployment_id=d.id)
        if step.error is not None:
            raise step.error(
                step.message,
                status_code=step.status_code,
                deployment_id=d.id,
                retry_after=step.retry_after,
            )
        return step

    async def chat(
        self, deployment: Deployment, request: Request, timeout: float
    ) -> ChatCompletion:
        await self._begin("chat", deployment, request, timeout)
        return ChatCompletion(
            id=f"chat-{len(self.calls)}",
            model=deployment.model,
            choices=[Choice(0, ChatMessage("assistant", self.reply), "stop")],
            usage=Usage(USAGE.prompt_tokens, USAGE.completion_tokens, USAGE.total_tokens),
            deployment_id=deployment.id or "",
            group=deployment.group,
        )

    async def open_stream(
        self, deployment: Deployment, request: Request, timeout: float
    ) -> ScriptedStream:
        step = await self._begin("stream", deployment, request, timeout)
        did = deployment.id or ""
        if step.cut_after == 0:
            raise StreamInterruptedError("stream ended before its first chunk", deployment_id=did)

        def chunk(delta: ChoiceDelta, finish: str | None = None) -> ChatCompletionChunk:
            return ChatCompletionChunk(
                id="stream-1",
                model=deployment.model,
                choices=[ChunkChoice(0, delta, finish)],
                deployment_id=did,
                group=deployment.group,
            )

        words = self.reply.split(" ")
        pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
        chunks = [chunk(ChoiceDelta(role="assistant", content=""))]
        chunks += [chunk(ChoiceDelta(content=p)) for p in pieces]
        chunks.append(chunk(ChoiceDelta(), "stop"))
        if step.stream_usage:
            chunks.append(
                ChatCompletionChunk(
                    id="stream-1",
                    model=deployment.model,
                    choices=[],
                    usage=Usage(USAGE.prompt_tokens, USAGE.completion_tokens, USAGE.total_tokens),
                    deployment_id=did,
                    group=deployment.group,
                )
            )
        stream = ScriptedStream(chunks, did, step.cut_after, self.stream_gates.get)
        self.streams.append(stream)
        return stream

    async def embed(
        self, deployment: Deployment, request: Request, timeout: float
    ) -> EmbeddingResponse:
        await self._begin("embed", deployment, request, timeout)
        items = [request.input] if isinstance(request.input, str) else list(request.input)
        return EmbeddingResponse(
            data=[Embedding(i, [float(i), 1.0]) for i in range(len(items))],
            model=deployment.model,
            usage=Usage(prompt_tokens=3 * len(items), total_tokens=3 * len(items)),
            deployment_id=deployment.id or "",
            group=deployment.group,
        )

    async def aclose(self) -> None:
        self.closed = True


def dep(id: str, group: str = "g", **fields: Any) -> Deployment:
    """A deployment served by the scripted transport."""
    return Deployment(
        group=group,
        model=f"model-{id}",
        provider="fake",
        id=id,
        api_base="http://127.0.0.1:9/v1",
        **fields,
    )


def first_candidate(candidates: Any, request: Request) -> Any:
    """A strategy that always picks the first eligible deployment (deterministic tests)."""
    return candidates[0]


def config_of(router: Router, **changes: Any) -> dict[str, Any]:
    """The router's config as a mapping (what `reconfigure` takes), with `changes`."""
    data = router.config.model_dump(mode="json", exclude_none=True)
    data.update(changes)
    return data


def make_router(
    transport: ScriptedTransport,
    deployments: Iterable[Deployment | Mapping[str, Any]],
    clock: FakeClock,
    **options: Any,
) -> Router:
    options.setdefault("seed", 1234)
    return Router(list(deployments), clock=clock, transports={"fake": transport}, **options)


async def until(predicate: Callable[[], bool], *, rounds: int = 200) -> None:
    """Let other tasks run until `predicate()` holds; fail after `rounds` loop turns
    (everything here is in memory, so a handful of turns is always enough)."""
    for _ in range(rounds):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


T = TypeVar("T")
START = 1000.0  # FakeClock's default start


async def bounded(aw: Awaitable[T]) -> T:
    """Fail (instead of hanging the suite) if the router parks on the fake clock."""
    async with asyncio.timeout(5):
        return await aw


def two(clock: FakeClock, **options: Any) -> tuple[ScriptedTransport, Router]:
    """Deployments a and b; the strategy always tries a first when it is eligible."""
    t = ScriptedTransport(clock)
    options.setdefault("strategy", first_candidate)
    return t, make_router(t, [dep("a"), dep("b")], clock, **options)
