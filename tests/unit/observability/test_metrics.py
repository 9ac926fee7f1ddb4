"""Prometheus metrics: names, labels and values, read back with prometheus-client's parser."""

from __future__ import annotations

import bisect
import itertools
import random
import threading
from typing import Any

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from interlock import (
    APIConnectionError,
    Deployment,
    HealthPolicy,
    InternalServerError,
    NoDeploymentAvailableError,
    PrometheusMetrics,
    PromptTokensDetails,
    RateLimitError,
    Request,
    Router,
    Usage,
)
from interlock.errors import StreamInterruptedError
from interlock.observability import METRIC_NAMES, Observer
from interlock.observability.metrics import FOLD
from interlock.testing import FakeClock, InstantTransport
from interlock.testing.instant import USAGE
from interlock.types import ChatCompletionChunk, ChoiceDelta, ChunkChoice

MSG = [{"role": "user", "content": "hi"}]
KEYS = ("sk-metrics-key-a0", "sk-metrics-key-a1", "sk-metrics-key-b0")

# These tests are about events and metrics, not panic mode or the ejection cap
# (docs/resilience.md): with one-deployment pools those would keep a down deployment
# in rotation. Keep the plain "N failures cool it" behaviour.
CLASSIC: dict[str, float] = {"panic_threshold": 0.0, "max_ejected_share": 1.0}


def samples(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(registry).decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return samples(registry)[(name, frozenset(labels.items()))]


def make(clock: FakeClock, transport: InstantTransport, metrics: PrometheusMetrics) -> Router:
    return Router(
        [
            Deployment(
                group="a",
                model="m",
                provider="instant",
                id="a-0",
                api_key=KEYS[0],
                input_cost_per_token=2e-6,
                output_cost_per_token=4e-6,
            ),
            Deployment(group="a", model="m", provider="instant", id="a-1", api_key=KEYS[1]),
            Deployment(group="b", model="m", provider="instant", id="b-0", api_key=KEYS[2]),
        ],
        transports={"instant": transport},
        clock=clock,
        seed=5,
        metrics=metrics,
        fallbacks={"a": ["b"]},
        retry={"max_attempts": 2, "max_wait": 0},
        health=HealthPolicy(allowed_fails=1, cooldown=20.0, **CLASSIC),
    )


async def test_counts_successes_failures_retries_fallbacks_and_health() -> None:
    clock, transport, m = FakeClock(), InstantTransport(), PrometheusMetrics()
    router = make(clock, transport, m)
    try:
        for _ in range(4):
            await router.acompletion("a", MSG)
        ok = {d: value(m.registry, "interlock_requests_total", group="a", deployment=d,
                       outcome="success") for d in ("a-0", "a-1")}  # fmt: skip
        assert sum(ok.values()) == 4
        assert value(m.registry, "interlock_tokens_total", group="a", deployment="a-0",
                     direction="input") == 10 * ok["a-0"]  # fmt: skip
        assert value(m.registry, "interlock_spend_usd_total", group="a", deployment="a-0") == (
            pytest.approx(ok["a-0"] * (10 * 2e-6 + 5 * 4e-6))
        )
        assert value(m.registry, "interlock_spend_usd_total", group="a", deployment="a-1") == 0
        assert value(m.registry, "interlock_request_duration_seconds_count", group="a",
                     deployment="a-0") == ok["a-0"]  # fmt: skip

        # Both of group a fail: a retry, two cooldowns, then the fallback to b.
        transport.fail("a-0", RateLimitError("429", retry_after=9.0), always=True)
        transport.fail("a-1", InternalServerError("boom", status_code=500), always=True)
        r = await router.acompletion("a", MSG)
        assert r.deployment_id == "b-0"
        assert value(m.registry, "interlock_retries_total", group="a") == 1
        assert value(m.registry, "interlock_fallbacks_total", group="a", to_group="b") == 1
        assert value(m.registry, "interlock_requests_total", group="a", deployment="a-0",
                     outcome="rate_limited") == 1  # fmt: skip
        assert value(m.registry, "interlock_requests_total", group="a", deployment="a-1",
                     outcome="server_error") == 1  # fmt: skip
        for d in ("a-0", "a-1"):
            assert value(m.registry, "interlock_deployment_healthy", group="a", deployment=d) == 0
            assert value(m.registry, "interlock_cooldowns_total", group="a", deployment=d) == 1
        assert value(m.registry, "interlock_deployment_healthy", group="b", deployment="b-0") == 1

        # b fails as well: nothing is left for the next request.
        transport.fail("b-0", APIConnectionError("refused"), always=True)
        with pytest.raises(APIConnectionError):
            await router.acompletion("a", MSG)
        with pytest.raises(NoDeploymentAvailableError):
            await router.acompletion("a", MSG)
        assert value(m.registry, "interlock_requests_refused_total", group="a",
                     reason="no_deployment") == 1  # fmt: skip

        # Time passes, the deployments come back, recoveries are counted.
        transport.clear()
        clock.advance(25.0)
        for d in ("a-0", "a-1"):
            assert value(m.registry, "interlock_deployment_healthy", group="a", deployment=d) == 1
        for _ in range(40):
            await router.acompletion("a", MSG)
        recovered = sum(
            value(m.registry, "interlock_recoveries_total", group="a", deployment=d)
            for d in ("a-0", "a-1")
        )
        assert recovered == 2
        assert value(m.registry, "interlock_in_flight", group="a", deployment="a-0") == 0
    finally:
        await router.aclose()


async def test_stream_observes_time_to_first_token() -> None:
    clock, transport, m = FakeClock(), InstantTransport(), PrometheusMetrics()
    router = make(clock, transport, m)
    try:
        stream = await router.acompletion("b", MSG, stream=True)
        async for _ in stream:
            pass
        assert value(m.registry, "interlock_time_to_first_token_seconds_count", group="b",
                     deployment="b-0") == 1  # fmt: skip
        # The fake clock did not move: the observation is 0, in the lowest bucket.
        assert value(m.registry, "interlock_time_to_first_token_seconds_bucket", group="b",
                     deployment="b-0", le="0.01") == 1  # fmt: skip
    finally:
        await router.aclose()


async def test_every_documented_metric_is_exposed_and_no_key_is() -> None:
    clock, transport, m = FakeClock(), InstantTransport(), PrometheusMetrics()
    router = make(clock, transport, m)
    try:
        await router.acompletion("a", MSG)
        text = generate_latest(m.registry).decode()
        names = {f.name for f in text_string_to_metric_families(text)}
        for n in METRIC_NAMES:
            base = n.removesuffix("_total")
            assert f"interlock_{base}" in names, n
        for key in KEYS:
            assert key not in text
        labels = {k for s in samples(m.registry) for k, _ in s[1]}
        assert labels <= {"group", "deployment", "outcome", "direction", "to_group", "reason",
                          "le"}  # fmt: skip
    finally:
        await router.aclose()


def test_histogram_bucket_edges_are_inclusive() -> None:
    m = PrometheusMetrics(duration_buckets=(0.1, 1.0))
    clock, transport = FakeClock(), InstantTransport()
    router = make(clock, transport, m)
    state = router.parts.states[0]
    for v in (0.1, 0.5, 1.0, 3.0):
        m.success(state, v, None, None)
    le = {k: value(m.registry, "interlock_request_duration_seconds_bucket", group="a",
                   deployment="a-0", le=k) for k in ("0.1", "1.0", "+Inf")}  # fmt: skip
    assert le == {"0.1": 1, "1.0": 3, "+Inf": 4}
    assert value(m.registry, "interlock_request_duration_seconds_sum", group="a",
                 deployment="a-0") == pytest.approx(4.6)  # fmt: skip


def test_hedges_and_rate_limit_waits_are_counted_when_reported() -> None:
    clock, transport, m = FakeClock(), InstantTransport(), PrometheusMetrics()
    router = make(clock, transport, m)
    obs = router.parts.attempts.observer
    obs.hedge(router.parts.states[1], 2, 0.25, clock.now())
    obs.rate_limit_wait("a", "a-0", 1.5, clock.now())
    obs.rate_limit_wait("a", None, 0.5, clock.now())
    assert value(m.registry, "interlock_hedges_total", group="a") == 1
    assert value(m.registry, "interlock_rate_limit_waits_total", group="a") == 2
    assert value(m.registry, "interlock_rate_limit_wait_seconds_total", group="a") == 2.0


def test_registry_is_private_unless_asked() -> None:
    before = set(prometheus_client.REGISTRY._names_to_collectors)
    m = PrometheusMetrics()
    assert m.registry is not prometheus_client.REGISTRY
    assert set(prometheus_client.REGISTRY._names_to_collectors) == before
    shared = CollectorRegistry()
    m2 = PrometheusMetrics(registry=shared)
    assert m2.registry is shared
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        PrometheusMetrics(registry=shared)  # same names twice in one registry
    PrometheusMetrics(registry=shared, namespace="chat")  # another namespace is fine


async def test_a_second_router_on_the_same_metrics_continues_its_counters() -> None:
    # Two app lifespans in one process: the second router (same deployments) is given
    # the same PrometheusMetrics; its counts add to the first's, so counters never go
    # back, and the scrape holds one series per (group, deployment).
    m = PrometheusMetrics()
    clock = FakeClock()
    first = make(clock, InstantTransport(), m)
    async with first:
        for _ in range(3):
            await first.acompletion("a", MSG)
    second = make(clock, InstantTransport(), m)
    async with second:
        await second.acompletion("b", MSG)
        await second.acompletion("a", MSG)
    served = {
        d: value(m.registry, "interlock_requests_total", group=g, deployment=d, outcome="success")
        for g, d in (("a", "a-0"), ("a", "a-1"), ("b", "b-0"))
    }
    assert served["a-0"] + served["a-1"] == 4
    assert served["b-0"] == 1
    count = sum(
        value(m.registry, "interlock_request_duration_seconds_count", group="a", deployment=d)
        for d in ("a-0", "a-1")
    )
    assert count == 4
    text = generate_latest(m.registry).decode()
    assert text.count('interlock_in_flight{deployment="a-0",group="a"}') == 1


async def test_routers_with_distinct_deployments_share_one_metrics() -> None:
    m = PrometheusMetrics()
    t = InstantTransport()
    chat = Router([Deployment(group="chat", model="m", provider="instant", id="c")],
                  transports={"instant": t}, metrics=m)  # fmt: skip
    embed = Router([Deployment(group="emb", model="m", provider="instant", id="e")],
                   transports={"instant": t}, metrics=m)  # fmt: skip
    async with chat, embed:
        await chat.acompletion("chat", MSG)
        await embed.aembedding("emb", ["x"])
        await embed.aembedding("emb", ["y"])
    assert value(m.registry, "interlock_requests_total", group="chat", deployment="c",
                 outcome="success") == 1  # fmt: skip
    assert value(m.registry, "interlock_requests_total", group="emb", deployment="e",
                 outcome="success") == 2  # fmt: skip


def test_close_unregisters_so_a_new_instance_can_take_the_registry() -> None:
    shared = CollectorRegistry()
    m = PrometheusMetrics(registry=shared)
    make(FakeClock(), InstantTransport(), m)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        PrometheusMetrics(registry=shared)
    m.close()
    m.close()  # idempotent
    assert m.closed
    assert "interlock_requests" not in generate_latest(shared).decode()
    m2 = PrometheusMetrics(registry=shared)
    make(FakeClock(), InstantTransport(), m2)
    assert value(shared, "interlock_in_flight", group="a", deployment="a-0") == 0
    with pytest.raises(ValueError, match="closed"):
        make(FakeClock(), InstantTransport(), m)


def test_unregister_is_close() -> None:
    m = PrometheusMetrics(registry=CollectorRegistry())
    m.unregister()
    assert m.closed


@pytest.mark.parametrize("buckets", [(), (1.0, 0.5), (0.0, 1.0), (1.0, 1.0)])
def test_bad_buckets_are_rejected(buckets: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="duration_buckets"):
        PrometheusMetrics(duration_buckets=buckets)


@pytest.mark.parametrize("namespace", ["", "1x", "a-b"])
def test_bad_namespace_is_rejected(namespace: str) -> None:
    with pytest.raises(ValueError, match="namespace"):
        PrometheusMetrics(namespace=namespace)


class _CutSource:
    """A stream that delivers one chunk and then fails."""

    def __init__(self, deployment_id: str) -> None:
        self.first = ChatCompletionChunk(
            "c", "m", [ChunkChoice(0, ChoiceDelta("assistant", "Hel"))], deployment_id=deployment_id
        )

    async def next(self) -> ChatCompletionChunk | None:
        raise StreamInterruptedError("cut", deployment_id="p-0")

    def close(self) -> None:
        pass


class _CuttingTransport(InstantTransport):
    cut = False

    async def open_stream(self, deployment: Deployment, request: Request, timeout: float) -> Any:
        if self.cut:
            return _CutSource(deployment.id or "")
        return await super().open_stream(deployment, request, timeout)


def priced(clock: FakeClock, transport: InstantTransport, m: PrometheusMetrics | None) -> Router:
    return Router(
        [Deployment(group="p", model="m", provider="instant", id="p-0",
                    input_cost_per_token=2e-6, output_cost_per_token=4e-6)],
        transports={"instant": transport},
        clock=clock,
        metrics=m,
        retry={"max_attempts": 1, "max_wait": 0},
        health=HealthPolicy(allowed_fails=100, **CLASSIC),
    )  # fmt: skip


async def test_successes_and_tokens_are_read_from_the_router_state() -> None:
    # Successes and tokens are not counted per request: the collector reads the
    # router's own counts and leaves out what the ledger counted that no success
    # reported (a stream's estimate, streams that failed or were closed early).
    clock, transport, m = FakeClock(), _CuttingTransport(), PrometheusMetrics()
    router = priced(clock, transport, m)
    state = router.parts.states[0]

    def metric(name: str, **labels: str) -> float:
        return value(m.registry, name, group="p", deployment="p-0", **labels)

    def check(successes: int, tin: int, tout: int) -> None:
        assert metric("interlock_requests_total", outcome="success") == successes
        assert metric("interlock_tokens_total", direction="input") == tin
        assert metric("interlock_tokens_total", direction="output") == tout
        assert metric("interlock_spend_usd_total") == pytest.approx(tin * 2e-6 + tout * 4e-6)
        assert metric("interlock_request_duration_seconds_count") == successes

    try:
        for _ in range(3):
            await router.acompletion("p", MSG)
        check(3, 30, 15)
        stream = await router.acompletion("p", MSG, stream=True)  # usage in its last chunk
        async for _ in stream:
            pass
        check(4, 40, 20)

        transport.usage = None  # no usage: the ledger estimates, the metric counts none
        await router.acompletion("p", MSG)
        stream = await router.acompletion("p", MSG, stream=True)
        async for _ in stream:
            pass
        check(6, 40, 20)
        assert state.input_tokens > 40  # the ledger's estimate

        transport.usage = USAGE
        stream = await router.acompletion("p", MSG, stream=True)
        await stream.__anext__()
        await stream.aclose()  # closed early: not a success, its tokens not reported
        transport.cut = True
        stream = await router.acompletion("p", MSG, stream=True)
        with pytest.raises(StreamInterruptedError):
            async for _ in stream:
                pass
        check(6, 40, 20)
        assert metric("interlock_requests_total", outcome="connection") == 1
        assert state.successes == 6
    finally:
        await router.aclose()


async def test_counts_start_when_the_metrics_are_bound() -> None:
    clock, transport = FakeClock(), InstantTransport()
    router = priced(clock, transport, None)
    try:
        for _ in range(2):
            await router.acompletion("p", MSG)
        m = PrometheusMetrics()
        router.parts.attempts.observer = Observer(clock, router.parts.states, metrics=m)
        await router.acompletion("p", MSG)
        assert value(m.registry, "interlock_requests_total", group="p", deployment="p-0",
                     outcome="success") == 1  # fmt: skip
        assert value(m.registry, "interlock_tokens_total", group="p", deployment="p-0",
                     direction="input") == 10  # fmt: skip
    finally:
        await router.aclose()


def test_duration_batches_fold_to_the_same_buckets_and_sum() -> None:
    bounds = (0.1, 0.5, 1.0, 2.0)
    m = PrometheusMetrics(duration_buckets=bounds)
    router = make(FakeClock(), InstantTransport(), m)
    state = router.parts.states[0]
    rng = random.Random(7)
    values = [rng.choice([*bounds, rng.uniform(0.0, 3.0)]) for _ in range(3 * FOLD + 5)]
    for v in values:
        m.success(state, v, None)
        assert len(m.pending_durations[state]) < FOLD  # bounded between scrapes
    counts = [0] * (len(bounds) + 1)
    total = 0.0
    for v in values:  # what bucketing each value as it comes gives
        counts[bisect.bisect_left(bounds, v)] += 1
        total += v
    cumulative = list(itertools.accumulate(counts))
    for le, n in zip([*map(repr, bounds), "+Inf"], cumulative, strict=True):
        assert value(m.registry, "interlock_request_duration_seconds_bucket", group="a",
                     deployment="a-0", le=le) == n  # fmt: skip
    # The same additions in the same order: exactly the same sum.
    assert value(m.registry, "interlock_request_duration_seconds_sum", group="a",
                 deployment="a-0") == total  # fmt: skip


def test_observations_appended_during_a_fold_are_kept() -> None:
    # A scrape from another thread folds while the loop appends: nothing is lost
    # or counted twice.
    m = PrometheusMetrics(duration_buckets=(1.0,))
    router = make(FakeClock(), InstantTransport(), m)
    state = router.parts.states[0]
    n = 20_000
    done = threading.Event()

    def scrape() -> None:
        while not done.is_set():
            m.collect()

    t = threading.Thread(target=scrape)
    t.start()
    try:
        for _ in range(n):
            m.success(state, 0.5, None)
    finally:
        done.set()
        t.join()
    assert value(m.registry, "interlock_request_duration_seconds_count", group="a",
                 deployment="a-0") == n  # fmt: skip


async def test_spend_prices_cached_reads_and_cache_writes_at_their_own_rates() -> None:
    # The spend counter reads the ledger's priced spend, so a cached read costs its own
    # (lower) price here too, not the input price.
    clock, m = FakeClock(), PrometheusMetrics()
    usage = Usage(100, 10, 110, prompt_tokens_details=PromptTokensDetails(60, 30))
    router = Router(
        [Deployment(group="p", model="m", provider="instant", id="p-0",
                    input_cost_per_token=2e-6, output_cost_per_token=4e-6,
                    cache_read_cost_per_token=2e-7, cache_write_cost_per_token=3e-6)],
        transports={"instant": InstantTransport(usage=usage)},
        clock=clock,
        metrics=m,
    )  # fmt: skip
    try:
        await router.acompletion("p", MSG)
        expected = 10 * 2e-6 + 60 * 2e-7 + 30 * 3e-6 + 10 * 4e-6
        spent = value(m.registry, "interlock_spend_usd_total", group="p", deployment="p-0")
        assert spent == pytest.approx(expected)
        assert router.spend().total_usd == pytest.approx(expected)
    finally:
        await router.aclose()
