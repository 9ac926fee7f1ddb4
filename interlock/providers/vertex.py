"""Google Vertex AI: Gemini and Anthropic Claude models behind Google Cloud auth.

Wire format (Vertex AI REST reference,
https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/inference):
``POST {api_base}/v1/projects/{project}/locations/{location}/publishers/{publisher}/
models/{model}:{method}`` with ``Authorization: Bearer <OAuth access token>``.

- Gemini (publisher ``google``): ``:generateContent`` and
  ``:streamGenerateContent?alt=sse`` take and return exactly the Gemini API's bodies, so
  the Gemini transport's body builder, parser and stream are reused as they are.
  Embeddings use ``:predict`` with ``instances[].content``
  (https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/text-embeddings-api).
- Claude (publisher ``anthropic``, https://cloud.google.com/vertex-ai/generative-ai/docs/
  partner-models/claude/use-claude): ``:rawPredict`` and ``:streamRawPredict`` take the
  Anthropic Messages body without ``model`` (it is in the URL) and with
  ``"anthropic_version": "vertex-2023-10-16"``; answers and SSE streams are Anthropic's.

Errors come in Google's shape (``{"error": {"code", "message", "status"}}``) from the
platform (quota, auth) and in Anthropic's from the model (``overloaded_error``, ...);
both are mapped. Access tokens come from google-auth (``interlock[vertex]``):
application default credentials or the file in `Deployment.vertex_credentials`; they
are fetched in a worker thread and refreshed before they expire.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from yarl import URL

from interlock.config import Deployment
from interlock.deadline import DeadlineWheel
from interlock.errors import AuthenticationError, BadRequestError, InterlockError
from interlock.providers import anthropic, gemini
from interlock.providers.anthropic import AnthropicStream, AnthropicTransport
from interlock.providers.credentials import (
    CredentialCache,
    Lease,
    credential_within,
    require,
    timed_lease,
)
from interlock.providers.gemini import GeminiStream, GeminiTransport, gemini_error_details
from interlock.providers.gemini_body import embedding_texts
from interlock.providers.http import HttpClient, malformed
from interlock.providers.native import PARSE_ERRORS, Endpoint, NativeStream, NativeTransport
from interlock.providers.params import merge_extra
from interlock.types import ChatCompletion, Embedding, EmbeddingResponse, Request, Usage

__all__ = [
    "CLOUD_PLATFORM_SCOPE",
    "VERTEX_ANTHROPIC_VERSION",
    "VertexTransport",
    "google_fetcher",
    "load_google_credentials",
]

VERTEX_ANTHROPIC_VERSION = "vertex-2023-10-16"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def load_google_credentials(path: str | None) -> Any:
    """google-auth credentials scoped for Vertex AI: application default credentials
    when `path` is None, else the service-account or authorized-user file at `path`
    (the two kinds google-auth can load from a file without trusting its contents to
    name other endpoints and commands)."""
    if path is None:
        google_auth = require("google.auth", "vertex")
        credentials, _ = google_auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
        return credentials
    with open(path, encoding="utf-8") as f:
        kind = json.load(f).get("type")
    if kind == "service_account":
        service_account = require("google.oauth2.service_account", "vertex")
        return service_account.Credentials.from_service_account_file(
            path, scopes=[CLOUD_PLATFORM_SCOPE]
        )
    if kind == "authorized_user":
        user = require("google.oauth2.credentials", "vertex")
        return user.Credentials.from_authorized_user_file(path, scopes=[CLOUD_PLATFORM_SCOPE])
    raise ValueError(
        f"credentials of type {kind!r} are not loaded from vertex_credentials; point "
        "GOOGLE_APPLICATION_CREDENTIALS at the file and leave vertex_credentials unset"
    )


def google_fetcher(path: str | None) -> Callable[[], Any]:
    """A `CredentialCache` fetch of OAuth access tokens with google-auth: from the
    credentials file at `path`, or application default credentials when None. The
    credentials are loaded once; each fetch refreshes them in a worker thread (google-auth
    is synchronous)."""
    state: dict[str, Any] = {}

    def refresh() -> tuple[str, float | None]:
        if "credentials" not in state:
            transport = require("google.auth.transport.requests", "vertex")
            state["credentials"] = load_google_credentials(path)
            state["request"] = transport.Request()
        credentials = state["credentials"]
        credentials.refresh(state["request"])
        expiry = credentials.expiry  # google-auth keeps it as a naive UTC datetime
        at = expiry.replace(tzinfo=dt.UTC).timestamp() if expiry is not None else None
        return str(credentials.token), at

    async def fetch() -> Lease[str]:
        token, expires_at = await asyncio.to_thread(refresh)
        return timed_lease(token, expires_at, time.time)

    return fetch


def is_claude(d: Deployment) -> bool:
    """Claude models are Anthropic's publisher on Vertex; everything else is Google's."""
    return d.model.startswith("claude")


def _model_base(d: Deployment) -> str:
    publisher = "anthropic" if is_claude(d) else "google"
    # Vertex model ids may carry a version after "@" (claude-sonnet-4@20250514).
    model = quote(d.model, safe="@")
    return (
        f"{d.api_base}/v1/projects/{d.vertex_project}/locations/{d.vertex_location}"
        f"/publishers/{publisher}/models/{model}"
    )


def claude_body(d: Deployment, request: Request, stream: bool) -> dict[str, Any]:
    """The Messages body the Anthropic transport builds, in Vertex's form."""
    body = anthropic.build_body(d, request, stream)
    body.pop("model", None)
    body["anthropic_version"] = VERTEX_ANTHROPIC_VERSION
    return body


def _renamed(err: InterlockError) -> InterlockError:
    # The reused mappers name their own provider; the caller configured "vertex".
    for name in ("gemini", "anthropic"):
        prefix = f"{name} returned"
        if err.message.startswith(prefix):
            err.message = "vertex returned" + err.message[len(prefix) :]
            err.args = (err.message,)
            break
    return err


class VertexTransport(NativeTransport):
    """Speaks Vertex AI (Gemini and Claude models) over the router's shared session."""

    provider = "vertex"

    def __init__(self, client: HttpClient, deadlines: DeadlineWheel | None = None) -> None:
        super().__init__(client, deadlines)
        # Only their error mappings are used: the bodies are the same as theirs.
        self._gemini = GeminiTransport(client, self._deadlines)
        self._claude = AnthropicTransport(client, self._deadlines)
        self._tokens: dict[str | None, CredentialCache[str]] = {}

    def _token_cache(self, d: Deployment) -> CredentialCache[str]:
        path = d.vertex_credentials
        cache = self._tokens.get(path)
        if cache is None:
            what = f"vertex credentials ({path or 'application default credentials'})"
            cache = self._tokens[path] = CredentialCache(what, google_fetcher(path))
        return cache

    async def _authorized(self, d: Deployment, timeout: float) -> Endpoint:
        token = await credential_within(self._token_cache(d), d, timeout, self._deadlines)
        ep = self._endpoints.get(d.id or "")
        if ep is None or ep.secret != token or ep.deployment is not d:
            headers = {
                "Content-Type": "application/json",
                "Accept": "application/json",
                "Authorization": f"Bearer {token}",
                **d.headers,
            }
            ep = self._endpoints[d.id or ""] = Endpoint(_model_base(d), headers, token, d)
        return ep

    def _error(
        self, d: Deployment, status: int, headers: Mapping[str, str], raw: bytes, secret: str | None
    ) -> InterlockError:
        google_shaped = bool(gemini_error_details(raw)[0])
        mapper = self._claude if is_claude(d) and not google_shaped else self._gemini
        err = _renamed(mapper._error(d, status, headers, raw, secret))
        if isinstance(err, AuthenticationError):
            # The token was refused (revoked, or expired early): the next attempt gets a
            # new one instead of sending it again.
            self._token_cache(d).invalidate(secret)
        return err

    @staticmethod
    def _url(ep: Endpoint, method: str) -> URL:
        return URL(f"{ep.base}:{method}", encoded=True)

    async def chat(self, d: Deployment, request: Request, timeout: float) -> ChatCompletion:
        ep = await self._authorized(d, timeout)
        if is_claude(d):
            body = claude_body(d, request, stream=False)
            url = self._url(ep, "rawPredict")
            data = await self._post(d, ep, url, body, timeout, request.params)
            parse = anthropic.parse_message
        else:
            body = gemini.build_body(d, request)
            url = self._url(ep, "generateContent")
            data = await self._post(d, ep, url, body, timeout, request.params)
            parse = gemini.parse_response
        try:
            return parse(data, d)
        except PARSE_ERRORS as exc:
            err = malformed(d, exc)
        raise err  # off the chain: the parser's exception may quote the body

    async def open_stream(self, d: Deployment, request: Request, timeout: float) -> NativeStream:
        ep = await self._authorized(d, timeout)
        if is_claude(d):
            body = claude_body(d, request, stream=True)
            url = self._url(ep, "streamRawPredict")
            return await self._open(d, ep, url, body, timeout, AnthropicStream, request.params)
        url = self._url(ep, "streamGenerateContent").with_query(alt="sse")
        body = gemini.build_body(d, request)
        return await self._open(d, ep, url, body, timeout, GeminiStream, request.params)

    async def embed(self, d: Deployment, request: Request, timeout: float) -> EmbeddingResponse:
        if is_claude(d):
            raise BadRequestError(
                "Claude has no embeddings API; use a Vertex text-embedding model",
                deployment_id=d.id,
            )
        body = _embedding_body(d, request)
        ep = await self._authorized(d, timeout)
        data = await self._post(d, ep, self._url(ep, "predict"), body, timeout, request.params)
        try:
            return _parse_embeddings(data, d)
        except PARSE_ERRORS as exc:
            err = malformed(d, exc)
        raise err  # off the chain: the parser's exception may quote the body

    async def aclose(self) -> None:
        for cache in self._tokens.values():
            cache.close()
        await super().aclose()


def _embedding_body(d: Deployment, request: Request) -> dict[str, Any]:
    items, params, extra = embedding_texts("vertex", d, request)
    # extra_body goes into each instance, as for Gemini (task_type, title).
    body: dict[str, Any] = {"instances": [merge_extra({"content": t}, extra, deep=True)
                                          for t in items]}  # fmt: skip
    if params.get("dimensions"):
        body["parameters"] = {"outputDimensionality": params["dimensions"]}
    return body


def _parse_embeddings(data: Any, d: Deployment) -> EmbeddingResponse:
    vectors: list[Embedding] = []
    tokens = 0
    for i, p in enumerate(data["predictions"]):
        e = p["embeddings"]
        vectors.append(Embedding(i, [float(v) for v in e["values"]]))
        tokens += int((e.get("statistics") or {}).get("token_count") or 0)
    usage = Usage(tokens, 0, tokens) if tokens else None
    return EmbeddingResponse(
        data=vectors, model=d.model, usage=usage, deployment_id=d.id or "", group=d.group
    )
