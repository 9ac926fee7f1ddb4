"""`InstantTransport`: an in-memory transport that answers at once, with scripted failures.

For pure unit tests (no sockets, no timers) and for benchmarks that measure the
router's own cost without any I/O. Register it under a provider name:
``Router(..., transports={"instant": InstantTransport()})`` with deployments of
``provider="instant"``.
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["InstantTransport"]

from interlock.config import Deployment
from interlock.errors import InterlockError
from interlock.types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatMessage,
    Choice,
    ChoiceDelta,
    ChunkChoice,
    Embedding,
    EmbeddingResponse,
    Request,
    Usage,
)

USAGE = Usage(prompt_tokens=10, completion_tokens=5, total_tokens=15)


class _Source:
    def __init__(self, deployment_id: str, usage: Usage | None) -> None:
        self.first = ChatCompletionChunk(
            "c", "m", [ChunkChoice(0, ChoiceDelta("assistant", "Hel"))], deployment_id=deployment_id
        )
        self._rest: deque[ChatCompletionChunk] = deque(
            [
                ChatCompletionChunk("c", "m", [ChunkChoice(0, ChoiceDelta(None, "lo"))]),
                ChatCompletionChunk("c", "m", [], usage=usage),
            ]
        )

    async def next(self) -> ChatCompletionChunk | None:
        return self._rest.popleft() if self._rest else None

    def close(self) -> None:
        self._rest.clear()


class InstantTransport:
    """Answers every chat at once with `usage` (streams: three chunks, usage last).

    ``fail(deployment_id, error)`` makes that deployment's next attempt raise `error`
    (every attempt with ``always=True``); `clear()` forgets the script. `calls` lists
    the deployment ids attempted, in order (None with ``log=False``, which a long
    benchmark wants: the log grows with every call); `attempts` counts them.

    By default a call never suspends. With ``yield_every_call=True`` each call yields
    to the event loop once, so concurrent requests really overlap; with a `gate`,
    calls wait until it is set (to hold many requests in flight at once).
    """

    def __init__(
        self,
        usage: Usage | None = USAGE,
        *,
        log: bool = True,
        yield_every_call: bool = False,
        gate: asyncio.Event | None = None,
    ) -> None:
        self.usage = usage
        self.script: dict[str, deque[InterlockError]] = {}
        self.always: dict[str, InterlockError] = {}
        self.calls: list[str] | None = [] if log else None
        self.attempts = 0
        self.gate = gate
        self._pause = yield_every_call or gate is not None

    async def _wait(self) -> None:
        if self.gate is not None:
            await self.gate.wait()
        else:
            await asyncio.sleep(0)

    def fail(self, deployment_id: str, error: InterlockError, *, always: bool = False) -> None:
        if always:
            self.always[deployment_id] = error
        else:
            self.script.setdefault(deployment_id, deque()).append(error)

    def clear(self) -> None:
        self.script.clear()
        self.always.clear()

    def _maybe_fail(self, deployment: Deployment) -> str:
        assert deployment.id is not None
        self.attempts += 1
        if self.calls is not None:
            self.calls.append(deployment.id)
        q = self.script.get(deployment.id)
        if q:
            raise q.popleft()
        err = self.always.get(deployment.id)
        if err is not None:
            raise err
        return deployment.id

    async def chat(
        self, deployment: Deployment, request: Request, timeout: float
    ) -> ChatCompletion:
        did = self._maybe_fail(deployment)
        if self._pause:
            await self._wait()
        return ChatCompletion(
            "c", "m", [Choice(0, ChatMessage("assistant", "hi"), "stop")], self.usage,
            deployment_id=did, group=request.group,
        )  # fmt: skip

    async def open_stream(
        self, deployment: Deployment, request: Request, timeout: float
    ) -> _Source:
        did = self._maybe_fail(deployment)
        if self._pause:
            await self._wait()
        return _Source(did, self.usage)

    async def embed(
        self, deployment: Deployment, request: Request, timeout: float
    ) -> EmbeddingResponse:
        did = self._maybe_fail(deployment)
        if self._pause:
            await self._wait()
        return EmbeddingResponse(
            [Embedding(0, [0.0, 1.0])], "m", self.usage, deployment_id=did, group=request.group
        )

    async def aclose(self) -> None:
        pass
