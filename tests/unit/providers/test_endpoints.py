"""Where the endpoint client sends each request, with which credentials, and which
provider serves which endpoint."""

from __future__ import annotations

import pytest

from interlock import Deployment
from interlock.deadline import DeadlineWheel
from interlock.presets import PRESETS
from interlock.providers import HttpClient, OpenAITransport
from interlock.providers.endpoints import (
    SUPPORT,
    EndpointClient,
    clean_headers,
    supported,
    wire_of,
)

KEY = "sk-unit-endpoints-8Rt3Zq"


def client() -> EndpointClient:
    return EndpointClient(HttpClient(), DeadlineWheel())


def test_every_builtin_provider_has_a_row() -> None:
    assert set(SUPPORT) == set(PRESETS)


def test_support_by_provider() -> None:
    openai = Deployment(group="g", provider="openai", model="m", api_key=KEY)
    assert "moderation" in supported(openai, None)
    assert "rerank" not in supported(openai, None)
    vllm = Deployment(group="g", provider="vllm", model="m")
    assert "rerank" in supported(vllm, None)
    bedrock = Deployment(group="g", provider="bedrock", model="m", aws_region="us-east-1")
    assert supported(bedrock, None) == frozenset()


def test_a_provider_of_ones_own_on_the_openai_transport_gets_every_endpoint() -> None:
    d = Deployment(group="g", provider="jina", model="jina-reranker-v2", api_key=KEY,
                   api_base="https://api.jina.ai/v1")  # fmt: skip
    transport = OpenAITransport(HttpClient())
    assert wire_of(d, transport) == "openai"
    assert "rerank" in supported(d, transport)
    assert supported(d, object()) == frozenset()


def test_openai_urls_and_bearer_key() -> None:
    d = Deployment(group="g", provider="openai", model="m", api_key=KEY, id="d",
                   api_base="http://127.0.0.1:9/v1")  # fmt: skip
    c = client()
    assert str(c.url(d, "openai", "/audio/speech")) == "http://127.0.0.1:9/v1/audio/speech"
    assert str(c.url(d, "openai", "files?limit=2")) == "http://127.0.0.1:9/v1/files?limit=2"
    assert c._target(d, "openai").headers["Authorization"] == f"Bearer {KEY}"
    assert KEY not in repr(c._target(d, "openai"))


def test_azure_urls_carry_the_deployment_and_api_version() -> None:
    # https://learn.microsoft.com/azure/ai-services/openai/reference (the URL and api-key)
    d = Deployment(
        group="g",
        provider="azure",
        model="my dalle",
        api_key=KEY,
        id="az",
        api_base="https://res.openai.azure.com",
        api_version="2025-04-01-preview",
    )
    c = client()
    url = c.url(d, "azure", "images/generations")
    assert str(url) == (
        "https://res.openai.azure.com/openai/deployments/my%20dalle/images/generations"
        "?api-version=2025-04-01-preview"
    )
    assert c._target(d, "azure").headers["api-key"] == KEY
    # A query of the caller's own is kept as given.
    assert c.url(d, "azure", "x?api-version=1").query_string == "api-version=1"


@pytest.mark.parametrize(
    ("provider", "header", "value"),
    [("anthropic", "x-api-key", KEY), ("gemini", "x-goog-api-key", KEY)],
)
def test_native_credentials_for_the_passthrough(provider: str, header: str, value: str) -> None:
    d = Deployment(group="g", provider=provider, model="m", api_key=KEY, id=provider)
    headers = client()._target(d, provider).headers
    assert headers[header] == value
    assert "Authorization" not in headers


def test_clean_headers_drops_what_aiohttp_sets() -> None:
    got = clean_headers({"Host": "evil", "Content-Length": "9", "X-Trace": "1"})
    assert got == {"X-Trace": "1"}
    assert clean_headers(None) == {}


def test_azure_with_an_entra_id_token_provider_serves_none_of_them() -> None:
    d = Deployment(
        group="g",
        provider="azure",
        model="m",
        api_base="https://res.openai.azure.com",
        azure_ad_token_provider=lambda: "token",
    )
    assert supported(d, None) == frozenset()
