"""Exact accounting: in-flight after every outcome, token reconciliation, streams
(every chunk in order, usage, abandoned streams), embeddings, statistics()."""

from __future__ import annotations

import asyncio
import gc

import pytest

from interlock import (
    APITimeoutError,
    ChatParams,
    ChatStream,
    DeploymentStatistics,
    HealthPolicy,
    InternalServerError,
    RetryPolicy,
    RouterStatistics,
    ServiceUnavailableError,
    StreamInterruptedError,
)
from interlock.limits import estimate_input_tokens
from interlock.testing import FakeClock
from tests.unit.scripted_transport import (
    HANG,
    MESSAGES,
    REPLY,
    TIMEOUT,
    USAGE,
    ScriptedTransport,
    Step,
    dep,
    fail,
    first_candidate,
    make_router,
    until,
)

START = 1000.0

# --- in-flight returns to 0 ----------------------------------------------------------


async def test_in_flight_returns_to_zero_after_success() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    gate = asyncio.Event()
    t.push("a", Step(gate=gate))
    router = make_router(t, [dep("a")], clock)
    task = asyncio.create_task(router.acompletion("g", MESSAGES))
    await until(lambda: len(t.calls) == 1)
    assert router.statistics().by_id("a").in_flight == 1
    gate.set()
    await task
    assert router.statistics().by_id("a").in_flight == 0


async def test_in_flight_returns_to_zero_after_error() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    gate = asyncio.Event()
    t.push("a", Step(gate=gate, error=InternalServerError))
    router = make_router(t, [dep("a")], clock, retry=RetryPolicy(max_attempts=1))
    task = asyncio.create_task(router.acompletion("g", MESSAGES))
    await until(lambda: len(t.calls) == 1)
    assert router.statistics().by_id("a").in_flight == 1
    gate.set()
    with pytest.raises(InternalServerError):
        await task
    assert router.statistics().by_id("a").in_flight == 0


async def test_in_flight_returns_to_zero_after_timeout() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    t.push("a", TIMEOUT)
    router = make_router(t, [dep("a", timeout=1.0)], clock, retry=RetryPolicy(max_attempts=1))
    with pytest.raises(APITimeoutError):
        await router.acompletion("g", MESSAGES)
    a = router.statistics().by_id("a")
    assert (a.in_flight, a.failures) == (0, 1)


async def test_in_flight_returns_to_zero_after_cancellation() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    t.push("a", HANG)
    router = make_router(t, [dep("a", tpm=10_000)], clock)
    task = asyncio.create_task(router.acompletion("g", MESSAGES))
    await until(lambda: t.hanging == 1)
    a = router.statistics().by_id("a")
    assert a.in_flight == 1
    assert a.tpm_used is not None
    assert a.tpm_used > 0
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    a = router.statistics().by_id("a")
    assert a.in_flight == 0
    assert a.failures == 0  # the caller left; nothing against the deployment
    assert a.tpm_used == 0  # the unused reservation was given back
    assert t.hanging == 0


async def test_cancellation_during_backoff_holds_nothing() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    t.push("a", fail(InternalServerError))
    router = make_router(t, [dep("a")], clock, retry=RetryPolicy(backoff_base=1.0))
    task = asyncio.create_task(router.acompletion("g", MESSAGES))
    await until(lambda: clock.sleepers == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert router.statistics().in_flight == 0


async def test_many_concurrent_mixed_outcomes_settle_exactly() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    gate = asyncio.Event()
    for i in range(30):
        step = [Step(gate=gate), Step(gate=gate, error=ServiceUnavailableError), HANG][i % 3]
        t.push("a", step)
    router = make_router(t, [dep("a")], clock, retry=RetryPolicy(max_attempts=1))
    tasks = [asyncio.create_task(router.acompletion("g", MESSAGES)) for _ in range(30)]
    await until(lambda: len(t.calls) == 30)
    assert router.statistics().in_flight == 30
    gate.set()
    await until(lambda: sum(x.done() for x in tasks) == 20)
    assert router.statistics().in_flight == 10
    for x in tasks:
        x.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert sum(isinstance(r, asyncio.CancelledError) for r in results) == 10
    assert router.statistics().in_flight == 0


# --- tokens --------------------------------------------------------------------------


async def test_tpm_reserves_an_estimate_then_reconciles_with_usage() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    gate = asyncio.Event()
    t.push("a", Step(gate=gate))
    router = make_router(t, [dep("a", tpm=100_000, rpm=1000)], clock, expected_output_tokens=50)
    task = asyncio.create_task(router.acompletion("g", MESSAGES))
    await until(lambda: len(t.calls) == 1)
    held = router.statistics().by_id("a")
    assert held.tpm_used == estimate_input_tokens(MESSAGES) + 50
    assert held.rpm_used == 1
    gate.set()
    await task
    done = router.statistics().by_id("a")
    assert done.tpm_used == USAGE.total_tokens
    assert done.rpm_used == 1


async def test_max_tokens_is_the_output_estimate() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    t.push("a", HANG)
    router = make_router(t, [dep("a", tpm=100_000)], clock)
    task = asyncio.create_task(router.acompletion("g", MESSAGES, max_tokens=40))
    await until(lambda: t.hanging == 1)
    assert router.statistics().by_id("a").tpm_used == estimate_input_tokens(MESSAGES) + 40
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# --- streams -------------------------------------------------------------------------


def content(chunks: list[str | None]) -> str:
    return "".join(c or "" for c in chunks)


async def test_stream_yields_every_chunk_in_order_and_accounts_usage() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    router = make_router(t, [dep("a", tpm=100_000)], clock)
    stream = await router.acompletion("g", MESSAGES, stream=True)
    assert isinstance(stream, ChatStream)
    assert stream.deployment_id == "a"
    assert router.statistics().by_id("a").in_flight == 1
    pieces: list[str | None] = []
    roles: list[str | None] = []
    finishes: list[str | None] = []
    async for chunk in stream:
        assert chunk.deployment_id == "a"
        for c in chunk.choices:
            pieces.append(c.delta.content)
            roles.append(c.delta.role)
            finishes.append(c.finish_reason)
    words = REPLY.split(" ")
    assert pieces == ["", *[w if i == 0 else " " + w for i, w in enumerate(words)], None]
    assert content(pieces) == REPLY
    assert roles[0] == "assistant"
    assert finishes[-1] == "stop"
    assert stream.chunks == len(words) + 3  # role, words, finish, usage
    assert stream.usage == USAGE
    a = router.statistics().by_id("a")
    assert (a.in_flight, a.successes, a.failures) == (0, 1, 0)
    assert a.tpm_used == USAGE.total_tokens
    # iterating again after the end yields nothing
    assert [c async for c in stream] == []


async def _stream_tpm_without_usage(params: ChatParams) -> int | None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    t.push("a", Step(stream_usage=False))
    router = make_router(t, [dep("a", tpm=100_000)], clock)
    stream = await router.acompletion("g", MESSAGES, stream=True, **params)
    async for _ in stream:
        pass
    assert stream.usage is None
    return router.statistics().by_id("a").tpm_used


async def test_stream_without_usage_settles_an_estimate() -> None:
    used = await _stream_tpm_without_usage({})
    assert used is not None
    prompt = estimate_input_tokens(MESSAGES)
    assert prompt < used <= prompt + len(REPLY)


async def test_stream_without_usage_settles_an_estimate_when_max_tokens_is_set() -> None:
    """The estimate must not depend on whether `max_tokens` was given: the prompt plus
    what was streamed (here ~7 + ~7 tokens), never less than the prompt."""
    used = await _stream_tpm_without_usage({"max_tokens": 10})
    assert used is not None
    prompt = estimate_input_tokens(MESSAGES)
    assert prompt < used <= prompt + len(REPLY)


async def test_stream_cut_reaches_the_caller_and_counts_against_the_deployment() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    t.push("a", Step(cut_after=3))
    router = make_router(t, [dep("a"), dep("b")], clock, strategy=first_candidate)
    stream = await router.acompletion("g", MESSAGES, stream=True)
    got: list[str | None] = []

    async def drain() -> None:
        async for chunk in stream:
            got.append(chunk.choices[0].delta.content)

    with pytest.raises(StreamInterruptedError) as exc:
        await drain()
    assert got == ["", "one", " two"]
    assert exc.value.deployment_id == "a"
    a = router.statistics().by_id("a")
    assert (a.in_flight, a.failures, a.consecutive_failures, a.successes) == (0, 1, 1, 0)
    assert t.order == ["a"]  # a stream already delivering is not silently restarted


async def test_stream_that_fails_before_its_first_chunk_is_retried_elsewhere() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    t.push("a", Step(cut_after=0))
    router = make_router(t, [dep("a"), dep("b")], clock, strategy=first_candidate)
    stream = await router.acompletion("g", MESSAGES, stream=True)
    assert stream.deployment_id == "b"
    assert content([c.choices[0].delta.content async for c in stream if c.choices]) == REPLY
    assert router.statistics().by_id("a").failures == 1
    assert router.statistics().in_flight == 0


async def test_stream_failing_to_open_is_retried_and_settled() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    t.push("a", fail(ServiceUnavailableError))
    router = make_router(t, [dep("a"), dep("b")], clock, strategy=first_candidate)
    stream = await router.acompletion("g", MESSAGES, stream=True)
    assert stream.deployment_id == "b"
    await stream.aclose()
    assert router.statistics().in_flight == 0


async def test_stream_abandoned_by_break_settles_in_flight() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    router = make_router(t, [dep("a")], clock)
    async for _ in await router.acompletion("g", MESSAGES, stream=True):
        break
    assert router.statistics().by_id("a").in_flight == 0
    assert t.streams[0].closed >= 1


async def test_stream_abandoned_by_aclose_settles_in_flight() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    router = make_router(t, [dep("a")], clock)
    stream = await router.acompletion("g", MESSAGES, stream=True)
    async for _ in stream:
        break
    assert router.statistics().by_id("a").in_flight == 1  # still held: the caller may go on
    await stream.aclose()
    assert router.statistics().by_id("a").in_flight == 0
    assert t.streams[0].closed >= 1
    await stream.aclose()  # idempotent
    assert router.statistics().by_id("a").in_flight == 0
    assert [c async for c in stream] == []


async def test_stream_abandoned_by_leaving_async_with_settles_in_flight() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    router = make_router(t, [dep("a")], clock)
    async with await router.acompletion("g", MESSAGES, stream=True) as stream:
        async for _ in stream:
            break
    assert router.statistics().by_id("a").in_flight == 0


async def test_stream_dropped_unread_settles_in_flight() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    router = make_router(t, [dep("a")], clock)
    stream = await router.acompletion("g", MESSAGES, stream=True)
    assert router.statistics().by_id("a").in_flight == 1
    del stream
    gc.collect()
    assert router.statistics().by_id("a").in_flight == 0
    assert t.streams[0].closed >= 1


async def test_stream_consumer_cancelled_mid_stream_settles_in_flight() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    t.stream_gates[2] = asyncio.Event()  # never set: the read after chunk 2 hangs
    router = make_router(t, [dep("a")], clock)
    stream = await router.acompletion("g", MESSAGES, stream=True)
    got: list[object] = []

    async def consume() -> None:
        async for chunk in stream:
            got.append(chunk)

    task = asyncio.create_task(consume())
    await until(lambda: len(got) == 2 and t.streams[0].reads == 2)
    assert router.statistics().by_id("a").in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    a = router.statistics().by_id("a")
    assert (a.in_flight, a.failures) == (0, 0)
    assert t.streams[0].closed >= 1


# --- embeddings ----------------------------------------------------------------------


async def test_embeddings_are_routed_and_accounted() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    router = make_router(
        t, [dep("e1", "embed", tpm=10_000), dep("e2", "embed", tpm=10_000)], clock,
        strategy=first_candidate,
    )  # fmt: skip
    t.push("e1", fail(ServiceUnavailableError))
    e = await router.aembedding("embed", ["a", "b", "c"], dimensions=2)
    assert e.deployment_id == "e2"
    assert e.group == "embed"
    assert [x.index for x in e.data] == [0, 1, 2]
    assert e.usage is not None
    assert t.calls[-1].kind == "embed"
    stats = router.statistics()
    assert stats.by_id("e2").tpm_used == e.usage.total_tokens
    assert stats.by_id("e1").failures == 1
    assert stats.in_flight == 0


# --- statistics ----------------------------------------------------------------------


async def test_statistics_fields() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    router = make_router(
        t,
        [dep("a", rpm=100, tpm=10_000), dep("b"), dep("c", group="other")],
        clock,
        strategy=first_candidate,
        health=HealthPolicy(allowed_fails=2, cooldown=30.0),
    )
    t.push("a", fail(InternalServerError, takes=0.5), Step(takes=0.25))
    await router.acompletion("g", MESSAGES)  # a fails (0.5 s), b serves
    await router.acompletion("g", MESSAGES)  # a serves in 0.25 s
    t.push("a", fail(InternalServerError), fail(InternalServerError))
    await router.acompletion("g", MESSAGES)  # a fails once more: 1 consecutive
    await router.acompletion("g", MESSAGES)  # and again: cooled for 30 s
    clock.advance(5.0)
    stats = router.statistics()
    assert isinstance(stats, RouterStatistics)
    assert stats.at == clock.now()
    assert [d.id for d in stats.deployments] == ["a", "b", "c"]
    a = stats.by_id("a")
    assert isinstance(a, DeploymentStatistics)
    assert (a.group, a.provider, a.model) == ("g", "fake", "model-a")
    assert a.state == "cooling"
    assert a.requests == 4
    assert (a.successes, a.failures, a.consecutive_failures, a.ejections) == (1, 3, 0, 1)
    assert a.cooldown_until == START + 0.75 + 30.0
    assert a.cooldown_remaining == pytest.approx(25.0)
    assert a.rpm_used == 4
    assert a.tpm_used is not None
    assert a.in_flight == 0
    assert a.latency_ewma == pytest.approx(0.25)
    b = stats.by_id("b")
    assert (b.requests, b.successes, b.failures, b.state) == (3, 3, 0, "healthy")
    assert (b.cooldown_until, b.cooldown_remaining, b.rpm_used, b.tpm_used) == (
        None,
        0.0,
        None,
        None,
    )
    assert b.latency_ewma == 0.0
    c = stats.by_id("c")
    assert (c.requests, c.latency_ewma, c.group) == (0, None, "other")
    assert stats.requests == 7
    assert stats.in_flight == 0
    with pytest.raises(KeyError):
        stats.by_id("zz")
    # a snapshot does not change afterwards
    await router.acompletion("other", MESSAGES)
    assert stats.by_id("c").requests == 0
    assert router.statistics().by_id("c").requests == 1


async def test_repr_shows_live_state() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    t.push("a", HANG)
    router = make_router(t, [dep("a"), dep("b")], clock, strategy=first_candidate)
    task = asyncio.create_task(router.acompletion("g", MESSAGES))
    await until(lambda: t.hanging == 1)
    assert "in_flight=1" in repr(router)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert "in_flight=0" in repr(router)


async def test_async_with_closes_transports() -> None:
    clock = FakeClock()
    t = ScriptedTransport(clock)
    async with make_router(t, [dep("a")], clock) as router:
        await router.acompletion("g", MESSAGES)
        assert not t.closed
    assert t.closed
    assert "closed" in repr(router)
