"""Several routers, one set of limits: against a real redis-server started here.

The fixture starts ``redis-server`` on a free port on 127.0.0.1 without persistence
and stops it by pid. If it cannot start, the tests skip, except with CI=true, where
they fail.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from interlock import ConfigError, Deployment, Router
from interlock.limits import RedisLedger
from interlock.testing import FakeUpstream, Fault, RedisServer
from tests.integration.rawhttp import HELLO_REPLY, raw_server, redis_answering

pytestmark = pytest.mark.redis

HERE = Path(__file__).resolve().parent
MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream(name="shared") as up:
        yield up


async def run_proc(args: dict[str, Any]) -> dict[str, int]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "shared_router_proc.py"),
        json.dumps(args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]
    result: dict[str, int] = json.loads(out)
    return result


async def test_three_router_processes_share_one_rpm_limit(
    redis_server: RedisServer, upstream: FakeUpstream
) -> None:
    args = {"url": upstream.url, "redis": redis_server.url, "rpm": 30, "n": 40, "prefix": "t1"}
    # A generous Redis timeout: on a loaded machine a 0.25 s one could trip the
    # (tested separately) fallback to local accounting, which is not what this tests.
    args["timeout"] = 10
    results = await asyncio.gather(*(run_proc(args) for _ in range(3)))
    assert all(r["active"] == 1 for r in results)
    # Tolerance: none. Admission is one atomic Lua script per request, so the three
    # processes together get exactly the limit; alone, each would have sent 30.
    assert sum(r["ok"] for r in results) == 30
    assert sum(r["rate_limited"] for r in results) == 90
    assert upstream.request_count == 30
    assert all(r["active"] == 1 for r in results)


def shared_router(urls: list[str], redis_url: str, **kw: Any) -> Router:
    return Router(
        [
            Deployment(group="g", model="m", id=f"d{i}", api_base=u, rpm=10_000)
            for i, u in enumerate(urls)
        ],
        shared={"url": redis_url, "prefix": "t2", "sync_interval": 0.25, "timeout": 5},
        seed=7,
        **kw,
    )


async def test_a_cooldown_set_by_one_router_is_respected_by_another(
    redis_server: RedisServer,
) -> None:
    async with FakeUpstream(name="x") as x, FakeUpstream(name="y") as y:
        a = shared_router([x.url, y.url], redis_server.url)
        b = shared_router([x.url, y.url], redis_server.url)
        x.always(Fault.rate_limit(30))
        for _ in range(20):  # until a's strategy has tried x once
            await a.acompletion("g", MSG)
            if x.request_count:
                break
        assert x.request_count == 1
        assert a.statistics().by_id("d0").state == "cooling"
        assert isinstance(a.shared, RedisLedger)
        await a.shared.flush()  # the cooldown has reached Redis
        for _ in range(30):
            r = await b.acompletion("g", MSG)
            assert r.deployment_id == "d1"
        assert x.request_count == 1  # b never sent to x
        assert b.statistics().by_id("d0").state == "cooling"
        # A third router learns it from the periodic read, without sending anything.
        c = shared_router([x.url, y.url], redis_server.url)
        assert isinstance(c.shared, RedisLedger)
        await c.shared.sync_once()
        cooling = c.statistics().by_id("d0")
        assert cooling.state == "cooling"
        assert cooling.cooldown_remaining > 20
        for router in (a, b, c):
            await router.aclose()


async def test_killing_redis_loses_no_request_and_routers_rejoin(
    redis_server: RedisServer, upstream: FakeUpstream
) -> None:
    routers = [shared_router([upstream.url], redis_server.url) for _ in range(2)]
    upstream.always(Fault.delay(0.002))
    n = 300
    done = 0

    async def one(router: Router) -> None:
        nonlocal done
        await router.acompletion("g", MSG, timeout=30)
        done += 1

    async def drive() -> None:
        sem = asyncio.Semaphore(16)

        async def guarded(i: int) -> None:
            async with sem:
                await one(routers[i % 2])

        await asyncio.gather(*(guarded(i) for i in range(n)))

    task = asyncio.create_task(drive())
    for _ in range(10_000):
        if upstream.request_count >= 100:
            break
        await asyncio.sleep(0.005)
    redis_server.kill()  # mid-run
    await task
    assert done == n  # no request lost
    assert upstream.request_count == n
    ledgers = [r.shared for r in routers]
    assert all(isinstance(s, RedisLedger) for s in ledgers)
    assert all(s is not None and not s.active for s in ledgers)
    assert all(r.statistics().in_flight == 0 for r in routers)

    redis_server.start()
    for _ in range(2000):  # they ping every retry_interval (0.5 s)
        if all(s is not None and s.active for s in ledgers):
            break
        await asyncio.sleep(0.01)
    assert all(s is not None and s.active for s in ledgers)
    await asyncio.gather(*(routers[i % 2].acompletion("g", MSG) for i in range(20)))
    # The restarted Redis (no persistence) counts exactly the requests since it came back.
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_server.url)
    total: Any = await client.hget("t2:{d0}:rpm", "t")
    await client.aclose()
    assert int(total) == 20
    for router in routers:
        await router.aclose()


@pytest.mark.parametrize(
    ("reply", "hello"),
    [
        (b":1\r\n", HELLO_REPLY),
        (b"HELLO " + b"x" * 20 + b"\r\n", HELLO_REPLY),
        (b":1\r\n", b"+OK\r\n"),
    ],
    ids=["wrong-shape", "not-resp", "bad-handshake"],
)
async def test_a_redis_answering_nonsense_is_an_outage_not_an_error(
    upstream: FakeUpstream, reply: bytes, hello: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """A Redis (or a proxy in front of it) whose answers are not our scripts' replies:
    no redis or parsing exception reaches the caller; the router serves on local
    accounting, as in any outage, and closes cleanly."""
    async with raw_server(redis_answering(reply, hello)) as fake:
        url = f"redis://:pw-9f3c@127.0.0.1:{fake.port}/0"
        router = shared_router([upstream.url], url)
        ledger = router.shared
        assert isinstance(ledger, RedisLedger)
        r = await router.acompletion("g", MSG)
        assert r.deployment_id == "d0"
        assert (ledger.active, ledger.outages) == (False, 1)
        await ledger.sync_once()  # another bad reply: still nothing raised
        await router.aclose()
    assert "pw-9f3c" not in caplog.text


@pytest.mark.parametrize(
    "url", ["redis://:pw-9f3c@h:port/0", "redis://:pw-9f3c@h:6379/0?socket_timeout=x"]
)
def test_a_redis_url_redis_refuses_is_a_config_error_that_never_shows_it(url: str) -> None:
    with pytest.raises(ConfigError) as exc:
        shared_router(["http://127.0.0.1:1/v1"], url)
    assert exc.value.problems[0].startswith("shared.url: ")
    assert exc.value.__context__ is None
    assert "pw-9f3c" not in str(exc.value)
