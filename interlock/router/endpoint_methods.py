"""The Router's methods for images, audio, moderations, rerank and the passthrough
(docs/endpoints.md). A mixin `Router` inherits: every method builds a `Request` and
runs it through the same pipeline as chat (selection, accounting, health, retries,
fallbacks, one deadline)."""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import orjson

from interlock.config import RouterConfig
from interlock.endpoint_types import (
    Endpoint,
    ImagesResponse,
    ModerationResponse,
    PassthroughResponse,
    RerankResponse,
    Transcription,
    UnsupportedEndpointError,
)
from interlock.providers.endpoints import FilePart, clean_headers
from interlock.router.attempt import Send
from interlock.router.calls import (
    call_metadata,
    call_request_id,
    group_of,
    request_strategy,
    tag_set,
)
from interlock.router.endpoint_calls import (
    ByteStream,
    CapableOnly,
    complete_bytes,
    complete_passthrough,
    complete_result,
    incapable,
    parser,
    passthrough_sender,
    speech_sender,
    typed_sender,
)
from interlock.router.pipeline import Complete, Pipeline
from interlock.router.traced import TracedPipeline
from interlock.router.wiring import RouterParts
from interlock.strategies.base import Strategy, StrategyLike
from interlock.strategies.registry import resolve_strategy
from interlock.types import Request, new_request_id

__all__ = ["AudioFile", "EndpointMethods"]

R = TypeVar("R")
T = TypeVar("T")
K = TypeVar("K", ImagesResponse, Transcription, ModerationResponse, RerankResponse)

AudioFile = bytes | str | os.PathLike[str] | BinaryIO | tuple[str, bytes] | tuple[str, bytes, str]
"""An upload: raw bytes (with ``filename=``), a path, a binary file object, or
``(filename, bytes[, content_type])`` as the openai SDK takes it."""

IMAGE_PARAMS = frozenset(
    ("background", "moderation", "n", "output_compression", "output_format", "quality",
     "response_format", "size", "style", "user", "extra_body")
)  # fmt: skip
TRANSCRIPTION_PARAMS = frozenset(
    ("language", "prompt", "response_format", "temperature", "timestamp_granularities",
     "include", "chunking_strategy", "extra_body")
)  # fmt: skip
SPEECH_PARAMS = frozenset(("instructions", "response_format", "speed", "extra_body"))
MODERATION_PARAMS = frozenset(("extra_body",))
RERANK_PARAMS = frozenset(("return_documents", "max_tokens_per_doc", "extra_body"))
_METHODS = frozenset(("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"))


class EndpointMethods:
    """`aimage_generation`, `atranscription`, `aspeech`, `amoderation`, `arerank` and
    `arequest` (see docs/endpoints.md). Each also takes `timeout`, `tags`, `strategy`,
    `metadata` and `request_id` as `Router.acompletion` does; the call's id is on its
    result (`request_id`), hook events, spans and errors."""

    __slots__ = ()

    config: RouterConfig
    parts: RouterParts
    _names: Mapping[str, str]
    _pipeline: Pipeline | TracedPipeline

    async def aimage_generation(
        self,
        model: str,
        prompt: str,
        *,
        timeout: float | None = None,
        tags: Sequence[str] = (),
        strategy: StrategyLike | None = None,
        metadata: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        **params: Any,
    ) -> ImagesResponse:
        """Images for `prompt` (OpenAI's ``images.generate``; ``POST /images/generations``).
        `params` are that API's options (``size``, ``n``, ``quality``, ...)."""
        if not isinstance(prompt, str) or not prompt:
            raise ValueError("prompt must be a non-empty string")
        body = _params(params, IMAGE_PARAMS, "aimage_generation")
        request = self._endpoint_request(
            "images", model, {"prompt": prompt}, body, _chars(prompt), tags, strategy,
            metadata, request_id,
        )  # fmt: skip
        return await self._typed(request, ImagesResponse, timeout)

    async def atranscription(
        self,
        model: str,
        file: AudioFile,
        *,
        filename: str | None = None,
        timeout: float | None = None,
        tags: Sequence[str] = (),
        strategy: StrategyLike | None = None,
        metadata: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        **params: Any,
    ) -> Transcription:
        """The text of an audio file (OpenAI's ``audio.transcriptions.create``; a
        multipart upload to ``/audio/transcriptions``). A ``response_format`` of
        ``text``, ``srt`` or ``vtt`` gives that text as `Transcription.text`."""
        body = _params(params, TRANSCRIPTION_PARAMS, "atranscription")
        if "stream" in params:
            raise TypeError("atranscription() does not stream; leave out stream")
        request = self._endpoint_request(
            "transcription", model, {}, body, 0, tags, strategy, metadata, request_id
        )
        part = await _file_part(file, filename)
        return await self._typed(request, Transcription, timeout, part)

    async def aspeech(
        self,
        model: str,
        input: str,
        voice: str,
        *,
        timeout: float | None = None,
        tags: Sequence[str] = (),
        strategy: StrategyLike | None = None,
        metadata: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        **params: Any,
    ) -> ByteStream:
        """Spoken audio of `input` (OpenAI's ``audio.speech.create``), as a `ByteStream`
        of the audio bytes once the first have arrived: a failure before them is
        retried elsewhere, a cut after them raises `StreamInterruptedError`.
        ``await stream.read()`` gives the whole file."""
        if not isinstance(input, str) or not input:
            raise ValueError("input must be a non-empty string")
        if not isinstance(voice, str) or not voice:
            raise ValueError("voice must be a non-empty string")
        body = _params(params, SPEECH_PARAMS, "aspeech")
        request = self._endpoint_request(
            "speech", model, {"input": input, "voice": voice}, body, _chars(input), tags,
            strategy, metadata, request_id, stream=True,
        )  # fmt: skip
        client = self.parts.endpoints
        return await self._run(request, timeout, speech_sender(client), complete_bytes)

    async def amoderation(
        self,
        model: str,
        input: str | Sequence[str] | Sequence[Mapping[str, Any]],
        *,
        timeout: float | None = None,
        tags: Sequence[str] = (),
        strategy: StrategyLike | None = None,
        metadata: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        **params: Any,
    ) -> ModerationResponse:
        """Whether `input` is flagged (OpenAI's ``moderations.create``): a string, a
        list of strings, or a list of text and image-URL parts."""
        if not input:
            raise ValueError("input must not be empty")
        body = _params(params, MODERATION_PARAMS, "amoderation")
        text = input if isinstance(input, str) else orjson.dumps(list(input)).decode()
        request = self._endpoint_request(
            "moderation", model, {"input": input}, body, _chars(text), tags, strategy,
            metadata, request_id,
        )  # fmt: skip
        return await self._typed(request, ModerationResponse, timeout)

    async def arerank(
        self,
        model: str,
        query: str,
        documents: Sequence[str],
        *,
        top_n: int | None = None,
        timeout: float | None = None,
        tags: Sequence[str] = (),
        strategy: StrategyLike | None = None,
        metadata: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        **params: Any,
    ) -> RerankResponse:
        """`documents` ordered by relevance to `query` (``POST /rerank`` as Cohere,
        Jina, vLLM and Together take it); `top_n` keeps the best n."""
        if not isinstance(query, str) or not query:
            raise ValueError("query must be a non-empty string")
        if isinstance(documents, str) or not documents:
            raise ValueError("documents must be a non-empty list of strings")
        if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int)):
            raise TypeError(f"top_n must be an int, got {top_n!r}")
        if top_n is not None and top_n < 1:
            raise ValueError(f"top_n must be >= 1, got {top_n!r}")
        body = _params(params, RERANK_PARAMS, "arerank")
        head: dict[str, Any] = {"query": query, "documents": list(documents)}
        if top_n is not None:
            head["top_n"] = top_n
        est = _chars(query) * len(documents) + sum(_chars(str(d)) for d in documents)
        request = self._endpoint_request(
            "rerank", model, head, body, est, tags, strategy, metadata, request_id
        )
        return await self._typed(request, RerankResponse, timeout)

    async def arequest(
        self,
        model: str,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        timeout: float | None = None,
        tags: Sequence[str] = (),
        strategy: StrategyLike | None = None,
        tokens: int = 0,
        metadata: Mapping[str, Any] | None = None,
        request_id: str | None = None,
    ) -> PassthroughResponse | ByteStream:
        """Send ``method path`` (relative to the chosen deployment's `api_base`) with
        its credentials, routed like chat. Returns the answer (`PassthroughResponse`),
        or with ``stream=True`` a `ByteStream` of its body once the first bytes came.
        A 5xx, 408, 429, 401, 402, 403, a timeout or a dropped connection is the
        deployment's failure and is retried elsewhere; any other status is an answer.
        `tokens` is reserved against TPM limits until the body reports its usage."""
        verb = method.upper() if isinstance(method, str) else ""
        if verb not in _METHODS:
            raise ValueError(f"method must be one of {sorted(_METHODS)}, got {method!r}")
        rel = _relative_path(path)
        if json is not None and data is not None:
            raise TypeError("arequest() takes json= or data=, not both")
        extra = clean_headers(headers)
        body: bytes | None = None
        if json is not None:
            body = orjson.dumps(json)
            extra.setdefault("Content-Type", "application/json")
        elif data is not None:
            body = data.encode() if isinstance(data, str) else bytes(data)
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
            raise ValueError(f"tokens must be an int >= 0, got {tokens!r}")
        request = self._endpoint_request(
            "passthrough", model, None, {}, tokens, tags, strategy, metadata, request_id,
            stream=stream,
        )  # fmt: skip
        client = self.parts.endpoints
        send = passthrough_sender(client, verb, rel, body, extra, stream)
        return await self._run(request, timeout, send, complete_passthrough)

    # --- shared steps ---------------------------------------------------------------

    async def _typed(
        self, request: Request, kind: type[K], timeout: float | None, file: FilePart | None = None
    ) -> K:
        endpoint: Endpoint = request.kind  # type: ignore[assignment]  # an endpoint's request
        client = self.parts.endpoints
        send = typed_sender(client, endpoint, parser(endpoint, kind), file)
        return await self._run(request, timeout, send, complete_result)

    def _endpoint_request(
        self,
        endpoint: Endpoint,
        model: str,
        head: Mapping[str, Any] | None,
        params: dict[str, Any],
        est: int,
        tags: Sequence[str],
        strategy: StrategyLike | None,
        metadata: Mapping[str, Any] | None,
        request_id: str | None,
        stream: bool = False,
    ) -> Request:
        """The call's `Request` (kind: the endpoint), its ``metadata=`` and
        ``request_id=`` checked as `Router.acompletion` checks them."""
        rid = new_request_id() if request_id is None else call_request_id(request_id)
        meta = call_metadata(metadata)
        group = group_of(self._names, model)
        parts = self.parts
        chain = parts.fallbacks.chains[group]
        excluded, first_ok = incapable(parts.pools, chain, endpoint)
        if not first_ok:
            providers = tuple(sorted({s.deployment.provider for s in parts.pools[group].states}))
            err = UnsupportedEndpointError(endpoint, group, providers)
            err.request_id = rid
            raise err
        spec = request_strategy(strategy)
        if excluded:
            inner: Strategy | None = None
            if isinstance(spec, str):
                inner = resolve_strategy(spec, parts.pools[group].rng)
            elif spec is not None:
                inner = spec
            spec = CapableOnly(excluded, parts.pools, inner)
        return Request(
            endpoint,
            group,
            input=head,
            params=params,
            stream=stream,  # a body read as it comes: never hedged, judged by its ttft
            tags=tag_set(tags),
            est_input_tokens=est,
            requested=model,
            strategy=spec,
            id=rid,
            metadata=meta,
        )

    async def _run(
        self, request: Request, timeout: float | None, send: Send[R], complete: Complete[R, T]
    ) -> T:
        if timeout is None:
            seconds = self.config.timeout
        elif not 0 < timeout < math.inf:
            raise ValueError(f"timeout must be a finite number of seconds > 0, got {timeout!r}")
        else:
            seconds = float(timeout)
        return await self._pipeline.run(request, seconds, send, complete)


def _params(params: Mapping[str, Any], known: frozenset[str], where: str) -> dict[str, Any]:
    unknown = params.keys() - known
    if unknown:
        raise TypeError(
            f"{where}() got unknown parameter(s) {sorted(unknown)}; "
            f"pass provider-specific ones in extra_body"
        )
    extra = params.get("extra_body")
    if extra is not None and not isinstance(extra, Mapping):
        raise TypeError(f"{where}(): extra_body must be a mapping, got {type(extra).__name__}")
    return dict(params)


def _chars(text: str) -> int:
    """A token estimate for TPM reservations (about four characters a token)."""
    return (len(text) + 3) // 4


def _relative_path(path: str) -> str:
    """`path` as a path under the deployment's base URL; a URL of its own (which would
    carry the deployment's credentials elsewhere) or ``..`` is refused."""
    if not isinstance(path, str) or not path:
        raise ValueError("path must be a non-empty string such as '/models'")
    head = path.split("?", 1)[0]
    if "://" in path or path.startswith("//") or ".." in head.split("/") or "\\" in head:
        raise ValueError(
            f"path must be relative to the deployment's api_base (like '/models'), got {path!r}"
        )
    return path.lstrip("/")


async def _file_part(file: AudioFile, filename: str | None) -> FilePart:
    """The upload as bytes and a name (a path is read off the event loop)."""
    if isinstance(file, tuple):
        if len(file) not in (2, 3) or not isinstance(file[1], bytes | bytearray):
            raise TypeError("file as a tuple must be (filename, bytes[, content_type])")
        ctype = file[2] if len(file) == 3 else "application/octet-stream"
        return FilePart(bytes(file[1]), str(file[0]), ctype)
    if isinstance(file, bytes | bytearray | memoryview):
        if not filename:
            raise ValueError(
                "filename= is required with raw bytes: the provider reads the audio "
                "format from its extension (e.g. filename='speech.mp3')"
            )
        return FilePart(bytes(file), filename)
    if isinstance(file, str | os.PathLike):
        p = Path(file)
        try:
            data = await asyncio.to_thread(p.read_bytes)
        except OSError as exc:
            raise ValueError(f"cannot read the audio file {str(p)!r}: {exc.strerror}") from None
        return FilePart(data, filename or p.name)
    read = getattr(file, "read", None)
    if read is None:
        raise TypeError(
            f"file must be bytes, a path, a binary file or (filename, bytes), "
            f"got {type(file).__name__}"
        )
    data = await asyncio.to_thread(read)
    if not isinstance(data, bytes | bytearray):
        raise TypeError("file must be opened in binary mode ('rb')")
    name = filename or os.path.basename(str(getattr(file, "name", "") or "")) or None
    if not name:
        raise ValueError("filename= is required for a file object without a name")
    return FilePart(bytes(data), name)
