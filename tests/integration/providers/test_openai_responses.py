"""The Responses API over Azure OpenAI (FakeAzure): the v1 path by default, the
preview path for a ``-preview`` api-version, keys and Entra ID tokens, and the
deployment name as the body's model.

Paths and bodies: https://learn.microsoft.com/azure/ai-foundry/openai/how-to/responses
(v1: ``POST {endpoint}/openai/v1/responses``; preview:
``POST {endpoint}/openai/responses?api-version=2025-04-01-preview``), and the body of
https://platform.openai.com/docs/api-reference/responses/create.
"""

from __future__ import annotations

from typing import Any

import pytest

from interlock import Deployment, DeploymentNotFoundError, RetryPolicy, Router
from interlock.testing import FakeAzure
from tests.sdk_contract_responses import (
    openai_response,
    openai_response_event,
    openai_responses_request,
)

KEY = "azure-key-0123456789abcdef"
TOKEN = "eyJ-entra-secret-token-AAAA"


def azure(url: str, **kw: Any) -> Deployment:
    kw.setdefault("api_key", KEY)
    return Deployment(group="g", provider="azure", model="gpt-4o-dep", api_base=url, **kw)


async def test_v1_path_without_api_version_and_with_the_key_header() -> None:
    async with FakeAzure(api_key=KEY, deployments=frozenset({"gpt-4o-dep"})) as up:
        async with Router([azure(up.url)]) as router:
            r = await router.aresponses("g", "hi", temperature=0.2)
            assert r.output_text.startswith("Hello")
            openai_response(r.to_dict())
            stream = await router.aresponses("g", "hi", stream=True)
            async for event in stream:
                openai_response_event(event.to_dict())
        for sent in up.received:
            assert sent.path == "/openai/v1/responses"
            assert sent.headers.get("api-key") == KEY
            assert sent.body is not None
            assert sent.body["model"] == "gpt-4o-dep"
            openai_responses_request(sent.body)
            assert sent.status == 200


async def test_preview_api_version_uses_the_preview_path() -> None:
    async with FakeAzure(api_key=KEY) as up:
        version = "2025-04-01-preview"
        async with Router([azure(up.url, api_version=version)]) as router:
            await router.aresponses("g", "hi")
        (sent,) = up.received
        assert sent.path == "/openai/responses"
        assert sent.status == 200


async def test_entra_id_token_is_sent_as_a_bearer_token() -> None:
    async with FakeAzure(api_key=TOKEN) as up:
        d = azure(up.url, api_key=None, azure_ad_token_provider=lambda: TOKEN)
        async with Router([d]) as router:
            r = await router.aresponses("g", "hi")
            stream = await router.aresponses("g", "hi", stream=True, previous_response_id=r.id)
            assert [e.type async for e in stream][-1] == "response.completed"
        assert [x.status for x in up.received] == [200, 200]
        assert all(x.api_key == TOKEN for x in up.received)


async def test_an_unknown_azure_deployment_is_the_deployments_fault() -> None:
    async with FakeAzure(api_key=KEY, deployments=frozenset({"other"})) as up:
        one_try = RetryPolicy(max_attempts=1, max_wait=0)
        async with Router([azure(up.url)], retry=one_try) as router:
            with pytest.raises(DeploymentNotFoundError, match="DeploymentNotFound"):
                await router.aresponses("g", "hi")
