"""Provider error bodies in each provider's own shape, and the error a deployment of
that provider raises for one (shared by the tests of the providers' error mapping)."""

from __future__ import annotations

from typing import Any

import orjson

from interlock import Deployment, InterlockError
from interlock.providers import AnthropicTransport, GeminiTransport, HttpClient
from interlock.providers.openai import openai_error

__all__ = ["anthropic_shape", "google_shape", "map_error", "openai_shape", "vllm_shape"]

KEY = "sk-unit-0123456789abcdef"


def openai_shape(message: str, type_: str | None, code: Any, param: str | None = None) -> bytes:
    return orjson.dumps(
        {"error": {"message": message, "type": type_, "param": param, "code": code}}
    )


def vllm_shape(message: str, type_: str = "BadRequestError", code: int = 400) -> bytes:
    # vLLM and sglang's OpenAI server: ErrorResponse(object="error", message, type, param, code)
    return orjson.dumps(
        {"object": "error", "message": message, "type": type_, "param": None, "code": code}
    )


def anthropic_shape(type_: str, message: str) -> bytes:
    # https://docs.anthropic.com/en/api/errors: {"type": "error", "error": {"type", "message"}}
    return orjson.dumps({"type": "error", "error": {"type": type_, "message": message}})


def google_shape(code: int, message: str, status: str) -> bytes:
    # https://ai.google.dev/gemini-api/docs/troubleshooting (google.rpc.Status as JSON)
    return orjson.dumps({"error": {"code": code, "message": message, "status": status}})


def map_error(provider: str, status: int, body: bytes) -> InterlockError:
    """The error a deployment of `provider` raises for this response."""
    d = Deployment(
        group="g",
        model="m",
        id="d0",
        provider=provider,
        api_key=KEY,
        api_base="http://127.0.0.1:9/v1",
    )
    if provider == "anthropic":
        return AnthropicTransport(HttpClient())._error(d, status, {}, body, KEY)
    if provider == "gemini":
        return GeminiTransport(HttpClient())._error(d, status, {}, body, KEY)
    return openai_error(d, status, {}, body, KEY)
