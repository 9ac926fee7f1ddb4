"""Scrape a running router's /metrics over HTTP and parse it with prometheus-client."""

from __future__ import annotations

import aiohttp
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from interlock import Deployment, PrometheusMetrics, Router, serve_metrics
from interlock.testing import FakeUpstream, Fault

MSG = [{"role": "user", "content": "Say hello."}]
KEY_0 = "sk-scrape-0-topsecret"
KEY_1 = "sk-scrape-1-topsecret"


async def test_scrape_a_running_router() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry=registry)
    async with (
        FakeUpstream(name="one", api_key=KEY_0) as up0,
        FakeUpstream(name="two", api_key=KEY_1) as up1,
    ):
        router = Router(
            [
                Deployment(
                    group="chat",
                    model="m",
                    id="one",
                    api_base=up0.url,
                    api_key=KEY_0,
                    input_cost_per_token=1e-6,
                    output_cost_per_token=2e-6,
                ),
                Deployment(group="chat", model="m", id="two", api_base=up1.url, api_key=KEY_1),
            ],
            metrics=metrics,
            seed=11,
            health={"allowed_fails": 1},
        )
        async with router, await serve_metrics(registry) as server:
            assert server.host == "127.0.0.1"
            up0.push(Fault.rate_limit(retry_after=60))
            # Requests go on until one has reached "one": that attempt gets the 429,
            # "one" cools for 60 s and the request is retried on "two" at once.
            n = 0
            while not up0.received:
                assert n < 50
                await router.acompletion("chat", MSG)
                n += 1
            stream = await router.acompletion("chat", MSG, stream=True)
            async for _ in stream:
                pass
            async with (
                aiohttp.ClientSession() as http,
                http.get(server.url) as resp,
            ):
                assert resp.status == 200
                assert resp.headers["Content-Type"] == CONTENT_TYPE_LATEST
                text = await resp.text()

    assert KEY_0 not in text
    assert KEY_1 not in text
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    by = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in fams.values() for s in f.samples
    }

    def total(name: str, **want: str) -> float:
        return sum(
            v
            for (n, labels), v in by.items()
            if n == name and all(dict(labels).get(k) == w for k, w in want.items())
        )

    assert fams["interlock_requests"].type == "counter"
    assert fams["interlock_request_duration_seconds"].type == "histogram"
    assert fams["interlock_in_flight"].type == "gauge"
    # Exactly one 429 was scripted; every other attempt succeeded.
    assert total("interlock_requests_total", outcome="rate_limited") == 1
    assert total("interlock_requests_total", group="chat", deployment="one",
                 outcome="rate_limited") == 1  # fmt: skip
    assert total("interlock_cooldowns_total", deployment="one") == 1
    assert total("interlock_retries_total", group="chat") == 1
    ok = total("interlock_requests_total", outcome="success")
    assert ok == n + 1
    assert total("interlock_request_duration_seconds_count") == ok
    assert total("interlock_time_to_first_token_seconds_count", deployment="two") == 1
    assert total("interlock_tokens_total", direction="output") > 0
    assert total("interlock_in_flight") == 0
    assert total("interlock_deployment_healthy", deployment="one") == 0
    assert total("interlock_deployment_healthy", deployment="two") == 1
    assert total("interlock_hook_errors_total") == 0
