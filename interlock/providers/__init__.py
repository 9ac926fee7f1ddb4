"""Provider transports: how an attempt reaches a deployment."""

from interlock.presets import OPENAI_COMPATIBLE, PRESETS, ProviderPreset
from interlock.providers.anthropic import AnthropicTransport
from interlock.providers.azure import AzureOpenAITransport
from interlock.providers.gemini import GeminiTransport
from interlock.providers.http import HttpClient, parse_retry_after
from interlock.providers.openai import OpenAIStream, OpenAITransport
from interlock.providers.params import UnsupportedParams
from interlock.providers.registry import builtin_transports
from interlock.records.transport import ChunkSource, Transport

__all__ = [
    "OPENAI_COMPATIBLE",
    "PRESETS",
    "AnthropicTransport",
    "AzureOpenAITransport",
    "ChunkSource",
    "GeminiTransport",
    "HttpClient",
    "OpenAIStream",
    "OpenAITransport",
    "ProviderPreset",
    "Transport",
    "UnsupportedParams",
    "builtin_transports",
    "parse_retry_after",
]
