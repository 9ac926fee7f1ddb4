"""Runtime changes against real FakeUpstream servers on 127.0.0.1: changes under load
lose no request and send nothing to a deployment after its removal returned; a
removed deployment's requests (a stream included) finish first; a new provider
works; a config file is applied as a diff.

Request bodies follow the Chat Completions API
(https://platform.openai.com/docs/api-reference/chat/create): `messages` is a list
of ``{"role", "content"}`` objects.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from pathlib import Path
from typing import Any

import pytest
import trustme
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from interlock import (
    APIConnectionError,
    ChatCompletionChunk,
    ConfigError,
    Deployment,
    DeploymentState,
    InterlockError,
    Router,
)
from interlock.limits import RedisLedger
from interlock.testing import (
    FakeAnthropic,
    FakeAzure,
    FakeUpstream,
    Fault,
    RedisServer,
)
from tests.integration.loopback import KEY, MESSAGES, drain_into, eventually, upstreams
from tests.integration.providers.test_network import ONCE, PROXY_ENV, tls_upstream

# A key per deployment: the fakes log the key each request carried, so their logs say
# which deployment sent it.
_KEYS = (f"sk-loopback-runtime-{i:04d}-x7Qp" for i in itertools.count())


def on(up: FakeUpstream, id: str, group: str = "g", **fields: Any) -> Deployment:
    return Deployment(
        group=group,
        model="gpt-test",
        id=id,
        api_base=up.url,
        api_key=next(_KEYS),
        **fields,
    )


def hits(ups: list[FakeUpstream], key: str, after: float = float("-inf")) -> int:
    return sum(1 for up in ups for r in up.received if r.api_key == key and r.at > after)


async def test_100_changes_under_500_requests_at_concurrency_32() -> None:
    async with upstreams(4, latency=0.01) as ups:
        serial = itertools.count()

        def fresh() -> Deployment:
            n = next(serial)
            return on(ups[n % len(ups)], f"d{n}", weight=1 + n % 3)

        router = Router([fresh() for _ in range(4)], seed=7)
        removed_at: dict[str, float] = {}  # key -> time.monotonic() when removal returned
        released: list[DeploymentState] = []
        busy_removals = 0  # removals that had requests in flight to wait for
        # Requests and changes keep pace (about 5 requests per change), so all 100
        # changes happen while requests run: neither side gets far ahead.
        done = changes = 0
        pace = asyncio.Condition()
        failures: list[BaseException] = []
        served: dict[str, int] = {}

        async def worker(todo: itertools.count[int]) -> None:
            nonlocal done
            while (n := next(todo)) < 500:
                # The last ten start after the last change, so every change has
                # requests running after it.
                need = 100 if n >= 490 else n // 5 - 2
                async with pace:
                    await pace.wait_for(lambda: changes >= need)  # noqa: B023 - awaited at once
                try:
                    r = await router.acompletion("g", MESSAGES)
                    served[r.deployment_id or ""] = served.get(r.deployment_id or "", 0) + 1
                except BaseException as exc:  # any failure is a finding
                    failures.append(exc)
                async with pace:
                    done += 1
                    pace.notify_all()

        def busiest() -> Deployment:
            """The deployment with the most requests in flight (draining one that is
            idle would prove nothing)."""
            return max(router.parts.states, key=lambda s: s.in_flight).deployment

        async def changer() -> None:
            nonlocal busy_removals, changes
            for i in range(100):
                at = i * 4
                async with pace:
                    await pace.wait_for(lambda: done >= at)  # noqa: B023 - awaited at once
                live = list(router.deployments)
                kind = i % 4
                if kind == 0 or len(live) <= 2:
                    await router.add_deployment(fresh())
                elif kind == 1:
                    victim = busiest()
                    state = next(s for s in router.parts.states if s.id == victim.id)
                    busy_removals += state.in_flight > 0
                    await router.remove_deployment(state.id)
                    removed_at[victim.api_key_value() or ""] = time.monotonic()
                    released.append(state)
                elif kind == 2:
                    d = live[i % len(live)]
                    await router.update_deployment(
                        d.model_copy(update={"weight": 1 + i % 5, "rpm": 10_000 + i})
                    )
                else:  # replace one deployment by another in a single reconfigure
                    victim = busiest()
                    state = next(s for s in router.parts.states if s.id == victim.id)
                    newcomer = fresh()
                    keep = tuple(d for d in live if d.id != victim.id)
                    cfg = router.config.model_copy(update={"deployments": (*keep, newcomer)})
                    busy_removals += state.in_flight > 0
                    change = await router.reconfigure(cfg)
                    assert change.removed == (victim.id,)
                    assert change.added == (newcomer.id,)
                    removed_at[victim.api_key_value() or ""] = time.monotonic()
                    released.append(state)
                async with pace:
                    changes += 1
                    pace.notify_all()
            assert done < 500  # the last change came while requests still ran

        async with router:
            todo = itertools.count()
            async with asyncio.timeout(60):
                await asyncio.gather(changer(), *(worker(todo) for _ in range(32)))

        assert failures == []
        assert sum(served.values()) == 500
        # Every request reached an upstream exactly once (none lost, none retried).
        assert sum(up.request_count for up in ups) == 500
        assert len(removed_at) >= 40
        assert busy_removals >= 30, busy_removals  # draining under load, not idle
        for key, at in removed_at.items():
            assert hits(ups, key, after=at) == 0
        assert all(s.in_flight == 0 for s in router.parts.states)
        assert all(s.in_flight == 0 for s in released)
        assert (
            sum(s.successes for s in released) + sum(s.successes for s in router.parts.states)
            == 500
        )


async def test_remove_returns_after_a_slow_request_and_a_stream_finished() -> None:
    async with upstreams(2) as ups:
        a, b = on(ups[0], "a"), on(ups[1], "b")
        router = Router([a, b], strategy="least-busy", seed=1)
        async with router:
            ups[0].push(Fault.delay(0.3))
            slow = asyncio.ensure_future(
                router.acompletion("g", MESSAGES, strategy=lambda c, r: c[0])
            )
            await eventually(lambda: ups[0].in_flight == 1)
            stream = await router.acompletion(
                "g", MESSAGES, stream=True, strategy=lambda c, r: c[0]
            )
            state = router.parts.states[0]
            assert state.in_flight == 2
            removal = asyncio.ensure_future(router.remove_deployment("a"))
            await eventually(lambda: [d.id for d in router.deployments] == ["b"])
            # New requests go to b while a drains.
            for _ in range(5):
                assert (await router.acompletion("g", MESSAGES)).deployment_id == "b"
            assert not removal.done()
            got: list[ChatCompletionChunk] = []
            await drain_into(stream, got)
            assert (await slow).deployment_id == "a"
            await asyncio.wait_for(removal, 5)
            returned = time.monotonic()
            assert state.in_flight == 0
            assert state.successes == 2
            assert "".join(c.choices[0].delta.content or "" for c in got if c.choices)
            for _ in range(5):
                assert (await router.acompletion("g", MESSAGES)).deployment_id == "b"
            assert hits(ups, a.api_key_value() or "", after=returned) == 0
            assert ups[0].request_count == 2


async def test_an_added_deployment_of_another_provider_is_served() -> None:
    async with upstreams(1) as ups, FakeAnthropic(name="claude") as claude:
        router = Router([on(ups[0], "a")], seed=3)
        async with router:
            await router.add_deployment(
                Deployment(
                    group="claude",
                    provider="anthropic",
                    model="claude-test",
                    id="c",
                    api_base=claude.url,
                    api_key=KEY,
                )
            )
            r = await router.acompletion("claude", MESSAGES, max_tokens=64)
            assert r.deployment_id == "c"
            assert claude.request_count == 1


@pytest.mark.parametrize("how", ["update_deployment", "reconfigure", "remove_then_add"])
async def test_a_changed_key_and_address_are_used_from_the_next_request(how: str) -> None:
    """Key rotation: the next request after the change carries the new key to the new
    address, for each wire format (OpenAI, Azure OpenAI, Anthropic's own), and the old
    key is never sent again."""
    async with (
        upstreams(2) as (old, new),
        FakeAzure() as az_old,
        FakeAzure() as az_new,
        FakeAnthropic(name="claude") as cl_old,
        FakeAnthropic(name="claude") as cl_new,
    ):
        pairs = {
            "openai": (old, new, {"model": "gpt-test"}),
            "azure": (az_old, az_new, {"provider": "azure", "model": "gpt-4o"}),
            "anthropic": (cl_old, cl_new, {"provider": "anthropic", "model": "claude-test"}),
        }
        before = [
            Deployment(group=g, id=g, api_base=a.url, api_key=f"sk-{g}-old-1234", **f)
            for g, (a, _, f) in pairs.items()
        ]
        after = [
            Deployment(group=g, id=g, api_base=b.url, api_key=f"sk-{g}-new-5678", **f)
            for g, (_, b, f) in pairs.items()
        ]
        async with Router(before, seed=3) as router:
            for g in pairs:
                await router.acompletion(g, MESSAGES, max_tokens=16)
            if how == "update_deployment":
                for d in after:
                    await router.update_deployment(d)
            elif how == "reconfigure":
                await router.reconfigure({"deployments": [d.model_dump() for d in after]})
            else:
                for d_old, d_new in zip(before, after, strict=True):
                    await router.remove_deployment(d_old.id or "")
                    await router.add_deployment(d_new)
            for g in pairs:
                await router.acompletion(g, MESSAGES, max_tokens=16)
        for g, (a, b, _) in pairs.items():
            assert [r.api_key for r in a.received] == [f"sk-{g}-old-1234"], g
            assert [r.api_key for r in b.received] == [f"sk-{g}-new-5678"], g


async def test_a_changed_key_reaches_the_other_endpoints_too() -> None:
    """The same for the router's one client of the other endpoints and passthrough:
    after `update_deployment`, `arequest` and `amoderation` send the new key to the new
    address. Bodies: https://platform.openai.com/docs/api-reference/chat/create and
    https://platform.openai.com/docs/api-reference/moderations/create."""
    async with upstreams(2) as (old, new):
        d_old = Deployment(
            group="g", id="g", model="gpt-test", api_base=old.url, api_key="sk-a-1234"
        )
        d_new = Deployment(
            group="g", id="g", model="gpt-test", api_base=new.url, api_key="sk-b-5678"
        )
        body = {"model": "gpt-test", "messages": MESSAGES}
        async with Router([d_old], seed=3) as router:
            await router.arequest("g", "POST", "chat/completions", json=body)
            await router.amoderation("g", "hello")
            await router.update_deployment(d_new)
            await router.arequest("g", "POST", "chat/completions", json=body)
            await router.amoderation("g", "hello")
        assert [r.api_key for r in old.received] == ["sk-a-1234"] * 2
        assert [r.api_key for r in new.received] == ["sk-b-5678"] * 2


async def test_reconfigure_from_a_file_keeps_a_cooling_deployment_cooling(
    tmp_path: Path,
) -> None:
    async with upstreams(2) as ups:
        a, b = on(ups[0], "a"), on(ups[1], "b")
        router = Router([a, b], seed=5)
        async with router:
            # A 429 with Retry-After cools a for 30 s.
            ups[0].push(Fault.rate_limit(retry_after=30))
            await router.acompletion("g", MESSAGES, strategy=lambda c, r: c[0])
            state = router.parts.states[0]
            cooling_until = state.cooldown_until
            assert cooling_until > router.parts.clock.now()
            data = router.config.model_dump(mode="json", exclude_none=True)
            data["deployments"][0]["weight"] = 4
            # A dump masks keys: a config file holds them in clear.
            data["deployments"][0]["api_key"] = a.api_key_value()
            data["deployments"][1]["api_key"] = b.api_key_value()
            path = tmp_path / "router.json"
            path.write_text(json.dumps(data))
            change = await router.reconfigure(path)
            assert change.updated == ("a",)
            assert router.parts.states[0] is state
            assert state.cooldown_until == cooling_until
            for _ in range(5):
                assert (await router.acompletion("g", MESSAGES)).deployment_id == "b"


@pytest.mark.redis
async def test_with_shared_state_surviving_deployments_keep_their_shared_counters(
    redis_server: RedisServer,
) -> None:
    """Two routers (two processes, in production) share d's rpm=5 through Redis. One
    sends 3 requests; the other changes its deployments (d updated, e added, f
    removed) and can still send only 2 to d: the shared window was kept. The change
    stays local to the router that made it."""
    import redis.asyncio as aioredis

    async with upstreams(3) as ups:
        shared = {"url": redis_server.url, "prefix": "rt", "timeout": 5}

        def router() -> Router:
            return Router(
                [
                    Deployment(group="g", model="m", id="d", api_base=ups[0].url, rpm=5),
                    Deployment(group="h", model="m", id="f", api_base=ups[2].url, rpm=5),
                ],
                shared=shared,
                seed=11,
            )

        one, two = router(), router()
        async with one, two:
            for _ in range(3):
                assert (await one.acompletion("g", MESSAGES)).deployment_id == "d"
            ledger = two.shared
            assert isinstance(ledger, RedisLedger)
            d_state = two.parts.states[0]
            await two.update_deployment(
                Deployment(group="g", model="m", id="d", api_base=ups[0].url, rpm=5, weight=3)
            )
            await two.add_deployment(
                Deployment(group="e", model="m", id="e", api_base=ups[1].url, rpm=5)
            )
            await two.remove_deployment("f")
            assert two.shared is ledger  # the same connections, the same keys
            assert two.parts.states[0] is d_state
            for _ in range(2):
                assert (await two.acompletion("g", MESSAGES)).deployment_id == "d"
            with pytest.raises(InterlockError):
                await two.acompletion("g", MESSAGES, timeout=0.5)
            assert ups[0].request_count == 5  # 3 + 2: never over the shared limit
            assert d_state.requests == 2  # two's own count: the rest is Redis'
            # The added deployment has shared windows of its own.
            assert (await two.acompletion("e", MESSAGES)).deployment_id == "e"
            # The change is local: one still has f and not e.
            assert [d.id for d in one.deployments] == ["d", "f"]
            assert (await one.acompletion("h", MESSAGES)).deployment_id == "f"

            client = aioredis.Redis.from_url(redis_server.url)
            try:
                d_total: Any = await client.hget("rt:{d}:rpm", "t")
                e_total: Any = await client.hget("rt:{e}:rpm", "t")
            finally:
                await client.aclose()
            assert int(d_total) == 5
            assert int(e_total) == 1


# --- tracing and network settings across changes ------------------------------------


async def test_traced_calls_run_on_the_changed_deployments() -> None:
    """With tracing on, the router's entry wraps its pipeline: a change builds a new
    pipeline (with the new groups' fallback chains), and calls must run (and be
    traced) on it, not on the one before, which knows no group "h"."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        async with upstreams(2, reply="hi") as ups:
            router = Router([on(ups[0], "u0")], tracing=provider, seed=1)
            async with router:
                await router.acompletion("g", MESSAGES)
                await router.add_deployment(on(ups[1], "u1", group="h"))
                await router.remove_deployment("u0")
                before = ups[0].request_count
                exporter.clear()
                chat = await router.acompletion("h", MESSAGES)
                # Images: https://platform.openai.com/docs/api-reference/images/create
                image = await router.aimage_generation("h", "a red fox")
                # https://platform.openai.com/docs/api-reference/responses/create
                response = await router.aresponses("h", "hello")
            assert ups[0].request_count == before  # nothing reached the removed one
            assert ups[1].request_count == 3
            spans = exporter.get_finished_spans()
            calls = [s for s in spans if s.kind is SpanKind.INTERNAL]
            attempts = [s for s in spans if s.kind is SpanKind.CLIENT]
            assert [s.name for s in calls] == ["chat h", "interlock.images h", "chat h"]
            ids = [dict(s.attributes or {})["interlock.request.id"] for s in calls]
            assert ids == [chat.request_id, image.request_id, response.request_id]
            assert len(attempts) == 3
            for call, attempt in zip(calls, attempts, strict=True):
                assert attempt.parent is not None
                assert attempt.parent.span_id == call.context.span_id
                assert dict(attempt.attributes or {})["interlock.deployment.id"] == "u1"
    finally:
        provider.shutdown()


async def test_network_settings_are_checked_before_a_change_and_routed_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in PROXY_ENV:  # an environment proxy must not carry the loopback calls
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    ca = trustme.CA()
    async with tls_upstream(ca) as (up, base):
        d = Deployment(group="g", model="gpt-test", id="tls", api_base=base, api_key=KEY)
        async with Router([d], retry=ONCE) as router:
            # The upstream's certificate is signed by a CA nobody trusts yet.
            with pytest.raises(APIConnectionError):
                await router.acompletion("g", MESSAGES)
            updated = await router.update_deployment(d.model_copy(update={"verify": False}))
            assert updated.verify is False
            r = await router.acompletion("g", MESSAGES)
            assert r.deployment_id == "tls"
            # A bad bundle is refused before anything changes: same parts, same
            # deployment, and it still serves.
            parts = router.parts
            junk = tmp_path / "junk.pem"
            junk.write_text("not a certificate\n")
            for bundle in (junk, tmp_path / "missing.pem"):
                with pytest.raises(ConfigError, match="ca_bundle"):
                    await router.update_deployment(d.model_copy(update={"ca_bundle": str(bundle)}))
                assert router.parts is parts
                assert router.deployments[0].verify is False
                assert router.deployments[0].ca_bundle is None
            assert (await router.acompletion("g", MESSAGES)).deployment_id == "tls"
            # The CA's own bundle: verified and trusted after the change.
            bundle = tmp_path / "ca.pem"
            ca.cert_pem.write_to_path(str(bundle))
            await router.update_deployment(d.model_copy(update={"ca_bundle": str(bundle)}))
            assert router.deployments[0].verify is not False
            assert (await router.acompletion("g", MESSAGES)).deployment_id == "tls"
    assert up.request_count == 3
