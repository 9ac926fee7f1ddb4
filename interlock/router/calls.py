"""How a request reaches a transport, and the normalisation of call arguments.

Module-level functions, not Router methods: the pipeline calls `send_*` once per
attempt, and a plain function is cheaper to call than a bound method.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import aiohttp

from interlock.config import Deployment
from interlock.deadline import DeadlineWheel
from interlock.errors import (
    APIConnectionError,
    APITimeoutError,
    InterlockError,
    UnknownModelError,
)
from interlock.limits.ledger import Ledger
from interlock.providers.params import UNSUPPORTED_MODES, UnsupportedParams
from interlock.records.state import DeploymentState
from interlock.records.transport import ChunkSource
from interlock.router.attempt import Attempt
from interlock.router.stream import ChatStream
from interlock.strategies.base import Strategy, StrategyLike
from interlock.strategies.registry import as_strategy, strategy_factory
from interlock.types import NO_METADATA, ChatCompletion, EmbeddingResponse, Request

__all__ = [
    "NO_TAGS",
    "call_metadata",
    "call_request_id",
    "complete_call",
    "complete_response",
    "group_of",
    "open_stream",
    "provider_params",
    "request_strategy",
    "run_user_fn",
    "send_chat",
    "send_embed",
    "send_stream",
    "tag_set",
    "unsupported_mode",
]

T = TypeVar("T")


def send_chat(
    state: DeploymentState, request: Request, timeout: float
) -> Awaitable[ChatCompletion]:
    return state.transport.chat(state.deployment, request, timeout)


def send_stream(state: DeploymentState, request: Request, timeout: float) -> Awaitable[ChunkSource]:
    return state.transport.open_stream(state.deployment, request, timeout)


def send_embed(
    state: DeploymentState, request: Request, timeout: float
) -> Awaitable[EmbeddingResponse]:
    return state.transport.embed(state.deployment, request, timeout)


async def run_user_fn(
    fn: Callable[[Deployment], Awaitable[T]],
    state: DeploymentState,
    timeout: float,
    deadlines: DeadlineWheel,
) -> T:
    try:
        with deadlines.timeout(timeout):
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


def group_of(names: Mapping[str, str], model: str) -> str:
    """The group `model` names (a group or an alias); UnknownModelError listing the
    known names (the first 20) otherwise."""
    group = names.get(model)
    if group is None:
        known = sorted(names)
        shown = ", ".join(repr(k) for k in known[:20])
        more = f" and {len(known) - 20} more" if len(known) > 20 else ""
        raise UnknownModelError(f"unknown model {model!r}; known groups and aliases: {shown}{more}")
    return group


def request_strategy(spec: StrategyLike | None) -> str | Strategy | None:
    """Validate a per-call ``strategy=``: a known name (the pool makes its instance),
    a Strategy, or a callable."""
    if spec is None:
        return None
    if isinstance(spec, str):
        strategy_factory(spec)  # raises for an unknown name
        return spec
    return as_strategy(spec)


def provider_params(params: Mapping[str, Any], known: frozenset[str], where: str) -> dict[str, Any]:
    if not params:
        return {}
    unknown = params.keys() - known
    if unknown:
        raise TypeError(
            f"{where}() got unknown parameter(s) {sorted(unknown)}; "
            f"pass provider-specific ones in extra_body"
        )
    # `extra_body` stays nested: each transport knows where its provider wants it.
    return dict(params)


def unsupported_mode(value: object, where: str) -> UnsupportedParams:
    if value == "drop":
        return "drop"
    if value == "raise":
        return "raise"
    raise ValueError(f"{where} must be one of {sorted(UNSUPPORTED_MODES)}, got {value!r}")


NO_TAGS: frozenset[str] = frozenset()

MAX_REQUEST_ID = 256


def call_request_id(value: object) -> str:
    """A caller's ``request_id=``: a non-empty printable str of at most 256 characters
    (it goes into log lines, spans and hook events as it is)."""
    if not isinstance(value, str):
        raise TypeError(f"request_id must be a str, got {type(value).__name__}")
    if not value or len(value) > MAX_REQUEST_ID or not value.isprintable():
        raise ValueError(
            f"request_id must be 1 to {MAX_REQUEST_ID} printable characters, got {value!r:.80}"
        )
    return value


def call_metadata(value: object) -> Mapping[str, Any]:
    """A caller's ``metadata=``: any mapping, kept as it is (never copied)."""
    if value is None:
        return NO_METADATA
    if not isinstance(value, Mapping):
        raise TypeError(f"metadata must be a mapping, got {type(value).__name__}")
    return value


def tag_set(tags: str | Sequence[str]) -> frozenset[str]:
    """A request's tags; a single string is one tag, not a set of letters."""
    if not tags:
        return frozenset()
    return frozenset((tags,)) if isinstance(tags, str) else frozenset(tags)


# --- completion callbacks: run synchronously after a successful send (the pipeline's
# `complete`); plain functions rather than Router methods for the same reason as above.

R = TypeVar("R", ChatCompletion, EmbeddingResponse)


def complete_response(result: R, attempt: Attempt) -> R:
    """Settle with the provider's usage (chat and embeddings), record success, and
    give the result its cost."""
    u = result.usage
    result.request_id = attempt.request.id
    if attempt.open:
        # `Attempt.succeeded`, inlined (one Python call less per request).
        attempts = attempt.attempts
        now = attempts.clock.now()
        cost = Ledger.settle(attempt, u.total_tokens if u is not None else None, now, u)
        attempts.success(
            attempt.state, attempt.started, now, None, u, attempt.attempt, cost,
            attempt.request, attempt,
        )  # fmt: skip
        result.cost = cost
    return result


def complete_call(result: T, attempt: Attempt) -> T:
    """Settle a routed function's call (no usage: the estimate stands)."""
    attempt.succeeded(None)
    return result


def open_stream(prompt_tokens: int, source: ChunkSource, attempt: Attempt) -> ChatStream:
    """The caller's stream; it settles its attempt when it ends."""
    return ChatStream(source, attempt, prompt_tokens)
