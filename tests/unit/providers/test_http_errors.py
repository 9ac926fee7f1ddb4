"""Whose fault a provider's 4xx is (`interlock/providers/http_errors.py` `error_from_response`
and the native transports' `_error`; issue 15, point 4), with each provider's own
bodies and wording: the deployment's (`DeploymentNotFoundError`, `AccountError`, a bad
key) or the request's. docs/resilience.md renders the same table; the context-window
wording is in test_context_window.py.

Where each body comes from is said next to it: the provider's API reference, error
guide or server source. Bodies as the provider sends them (no key is ever in them, so
the transports' scrubbing is not what these tests are about).
"""

from __future__ import annotations

import orjson
import pytest

from interlock import (
    AccountError,
    AuthenticationError,
    BadRequestError,
    DeploymentNotFoundError,
    InterlockError,
    NotFoundError,
    RateLimitError,
)
from interlock.failures import FailureKind, classify
from interlock.providers.http_errors import parse_retry_after
from tests.unit.providers.bodies import (
    anthropic_shape,
    google_shape,
    map_error,
    openai_shape,
    vllm_shape,
)

# --- deployment-scoped 4xx (issue 15, point 4) ---------------------------------------

DEPLOYMENT: list[tuple[str, str, int, bytes, type[InterlockError]]] = [
    (
        # OpenAI: the deployment names a model the key cannot use
        "openai-404-model",
        "openai",
        404,
        openai_shape(
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
        openai_shape(
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
        anthropic_shape(
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
        anthropic_shape(
            "billing_error", "There is an issue with your billing or payment information."
        ),
        AccountError,
    ),
    (
        # Anthropic: 404 not_found_error for an unknown model
        "anthropic-404-model",
        "anthropic",
        404,
        anthropic_shape("not_found_error", "model: claude-3-opus-2099"),
        DeploymentNotFoundError,
    ),
    (
        # Gemini: unknown model (404 NOT_FOUND)
        "gemini-404-model",
        "gemini",
        404,
        google_shape(
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
        google_shape(
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
        b"[" + google_shape(400, "Please pass a valid API key", "INVALID_ARGUMENT") + b"]",
        AuthenticationError,
    ),
    (
        # vLLM: the served model has another name (serving_engine.py, _check_model)
        "vllm-404-model",
        "vllm",
        404,
        vllm_shape("The model `llama-3-8b` does not exist.", "NotFoundError", 404),
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
    err = map_error(provider, status, body)
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
        openai_shape(
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
        openai_shape(
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
        openai_shape("No such File object: file-abc123", "invalid_request_error", None, "id"),
        NotFoundError,
    ),
    (
        # Anthropic: a required field missing
        "anthropic-field",
        "anthropic",
        400,
        anthropic_shape("invalid_request_error", "max_tokens: Field required"),
        BadRequestError,
    ),
    (
        # Gemini: an argument it rejects (troubleshooting guide, 400 INVALID_ARGUMENT)
        "gemini-argument",
        "gemini",
        400,
        google_shape(400, "Request contains an invalid argument.", "INVALID_ARGUMENT"),
        BadRequestError,
    ),
    (
        # vLLM: sampling parameters it rejects (sampling_params.py, _verify_args)
        "vllm-param",
        "vllm",
        400,
        vllm_shape("temperature must be non-negative, got -1.0."),
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
    err = map_error(provider, status, body)
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
        err = map_error(provider, 429, body)
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
    err = map_error("azure", 404, body)
    assert err.message == (
        "azure returned HTTP 404 (DeploymentNotFound): The API deployment for this resource "
        "does not exist."
    )


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after": "-3"}, 0.0),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after": "1e999"}, None),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "nan", "retry-after": "2"}, 2.0),
        ({"retry-after-ms": "inf"}, None),
        ({"retry-after": "soon"}, None),
    ],
)
def test_retry_after_takes_finite_numbers_only(
    headers: dict[str, str], seconds: float | None
) -> None:
    assert parse_retry_after(headers) == seconds
