"""How the endpoints beyond chat and embeddings reach a deployment, and what settles
their attempts: the `send`/`complete` pairs `Pipeline.run` takes, `ByteStream` (speech
audio and streamed passthrough bodies), and `CapableOnly`, which keeps a call off the
deployments whose provider lacks the endpoint."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Container, Mapping
from typing import Any, TypeVar

import orjson

from interlock.config import Deployment
from interlock.endpoint_types import (
    Endpoint,
    ImagesResponse,
    ModerationResponse,
    PassthroughResponse,
    RerankResponse,
    Transcription,
)
from interlock.errors import APITimeoutError, DeadlineExceededError, InterlockError
from interlock.limits.ledger import Ledger
from interlock.providers.endpoints import ByteSource, EndpointClient, FilePart, supported, wire_of
from interlock.providers.http import malformed
from interlock.providers.openai import error_in_200
from interlock.records.state import DeploymentState
from interlock.router.attempt import Attempt, Send
from interlock.router.closing import EndsEarly
from interlock.router.pool import DeploymentPool
from interlock.strategies.base import Strategy
from interlock.strategies.candidates import Candidates, NoEligible
from interlock.types import Request

__all__ = [
    "ByteStream",
    "CapableOnly",
    "complete_bytes",
    "complete_passthrough",
    "complete_result",
    "incapable",
    "parser",
    "passthrough_sender",
    "speech_sender",
    "typed_sender",
]

R = TypeVar("R", ImagesResponse, Transcription, ModerationResponse, RerankResponse)

_PARSE_ERRORS = (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError)
_MAIN_KEY = {"images": "data", "moderation": "results", "rerank": "results"}


def incapable(
    pools: Mapping[str, DeploymentPool], chain: tuple[str, ...], endpoint: Endpoint
) -> tuple[frozenset[DeploymentState], bool]:
    """The deployments of `chain`'s groups that cannot serve `endpoint`, and whether
    the first group has one that can. O(deployments in the chain), once per call."""
    out: set[DeploymentState] = set()
    first_ok = False
    for i, group in enumerate(chain):
        for s in pools[group].states:
            if endpoint in supported(s.deployment, s.transport):
                first_ok = first_ok or i == 0
            else:
                out.add(s)
    return frozenset(out), first_ok


class _Either:
    __slots__ = ("a", "b")

    def __init__(self, a: Container[DeploymentState], b: frozenset[DeploymentState]) -> None:
        self.a = a
        self.b = b

    def __contains__(self, s: object) -> bool:
        return s in self.b or s in self.a


class CapableOnly:
    """A per-call strategy: the group's own (or the call's) strategy, choosing only
    among deployments whose provider serves the endpoint."""

    lazy_candidates = True
    __slots__ = ("_excluded", "_inner", "_pools")

    def __init__(
        self,
        excluded: frozenset[DeploymentState],
        pools: Mapping[str, DeploymentPool],
        inner: Strategy | None = None,
    ) -> None:
        self._excluded = excluded
        self._pools = pools
        self._inner = inner

    def choose(self, candidates: Candidates, request: Request) -> DeploymentState:
        candidates.exclude = _Either(candidates.exclude, self._excluded)
        strategy = self._inner or self._pools[request.group].strategy
        if not getattr(strategy, "lazy_candidates", False) and candidates.probe() is None:
            raise NoEligible
        return strategy.choose(candidates, request)

    def __repr__(self) -> str:
        return f"<CapableOnly excluding={len(self._excluded)} inner={self._inner!r}>"


# --- senders ------------------------------------------------------------------------


def _body(d: Deployment, wire: str, head: Mapping[str, Any], params: Mapping[str, Any]) -> Any:
    payload: dict[str, Any] = {"model": d.model, **head, **params}
    extra = payload.pop("extra_body", None)
    if extra:
        payload.update(extra)
    if wire == "azure":
        payload.pop("model", None)  # the deployment in the URL picks the model
    return payload


def typed_sender(
    client: EndpointClient,
    endpoint: Endpoint,
    parse: Callable[[bytes, str, Deployment], R],
    file: FilePart | None = None,
) -> Callable[[DeploymentState, Request, float], Awaitable[R]]:
    """The `send` of a JSON (or, with `file`, multipart) endpoint: the request's
    `input` holds the endpoint's own fields, `params` the caller's options."""

    async def send(state: DeploymentState, request: Request, timeout: float) -> R:
        d = state.deployment
        wire = wire_of(d, state.transport) or "openai"
        body = _body(d, wire, request.input, request.params)
        if file is not None:
            raw, ctype = await client.typed(d, wire, endpoint, None, timeout, file, body)
        else:
            raw, ctype = await client.typed(d, wire, endpoint, body, timeout)
        try:
            return parse(raw, ctype, d)
        except InterlockError:
            raise
        except _PARSE_ERRORS as exc:
            err = malformed(d, exc)
        raise err  # off the chain: the decoder's exception holds the body

    return send


def parser(endpoint: Endpoint, kind: type[R]) -> Callable[[bytes, str, Deployment], R]:
    """Reads a body of `endpoint` into `kind` (an ``{"error": ...}`` body with HTTP 200
    is the error it says)."""
    key = _MAIN_KEY.get(endpoint, "text")

    def parse(raw: bytes, ctype: str, d: Deployment) -> R:
        if endpoint == "transcription" and "json" not in ctype:
            text = raw.decode("utf-8", "replace")
            return kind.from_dict({"text": text}, deployment_id=d.id or "", group=d.group)
        data = orjson.loads(raw)
        if isinstance(data, dict) and "error" in data and key not in data:
            raise error_in_200(d, data, d.api_key_value())
        return kind.from_dict(data, deployment_id=d.id or "", group=d.group)

    return parse


def speech_sender(client: EndpointClient) -> Send[ByteSource]:
    """The `send` of ``audio/speech``: open the response and wait for its first bytes."""

    async def send(state: DeploymentState, request: Request, timeout: float) -> ByteSource:
        d = state.deployment
        wire = wire_of(d, state.transport) or "openai"
        body = orjson.dumps(_body(d, wire, request.input, request.params))
        url = client.url(d, wire, "audio/speech")
        headers = {"Content-Type": "application/json"}
        opened = await client.open_bytes(d, wire, "POST", url, body, headers, timeout)
        assert isinstance(opened, ByteSource)
        return opened

    return send


def passthrough_sender(
    client: EndpointClient,
    method: str,
    path: str,
    body: bytes | None,
    headers: Mapping[str, str],
    stream: bool,
) -> Send[PassthroughResponse | ByteSource]:
    """The `send` of `Router.arequest`."""

    async def send(
        state: DeploymentState, request: Request, timeout: float
    ) -> PassthroughResponse | ByteSource:
        d = state.deployment
        wire = wire_of(d, state.transport) or "openai"
        url = client.url(d, wire, path)
        if stream:
            return await client.open_bytes(
                d, wire, method, url, body, headers, timeout, answers=True
            )
        return await client.request(d, wire, method, url, body, headers, timeout)

    return send


# --- completions --------------------------------------------------------------------


def complete_result(result: R, attempt: Attempt) -> R:
    """Settle with the usage the body reported (the estimate stands without one)."""
    u = result.usage if not isinstance(result, ModerationResponse) else None
    attempt.succeeded(u.total_tokens if u is not None else None, u)
    result.request_id = attempt.request.id
    return result


def complete_passthrough(
    result: PassthroughResponse | ByteSource, attempt: Attempt
) -> PassthroughResponse | ByteStream:
    if isinstance(result, ByteSource):
        return ByteStream(result, attempt)
    u = result.usage
    attempt.succeeded(u.total_tokens if u is not None else None, u)
    result.request_id = attempt.request.id
    return result


def complete_bytes(source: ByteSource, attempt: Attempt) -> ByteStream:
    return ByteStream(source, attempt)


class ByteStream(EndsEarly):
    """An async iterator of the bytes of a response body (speech audio, a streamed
    passthrough), with `status` and `headers`.

    The call's attempt is settled exactly once: at the end of the body (a success),
    when the body is cut (`StreamInterruptedError`, counted against the deployment),
    when the call's deadline has passed between two reads (`DeadlineExceededError`,
    not counted), or when the caller stops early (`aclose()`, ``async with``, or
    dropping it). A failure before the first bytes was retried like any other.
    `request_id` is the call's id (as on its hook events, spans and errors); with
    tracing on, the call's span ends with the body.
    """

    __slots__ = (
        "__weakref__",
        "_attempt",
        "_first",
        "_source",
        "bytes_read",
        "deployment_id",
        "group",
        "headers",
        "request_id",
        "status",
        "ttft",
    )

    def __init__(self, source: ByteSource, attempt: Attempt) -> None:
        self._source = source
        self._attempt = attempt
        self._first: bytes | None = source.first
        self.status = source.status
        self.headers = source.headers
        self.deployment_id = attempt.state.id
        self.group = attempt.state.group
        self.request_id = attempt.request.id
        self.ttft = attempt.attempts.clock.now() - attempt.started
        """Seconds from sending the request to its first bytes."""
        self.bytes_read = 0
        if not source.first:  # an empty body: nothing more will come
            self._first = None

    def __aiter__(self) -> ByteStream:
        return self

    async def __anext__(self) -> bytes:
        attempt = self._attempt
        first = self._first
        if first is not None:
            self._first = None
            if not attempt.open:
                raise StopAsyncIteration
            self.bytes_read += len(first)
            return first
        if not attempt.open:
            raise StopAsyncIteration
        left = attempt.deadline - attempt.attempts.clock.now()
        if left <= 0:
            raise self._cut_by_deadline()
        try:
            data = await self._source.next(left)
        except APITimeoutError as exc:
            if attempt.deadline <= attempt.attempts.clock.now():
                raise self._cut_by_deadline() from None  # the call's, not the deployment's
            self._failed(exc)
            raise
        except InterlockError as exc:
            self._failed(exc)
            raise
        except BaseException:
            self._abandon()
            raise
        if data is None:
            attempt.succeeded(None, None, self.ttft)
            trace = attempt.request.trace
            if trace is not None:
                trace.stream_ended(None, None)
            raise StopAsyncIteration
        self.bytes_read += len(data)
        return data

    async def read(self) -> bytes:
        """The whole (rest of the) body."""
        return b"".join([b async for b in self])

    def _failed(self, exc: InterlockError, counted: bool = True) -> None:
        """Settle with `exc`; `counted=False` holds nothing against the deployment."""
        exc.request_id = self.request_id
        attempt = self._attempt
        if attempt.open:
            attempts = attempt.attempts
            now = attempts.clock.now()
            Ledger.release(attempt, now)
            request = attempt.request
            args = (attempt.state, exc, attempt.started, now, attempt.attempt)
            if counted:
                attempts.failure(*args, request=request, handle=attempt)
            else:
                attempts.observer.failure(*args, counted=False, request=request, handle=attempt)
            if request.trace is not None:
                request.trace.stream_ended(None, exc)

    def _cut_by_deadline(self) -> DeadlineExceededError:
        self._source.close()
        err = DeadlineExceededError(
            f"the call's deadline passed after {self.bytes_read} bytes of the body",
            deployment_id=self.deployment_id,
        )
        self._failed(err, counted=False)
        return err

    def _abandon(self) -> None:
        self._source.close()
        attempt = self._attempt
        if attempt.open:
            Ledger.settle(attempt, None, attempt.attempts.clock.now(), None)
            trace = attempt.request.trace
            if trace is not None:
                trace.attempt_aborted(attempt, "closed")
                trace.stream_ended(None, None, "closed")

    def _open(self) -> bool:
        return self._attempt.open

    def __repr__(self) -> str:
        state = "open" if self._attempt.open else "closed"
        return f"<ByteStream {self.status} {self.deployment_id} bytes={self.bytes_read} {state}>"
