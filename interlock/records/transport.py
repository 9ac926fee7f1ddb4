"""What a provider transport must do: the protocols every transport implements.

They sit with the records because each `DeploymentState` holds its transport; the
transports themselves live in `interlock.providers`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from interlock.config import Deployment
from interlock.types import ChatCompletion, ChatCompletionChunk, EmbeddingResponse, Request

__all__ = ["ChunkSource", "Transport"]


@runtime_checkable
class ChunkSource(Protocol):
    """An open stream whose first chunk has already arrived."""

    first: ChatCompletionChunk

    async def next(self) -> ChatCompletionChunk | None:
        """The next chunk; None when the stream ended cleanly. Raises
        `StreamInterruptedError` (or another InterlockError) when it did not."""
        ...

    def close(self) -> None:
        """Release the connection; safe to call more than once and from `__del__`."""
        ...


@runtime_checkable
class Transport(Protocol):
    """Sends one attempt to one deployment.

    Every failure is raised as an `InterlockError` subclass (never a bare aiohttp or
    JSON exception), with `deployment_id` set and the key scrubbed from the message.
    `timeout` bounds the whole attempt (for streams: until the first chunk).

    Optional: ``forget(deployment_id: str) -> None``, called once a deployment removed
    at runtime has drained, to drop what the transport keeps for it. A transport that
    caches per deployment id must also notice that a runtime change gave the id a new
    `Deployment` object (compare by identity) and use the new settings from then on.
    """

    async def chat(
        self, deployment: Deployment, request: Request, timeout: float
    ) -> ChatCompletion: ...

    async def open_stream(
        self, deployment: Deployment, request: Request, timeout: float
    ) -> ChunkSource: ...

    async def embed(
        self, deployment: Deployment, request: Request, timeout: float
    ) -> EmbeddingResponse: ...

    async def aclose(self) -> None: ...
