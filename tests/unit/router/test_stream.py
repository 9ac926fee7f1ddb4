"""`ChatStream` after its first chunk: the call's deadline bounds every later read."""

from __future__ import annotations

import asyncio
import random

import pytest

from interlock import DeadlineExceededError, Deployment, HealthPolicy
from interlock.health.retry_budget import RetryBudget
from interlock.health.tracker import HealthTracker
from interlock.observability.events import FailureEvent
from interlock.observability.observer import Observer
from interlock.records.state import DeploymentState
from interlock.router.attempt import Attempts
from interlock.router.call_state import Call
from interlock.router.pool import DeploymentPool
from interlock.router.stream import ChatStream
from interlock.strategies import resolve_strategy
from interlock.testing import FakeClock
from interlock.types import ChatCompletionChunk, ChoiceDelta, ChunkChoice, Request


def piece(text: str) -> ChatCompletionChunk:
    return ChatCompletionChunk("c", "m", [ChunkChoice(0, ChoiceDelta(content=text))])


class Source:
    """Gives its chunks, then waits forever (a stalled upstream)."""

    def __init__(self, *texts: str) -> None:
        self.first = piece("first")
        self._chunks = [piece(t) for t in texts]
        self.reads = 0
        self.waiting = asyncio.Event()
        self.closed = False

    async def next(self) -> ChatCompletionChunk | None:
        self.reads += 1
        if self._chunks:
            return self._chunks.pop(0)
        self.waiting.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.closed = True


class Failures:
    def __init__(self) -> None:
        self.events: list[FailureEvent] = []

    def on_failure(self, event: FailureEvent) -> None:
        self.events.append(event)


def open_stream(
    source: Source, call_timeout: float, failures: Failures | None = None
) -> tuple[ChatStream, DeploymentState, FakeClock]:
    """A stream whose first chunk arrived at once, for a call of `call_timeout` s, at a
    deployment whose own timeout (60 s) is far longer."""
    clock = FakeClock(100.0)
    d = Deployment(group="g", model="m", id="g-0", timeout=60.0)
    state = DeploymentState(d, transport=None)  # type: ignore[arg-type]
    rng = random.Random(1)
    pool = DeploymentPool("g", [state], resolve_strategy("weighted", rng), rng)
    health = HealthTracker(HealthPolicy(), rng)
    health.attach([state])
    observer = Observer(clock, [state], [failures] if failures else ())
    attempts = Attempts(clock, health, observer, {"g": pool}, {}, None)
    request = Request("chat", "g", est_input_tokens=30, est_output_tokens=20, requested="g")
    budget = RetryBudget(0.2, 10, 10.0)
    call = Call(request, clock.now() + call_timeout, call_timeout, budget, ("g",), 3)
    attempt = attempts.begin(call, state, clock.now())
    attempts.sent(attempt)
    return ChatStream(source, attempt, 30), state, clock


async def test_chunks_before_the_deadline_flow_as_usual() -> None:
    source = Source("a", "b")
    stream, state, _ = open_stream(source, call_timeout=5.0)
    assert [(await anext(stream)).choices[0].delta.content for _ in range(3)] == [
        "first",
        "a",
        "b",
    ]
    assert (state.in_flight, state.failures) == (1, 0)  # still open


async def test_a_deadline_already_past_ends_the_stream_without_reading() -> None:
    failures = Failures()
    source = Source("a")
    stream, state, clock = open_stream(source, call_timeout=5.0, failures=failures)
    await anext(stream)
    clock.advance(5.0)
    with pytest.raises(DeadlineExceededError) as exc:
        await anext(stream)
    assert exc.value.deployment_id == "g-0"
    assert "after 1 chunk(s)" in str(exc.value)
    assert source.reads == 0
    assert source.closed
    assert (state.in_flight, state.failures, state.consecutive_failures) == (0, 0, 0)
    [event] = failures.events
    assert (event.kind, event.counted) == ("deadline", False)
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


async def test_the_deadline_cuts_a_read_that_waits_past_it() -> None:
    """20 ms of the call are left and the source never answers: the wheel ends the wait
    (the outcome, not its timing, is asserted)."""
    source = Source()
    stream, state, _ = open_stream(source, call_timeout=0.02)
    await anext(stream)
    with pytest.raises(DeadlineExceededError) as exc:
        await anext(stream)
    assert exc.value.__context__ is None
    assert exc.value.__cause__ is None
    assert source.reads == 1
    assert source.closed
    assert (state.in_flight, state.failures) == (0, 0)


async def test_a_cancelled_reader_is_not_taken_for_the_deadline() -> None:
    source = Source()
    stream, state, _ = open_stream(source, call_timeout=60.0)
    await anext(stream)
    reader = asyncio.ensure_future(anext(stream))
    await source.waiting.wait()
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert source.closed
    assert (state.in_flight, state.failures) == (0, 0)
