"""`FakeUpstream`: a real OpenAI-compatible HTTP server on loopback with scripted faults.

The normal path is kept cheap (low-level aiohttp server, no access log, orjson, one
write per stream) so that benchmarks measure the client, not the fake.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import itertools
import struct
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

import orjson
from aiohttp import web

from interlock.testing.fake_endpoints import BYTE_STREAMS, add_routes, is_multipart
from interlock.testing.fake_responses import FakeResponses
from interlock.testing.faults import (
    _SILENT,
    Fault,
    FaultScript,
    _apply,
    _check_seconds,
    _drop,
    _positive_int,
)
from interlock.testing.wire import (
    JSON_HEADERS,
    BadRequest,
    Endpoint,
    Json,
    Record,
    Request,
    Response,
    embedding_items,
    error_response,
    message_chars,
    split_text,
    stream_frames,
    tokens_for,
    unit_vector,
)

__all__ = ["FakeUpstream", "ReceivedRequest", "Reply"]

Reply = str | Callable[[dict[str, Any]], str]
"""The assistant text: fixed, or computed from the parsed request body."""

_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_DONE = b"data: [DONE]\n\n"
_MAX_BODY = 64 * 1024 * 1024  # aiohttp's 1 MiB default is too small for image prompts
_SHUTDOWN_TIMEOUT = 2.0  # stop() cancels handlers first, so this is only a safety net


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """One log entry: what `FakeUpstream` received and what it did about it.

    `seq` is the 0-based arrival order since the first `start()` or `reset_log()`;
    `body` the parsed JSON object (None if absent or not an object); `stream` whether
    it asked for `"stream": true`; `at` and `finished_at` are `clock()` on arrival and
    when the handler ended; `fault` is the fault applied; `status` the HTTP status
    sent, None if none was (drop, hang, cut stream, client gone). `api_key` (the
    bearer token) and `headers` never appear in repr. Entries are snapshots taken
    when `FakeUpstream.received` is read: a running request shows `finished_at` None.
    """

    seq: int
    method: str
    path: str
    body: dict[str, Any] | None
    stream: bool
    at: float
    fault: Fault | None
    status: int | None
    api_key: str | None = field(repr=False)
    finished_at: float | None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def elapsed(self) -> float | None:
        """`finished_at - at`, or None while the request runs."""
        return None if self.finished_at is None else self.finished_at - self.at


_SNAPSHOT_FIELDS = tuple(f.name for f in dataclasses.fields(ReceivedRequest))


class FakeUpstream(FaultScript):
    """An OpenAI-compatible server on `host:port` with scripted faults and a request log.

    Use it as `async with FakeUpstream() as up:` or call `start()`/`stop()`. After
    `stop()` connections to `url` are refused; `start()` again rebinds the same
    port. Faults are scripted with the `FaultScript` methods (`push`, `always`,
    `clear`, `pending_faults`): every endpoint except `GET /v1/models` takes them;
    a request rejected for its API key or an unknown path does not consume one.
    See docs/testing.md.
    """

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, latency: float = 0.0,
        reply: Reply = "Hello from FakeUpstream.", stream_chunks: int = 4,
        chunk_interval: float = 0.0, model: str | None = None, api_key: str | None = None,
        embedding_dim: int = 8, name: str = "fake", clock: Callable[[], float] = time.monotonic,
        log_limit: int | None = None,
    ) -> None:  # fmt: skip
        for arg, value in (("stream_chunks", stream_chunks), ("embedding_dim", embedding_dim)):
            if not _positive_int(value):
                raise ValueError(f"FakeUpstream: {arg} must be an int >= 1, got {value!r}")
        if not 0 <= port <= 65535:
            raise ValueError(f"FakeUpstream: port must be in 0-65535, got {port!r}")
        if log_limit is not None and log_limit < 0:
            raise ValueError(f"FakeUpstream: log_limit must be >= 0 or None, got {log_limit!r}")
        self._host, self._port, self._name, self._clock = host, port, name, clock
        self._latency = _check_seconds("FakeUpstream", "latency", latency)
        self._chunk_interval = _check_seconds("FakeUpstream", "chunk_interval", chunk_interval)
        self._reply, self._stream_chunks, self._model = reply, stream_chunks, model
        self._api_key, self._embedding_dim = api_key, embedding_dim
        # A fixed reply is split and measured once, not per request.
        self._fixed_pieces = split_text(reply, stream_chunks) if isinstance(reply, str) else None
        self._fixed_tokens = tokens_for(len(reply)) if isinstance(reply, str) else 0
        entry = {"id": model or "fake-model", "object": "model", "created": 0, "owned_by": name}
        self._models_body = orjson.dumps({"object": "list", "data": [entry]})
        self.responses = FakeResponses(
            name, self._reply_text, self._model_for, stream_chunks, chunk_interval
        )
        """The Responses API endpoint (``POST /v1/responses``; see `FakeResponses`)."""
        # The flag marks API calls: they take faults and need a JSON object body.
        self._endpoints: dict[tuple[str, str], tuple[Endpoint, bool]] = {
            ("POST", "/v1/chat/completions"): (self._chat, True),
            ("POST", "/v1/embeddings"): (self._embeddings, True),
            ("POST", "/v1/responses"): (self.responses.serve, True),
            ("GET", "/v1/models"): (self._models, False),
        }
        super().__init__()
        self._log: deque[Record] = deque(maxlen=log_limit)
        self._seq = self._in_flight = self._max_in_flight = 0
        self._ids = itertools.count(1)
        self._endpoints.update(add_routes(self))  # images, audio, moderations, rerank
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.ServerRunner | None = None
        self._bound_port: int | None = None
        self._stopping = False

    async def start(self) -> None:
        """Bind and start serving. Raises RuntimeError if already running."""
        if self._runner is not None:
            raise RuntimeError(f"FakeUpstream {self._name!r} is already running")
        loop = asyncio.get_running_loop()
        factory = functools.partial(web.BaseRequest, loop=loop, client_max_size=_MAX_BODY)
        # handler_cancellation: a client that gives up (timeout, hedging) stops its
        # handler, as a real provider stops generating, so in_flight stays honest.
        server = web.Server(
            self._handle, request_factory=factory, handler_cancellation=True, access_log=None
        )
        runner = web.ServerRunner(server, shutdown_timeout=_SHUTDOWN_TIMEOUT)
        await runner.setup()
        port = self._port if self._bound_port is None else self._bound_port
        try:
            await web.TCPSite(runner, self._host, port, backlog=1024).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._bound_port = int(runner.addresses[0][1])
        self._runner, self._stopping = runner, False
        self._max_in_flight = self._in_flight

    async def stop(self) -> None:
        """Stop serving and close every connection. Idempotent.

        Requests still being handled (hung, delayed, mid-stream) are cancelled and
        their connections closed; stop() does not wait for them to finish.
        """
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._stopping = True
        for task in list(self._tasks):
            task.cancel()
        await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def name(self) -> str:
        """The name given at construction (used in response ids and `owned_by`)."""
        return self._name

    @property
    def running(self) -> bool:
        """True between `start()` and `stop()`."""
        return self._runner is not None

    @property
    def port(self) -> int:
        """The bound TCP port (known once started; kept after `stop()`)."""
        if self._bound_port is None:
            raise RuntimeError(f"FakeUpstream {self._name!r} has not been started")
        return self._bound_port

    @property
    def base_url(self) -> str:
        """`http://host:port`, without the `/v1` prefix."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        """The OpenAI-style `api_base`: `http://host:port/v1`."""
        return self.base_url + "/v1"

    @property
    def received(self) -> list[ReceivedRequest]:
        """Snapshot of the log, oldest first (only the newest `log_limit` if set)."""
        return [ReceivedRequest(*[getattr(r, f) for f in _SNAPSHOT_FIELDS]) for r in self._log]

    @property
    def request_count(self) -> int:
        """Requests received since the first `start()` or `reset_log()`."""
        return self._seq

    @property
    def in_flight(self) -> int:
        """Requests being handled right now."""
        return self._in_flight

    @property
    def max_in_flight(self) -> int:
        """The highest `in_flight` seen since `start()` or `reset_log()`."""
        return self._max_in_flight

    def reset_log(self) -> None:
        """Empty the log and restart `seq`, `request_count` and `max_in_flight`."""
        self._log.clear()
        self._seq, self._max_in_flight = 0, self._in_flight

    def __repr__(self) -> str:
        url = self.url if self._bound_port is not None else None
        return (
            f"FakeUpstream(name={self._name!r}, url={url!r}, running={self.running}, "
            f"in_flight={self._in_flight}, received={self._seq}, "
            f"pending_faults={self._pending}, always={self._always!r})"
        )

    async def _handle(self, request: Request) -> Response:
        # No await before the fault is taken: seq and faults follow arrival order.
        method, path, headers = request.method, request.path, request.headers
        api_key = self._api_key_of(request)
        record = Record(self._seq, method, path, self._clock(), api_key, headers)
        self._seq += 1
        self._log.append(record)
        target = self._route(method, path)
        authorized = self._authorized(request, api_key)
        if target is not None and target[1] and authorized:
            record.fault = self.take()
        self._in_flight += 1
        self._max_in_flight = max(self._max_in_flight, self._in_flight)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self._stopping:
                return _drop(request)
            return await self._respond(request, record, target, authorized)
        except BadRequest as exc:
            return self._error_response(record, 400, exc.message, param=exc.param, code=exc.code)
        finally:
            self._in_flight -= 1
            record.finished_at = self._clock()
            self._tasks.discard(task)

    async def _respond(
        self, request: Request, record: Record, target: tuple[Endpoint, bool] | None,
        authorized: bool,
    ) -> Response:  # fmt: skip
        # Read the whole body first so the client is never cut off mid-upload.
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        if isinstance(body, dict):
            record.body, record.stream = body, self._wants_stream(request, body)
        if self._latency > 0:
            await asyncio.sleep(self._latency)
        if not authorized:
            return self._unauthorized(record)
        if target is None:
            return self._error_response(record, 404, f"Invalid URL ({record.method} {record.path})")
        fault = record.fault
        if fault is not None and not (fault.kind == "cut_stream" and record.stream):
            response = await self._apply_fault(fault, request)
            if response is not None:
                record.status = None if fault.kind in _SILENT else response.status
                return response
        if target[1] and record.body is None and not is_multipart(request):
            raise BadRequest("We could not parse the JSON body of your request.")
        return await target[0](request, record, record.body or {})

    # -- hooks for fakes of other wire formats (see fake_anthropic.py, fake_gemini.py) --

    _stream_end: tuple[bytes, ...] = (_DONE,)
    """Frames sent after a stream's data frames (none when the format has no marker)."""

    def _api_key_of(self, request: Request) -> str | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" else None

    def _route(self, method: str, path: str) -> tuple[Endpoint, bool] | None:
        return self._endpoints.get((method, path))

    def _authorized(self, request: Request, api_key: str | None) -> bool:
        # Decided on arrival, before the body is read (a rejected request takes no fault).
        return self._api_key is None or api_key == self._api_key

    def _wants_stream(self, request: Request, body: Json) -> bool:
        return body.get("stream") is True or request.path in BYTE_STREAMS

    def _unauthorized(self, record: Record) -> Response:
        what = "Incorrect API key provided" if record.api_key else "No API key provided"
        return error_response(record, 401, f"{what} (Authorization: Bearer <key>).",
                      code="invalid_api_key")  # fmt: skip

    def _error_response(self, record: Record, status: int, message: str, **fields: Any) -> Response:
        return error_response(record, status, message, **fields)

    async def _apply_fault(self, fault: Fault, request: Request) -> Response | None:
        return await _apply(fault, request)

    def _model_for(self, body: Json) -> str:
        requested = body.get("model")
        return self._model or (requested if isinstance(requested, str) else "fake-model")

    def _reply_text(self, body: Json) -> str:
        reply = self._reply
        return reply if isinstance(reply, str) else reply(body)

    async def _models(self, request: Request, record: Record, body: Json) -> Response:
        record.status = 200
        return web.Response(body=self._models_body, headers=JSON_HEADERS)

    async def _chat(self, request: Request, record: Record, body: Json) -> Response:
        messages = body.get("messages")
        if not isinstance(messages, list):
            message = "Missing required parameter: 'messages'."
            raise BadRequest(message, "messages", "missing_required_parameter")
        n = body.get("n")
        n = 1 if n is None else n
        if not _positive_int(n) or n > 128:
            raise BadRequest(f"Invalid 'n': expected an integer in 1-128, got {n!r}.", "n")
        reply = self._reply
        if isinstance(reply, str):
            text, completion, pieces = reply, self._fixed_tokens, self._fixed_pieces
        else:
            text = reply(body)
            completion, pieces = tokens_for(len(text)), None
        prompt = tokens_for(message_chars(messages))
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion * n,
            "total_tokens": prompt + completion * n,
        }
        head: dict[str, Any] = {
            "id": f"chatcmpl-{self._name}-{next(self._ids)}",
            "object": "chat.completion.chunk" if record.stream else "chat.completion",
            "created": int(time.time()),
            "model": self._model_for(body),
            "system_fingerprint": "fp_fake",
        }
        if record.stream:
            options = body.get("stream_options")
            with_usage = isinstance(options, dict) and options.get("include_usage") is True
            pieces = split_text(text, self._stream_chunks) if pieces is None else pieces
            frames = stream_frames(head, pieces, n, usage if with_usage else None)
            return await self._stream(request, record, frames)
        choice = {"message": {"role": "assistant", "content": text}, "logprobs": None}
        head["choices"] = [{"index": i, **choice, "finish_reason": "stop"} for i in range(n)]
        head["usage"] = usage
        self._annotate(head)
        record.status = 200
        return web.Response(body=orjson.dumps(head), headers=JSON_HEADERS)

    def _annotate(self, completion: dict[str, Any]) -> None:
        """Add what a particular server adds to a plain completion (nothing here)."""

    async def _stream(self, request: Request, record: Record, frames: list[bytes]) -> Response:
        fault = record.fault
        cut = fault.after_chunks if fault is not None and fault.kind == "cut_stream" else None
        frames = [*frames, *self._stream_end] if cut is None else frames[:cut]
        response = web.StreamResponse(headers=_SSE_HEADERS)
        # Chunked framing is what lets a client tell a cut stream from a finished one.
        response.enable_chunked_encoding()
        await response.prepare(request)
        if cut is None:
            record.status = 200
        if self._chunk_interval > 0:
            for i, frame in enumerate(frames):
                if i:
                    await asyncio.sleep(self._chunk_interval)
                await response.write(frame)
        elif frames:
            await response.write(b"".join(frames))
        if cut is not None:
            return _drop(request)
        await response.write_eof()
        return response

    async def _embeddings(self, request: Request, record: Record, body: Json) -> Response:
        items = embedding_items(body.get("input"))
        dim = body.get("dimensions", self._embedding_dim)
        if not _positive_int(dim):
            raise BadRequest(f"Invalid 'dimensions': {dim!r}; expected an int >= 1.", "dimensions")
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            message = "Invalid 'encoding_format': expected 'float' or 'base64'."
            raise BadRequest(message, "encoding_format")
        data: list[dict[str, Any]] = []
        prompt = 0
        for i, item in enumerate(items):
            if isinstance(item, str):
                prompt += tokens_for(len(item))
                vector: Any = unit_vector(b"s:" + item.encode(), dim)
            else:
                prompt += len(item)
                vector = unit_vector(b"t:" + orjson.dumps(item), dim)
            if encoding == "base64":
                vector = base64.b64encode(struct.pack(f"<{dim}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": vector})
        usage = {"prompt_tokens": prompt, "total_tokens": prompt}
        payload = {"object": "list", "data": data, "model": self._model_for(body), "usage": usage}
        record.status = 200
        return web.Response(body=orjson.dumps(payload), headers=JSON_HEADERS)
