"""The stream a caller iterates: chunks in order, with exact accounting at its end."""

from __future__ import annotations

from types import TracebackType

from interlock.errors import InterlockError
from interlock.limits.ledger import Ledger
from interlock.records.transport import ChunkSource
from interlock.router.attempt import Attempt
from interlock.types import ChatCompletionChunk, Usage

__all__ = ["ChatStream"]


class ChatStream:
    """An async iterator of `ChatCompletionChunk`.

    The reservation taken for the request is settled exactly once: when the stream
    ends (with the provider's usage, or an estimate when it sent none), when it is cut
    (the failure counts against the deployment and a `StreamInterruptedError` reaches
    the caller), or when the caller stops early (`aclose()`, leaving an ``async with``
    block, or dropping the object).
    """

    __slots__ = (
        "_attempt",
        "_chars",
        "_first",
        "_prompt_tokens",
        "_reservation",
        "_source",
        "chunks",
        "deployment_id",
        "group",
        "ttft",
        "usage",
    )

    cached = False
    """Always False for a live stream (a `CachedStream` replaying the cache says True)."""

    def __init__(
        self,
        source: ChunkSource,
        attempt: Attempt,
        prompt_tokens: int,
    ) -> None:
        self._source = source
        self._prompt_tokens = prompt_tokens
        self._attempt = attempt
        self._reservation = reservation = attempt
        self._first: ChatCompletionChunk | None = source.first
        self._chars = 0
        self.deployment_id = reservation.state.id
        self.group = reservation.state.group
        self.ttft = attempt.attempts.clock.now() - attempt.started
        """Seconds from sending the request to its first chunk."""
        self.usage: Usage | None = None
        """The provider's usage, once the final chunk has carried it."""
        self.chunks = 0

    def __aiter__(self) -> ChatStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        chunk = self._first
        if chunk is not None:
            self._first = None
            if not self._reservation.open:  # closed before the first read
                raise StopAsyncIteration
        else:
            if not self._reservation.open:
                raise StopAsyncIteration
            try:
                chunk = await self._source.next()
            except InterlockError as exc:
                self._finish_failed(exc)
                raise
            except BaseException:
                self._abandon()
                raise
            if chunk is None:
                self._finish_ok()
                raise StopAsyncIteration
        self.chunks += 1
        if chunk.usage is not None:
            self.usage = chunk.usage
        for c in chunk.choices:
            if c.delta.content:
                self._chars += len(c.delta.content)
        return chunk

    def _tokens(self) -> int:
        if self.usage is not None:
            return self.usage.total_tokens
        return self._prompt_tokens + (self._chars + 3) // 4

    def _usage(self) -> Usage:
        if self.usage is not None:
            return self.usage
        out = (self._chars + 3) // 4
        return Usage(self._prompt_tokens, out, self._prompt_tokens + out)

    # The ledger counts every stream's usage (estimated when the provider sent none);
    # the tokens metric counts what providers reported for successful attempts, so
    # the observer is told what the ledger counted beyond that (`unreported`).

    def _finish_ok(self) -> None:
        r = self._reservation
        if r.open:
            attempts = self._attempt.attempts
            now = attempts.clock.now()
            usage = self._usage()
            cost = Ledger.settle(r, self._tokens(), now, usage)
            if self.usage is None:
                attempts.observer.unreported(r.state, usage)
            attempts.success(
                r.state, self._attempt.started, now, self.ttft, self.usage, r.attempt, cost
            )

    def _finish_failed(self, exc: InterlockError) -> None:
        r = self._reservation
        if r.open:
            attempts = self._attempt.attempts
            now = attempts.clock.now()
            usage = self._usage()
            Ledger.settle(r, self._tokens(), now, usage)
            attempts.observer.unreported(r.state, usage)
            attempts.failure(r.state, exc, self._attempt.started, now, r.attempt)

    def _abandon(self) -> None:
        self._source.close()
        r = self._reservation
        if r.open:
            attempts = self._attempt.attempts
            usage = self._usage()
            Ledger.settle(r, self._tokens(), attempts.clock.now(), usage)
            attempts.observer.unreported(r.state, usage)

    async def aclose(self) -> None:
        """Stop reading; releases the connection and settles the reservation."""
        self._abandon()

    async def __aenter__(self) -> ChatStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._abandon()

    def __del__(self) -> None:
        # A caller that drops the stream without closing it must not leak in-flight.
        try:
            if self._reservation.open:
                self._abandon()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "open" if self._reservation.open else "closed"
        return f"<ChatStream {self.deployment_id} chunks={self.chunks} {state}>"
