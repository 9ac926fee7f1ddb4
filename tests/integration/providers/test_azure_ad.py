"""Azure OpenAI with Microsoft Entra ID tokens instead of keys, over a real Router."""

from __future__ import annotations

import asyncio
import logging
import traceback
from typing import Any, NamedTuple

import pytest

from interlock import AuthenticationError, Deployment, InterlockError, RetryPolicy, Router
from interlock.errors import ConfigError
from interlock.providers.credentials import AzureIdentityTokenProvider
from interlock.testing import FakeAzure, Fault
from interlock.types import Request

TOKEN = "eyJ-entra-secret-token-AAAA"
USER = [{"role": "user", "content": "hi"}]
ONE_TRY = RetryPolicy(max_attempts=1, max_wait=0)


def azure(url: str, provider: Any, **kw: Any) -> Deployment:
    return Deployment(
        group="g", provider="azure", model="dep", api_base=url,
        azure_ad_token_provider=provider, **kw,
    )  # fmt: skip


class AccessToken(NamedTuple):
    token: str
    expires_on: int


async def test_sync_and_async_providers_send_a_bearer_token() -> None:
    calls: list[str] = []

    def sync_provider() -> str:
        calls.append("sync")
        return TOKEN

    async def async_provider() -> AccessToken:
        calls.append("async")
        return AccessToken(TOKEN, 4_000_000_000)

    async with FakeAzure(api_key=TOKEN) as up:
        for provider in (sync_provider, async_provider):
            async with Router([azure(up.url, provider)], retry=ONE_TRY) as router:
                r = await router.acompletion(model="g", messages=USER)
                stream = await router.acompletion(model="g", messages=USER, stream=True)
                async for _ in stream:
                    pass
                e = await router.aembedding(model="g", input="hi")
            assert r.choices[0].message.content
            assert len(e.data) == 1
        seen = up.received[-1]
        assert seen.headers["Authorization"] == f"Bearer {TOKEN}"
        assert "api-key" not in seen.headers
    assert calls == ["sync", "async"]  # fetched once per router, then cached


async def test_a_refused_token_is_dropped_and_the_next_attempt_fetches_anew() -> None:
    tokens = iter(["stale-token-1", TOKEN])

    def provider() -> str:
        return next(tokens)

    async with FakeAzure(api_key=TOKEN) as up:
        async with Router([azure(up.url, provider)], retry=ONE_TRY) as router:
            transport = router.parts.transports["azure"]
            d = router.deployments[0]
            request = Request(kind="chat", group="g", messages=USER)
            with pytest.raises(AuthenticationError):
                await transport.chat(d, request, 5.0)
            r = await transport.chat(d, request, 5.0)
        assert r.choices[0].message.content
        assert [x.api_key for x in up.received] == ["stale-token-1", TOKEN]


async def test_failing_provider_is_an_authentication_error_and_never_leaks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)

    def broken() -> str:
        raise RuntimeError("msal: AADSTS7000215 invalid client secret")

    async with FakeAzure(api_key=TOKEN) as up:
        up.always(Fault.status(500, f"oops {TOKEN}"))
        deployments = [azure(up.url, broken), azure(up.url, lambda: TOKEN, id="good")]
        async with Router(deployments, retry=RetryPolicy(max_attempts=2)) as router:
            with pytest.raises(InterlockError) as info:
                await router.acompletion(model="g", messages=USER)
            texts = [str(info.value), repr(info.value), "".join(
                traceback.format_exception(info.value))]  # fmt: skip
            texts += [repr(a) for a in info.value.attempts]
            texts += [repr(router), repr(router.deployments), repr(router.statistics())]
        errors = {a.deployment_id: a.error for a in info.value.attempts}
        assert errors["g-0"].startswith("AuthenticationError")
        assert "RuntimeError" in errors["g-0"]
        assert "[redacted]" in errors["good"]
        assert up.received[-1].api_key == TOKEN
        texts += [rec.getMessage() for rec in caplog.records]
        for text in texts:
            assert TOKEN not in text


async def test_azure_identity_provider_with_a_credential_object() -> None:
    class Credential:
        def get_token(self, *scopes: str) -> AccessToken:
            assert scopes == ("https://cognitiveservices.azure.com/.default",)
            return AccessToken(TOKEN, 4_000_000_000)

    async with FakeAzure(api_key=TOKEN) as up:
        provider = AzureIdentityTokenProvider(Credential())
        async with Router([azure(up.url, provider)], retry=ONE_TRY) as router:
            results = await asyncio.gather(
                *(router.acompletion(model="g", messages=USER) for _ in range(20))
            )
        assert len(results) == 20


def test_token_provider_config_rules() -> None:
    d = azure("https://r.openai.azure.com", "azure-identity")
    assert d.azure_ad_token_provider == "azure-identity"
    assert "azure_ad_token_provider" not in d.model_dump()
    with pytest.raises(ConfigError, match="not both"):
        azure("https://r.openai.azure.com", lambda: TOKEN, api_key="k")
    with pytest.raises(ConfigError, match="only for provider 'azure'"):
        Deployment(group="g", model="m", azure_ad_token_provider=lambda: TOKEN)
    with pytest.raises(ConfigError):
        azure("https://r.openai.azure.com", "something-else")
