"""`FakeBedrock`: a loopback server speaking the Bedrock Runtime API (Converse,
ConverseStream, InvokeModel for Titan and Cohere embeddings) that verifies the SigV4
signature of every request.

Written from the AWS API reference: ``POST /model/{modelId}/converse`` and
``/converse-stream`` (the stream in the binary event-stream framing), ``/invoke``.
Errors are ``{"message"}`` bodies with ``x-amzn-ErrorType``. Faults from the shared
script render as Bedrock's: a rate limit is ``ThrottlingException`` (429), 503 is
``ServiceUnavailableException``, a context-window fault is a ``ValidationException``
("Input is too long for requested model."), a content-policy fault is a 200 whose
``stopReason`` is ``guardrail_intervened``; ``Fault.status(429,
error_type="ModelNotReadyException")`` names the exception type.

With Claude's thinking on (``additionalModelRequestFields.thinking``), the answer
starts with a signed ``reasoningContent`` block (streamed as ``text`` and ``signature``
deltas), and a final assistant turn that called a tool must come back starting with
a reasoning block, its signature one the fake issued: what Claude on Bedrock requires
(https://docs.aws.amazon.com/bedrock/latest/userguide/claude-messages-thinking-encryption.html).

Every request must be signed for service ``bedrock`` in `region` with the fake's
access key (and session token, if it has one): the fake recomputes the signature with
botocore over the path exactly as received and rejects a wrong one with a 403
``InvalidSignatureException``, as AWS does. The key checks that need no body happen
on arrival (a request refused there takes no scripted fault); the signature itself,
which covers the body, is checked after reading it, so a request with a wrong
signature but the right key does take one.
"""

from __future__ import annotations

import asyncio
import calendar
import hmac
import re
import time
from typing import Any

import orjson
from aiohttp import web

from interlock.testing.converse_checks import check_converse, check_thinking, thinking_on
from interlock.testing.eventstream import event_frame
from interlock.testing.fake_anthropic import ToolReply
from interlock.testing.fake_upstream import FakeUpstream
from interlock.testing.faults import Fault, _apply, _drop, _positive_int
from interlock.testing.wire import (
    BadRequest,
    Endpoint,
    Json,
    Record,
    Request,
    Response,
    split_text,
    tokens_for,
    unit_vector,
)

__all__ = ["TEST_ACCESS_KEY_ID", "TEST_SECRET_ACCESS_KEY", "FakeBedrock"]

TEST_ACCESS_KEY_ID = "AKIDFAKEBEDROCK0EXAMPLE"
TEST_SECRET_ACCESS_KEY = "fake/bedrock/secret+key/0123456789EXAMPLE"

_PATH = re.compile(r"^/model/([^/]+)/(converse|converse-stream|invoke)$")
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
    r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$"
)
_BY_STATUS = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
_STREAM_HEADERS = {"Content-Type": "application/vnd.amazon.eventstream"}
_CORAL = "http://internal.amazon.com/coral/com.amazon.bedrock/"
_THROTTLED = "Too many requests, please wait before trying again."
_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method."
)
GUARDRAIL_MESSAGE = "Sorry, the model cannot answer this question."
THOUGHT = "Thinking it over."


def bedrock_error(status: int, kind: str, message: str) -> web.Response:
    """A Bedrock error response."""
    headers = {"Content-Type": "application/json", "x-amzn-ErrorType": f"{kind}:{_CORAL}"}
    return web.Response(body=orjson.dumps({"message": message}), status=status, headers=headers)


class FakeBedrock(FakeUpstream):
    """A Bedrock Runtime server on loopback; options as `FakeUpstream` (`api_key` is not
    used: requests are signed), plus `tool_calls` (a `ToolReply`), `region` and the
    credentials it accepts. `url` is the `api_base` of a ``bedrock`` deployment."""

    def __init__(
        self,
        *,
        tool_calls: ToolReply | None = None,
        region: str = "us-east-1",
        access_key_id: str = TEST_ACCESS_KEY_ID,
        secret_access_key: str = TEST_SECRET_ACCESS_KEY,
        session_token: str | None = None,
        **options: Any,
    ) -> None:
        options.setdefault("name", "bedrock")
        if options.pop("api_key", None) is not None:
            raise ValueError("FakeBedrock: requests are signed; give access_key_id and friends")
        super().__init__(**options)
        self._tool_reply = tool_calls
        self._region = region
        self._credentials = (access_key_id, secret_access_key, session_token)
        self._routes: dict[str, Endpoint] = {
            "converse": self._converse,
            "converse-stream": self._converse,
            "invoke": self._invoke,
        }
        self._rejected = 0
        self._signatures: set[str] = set()

    @property
    def url(self) -> str:
        """The `api_base`: ``http://host:port``."""
        return self.base_url

    @property
    def signatures_rejected(self) -> int:
        """Requests refused for their credentials or signature."""
        return self._rejected

    def __repr__(self) -> str:
        return super().__repr__().replace("FakeUpstream(", "FakeBedrock(", 1)

    # -- routing and signatures ------------------------------------------------------

    def _route(self, method: str, path: str) -> tuple[Endpoint, bool] | None:
        match = _PATH.match(path)
        return (self._routes[match.group(2)], True) if match and method == "POST" else None

    def _wants_stream(self, request: Request, body: Json) -> bool:
        return request.path.endswith("/converse-stream")

    def _api_key_of(self, request: Request) -> str | None:
        # The access key id (not a secret) stands in the log where a key would.
        match = _AUTH.match(request.headers.get("Authorization", ""))
        return match.group(1) if match else None

    def _auth_problem(self, headers: Any) -> tuple[str, str] | None:
        """What AWS would refuse before looking at the signature, as (type, message)."""
        match = _AUTH.match(headers.get("Authorization", ""))
        if match is None:
            return ("MissingAuthenticationTokenException", "Missing Authentication Token")
        key, day, region, service = match.group(1, 2, 3, 4)
        access_key_id, _, token = self._credentials
        if key != access_key_id:
            return (
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        if region != self._region or service != "bedrock":
            return (
                "InvalidSignatureException",
                f"Credential should be scoped to a valid "
                f"region and service: expected {self._region}/bedrock.",
            )
        if token is not None and headers.get("X-Amz-Security-Token") != token:
            return (
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        stamp = headers.get("X-Amz-Date", "")
        try:
            at = calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ"))
        except ValueError:
            return ("IncompleteSignatureException", "X-Amz-Date is missing or malformed.")
        if not stamp.startswith(day) or abs(time.time() - at) > 300:
            return ("InvalidSignatureException", "Signature expired.")
        return None

    def _authorized(self, request: Request, api_key: str | None) -> bool:
        if self._route(request.method, request.path) is None:
            return True  # answered with a 404 anyway
        ok = self._auth_problem(request.headers) is None
        self._rejected += not ok
        return ok

    def _unauthorized(self, record: Record) -> Response:
        kind, message = self._auth_problem(record.headers) or ("AccessDeniedException", "")
        record.status = 403
        return bedrock_error(403, kind, message)

    def signature_matches(self, request: Request, body: bytes) -> bool:
        """Whether the request's signature is the one botocore computes, with this fake's
        credentials, over the method, the path as received, the signed headers and
        `body`."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        match = _AUTH.match(request.headers.get("Authorization", ""))
        if match is None:
            return False
        names = match.group(5).split(";")
        if "host" not in names or any(n not in request.headers for n in names):
            return False
        headers = {n: request.headers[n] for n in names}
        url = f"{request.scheme}://{request.host}{request.raw_path}"
        aws = AWSRequest(method=request.method, url=url, data=body, headers=headers)
        aws.context["timestamp"] = request.headers.get("X-Amz-Date", "")
        signer = SigV4Auth(Credentials(*self._credentials), "bedrock", self._region)
        if signer.signed_headers(signer.headers_to_sign(aws)) != match.group(5):
            return False
        expected = signer.signature(signer.string_to_sign(aws, signer.canonical_request(aws)), aws)
        return hmac.compare_digest(expected, match.group(6))

    async def _respond(
        self,
        request: Request,
        record: Record,
        target: tuple[Endpoint, bool] | None,
        authorized: bool,
    ) -> Response:
        if target is not None and authorized:
            body = await request.read()
            if not self.signature_matches(request, body):
                self._rejected += 1
                record.status = 403
                return bedrock_error(403, "InvalidSignatureException", _MISMATCH)
        return await super()._respond(request, record, target, authorized)

    # -- errors and faults -------------------------------------------------------------

    def _error_response(self, record: Record, status: int, message: str, **_: Any) -> Response:
        record.status = status
        kind = "ResourceNotFoundException" if status == 404 else _BY_STATUS.get(status, "")
        return bedrock_error(status, kind or "InternalServerException", message)

    async def _apply_fault(self, fault: Fault, request: Request) -> Response | None:
        status = fault.http_status
        if status is None or fault.kind == "content_policy":
            return await _apply(fault, request) if status is None else None
        kind = _BY_STATUS.get(status, "InternalServerException")
        message = fault.message or "Injected fault."
        if fault.error_type and fault.error_type.endswith("Exception"):
            kind = fault.error_type
        if fault.kind == "rate_limit":
            kind, message = (
                "ThrottlingException",
                "Too many requests, please wait before trying again.",
            )
        elif fault.kind == "context_window":
            kind, message = "ValidationException", "Input is too long for requested model."
        return bedrock_error(status, kind, message)

    # -- endpoints ------------------------------------------------------------------

    async def _converse(self, request: Request, record: Record, body: Json) -> Response:
        chars = check_converse(body)
        thought: Json | None = None
        if thinking_on(body):
            check_thinking(body["messages"], self._signatures)
            thought = {"text": THOUGHT, "signature": f"sig-{self.name}-{next(self._ids)}"}
            self._signatures.add(thought["signature"])
        calls = list(self._tool_reply(body)) if self._tool_reply is not None else []
        text = "" if calls else (self._reply if isinstance(self._reply, str) else self._reply(body))
        guarded = record.fault is not None and record.fault.kind == "content_policy"
        if guarded:
            text, calls, thought = GUARDRAIL_MESSAGE, [], None
        uses = [
            {
                "toolUseId": f"tooluse_{self.name}_{next(self._ids)}",
                "name": name,
                "input": dict(args),
            }
            for name, args in calls
        ]
        thought_chars = len(THOUGHT) if thought else 0
        out = tokens_for(
            thought_chars + len(text) + sum(len(orjson.dumps(u["input"])) for u in uses)
        )
        prompt = tokens_for(chars)
        usage = {"inputTokens": prompt, "outputTokens": out, "totalTokens": prompt + out}
        stop = "guardrail_intervened" if guarded else "tool_use" if uses else "end_turn"
        if not record.stream:
            content: list[Json] = (
                [{"reasoningContent": {"reasoningText": thought}}] if thought else []
            )
            content += ([{"text": text}] if text else []) + [{"toolUse": u} for u in uses]
            answer = {
                "output": {"message": {"role": "assistant", "content": content}},
                "stopReason": stop,
                "usage": usage,
                "metrics": {"latencyMs": 1},
            }
            record.status = 200
            return web.Response(
                body=orjson.dumps(answer), headers={"Content-Type": "application/json"}
            )
        return await self._send_events(
            request, record, self._frames(thought, text, uses, stop, usage)
        )

    def _frames(
        self, thought: Json | None, text: str, uses: list[dict[str, Any]], stop: str, usage: Json
    ) -> list[bytes]:
        frames = [event_frame("messageStart", {"role": "assistant"})]
        index = 0
        pieces: list[Json] = []
        if thought:  # reasoning text in pieces, then its signature
            pieces = [{"reasoningContent": {"text": p}} for p in split_text(thought["text"], 2)]
            pieces.append({"reasoningContent": {"signature": thought["signature"]}})
        texts = [{"text": p} for p in split_text(text, self._stream_chunks)] if text else []
        for deltas in (pieces, texts):  # one content block each, when there is one
            if not deltas:
                continue
            for delta in deltas:
                frames.append(
                    event_frame("contentBlockDelta", {"contentBlockIndex": index, "delta": delta})
                )
            frames.append(event_frame("contentBlockStop", {"contentBlockIndex": index}))
            index += 1
        for use in uses:
            start = {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}
            frames.append(
                event_frame("contentBlockStart", {"contentBlockIndex": index, "start": start})
            )
            for piece in split_text(orjson.dumps(use["input"]).decode(), 2):
                delta = {"toolUse": {"input": piece}}
                frames.append(
                    event_frame("contentBlockDelta", {"contentBlockIndex": index, "delta": delta})
                )
            frames.append(event_frame("contentBlockStop", {"contentBlockIndex": index}))
            index += 1
        frames.append(event_frame("messageStop", {"stopReason": stop}))
        frames.append(event_frame("metadata", {"usage": usage, "metrics": {"latencyMs": 1}}))
        return frames

    async def _send_events(self, request: Request, record: Record, frames: list[bytes]) -> Response:
        # Like FakeUpstream._stream, in the event-stream content type; a cut_stream
        # fault counts event messages.
        fault = record.fault
        cut = fault.after_chunks if fault is not None and fault.kind == "cut_stream" else None
        response = web.StreamResponse(headers=_STREAM_HEADERS)
        response.enable_chunked_encoding()
        await response.prepare(request)
        for i, frame in enumerate(frames if cut is None else frames[:cut]):
            if i and self._chunk_interval > 0:
                await asyncio.sleep(self._chunk_interval)
            await response.write(frame)
        if cut is not None:
            return _drop(request)
        record.status = 200
        await response.write_eof()
        return response

    async def _invoke(self, request: Request, record: Record, body: Json) -> Response:
        match = _PATH.match(request.path)
        model = match.group(1) if match else ""
        if "titan-embed" in model:
            text = body.get("inputText")
            if not isinstance(text, str) or not text:
                raise BadRequest("Malformed input request: inputText is required")
            dim = body.get("dimensions", self._embedding_dim)
            if not _positive_int(dim):
                raise BadRequest("Malformed input request: dimensions must be a positive int")
            answer: Json = {
                "embedding": list(unit_vector(b"s:" + text.encode(), dim)),
                "inputTextTokenCount": tokens_for(len(text)),
            }
        elif "cohere.embed" in model:
            texts = body.get("texts")
            if not isinstance(texts, list) or not texts or len(texts) > 96:
                raise BadRequest("Malformed input request: texts must hold 1 to 96 strings")
            if body.get("input_type") not in (
                "search_document",
                "search_query",
                "classification",
                "clustering",
            ):
                raise BadRequest("Malformed input request: input_type is required")
            vectors = [
                list(unit_vector(b"s:" + str(t).encode(), self._embedding_dim)) for t in texts
            ]
            answer = {
                "embeddings": vectors,
                "id": f"emb-{next(self._ids)}",
                "response_type": "embeddings_floats",
                "texts": texts,
            }
        else:
            raise BadRequest(f"FakeBedrock invokes only Titan and Cohere embeddings, not {model}")
        record.status = 200
        return web.Response(body=orjson.dumps(answer), headers={"Content-Type": "application/json"})
