"""How a Responses API call is routed: which groups may serve it, which deployment a
follow-up (``previous_response_id``) must go to, and the sends and completions the
pipeline runs.

A stored response lives in the account that created it: OpenAI keeps it in the
project of the key, Azure OpenAI in the resource. A follow-up sent anywhere else
fails with "previous response not found", so a follow-up is never failed over to
another account. `ResponseAffinity` remembers which deployment stored each response
this router created (a bounded LRU map, in this process only); a follow-up goes to a
deployment of the called group on that same account (the one that stored it first,
if it is in the group), through a pipeline without fallbacks, and fails with a
`ResponseAffinityError` saying why when none of them can take it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Iterable, Mapping, Sequence

from cachetools import LRUCache

from interlock.errors import (
    BadRequestError,
    ConfigError,
    InterlockError,
    NoDeploymentAvailableError,
    NotFoundError,
)
from interlock.failures import TREATMENTS, classify
from interlock.limits.diagnose import diagnose
from interlock.limits.queue import WaitQueue
from interlock.providers.openai import OpenAITransport
from interlock.providers.openai_responses import (
    ResponseEventSource,
    create_response,
    open_response_stream,
    serves_responses,
)
from interlock.records.state import DeploymentState
from interlock.responses_types import ResponseAffinityError, ResponseResult
from interlock.router.attempt import Attempt
from interlock.router.call_state import describe
from interlock.router.fallbacks import FallbackTable
from interlock.router.pipeline import Pipeline
from interlock.router.pool import DeploymentPool
from interlock.strategies.candidates import Candidates, NoEligible
from interlock.types import Request

__all__ = [
    "AFFINITY_SIZE",
    "PinnedStrategy",
    "ResponseAffinity",
    "ResponsesRoutes",
    "account_of",
    "complete_result",
    "send_response",
    "send_response_stream",
]

AFFINITY_SIZE = 100_000
"""Response ids a router remembers (the least recently used are forgotten first):
about 150 bytes each, 15 MB when full."""


def _transport(state: DeploymentState) -> OpenAITransport:
    t = state.transport
    # The group was checked before routing (`ResponsesRoutes.check`).
    assert isinstance(t, OpenAITransport)
    return t


# Not coroutine functions, as `send_chat`: the provider's coroutine is returned as it is.
def send_response(
    state: DeploymentState, request: Request, timeout: float
) -> Awaitable[ResponseResult]:
    return create_response(_transport(state), state.deployment, request, timeout)


def send_response_stream(
    state: DeploymentState, request: Request, timeout: float
) -> Awaitable[ResponseEventSource]:
    return open_response_stream(_transport(state), state.deployment, request, timeout)


def complete_result(result: ResponseResult, attempt: Attempt) -> ResponseResult:
    """Settle with the response's usage (cached and reasoning tokens included) and
    record the success."""
    u = result.usage
    usage = u.as_usage() if u is not None else None
    result.cost = attempt.succeeded(usage.total_tokens if usage is not None else None, usage)
    result.request_id = attempt.request.id
    return result


def account_of(state: DeploymentState) -> str:
    """Which account `state` reaches (a digest of its provider, address and key or
    token provider): deployments with the same one see the same stored responses."""
    d = state.deployment
    token = d.azure_ad_token_provider
    who = d.api_key_value() or (f"token:{id(token)}" if token is not None else "")
    raw = f"{d.provider}\0{d.api_base}\0{who}".encode()
    return hashlib.blake2b(raw, digest_size=12).hexdigest()


class ResponseAffinity:
    """Response id -> the id of the deployment that stored it, for the newest
    `maxsize` responses this router created with ``store`` on."""

    __slots__ = ("_map",)

    def __init__(self, maxsize: int = AFFINITY_SIZE) -> None:
        self._map: LRUCache[str, str] = LRUCache(maxsize)

    def remember(self, response_id: str, deployment_id: str) -> None:
        if response_id and deployment_id:
            self._map[response_id] = deployment_id

    def get(self, response_id: str) -> str | None:
        return self._map.get(response_id)

    def __len__(self) -> int:
        return len(self._map)

    def __repr__(self) -> str:
        return f"<ResponseAffinity {len(self._map)}/{int(self._map.maxsize)}>"


class PinnedStrategy:
    """Chooses the first eligible of `states` (those of one account), in order; none
    else. Lazy: the pool hands it each tier without probing it first."""

    __slots__ = ("states",)

    lazy_candidates = True

    def __init__(self, states: Sequence[DeploymentState]) -> None:
        self.states = tuple(states)

    def choose(self, candidates: Candidates, request: Request) -> DeploymentState:
        members = candidates.tier.members
        for s in self.states:
            if s in members and candidates.ok(s):
                return s
        raise NoEligible

    def __repr__(self) -> str:
        return f"PinnedStrategy({[s.id for s in self.states]})"


class ResponsesRoutes:
    """A router's Responses API routing: built on its first Responses call."""

    __slots__ = (
        "_accounts",
        "_by_id",
        "_pools",
        "_problems",
        "affinity",
        "built_for",
        "pinned",
        "pipeline",
    )

    def __init__(
        self,
        main: Pipeline,
        pools: Mapping[str, DeploymentPool],
        fallbacks: FallbackTable,
        queues: Mapping[str, WaitQueue],
        affinity_size: int = AFFINITY_SIZE,
    ) -> None:
        self._pools = pools
        self._by_id = {s.id: s for pool in pools.values() for s in pool.states}
        self._accounts = {s.id: account_of(s) for s in self._by_id.values()}
        self._problems = {g: _problem(p.states) for g, p in pools.items()}
        able = {g for g, problem in self._problems.items() if problem is None}
        # Fallback groups that cannot serve the API are left out of a Responses call's
        # chains; the group called must serve it (`check`).
        table = FallbackTable(pools, {}, max_depth=fallbacks.max_depth)
        table.chains = _only(fallbacks.chains, able)
        table.context_window = _only(fallbacks.context_window, able)
        table.content_policy = _only(fallbacks.content_policy, able)
        # No hedging: a hedge would create (and store) a second response.
        self.pipeline = _Shared(main, pools, table, queues)
        # A follow-up stays on its account: no fallbacks, no capacity queue.
        self.pinned = _Shared(main, pools, FallbackTable(pools, {}, max_depth=0), {})
        self.affinity = ResponseAffinity(affinity_size)
        self.built_for: object = None
        """The `RouterParts` these routes were built from (a runtime change makes new
        parts, and the routes are rebuilt from them)."""

    def check(self, group: str) -> None:
        """Refuse a group with a deployment whose provider has no Responses API."""
        problem = self._problems[group]
        if problem is not None:
            raise ConfigError([(f"group {group!r}", problem)], "aresponses")

    def pin(
        self, request: Request, previous: str | None, deployment_id: str | None, now: float
    ) -> PinnedStrategy | None:
        """The strategy that keeps a follow-up on its account, or None for a call that
        is free to go anywhere. Raises `ResponseAffinityError` (or ValueError for an
        unknown `deployment_id`) when the follow-up cannot be served now."""
        named = deployment_id
        if named is None and previous is not None:
            named = self.affinity.get(previous)
        if named is None:
            return None
        owner = self._by_id.get(named)
        if owner is None:
            if deployment_id is not None:
                raise ValueError(f"deployment_id {deployment_id!r} names no deployment")
            raise self._error(previous, named, "it is no longer configured", None)
        account = self._accounts[owner.id]
        pool = self._pools[request.group]
        same = [s for s in pool.states if s is not owner and self._accounts[s.id] == account]
        states = [owner, *same] if owner.group == request.group else same
        if not states:
            reason = (
                f"it belongs to group {owner.group!r} and no deployment of group "
                f"{request.group!r} uses the same account"
            )
            raise self._error(previous, named, reason, None)
        tokens = request.est_input_tokens + request.est_output_tokens
        found = diagnose(states, tokens, now, pool._effective_tags(request.tags))
        if found.kind != "free":
            raise self._error(previous, named, "; ".join(found.reasons), found.wait)
        return PinnedStrategy(states)

    def unavailable(
        self, exc: InterlockError, previous: str | None, pinned: PinnedStrategy, now: float
    ) -> InterlockError:
        """What a pinned call that failed raises: the caller's own errors as they are;
        for a failure another deployment might have served, a `ResponseAffinityError`
        saying why the follow-up could not move (the failure as its cause)."""
        if isinstance(exc, NoDeploymentAvailableError):
            found = diagnose(pinned.states, 0, now)
            reason = "; ".join(found.reasons)
            return self._error(previous, pinned.states[0].id, reason, found.wait)
        if not TREATMENTS[classify(exc)].retry_elsewhere:
            return exc
        return self._error(
            previous, exc.deployment_id or pinned.states[0].id, f"it failed: {describe(exc)}",
            exc.retry_after,
        )  # fmt: skip

    def lacks_response(self, exc: InterlockError) -> str | None:
        """The account of the deployment that answered `exc`, when `exc` says it holds
        no such previous response (OpenAI's ``previous_response_not_found``)."""
        if not isinstance(exc, BadRequestError | NotFoundError):
            return None
        if "previous_response_not_found" not in exc.message or exc.deployment_id is None:
            return None
        return self._accounts.get(exc.deployment_id)

    def other_accounts(self, group: str, lacking: set[str]) -> list[DeploymentState]:
        """The deployments of `group` on none of the `lacking` accounts."""
        return [s for s in self._pools[group].states if self._accounts[s.id] not in lacking]

    @staticmethod
    def _error(
        previous: str | None, deployment_id: str, reason: str, wait: float | None
    ) -> ResponseAffinityError:
        what = f"response {previous!r}" if previous else "the pinned conversation"
        return ResponseAffinityError(
            f"{what} is held by deployment {deployment_id!r}, which cannot take the call: "
            f"{reason}. A follow-up is not sent to another account, which cannot see the "
            "stored response; retry later or start over without previous_response_id",
            response_id=previous or "",
            deployment_id=deployment_id,
            reason=reason,
            retry_after=wait,
        )

    def __repr__(self) -> str:
        return f"<ResponsesRoutes groups={len(self._pools)} {self.affinity!r}>"


class _Shared(Pipeline):
    """A pipeline over the router's pools, attempts and retry budgets, with its own
    fallback chains."""

    __slots__ = ()

    def __init__(
        self,
        main: Pipeline,
        pools: Mapping[str, DeploymentPool],
        fallbacks: FallbackTable,
        queues: Mapping[str, WaitQueue],
    ) -> None:
        super().__init__(
            pools, fallbacks, main.retry, main.attempts, main.rng,
            queues=queues, queue_wait=main.queue_wait,
        )  # fmt: skip
        # One retry budget per group whatever the API: retries are retries.
        self._retry_budgets = main._retry_budgets


def _problem(states: Iterable[DeploymentState]) -> str | None:
    bad = [f"{s.id} ({s.deployment.provider})" for s in states if not serves_responses(s.transport)]
    if not bad:
        return None
    return (
        "the Responses API is served by OpenAI, Azure OpenAI and OpenAI-compatible "
        f"deployments only, not by {', '.join(bad)} (docs/endpoints.md#responses-api)"
    )


def _only(table: Mapping[str, Sequence[str]], able: set[str]) -> dict[str, tuple[str, ...]]:
    return {g: tuple(x for x in c if x in able) for g, c in table.items()}
