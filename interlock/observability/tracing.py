"""OpenTelemetry tracing: a span per router call and a child span per attempt.

Names and attributes follow the OpenTelemetry semantic conventions for generative AI
client spans (https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/):

- the **call span** (kind INTERNAL: it makes no request itself) is named
  ``{gen_ai.operation.name} {gen_ai.request.model}`` with the model the caller asked
  for (a group or an alias): ``chat gpt-4o``; ``embeddings embed``. A Responses API
  call (`Router.aresponses`) is a chat model's inference, and the conventions have
  no operation of its own for it: ``chat``.
  The conventions define no operation for `Router.call` and the endpoints of
  docs/endpoints.md (images, transcription, speech, moderation, rerank,
  passthrough): their spans are ``interlock.{kind} {model}`` (``interlock.call g``,
  ``interlock.images g``) with ``interlock.operation`` set to that kind, and no
  ``gen_ai.operation.name``.
- each **attempt span** (kind CLIENT: one request to one provider) is named alike
  with the deployment's own model, and carries ``gen_ai.provider.name`` (the
  convention's value for the deployment's provider: ``openai``, ``azure.ai.openai``,
  ``anthropic``, ``gcp.gemini``, ``gcp.vertex_ai``, ``aws.bedrock``, ...),
  ``server.address``/``server.port``, and interlock's own ``interlock.deployment.id``,
  ``interlock.group``, ``interlock.attempt`` (and ``interlock.hedge`` on a hedge).
  Retries, hedges and fallbacks are the call span's extra children.
- usage (``gen_ai.usage.input_tokens``/``output_tokens``), ``gen_ai.response.model``,
  ``gen_ai.response.id`` and ``gen_ai.response.finish_reasons`` go on the attempt that
  answered and on the call; a failure sets the span's status to ERROR and
  ``error.type`` to the error's class name (``RateLimitError``).
- message content is recorded only when asked (``Tracing(capture_content=True)``),
  as the opt-in ``gen_ai.input.messages`` / ``gen_ai.output.messages`` attributes in
  the conventions' JSON shape (https://opentelemetry.io/docs/specs/semconv/gen-ai/
  gen-ai-input-messages.json). The caller's ``metadata=`` is never recorded.

Cost: with tracing off nothing here runs; the request path reads one attribute per
attempt (`Request.trace`). With it on, a call costs two spans and their attributes.
Spans are not made the current span (that would cost a context switch around every
await of the hot path), so spans that a transport's own instrumentation makes are
siblings of the attempt spans, under the caller's current span.
"""

from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import orjson

from interlock.errors import InterlockError
from interlock.records.state import DeploymentState
from interlock.types import Request, Usage

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

__all__ = ["PROVIDER_NAMES", "CallTrace", "Tracing"]

PROVIDER_NAMES: Mapping[str, str] = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "vertex": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
    "groq": "groq",
    "mistral": "mistral_ai",
    "deepseek": "deepseek",
}
"""interlock provider names -> the conventions' ``gen_ai.provider.name`` values. Other
providers (together, fireworks, openrouter, vllm, ollama, custom) are named as
configured, as the conventions allow for a provider they do not list."""

_OPERATION = {"chat": "chat", "embedding": "embeddings", "responses": "chat"}

# Request parameters the conventions name (gen_ai.request.*), by our parameter name.
_PARAMS = {
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "max_tokens": "gen_ai.request.max_tokens",
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "seed": "gen_ai.request.seed",
    "n": "gen_ai.request.choice.count",
}


class AttemptLike(Protocol):
    """What a trace reads from the router's attempt (router/attempt.py sits above)."""

    @property
    def attempt(self) -> int: ...

    @property
    def state(self) -> DeploymentState: ...


def _otel() -> Any:
    try:
        from opentelemetry import trace
    except ImportError:  # pragma: no cover - the extra is installed in the test env
        raise ImportError(
            "tracing needs the opentelemetry-api package: pip install 'interlock[otel]'"
        ) from None
    return trace


def _version() -> str | None:
    try:
        return importlib.metadata.version("interlock")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a bare checkout
        return None


class Tracing:
    """Makes the spans of router calls. ``Router(tracing=...)`` takes ``True`` (the
    global tracer provider, looked up when a span is made, so one set up later is
    used), a ``TracerProvider``, or a `Tracing` (for ``capture_content``)."""

    __slots__ = ("_servers", "_trace", "capture_content", "tracer")

    def __init__(
        self, provider: TracerProvider | None = None, *, capture_content: bool = False
    ) -> None:
        trace = _otel()
        self._trace = trace
        self.tracer: Tracer = trace.get_tracer("interlock", _version(), tracer_provider=provider)
        self.capture_content = capture_content
        """Record message content (``gen_ai.input.messages``/``output.messages``)."""
        self._servers: dict[str, tuple[str | None, int | None]] = {}

    @classmethod
    def of(cls, spec: object) -> Tracing | None:
        """The `Tracing` for ``Router(tracing=spec)``; None when off."""
        if spec is None or spec is False:
            return None
        if isinstance(spec, Tracing):
            return spec
        if spec is True:
            return cls()
        if not hasattr(spec, "get_tracer"):
            raise TypeError(
                "tracing must be True, an OpenTelemetry TracerProvider or an "
                f"interlock Tracing, got {type(spec).__name__}"
            )
        return cls(spec)  # type: ignore[arg-type]

    def start(self, request: Request) -> CallTrace:
        """Open the call span of `request` (its parent: the caller's current span)."""
        op = _OPERATION.get(request.kind)
        attrs: dict[str, Any] = {
            "interlock.request.id": request.id,
            "interlock.group": request.group,
        }
        if op is not None:
            name = f"{op} {request.requested}"
            attrs["gen_ai.operation.name"] = op
            attrs["gen_ai.request.model"] = request.requested
        else:
            name = f"interlock.{request.kind} {request.requested}"
            attrs["interlock.operation"] = request.kind
        if request.tags:
            attrs["interlock.tags"] = sorted(request.tags)
        if request.stream:
            attrs["interlock.stream"] = True
        for key, value in request.params.items():
            attr = _PARAMS.get(key)
            if attr is not None and isinstance(value, int | float) and value is not True:
                attrs[attr] = value
        stop = request.params.get("stop")
        if stop:
            attrs["gen_ai.request.stop_sequences"] = [stop] if isinstance(stop, str) else stop
        if self.capture_content and request.messages:
            attrs["gen_ai.input.messages"] = _json(input_messages(request.messages))
        span = self.tracer.start_span(name, kind=self._trace.SpanKind.INTERNAL, attributes=attrs)
        return CallTrace(self, request, span, op)

    def server(self, state: DeploymentState) -> tuple[str | None, int | None]:
        """``server.address`` and ``server.port`` of a deployment (parsed once)."""
        found = self._servers.get(state.id)
        if found is None:
            try:
                url = urlsplit(state.deployment.api_base)
                found = (url.hostname, url.port or (443 if url.scheme == "https" else 80))
            except ValueError:
                found = (None, None)
            self._servers[state.id] = found
        return found


class CallTrace:
    """The spans of one call: its own and its attempts' (at most a few at a time)."""

    __slots__ = (
        "_attempts",
        "_hedges",
        "_winner",
        "ended",
        "next_hedge",
        "op",
        "request",
        "span",
        "tracing",
    )

    def __init__(self, tracing: Tracing, request: Request, span: Span, op: str | None) -> None:
        self.tracing = tracing
        self.request = request
        self.span = span
        self.op = op
        self._attempts: dict[object, Span] = {}
        self._hedges: dict[object, int] = {}
        self._winner: tuple[Span, int] | None = None
        """The successful attempt's span and when it ended (ns): it ends with the call,
        once the response's attributes are known."""
        self.ended = False
        self.next_hedge: int | None = None
        """Set by the hedger just before it starts a hedge: that attempt's number."""

    # --- attempts --------------------------------------------------------------------

    def attempt_begin(self, handle: AttemptLike) -> None:
        """An attempt is about to be sent."""
        tracing = self.tracing
        hedge, self.next_hedge = self.next_hedge, None
        state = handle.state
        d = state.deployment
        attrs: dict[str, Any] = {
            "gen_ai.provider.name": PROVIDER_NAMES.get(d.provider, d.provider),
            "interlock.deployment.id": state.id,
            "interlock.group": state.group,
            "interlock.request.id": self.request.id,
        }
        op = self.op
        if op is not None:
            name = f"{op} {d.model}"
            attrs["gen_ai.operation.name"] = op
            attrs["gen_ai.request.model"] = d.model
        else:
            name = f"interlock.attempt {state.group}"
        address, port = tracing.server(state)
        if address is not None:
            attrs["server.address"] = address
            attrs["server.port"] = port
        if hedge is not None:
            attrs["interlock.hedge"] = True
            self._hedges[handle] = hedge
        ctx = tracing._trace.set_span_in_context(self.span)
        self._attempts[handle] = tracing.tracer.start_span(
            name, context=ctx, kind=tracing._trace.SpanKind.CLIENT, attributes=attrs
        )

    def _take(self, handle: object) -> Span | None:
        span = self._attempts.pop(handle, None)
        if span is None:
            return None
        number = self._hedges.pop(handle, None)
        if number is None:
            number = getattr(handle, "attempt", 1)
        span.set_attribute("interlock.attempt", number)
        return span

    def attempt_ok(self, handle: object, usage: Usage | None, cost: float | None) -> None:
        """The attempt succeeded: record its usage; it ends with the call (when the
        response is known), or now if the call already has its answer (a hedge that
        lost the race but finished)."""
        span = self._take(handle)
        if span is None:
            return
        if usage is not None:
            _usage(span, usage)
        if cost is not None:
            span.set_attribute("interlock.cost", cost)
        if self._winner is not None or self.ended:
            span.set_attribute("interlock.outcome", "lost_race")
            span.end()
            return
        self._winner = (span, time.time_ns())

    def attempt_failed(self, handle: object, error: InterlockError, kind: str) -> None:
        """The attempt failed with `error` (`kind`: the `FailureKind` name)."""
        span = self._take(handle)
        if span is None:
            return
        _failed(self.tracing, span, error)
        span.set_attribute("interlock.failure.kind", kind)
        span.end()

    def attempt_aborted(self, handle: object, outcome: str) -> None:
        """The attempt ended without an outcome of its own (`outcome`: ``cancelled``,
        ``lost_race``, ``not_admitted``): its span ends unset, saying why."""
        span = self._take(handle)
        if span is not None:
            span.set_attribute("interlock.outcome", outcome)
            span.end()

    # --- the call --------------------------------------------------------------------

    def end(self, error: BaseException | None = None, result: object = None) -> None:
        """The call is over: with `result` (None for a stream or a `call`), with
        `error`, or cut short (a cancellation). Every span of the call ends here at the
        latest. Idempotent."""
        if self.ended:
            return
        self.ended = True
        span = self.span
        winner = self._winner
        self._winner = None
        if result is not None:
            _response(span, result, self.tracing.capture_content)
            if winner is not None:
                _response(winner[0], result, False)
        if winner is not None:
            w = winner[0]
            usage = _usage_of(result)
            if usage is not None:
                _usage(span, usage)
            w.end(end_time=winner[1])
        for handle in list(self._attempts):
            self.attempt_aborted(handle, "cancelled")
        if isinstance(error, Exception):  # the router's error or a routed function's own
            _failed(self.tracing, span, error)
        elif error is not None:
            # A cancellation: not an error of the call, so no error status.
            span.set_attribute("interlock.outcome", "cancelled")
        span.end()

    def stream_ended(
        self, usage: Usage | None, error: BaseException | None, outcome: str | None = None
    ) -> None:
        """A stream the call returned ended (read to its end, cut, or closed early:
        `outcome` ``"closed"``)."""
        if self.ended:
            return
        if usage is not None:
            _usage(self.span, usage)
            if self._winner is not None:
                _usage(self._winner[0], usage)
        if outcome is not None:
            self.span.set_attribute("interlock.outcome", outcome)
        self.end(error)


def _usage_of(result: object) -> Usage | None:
    """A result's usage as a chat `Usage` (a Responses API result's own `usage` says
    ``input_tokens``/``output_tokens`` and converts itself)."""
    usage = getattr(result, "usage", None)
    if usage is None or isinstance(usage, Usage):
        return usage
    convert = getattr(usage, "as_usage", None)
    converted = convert() if callable(convert) else None
    return converted if isinstance(converted, Usage) else None


def _failed(tracing: Tracing, span: Span, error: BaseException) -> None:
    name = type(error).__qualname__
    span.set_attribute("error.type", name)
    status = getattr(error, "status_code", None)
    if isinstance(status, int):
        span.set_attribute("http.response.status_code", status)
    span.set_status(tracing._trace.Status(tracing._trace.StatusCode.ERROR, name))


# Attributes are set in one `set_attributes` call per span and step: the SDK checks
# every call and value, and a call per attribute costs several times more.


def _usage(span: Span, usage: Usage) -> None:
    attrs = {
        "gen_ai.usage.input_tokens": usage.prompt_tokens,
        "gen_ai.usage.output_tokens": usage.completion_tokens,
    }
    pd = usage.prompt_tokens_details
    if pd is not None:
        if pd.cached_tokens:
            attrs["gen_ai.usage.cache_read.input_tokens"] = pd.cached_tokens
        if pd.cache_creation_tokens:
            attrs["gen_ai.usage.cache_creation.input_tokens"] = pd.cache_creation_tokens
    cd = usage.completion_tokens_details
    if cd is not None and cd.reasoning_tokens:
        attrs["interlock.usage.reasoning_tokens"] = cd.reasoning_tokens
    span.set_attributes(attrs)


def _response(span: Span, result: object, content: bool) -> None:
    attrs: dict[str, Any] = {}
    model = getattr(result, "model", None)
    if isinstance(model, str) and model:
        attrs["gen_ai.response.model"] = model
    rid = getattr(result, "id", None)
    if isinstance(rid, str) and rid:
        attrs["gen_ai.response.id"] = rid
    deployment = getattr(result, "deployment_id", None)
    if isinstance(deployment, str) and deployment:
        attrs["interlock.deployment.id"] = deployment
    choices = getattr(result, "choices", None)
    if isinstance(choices, list):
        reasons = [c.finish_reason for c in choices if c.finish_reason]
        if reasons:
            attrs["gen_ai.response.finish_reasons"] = reasons
        if content:
            attrs["gen_ai.output.messages"] = _json(output_messages(choices))
    if attrs:
        span.set_attributes(attrs)


def _json(value: object) -> str:
    # Structured attributes are not allowed on spans by every SDK: the conventions
    # say to record them as JSON strings then.
    return orjson.dumps(value, default=str).decode()


def _parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: list[dict[str, Any]] = []
    if isinstance(content, Sequence):
        for p in content:
            if isinstance(p, Mapping) and p.get("type") == "text":
                parts.append({"type": "text", "content": p.get("text", "")})
            elif isinstance(p, Mapping):
                parts.append({"type": str(p.get("type", "unknown"))})
    return parts


def _tool_call(call: Mapping[str, Any]) -> dict[str, Any]:
    fn = call.get("function") or {}
    return {
        "type": "tool_call",
        "id": call.get("id"),
        "name": fn.get("name"),
        "arguments": fn.get("arguments"),
    }


def input_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI-shaped messages in the conventions' ``gen_ai.input.messages`` shape."""
    out = []
    for m in messages:
        parts = _parts(m.get("content"))
        parts.extend(_tool_call(call) for call in m.get("tool_calls") or ())
        if m.get("role") == "tool":
            parts = [
                {
                    "type": "tool_call_response",
                    "id": m.get("tool_call_id"),
                    "response": m.get("content"),
                }
            ]
        out.append({"role": m.get("role"), "parts": parts})
    return out


def output_messages(choices: Sequence[Any]) -> list[dict[str, Any]]:
    """A response's choices in the conventions' ``gen_ai.output.messages`` shape."""
    out = []
    for c in choices:
        msg = c.message
        parts = _parts(msg.content)
        parts.extend(_tool_call(call) for call in msg.tool_calls or ())
        out.append({"role": msg.role, "parts": parts, "finish_reason": c.finish_reason or "stop"})
    return out
