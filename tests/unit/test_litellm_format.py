"""The LiteLLM format tables agree with interlock's own names.

Provider prefixes as listed at https://docs.litellm.ai/docs/providers; strategy names
as documented at https://docs.litellm.ai/docs/router/api_reference/configuration.
"""

from __future__ import annotations

from typing import Any

import pytest

from interlock import Deployment
from interlock.litellm_format import PARAMS, PROVIDERS, STRATEGIES, fix_base, infer_provider
from interlock.presets import PRESETS
from interlock.strategies.registry import builtin_strategies


def test_every_prefix_maps_to_a_built_in_provider() -> None:
    assert {provider for provider, _ in PROVIDERS.values()} <= set(PRESETS)


def test_every_strategy_maps_to_a_registered_strategy() -> None:
    assert set(STRATEGIES.values()) <= set(builtin_strategies())


def test_every_param_maps_to_a_deployment_field() -> None:
    assert set(PARAMS.values()) <= set(Deployment.model_fields)


@pytest.mark.parametrize(
    ("model", "provider"),
    [("gpt-4o", "openai"), ("o3-mini", "openai"), ("text-embedding-3-small", "openai"),
     ("claude-3-5-haiku-latest", "anthropic"), ("gemini-1.5-pro", ""), ("command-r", "")],
)  # fmt: skip
def test_infer_provider(model: str, provider: str) -> None:
    # A bare gemini-* name is Vertex AI in LiteLLM, not the Gemini API: not guessed.
    assert infer_provider(model) == provider


@pytest.mark.parametrize(
    ("d", "base"),
    [
        ({"provider": "ollama", "api_base": "http://h:11434/"}, "http://h:11434/v1"),
        ({"provider": "ollama", "api_base": "http://h:11434/v1"}, "http://h:11434/v1"),
        ({"provider": "anthropic", "api_base": "https://gw/x"}, "https://gw/x/v1"),
        ({"provider": "anthropic", "api_base": "https://gw/v1/messages"}, "https://gw/v1"),
        ({"provider": "openai", "api_base": "http://h:4000"}, "http://h:4000"),
    ],
)
def test_fix_base(d: dict[str, Any], base: str) -> None:
    fix_base(d)
    assert d["api_base"] == base
