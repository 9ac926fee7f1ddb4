"""How provider error responses map onto the error tree (`interlock/providers/http.py`
`error_from_response` and the native transports' `_error`), with each provider's own
bodies and wording. docs/resilience.md renders the same table.

Where each body comes from is said next to it: the provider's API reference, error
guide or server source. Bodies as the provider sends them (no key is ever in them, so
the transports' scrubbing is not what these tests are about).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from interlock import (
    AccountError,
    AuthenticationError,
    BadRequestError,
    ContextWindowExceededError,
    Deployment,
    DeploymentNotFoundError,
    InterlockError,
    NotFoundError,
    RateLimitError,
)
from interlock.failures import FailureKind, classify
from interlock.providers import AnthropicTransport, GeminiTransport, HttpClient
from interlock.providers.openai import openai_error

KEY = "sk-unit-0123456789abcdef"


def _openai_shape(message: str, type_: str | None, code: Any, param: str | None = None) -> bytes:
    return orjson.dumps(
        {"error": {"message": message, "type": type_, "param": param, "code": code}}
    )


def _vllm_shape(message: str, type_: str = "BadRequestError", code: int = 400) -> bytes:
    # vLLM and sglang's OpenAI server: ErrorResponse(object="error", message, type, param, code)
    return orjson.dumps(
        {"object": "error", "message": message, "type": type_, "param": None, "code": code}
    )


def _anthropic_shape(type_: str, message: str) -> bytes:
    # https://docs.anthropic.com/en/api/errors: {"type": "error", "error": {"type", "message"}}
    return orjson.dumps({"type": "error", "error": {"type": type_, "message": message}})


def _google_shape(code: int, message: str, status: str) -> bytes:
    # https://ai.google.dev/gemini-api/docs/troubleshooting (google.rpc.Status as JSON)
    return orjson.dumps({"error": {"code": code, "message": message, "status": status}})


def _map(provider: str, status: int, body: bytes) -> InterlockError:
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


# --- context windows (issue 15, point 5) ----------------------------------------------

CONTEXT: list[tuple[str, str, int, bytes]] = [
    (
        # OpenAI Chat Completions, code context_length_exceeded (platform.openai.com error codes)
        "openai-chat",
        "openai",
        400,
        _openai_shape(
            "This model's maximum context length is 128000 tokens. However, your messages "
            "resulted in 130506 tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            "context_length_exceeded",
            "messages",
        ),
    ),
    (
        # OpenAI's current wording (Responses API and recent chat models); the message
        # alone must be enough, so the code is left out here
        "openai-window",
        "openai",
        400,
        _openai_shape(
            "Your input exceeds the context window of this model. Please adjust your input "
            "and try again.",
            "invalid_request_error",
            None,
            "input",
        ),
    ),
    (
        # OpenAI, models with a configured input limit (gpt-5 family), code left out
        "openai-configured",
        "openai",
        400,
        _openai_shape(
            "Input tokens exceed the configured limit of 272000 tokens. Your messages "
            "resulted in 509178 tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            None,
            "messages",
        ),
    ),
    (
        # Azure OpenAI: OpenAI's body and code (learn.microsoft.com, Azure OpenAI quotas)
        "azure",
        "azure",
        400,
        _openai_shape(
            "This model's maximum context length is 8192 tokens. However, your messages "
            "resulted in 8306 tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            "context_length_exceeded",
            "messages",
        ),
    ),
    (
        # Anthropic's current wording (Messages API, 400 invalid_request_error)
        "anthropic-limit",
        "anthropic",
        400,
        _anthropic_shape(
            "invalid_request_error",
            "input length and `max_tokens` exceed context limit: 197626 + 8192 > 200000, "
            "decrease input length or `max_tokens` and try again",
        ),
    ),
    (
        # Anthropic's other wording, for a prompt alone over the window
        "anthropic-prompt",
        "anthropic",
        400,
        _anthropic_shape(
            "invalid_request_error", "prompt is too long: 208310 tokens > 200000 maximum"
        ),
    ),
    (
        # Gemini API, 400 INVALID_ARGUMENT
        "gemini",
        "gemini",
        400,
        _google_shape(
            400,
            "The input token count (1200000) exceeds the maximum number of tokens allowed "
            "(1048576).",
            "INVALID_ARGUMENT",
        ),
    ),
    (
        # Gemini's OpenAI-compatible endpoint wraps the same status in a list
        "gemini-openai-compat",
        "openai",
        400,
        b"["
        + _google_shape(
            400,
            "The input token count (1200000) exceeds the maximum number of tokens allowed "
            "(1048576).",
            "INVALID_ARGUMENT",
        )
        + b"]",
    ),
    (
        # Mistral La Plateforme (the body its SDK's SDKError carries)
        "mistral",
        "mistral",
        400,
        orjson.dumps(
            {
                "object": "error",
                "message": "Prompt contains 159202 tokens and 0 draft tokens, too large for "
                "model with 131072 maximum context length",
                "type": "invalid_request_invalid_args",
                "param": None,
                "code": "3051",
            }
        ),
    ),
    (
        # Groq (OpenAI-compatible; console.groq.com/docs/errors), code context_length_exceeded
        "groq",
        "groq",
        400,
        _openai_shape(
            "Please reduce the length of the messages or completion.",
            "invalid_request_error",
            "context_length_exceeded",
            "messages",
        ),
    ),
    (
        # vLLM OpenAI server (serving_engine.py, _validate_input)
        "vllm",
        "vllm",
        400,
        _vllm_shape(
            "This model's maximum context length is 4096 tokens. However, you requested "
            "5000 tokens (4000 in the messages, 1000 in the completion). Please reduce the "
            "length of the messages or completion."
        ),
    ),
    (
        # vLLM V1 engine's input check (processor.py, _validate_model_input)
        "vllm-v1",
        "vllm",
        400,
        _vllm_shape(
            "The decoder prompt (length 5000) is longer than the maximum model length of "
            "4096. Make sure that `max_model_len` is no smaller than the number of text "
            "tokens."
        ),
    ),
    (
        # sglang (srt/managers/tokenizer_manager.py, _validate_one_request)
        "sglang",
        "openai",
        400,
        _vllm_shape(
            "The input (43028 tokens) is longer than the model's context length (40960 tokens)."
        ),
    ),
    (
        # sglang, prompt plus max_tokens over the window (same module)
        "sglang-total",
        "openai",
        400,
        _vllm_shape(
            "Requested token count exceeds the model's maximum context length of 4096 "
            "tokens. You requested a total of 5000 tokens: 4000 tokens from the input "
            "messages and 1000 tokens for the completion. Please reduce the number of "
            "tokens in the input messages or the completion to fit within the limit."
        ),
    ),
    (
        # Ollama's OpenAI-compatible /v1 (llm/llama_server.go; openai/openai.go NewError)
        "ollama",
        "ollama",
        400,
        orjson.dumps(
            {
                "error": {
                    "message": "the prompt is longer than the context length currently "
                    "available to the model; shorten the prompt, adjust the context length "
                    "in settings, or use a model with a longer context length",
                    "type": "invalid_request_error",
                }
            }
        ),
    ),
    (
        # Ollama, embeddings with truncate=false (server/routes.go, EmbedHandler)
        "ollama-embed",
        "ollama",
        400,
        orjson.dumps({"error": "the input length exceeds the context length"}),
    ),
]


@pytest.mark.parametrize(
    ("provider", "status", "body"), [c[1:] for c in CONTEXT], ids=[c[0] for c in CONTEXT]
)
def test_context_window_wording_of_every_provider(provider: str, status: int, body: bytes) -> None:
    err = _map(provider, status, body)
    assert type(err) is ContextWindowExceededError, repr(err)
    assert classify(err) is FailureKind.CONTEXT_WINDOW
    assert err.status_code == status


# --- deployment-scoped 4xx (issue 15, point 4) ---------------------------------------

DEPLOYMENT: list[tuple[str, str, int, bytes, type[InterlockError]]] = [
    (
        # OpenAI: the deployment names a model the key cannot use
        "openai-404-model",
        "openai",
        404,
        _openai_shape(
            "The model `gpt-4o-mini-2099` does not exist or you do not have access to it.",
            "invalid_request_error",
            "model_not_found",
        ),
        DeploymentNotFoundError,
    ),
    (
        # OpenAI: the account's quota is used up (a 429 that is not a rate limit)
        "openai-429-quota",
        "openai",
        429,
        _openai_shape(
            "You exceeded your current quota, please check your plan and billing details. For "
            "more information on this error, read the docs: "
            "https://platform.openai.com/docs/guides/error-codes/api-errors.",
            "insufficient_quota",
            "insufficient_quota",
        ),
        AccountError,
    ),
    (
        # Azure OpenAI: the deployment name in the URL does not exist
        "azure-404-deployment",
        "azure",
        404,
        orjson.dumps(
            {
                "error": {
                    "code": "DeploymentNotFound",
                    "message": "The API deployment for this resource does not exist. If you "
                    "created the deployment within the last 5 minutes, please wait a moment "
                    "and try again.",
                }
            }
        ),
        DeploymentNotFoundError,
    ),
    (
        # Azure OpenAI: a chat call to a deployment of an embeddings model
        "azure-400-operation",
        "azure",
        400,
        orjson.dumps(
            {
                "error": {
                    "code": "OperationNotSupported",
                    "message": "The chatCompletion operation does not work with the specified "
                    "model, text-embedding-ada-002. Please choose different model and try "
                    "again.",
                }
            }
        ),
        DeploymentNotFoundError,
    ),
    (
        # Azure OpenAI: the resource path itself is wrong (api_base)
        "azure-404-resource",
        "azure",
        404,
        orjson.dumps({"error": {"code": "404", "message": "Resource not found"}}),
        DeploymentNotFoundError,
    ),
    (
        # Anthropic: an account without credit answers 400 invalid_request_error
        "anthropic-400-credit",
        "anthropic",
        400,
        _anthropic_shape(
            "invalid_request_error",
            "Your credit balance is too low to access the Anthropic API. Please go to Plans & "
            "Billing to upgrade or purchase credits.",
        ),
        AccountError,
    ),
    (
        # Anthropic: 402 billing_error (docs.anthropic.com/en/api/errors)
        "anthropic-402-billing",
        "anthropic",
        402,
        _anthropic_shape(
            "billing_error", "There is an issue with your billing or payment information."
        ),
        AccountError,
    ),
    (
        # Anthropic: 404 not_found_error for an unknown model
        "anthropic-404-model",
        "anthropic",
        404,
        _anthropic_shape("not_found_error", "model: claude-3-opus-2099"),
        DeploymentNotFoundError,
    ),
    (
        # Gemini: unknown model (404 NOT_FOUND)
        "gemini-404-model",
        "gemini",
        404,
        _google_shape(
            404,
            "models/gemini-9.9-pro is not found for API version v1beta, or is not supported "
            "for generateContent. Call ListModels to see the list of available models and "
            "their supported methods.",
            "NOT_FOUND",
        ),
        DeploymentNotFoundError,
    ),
    (
        # Gemini: the free tier is not offered where the account is (troubleshooting guide)
        "gemini-400-precondition",
        "gemini",
        400,
        _google_shape(
            400,
            "Gemini API free tier is not available in your country. Please enable billing on "
            "your project in Google AI Studio.",
            "FAILED_PRECONDITION",
        ),
        AccountError,
    ),
    (
        # Gemini's OpenAI-compatible endpoint: a bad key is a 400 INVALID_ARGUMENT
        "gemini-openai-compat-key",
        "openai",
        400,
        b"[" + _google_shape(400, "Please pass a valid API key", "INVALID_ARGUMENT") + b"]",
        AuthenticationError,
    ),
    (
        # vLLM: the served model has another name (serving_engine.py, _check_model)
        "vllm-404-model",
        "vllm",
        404,
        _vllm_shape("The model `llama-3-8b` does not exist.", "NotFoundError", 404),
        DeploymentNotFoundError,
    ),
    (
        # Ollama /v1: a model that was never pulled (server/routes.go, ChatHandler)
        "ollama-404-model",
        "ollama",
        404,
        orjson.dumps({"error": {"message": "model 'llama3' not found", "type": "not_found_error"}}),
        DeploymentNotFoundError,
    ),
    (
        # Ollama's native API, older wording of the same
        "ollama-404-pull",
        "ollama",
        404,
        orjson.dumps({"error": 'model "llama3" not found, try pulling it first'}),
        DeploymentNotFoundError,
    ),
    (
        # Ollama (Go's net/http) for a path it does not serve: a wrong api_base
        "ollama-404-path",
        "ollama",
        404,
        b"404 page not found",
        DeploymentNotFoundError,
    ),
]


@pytest.mark.parametrize(
    ("provider", "status", "body", "error"),
    [c[1:] for c in DEPLOYMENT],
    ids=[c[0] for c in DEPLOYMENT],
)
def test_deployment_scoped_4xx_count_against_the_deployment(
    provider: str, status: int, body: bytes, error: type[InterlockError]
) -> None:
    err = _map(provider, status, body)
    assert type(err) is error, repr(err)
    expected = FailureKind.BAD_CREDENTIALS if error is AuthenticationError else FailureKind.UNUSABLE
    assert classify(err) is expected
    assert err.status_code == status
    assert err.deployment_id == "d0"


CALLER: list[tuple[str, str, int, bytes, type[InterlockError]]] = [
    (
        # OpenAI: a parameter out of range
        "openai-param",
        "openai",
        400,
        _openai_shape(
            "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but "
            "got 3 instead.",
            "invalid_request_error",
            "decimal_above_max_value",
            "temperature",
        ),
        BadRequestError,
    ),
    (
        # OpenAI: a structured-output schema it does not accept
        "openai-schema",
        "openai",
        400,
        _openai_shape(
            "Invalid schema for response_format 'answer': In context=(), "
            "'additionalProperties' is required to be supplied and to be false.",
            "invalid_request_error",
            "invalid_json_schema",
            "response_format",
        ),
        BadRequestError,
    ),
    (
        # OpenAI: an object of the caller's that does not exist (Files API)
        "openai-404-file",
        "openai",
        404,
        _openai_shape("No such File object: file-abc123", "invalid_request_error", None, "id"),
        NotFoundError,
    ),
    (
        # Anthropic: a required field missing
        "anthropic-field",
        "anthropic",
        400,
        _anthropic_shape("invalid_request_error", "max_tokens: Field required"),
        BadRequestError,
    ),
    (
        # Gemini: an argument it rejects (troubleshooting guide, 400 INVALID_ARGUMENT)
        "gemini-argument",
        "gemini",
        400,
        _google_shape(400, "Request contains an invalid argument.", "INVALID_ARGUMENT"),
        BadRequestError,
    ),
    (
        # vLLM: sampling parameters it rejects (sampling_params.py, _verify_args)
        "vllm-param",
        "vllm",
        400,
        _vllm_shape("temperature must be non-negative, got -1.0."),
        BadRequestError,
    ),
    (
        # Ollama: a parameter out of range (server/routes.go, ChatHandler)
        "ollama-param",
        "ollama",
        400,
        orjson.dumps(
            {
                "error": {
                    "message": "top_logprobs must be between 0 and 20",
                    "type": "invalid_request_error",
                }
            }
        ),
        BadRequestError,
    ),
]


@pytest.mark.parametrize(
    ("provider", "status", "body", "error"), [c[1:] for c in CALLER], ids=[c[0] for c in CALLER]
)
def test_request_errors_stay_the_callers(
    provider: str, status: int, body: bytes, error: type[InterlockError]
) -> None:
    err = _map(provider, status, body)
    assert type(err) is error, repr(err)
    assert classify(err) is FailureKind.CALLER


def test_a_quota_429_that_is_a_rate_limit_stays_a_rate_limit() -> None:
    # Gemini's free-tier per-minute limit speaks of quota and billing but is a 429
    # RESOURCE_EXHAUSTED with a retry delay: the deployment comes back by itself.
    body = orjson.dumps(
        {
            "error": {
                "code": 429,
                "message": "You exceeded your current quota, please check your plan and billing "
                "details.",
                "status": "RESOURCE_EXHAUSTED",
                "details": [
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "38s"}
                ],
            }
        }
    )
    for provider in ("gemini", "openai"):
        err = _map(provider, 429, body)
        assert type(err) is RateLimitError, (provider, err)


def test_the_error_text_names_the_providers_code() -> None:
    body = orjson.dumps(
        {
            "error": {
                "code": "DeploymentNotFound",
                "message": "The API deployment for this resource does not exist.",
            }
        }
    )
    err = _map("azure", 404, body)
    assert err.message == (
        "azure returned HTTP 404 (DeploymentNotFound): The API deployment for this resource "
        "does not exist."
    )
