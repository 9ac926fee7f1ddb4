"""Every hook event of a call names it: request id, group, tags and the caller's metadata;
the id is on the result, the stream and the errors too."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from types import MappingProxyType
from typing import Any

import pytest

from interlock import (
    BadRequestError,
    CooldownEvent,
    FailureEvent,
    FallbackEvent,
    InternalServerError,
    NoDeploymentAvailableError,
    RateLimitError,
    RecoveryEvent,
    RequestStartEvent,
    RetryEvent,
    Router,
    SuccessEvent,
)
from interlock.observability.events import HedgeEvent, RateLimitWaitEvent, call_fields
from interlock.testing import FakeClock, InstantTransport
from interlock.types import (
    NO_METADATA,
    CompletionTokensDetails,
    PromptTokensDetails,
    Request,
    Usage,
    new_request_id,
)
from tests.unit.observability.helpers import MSG, Recorder, make_router

CALL_EVENTS = (
    RequestStartEvent,
    SuccessEvent,
    FailureEvent,
    RetryEvent,
    FallbackEvent,
    HedgeEvent,
    RateLimitWaitEvent,
)


class Everything(Recorder):
    def on_hedge(self, event: HedgeEvent) -> None:
        self.events.append(event)

    def on_rate_limit_wait(self, event: RateLimitWaitEvent) -> None:
        self.events.append(event)


@pytest.fixture
async def routed(
    transport: InstantTransport, clock: FakeClock
) -> AsyncIterator[tuple[Router, Everything]]:
    rec = Everything()
    router = make_router(transport, clock, [rec], groups=("g", "h"), fallbacks={"g": ["h"]})
    yield router, rec
    await router.aclose()


def test_every_call_event_has_the_call_fields() -> None:
    for kind in CALL_EVENTS:
        assert {"request_id", "group", "tags", "metadata"} <= set(kind._fields), kind
    assert "request_id" in CooldownEvent._fields
    assert "request_id" in RecoveryEvent._fields


def test_call_fields_are_the_requests_and_empty_outside_a_call() -> None:
    meta = {"tenant": "t"}
    request = Request("chat", "g", id="r-1", tags=frozenset({"a"}), metadata=meta)
    rid, tags, got = call_fields(request)
    assert (rid, tags) == ("r-1", frozenset({"a"}))
    assert got is meta  # handed on, never copied
    assert call_fields(None) == ("", frozenset(), NO_METADATA)  # a health probe's attempt


def test_request_ids_are_unique_and_short() -> None:
    ids = {new_request_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]+", i) for i in ids)


async def test_events_of_a_retried_fallen_back_call_carry_id_tags_and_the_same_metadata(
    routed: tuple[Router, Everything], transport: InstantTransport
) -> None:
    router, rec = routed
    # Both deployments of "g" fail, then "h" answers: start, failure, retry, failure,
    # fallback, success.
    transport.fail("g-0", InternalServerError("boom", status_code=500))
    transport.fail("g-1", InternalServerError("boom", status_code=500))
    meta: Mapping[str, Any] = MappingProxyType({"tenant": "acme", "trace": object()})
    r = await router.acompletion("g", MSG, tags=(), metadata=meta)
    kinds = [type(e).__name__ for e in rec.events]
    assert kinds.count("FailureEvent") == 2
    assert {"RequestStartEvent", "RetryEvent", "FallbackEvent", "SuccessEvent"} <= set(kinds)
    assert r.request_id
    for e in rec.events:
        if isinstance(e, CALL_EVENTS):
            assert e.request_id == r.request_id, e
            assert e.metadata is meta, e  # handed on, never copied
            assert e.tags == frozenset()
    cooled = rec.of(CooldownEvent)
    assert cooled
    assert all(isinstance(c, CooldownEvent) and c.request_id == r.request_id for c in cooled)
    groups = {e.group for e in rec.events if isinstance(e, SuccessEvent | FallbackEvent)}
    assert groups == {"h", "g"}


async def test_a_callers_request_id_is_used_everywhere(
    routed: tuple[Router, Everything], transport: InstantTransport
) -> None:
    router, rec = routed
    transport.fail("g-0", InternalServerError("boom", status_code=500))
    transport.fail("g-1", InternalServerError("boom", status_code=500))
    r = await router.acompletion("g", MSG, request_id="req-42")
    assert r.request_id == "req-42"
    assert {getattr(e, "request_id", None) for e in rec.events} == {"req-42"}
    assert all(e.metadata is NO_METADATA for e in rec.events if isinstance(e, CALL_EVENTS))
    e = await router.aembedding("g", "x", request_id="emb-1", metadata={"k": 1})
    assert e.request_id == "emb-1"
    assert getattr(rec.events[-1], "request_id", None) == "emb-1"


async def test_ids_differ_per_call_and_tags_reach_events(
    routed: tuple[Router, Everything], transport: InstantTransport, clock: FakeClock
) -> None:
    router, rec = routed
    a = await router.acompletion("g", MSG)
    b = await router.acompletion("g", MSG)
    assert a.request_id != b.request_id
    # tags filter deployments: none of these carries "eu", so the call is refused,
    # and the refusal (a FailureEvent) names the call and its tags.
    with pytest.raises(NoDeploymentAvailableError) as info:
        await router.acompletion("g", MSG, tags=["eu"], metadata={"user": "u1"})
    refused = rec.events[-1]
    assert isinstance(refused, FailureEvent)
    assert refused.kind == "refused"
    assert refused.tags == frozenset({"eu"})
    assert refused.metadata == {"user": "u1"}
    assert info.value.request_id == refused.request_id
    assert info.value.request_id not in (a.request_id, b.request_id, None)


async def test_errors_carry_the_request_id(
    routed: tuple[Router, Everything], transport: InstantTransport
) -> None:
    router, rec = routed
    transport.fail("g-0", BadRequestError("bad parameter", status_code=400), always=True)
    transport.fail("g-1", BadRequestError("bad parameter", status_code=400), always=True)
    with pytest.raises(BadRequestError) as info:
        await router.acompletion("g", MSG, request_id="caller-7")
    assert info.value.request_id == "caller-7"
    transport.clear()
    # exhausted on every group: the last attempt's error carries the id
    for d in ("g-0", "g-1", "h-0", "h-1"):
        transport.fail(d, RateLimitError("slow down", status_code=429), always=True)
    with pytest.raises(RateLimitError) as limited:
        await router.acompletion("g", MSG)
    failures = [e for e in rec.events if isinstance(e, FailureEvent)]
    assert limited.value.request_id == failures[-1].request_id


async def test_call_carries_id_on_events_and_errors_not_on_its_result(
    routed: tuple[Router, Everything],
) -> None:
    router, rec = routed

    async def fn(d: object) -> str:
        return "plain"

    assert await router.call("g", fn, request_id="c-1", metadata={"job": 3}) == "plain"
    ok = rec.events[-1]
    assert isinstance(ok, SuccessEvent)
    assert (ok.request_id, ok.metadata) == ("c-1", {"job": 3})

    async def broken(d: object) -> str:
        raise InternalServerError("down", status_code=503)

    with pytest.raises(InternalServerError) as info:
        await router.call("h", broken, request_id="c-2")
    assert info.value.request_id == "c-2"


async def test_stream_carries_the_request_id(routed: tuple[Router, Everything]) -> None:
    router, rec = routed
    stream = await router.acompletion("g", MSG, stream=True, metadata={"a": 1})
    async for _ in stream:
        pass
    ok = rec.events[-1]
    assert isinstance(ok, SuccessEvent)
    assert stream.request_id == ok.request_id
    assert ok.metadata == {"a": 1}


async def test_success_event_carries_cached_and_reasoning_tokens(clock: FakeClock) -> None:
    usage = Usage(100, 40, 140)
    usage.prompt_tokens_details = PromptTokensDetails(cached_tokens=64)
    usage.completion_tokens_details = CompletionTokensDetails(reasoning_tokens=25)
    rec = Everything()
    router = make_router(InstantTransport(usage), clock, [rec])
    try:
        await router.acompletion("g", MSG)
        ok = rec.events[-1]
        assert isinstance(ok, SuccessEvent)
        assert (ok.input_tokens, ok.output_tokens) == (100, 40)
        assert (ok.cached_tokens, ok.reasoning_tokens) == (64, 25)
        assert ok.cost > 0
    finally:
        await router.aclose()
    rec2 = Everything()
    plain = make_router(InstantTransport(), clock, [rec2])
    try:
        await plain.acompletion("g", MSG)
        ok = rec2.events[-1]
        assert isinstance(ok, SuccessEvent)
        assert (ok.cached_tokens, ok.reasoning_tokens) == (None, None)  # not reported
    finally:
        await plain.aclose()


async def test_recovery_names_the_request_that_showed_it(
    routed: tuple[Router, Everything], transport: InstantTransport, clock: FakeClock
) -> None:
    router, rec = routed
    transport.fail("h-0", InternalServerError("boom", status_code=500), always=True)
    transport.fail("h-1", InternalServerError("boom", status_code=500), always=True)
    with pytest.raises(InternalServerError):
        await router.acompletion("h", MSG)
    transport.clear()
    clock.advance(31.0)  # past the 30 s cooldown
    rec.events.clear()
    r = await router.acompletion("h", MSG)
    recovered = rec.of(RecoveryEvent)
    assert recovered
    assert all(isinstance(e, RecoveryEvent) and e.request_id == r.request_id for e in recovered)


@pytest.mark.parametrize(
    ("value", "error"),
    [(42, TypeError), ("", ValueError), ("x" * 257, ValueError), ("a\nb", ValueError)],
)
async def test_a_bad_request_id_is_refused(
    routed: tuple[Router, Everything], value: Any, error: type[Exception]
) -> None:
    router, _ = routed
    with pytest.raises(error, match="request_id"):
        await router.acompletion("g", MSG, request_id=value)


async def test_metadata_must_be_a_mapping(routed: tuple[Router, Everything]) -> None:
    router, _ = routed
    with pytest.raises(TypeError, match="metadata must be a mapping"):
        await router.acompletion("g", MSG, metadata=["not", "a", "mapping"])  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="metadata must be a mapping"):
        await router.aembedding("g", "x", metadata="tenant=acme")  # type: ignore[arg-type]
