"""Cloud deployments side by side with public APIs: one group mixing OpenAI,
Bedrock-Claude and Vertex-Claude fails over between them, and short-lived tokens are
refreshed under load without a single request failing.

Wire shapes as in test_bedrock.py, test_vertex.py (references there) and
https://platform.openai.com/docs/api-reference/chat/create.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from interlock import Deployment, HealthPolicy, RetryPolicy, Router
from interlock.testing import FakeBedrock, FakeUpstream, FakeVertex, Fault
from interlock.testing.fake_bedrock import TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY

USER = [{"role": "user", "content": "hi"}]
KEY = "sk-openai-secret-123"


def deployments(openai: FakeUpstream, bedrock: FakeBedrock, vertex: FakeVertex, sa: Path) -> list[
    Deployment
]:  # fmt: skip
    return [
        Deployment(group="claude", id="openai", provider="openai", model="gpt-4o",
                   api_base=openai.url, api_key=KEY),
        Deployment(group="claude", id="bedrock", provider="bedrock",
                   model="anthropic.claude-3-5-sonnet-20240620-v1:0", api_base=bedrock.url,
                   aws_region="us-east-1", aws_access_key_id=TEST_ACCESS_KEY_ID,
                   aws_secret_access_key=TEST_SECRET_ACCESS_KEY),
        Deployment(group="claude", id="vertex", provider="vertex",
                   model="claude-sonnet-4@20250514", api_base=vertex.url,
                   vertex_project="p", vertex_location="us-east5", vertex_credentials=str(sa)),
    ]  # fmt: skip


async def served_by(router: Router, stream: bool) -> str:
    if stream:
        s = await router.acompletion(model="claude", messages=USER, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in s if c.choices])
        assert text == "Hello from FakeUpstream."
        return str(s.deployment_id)
    r = await router.acompletion(model="claude", messages=USER)
    assert r.choices[0].message.content == "Hello from FakeUpstream."
    return r.deployment_id


@pytest.mark.parametrize("stream", [False, True])
async def test_a_mixed_group_fails_over_across_clouds(tmp_path: Path, stream: bool) -> None:
    async with (
        FakeUpstream(api_key=KEY) as openai,
        FakeBedrock() as bedrock,
        FakeVertex() as vertex,
    ):
        sa = vertex.service_account(tmp_path / "sa.json")
        router = Router(
            deployments(openai, bedrock, vertex, sa),
            retry=RetryPolicy(max_attempts=3, max_wait=0), seed=5,
            # Bedrock's ThrottlingException carries no Retry-After: the default applies.
            health=HealthPolicy(rate_limit_cooldown=0.2),
        )  # fmt: skip
        async with router:
            # OpenAI is down and Bedrock throttles: Vertex serves everything.
            openai.always(Fault.status(503))
            bedrock.always(Fault.rate_limit())
            assert {await served_by(router, stream) for _ in range(4)} == {"vertex"}
            # Vertex goes down too, Bedrock recovers: once its rate-limit cooldown is
            # over, Bedrock takes over.
            vertex.always(Fault.status(503))
            bedrock.clear()
            await asyncio.sleep(0.3)
            served = {await served_by(router, stream) for _ in range(4)}
            stats = {s.id: s for s in router.statistics().deployments}
        assert served == {"bedrock"}
        assert stats["openai"].failures >= 1
        assert stats["vertex"].successes == 4
        assert stats["vertex"].failures >= 1
        assert stats["bedrock"].successes == 4
        assert bedrock.signatures_rejected == 0
        assert vertex.tokens_rejected == 0


async def test_tokens_are_refreshed_under_load_and_no_request_fails(tmp_path: Path) -> None:
    # Tokens live two seconds; 24 workers send for three seconds. Every token is
    # replaced in the background before it expires: the fake never sees an expired one.
    async with FakeVertex(token_ttl=2, stream_chunks=1) as vertex:
        sa = vertex.service_account(tmp_path / "sa.json")
        d = Deployment(group="g", provider="vertex", model="gemini-2.0-flash",
                       api_base=vertex.url, vertex_project="p", vertex_location="global",
                       vertex_credentials=str(sa))  # fmt: skip
        results: list[Any] = []
        async with Router([d], retry=RetryPolicy(max_attempts=1, max_wait=0)) as router:
            stop_at = time.monotonic() + 3.0

            async def worker() -> None:
                while time.monotonic() < stop_at:
                    results.append(await router.acompletion(model="g", messages=USER))

            await asyncio.gather(*(worker() for _ in range(24)))
    assert len(results) > 100
    assert vertex.tokens_rejected == 0
    assert vertex.tokens_issued >= 2
    assert all(r.status == 200 for r in vertex.received if r.path != "/token")
    # One token endpoint call per refresh, never one per request.
    assert vertex.tokens_issued <= 6
