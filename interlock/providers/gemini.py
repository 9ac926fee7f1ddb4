"""The Google Gemini transport (generativelanguage API): OpenAI-shaped requests in,
OpenAI-shaped completions, chunks and embeddings out.

Wire format (public API docs): ``POST {api_base}/models/{model}:generateContent``,
``:streamGenerateContent?alt=sse`` (SSE, each event a whole GenerateContentResponse,
no end marker) and ``:batchEmbedContents``; the key goes in the ``x-goog-api-key``
header, never the URL. Turns are ``contents`` of ``parts`` with roles ``user`` and
``model``. The body is built in `gemini_body`, responses and stream events read in
`gemini_parse`. A blocked prompt has ``promptFeedback.blockReason``; errors are
``{"error": {"code", "message", "status"}}`` (``RESOURCE_EXHAUSTED``, ...), also as
an SSE event mid-stream or in an HTTP 200 from a gateway.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson
from yarl import URL

from interlock.config import Deployment
from interlock.errors import (
    AccountError,
    AuthenticationError,
    InterlockError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
)
from interlock.providers.gemini_body import build_body, embedding_texts, model_path
from interlock.providers.gemini_parse import GeminiStream, parse_response
from interlock.providers.http import malformed
from interlock.providers.http_errors import error_from_response, parse_retry_after, scrub
from interlock.providers.native import PARSE_ERRORS, NativeStream, NativeTransport
from interlock.providers.params import merge_extra
from interlock.types import ChatCompletion, Embedding, EmbeddingResponse, Request

__all__ = [
    "GeminiStream",
    "GeminiTransport",
    "build_body",
    "gemini_error_details",
    "parse_response",
]

_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)s\s*$")


def gemini_error_details(raw: bytes) -> tuple[str, float | None, str]:
    """``(status, retry delay in seconds, reason)`` from a Google API error body."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "", None, ""
    err = data.get("error") if isinstance(data, dict) else None
    if not isinstance(err, dict):
        return "", None, ""
    delay: float | None = None
    reason = ""
    for detail in err.get("details") or ():
        if not isinstance(detail, dict):
            continue
        match = _DURATION.match(str(detail.get("retryDelay") or ""))
        if match:
            delay = float(match.group(1))
        reason = reason or str(detail.get("reason") or "")
    return str(err.get("status") or ""), delay, reason


class GeminiTransport(NativeTransport):
    """Speaks the Gemini API over the router's shared session."""

    provider = "gemini"

    def _headers(self, d: Deployment, key: str | None) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if key:
            headers["x-goog-api-key"] = key
        return headers

    def _error(
        self, d: Deployment, status: int, headers: Mapping[str, str], raw: bytes, secret: str | None
    ) -> InterlockError:
        err = error_from_response(
            status, headers, raw, provider="gemini", deployment_id=d.id or "", secret=secret
        )
        kind, delay, reason = gemini_error_details(raw)
        text = scrub(err.message, secret)
        kw: dict[str, Any] = {"status_code": status, "deployment_id": d.id}
        if kind == "RESOURCE_EXHAUSTED" or status == 429:
            hint = parse_retry_after(headers)
            return RateLimitError(text, retry_after=hint if hint is not None else delay, **kw)
        if kind == "UNAVAILABLE":
            return ServiceUnavailableError(text, retry_after=parse_retry_after(headers), **kw)
        if reason == "API_KEY_INVALID" or "api key not valid" in text.lower():
            return AuthenticationError(text, **kw)
        if kind == "UNAUTHENTICATED":
            return AuthenticationError(text, **kw)
        if kind == "PERMISSION_DENIED":
            return PermissionDeniedError(text, **kw)
        if kind == "FAILED_PRECONDITION":
            # Google's troubleshooting guide: the account cannot use the API as set up
            # (e.g. "Gemini API free tier is not available in your country. Please
            # enable billing on your project in Google AI Studio.").
            return AccountError(text, **kw)
        return err

    def _url(self, d: Deployment, method: str) -> URL:
        return URL(f"{self._endpoint(d).base}/{model_path(d.model)}:{method}", encoded=True)

    async def chat(self, d: Deployment, request: Request, timeout: float) -> ChatCompletion:
        ep = self._endpoint(d)
        body = build_body(d, request)
        url = self._url(d, "generateContent")
        data = await self._post(d, ep, url, body, timeout, request.params)
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            # An error body with HTTP 200 (from a gateway): mapped by its own code.
            code = data["error"].get("code")
            status = code if isinstance(code, int) and 400 <= code < 600 else 500
            raise self._error(d, status, {}, orjson.dumps(data), ep.secret)
        try:
            return parse_response(data, d)
        except PARSE_ERRORS as exc:
            err = malformed(d, exc)
        raise err  # off the chain: the parser's exception may quote the body

    async def open_stream(self, d: Deployment, request: Request, timeout: float) -> NativeStream:
        ep = self._endpoint(d)
        body = build_body(d, request)
        url = self._url(d, "streamGenerateContent").with_query(alt="sse")
        return await self._open(d, ep, url, body, timeout, GeminiStream, request.params)

    async def embed(self, d: Deployment, request: Request, timeout: float) -> EmbeddingResponse:
        items, params, extra = embedding_texts("gemini", d, request)
        model = model_path(d.model)
        requests = []
        for text in items:
            item: dict[str, Any] = {"model": model, "content": {"parts": [{"text": text}]}}
            if params.get("dimensions"):
                item["outputDimensionality"] = params["dimensions"]
            requests.append(merge_extra(item, extra, deep=True))
        ep = self._endpoint(d)
        data = await self._post(
            d, ep, self._url(d, "batchEmbedContents"), {"requests": requests}, timeout,
            request.params,
        )  # fmt: skip
        try:
            vectors = [
                Embedding(i, [float(v) for v in e["values"]])
                for i, e in enumerate(data["embeddings"])
            ]
        except PARSE_ERRORS as exc:
            err = malformed(d, exc)
        else:
            return EmbeddingResponse(
                data=vectors, model=d.model, usage=None, deployment_id=d.id or "", group=d.group
            )
        raise err  # off the chain: the parser's exception may quote the body
