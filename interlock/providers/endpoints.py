"""HTTP for the endpoints beyond chat and embeddings (docs/endpoints.md): images,
audio, moderations, rerank and the passthrough, over the router's shared session.

Which provider has which endpoint is the `SUPPORT` table; everything here speaks
OpenAI's shapes (Azure OpenAI's per-deployment URLs included) or, for the passthrough,
sends the caller's bytes with the deployment's address and credentials.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from yarl import URL

from interlock.config import Deployment
from interlock.deadline import DeadlineWheel
from interlock.endpoint_types import Endpoint, PassthroughResponse, usage_of
from interlock.errors import APITimeoutError, InterlockError, StreamInterruptedError
from interlock.presets import preset_for
from interlock.providers.azure import DEFAULT_AZURE_API_VERSION
from interlock.providers.http import HttpClient, send, typed_error
from interlock.providers.openai import OpenAITransport, openai_error

__all__ = [
    "PASSTHROUGH_WIRES",
    "SUPPORT",
    "ByteSource",
    "EndpointClient",
    "FilePart",
    "clean_headers",
    "supported",
    "wire_of",
]

_ALL: frozenset[Endpoint] = frozenset(
    ("images", "transcription", "speech", "moderation", "rerank", "passthrough")
)
SUPPORT: dict[str, frozenset[Endpoint]] = {
    # https://platform.openai.com/docs/api-reference (images, audio, moderations)
    "openai": frozenset(("images", "transcription", "speech", "moderation", "passthrough")),
    # https://learn.microsoft.com/azure/ai-services/openai/reference (images, audio)
    "azure": frozenset(("images", "transcription", "speech", "passthrough")),
    # https://console.groq.com/docs/speech-to-text and /docs/text-to-speech
    "groq": frozenset(("transcription", "speech", "passthrough")),
    # https://docs.together.ai/reference (images, audio, rerank)
    "together": frozenset(("images", "transcription", "speech", "rerank", "passthrough")),
    # https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html
    "vllm": frozenset(("transcription", "rerank", "passthrough")),
    "mistral": frozenset(("passthrough",)),
    "deepseek": frozenset(("passthrough",)),
    "fireworks": frozenset(("passthrough",)),
    "openrouter": frozenset(("passthrough",)),
    "ollama": frozenset(("passthrough",)),
    "anthropic": frozenset(("passthrough",)),
    "gemini": frozenset(("passthrough",)),
    # Bedrock (SigV4) and Vertex (OAuth) sign each request for its own API: none.
    "bedrock": frozenset(),
    "vertex": frozenset(),
}
"""What each built-in provider name serves. A provider name of one's own whose
transport is the OpenAI-compatible one gets every endpoint (the server decides)."""

PASSTHROUGH_WIRES = frozenset(("openai", "azure", "anthropic", "gemini"))

_PATHS: dict[str, str] = {
    "images": "images/generations",
    "transcription": "audio/transcriptions",
    "speech": "audio/speech",
    "moderation": "moderations",
    "rerank": "rerank",
}
_DROP_HEADERS = frozenset(("host", "content-length", "transfer-encoding", "connection"))
# A passthrough answer with one of these is the deployment's failure, not an answer.
_FAILED = frozenset((401, 402, 403, 408, 429))


def wire_of(d: Deployment, transport: object) -> str | None:
    """The wire format of `d` (a built-in provider's, or ``openai`` for a provider
    name of one's own served by the OpenAI-compatible transport); None otherwise."""
    preset = preset_for(d.provider)
    if preset is not None:
        return preset.wire
    return "openai" if type(transport) is OpenAITransport else None


def supported(d: Deployment, transport: object) -> frozenset[Endpoint]:
    """The endpoints deployment `d` can serve through interlock."""
    if d.azure_ad_token_provider is not None:
        return frozenset()  # Entra ID tokens: chat and embeddings only, for now
    if preset_for(d.provider) is not None:
        return SUPPORT.get(d.provider, frozenset())
    return _ALL if wire_of(d, transport) == "openai" else frozenset()


@dataclass(frozen=True, slots=True)
class FilePart:
    """An uploaded file of a multipart request."""

    data: bytes
    filename: str
    content_type: str = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class _Target:
    base: str
    query: dict[str, str]
    headers: dict[str, str] = field(repr=False)
    secret: str | None = field(repr=False)
    deployment: Deployment | None = field(default=None, repr=False)
    """The settings it was made from: another object under the same id (after a
    runtime change) makes the target again."""


class ByteSource:
    """An open response body whose first bytes have arrived."""

    __slots__ = ("_d", "_done", "_resp", "_timeout", "first", "headers", "status")

    def __init__(self, resp: aiohttp.ClientResponse, d: Deployment, first: bytes) -> None:
        self._resp = resp
        self._d = d
        self._done = False
        self._timeout = d.timeout
        self.first = first
        self.status = resp.status
        self.headers = {k.lower(): v for k, v in resp.headers.items()}

    async def next(self, within: float | None = None) -> bytes | None:
        """The next bytes; None at the end. Raises `StreamInterruptedError` when the
        body is cut, `APITimeoutError` after the deployment's timeout (or `within`
        seconds, when shorter) without bytes."""
        if self._done:
            return None
        d = self._d
        limit = self._timeout if within is None else min(within, self._timeout)
        try:
            async with asyncio.timeout(limit):
                data = await self._resp.content.readany()
        except TimeoutError:
            self.close()
            err: InterlockError = APITimeoutError(
                f"no bytes within {limit:.3g} s", deployment_id=d.id
            )
        except (aiohttp.ClientError, OSError) as exc:
            self.close()
            err = StreamInterruptedError(
                f"the body was cut: {type(exc).__name__}", deployment_id=d.id
            )
        else:
            if not data:
                self.close()
                return None
            return data
        raise err

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._resp.close()


class EndpointClient:
    """Sends endpoint and passthrough requests for the router (one per router)."""

    __slots__ = ("_client", "_deadlines", "_targets")

    def __init__(self, client: HttpClient, deadlines: DeadlineWheel) -> None:
        self._client = client
        self._deadlines = deadlines
        self._targets: dict[str, _Target] = {}

    def _target(self, d: Deployment, wire: str) -> _Target:
        t = self._targets.get(d.id or "")
        if t is not None and t.deployment is d:
            return t
        key = d.api_key_value()
        headers: dict[str, str] = {}
        query: dict[str, str] = {}
        base = d.api_base or ""
        if wire == "azure":
            base = f"{base}/openai/deployments/{quote(d.model, safe='')}"
            query["api-version"] = d.api_version or DEFAULT_AZURE_API_VERSION
            if key:
                headers["api-key"] = key
        elif wire == "anthropic":
            headers["anthropic-version"] = "2023-06-01"
            if key:
                headers["x-api-key"] = key
        elif wire == "gemini":
            if key:
                headers["x-goog-api-key"] = key
        elif key:
            headers["Authorization"] = f"Bearer {key}"
        headers.update(d.headers)
        t = self._targets[d.id or ""] = _Target(base.rstrip("/"), query, headers, key, d)
        return t

    def forget(self, deployment_id: str) -> None:
        """Drop what was made for a deployment the router no longer has (its headers
        hold its key)."""
        self._targets.pop(deployment_id, None)

    def url(self, d: Deployment, wire: str, path: str) -> URL:
        """The URL of `path` (relative to the deployment's base) at `d`."""
        t = self._target(d, wire)
        url = URL(f"{t.base}/{path.lstrip('/')}", encoded=True)
        if t.query and not url.query_string:
            url = url.with_query(t.query)
        return url

    async def typed(
        self,
        d: Deployment,
        wire: str,
        endpoint: str,
        payload: dict[str, Any] | None,
        timeout: float,
        file: FilePart | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> tuple[bytes, str]:
        """POST an endpoint's JSON `payload` (or a multipart form of `fields` and
        `file`); the body and its content type, or a typed error for a failure."""
        t = self._target(d, wire)
        if file is not None:
            body, ctype = await _multipart(fields or {}, file)
        else:
            body, ctype = orjson.dumps(payload), "application/json"
        headers = {**t.headers, "Content-Type": ctype}
        url = self.url(d, wire, _PATHS[endpoint])
        try:
            with self._deadlines.timeout(timeout):
                async with await _send(self._client, d, "POST", url, body, headers) as resp:
                    raw = await resp.read()
                    if resp.status >= 400:
                        raise openai_error(d, resp.status, resp.headers, raw, t.secret)
                    return raw, resp.headers.get("Content-Type", "")
        except Exception as exc:  # typed below, or raised as it is
            err = typed_error(d, t.secret, exc, timeout, "response")
            if err is None or err is exc:
                raise
        raise err

    async def open_bytes(
        self,
        d: Deployment,
        wire: str,
        method: str,
        url: URL,
        body: bytes | None,
        headers: Mapping[str, str],
        timeout: float,
        *,
        answers: bool = False,
    ) -> ByteSource | PassthroughResponse:
        """Send and wait for the first bytes of the body (failures until then are
        ordinary attempt failures). With `answers`, a 4xx that is not the deployment's
        fault comes back as a `PassthroughResponse` instead of an error."""
        t = self._target(d, wire)
        resp: aiohttp.ClientResponse | None = None
        try:
            with self._deadlines.timeout(timeout):
                resp = await _send(self._client, d, method, url, body, {**t.headers, **headers})
                if resp.status >= 400:
                    raw = await resp.read()
                    if answers and not _failed(resp.status):
                        return _answer(resp, raw, d)
                    raise openai_error(d, resp.status, resp.headers, raw, t.secret)
                first = await resp.content.readany()
                return ByteSource(resp, d, first)
        except BaseException as exc:
            if resp is not None:
                resp.close()
            if not isinstance(exc, Exception):
                raise
            err = typed_error(d, t.secret, exc, timeout, "first bytes")
            if err is None or err is exc:
                raise
        raise err

    async def request(
        self,
        d: Deployment,
        wire: str,
        method: str,
        url: URL,
        body: bytes | None,
        headers: Mapping[str, str],
        timeout: float,
    ) -> PassthroughResponse:
        """One passthrough request, read whole. A status the deployment is to blame
        for (5xx, 401, 402, 403, 408, 429) is raised as its typed error."""
        t = self._target(d, wire)
        try:
            with self._deadlines.timeout(timeout):
                async with await _send(
                    self._client, d, method, url, body, {**t.headers, **headers}
                ) as resp:
                    raw = await resp.read()
                    if _failed(resp.status):
                        raise openai_error(d, resp.status, resp.headers, raw, t.secret)
                    return _answer(resp, raw, d)
        except Exception as exc:  # typed below, or raised as it is
            err = typed_error(d, t.secret, exc, timeout, "response")
            if err is None or err is exc:
                raise
        raise err


def clean_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """The caller's headers for a passthrough, without those aiohttp sets itself."""
    if not headers:
        return {}
    return {k: v for k, v in headers.items() if k.lower() not in _DROP_HEADERS}


def _failed(status: int) -> bool:
    return status >= 500 or status in _FAILED


def _answer(resp: aiohttp.ClientResponse, raw: bytes, d: Deployment) -> PassthroughResponse:
    headers = {k.lower(): v for k, v in resp.headers.items()}
    usage = None
    if resp.status < 300 and "json" in headers.get("content-type", ""):
        try:
            usage = usage_of(orjson.loads(raw))
        except orjson.JSONDecodeError:
            usage = None
    return PassthroughResponse(resp.status, headers, raw, usage, d.id or "", d.group)


async def _send(
    client: HttpClient,
    d: Deployment,
    method: str,
    url: URL,
    body: bytes | None,
    headers: Mapping[str, str],
) -> aiohttp.ClientResponse:
    """`http.send` (one resend on a fresh connection when a pooled one was closed by
    the server), through the deployment's own proxy/TLS client when it has one."""
    if client.networks is not None:
        client = client.networks.get(d.id or "", client)
    return await send(client, url, body, headers, method)


async def _multipart(fields: Mapping[str, Any], file: FilePart) -> tuple[bytes, str]:
    form = aiohttp.FormData()
    for name, value in fields.items():
        if isinstance(value, list | tuple):
            # OpenAI's form arrays: `timestamp_granularities[]=word` once per item.
            for item in value:
                form.add_field(f"{name}[]", str(item))
        elif isinstance(value, bool):
            form.add_field(name, "true" if value else "false")
        elif isinstance(value, dict):
            form.add_field(name, orjson.dumps(value).decode(), content_type="application/json")
        else:
            form.add_field(name, str(value))
    form.add_field("file", file.data, filename=file.filename, content_type=file.content_type)
    payload = form()
    return await payload.as_bytes(), payload.content_type
