"""`FakeUpstream`: a real OpenAI-compatible HTTP server on loopback, for tests and benchmarks.

It answers `/v1/chat/completions` (plain and SSE streams), `/v1/embeddings` and
`/v1/models` with deterministic content, injects scripted `Fault`s, and records
every request it receives. The normal path is kept cheap (low-level aiohttp
server, no access log, orjson, one write per stream) so benchmarks measure the
client, not the fake.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import itertools
import math
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from types import TracebackType
from typing import Any, Self

import orjson
from aiohttp import web

from interlock.testing.faults import Fault

__all__ = ["FakeUpstream", "ReceivedRequest", "Reply"]

Reply = str | Callable[[dict[str, Any]], str]
"""The assistant text: fixed, or computed from the parsed request body."""

_JSON_HEADERS: dict[str, str] = {"Content-Type": "application/json"}
_SSE_HEADERS: dict[str, str] = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_DONE = b"data: [DONE]\n\n"
_MAX_BODY = 64 * 1024 * 1024  # aiohttp's 1 MiB default is too small for image prompts
_SHUTDOWN_TIMEOUT = 2.0  # handlers are cancelled first, so this is only a safety net


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """What `FakeUpstream` received, and what it did about it (one log entry).

    Entries are snapshots: an entry read while its request is still running shows
    `status`/`finished_at` as None; read `FakeUpstream.received` again later to see
    the final state.
    """

    seq: int
    """0-based arrival order since `start()` / `reset_log()`."""
    method: str
    path: str
    body: dict[str, Any] | None
    """The parsed JSON body, or None if there was none or it was not a JSON object."""
    stream: bool
    """True if the body asked for `"stream": true`."""
    at: float
    """`clock()` when the request arrived."""
    fault: Fault | None
    """The fault applied to this request, if any."""
    status: int | None
    """HTTP status sent; None if no response was sent (drop, hang, cut stream,
    client gone) or the request is still running."""
    api_key: str | None = field(repr=False)
    """The bearer token the client sent (never shown in repr)."""
    finished_at: float | None
    """`clock()` when the handler finished; None while it runs."""
    headers: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    """The request headers (case-insensitive; includes Authorization, so not in repr)."""

    @property
    def elapsed(self) -> float | None:
        """`finished_at - at`, or None while the request runs."""
        return None if self.finished_at is None else self.finished_at - self.at


class _Record:
    # Mutable while the request runs; `received` hands out frozen snapshots.
    __slots__ = ("api_key", "at", "body", "fault", "finished_at", "headers", "method",
                 "path", "seq", "status", "stream")  # fmt: skip

    def __init__(
        self, seq: int, method: str, path: str, at: float, api_key: str | None,
        headers: Mapping[str, str],
    ) -> None:  # fmt: skip
        self.seq = seq
        self.method = method
        self.path = path
        self.at = at
        self.api_key = api_key
        self.headers = headers
        self.body: dict[str, Any] | None = None
        self.stream = False
        self.fault: Fault | None = None
        self.status: int | None = None
        self.finished_at: float | None = None

    def snapshot(self) -> ReceivedRequest:
        return ReceivedRequest(
            self.seq, self.method, self.path, self.body, self.stream, self.at, self.fault,
            self.status, self.api_key, self.finished_at, self.headers,
        )  # fmt: skip


_Endpoint = Callable[[web.BaseRequest, _Record, dict[str, Any]], Awaitable[web.StreamResponse]]


def _check_seconds(name: str, value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"FakeUpstream: {name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _tokens(chars: int) -> int:
    return max(1, -(-chars // 4))


def _message_chars(messages: list[Any]) -> int:
    total = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(text := part.get("text"), str):
                    total += len(text)
    return total


def _split(text: str, pieces: int) -> list[str]:
    k = max(1, min(pieces, len(text)))
    n = len(text)
    return [text[i * n // k : (i + 1) * n // k] for i in range(k)]


def _bearer(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _error_body(message: str, type_: str, param: str | None, code: str | None) -> bytes:
    return orjson.dumps(
        {"error": {"message": message, "type": type_, "param": param, "code": code}}
    )


def _seconds_header(value: float) -> str:
    if value.is_integer():
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _fault_headers(fault: Fault) -> dict[str, str]:
    headers = dict(_JSON_HEADERS)
    headers.update(fault.headers)
    ra = fault.retry_after
    if ra is not None:
        if fault.retry_after_format == "ms":
            headers["retry-after-ms"] = str(round(ra * 1000))
        elif fault.retry_after_format == "http-date":
            # HTTP-dates have whole seconds; round up so a client never retries early.
            headers["Retry-After"] = formatdate(math.ceil(time.time() + ra), usegmt=True)
        else:
            headers["Retry-After"] = _seconds_header(ra)
    return headers


def _embedding_items(value: Any) -> list[str | list[int]] | None:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        return None
    if all(isinstance(v, str) for v in value):
        return list(value)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return [value]
    if all(
        isinstance(v, list) and v and all(isinstance(t, int) and not isinstance(t, bool) for t in v)
        for v in value
    ):
        return list(value)
    return None


def _vector(item: str | list[int], dim: int) -> tuple[float, ...]:
    key = b"s:" + item.encode() if isinstance(item, str) else b"t:" + orjson.dumps(item)
    return _unit_vector(key, dim)


@functools.lru_cache(maxsize=4096)
def _unit_vector(key: bytes, dim: int) -> tuple[float, ...]:
    # A hash stretched to `dim` values: same input, same vector, across runs and machines.
    raw = hashlib.shake_256(key).digest(2 * dim)
    values = [v / 32767.5 - 1.0 for v in struct.unpack(f"<{dim}H", raw)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return tuple(v / norm for v in values)


class FakeUpstream:
    """An OpenAI-compatible server on `host:port` with scripted faults and a request log.

    Use it as `async with FakeUpstream() as up:` or call `start()`/`stop()`. After
    `stop()`, connections to `url` are refused; `start()` again rebinds the same
    port, so "the upstream went away and came back" can be tested. See
    docs/testing.md for the endpoints and faults.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        reply: Reply = "Hello from FakeUpstream.",
        stream_chunks: int = 4,
        chunk_interval: float = 0.0,
        model: str | None = None,
        api_key: str | None = None,
        embedding_dim: int = 8,
        name: str = "fake",
        clock: Callable[[], float] = time.monotonic,
        log_limit: int | None = None,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"FakeUpstream: port must be in 0-65535, got {port!r}")
        if stream_chunks < 1:
            raise ValueError(f"FakeUpstream: stream_chunks must be >= 1, got {stream_chunks!r}")
        if embedding_dim < 1:
            raise ValueError(f"FakeUpstream: embedding_dim must be >= 1, got {embedding_dim!r}")
        if log_limit is not None and log_limit < 0:
            raise ValueError(f"FakeUpstream: log_limit must be >= 0 or None, got {log_limit!r}")
        self._host = host
        self._port = port
        self._latency = _check_seconds("latency", latency)
        self._chunk_interval = _check_seconds("chunk_interval", chunk_interval)
        self._reply = reply
        self._stream_chunks = stream_chunks
        self._model = model
        self._api_key = api_key
        self._embedding_dim = embedding_dim
        self._name = name
        self._clock = clock
        # A fixed reply is split and measured once, not per request.
        self._fixed_pieces = _split(reply, stream_chunks) if isinstance(reply, str) else None
        self._fixed_tokens = _tokens(len(reply)) if isinstance(reply, str) else 0
        self._models_body = orjson.dumps({"object": "list", "data": [
            {"id": model or "fake-model", "object": "model", "created": 0, "owned_by": name}
        ]})  # fmt: skip
        # The flag marks API calls: they take faults and need a JSON object body.
        self._endpoints: dict[tuple[str, str], tuple[_Endpoint, bool]] = {
            ("POST", "/v1/chat/completions"): (self._chat, True),
            ("POST", "/v1/embeddings"): (self._embeddings, True),
            ("GET", "/v1/models"): (self._models, False),
        }
        self._queue: deque[tuple[Fault, int]] = deque()
        self._pending = 0
        self._always: Fault | None = None
        self._log: deque[_Record] = deque(maxlen=log_limit)
        self._seq = 0
        self._ids = itertools.count(1)
        self._in_flight = 0
        self._max_in_flight = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.ServerRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bound_port: int | None = None
        self._stopping = False

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Bind and start serving. Raises RuntimeError if already running."""
        if self._runner is not None:
            raise RuntimeError(f"FakeUpstream {self._name!r} is already running")
        self._loop = asyncio.get_running_loop()
        server = web.Server(
            self._handle,
            request_factory=self._make_request,
            # A client that gives up (timeout, hedged request) stops the handler,
            # as a real provider stops generating; keeps in_flight honest.
            handler_cancellation=True,
            access_log=None,
        )
        runner = web.ServerRunner(server, shutdown_timeout=_SHUTDOWN_TIMEOUT)
        await runner.setup()
        port = self._bound_port if self._bound_port is not None else self._port
        try:
            await web.TCPSite(runner, self._host, port, backlog=1024).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._bound_port = int(runner.addresses[0][1])
        self._runner = runner
        self._stopping = False
        self._max_in_flight = self._in_flight

    async def stop(self) -> None:
        """Stop serving and close every connection. Idempotent.

        Requests still being handled (hung, delayed or mid-stream) are cancelled,
        so their clients see the connection close; stop() does not wait for them.
        """
        runner = self._runner
        if runner is None:
            return
        self._runner = None
        self._stopping = True
        for task in list(self._tasks):
            task.cancel()
        await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- addresses ----------------------------------------------------------------

    @property
    def name(self) -> str:
        """The name given at construction (used in ids and `owned_by`)."""
        return self._name

    @property
    def running(self) -> bool:
        """True between `start()` and `stop()`."""
        return self._runner is not None

    @property
    def port(self) -> int:
        """The bound TCP port (known once started; kept after stop)."""
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

    # -- fault script -------------------------------------------------------------

    def push(self, fault: Fault, times: int = 1) -> None:
        """Apply `fault` to each of the next `times` requests, after those already queued.

        Every endpoint except `GET /v1/models` takes faults; requests rejected for
        a wrong API key or an unknown path do not consume one.
        """
        if not isinstance(fault, Fault):
            raise TypeError(f"FakeUpstream.push: fault must be a Fault, got {fault!r}")
        if times < 1:
            raise ValueError(f"FakeUpstream.push: times must be >= 1, got {times!r}")
        self._queue.append((fault, times))
        self._pending += times

    def always(self, fault: Fault | None) -> None:
        """Apply `fault` to every request while the queue is empty; None turns it off."""
        if fault is not None and not isinstance(fault, Fault):
            raise TypeError(f"FakeUpstream.always: fault must be a Fault or None, got {fault!r}")
        self._always = fault

    def clear(self) -> None:
        """Forget queued faults and the `always` fault."""
        self._queue.clear()
        self._pending = 0
        self._always = None

    @property
    def pending_faults(self) -> int:
        """How many queued fault applications remain (not counting `always`)."""
        return self._pending

    def _take_fault(self) -> Fault | None:
        queue = self._queue
        if not queue:
            return self._always
        fault, remaining = queue[0]
        if remaining == 1:
            queue.popleft()
        else:
            queue[0] = (fault, remaining - 1)
        self._pending -= 1
        return fault

    # -- log ----------------------------------------------------------------------

    @property
    def received(self) -> list[ReceivedRequest]:
        """Snapshot of the log, oldest first (the last `log_limit` if one was set)."""
        return [record.snapshot() for record in self._log]

    @property
    def request_count(self) -> int:
        """Requests received since `start()`'s first call or `reset_log()`."""
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
        self._seq = 0
        self._max_in_flight = self._in_flight

    def __repr__(self) -> str:
        where = self.url if self._bound_port is not None else "not started"
        return (
            f"FakeUpstream(name={self._name!r}, url={where!r}, running={self.running}, "
            f"in_flight={self._in_flight}, received={self._seq}, "
            f"pending_faults={self._pending}, always={self._always!r})"
        )

    # -- request handling ---------------------------------------------------------

    def _make_request(
        self, message: Any, payload: Any, protocol: Any, writer: Any, task: asyncio.Task[None]
    ) -> web.BaseRequest:
        assert self._loop is not None
        return web.BaseRequest(
            message, payload, protocol, writer, task, self._loop, client_max_size=_MAX_BODY
        )

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        # No await before the fault is taken: seq and fault order follow arrival order.
        method = request.method
        path = request.path
        headers = request.headers
        api_key = _bearer(headers.get("Authorization"))
        record = _Record(self._seq, method, path, self._clock(), api_key, headers)
        self._seq += 1
        self._log.append(record)
        target = self._endpoints.get((method, path))
        authorized = self._api_key is None or api_key == self._api_key
        if target is not None and target[1] and authorized:
            record.fault = self._take_fault()
        self._in_flight += 1
        if self._in_flight > self._max_in_flight:
            self._max_in_flight = self._in_flight
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self._stopping:
                return _drop(request)
            return await self._respond(request, record, target, authorized)
        finally:
            self._in_flight -= 1
            record.finished_at = self._clock()
            self._tasks.discard(task)

    async def _respond(
        self,
        request: web.BaseRequest,
        record: _Record,
        target: tuple[_Endpoint, bool] | None,
        authorized: bool,
    ) -> web.StreamResponse:
        # Read the whole body first so the client is never cut off mid-upload.
        raw = await request.read()
        body: Any = None
        if raw:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = None
        if isinstance(body, dict):
            record.body = body
            record.stream = body.get("stream") is True
        if self._latency > 0:
            await asyncio.sleep(self._latency)
        if not authorized:
            message = (
                "Incorrect API key provided."
                if record.api_key
                else "You didn't provide an API key. Use an Authorization: Bearer header."
            )
            return _error(record, 401, message, "invalid_request_error", None, "invalid_api_key")
        if target is None:
            return _error(
                record, 404, f"Invalid URL ({record.method} {record.path})",
                "invalid_request_error", None, None,
            )  # fmt: skip
        fault = record.fault
        if fault is not None:
            kind = fault.kind
            if kind == "delay":
                if fault.seconds > 0:
                    await asyncio.sleep(fault.seconds)
            elif kind == "hang":
                # Released only by cancellation: the client leaving, or stop().
                await asyncio.get_running_loop().create_future()
            elif kind == "drop" or (kind == "cut_stream" and not record.stream):
                return _drop(request)
            elif kind == "malformed":
                record.status = 200
                return web.Response(body=fault.body, headers={"Content-Type": fault.content_type})
            elif kind != "cut_stream":
                status = fault.http_status or 500
                record.status = status
                return web.Response(
                    body=_error_body(
                        fault.message or "Injected fault.",
                        fault.error_type or "server_error",
                        fault.param,
                        fault.error_code,
                    ),
                    status=status,
                    headers=_fault_headers(fault),
                )
        if record.body is None and target[1]:
            return _error(
                record, 400,
                "We could not parse the JSON body of your request. The body must be a JSON "
                "object.", "invalid_request_error", None, None,
            )  # fmt: skip
        return await target[0](request, record, record.body or {})

    async def _models(
        self, request: web.BaseRequest, record: _Record, body: dict[str, Any]
    ) -> web.StreamResponse:
        record.status = 200
        return web.Response(body=self._models_body, headers=_JSON_HEADERS)

    async def _chat(
        self, request: web.BaseRequest, record: _Record, body: dict[str, Any]
    ) -> web.StreamResponse:
        messages = body.get("messages")
        if not isinstance(messages, list):
            return _error(
                record, 400, "Missing required parameter: 'messages'.",
                "invalid_request_error", "messages", "missing_required_parameter",
            )  # fmt: skip
        n = body.get("n")
        if n is None:
            n = 1
        elif isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 128:
            return _error(
                record, 400, f"Invalid 'n': expected an integer in 1-128, got {n!r}.",
                "invalid_request_error", "n", "invalid_value",
            )  # fmt: skip
        requested = body.get("model")
        model = self._model or (requested if isinstance(requested, str) else "fake-model")
        reply = self._reply
        if isinstance(reply, str):
            text, completion, pieces = reply, self._fixed_tokens, self._fixed_pieces
        else:
            text = reply(body)
            completion, pieces = _tokens(len(text)), None
        prompt = _tokens(_message_chars(messages))
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion * n,
            "total_tokens": prompt + completion * n,
        }
        cid = f"chatcmpl-{self._name}-{next(self._ids)}"
        created = int(time.time())
        if record.stream:
            if pieces is None:
                pieces = _split(text, self._stream_chunks)
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            frames = _stream_frames(cid, created, model, pieces, n, usage, include_usage)
            return await self._stream(request, record, frames)
        record.status = 200
        payload = {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
                for i in range(n)
            ],
            "usage": usage,
        }
        return web.Response(body=orjson.dumps(payload), headers=_JSON_HEADERS)

    async def _stream(
        self, request: web.BaseRequest, record: _Record, frames: list[bytes]
    ) -> web.StreamResponse:
        fault = record.fault
        cut = fault.after_chunks if fault is not None and fault.kind == "cut_stream" else None
        if cut is not None:
            frames = frames[:cut]
        else:
            frames.append(_DONE)
        response = web.StreamResponse(headers=_SSE_HEADERS)
        # Chunked framing is what lets a client tell a cut stream from a finished one.
        response.enable_chunked_encoding()
        await response.prepare(request)
        if cut is None:
            record.status = 200
        interval = self._chunk_interval
        if interval > 0:
            for i, frame in enumerate(frames):
                if i:
                    await asyncio.sleep(interval)
                await response.write(frame)
        elif frames:
            await response.write(b"".join(frames))
        if cut is not None:
            return _drop(request)
        await response.write_eof()
        return response

    async def _embeddings(
        self, request: web.BaseRequest, record: _Record, body: dict[str, Any]
    ) -> web.StreamResponse:
        items = _embedding_items(body.get("input"))
        if items is None:
            return _error(
                record, 400,
                "Invalid 'input': expected a string, a list of strings, a list of token "
                "ids or a list of lists of token ids.", "invalid_request_error", "input", None,
            )  # fmt: skip
        dim = body.get("dimensions", self._embedding_dim)
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            return _error(
                record, 400, f"Invalid 'dimensions': expected a positive integer, got {dim!r}.",
                "invalid_request_error", "dimensions", None,
            )  # fmt: skip
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            return _error(
                record, 400, "Invalid 'encoding_format': expected 'float' or 'base64'.",
                "invalid_request_error", "encoding_format", None,
            )  # fmt: skip
        data: list[dict[str, Any]] = []
        prompt = 0
        for i, item in enumerate(items):
            prompt += _tokens(len(item)) if isinstance(item, str) else len(item)
            vector = _vector(item, dim)
            embedding: Any = (
                base64.b64encode(struct.pack(f"<{dim}f", *vector)).decode()
                if encoding == "base64"
                else vector
            )
            data.append({"object": "embedding", "index": i, "embedding": embedding})
        requested = body.get("model")
        record.status = 200
        payload = {
            "object": "list",
            "data": data,
            "model": self._model or (requested if isinstance(requested, str) else "fake-model"),
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
        }
        return web.Response(body=orjson.dumps(payload), headers=_JSON_HEADERS)


def _stream_frames(
    cid: str,
    created: int,
    model: str,
    pieces: list[str],
    n: int,
    usage: dict[str, int],
    include_usage: bool,
) -> list[bytes]:
    """Every SSE data frame of a streamed completion, except `[DONE]`."""
    head: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": "fp_fake",
    }
    if include_usage:
        head["usage"] = None

    def frame(index: int, delta: dict[str, str], finish: str | None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return b"data: " + orjson.dumps({**head, "choices": [choice]}) + b"\n\n"

    frames = [frame(i, {"role": "assistant", "content": ""}, None) for i in range(n)]
    frames.extend(frame(i, {"content": piece}, None) for piece in pieces for i in range(n))
    frames.extend(frame(i, {}, "stop") for i in range(n))
    if include_usage:
        frames.append(b"data: " + orjson.dumps({**head, "choices": [], "usage": usage}) + b"\n\n")
    return frames


def _error(
    record: _Record, status: int, message: str, type_: str, param: str | None, code: str | None
) -> web.Response:
    record.status = status
    return web.Response(
        body=_error_body(message, type_, param, code), status=status, headers=_JSON_HEADERS
    )


def _drop(request: web.BaseRequest) -> web.StreamResponse:
    # Closing the transport here makes aiohttp's attempt to send the returned
    # response fail with a ConnectionResetError, which it treats as a client
    # disconnect: nothing more is written and nothing is logged. close() flushes
    # what was already written (the frames of a cut stream), then sends FIN.
    request.protocol.force_close()
    return web.Response()
