"""The facts of LiteLLM's config format that `litellm_config` maps: provider
prefixes, parameter and setting names, strategy names, and why a key is not mapped.

Sources: https://docs.litellm.ai/docs/proxy/configs,
https://docs.litellm.ai/docs/router/api_reference/configuration and
https://docs.litellm.ai/docs/providers (the ``provider/model`` prefixes).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "ALWAYS",
    "CALL_PARAMS",
    "CHAINS",
    "FAIL_KINDS",
    "HEALTH_SETTINGS",
    "IGNORED_SETTINGS",
    "INFO",
    "NEEDS_BASE",
    "OPENAI_NAMES",
    "PARAMS",
    "PROVIDERS",
    "REDIS",
    "RETRY_KINDS",
    "SETTINGS",
    "STRATEGIES",
    "fix_base",
    "infer_provider",
    "info_reason",
    "param_reason",
]

# LiteLLM provider prefix -> (interlock provider, default api_base when it is not a preset).
PROVIDERS: dict[str, tuple[str, str | None]] = {
    "openai": ("openai", None),
    "azure": ("azure", None),
    "anthropic": ("anthropic", None),
    "gemini": ("gemini", None),
    "vertex_ai": ("vertex", None),
    "bedrock": ("bedrock", None),
    "groq": ("groq", None),
    "mistral": ("mistral", None),
    "together_ai": ("together", None),
    "deepseek": ("deepseek", None),
    "fireworks_ai": ("fireworks", None),
    "openrouter": ("openrouter", None),
    "hosted_vllm": ("vllm", None),
    "ollama": ("ollama", None),
    "ollama_chat": ("ollama", None),
    # OpenAI-compatible servers without a preset of their own.
    "xai": ("openai", "https://api.x.ai/v1"),
    "perplexity": ("openai", "https://api.perplexity.ai"),
    "cerebras": ("openai", "https://api.cerebras.ai/v1"),
    "deepinfra": ("openai", "https://api.deepinfra.com/v1/openai"),
    "nvidia_nim": ("openai", "https://integrate.api.nvidia.com/v1"),
    "litellm_proxy": ("openai", None),
    "lm_studio": ("openai", None),
}
NEEDS_BASE = frozenset({"litellm_proxy", "lm_studio"})

# litellm_params key -> Deployment field, the value taken as it is.
PARAMS: dict[str, str] = {
    "api_base": "api_base",
    "api_key": "api_key",
    "api_version": "api_version",
    "rpm": "rpm",
    "tpm": "tpm",
    "weight": "weight",
    "order": "order",
    "timeout": "timeout",
    "max_parallel_requests": "max_concurrency",
    "input_cost_per_token": "input_cost_per_token",
    "output_cost_per_token": "output_cost_per_token",
    "aws_region_name": "aws_region",
    "aws_access_key_id": "aws_access_key_id",
    "aws_secret_access_key": "aws_secret_access_key",
    "aws_session_token": "aws_session_token",
    "aws_profile_name": "aws_profile",
    "vertex_project": "vertex_project",
    "vertex_location": "vertex_location",
    "vertex_credentials": "vertex_credentials",
    "tags": "tags",
    "extra_headers": "headers",
    "headers": "headers",
}
# model_info key -> Deployment field.
INFO: dict[str, str] = {
    "id": "id",
    "input_cost_per_token": "input_cost_per_token",
    "output_cost_per_token": "output_cost_per_token",
    "cache_read_input_token_cost": "cache_read_cost_per_token",
    "cache_creation_input_token_cost": "cache_write_cost_per_token",
    "max_input_tokens": "context_window",
}
CALL_PARAMS = frozenset(
    {
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "seed",
        "frequency_penalty",
        "presence_penalty",
        "response_format",
        "reasoning_effort",
        "n",
        "user",
    }
)
STRATEGIES = {
    "simple-shuffle": "weighted",
    "least-busy": "least-busy",
    "latency-based-routing": "latency",
    "usage-based-routing": "usage",
    "usage-based-routing-v2": "usage",
    "cost-based-routing": "cost",
}
# retry_policy / allowed_fails_policy keys -> interlock failure kinds.
RETRY_KINDS = {
    "TimeoutErrorRetries": "timeout",
    "RateLimitErrorRetries": "rate_limit",
    "AuthenticationErrorRetries": "auth",
    "InternalServerErrorRetries": "server_error",
}
FAIL_KINDS = {
    "TimeoutErrorAllowedFails": "timeout",
    "InternalServerErrorAllowedFails": "server_error",
}
CHAINS = ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks")
HEALTH_SETTINGS = frozenset({"allowed_fails", "cooldown_time", "allowed_fails_policy"})
# Settings that interlock always applies (so there is nothing to map or report).
ALWAYS = frozenset({"enable_pre_call_checks", "enable_tag_filtering"})
OPENAI_NAMES = re.compile(r"^(gpt-|chatgpt-|o\d|text-embedding-)")


REDIS = ("redis_url", "redis_host", "redis_port", "redis_password")
IGNORED_SETTINGS = frozenset({"request_timeout", "timeout", *REDIS})
SETTINGS = frozenset(
    {
        "routing_strategy",
        "num_retries",
        "retry_policy",
        "allowed_fails",
        "allowed_fails_policy",
        "cooldown_time",
        "model_group_alias",
        "max_fallbacks",
        "default_fallbacks",
        *CHAINS,
        *IGNORED_SETTINGS,
    }
)
"""Router settings this module maps (a `litellm.Router(...)` keyword each)."""


def infer_provider(model: str) -> str:
    """LiteLLM's provider for a bare model name, where it is unambiguous."""
    if OPENAI_NAMES.match(model):
        return "openai"
    if model.startswith("claude-"):
        return "anthropic"
    return ""


def fix_base(d: dict[str, Any]) -> None:
    """LiteLLM's api_base conventions -> interlock's: Ollama's native address serves the
    OpenAI-compatible API under /v1; LiteLLM appends /v1/messages to Anthropic's."""
    base = d.get("api_base")
    if not isinstance(base, str):
        return
    base = base.rstrip("/")
    if d["provider"] == "ollama" and not base.endswith("/v1"):
        d["api_base"] = base + "/v1"
    elif d["provider"] == "anthropic":
        d["api_base"] = base.removesuffix("/v1/messages").removesuffix("/v1") + "/v1"


def param_reason(key: str) -> str:
    if key in CALL_PARAMS:
        return "a default call parameter; interlock sends what each call passes"
    if key == "mock_response":
        return "LiteLLM answers without calling the provider; use interlock.testing fakes"
    if key == "stream_timeout":
        return "no separate stream timeout; `timeout` also bounds each wait for a chunk"
    return "no equivalent deployment field"


def info_reason(key: str) -> str:
    if key == "max_tokens":
        return "ambiguous in LiteLLM (context or output limit); set max_input_tokens"
    if key == "mode":
        return "interlock serves chat and embeddings only"
    return "informational; not used for routing here"
