"""The Router: pools of deployments behind one reliable endpoint."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from types import TracebackType
from typing import Any, Literal, TypeVar, Unpack, overload

from interlock.cache.response import CacheMode
from interlock.cache.stream import CachedStream
from interlock.clock import Clock
from interlock.config import Deployment, RouterConfig, load_config_source
from interlock.errors import UnknownModelError
from interlock.limits.ledger import Ledger, Reservation
from interlock.limits.shared import SharedLedger
from interlock.limits.spend import SpendReport, spend_report
from interlock.limits.tokens import TokenCounter
from interlock.observability.hooks import Hook
from interlock.observability.metrics import PrometheusMetrics
from interlock.observability.stats import RouterStatistics, deployment_statistics
from interlock.providers.base import ChunkSource, Transport
from interlock.providers.params import UnsupportedParams
from interlock.records.state import DeploymentState
from interlock.router.calls import (
    NO_TAGS,
    provider_params,
    request_strategy,
    run_user_fn,
    send_chat,
    send_embed,
    send_stream,
    tag_set,
    unsupported_mode,
)
from interlock.router.stream import ChatStream
from interlock.router.wiring import RouterParts
from interlock.strategies.base import StrategyLike
from interlock.types import (
    CHAT_PARAM_NAMES,
    EMBEDDING_PARAM_NAMES,
    ChatCompletion,
    ChatParams,
    EmbeddingParams,
    EmbeddingResponse,
    Request,
)

__all__ = ["Router"]

T = TypeVar("T")
R = TypeVar("R", ChatCompletion, EmbeddingResponse)


class Router(RouterParts):
    """Routes requests for a model group to one of its deployments.

    Construct it from `Deployment`s (or mappings) or with `Router.from_config`; use it
    as ``async with router:`` so its HTTP session is closed, or call `aclose()`.
    """

    @classmethod
    def from_config(
        cls,
        source: Mapping[str, Any] | str | os.PathLike[str],
        *,
        clock: Clock | None = None,
        transports: Mapping[str, Transport] | None = None,
        seed: int | None = None,
        hooks: Sequence[Hook] | None = None,
        metrics: PrometheusMetrics | None = None,
        tokenizer: TokenCounter | None = None,
        connection_limit: int = 1000,
    ) -> Router:
        """A Router from a mapping or a JSON file holding every key of `RouterConfig`
        (docs/configuration.md); the keywords are the objects a file cannot hold."""
        data = load_config_source(source)
        cfg = RouterConfig(**data)
        return cls(
            cfg.deployments,
            strategy=cfg.strategy,
            strategies=cfg.strategies,
            fallbacks=cfg.fallbacks,
            aliases=cfg.aliases,
            retry=cfg.retry,
            health=cfg.health,
            timeout=cfg.timeout,
            expected_output_tokens=cfg.expected_output_tokens,
            unsupported_params=cfg.unsupported_params,
            context_window_fallbacks=cfg.context_window_fallbacks,
            content_policy_fallbacks=cfg.content_policy_fallbacks,
            max_fallback_depth=cfg.max_fallback_depth,
            hedging=cfg.hedging,
            budgets=cfg.budgets,
            queue=cfg.queue,
            shared=cfg.shared,
            clock=clock,
            cache=cfg.cache,
            transports=transports,
            seed=seed,
            hooks=hooks,
            metrics=metrics,
            tokenizer=tokenizer,
            connection_limit=connection_limit,
        )

    # --- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> Router:
        self._closed = False
        self._http.reopen()
        self._prober.start()
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
        await self._prober.stop()
        await self._observer.aclose()
        for q in self._pipeline.queues.values():
            q.close()
        if self._shared is not None:
            await self._shared.aclose()
        for t in {id(t): t for t in self._transports.values()}.values():
            await t.aclose()
        await self._http.aclose()
        await self._cache.aclose()

    # --- requests -------------------------------------------------------------------

    def _group_for(self, model: str) -> str:
        group = self._names.get(model)
        if group is None:
            known = sorted(self._names)
            shown = ", ".join(repr(k) for k in known[:20])
            more = f" and {len(known) - 20} more" if len(known) > 20 else ""
            raise UnknownModelError(
                f"unknown model {model!r}; known groups and aliases: {shown}{more}"
            )
        return group

    def _deadline(self, timeout: float | None) -> float:
        if timeout is None:
            return self._timeout
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
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
        """
        # This is the hot path: helpers are inlined where the common case is one check.
        group = self._names.get(model)
        if group is None:
            group = self._group_for(model)
        budget = self._timeout if timeout is None else self._deadline(timeout)
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
        request = Request(
            "chat",
            group,
            messages,
            None,
            body,
            stream,
            tag_set(tags) if tags else NO_TAGS,
            self._tokens.messages(messages),
            int(out) if out else self._expected_output,
            model,
            self._unsupported
            if unsupported_params is None
            else self._unsupported_for(unsupported_params),
            None if strategy is None else request_strategy(strategy),
        )
        if plan is not None:
            if stream:
                return await self._cache.stream(
                    plan,
                    request,
                    budget,
                    lambda: self._pipeline.run(
                        request,
                        budget,
                        send_stream,
                        partial(self._open_stream, request.est_input_tokens),
                    ),
                )
            return await self._cache.fetch(
                plan,
                request,
                budget,
                ChatCompletion,
                lambda: self._pipeline.run(request, budget, send_chat, self._complete_response),
            )
        if stream:
            return await self._pipeline.run(
                request, budget, send_stream, partial(self._open_stream, request.est_input_tokens)
            )
        return await self._pipeline.run(request, budget, send_chat, self._complete_response)

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
        **params: Unpack[EmbeddingParams],
    ) -> EmbeddingResponse:
        """Embeddings of `input` from a deployment of `model` (`cache`, `cache_ttl`: as
        for `acompletion`)."""
        group = self._group_for(model)
        budget = self._deadline(timeout)
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
        )
        if plan is not None:
            return await self._cache.fetch(
                plan,
                request,
                budget,
                EmbeddingResponse,
                lambda: self._pipeline.run(request, budget, send_embed, self._complete_response),
            )
        return await self._pipeline.run(request, budget, send_embed, self._complete_response)

    async def call(
        self,
        group: str,
        fn: Callable[[Deployment], Awaitable[T]],
        *,
        timeout: float | None = None,
        tags: Sequence[str] = (),
        tokens: int = 0,
        strategy: StrategyLike | None = None,
    ) -> T:
        """Route any ``async fn(deployment) -> T`` with the same selection, accounting,
        health, retries and fallbacks as a chat request.

        `fn` should raise `InterlockError` subclasses to say what went wrong (a
        `RateLimitError` with `retry_after` cools that deployment, and so on).
        `TimeoutError` counts as `APITimeoutError` and `OSError`/aiohttp client errors
        as `APIConnectionError`; any other exception propagates at once, unretried and
        not held against the deployment. `tokens` is reserved against TPM limits.
        """
        g = self._group_for(group)
        budget = self._deadline(timeout)
        request = Request(
            "call",
            g,
            tags=tag_set(tags),
            est_input_tokens=max(0, tokens),
            requested=group,
            strategy=request_strategy(strategy),
        )

        deadlines = self._deadlines

        def send(state: DeploymentState, req: Request, t: float) -> Awaitable[T]:
            return run_user_fn(fn, state, t, deadlines)

        return await self._pipeline.run(request, budget, send, self._complete_call)

    def _unsupported_for(self, mode: UnsupportedParams | None) -> UnsupportedParams:
        return self._unsupported if mode is None else unsupported_mode(mode, "unsupported_params")

    # --- completion callbacks (synchronous, after a successful send) -----------------

    def _complete_response(self, result: R, r: Reservation, started: float) -> R:
        """Settle with the provider's usage (chat and embeddings) and record success."""
        now = self._clock.now()
        u = result.usage
        cost = Ledger.settle(r, u.total_tokens if u is not None else None, now, u)
        self._pipeline.succeeded(r.state, started, now, None, u, r.attempt, cost)
        return result

    def _complete_call(self, result: T, r: Reservation, started: float) -> T:
        now = self._clock.now()
        Ledger.settle(r, None, now)
        self._pipeline.succeeded(r.state, started, now, None, None, r.attempt)
        return result

    def _open_stream(
        self, prompt_tokens: int, source: ChunkSource, r: Reservation, started: float
    ) -> ChatStream:
        return ChatStream(source, r, self._pipeline, started, prompt_tokens)

    # --- introspection --------------------------------------------------------------

    @property
    def deployments(self) -> tuple[Deployment, ...]:
        """Every deployment, ids filled in, in configuration order."""
        return tuple(s.deployment for s in self._states)

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(self._pools)

    def fallback_chain(self, model: str) -> tuple[str, ...]:
        """The groups a request for `model` tries, in order."""
        return self._chains[self._group_for(model)]

    def statistics(self) -> RouterStatistics:
        """A frozen snapshot of every deployment."""
        now = self._clock.now()
        return RouterStatistics(
            at=now,
            deployments=tuple(deployment_statistics(s, now) for s in self._states),
            cache=self._cache.statistics(),
        )

    def spend(self) -> SpendReport:
        """Spend in USD per deployment, group and tag, and every budget's state."""
        return spend_report(self._states, self._budgets, self._clock.now())

    @property
    def shared(self) -> SharedLedger | None:
        """The ledger shared with other router processes, when configured."""
        return self._shared

    def __repr__(self) -> str:
        now = self._clock.now()
        cooling = sum(1 for s in self._states if s.cooldown_until > now)
        in_flight = sum(s.in_flight for s in self._states)
        requests = sum(s.requests for s in self._states)
        failures = sum(s.failures for s in self._states)
        return (
            f"<Router groups={len(self._pools)} deployments={len(self._states)} "
            f"in_flight={in_flight} cooling={cooling} requests={requests} "
            f"failures={failures} strategy={self._strategy!r}"
            f"{' closed' if self._closed else ''}>"
        )
