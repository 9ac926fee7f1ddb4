"""The built-in provider names and the transport that serves each."""

from __future__ import annotations

from interlock.deadline import DeadlineWheel
from interlock.presets import PRESETS
from interlock.providers.anthropic import AnthropicTransport
from interlock.providers.azure import AzureOpenAITransport
from interlock.providers.bedrock import BedrockTransport
from interlock.providers.gemini import GeminiTransport
from interlock.providers.http import HttpClient
from interlock.providers.openai import OpenAITransport
from interlock.providers.vertex import VertexTransport
from interlock.records.transport import Transport

__all__ = ["builtin_transports"]


def builtin_transports(client: HttpClient, deadlines: DeadlineWheel) -> dict[str, Transport]:
    """A transport for every built-in provider name, over one shared session.

    The OpenAI-compatible family (openai, groq, together, ...) shares one
    `OpenAITransport`; presets only change the base URL.
    """
    openai = OpenAITransport(client, deadlines)
    by_wire: dict[str, Transport] = {
        "openai": openai,
        "azure": AzureOpenAITransport(client, deadlines),
        "anthropic": AnthropicTransport(client, deadlines),
        "gemini": GeminiTransport(client, deadlines),
        "vertex": VertexTransport(client, deadlines),
        "bedrock": BedrockTransport(client, deadlines),
    }
    return {name: by_wire[p.wire] for name, p in PRESETS.items()}
