"""The stream a caller iterates: chunks in order, with exact accounting at its end."""

from __future__ import annotations

import asyncio
import contextvars
import weakref

from interlock.errors import DeadlineExceededError, InterlockError
from interlock.limits.ledger import Ledger
from interlock.records.transport import ChunkSource
from interlock.router.attempt import Attempt
from interlock.router.closing import EndsEarly
from interlock.running import task_on
from interlock.types import ChatCompletionChunk, Usage

__all__ = ["ChatStream"]


_TIMER_CONTEXT = contextvars.Context()
"""The context the deadline timers run in. They read no context variable, and without
one the loop copies the current context for every timer: an object more per open
stream, for the cyclic collector to walk."""


class ChatStream(EndsEarly):
    """An async iterator of `ChatCompletionChunk`.

    The reservation taken for the request is settled exactly once: when the stream
    ends (with the provider's usage, or an estimate when it sent none), when it is cut
    (the failure counts against the deployment and a `StreamInterruptedError` reaches
    the caller), when the call's deadline passes before its end (a
    `DeadlineExceededError`, not held against the deployment), or when the caller
    stops early (`aclose()`, leaving an ``async with`` block, or dropping the object).

    The source bounds each wait for a chunk by the deployment's timeout; the call's
    deadline is one loop timer per stream, which cancels a read in progress when it
    fires (a timer per chunk would cost more than the rest of a chunk's handling).
    """

    __slots__ = (
        "__weakref__",
        "_attempt",
        "_cancelled",
        "_chars",
        "_expired",
        "_first",
        "_loop",
        "_prompt_tokens",
        "_reader",
        "_reservation",
        "_source",
        "_timer",
        "chunks",
        "cost",
        "deployment_id",
        "group",
        "request_id",
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
        self.request_id = attempt.request.id
        """The id of the call that opened the stream (as on a `ChatCompletion`)."""
        self.ttft = attempt.attempts.clock.now() - attempt.started
        """Seconds from sending the request to its first chunk."""
        self.usage: Usage | None = None
        """The provider's usage, once the final chunk has carried it."""
        self.chunks = 0
        self.cost: float | None = None
        """US dollars, once the stream has ended (or was cut or closed): what its usage
        (the provider's, or an estimate when it sent none) added to spend; None before
        then, or when the deployment has no known price."""
        self._reader: asyncio.Task[object] | None = None
        """The task waiting for a chunk, while one does."""
        self._expired = self._cancelled = False
        left = attempt.deadline - attempt.attempts.clock.now()
        self._loop = loop = asyncio.get_running_loop()
        # A weak reference, so a stream the caller dropped can still be collected.
        self._timer = loop.call_later(
            max(left, 0.0), _deadline_passed, weakref.ref(self), context=_TIMER_CONTEXT
        )

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
            attempt = self._attempt
            if self._expired or attempt.deadline <= attempt.attempts.clock.now():
                raise self._cut_by_deadline()
            task = self._reader = task_on(self._loop)  # `asyncio.current_task()`, cheaper
            cut = False
            try:
                chunk = await self._source.next()
            except InterlockError as exc:
                self._reader = None
                self._finish_failed(exc)
                raise
            except BaseException as exc:
                self._reader = None
                cut = self._cancelled and isinstance(exc, asyncio.CancelledError)
                if not (cut and task is not None and task.uncancel() == 0):
                    self._abandon()
                    raise
            self._reader = None
            if cut:  # raised outside the except block: no CancelledError on its chain
                raise self._cut_by_deadline()
            if chunk is None:
                self._finish_ok()
                raise StopAsyncIteration
        self.chunks += 1
        if chunk.usage is not None:
            self.usage = chunk.usage
        choices = chunk.choices
        if len(choices) == 1:  # the common case, without a list iterator per chunk
            content = choices[0].delta.content
            if content:
                self._chars += len(content)
        else:
            for c in choices:
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

    def _on_deadline(self) -> None:
        self._expired = True
        task = self._reader
        # Only when nothing else is cancelling the task: a cancellation of the
        # caller's own must reach it as such.
        if task is not None and not task.cancelling():
            self._cancelled = True
            task.cancel()

    def _cut_by_deadline(self) -> DeadlineExceededError:
        """The call's deadline passed while the stream was open: settle, and record an
        outcome that says nothing about the deployment's health."""
        self._timer.cancel()
        self._source.close()
        err = DeadlineExceededError(
            f"the call's deadline passed after {self.chunks} chunk(s) of the stream",
            deployment_id=self.deployment_id,
        )
        err.request_id = self.request_id
        r = self._reservation
        if r.open:
            attempt = self._attempt
            attempts = attempt.attempts
            now = attempts.clock.now()
            self._settle_unreported(now)
            attempts.observer.failure(
                r.state,
                err,
                attempt.started,
                now,
                r.attempt,
                counted=False,
                request=attempt.request,
                handle=attempt,
            )
            if attempt.request.trace is not None:
                attempt.request.trace.stream_ended(self.usage, err)
        return err

    def _finish_ok(self) -> None:
        self._timer.cancel()
        r = self._reservation
        if r.open:
            attempts = self._attempt.attempts
            now = attempts.clock.now()
            usage = self._usage()
            cost = self.cost = Ledger.settle(r, self._tokens(), now, usage)
            if self.usage is None:
                attempts.observer.unreported(r.state, usage)
            attempt = self._attempt
            request = attempt.request
            attempts.success(
                r.state, attempt.started, now, self.ttft, self.usage, r.attempt, cost, request,
                attempt,
            )  # fmt: skip
            if request.trace is not None:
                request.trace.stream_ended(self.usage, None)

    def _finish_failed(self, exc: InterlockError) -> None:
        self._timer.cancel()
        exc.request_id = self.request_id
        r = self._reservation
        if r.open:
            attempt = self._attempt
            attempts = attempt.attempts
            now = attempts.clock.now()
            self._settle_unreported(now)
            request = attempt.request
            attempts.failure(
                r.state, exc, attempt.started, now, r.attempt, request=request, handle=attempt
            )
            if request.trace is not None:
                request.trace.stream_ended(self.usage, exc)

    def _settle_unreported(self, now: float) -> None:
        """Settle an unfinished stream with what it counted; no success will report
        those tokens, so the observer hears of them here."""
        r = self._reservation
        usage = self._usage()
        self.cost = Ledger.settle(r, self._tokens(), now, usage)
        self._attempt.attempts.observer.unreported(r.state, usage)

    def _abandon(self) -> None:
        self._timer.cancel()
        self._source.close()
        if self._reservation.open:
            self._settle_unreported(self._attempt.attempts.clock.now())
            trace = self._attempt.request.trace
            if trace is not None:
                trace.attempt_aborted(self._attempt, "closed")
                trace.stream_ended(self.usage, None, "closed")

    def _open(self) -> bool:
        return self._reservation.open

    def __repr__(self) -> str:
        state = "open" if self._reservation.open else "closed"
        return f"<ChatStream {self.deployment_id} chunks={self.chunks} {state}>"


def _deadline_passed(ref: weakref.ref[ChatStream]) -> None:
    stream = ref()
    if stream is not None:
        stream._on_deadline()
