"""What an upstream's error response means: its status code and body (OpenAI's
shape, or the raw text) mapped onto interlock's error tree, whose fault it is (the
deployment's or the request's), Retry-After, and keeping keys out of the messages.
The table this implements is in docs/resilience.md ("Failure classification")."""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping
from typing import Any

import orjson

from interlock.errors import (
    AccountError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ContentPolicyViolationError,
    ContextWindowExceededError,
    DeploymentNotFoundError,
    InterlockError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
)
from interlock.errors import scrub as scrub_secret

__all__ = [
    "deployment_fault",
    "error_body_fields",
    "error_from_response",
    "parse_retry_after",
    "scrub",
]


def scrub(text: str, secret: str | None) -> str:
    """`text` (from an upstream) with `secret` removed; keys shorter than
    `MIN_SECRET_LENGTH` are left alone (see `interlock.errors.scrub`)."""
    return scrub_secret(text, secret)


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, ``Retry-After`` (seconds or HTTP-date);
    None when absent or not a finite number (``nan`` and ``inf`` parse as floats)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            seconds = float(ms) / 1000.0
        except ValueError:
            seconds = math.nan
        if math.isfinite(seconds):
            return max(0.0, seconds)
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


# Lower-cased substrings of an error's code, type or message. The provider messages
# each one was taken from are quoted in docs/resilience.md ("Failure classification").
_CONTEXT_MARKERS = (
    "context_length_exceeded",  # the code of OpenAI, Azure OpenAI, Groq
    "maximum context length",  # OpenAI, Azure OpenAI, vLLM, sglang, Mistral
    "context window",  # OpenAI: "Your input exceeds the context window of this model."
    "exceed the configured limit",  # OpenAI: "Input tokens exceed the configured limit ..."
    "reduce the length of the messages",  # Groq, OpenAI
    "too many tokens",
    "prompt is too long",  # Anthropic: "prompt is too long: 208310 tokens > 200000 maximum"
    "exceed context limit",  # Anthropic: "input length and `max_tokens` exceed context limit"
    "exceeds the maximum number of tokens",  # Gemini: "The input token count (...) exceeds ..."
    "longer than the model's context length",  # sglang: "The input (N tokens) is longer ..."
    "longer than the maximum model length",  # vLLM: "The decoder prompt (length N) is ..."
    "longer than the context length",  # Ollama: "the prompt is longer than the context ..."
    "exceeds the context length",  # Ollama: "the input length exceeds the context length"
)
_POLICY_MARKERS = (
    "content_policy_violation",
    "content_filter",
    "content management policy",
    "safety system",
)
# The deployment's account cannot pay (any 4xx status).
_ACCOUNT_MARKERS = (
    "credit balance",  # Anthropic: "Your credit balance is too low to access the ..."
    "billing",  # Anthropic "billing_error"; Gemini "Please enable billing on your project"
    "insufficient_quota",  # OpenAI's code: "You exceeded your current quota, ..."
    "quota exceeded",
)
# The provider does not know the model or deployment: with "model" or "deployment" in
# the body, a 404 or 400 is the deployment's (its configuration names them).
_MISSING_MARKERS = (
    "not found",  # Ollama "model 'x' not found"; Gemini "models/x is not found for ..."
    "not_found",  # Anthropic "not_found_error"; OpenAI's code "model_not_found"
    "does not exist",  # OpenAI, vLLM "The model `x` does not exist", Azure
    "deploymentnotfound",  # Azure's code
    "operationnotsupported",  # Azure: "The chatCompletion operation does not work with ..."
)
# A bad key answered with a 400: Gemini's OpenAI-compatible endpoint says "Please pass
# a valid API key" (INVALID_ARGUMENT), its native API "API key not valid. ...".
_KEY_MARKERS = ("valid api key", "api key not valid")
# A 404 for the path itself (nothing named): the deployment's URL is wrong. Go's
# default "404 page not found" (Ollama), Azure's "Resource not found", OpenAI's
# "Unknown request URL: POST /v1/...".
_NO_ROUTE = ("not found", "404 page not found", "resource not found")


def error_body_fields(raw: bytes) -> tuple[str, str, str]:
    """``(message, type, code)`` from an error body in OpenAI's shape (also wrapped in a
    list, as Gemini's OpenAI-compatible endpoint sends it), or the raw text."""
    try:
        data: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw[:300].decode("utf-8", "replace").strip(), "", ""
    if isinstance(data, list) and data:
        data = data[0]
    err = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(err, dict):
        return (
            str(err.get("message") or "")[:500],
            str(err.get("type") or err.get("status") or ""),
            str(err.get("code") or ""),
        )
    return str(err)[:500], "", ""


def deployment_fault(status: int, probe: str, message: str = "") -> type[InterlockError] | None:
    """The error class of a 4xx that is the deployment's fault, not the request's:
    `AccountError` for a 402 or a 400/404 naming the account (a 429 only with OpenAI's
    ``insufficient_quota``); `DeploymentNotFoundError` for a 404 or 400 naming a missing
    model or deployment, or a 404 for the path itself; None for the caller's own
    errors. `probe` is the lower-cased code, type and message."""
    if status == 402 or (status in (400, 404) and any(m in probe for m in _ACCOUNT_MARKERS)):
        return AccountError
    if status == 429:
        return AccountError if "insufficient_quota" in probe else None
    if status not in (400, 404):
        return None
    if any(m in probe for m in _MISSING_MARKERS) and ("model" in probe or "deployment" in probe):
        return DeploymentNotFoundError
    bare = message.strip().rstrip(".").lower()
    if status == 404 and (bare in _NO_ROUTE or bare.startswith("unknown request url")):
        return DeploymentNotFoundError
    return None


def error_from_response(
    status: int,
    headers: Mapping[str, str],
    raw: bytes,
    *,
    provider: str,
    deployment_id: str,
    secret: str | None,
) -> InterlockError:
    """Map an HTTP error response onto the error tree (the table in docs/resilience.md)."""
    message, etype, code = error_body_fields(raw)
    message = scrub(message, secret)
    named = scrub(code, secret) if code and not code.isdigit() and code not in message else ""
    text = f"{provider} returned HTTP {status}" + (f" ({named})" if named else "")
    text += f": {message}" if message else ""
    probe = f"{code} {etype} {message}".lower()
    kw: dict[str, Any] = {"status_code": status, "deployment_id": deployment_id}
    request_error = status in (400, 413, 422)
    # The most specific wording first: a context-window message may name the model.
    if request_error and any(m in probe for m in _CONTEXT_MARKERS):
        return ContextWindowExceededError(text, **kw)
    if request_error and any(m in probe for m in _POLICY_MARKERS):
        return ContentPolicyViolationError(text, **kw)
    fault = deployment_fault(status, probe, message) if 400 <= status < 500 else None
    if fault is not None:
        return fault(text, **kw)
    if status == 429:
        return RateLimitError(text, retry_after=parse_retry_after(headers), **kw)
    if status == 400 and any(m in probe for m in _KEY_MARKERS):
        return AuthenticationError(text, **kw)
    if request_error:
        return BadRequestError(text, **kw)
    return _by_status(status, headers, text, kw)


def _by_status(
    status: int, headers: Mapping[str, str], text: str, kw: dict[str, Any]
) -> InterlockError:
    if status == 401:
        return AuthenticationError(text, **kw)
    if status == 403:
        return PermissionDeniedError(text, **kw)
    if status == 404:
        return NotFoundError(text, **kw)
    if status == 408:
        return APITimeoutError(text, **kw)
    if status in (502, 503, 504, 529):
        return ServiceUnavailableError(text, retry_after=parse_retry_after(headers), **kw)
    if status >= 500:
        return InternalServerError(text, **kw)
    return BadRequestError(text, **kw)
