"""The shared cache in a real redis-server (started here on a free port of 127.0.0.1)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from interlock import CachedStream, ChatStream, ConfigError, Deployment, Router
from interlock.testing import FakeUpstream, RedisServer
from tests.integration.loopback import started
from tests.integration.rawhttp import HELLO_REPLY, raw_server, redis_answering

pytestmark = pytest.mark.redis

MESSAGES = [{"role": "user", "content": "Shared question"}]


@pytest.fixture
async def up() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream(name="shared", stream_chunks=3) as upstream:
        yield upstream


def make_router(up: FakeUpstream, url: str, **cache: Any) -> Router:
    return Router(
        [Deployment(group="gpt", model="gpt-test", api_base=up.url, api_key="sk-x")],
        cache={"enabled": True, "backend": "redis", "redis_url": url, **cache},
    )


async def texts(stream: ChatStream | CachedStream) -> list[str]:
    return [c.delta.content async for chunk in stream for c in chunk.choices if c.delta.content]


def calls(up: FakeUpstream) -> int:
    return sum(1 for r in up.received if r.path.endswith("/chat/completions"))


async def test_two_routers_share_entries(up: FakeUpstream, redis_server: RedisServer) -> None:
    async with (
        make_router(up, redis_server.url, ttl=30) as a,
        make_router(up, redis_server.url, ttl=30) as b,
    ):
        first = await a.acompletion("gpt", MESSAGES)
        second = await b.acompletion("gpt", MESSAGES)
        assert not first.cached
        assert second.cached
        assert second.choices[0].message.content == first.choices[0].message.content
        # Streams are stored and replayed through Redis as well.
        other = [{"role": "user", "content": "streamed"}]
        pieces = await texts(await a.acompletion("gpt", other, stream=True))
        replay = await b.acompletion("gpt", other, stream=True)
        assert isinstance(replay, CachedStream)
        assert replay.cached
        assert await texts(replay) == pieces
        assert len(pieces) == 3
        sa, sb = a.statistics().cache, b.statistics().cache
    assert calls(up) == 2
    assert sa is not None
    assert sb is not None
    assert (sa.misses, sa.stores, sb.hits) == (2, 2, 2)
    assert sb.backend == "redis"
    assert sb.available
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        keys = await client.keys("interlock:cache:*")
        assert len(keys) == 2
        for key in keys:
            assert 0 < await client.pttl(key) <= 30_000
    finally:
        await client.aclose()


async def test_unreachable_redis_means_uncached(
    up: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer()  # started and stopped: its port now refuses connections
    port = started(server).port
    server.stop()
    url = f"redis://:s3cret-pass@127.0.0.1:{port}/0"
    caplog.set_level(logging.INFO, logger="interlock.cache")
    async with make_router(up, url, redis_retry_interval=0) as router:
        for _ in range(3):
            r = await router.acompletion("gpt", MESSAGES)
            assert not r.cached
        stats = router.statistics().cache
        assert "s3cret" not in repr(router.config)
    assert calls(up) == 3
    assert stats is not None
    assert not stats.available
    assert stats.misses == 3
    assert stats.stores == 0
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and r.name == "interlock.cache"
    ]
    assert len(warnings) == 1
    assert f"127.0.0.1:{port}" in warnings[0].getMessage()
    assert "s3cret" not in caplog.text


async def test_outage_and_recovery(up: FakeUpstream, caplog: pytest.LogCaptureFixture) -> None:
    server = started(RedisServer())
    caplog.set_level(logging.INFO, logger="interlock.cache")
    try:
        async with make_router(up, server.url, redis_retry_interval=0) as router:
            await router.acompletion("gpt", MESSAGES)
            assert (await router.acompletion("gpt", MESSAGES)).cached
            server.stop()
            assert not (await router.acompletion("gpt", MESSAGES)).cached
            assert not (await router.acompletion("gpt", MESSAGES)).cached
            assert not router.statistics().cache.available  # type: ignore[union-attr]
            started(server)  # same port, empty (persistence is off)
            assert not (await router.acompletion("gpt", MESSAGES)).cached
            assert (await router.acompletion("gpt", MESSAGES)).cached
            assert router.statistics().cache.available  # type: ignore[union-attr]
    finally:
        server.stop()
    assert calls(up) == 4
    levels = [r.levelno for r in caplog.records if r.name == "interlock.cache"]
    assert levels == [logging.WARNING, logging.INFO]


@pytest.mark.parametrize(
    ("reply", "hello"),
    [
        (b":1\r\n", HELLO_REPLY),
        (b"HELLO " + b"x" * 20 + b"\r\n", HELLO_REPLY),
        (b":1\r\n", b"+OK\r\n"),
    ],
    ids=["wrong-shape", "not-resp", "bad-handshake"],
)
async def test_a_redis_answering_nonsense_means_uncached(
    up: FakeUpstream, reply: bytes, hello: bytes
) -> None:
    async with raw_server(redis_answering(reply, hello)) as fake:
        url = f"redis://:pw-9f3c@127.0.0.1:{fake.port}/0"
        async with make_router(up, url, redis_retry_interval=0) as router:
            for _ in range(2):
                assert not (await router.acompletion("gpt", MESSAGES)).cached
    assert calls(up) == 2


@pytest.mark.parametrize(
    "url", ["redis://:pw-9f3c@h:port/0", "redis://:pw-9f3c@h:6379/0?socket_timeout=x"]
)
def test_a_redis_url_redis_refuses_is_a_config_error_that_never_shows_it(
    up: FakeUpstream, url: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        make_router(up, url)
    assert exc.value.problems[0].startswith("cache.redis_url: ")
    assert exc.value.__context__ is None
    assert "pw-9f3c" not in str(exc.value)
