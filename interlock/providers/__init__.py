"""Provider transports: how an attempt reaches a deployment."""

from interlock.presets import OPENAI_COMPATIBLE, PRESETS, ProviderPreset
from interlock.providers.anthropic import AnthropicTransport
from interlock.providers.azure import AzureOpenAITransport
from interlock.providers.bedrock import BedrockTransport
from interlock.providers.credentials import AzureIdentityTokenProvider
from interlock.providers.gemini import GeminiTransport
from interlock.providers.http import HttpClient
from interlock.providers.http_errors import parse_retry_after
from interlock.providers.openai import OpenAIStream, OpenAITransport
from interlock.providers.params import UnsupportedParams
from interlock.providers.registry import builtin_transports
from interlock.providers.vertex import VertexTransport
from interlock.records.transport import ChunkSource, Transport

__all__ = [
    "OPENAI_COMPATIBLE",
    "PRESETS",
    "AnthropicTransport",
    "AzureIdentityTokenProvider",
    "AzureOpenAITransport",
    "BedrockTransport",
    "ChunkSource",
    "GeminiTransport",
    "HttpClient",
    "OpenAIStream",
    "OpenAITransport",
    "ProviderPreset",
    "Transport",
    "UnsupportedParams",
    "VertexTransport",
    "builtin_transports",
    "parse_retry_after",
]
