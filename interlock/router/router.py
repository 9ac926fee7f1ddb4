"""The Router: pools of deployments behind one reliable endpoint."""

from __future__ import annotations

import os
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, TypeVar, Unpack, overload

import aiohttp

from interlock.clock import Clock, MonotonicClock
from interlock.config import (
    Budget,
    Deployment,
    HealthPolicy,
    QueuePolicy,
    RetryPolicy,
    RouterConfig,
    SharedState,
    load_config_source,
)
from interlock.deadline import DeadlineWheel
from interlock.errors import (
    APIConnectionError,
    APITimeoutError,
    ConfigError,
    InterlockError,
    UnknownModelError,
)
from interlock.health.tracker import HealthTracker
from interlock.limits.ledger import Ledger, Reservation
from interlock.limits.queue import WaitQueue
from interlock.limits.shared import RedisLedger, SharedLedger
from interlock.limits.spend import SpendReport, attach_budgets, spend_report
from interlock.limits.tokens import TokenCounter
from interlock.observability.stats import DeploymentStatistics, RouterStatistics
from interlock.providers.base import ChunkSource, Transport
from interlock.providers.http import HttpClient
from interlock.providers.openai import OpenAITransport
from interlock.router.pipeline import Pipeline
from interlock.router.pool import DeploymentPool
from interlock.router.state import DeploymentState
from interlock.router.stream import ChatStream
from interlock.strategies.base import Strategy, StrategyLike, resolve_strategy
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

BUILTIN_PROVIDERS = ("openai",)


class Router:
    """Routes requests for a model group to one of its deployments.

    Construct it from `Deployment`s (or mappings) or with `Router.from_config`; use it
    as ``async with router:`` so its HTTP session is closed, or call `aclose()`.
    """

    def __init__(
        self,
        deployments: Sequence[Deployment | Mapping[str, Any]],
        *,
        strategy: StrategyLike = "weighted",
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
        budgets: Sequence[Budget | Mapping[str, Any]] = (),
        queue: QueuePolicy | Mapping[str, Any] | None = None,
        shared: SharedState | Mapping[str, Any] | None = None,
        tokenizer: TokenCounter | None = None,
    ) -> None:
        cfg = RouterConfig(
            deployments=tuple(deployments),
            strategy=strategy if isinstance(strategy, str) else "weighted",
            fallbacks={k: tuple(v) for k, v in (fallbacks or {}).items()},
            aliases=dict(aliases or {}),
            retry=retry if retry is not None else RetryPolicy(),
            health=health if health is not None else HealthPolicy(),
            timeout=timeout,
            expected_output_tokens=expected_output_tokens,
            budgets=tuple(budgets),
            queue=queue if queue is not None else QueuePolicy(),
            shared=shared,
        )
        self.config = cfg
        self._clock: Clock = clock or MonotonicClock()
        self._rng = random.Random(seed)
        self._http = HttpClient(connection_limit=connection_limit)
        self._deadlines = DeadlineWheel()
        self._transports: dict[str, Transport] = {
            "openai": OpenAITransport(self._http, self._deadlines)
        }
        self._transports.update(transports or {})
        try:
            self._strategy: Strategy = resolve_strategy(strategy, self._rng)
        except (ValueError, TypeError) as exc:
            raise ConfigError([("strategy", str(exc))]) from None

        self._states = self._build_states(cfg.deployments)
        by_group: dict[str, list[DeploymentState]] = {}
        for s in self._states:
            by_group.setdefault(s.group, []).append(s)
        self._pools = {g: DeploymentPool(g, ss, self._strategy) for g, ss in by_group.items()}
        self._names: dict[str, str] = {g: g for g in self._pools}
        self._names.update(cfg.aliases)
        self._chains = {g: _fallback_chain(g, cfg.fallbacks) for g in self._pools}
        self._health = HealthTracker(cfg.health)
        self._pipeline = Pipeline(
            self._pools, self._chains, cfg.retry, self._health, self._clock, self._rng
        )
        self._timeout = cfg.timeout
        self._expected_output = cfg.expected_output_tokens
        self._closed = False
        self._tokens = tokenizer or TokenCounter()
        self._budgets, problems = attach_budgets(cfg.budgets, self._states, self._clock.now())
        if problems:
            raise ConfigError(problems)
        if cfg.queue.max_wait > 0:
            self._pipeline.queue_wait = cfg.queue.max_wait
            for g, pool in self._pools.items():
                q = WaitQueue(self._clock, cfg.queue.max_size)
                self._pipeline.queues[g] = q
                for st in pool.states:
                    st.waiters = q
        self._shared: SharedLedger | None = None
        if cfg.shared is not None:
            self._shared = RedisLedger(cfg.shared, self._states, self._clock)
            self._pipeline.shared = self._shared

    def _build_states(self, deployments: Sequence[Deployment]) -> list[DeploymentState]:
        problems: list[tuple[str, str]] = []
        explicit = {d.id for d in deployments if d.id is not None}
        counters: dict[str, int] = {}
        states: list[DeploymentState] = []
        for i, d in enumerate(deployments):
            transport = self._transports.get(d.provider)
            if transport is None:
                problems.append(
                    (
                        f"deployments[{i}].provider",
                        f"unknown provider {d.provider!r}; known: "
                        f"{', '.join(sorted(self._transports))}",
                    )
                )
                continue
            if d.id is None:
                n = counters.get(d.group, 0)
                while f"{d.group}-{n}" in explicit:
                    n += 1
                counters[d.group] = n + 1
                d = d.model_copy(update={"id": f"{d.group}-{n}"})
            states.append(DeploymentState(d, transport))
        if problems:
            raise ConfigError(problems)
        return states

    @classmethod
    def from_config(
        cls,
        source: Mapping[str, Any] | str | os.PathLike[str],
        *,
        clock: Clock | None = None,
        transports: Mapping[str, Transport] | None = None,
        seed: int | None = None,
    ) -> Router:
        """A Router from a mapping or a JSON file with the keys of `RouterConfig`
        (``deployments``, ``strategy``, ``fallbacks``, ``aliases``, ``retry``, ``health``,
        ``timeout``, ``expected_output_tokens``)."""
        data = load_config_source(source)
        cfg = RouterConfig(**data)
        return cls(
            cfg.deployments,
            strategy=cfg.strategy,
            fallbacks=cfg.fallbacks,
            aliases=cfg.aliases,
            retry=cfg.retry,
            health=cfg.health,
            timeout=cfg.timeout,
            expected_output_tokens=cfg.expected_output_tokens,
            budgets=cfg.budgets,
            queue=cfg.queue,
            shared=cfg.shared,
            clock=clock,
            transports=transports,
            seed=seed,
        )

    # --- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> Router:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP session and every transport. Idempotent."""
        self._closed = True
        for q in self._pipeline.queues.values():
            q.close()
        if self._shared is not None:
            await self._shared.aclose()
        for t in {id(t): t for t in self._transports.values()}.values():
            await t.aclose()
        await self._http.aclose()

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
        **params: Unpack[ChatParams],
    ) -> ChatStream: ...

    async def acompletion(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        stream: bool = False,
        timeout: float | None = None,
        tags: Sequence[str] = (),
        **params: Unpack[ChatParams],
    ) -> ChatCompletion | ChatStream:
        """A chat completion from a deployment of `model` (a group or an alias).

        With ``stream=True`` returns a `ChatStream` once the first chunk has arrived;
        failures before that are retried like any other. `timeout` is the deadline for
        the whole call (every attempt, backoff and fallback); it defaults to the router's.
        """
        group = self._group_for(model)
        budget = self._deadline(timeout)
        if not messages:
            raise ValueError("messages must not be empty")
        body = _provider_params(params, CHAT_PARAM_NAMES, "acompletion")
        out = body.get("max_completion_tokens") or body.get("max_tokens")
        request = Request(
            "chat",
            group,
            messages=messages,
            params=body,
            stream=stream,
            tags=frozenset(tags) if tags else frozenset(),
            est_input_tokens=self._tokens.messages(messages),
            est_output_tokens=int(out) if out else self._expected_output,
            requested=model,
        )
        if stream:
            return await self._pipeline.run(request, budget, _send_stream, self._open_stream)
        return await self._pipeline.run(request, budget, _send_chat, self._complete_chat)

    async def aembedding(
        self,
        model: str,
        input: str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]],
        *,
        timeout: float | None = None,
        tags: Sequence[str] = (),
        **params: Unpack[EmbeddingParams],
    ) -> EmbeddingResponse:
        """Embeddings of `input` from a deployment of `model`."""
        group = self._group_for(model)
        budget = self._deadline(timeout)
        body = _provider_params(params, EMBEDDING_PARAM_NAMES, "aembedding")
        request = Request(
            "embedding",
            group,
            input=input,
            params=body,
            tags=frozenset(tags) if tags else frozenset(),
            est_input_tokens=self._tokens.embedding_input(input),
            requested=model,
        )
        return await self._pipeline.run(request, budget, _send_embed, self._complete_embed)

    async def call(
        self,
        group: str,
        fn: Callable[[Deployment], Awaitable[T]],
        *,
        timeout: float | None = None,
        tags: Sequence[str] = (),
        tokens: int = 0,
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
            tags=frozenset(tags) if tags else frozenset(),
            est_input_tokens=max(0, tokens),
            requested=group,
        )

        deadlines = self._deadlines

        def send(state: DeploymentState, req: Request, t: float) -> Awaitable[T]:
            return _run_user_fn(fn, state, t, deadlines)

        return await self._pipeline.run(request, budget, send, self._complete_call)

    # --- completion callbacks (synchronous, after a successful send) -----------------

    def _complete_chat(
        self, result: ChatCompletion, r: Reservation, started: float
    ) -> ChatCompletion:
        now = self._clock.now()
        u = result.usage
        Ledger.settle(r, u.total_tokens if u is not None else None, now, u)
        self._pipeline.succeeded(r.state, started, now)
        return result

    def _complete_embed(
        self, result: EmbeddingResponse, r: Reservation, started: float
    ) -> EmbeddingResponse:
        now = self._clock.now()
        u = result.usage
        Ledger.settle(r, u.total_tokens if u is not None else None, now, u)
        self._pipeline.succeeded(r.state, started, now)
        return result

    def _complete_call(self, result: T, r: Reservation, started: float) -> T:
        now = self._clock.now()
        Ledger.settle(r, None, now)
        self._pipeline.succeeded(r.state, started, now)
        return result

    def _open_stream(self, source: ChunkSource, r: Reservation, started: float) -> ChatStream:
        return ChatStream(
            source, r, self._pipeline, started, r.tokens - self._expected_output if r.tokens else 0
        )

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
        out = []
        for s in self._states:
            cooling = s.cooldown_until > now
            d = s.deployment
            out.append(
                DeploymentStatistics(
                    id=s.id,
                    group=s.group,
                    provider=d.provider,
                    model=d.model,
                    state="cooling" if cooling else "healthy",
                    in_flight=s.in_flight,
                    requests=s.requests,
                    successes=s.successes,
                    failures=s.failures,
                    consecutive_failures=s.consecutive_failures,
                    ejections=s.ejections,
                    cooldown_until=s.cooldown_until if cooling else None,
                    cooldown_remaining=max(0.0, s.cooldown_until - now),
                    rpm_used=s.rpm_window.total(now) if s.rpm_window is not None else None,
                    tpm_used=s.tpm_window.total(now) if s.tpm_window is not None else None,
                    latency_ewma=s.latency_ewma,
                    spend=s.spend,
                    input_tokens=s.input_tokens,
                    output_tokens=s.output_tokens,
                )
            )
        return RouterStatistics(at=now, deployments=tuple(out))

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
        return (
            f"<Router groups={len(self._pools)} deployments={len(self._states)} "
            f"in_flight={in_flight} cooling={cooling} strategy={self._strategy!r}"
            f"{' closed' if self._closed else ''}>"
        )


def _send_chat(
    state: DeploymentState, request: Request, timeout: float
) -> Awaitable[ChatCompletion]:
    return state.transport.chat(state.deployment, request, timeout)


def _send_stream(
    state: DeploymentState, request: Request, timeout: float
) -> Awaitable[ChunkSource]:
    return state.transport.open_stream(state.deployment, request, timeout)


def _send_embed(
    state: DeploymentState, request: Request, timeout: float
) -> Awaitable[EmbeddingResponse]:
    return state.transport.embed(state.deployment, request, timeout)


async def _run_user_fn(
    fn: Callable[[Deployment], Awaitable[T]],
    state: DeploymentState,
    timeout: float,
    deadlines: DeadlineWheel,
) -> T:
    try:
        async with deadlines.timeout(timeout):
            return await fn(state.deployment)
    except InterlockError:
        raise
    except TimeoutError:
        raise APITimeoutError(
            f"call did not finish within {timeout:.3g} s", deployment_id=state.id
        ) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise APIConnectionError(
            f"connection failed: {type(exc).__name__}", deployment_id=state.id
        ) from None


def _provider_params(
    params: Mapping[str, Any], known: frozenset[str], where: str
) -> dict[str, Any]:
    if not params:
        return {}
    unknown = params.keys() - known
    if unknown:
        raise TypeError(
            f"{where}() got unknown parameter(s) {sorted(unknown)}; "
            f"pass provider-specific ones in extra_body"
        )
    body = dict(params)
    extra = body.pop("extra_body", None)
    if extra:
        body.update(extra)
    return body


def _fallback_chain(group: str, fallbacks: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
    """`group` then its fallbacks depth-first, each group once (the graph is acyclic)."""
    out: list[str] = []

    def walk(g: str) -> None:
        if g in out:
            return
        out.append(g)
        for fb in fallbacks.get(g, ()):
            walk(fb)

    walk(group)
    return tuple(out)
