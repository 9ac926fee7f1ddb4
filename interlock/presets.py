"""Where each built-in provider lives by default.

A deployment that names a provider and gives no `api_base` gets the preset's. The
OpenAI-compatible family (groq, together, ...) is served by the OpenAI transport with
a bearer key; only the base URL differs. Local servers (vllm, ollama) need no key.
This module imports nothing from the rest of interlock so that `config` can use it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["OPENAI_COMPATIBLE", "PRESETS", "ProviderPreset", "preset_for"]


@dataclass(frozen=True, slots=True)
class ProviderPreset:
    """Defaults for one provider name."""

    name: str
    wire: str
    """The wire format: ``openai``, ``azure``, ``anthropic`` or ``gemini``."""
    api_base: str | None
    """Default `api_base`; None when the deployment must give one (Azure)."""
    needs_key: bool = True
    stream_usage: bool = True
    """Whether it accepts ``stream_options.include_usage`` (Mistral answers 422)."""
    reasoning_content_in: bool = False
    """Whether an assistant turn sent back may carry ``reasoning_content`` (DeepSeek's
    thinking mode wants it back within a tool-call turn; others reject the field)."""


_P = ProviderPreset

PRESETS: dict[str, ProviderPreset] = {
    p.name: p
    for p in (
        _P("openai", "openai", "https://api.openai.com/v1"),
        _P("azure", "azure", None),
        _P("anthropic", "anthropic", "https://api.anthropic.com/v1"),
        _P("gemini", "gemini", "https://generativelanguage.googleapis.com/v1beta"),
        _P("groq", "openai", "https://api.groq.com/openai/v1"),
        _P("together", "openai", "https://api.together.xyz/v1"),
        _P("mistral", "openai", "https://api.mistral.ai/v1", stream_usage=False),
        _P("deepseek", "openai", "https://api.deepseek.com/v1", reasoning_content_in=True),
        _P("fireworks", "openai", "https://api.fireworks.ai/inference/v1"),
        _P("openrouter", "openai", "https://openrouter.ai/api/v1"),
        _P("vllm", "openai", "http://127.0.0.1:8000/v1", needs_key=False),
        _P("ollama", "openai", "http://127.0.0.1:11434/v1", needs_key=False),
    )
}
"""Every built-in provider name."""

OPENAI_COMPATIBLE: frozenset[str] = frozenset(
    name for name, p in PRESETS.items() if p.wire == "openai"
)
"""Provider names served by the OpenAI transport (``openai`` included)."""


def preset_for(provider: str) -> ProviderPreset | None:
    """The preset of a built-in provider name, or None for a custom one."""
    return PRESETS.get(provider)
