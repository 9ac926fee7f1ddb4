"""Where each built-in provider lives by default.

A deployment that names a provider and gives no `api_base` gets the preset's. The
OpenAI-compatible family (groq, together, ...) is served by the OpenAI transport with
a bearer key; only the base URL differs. Local servers (vllm, ollama) need no key.
This module imports nothing from the rest of interlock so that `config` can use it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["OPENAI_COMPATIBLE", "PRESETS", "ProviderPreset", "preset_for"]


@dataclass(frozen=True, slots=True)
class ProviderPreset:
    """Defaults for one provider name."""

    name: str
    wire: str
    """The wire format: ``openai``, ``azure``, ``anthropic``, ``gemini``, ``bedrock`` or
    ``vertex``."""
    api_base: str | None
    """Default `api_base`; None when the deployment must give one (Azure). It may name
    deployment fields in braces (``{aws_region}``), filled in by `base_for`."""
    needs_key: bool = True
    stream_usage: bool = True
    """Whether it accepts ``stream_options.include_usage`` (Mistral answers 422)."""
    reasoning_content_in: bool = False
    """Whether an assistant turn sent back may carry ``reasoning_content`` (DeepSeek's
    thinking mode wants it back within a tool-call turn; others reject the field)."""

    def base_for(self, fields: Mapping[str, Any]) -> str | None:
        """The default `api_base` for a deployment with these fields; None when there is
        none, or a field it is built from is missing."""
        template = self.api_base
        if template is None or "{" not in template:
            return template
        names = _FIELD.findall(template)
        values = {n: fields.get(n) for n in names}
        if not all(isinstance(v, str) and v for v in values.values()):
            return None
        if values.get("vertex_location") == "global":
            # The global Vertex endpoint has no location prefix in its host name.
            return "https://aiplatform.googleapis.com"
        return template.format(**values)

    @property
    def base_fields(self) -> tuple[str, ...]:
        """The deployment fields the default `api_base` is built from."""
        return tuple(_FIELD.findall(self.api_base or ""))


_FIELD = re.compile(r"\{([a-z_]+)\}")
_P = ProviderPreset

PRESETS: dict[str, ProviderPreset] = {
    p.name: p
    for p in (
        _P("openai", "openai", "https://api.openai.com/v1"),
        _P("azure", "azure", None),
        _P("anthropic", "anthropic", "https://api.anthropic.com/v1"),
        _P("gemini", "gemini", "https://generativelanguage.googleapis.com/v1beta"),
        # https://docs.aws.amazon.com/general/latest/gr/bedrock.html (bedrock-runtime)
        _P("bedrock", "bedrock", "https://bedrock-runtime.{aws_region}.amazonaws.com", False),
        # https://cloud.google.com/vertex-ai/docs/reference/rest#service-endpoint
        _P("vertex", "vertex", "https://{vertex_location}-aiplatform.googleapis.com", False),
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
