"""The Anthropic Messages API transport: OpenAI-shaped requests in, OpenAI-shaped
completions and chunks out.

Wire format (public API docs): ``POST {api_base}/messages`` with ``x-api-key`` and
``anthropic-version`` headers; a system prompt is a top-level field, ``max_tokens`` is
required. The body is built in `anthropic_body`, responses and stream events read in
`anthropic_parse`. Errors are ``{"type": "error", "error": {"type", "message"}}``
(sometimes with HTTP 200, from gateways); 529 is ``overloaded_error``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson
from yarl import URL

from interlock.config import Deployment
from interlock.errors import (
    AccountError,
    BadRequestError,
    ContentPolicyViolationError,
    InterlockError,
    RateLimitError,
    ServiceUnavailableError,
)
from interlock.providers.anthropic_body import build_body
from interlock.providers.anthropic_parse import AnthropicStream, parse_message
from interlock.providers.http import malformed
from interlock.providers.http_errors import (
    error_body_fields,
    error_from_response,
    parse_retry_after,
)
from interlock.providers.native import PARSE_ERRORS, NativeStream, NativeTransport
from interlock.types import ChatCompletion, EmbeddingResponse, Request

__all__ = [
    "DEFAULT_ANTHROPIC_VERSION",
    "AnthropicStream",
    "AnthropicTransport",
    "anthropic_retry_after",
    "build_body",
    "parse_message",
]

DEFAULT_ANTHROPIC_VERSION = "2023-06-01"
"""Still the current version: thinking, structured output (``output_config``) and
server tools need no other (betas are ``anthropic-beta`` headers: `Deployment.headers`)."""

_STATUS_OF_TYPE = {"invalid_request_error": 400, "authentication_error": 401,
                   "permission_error": 403, "not_found_error": 404, "request_too_large": 413,
                   "rate_limit_error": 429, "api_error": 500, "overloaded_error": 529}  # fmt: skip
"""The HTTP status each error type is documented with
(https://docs.anthropic.com/en/api/errors), for an error that came in a 200."""


def anthropic_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait: ``retry-after`` if sent, else the latest reset (RFC 3339) among
    the ``anthropic-ratelimit-*`` limits that are used up (or, if none says so, the
    earliest reset)."""
    hint = parse_retry_after(headers)
    if hint is not None:
        return hint
    now = time.time() if now is None else now
    exhausted: list[float] = []
    resets: list[float] = []
    for kind in ("requests", "tokens", "input-tokens", "output-tokens"):
        value = headers.get(f"anthropic-ratelimit-{kind}-reset")
        if not value:
            continue
        try:
            at = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            continue
        resets.append(at)
        if headers.get(f"anthropic-ratelimit-{kind}-remaining") == "0":
            exhausted.append(at)
    chosen = max(exhausted) if exhausted else min(resets) if resets else None
    return None if chosen is None else max(0.0, chosen - now)


class AnthropicTransport(NativeTransport):
    """Speaks Anthropic's Messages API over the router's shared session."""

    provider = "anthropic"

    def _headers(self, d: Deployment, key: str | None) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "anthropic-version": d.api_version or DEFAULT_ANTHROPIC_VERSION,
        }
        if key:
            headers["x-api-key"] = key
        return headers

    def _error(
        self, d: Deployment, status: int, headers: Mapping[str, str], raw: bytes, secret: str | None
    ) -> InterlockError:
        err = error_from_response(
            status, headers, raw, provider="anthropic", deployment_id=d.id or "", secret=secret
        )
        _, etype, _ = error_body_fields(raw)
        if status == 429 or etype == "rate_limit_error":
            return RateLimitError(
                err.message, status_code=status, deployment_id=d.id,
                retry_after=anthropic_retry_after(headers),
            )  # fmt: skip
        if etype == "billing_error" and not isinstance(err, AccountError):
            return AccountError(err.message, status_code=status, deployment_id=d.id)
        if etype == "overloaded_error" and not isinstance(err, ServiceUnavailableError):
            return ServiceUnavailableError(
                err.message, status_code=status, deployment_id=d.id,
                retry_after=parse_retry_after(headers),
            )  # fmt: skip
        if "content filtering policy" in err.message.lower():
            return ContentPolicyViolationError(err.message, status_code=status, deployment_id=d.id)
        return err

    def _url(self, d: Deployment) -> URL:
        return URL(f"{self._endpoint(d).base}/messages", encoded=True)

    async def chat(self, d: Deployment, request: Request, timeout: float) -> ChatCompletion:
        ep = self._endpoint(d)
        body = build_body(d, request, stream=False)
        data = await self._post(d, ep, self._url(d), body, timeout, request.params)
        if isinstance(data, dict) and data.get("type") == "error":
            raise self._error_body(d, data, ep.secret)
        try:
            return parse_message(data, d)
        except PARSE_ERRORS as exc:
            err = malformed(d, exc)
        raise err  # off the chain: the parser's exception may quote the body

    def _error_body(
        self, d: Deployment, data: dict[str, Any], secret: str | None
    ) -> InterlockError:
        """An error sent with HTTP 200 (some gateways do), mapped by its type as if it
        had come with the status that type is documented with."""
        etype = str((data.get("error") or {}).get("type") or "")
        status = _STATUS_OF_TYPE.get(etype, 500)
        return self._error(d, status, {}, orjson.dumps(data), secret)

    async def open_stream(self, d: Deployment, request: Request, timeout: float) -> NativeStream:
        ep = self._endpoint(d)
        body = build_body(d, request, stream=True)
        return await self._open(d, ep, self._url(d), body, timeout, AnthropicStream, request.params)

    async def embed(self, d: Deployment, request: Request, timeout: float) -> EmbeddingResponse:
        raise BadRequestError(
            "anthropic has no embeddings API; route embeddings to an openai, azure or "
            "gemini deployment",
            deployment_id=d.id,
        )
