"""The AWS Bedrock transport: Converse and ConverseStream for chat, InvokeModel for
Titan and Cohere embeddings; requests signed with SigV4 by botocore.

Wire format (Bedrock Runtime API reference):
``POST {api_base}/model/{modelId}/converse`` and ``/converse-stream``
(https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html,
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html),
``/invoke`` (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_InvokeModel.html).
Model ids contain ``:`` (``anthropic.claude-3-5-sonnet-20240620-v1:0``): the path is
percent-encoded once (``%3A``), signed in that form, and sent byte for byte as signed
(yarl is told the URL is already encoded, so it does not touch it).

Errors are ``{"message"}`` bodies with the type in the ``x-amzn-ErrorType`` header
(``ThrottlingException:http://...``); they map onto the error tree below.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson
from yarl import URL

from interlock.config import Deployment
from interlock.deadline import DeadlineWheel
from interlock.errors import (
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ContextWindowExceededError,
    InterlockError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
)
from interlock.providers.aws import AwsCredentials, FrozenCredentials, sign
from interlock.providers.bedrock_converse import build_converse, parse_converse
from interlock.providers.bedrock_stream import BedrockStream, scrub_all
from interlock.providers.credentials import credential_within
from interlock.providers.http import (
    ErrorMapper,
    HttpClient,
    dumps_body,
    malformed,
    open_sse,
    post_bytes,
)
from interlock.providers.http_errors import error_from_response, parse_retry_after
from interlock.providers.native import PARSE_ERRORS
from interlock.providers.params import call_headers, check_unsupported, merge_extra, split_extra
from interlock.types import ChatCompletion, Embedding, EmbeddingResponse, Request, Usage

__all__ = ["BedrockTransport", "bedrock_error"]

_ERRORS: dict[str, type[InterlockError]] = {
    "ThrottlingException": RateLimitError,
    "ServiceQuotaExceededException": RateLimitError,
    # The model is being loaded or scaled: that deployment cannot serve for now.
    "ModelNotReadyException": ServiceUnavailableError,
    "ServiceUnavailableException": ServiceUnavailableError,
    "InternalServerException": InternalServerError,
    "ModelErrorException": InternalServerError,
    "ModelStreamErrorException": InternalServerError,
    "ModelTimeoutException": APITimeoutError,
    "AccessDeniedException": PermissionDeniedError,
    "ResourceNotFoundException": NotFoundError,
    # Refusals of the signature or credentials by AWS's front door.
    "UnrecognizedClientException": AuthenticationError,
    "InvalidSignatureException": AuthenticationError,
    "IncompleteSignatureException": AuthenticationError,
    "MissingAuthenticationTokenException": AuthenticationError,
    "ExpiredTokenException": AuthenticationError,
    "InvalidClientTokenId": AuthenticationError,
    "SignatureDoesNotMatch": AuthenticationError,
}
# The wording of Bedrock's ValidationException when the prompt does not fit.
_CONTEXT_MARKERS = ("input is too long", "too many input tokens", "prompt is too long",
                    "exceed context limit", "maximum context length", "context window")  # fmt: skip
_JSON = {"Content-Type": "application/json", "Accept": "application/json"}
_STREAM = {"Content-Type": "application/json", "Accept": "application/vnd.amazon.eventstream"}
_COHERE_BATCH = 96  # texts per Cohere Embed call (the API's limit)


def _error_type(headers: Mapping[str, str], data: Any) -> str:
    kind = headers.get("x-amzn-ErrorType") or ""
    if not kind and isinstance(data, dict):
        kind = str(data.get("__type") or data.get("code") or "")
    return kind.split(":", 1)[0].rsplit("#", 1)[-1]


def bedrock_error(
    d: Deployment,
    status: int,
    headers: Mapping[str, str],
    raw: bytes,
    secrets: tuple[str, ...] = (),
) -> InterlockError:
    """A Bedrock error response on the error tree; `secrets` are scrubbed from it."""
    try:
        data: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None
    kind = _error_type(headers, data)
    message = ""
    if isinstance(data, dict):
        message = str(data.get("message") or data.get("Message") or "")[:500]
    message = scrub_all(message, secrets)
    text = f"bedrock returned HTTP {status} {kind}: {message}".rstrip(": ")
    kw: dict[str, Any] = {"status_code": status, "deployment_id": d.id}
    cls = _ERRORS.get(kind)
    if cls is RateLimitError or cls is ServiceUnavailableError:
        return cls(text, retry_after=parse_retry_after(headers), **kw)
    if cls is not None:
        return cls(text, **kw)
    if kind == "ValidationException":
        if any(m in message.lower() for m in _CONTEXT_MARKERS):
            return ContextWindowExceededError(text, **kw)
        return BadRequestError(text, **kw)
    err = error_from_response(
        status, headers, raw, provider="bedrock", deployment_id=d.id or "", secret=None
    )
    err.message = scrub_all(err.message, secrets)
    err.args = (err.message,)
    return err


class BedrockTransport:
    """Speaks the Bedrock Runtime API over the router's shared session."""

    provider = "bedrock"

    def __init__(self, client: HttpClient, deadlines: DeadlineWheel | None = None) -> None:
        self._client = client
        self._deadlines = deadlines or DeadlineWheel()
        self._aws = AwsCredentials()

    @staticmethod
    def _url(d: Deployment, action: str) -> str:
        return f"{d.api_base}/model/{quote(d.model, safe='')}/{action}"

    async def _signed(
        self, d: Deployment, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[dict[str, str], FrozenCredentials, ErrorMapper]:
        cache = self._aws.for_deployment(d)
        credentials = await credential_within(cache, d, timeout, self._deadlines)
        signed = sign(credentials, d.aws_region or "", url, body, headers)
        secrets = credentials.secrets

        def error(
            d: Deployment, status: int, headers: Mapping[str, str], raw: bytes, _: str | None
        ) -> InterlockError:
            err = bedrock_error(d, status, headers, raw, secrets)
            if isinstance(err, AuthenticationError):
                # Expired or revoked: fetch again rather than sign with them again.
                cache.invalidate(credentials)
            return err

        return signed, credentials, error

    async def _post(
        self,
        d: Deployment,
        action: str,
        payload: dict[str, Any],
        timeout: float,
        params: Mapping[str, Any],
    ) -> Any:
        url = self._url(d, action)
        body = dumps_body(payload)
        # The deployment's and the call's headers are signed with the rest.
        wanted = call_headers({**_JSON, **d.headers}, params)
        headers, credentials, error = await self._signed(d, url, body, wanted, timeout)
        raw = await post_bytes(
            self._client, self._deadlines, d, URL(url, encoded=True), body, headers,
            credentials.token, timeout, error,
        )  # fmt: skip
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            err = malformed(d, exc)
        raise err  # off the chain: the parser's exception may quote the body

    async def chat(self, d: Deployment, request: Request, timeout: float) -> ChatCompletion:
        data = await self._post(d, "converse", build_converse(d, request), timeout, request.params)
        try:
            return parse_converse(data, d)
        except PARSE_ERRORS as exc:
            err = malformed(d, exc)
        raise err  # off the chain: the parser's exception may quote the body

    async def open_stream(self, d: Deployment, request: Request, timeout: float) -> BedrockStream:
        url = self._url(d, "converse-stream")
        body = dumps_body(build_converse(d, request))
        wanted = call_headers({**_STREAM, **d.headers}, request.params)
        headers, credentials, error = await self._signed(d, url, body, wanted, timeout)
        secrets = credentials.secrets
        return await open_sse(
            self._client, self._deadlines, d, URL(url, encoded=True), body, headers,
            credentials.token, timeout, error, lambda resp: BedrockStream(resp, d, secrets),
        )  # fmt: skip

    async def embed(self, d: Deployment, request: Request, timeout: float) -> EmbeddingResponse:
        params, extra = split_extra(request.params)
        items = [request.input] if isinstance(request.input, str) else request.input
        if (
            not isinstance(items, list | tuple)
            or not items
            or not all(isinstance(t, str) for t in items)
        ):
            raise BadRequestError(
                "bedrock embeddings take a string or a list of strings, not token ids",
                deployment_id=d.id,
            )
        bodies = _embedding_bodies(d, request, list(items), params, extra)
        # Titan embeds one text per call: the calls run side by side, each under the
        # attempt's timeout.
        answers = await asyncio.gather(
            *(self._post(d, "invoke", b, timeout, request.params) for b in bodies)
        )
        try:
            return _parse_embeddings(d, answers)
        except PARSE_ERRORS as exc:
            err = malformed(d, exc)
        raise err  # off the chain: the parser's exception may quote the body

    async def aclose(self) -> None:
        self._aws.close()
        await self._client.aclose()

    def __repr__(self) -> str:
        return f"BedrockTransport(open={self._client.is_open})"


def _is_titan(d: Deployment) -> bool:
    return "titan-embed" in d.model


def _embedding_bodies(
    d: Deployment,
    request: Request,
    items: list[str],
    params: Mapping[str, Any],
    extra: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """InvokeModel bodies: one per text for Titan
    (https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-titan-embed-text.html),
    up to 96 texts each for Cohere Embed
    (https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-embed.html)."""
    titan = _is_titan(d)
    if not titan and "cohere.embed" not in d.model:
        raise BadRequestError(
            f"bedrock embeddings support Titan and Cohere Embed models, not {d.model!r}",
            deployment_id=d.id,
        )
    mapped = ("dimensions",) if titan and "v1" not in d.model else ()
    unsupported = [
        k for k, v in params.items()
        if k not in mapped and not (k == "encoding_format" and v == "float")
    ]  # fmt: skip
    check_unsupported("bedrock", unsupported, request.unsupported_params, d.id)
    if titan:
        bodies: list[dict[str, Any]] = []
        for text in items:
            body: dict[str, Any] = {"inputText": text}
            if params.get("dimensions") and "dimensions" in mapped:
                body["dimensions"] = params["dimensions"]
            bodies.append(merge_extra(body, extra, deep=True))
        return bodies
    return [
        # input_type is required by Cohere v3 models; extra_body may change it.
        merge_extra({"texts": items[i : i + _COHERE_BATCH], "input_type": "search_document"},
                    extra, deep=True)
        for i in range(0, len(items), _COHERE_BATCH)
    ]  # fmt: skip


def _parse_embeddings(d: Deployment, answers: list[Any]) -> EmbeddingResponse:
    vectors: list[list[float]] = []
    tokens = 0
    for answer in answers:
        if _is_titan(d):
            vectors.append([float(v) for v in answer["embedding"]])
            tokens += int(answer.get("inputTextTokenCount") or 0)
        else:
            found = answer["embeddings"]
            # {"float": [...]} when embedding_types was asked for, else a plain list.
            batch = found["float"] if isinstance(found, dict) else found
            vectors.extend([float(v) for v in vector] for vector in batch)
    data = [Embedding(i, v) for i, v in enumerate(vectors)]
    usage = Usage(tokens, 0, tokens) if tokens else None
    return EmbeddingResponse(
        data=data, model=d.model, usage=usage, deployment_id=d.id or "", group=d.group
    )
