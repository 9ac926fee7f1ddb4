"""The response cache through a real Router against FakeUpstream on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from interlock import (
    BadRequestError,
    CachedStream,
    ChatCompletion,
    Deployment,
    Router,
    StreamInterruptedError,
)
from interlock.errors import DeadlineExceededError
from interlock.testing import FakeClock, FakeUpstream, Fault

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
async def up() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream(name="primary", stream_chunks=4) as upstream:
        yield upstream


def make_router(up: FakeUpstream, cache: Mapping[str, Any] | None = None, **kwargs: Any) -> Router:
    return Router(
        [Deployment(group="gpt", model="gpt-test", api_base=up.url, api_key="sk-x", rpm=1000)],
        cache=cache,
        **kwargs,
    )


def chat_calls(up: FakeUpstream) -> int:
    return sum(1 for r in up.received if r.path.endswith("/chat/completions"))


def text(r: ChatCompletion) -> str | None:
    return r.choices[0].message.content


async def test_hit_skips_the_provider_and_all_accounting(up: FakeUpstream) -> None:
    async with make_router(up, {"enabled": True}) as router:
        first = await router.acompletion("gpt", MESSAGES)
        before = router.statistics()
        second = await router.acompletion("gpt", MESSAGES)
        after = router.statistics()
    assert chat_calls(up) == 1
    assert not first.cached
    assert second.cached
    assert text(second) == text(first)
    assert second.id == first.id
    assert second.deployment_id == first.deployment_id
    assert second.usage == first.usage
    # No RPM/TPM, no attempt, at any deployment.
    assert after.deployments == before.deployments
    assert after.deployments[0].rpm_used == 1
    assert after.cache is not None
    assert (after.cache.hits, after.cache.misses, after.cache.stores) == (1, 1, 1)
    assert after.cache.entries == 1
    assert after.cache.bytes is not None
    assert after.cache.bytes > 0


async def test_different_requests_miss(up: FakeUpstream) -> None:
    async with make_router(up, {"enabled": True}) as router:
        await router.acompletion("gpt", MESSAGES)
        await router.acompletion("gpt", [{"role": "user", "content": "And of Spain?"}])
        await router.acompletion("gpt", MESSAGES, temperature=0.5)
        # `user` does not change the answer, so it does not change the key.
        hit = await router.acompletion("gpt", MESSAGES, temperature=0.5, user="alice")
        stats = router.statistics().cache
    assert chat_calls(up) == 3
    assert hit.cached
    assert stats is not None
    assert (stats.hits, stats.misses) == (1, 3)


async def test_off_by_default_and_per_request_switches(up: FakeUpstream) -> None:
    async with make_router(up) as router:
        a = await router.acompletion("gpt", MESSAGES)
        b = await router.acompletion("gpt", MESSAGES)
        assert not a.cached
        assert not b.cached
        assert chat_calls(up) == 2
        await router.acompletion("gpt", MESSAGES, cache=True)
        c = await router.acompletion("gpt", MESSAGES, cache=True)
        assert c.cached
        assert chat_calls(up) == 3
        # False bypasses: neither read nor written.
        d = await router.acompletion("gpt", MESSAGES, cache=False)
        assert not d.cached
        assert chat_calls(up) == 4
        # no-store reads an existing entry but never stores its own response.
        e = await router.acompletion("gpt", MESSAGES, cache="no-store")
        assert e.cached
        assert chat_calls(up) == 4
        other = [{"role": "user", "content": "Not stored"}]
        await router.acompletion("gpt", other, cache="no-store")
        f = await router.acompletion("gpt", other, cache=True)
        assert not f.cached
        assert chat_calls(up) == 6


async def test_group_policy(up: FakeUpstream) -> None:
    async with FakeUpstream(name="other") as up2:
        router = Router(
            [
                Deployment(group="gpt", model="m", api_base=up.url),
                Deployment(group="cheap", model="m", api_base=up2.url),
            ],
            aliases={"default": "gpt"},
            cache={"groups": {"gpt": {"ttl": 60}}},
        )
        async with router:
            await router.acompletion("gpt", MESSAGES)
            hit = await router.acompletion("default", MESSAGES)  # aliases share the key
            await router.acompletion("cheap", MESSAGES)
            miss = await router.acompletion("cheap", MESSAGES)
        assert hit.cached
        assert not miss.cached
        assert chat_calls(up) == 1
        assert chat_calls(up2) == 2


async def test_ttl_expires_on_the_router_clock(up: FakeUpstream) -> None:
    clock = FakeClock()
    async with make_router(up, {"enabled": True, "ttl": 10}, clock=clock) as router:
        await router.acompletion("gpt", MESSAGES)
        clock.advance(9.9)
        assert (await router.acompletion("gpt", MESSAGES)).cached
        clock.advance(0.2)
        assert not (await router.acompletion("gpt", MESSAGES)).cached
        assert chat_calls(up) == 2
        # A per-request TTL applies to the entry it stores.
        other = [{"role": "user", "content": "short-lived"}]
        await router.acompletion("gpt", other, cache_ttl=1.0)
        clock.advance(0.5)
        assert (await router.acompletion("gpt", other)).cached
        clock.advance(0.6)
        assert not (await router.acompletion("gpt", other)).cached
        stats = router.statistics().cache
    assert chat_calls(up) == 4
    assert stats is not None
    assert stats.entries == 2


async def test_size_bound_evicts_the_oldest(up: FakeUpstream) -> None:
    async with make_router(up, {"enabled": True, "max_entries": 2}) as router:
        prompts = [[{"role": "user", "content": f"question {i}"}] for i in range(3)]
        for p in prompts:
            await router.acompletion("gpt", p)
        assert router.statistics().cache.entries == 2  # type: ignore[union-attr]
        assert (await router.acompletion("gpt", prompts[2])).cached
        assert (await router.acompletion("gpt", prompts[1])).cached
        assert not (await router.acompletion("gpt", prompts[0])).cached
    assert chat_calls(up) == 4


async def test_byte_bound_evicts_the_oldest(up: FakeUpstream) -> None:
    async with make_router(up, {"enabled": True}) as router:
        await router.acompletion("gpt", MESSAGES)
        size = router.statistics().cache.bytes  # type: ignore[union-attr]
    assert size is not None
    # Room for two entries of about this size, not three.
    async with make_router(up, {"enabled": True, "max_bytes": size * 2 + size // 2}) as router:
        prompts = [[{"role": "user", "content": f"question {i}"}] for i in range(3)]
        for p in prompts:
            await router.acompletion("gpt", p)
        stats = router.statistics().cache
        assert stats is not None
        assert stats.entries == 2
        assert stats.bytes is not None
        assert stats.bytes <= size * 2 + size // 2
        assert not (await router.acompletion("gpt", prompts[0])).cached
        assert (await router.acompletion("gpt", prompts[2])).cached


async def test_coalescing_100_identical_requests_make_one_call(up: FakeUpstream) -> None:
    async with make_router(up, {"enabled": True}) as router:
        results = await asyncio.gather(*(router.acompletion("gpt", MESSAGES) for _ in range(100)))
        stats = router.statistics()
    assert chat_calls(up) == 1
    assert {text(r) for r in results} == {"Hello from FakeUpstream."}
    assert sum(1 for r in results if not r.cached) == 1
    # Every caller gets its own objects.
    assert len({id(r.choices) for r in results}) == 100
    results[1].choices[0].message.content = "changed"
    assert text(results[2]) == "Hello from FakeUpstream."
    assert stats.cache is not None
    assert (stats.cache.misses, stats.cache.coalesced, stats.cache.hits) == (1, 99, 0)
    assert stats.deployments[0].requests == 1
    assert stats.in_flight == 0


async def test_coalesced_followers_share_the_error(up: FakeUpstream) -> None:
    up.push(Fault.status(400, message="bad prompt"))
    async with make_router(up, {"enabled": True}) as router:
        outcomes = await asyncio.gather(
            *(router.acompletion("gpt", MESSAGES) for _ in range(20)), return_exceptions=True
        )
        assert all(isinstance(o, BadRequestError) for o in outcomes)
        assert chat_calls(up) == 1
        # The error was not cached: the next request goes upstream and succeeds.
        ok = await router.acompletion("gpt", MESSAGES)
        assert not ok.cached
        assert chat_calls(up) == 2
        assert (await router.acompletion("gpt", MESSAGES)).cached


async def wait_for_waiters(router: Router, n: int) -> None:
    for _ in range(1000):
        flights = list(router.parts.cache._flights.values())
        if flights and flights[0].waiters == n:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{n} followers never joined")


async def wait_for_calls(up: FakeUpstream, n: int) -> None:
    for _ in range(2000):
        if chat_calls(up) >= n:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"upstream never saw {n} requests")


async def test_cancelled_leader_does_not_strand_followers(up: FakeUpstream) -> None:
    up.push(Fault.hang())
    async with make_router(up, {"enabled": True}) as router:
        leader = asyncio.create_task(router.acompletion("gpt", MESSAGES))
        await wait_for_calls(up, 1)
        followers = [asyncio.create_task(router.acompletion("gpt", MESSAGES)) for _ in range(5)]
        await wait_for_waiters(router, 5)
        leader.cancel()
        results = await asyncio.gather(*followers)
        with pytest.raises(asyncio.CancelledError):
            await leader
        stats = router.statistics()
    # One follower took over and made the second call; the others shared it.
    assert chat_calls(up) == 2
    assert all(text(r) == "Hello from FakeUpstream." for r in results)
    assert sum(1 for r in results if not r.cached) == 1
    assert stats.cache is not None
    assert stats.cache.coalesced == 4
    assert stats.in_flight == 0


async def test_follower_waits_no_longer_than_its_deadline(up: FakeUpstream) -> None:
    up.push(Fault.hang())
    async with make_router(up, {"enabled": True}) as router:
        leader = asyncio.create_task(router.acompletion("gpt", MESSAGES))
        await wait_for_calls(up, 1)
        with pytest.raises(DeadlineExceededError, match="identical request in flight"):
            await router.acompletion("gpt", MESSAGES, timeout=0.05)
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader


async def read_stream(s: Any) -> list[str]:
    out = []
    async for chunk in s:
        for c in chunk.choices:
            if c.delta.content:
                out.append(c.delta.content)
    return out


async def test_stream_is_stored_and_replayed_with_the_same_chunks(up: FakeUpstream) -> None:
    async with make_router(up, {"enabled": True}) as router:
        live = await router.acompletion("gpt", MESSAGES, stream=True)
        assert isinstance(live, CachedStream)
        assert not live.cached
        original = await read_stream(live)
        assert len(original) == 4
        replay = await router.acompletion("gpt", MESSAGES, stream=True)
        assert isinstance(replay, CachedStream)
        assert replay.cached
        chunks = [c async for c in replay]
        again = [
            c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
        ]
        assert again == original
        assert chunks[0].choices[0].delta.role == "assistant"
        assert any(c.choices and c.choices[0].finish_reason == "stop" for c in chunks)
        assert replay.usage is not None
        assert replay.usage == live.usage
        # The same entry answers a non-streamed request too.
        full = await router.acompletion("gpt", MESSAGES)
        assert full.cached
        assert text(full) == "".join(original)
    assert chat_calls(up) == 1


async def test_complete_response_replays_as_a_stream(up: FakeUpstream) -> None:
    async with make_router(up, {"enabled": True}) as router:
        full = await router.acompletion("gpt", MESSAGES)
        s = await router.acompletion("gpt", MESSAGES, stream=True)
        assert isinstance(s, CachedStream)
        assert s.cached
        assert "".join(await read_stream(s)) == text(full)
    assert chat_calls(up) == 1


async def test_cut_or_abandoned_stream_is_not_stored(up: FakeUpstream) -> None:
    up.push(Fault.cut_stream(after_chunks=2))
    async with make_router(up, {"enabled": True}) as router:
        s = await router.acompletion("gpt", MESSAGES, stream=True)
        with pytest.raises(StreamInterruptedError):
            await read_stream(s)
        s = await router.acompletion("gpt", MESSAGES, stream=True)
        assert not s.cached
        await s.__anext__()
        await s.aclose()
        stats = router.statistics()
        assert stats.cache is not None
        assert stats.cache.stores == 0
        assert stats.in_flight == 0
        s = await router.acompletion("gpt", MESSAGES, stream=True)
        assert not s.cached
        await read_stream(s)
        assert (await router.acompletion("gpt", MESSAGES)).cached
    assert chat_calls(up) == 3


async def test_stream_joins_a_complete_request_in_flight(up: FakeUpstream) -> None:
    async with make_router(up, {"enabled": True}) as router:
        full, s = await asyncio.gather(
            router.acompletion("gpt", MESSAGES), router.acompletion("gpt", MESSAGES, stream=True)
        )
        assert isinstance(s, CachedStream)
        assert s.cached
        assert "".join(await read_stream(s)) == text(full)
    assert chat_calls(up) == 1


async def test_embeddings_are_cached(up: FakeUpstream) -> None:
    async with make_router(up, {"enabled": True}) as router:
        a = await router.aembedding("gpt", ["alpha", "beta"])
        b = await router.aembedding("gpt", ["alpha", "beta"])
        c = await router.aembedding("gpt", ["alpha", "beta"], dimensions=4)
    assert b.cached
    assert not a.cached
    assert not c.cached
    assert [e.embedding for e in b.data] == [e.embedding for e in a.data]
    assert b.data[0].embedding is not a.data[0].embedding
    assert sum(1 for r in up.received if r.path.endswith("/embeddings")) == 2


async def test_fallback_answer_is_stored_under_the_serving_group(up: FakeUpstream) -> None:
    async with FakeUpstream(name="backup") as backup:
        up.always(Fault.status(503))
        router = Router(
            [
                Deployment(group="gpt", model="m", api_base=up.url),
                Deployment(group="backup", model="m", api_base=backup.url),
            ],
            fallbacks={"gpt": ["backup"]},
            cache={"enabled": True},
        )
        async with router:
            first = await router.acompletion("gpt", MESSAGES)
            assert first.group == "backup"
            assert not first.cached
            up.always(None)
            # Not stored under "gpt": once gpt answers again, it answers for itself.
            own = await router.acompletion("gpt", MESSAGES)
            assert own.group == "gpt"
            assert not own.cached
            # Stored under "backup", whose own requests it answers.
            assert (await router.acompletion("backup", MESSAGES)).cached
        assert chat_calls(backup) == 1


async def test_bad_cache_arguments_are_rejected(up: FakeUpstream) -> None:
    async with make_router(up, {"enabled": True}) as router:
        with pytest.raises(ValueError, match="cache_ttl"):
            await router.acompletion("gpt", MESSAGES, cache_ttl=0)
        with pytest.raises(ValueError, match="cache must be"):
            await router.acompletion("gpt", MESSAGES, cache="sometimes")  # type: ignore[call-overload]
    assert chat_calls(up) == 0


async def test_from_config_reads_the_cache_section(up: FakeUpstream) -> None:
    router = Router.from_config(
        {
            "deployments": [{"group": "gpt", "model": "m", "api_base": up.url}],
            "cache": {"enabled": True, "ttl": 30, "max_entries": 5},
        }
    )
    async with router:
        await router.acompletion("gpt", MESSAGES)
        assert (await router.acompletion("gpt", MESSAGES)).cached
        stats = router.statistics().cache
    assert stats is not None
    assert stats.max_entries == 5
    assert stats.backend == "memory"
