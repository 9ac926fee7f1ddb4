"""Context-window errors in every provider's current wording (issue 15, point 5): each
is a `ContextWindowExceededError`, so the context-window fallbacks run. Where each
body comes from is said next to it; docs/resilience.md lists the same wording."""

from __future__ import annotations

import orjson
import pytest

from interlock import ContextWindowExceededError
from interlock.failures import FailureKind, classify
from tests.unit.providers.bodies import (
    anthropic_shape,
    google_shape,
    map_error,
    openai_shape,
    vllm_shape,
)

CONTEXT: list[tuple[str, str, int, bytes]] = [
    (
        # OpenAI Chat Completions, code context_length_exceeded (platform.openai.com error codes)
        "openai-chat",
        "openai",
        400,
        openai_shape(
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
        openai_shape(
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
        openai_shape(
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
        openai_shape(
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
        anthropic_shape(
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
        anthropic_shape(
            "invalid_request_error", "prompt is too long: 208310 tokens > 200000 maximum"
        ),
    ),
    (
        # Gemini API, 400 INVALID_ARGUMENT
        "gemini",
        "gemini",
        400,
        google_shape(
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
        + google_shape(
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
        openai_shape(
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
        vllm_shape(
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
        vllm_shape(
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
        vllm_shape(
            "The input (43028 tokens) is longer than the model's context length (40960 tokens)."
        ),
    ),
    (
        # sglang, prompt plus max_tokens over the window (same module)
        "sglang-total",
        "openai",
        400,
        vllm_shape(
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
    err = map_error(provider, status, body)
    assert type(err) is ContextWindowExceededError, repr(err)
    assert classify(err) is FailureKind.CONTEXT_WINDOW
    assert err.status_code == status
