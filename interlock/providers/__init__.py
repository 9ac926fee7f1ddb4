"""Provider transports: how an attempt reaches a deployment."""

from interlock.providers.base import ChunkSource, Transport
from interlock.providers.http import HttpClient, parse_retry_after
from interlock.providers.openai import OpenAIStream, OpenAITransport

__all__ = [
    "ChunkSource",
    "HttpClient",
    "OpenAIStream",
    "OpenAITransport",
    "Transport",
    "parse_retry_after",
]
