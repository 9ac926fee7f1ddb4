"""`Router.aresponses`: OpenAI's Responses API through the router (docs/endpoints.md).

A mixin of `Router`, so the facade keeps one class while each API's methods live in
their own module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, Unpack, overload

from interlock.errors import InterlockError
from interlock.limits.tokens import TokenCounter, estimate_text_tokens
from interlock.responses_types import (
    RESPONSES_PARAM_NAMES,
    ResponseResult,
    ResponsesParams,
    estimate_responses_input,
)
from interlock.router.calls import (
    NO_TAGS,
    call_metadata,
    call_request_id,
    group_of,
    provider_params,
    request_strategy,
    tag_set,
)
from interlock.router.pipeline import Pipeline
from interlock.router.responses_route import (
    PinnedStrategy,
    ResponsesRoutes,
    complete_result,
    send_response,
    send_response_stream,
)
from interlock.router.responses_stream import ResponseStream, open_response_events
from interlock.strategies.base import StrategyLike
from interlock.types import NO_METADATA, Request, new_request_id

if TYPE_CHECKING:
    from interlock.router.wiring import RouterParts

__all__ = ["ResponsesMethods"]


class ResponsesMethods:
    """The Responses API methods of `Router` (which provides the attributes below)."""

    __slots__ = ()

    parts: RouterParts
    _names: Mapping[str, str]
    _tokens: TokenCounter
    _expected_output: int
    _responses: ResponsesRoutes

    if TYPE_CHECKING:

        def _deadline(self, timeout: float | None) -> float: ...

    @overload
    async def aresponses(
        self,
        model: str,
        input: str | Sequence[Mapping[str, Any]],
        *,
        stream: Literal[False] = False,
        timeout: float | None = None,
        tags: Sequence[str] = (),
        strategy: StrategyLike | None = None,
        deployment_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        **params: Unpack[ResponsesParams],
    ) -> ResponseResult: ...

    @overload
    async def aresponses(
        self,
        model: str,
        input: str | Sequence[Mapping[str, Any]],
        *,
        stream: Literal[True],
        timeout: float | None = None,
        tags: Sequence[str] = (),
        strategy: StrategyLike | None = None,
        deployment_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        **params: Unpack[ResponsesParams],
    ) -> ResponseStream: ...

    async def aresponses(
        self,
        model: str,
        input: str | Sequence[Mapping[str, Any]],
        *,
        stream: bool = False,
        timeout: float | None = None,
        tags: Sequence[str] = (),
        strategy: StrategyLike | None = None,
        deployment_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        **params: Unpack[ResponsesParams],
    ) -> ResponseResult | ResponseStream:
        """A response from a deployment of `model` (a group or an alias) through
        OpenAI's Responses API (``POST /responses``).

        `input` is a string or a list of input items (messages, ``function_call_output``
        items, ...); `params` are the API's (`ResponsesParams`). With ``stream=True``
        returns a `ResponseStream` of events once the first has arrived; failures
        before it are retried and failed over like any other.

        A call with ``previous_response_id`` goes to the deployment that stored that
        response (or another of the group on the same account) and nowhere else; when
        it cannot, a `ResponseAffinityError` says why. `deployment_id` pins a call to
        one deployment the same way (e.g. a conversation whose first turn another
        process created). `timeout`, `tags`, `strategy`, `metadata` and `request_id`
        are as for `acompletion` (a pinned call ignores `strategy`); the call's id is on
        the result (`ResponseResult.request_id`, `ResponseStream.request_id`), its hook
        events, spans and errors. OpenAI's own ``metadata`` (stored with the response)
        goes in ``extra_body={"metadata": {...}}``. Responses are not cached.
        """
        call_timeout = self._deadline(timeout)
        group = group_of(self._names, model)
        routes = self._responses_routes()
        routes.check(group)
        _check_input(input)
        body = provider_params(params, RESPONSES_PARAM_NAMES, "aresponses")
        out = body.get("max_output_tokens")
        count = self._tokens.count or estimate_text_tokens
        request = Request(
            "responses",
            group,
            (),
            input,
            body,
            stream,
            tag_set(tags) if tags else NO_TAGS,
            estimate_responses_input(input, body.get("instructions"), count),
            int(out) if out else self._expected_output,
            model,
            "drop",
            request_strategy(strategy),
            new_request_id() if request_id is None else call_request_id(request_id),
            NO_METADATA if metadata is None else call_metadata(metadata),
        )
        previous = body.get("previous_response_id")
        if previous is not None and not isinstance(previous, str):
            raise TypeError(f"previous_response_id must be a string, got {previous!r}")
        tracing = self.parts.tracing
        if tracing is None:
            return await self._route(routes, request, call_timeout, previous, deployment_id)
        # One call span over the whole call: a follow-up that looks for its account
        # runs the pipeline once per account tried, each run's attempts under it.
        trace = request.trace = tracing.start(request)
        try:
            result = await self._route(routes, request, call_timeout, previous, deployment_id)
        except BaseException as exc:
            trace.end(exc)
            raise
        if not request.stream:  # a stream ends the trace when it ends
            trace.end(None, result)
        return result

    async def _route(
        self,
        routes: ResponsesRoutes,
        request: Request,
        timeout: float,
        previous: str | None,
        deployment_id: str | None,
    ) -> ResponseResult | ResponseStream:
        try:
            pinned = routes.pin(request, previous, deployment_id, self.parts.clock.now())
        except InterlockError as exc:
            exc.request_id = request.id
            raise
        if pinned is not None:
            return await self._pinned(routes, request, timeout, previous, pinned)
        if previous is None:
            return await self._send_response(routes, request, timeout, routes.pipeline)
        return await self._search(routes, request, timeout, previous)

    async def _pinned(
        self,
        routes: ResponsesRoutes,
        request: Request,
        timeout: float,
        previous: str | None,
        pinned: PinnedStrategy,
    ) -> ResponseResult | ResponseStream:
        """A call kept on one account: a `ResponseAffinityError` when it cannot be."""
        request.strategy = pinned
        try:
            return await self._send_response(routes, request, timeout, routes.pinned)
        except InterlockError as exc:
            err = routes.unavailable(exc, previous, pinned, self.parts.clock.now())
            if err is exc:
                raise
            err.request_id = request.id
            raise err from exc

    async def _search(
        self, routes: ResponsesRoutes, request: Request, timeout: float, previous: str
    ) -> ResponseResult | ResponseStream:
        """A follow-up of a response this router did not create (another process or
        a restart did): routed as any call; a deployment whose account does not hold
        the response answers "previous response not found", and the call moves to the
        group's other accounts in turn (not held against the deployment), within the
        call's one deadline. The account that holds it is remembered."""
        clock = self.parts.clock
        deadline = clock.now() + timeout
        lacking: set[str] = set()
        pipeline = routes.pipeline
        while True:
            try:
                return await self._send_response(routes, request, timeout, pipeline)
            except InterlockError as exc:
                account = routes.lacks_response(exc)
                if account is None:
                    raise
                lacking.add(account)
                rest = routes.other_accounts(request.group, lacking)
                timeout = deadline - clock.now()
                if not rest or timeout <= 0:
                    raise
            request.strategy = PinnedStrategy(rest)
            pipeline = routes.pinned

    async def _send_response(
        self, routes: ResponsesRoutes, request: Request, timeout: float, pipeline: Pipeline
    ) -> ResponseResult | ResponseStream:
        store = request.params.get("store") is not False
        if request.stream:
            events: ResponseStream = await pipeline.run(
                request,
                timeout,
                send_response_stream,
                partial(open_response_events, request.est_input_tokens),
            )
            first = events.first.response
            if store and first is not None:
                routes.affinity.remember(first.id, events.deployment_id)
            return events
        result: ResponseResult = await pipeline.run(
            request, timeout, send_response, complete_result
        )
        if store and result.stored:
            routes.affinity.remember(result.id, result.deployment_id)
        return result

    def _responses_routes(self) -> ResponsesRoutes:
        routes: ResponsesRoutes | None = getattr(self, "_responses", None)
        parts = self.parts
        if routes is None or routes.built_for is not parts:
            # First call, or the deployments changed at runtime (router/runtime.py):
            # built from the current parts; the conversations remembered stay.
            fresh = ResponsesRoutes(parts.pipeline, parts.pools, parts.fallbacks, parts.queues)
            fresh.built_for = parts
            if routes is not None:
                fresh.affinity = routes.affinity
            routes = fresh
            # The slot is the Router's (a mixin declares none, so mixins combine).
            setattr(self, "_responses", routes)  # noqa: B010
        return routes

    @property
    def responses_routes(self) -> ResponsesRoutes:
        """The Responses API's routing state (its `affinity` map): for tests and tools."""
        return self._responses_routes()


def _check_input(value: object) -> None:
    if isinstance(value, str):
        if not value:
            raise ValueError("input must not be empty")
        return
    if not isinstance(value, Sequence) or not value:
        raise TypeError("input must be a non-empty string or a non-empty list of input items")
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise TypeError(f"input[{i}] must be an input item (a mapping), got {item!r:.60}")
