"""The Router: pools of deployments behind one reliable endpoint."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from types import TracebackType
from typing import Any, Literal, TypeVar, Unpack, overload

from interlock.cache.response import CacheMode
from interlock.cache.stream import CachedStream
from interlock.clock import Clock
from interlock.config import (
    Budget,
    Deployment,
    HealthPolicy,
    HedgePolicy,
    QueuePolicy,
    RetryPolicy,
    SharedState,
)
from interlock.limits.tokens import TokenCounter
from interlock.observability.hooks import Hook
from interlock.observability.metrics import PrometheusMetrics
from interlock.policies import CacheConfig
from interlock.providers.params import UnsupportedParams
from interlock.records.state import DeploymentState
from interlock.records.transport import Transport
from interlock.router.calls import (
    NO_TAGS,
    call_metadata,
    call_request_id,
    complete_call,
    complete_response,
    group_of,
    open_stream,
    provider_params,
    request_strategy,
    run_user_fn,
    send_chat,
    send_embed,
    send_stream,
    tag_set,
    unsupported_mode,
)
from interlock.router.constructors import ConfigConstructors
from interlock.router.endpoint_methods import EndpointMethods
from interlock.router.health_check import HealthCheckMixin
from interlock.router.introspection import Introspection
from interlock.router.pipeline import Complete, Send
from interlock.router.responses_api import ResponsesMethods
from interlock.router.runtime import RuntimeChanges
from interlock.router.stream import ChatStream
from interlock.router.wiring import RouterParts, build_parts, router_config
from interlock.strategies.base import StrategyLike
from interlock.types import (
    CHAT_PARAM_NAMES,
    EMBEDDING_PARAM_NAMES,
    NO_METADATA,
    ChatCompletion,
    ChatParams,
    EmbeddingParams,
    EmbeddingResponse,
    Request,
    new_request_id,
)

__all__ = ["Router"]

T = TypeVar("T")
R = TypeVar("R")
_new = object.__new__


class Router(
    ConfigConstructors,
    ResponsesMethods,
    EndpointMethods,
    HealthCheckMixin,
    RuntimeChanges,
    Introspection,
):
    """Routes requests for a model group to one of its deployments.

    Construct it from `Deployment`s (or mappings) or with `Router.from_config`; use it
    as ``async with router:`` so its HTTP session is closed, or call `aclose()`.
    """

    __slots__ = (
        "_cache",
        "_cache_active",
        "_closed",
        "_deadlines",
        "_expected_output",
        "_names",
        "_pipeline",
        "_responses",
        "_timeout",
        "_tokens",
        "_unsupported",
        "config",
        "parts",
    )

    def __init__(
        self,
        deployments: Sequence[Deployment | Mapping[str, Any]],
        *,
        strategy: StrategyLike = "p2c-ewma",
        strategies: Mapping[str, StrategyLike] | None = None,
        fallbacks: Mapping[str, Sequence[str]] | None = None,
        aliases: Mapping[str, str] | None = None,
        retry: RetryPolicy | Mapping[str, Any] | None = None,
        health: HealthPolicy | Mapping[str, Any] | None = None,
        timeout: float = 120.0,
        expected_output_tokens: int = 256,
        clock: Clock | None = None,
        transports: Mapping[str, Transport] | None = None,
        seed: int | None = None,
        connection_limit: int = 1000,
        unsupported_params: UnsupportedParams = "drop",
        cache: CacheConfig | Mapping[str, Any] | None = None,
        hooks: Sequence[Hook] | None = None,
        metrics: PrometheusMetrics | None = None,
        context_window_fallbacks: Mapping[str, Sequence[str]] | None = None,
        content_policy_fallbacks: Mapping[str, Sequence[str]] | None = None,
        max_fallback_depth: int = 3,
        hedging: Mapping[str, HedgePolicy | Mapping[str, Any]] | None = None,
        budgets: Sequence[Budget | Mapping[str, Any]] = (),
        queue: QueuePolicy | Mapping[str, Any] | None = None,
        shared: SharedState | Mapping[str, Any] | None = None,
        tokenizer: TokenCounter | None = None,
        trust_env: bool = True,
        tracing: bool | object | None = None,
    ) -> None:
        cfg = router_config(
            deployments,
            strategy=strategy,
            strategies=strategies,
            fallbacks=fallbacks,
            context_window_fallbacks=context_window_fallbacks,
            content_policy_fallbacks=content_policy_fallbacks,
            aliases=aliases,
            retry=retry,
            health=health,
            timeout=timeout,
            expected_output_tokens=expected_output_tokens,
            unsupported_params=unsupported_params,
            cache=cache,
            max_fallback_depth=max_fallback_depth,
            hedging=hedging,
            budgets=budgets,
            queue=queue,
            shared=shared,
            trust_env=trust_env,
        )
        self._start(
            build_parts(
                cfg,
                strategy=strategy,
                strategies=strategies,
                clock=clock,
                transports=transports,
                seed=seed,
                connection_limit=connection_limit,
                hooks=hooks,
                metrics=metrics,
                tokenizer=tokenizer,
                tracing=tracing,
            )
        )

    def _start(self, parts: RouterParts) -> None:
        """A new router (construction): open, and made of `parts`."""
        self._closed = False
        self._assemble(parts)

    def _assemble(self, parts: RouterParts) -> None:
        """Take `parts` (construction, and each runtime change: see runtime.py)."""
        cfg = parts.config
        self.config = cfg
        self.parts = parts
        """What the router is made of (see `RouterParts`): for tests and tools."""
        # What the request path reads, one attribute lookup each.
        self._pipeline = parts.entry
        self._names = parts.names
        self._cache = parts.cache
        self._cache_active = cfg.cache.active
        self._tokens = parts.tokens
        self._deadlines = parts.deadlines
        self._timeout = cfg.timeout
        self._expected_output = cfg.expected_output_tokens
        self._unsupported: UnsupportedParams = cfg.unsupported_params

    # --- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> Router:
        self._closed = False
        self.parts.http.reopen()
        self.parts.prober.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP session and every transport, after delivering queued hook
        events (for up to a second). Idempotent."""
        self._closed = True
        parts = self.parts
        await parts.prober.stop()
        await parts.attempts.observer.aclose()
        for q in parts.queues.values():
            q.close()
        if parts.shared is not None:
            await parts.shared.aclose()
        for t in {id(t): t for t in parts.transports.values()}.values():
            await t.aclose()
        await parts.http.aclose()
        await parts.cache.aclose()

    # --- requests -------------------------------------------------------------------

    def _group_for(self, model: str) -> str:
        return group_of(self._names, model)

    def _deadline(self, timeout: float | None) -> float:
        if timeout is None:
            return self._timeout
        if not 0 < timeout < math.inf:
            raise ValueError(f"timeout must be a finite number of seconds > 0, got {timeout!r}")
        return float(timeout)

    @overload
    async def acompletion(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        stream: Literal[False] = False,
        timeout: float | None = None,
        tags: Sequence[str] = (),
        strategy: StrategyLike | None = None,
        unsupported_params: UnsupportedParams | None = None,
        cache: CacheMode = None,
        cache_ttl: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        **params: Unpack[ChatParams],
    ) -> ChatCompletion: ...

    @overload
    async def acompletion(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        stream: Literal[True],
        timeout: float | None = None,
        tags: Sequence[str] = (),
        strategy: StrategyLike | None = None,
        unsupported_params: UnsupportedParams | None = None,
        cache: CacheMode = None,
        cache_ttl: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        **params: Unpack[ChatParams],
    ) -> ChatStream | CachedStream: ...

    async def acompletion(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        stream: bool = False,
        timeout: float | None = None,
        tags: Sequence[str] = (),
        strategy: StrategyLike | None = None,
        unsupported_params: UnsupportedParams | None = None,
        cache: CacheMode = None,
        cache_ttl: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        **params: Unpack[ChatParams],
    ) -> ChatCompletion | ChatStream | CachedStream:
        """A chat completion from a deployment of `model` (a group or an alias).

        With ``stream=True`` returns a `ChatStream` once the first chunk has arrived;
        failures before that are retried like any other. `timeout` is the deadline for
        the whole call (every attempt, backoff and fallback); it defaults to the router's.
        `strategy` overrides the group's strategy for this call (a registered name or an
        instance; see docs/strategies.md).
        `cache` and `cache_ttl` override the response cache's policy for this request
        (docs/caching.md); a cached stream is a `CachedStream`.
        `metadata` is handed, as it is, to every hook event of the call; `request_id`
        names the call (on its events, spans, result and errors) instead of a new id
        (docs/observability.md).
        """
        # This is the hot path: helpers are inlined where the common case is one check.
        group = self._names.get(model)
        if group is None:
            group = self._group_for(model)
        call_timeout = self._timeout if timeout is None else self._deadline(timeout)
        plan = (
            None
            if cache is None and cache_ttl is None and not self._cache_active
            else self._cache.plan(group, cache, cache_ttl)
        )
        if not messages:
            raise ValueError("messages must not be empty")
        if params:
            body = provider_params(params, CHAT_PARAM_NAMES, "acompletion")
            out = body.get("max_completion_tokens") or body.get("max_tokens")
        else:
            body = {}
            out = None
        # `Request(...)` without its dataclass __init__ (a Python frame less per call),
        # every field set in order (tests/unit/router/test_routing.py checks them).
        request = _new(Request)
        request.kind = "chat"
        request.group = group
        request.messages = messages
        request.input = None
        request.params = body
        request.stream = stream
        request.tags = tag_set(tags) if tags else NO_TAGS
        request.est_input_tokens = self._tokens.messages(messages)
        request.est_output_tokens = int(out) if out else self._expected_output
        request.requested = model
        request.unsupported_params = (
            self._unsupported
            if unsupported_params is None
            else self._unsupported_for(unsupported_params)
        )
        request.strategy = None if strategy is None else request_strategy(strategy)
        request.id = new_request_id() if request_id is None else call_request_id(request_id)
        request.metadata = NO_METADATA if metadata is None else call_metadata(metadata)
        request.trace = None
        if plan is not None:
            if stream:
                return await self._cache.stream(
                    plan,
                    request,
                    call_timeout,
                    self._deferred(
                        request,
                        call_timeout,
                        send_stream,
                        partial(open_stream, request.est_input_tokens),
                    ),
                )
            return await self._cache.fetch(
                plan,
                request,
                call_timeout,
                ChatCompletion,
                self._deferred(request, call_timeout, send_chat, complete_response),
            )
        if stream:
            return await self._pipeline.run(
                request,
                call_timeout,
                send_stream,
                partial(open_stream, request.est_input_tokens),
            )
        return await self._pipeline.run(request, call_timeout, send_chat, complete_response)

    def _deferred(
        self, request: Request, call_timeout: float, send: Send[R], complete: Complete[R, T]
    ) -> Callable[[], Awaitable[T]]:
        """The pipeline run the response cache starts on a miss. A method of its own: a
        lambda in `acompletion` itself would make its locals closure cells, objects
        made on every call, cached or not."""
        return lambda: self._pipeline.run(request, call_timeout, send, complete)

    async def aembedding(
        self,
        model: str,
        input: str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]],
        *,
        timeout: float | None = None,
        tags: Sequence[str] = (),
        strategy: StrategyLike | None = None,
        unsupported_params: UnsupportedParams | None = None,
        cache: CacheMode = None,
        cache_ttl: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        **params: Unpack[EmbeddingParams],
    ) -> EmbeddingResponse:
        """Embeddings of `input` from a deployment of `model` (`cache`, `cache_ttl`,
        `metadata`, `request_id`: as for `acompletion`)."""
        group = self._group_for(model)
        call_timeout = self._deadline(timeout)
        plan = self._cache.plan(group, cache, cache_ttl)
        body = provider_params(params, EMBEDDING_PARAM_NAMES, "aembedding")
        request = Request(
            "embedding",
            group,
            input=input,
            params=body,
            tags=tag_set(tags),
            est_input_tokens=self._tokens.embedding_input(input),
            requested=model,
            strategy=request_strategy(strategy),
            unsupported_params=self._unsupported_for(unsupported_params),
            id=new_request_id() if request_id is None else call_request_id(request_id),
            metadata=call_metadata(metadata),
        )
        if plan is not None:
            return await self._cache.fetch(
                plan,
                request,
                call_timeout,
                EmbeddingResponse,
                self._deferred(request, call_timeout, send_embed, complete_response),
            )
        return await self._pipeline.run(request, call_timeout, send_embed, complete_response)

    async def call(
        self,
        group: str,
        fn: Callable[[Deployment], Awaitable[T]],
        *,
        timeout: float | None = None,
        tags: Sequence[str] = (),
        tokens: int = 0,
        strategy: StrategyLike | None = None,
        metadata: Mapping[str, Any] | None = None,
        request_id: str | None = None,
    ) -> T:
        """Route any ``async fn(deployment) -> T`` with the same selection, accounting,
        health, retries and fallbacks as a chat request.

        `fn` should raise `InterlockError` subclasses to say what went wrong (a
        `RateLimitError` with `retry_after` cools that deployment, and so on).
        `TimeoutError` counts as `APITimeoutError` and `OSError`/aiohttp client errors
        as `APIConnectionError`; any other exception propagates at once, unretried and
        not held against the deployment. `tokens` is reserved against TPM limits.
        `metadata` and `request_id`: as for `acompletion`; the id is on the call's
        events, spans and `InterlockError`s, not on `fn`'s result (an arbitrary `T`).
        """
        g = self._group_for(group)
        call_timeout = self._deadline(timeout)
        request = Request(
            "call",
            g,
            tags=tag_set(tags),
            est_input_tokens=max(0, tokens),
            requested=group,
            strategy=request_strategy(strategy),
            id=new_request_id() if request_id is None else call_request_id(request_id),
            metadata=call_metadata(metadata),
        )

        deadlines = self._deadlines

        def send(state: DeploymentState, req: Request, t: float) -> Awaitable[T]:
            return run_user_fn(fn, state, t, deadlines)

        return await self._pipeline.run(request, call_timeout, send, complete_call)

    def _unsupported_for(self, mode: UnsupportedParams | None) -> UnsupportedParams:
        return self._unsupported if mode is None else unsupported_mode(mode, "unsupported_params")

    def __repr__(self) -> str:
        parts = self.parts
        states = parts.states
        now = parts.clock.now()
        cooling = sum(1 for s in states if s.cooldown_until > now)
        in_flight = sum(s.in_flight for s in states)
        requests = sum(s.requests for s in states)
        failures = sum(s.failures for s in states)
        return (
            f"<Router groups={len(parts.pools)} deployments={len(states)} "
            f"in_flight={in_flight} cooling={cooling} requests={requests} "
            f"failures={failures} strategy={parts.strategy!r}"
            f"{' closed' if self._closed else ''}>"
        )
