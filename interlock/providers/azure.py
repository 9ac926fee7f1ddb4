"""Azure OpenAI: OpenAI's wire format at a per-deployment URL.

``POST {endpoint}/openai/deployments/{deployment}/chat/completions?api-version=...``
(and ``/embeddings``) with an ``api-key`` header. The deployment name is the
`Deployment.model`; the api-version is `Deployment.api_version` (default below).
Bodies, streams and error bodies are OpenAI's, so everything else is inherited.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from yarl import URL

from interlock.config import Deployment
from interlock.providers.openai import OpenAITransport, _Endpoint

__all__ = ["DEFAULT_AZURE_API_VERSION", "AzureOpenAITransport"]

DEFAULT_AZURE_API_VERSION = "2024-10-21"


class AzureOpenAITransport(OpenAITransport):
    """Speaks Azure OpenAI's HTTP API over the router's shared session."""

    provider = "azure"

    def _endpoint(self, d: Deployment) -> _Endpoint:
        ep = self._endpoints.get(d.id or "")
        if ep is None:
            key = d.api_key_value()
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            if key:
                headers["api-key"] = key
            headers.update(d.headers)
            base = f"{d.api_base}/openai/deployments/{quote(d.model, safe='')}"
            query = {"api-version": d.api_version or DEFAULT_AZURE_API_VERSION}
            ep = _Endpoint(
                URL(f"{base}/chat/completions", encoded=True).with_query(query),
                URL(f"{base}/embeddings", encoded=True).with_query(query),
                headers,
                key,
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

    def __repr__(self) -> str:
        return f"AzureOpenAITransport(open={self._client.is_open})"
