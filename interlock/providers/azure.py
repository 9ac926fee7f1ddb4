"""Azure OpenAI: OpenAI's wire format at a per-deployment URL.

``POST {endpoint}/openai/deployments/{deployment}/chat/completions?api-version=...``
(and ``/embeddings``) with an ``api-key`` header, or with
``Authorization: Bearer <Microsoft Entra ID token>`` when the deployment has an
`azure_ad_token_provider` (https://learn.microsoft.com/azure/ai-services/openai/reference).
The deployment name is the `Deployment.model`; the api-version is
`Deployment.api_version` (default below). Bodies, streams and error bodies are
OpenAI's, so everything else is inherited.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any, TypeVar
from urllib.parse import quote

from yarl import URL

from interlock.config import Deployment
from interlock.deadline import DeadlineWheel
from interlock.errors import AuthenticationError
from interlock.providers.credentials import (
    AzureIdentityTokenProvider,
    CredentialCache,
    TokenCaches,
    credential_within,
)
from interlock.providers.http import HttpClient
from interlock.providers.openai import OpenAIStream, OpenAITransport, _Endpoint
from interlock.types import ChatCompletion, EmbeddingResponse, Request

__all__ = ["DEFAULT_AZURE_API_VERSION", "AzureOpenAITransport"]

DEFAULT_AZURE_API_VERSION = "2024-10-21"

R = TypeVar("R")


class AzureOpenAITransport(OpenAITransport):
    """Speaks Azure OpenAI's HTTP API over the router's shared session."""

    provider = "azure"

    _plain_body = False  # the body carries no model (see `_payload`)

    def __init__(self, client: HttpClient, deadlines: DeadlineWheel | None = None) -> None:
        super().__init__(client, deadlines)
        self._tokens = TokenCaches()
        self._identity: AzureIdentityTokenProvider | None = None

    def _endpoint(self, d: Deployment, token: str | None = None) -> _Endpoint:
        ep = self._endpoints.get(d.id or "")
        if ep is None or token is not None or ep.deployment is not d:
            secret = token or d.api_key_value()
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            if token:
                headers["Authorization"] = f"Bearer {token}"
            elif secret:
                headers["api-key"] = secret
            headers.update(d.headers)
            base = f"{d.api_base}/openai/deployments/{quote(d.model, safe='')}"
            query = {"api-version": d.api_version or DEFAULT_AZURE_API_VERSION}
            ep = _Endpoint(
                URL(f"{base}/chat/completions", encoded=True).with_query(query),
                URL(f"{base}/embeddings", encoded=True).with_query(query),
                headers,
                secret,
                deployment=d,
            )
            self._endpoints[d.id or ""] = ep
        return ep

    def _payload(
        self, d: Deployment, head: dict[str, Any], params: dict[str, Any]
    ) -> dict[str, Any]:
        # The deployment in the URL picks the model; the body carries none.
        payload = super()._payload(d, head, params)
        payload.pop("model", None)
        return payload

    def _token_cache(self, d: Deployment) -> CredentialCache[str]:
        provider = d.azure_ad_token_provider
        if provider == "azure-identity":
            provider = self._identity = self._identity or AzureIdentityTokenProvider()
        assert callable(provider)
        return self._tokens.for_provider(provider, "the azure_ad_token_provider's token")

    async def _with_token(
        self, d: Deployment, timeout: float, send: Callable[[], Awaitable[R]]
    ) -> R:
        """`send` with the deployment's current Entra ID token in the cached endpoint; a
        401 drops the token, so the next attempt fetches a new one."""
        cache = self._token_cache(d)
        token = await credential_within(cache, d, timeout, self._deadlines)
        ep = self._endpoints.get(d.id or "")
        if ep is None or ep.secret != token or ep.deployment is not d:
            self._endpoint(d, token)
        try:
            # No await between storing the endpoint and `send` reading it.
            return await send()
        except AuthenticationError:
            cache.invalidate(token)
            raise

    # Not coroutine functions, as in `OpenAITransport`: with a key, the base class's
    # coroutine is returned as it is (no frame of ours on every resumption); with a
    # token provider, `_with_token`'s. `partial`, not a lambda: a lambda would make
    # the arguments closure cells on every call, key or token.
    def chat(
        self, d: Deployment, request: Request, timeout: float
    ) -> Coroutine[Any, Any, ChatCompletion]:
        if d.azure_ad_token_provider is None:
            return super().chat(d, request, timeout)
        return self._with_token(
            d, timeout, partial(OpenAITransport.chat, self, d, request, timeout)
        )

    def embed(
        self, d: Deployment, request: Request, timeout: float
    ) -> Coroutine[Any, Any, EmbeddingResponse]:
        if d.azure_ad_token_provider is None:
            return super().embed(d, request, timeout)
        return self._with_token(
            d, timeout, partial(OpenAITransport.embed, self, d, request, timeout)
        )

    def open_stream(
        self, d: Deployment, request: Request, timeout: float
    ) -> Coroutine[Any, Any, OpenAIStream]:
        if d.azure_ad_token_provider is None:
            return super().open_stream(d, request, timeout)
        return self._with_token(
            d, timeout, partial(OpenAITransport.open_stream, self, d, request, timeout)
        )

    async def aclose(self) -> None:
        self._tokens.close()
        await super().aclose()

    def __repr__(self) -> str:
        return f"AzureOpenAITransport(open={self._client.is_open})"
