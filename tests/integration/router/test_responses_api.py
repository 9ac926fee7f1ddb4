"""`Router.aresponses` end to end against FakeUpstream's ``/v1/responses``: plain and
streamed calls, failover before the first event, cuts after it, accounting, tools,
and follow-ups kept on the account that stored their conversation.

Payloads follow https://platform.openai.com/docs/api-reference/responses; the openai
SDK's types check the bodies sent, the fakes' answers and the results returned
(tests/sdk_contract_responses.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from interlock import (
    APITimeoutError,
    BadRequestError,
    ConfigError,
    DeadlineExceededError,
    Deployment,
    InterlockError,
    InternalServerError,
    ResponseAffinityError,
    ResponseEvent,
    ResponseResult,
    ResponseStream,
    Router,
    StreamInterruptedError,
)
from interlock.testing import FakeAnthropic, FakeClock, FakeUpstream, Fault
from tests.integration.loopback import (
    KEY,
    Recorder,
    deployment,
    first_candidate,
    router_over,
    upstreams,
)
from tests.sdk_contract_responses import (
    openai_response,
    openai_response_event,
    openai_responses_request,
)

REPLY = "The quick brown fox jumps over the lazy dog."

# A function tool as the API reference's "Function calling" example defines one
# (https://platform.openai.com/docs/api-reference/responses/create, ``tools``).
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


def check_sent(*ups: object) -> None:
    """Every body the fakes received is a valid `ResponseCreateParams`."""
    for up in ups:
        for r in up.received:  # type: ignore[attr-defined]
            assert r.body is not None
            openai_responses_request(r.body)


async def drain(stream: ResponseStream) -> list[ResponseEvent]:
    return [event async for event in stream]


async def drain_into(stream: ResponseStream, got: list[ResponseEvent]) -> None:
    """Read `stream` to its end (or its error) into `got`; a stall fails after 10 s."""
    async with asyncio.timeout(10):
        async for event in stream:
            got.append(event)


async def test_plain_call_returns_a_typed_result_and_accounts_its_usage() -> None:
    async with (
        upstreams(1, reply=REPLY) as ups,
        router_over(ups, deployment={"tpm": 100_000}) as router,
    ):
        r = await router.aresponses(
            "g", "Tell me a pangram.", instructions="Be brief.", max_output_tokens=64
        )
        assert isinstance(r, ResponseResult)
        assert (r.status, r.output_text) == ("completed", REPLY)
        assert (r.deployment_id, r.group) == ("u0", "g")
        assert r.incomplete_details is None
        assert r.usage is not None
        prompt = 5 + 3  # ceil(18 / 4) for the input, ceil(10 / 4) for the instructions
        assert (r.usage.input_tokens, r.usage.output_tokens) == (prompt, 11)
        assert r.usage.cached_tokens == 0
        openai_response(r.to_dict())
        sent = ups[0].received[0]
        assert sent.path == "/v1/responses"
        assert sent.body == {
            "model": "gpt-test",
            "input": "Tell me a pangram.",
            "instructions": "Be brief.",
            "max_output_tokens": 64,
        }
        check_sent(*ups)
        u0 = router.statistics().by_id("u0")
        assert (u0.in_flight, u0.successes, u0.failures) == (0, 1, 0)
        assert (u0.input_tokens, u0.output_tokens, u0.tpm_used) == (prompt, 11, prompt + 11)


async def test_stream_yields_the_semantic_events_in_order_and_settles_with_usage() -> None:
    async with (
        upstreams(1, reply=REPLY, stream_chunks=4) as ups,
        router_over(ups, deployment={"tpm": 100_000}) as router,
    ):
        stream = await router.aresponses("g", "Tell me a pangram.", stream=True)
        assert isinstance(stream, ResponseStream)
        events = await drain(stream)
        types = [e.type for e in events]
        assert types[:4] == [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
        ]
        assert types[-4:] == [
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
        deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
        assert len(deltas) == 4
        assert "".join(d or "" for d in deltas) == REPLY
        assert [e.sequence_number for e in events] == list(range(len(events)))
        for e in events:
            openai_response_event(e.to_dict())
        assert stream.response is not None
        assert stream.response.output_text == REPLY
        assert stream.usage is not None
        assert (stream.usage.input_tokens, stream.usage.output_tokens) == (5, 11)
        check_sent(*ups)
        u0 = router.statistics().by_id("u0")
        assert (u0.in_flight, u0.successes, u0.tpm_used) == (0, 1, 16)


async def test_a_failed_deployment_is_failed_over_for_plain_calls() -> None:
    async with upstreams(2, reply=REPLY) as ups:
        ups[0].push(Fault.status(500))
        async with router_over(ups, strategy=first_candidate) as router:
            r = await router.aresponses("g", "hi")
            assert r.deployment_id == "u1"
            assert [x.status for x in ups[0].received] == [500]
            u0 = router.statistics().by_id("u0")
            assert (u0.failures, u0.in_flight) == (1, 0)


@pytest.mark.parametrize(
    "fault",
    [Fault.status(503), Fault.cut_stream(0)],
    ids=["status-503", "cut-before-first-event"],
)
async def test_a_stream_fails_over_before_its_first_event(fault: Fault) -> None:
    async with upstreams(2, reply=REPLY) as ups:
        ups[0].push(fault)
        async with router_over(ups, strategy=first_candidate) as router:
            stream = await router.aresponses("g", "hi", stream=True)
            assert stream.deployment_id == "u1"
            events = await drain(stream)
            assert events[-1].type == "response.completed"
            assert router.statistics().by_id("u0").failures == 1


async def test_an_error_event_first_fails_over_and_one_later_reaches_the_caller() -> None:
    async with upstreams(2, reply=REPLY) as ups:
        ups[0].responses.push_stream_error(0)
        async with router_over(ups, strategy=first_candidate) as router:
            stream = await router.aresponses("g", "hi", stream=True)
            assert stream.deployment_id == "u1"
            await drain(stream)
            for up in ups:
                up.responses.push_stream_error(3, "server_error", "The server had an error.")
            failed = {s.id: s.failures for s in router.statistics().deployments}
            stream = await router.aresponses("g", "hi", stream=True)
            got: list[ResponseEvent] = []
            with pytest.raises(InternalServerError, match="The server had an error"):
                await drain_into(stream, got)
            assert len(got) == 3
            served = router.statistics().by_id(stream.deployment_id)
            assert (served.failures - failed[served.id], served.in_flight) == (1, 0)


async def test_a_stream_cut_after_its_first_event_reaches_the_caller_and_counts() -> None:
    async with upstreams(2, reply=REPLY) as ups:
        ups[0].push(Fault.cut_stream(5))
        async with router_over(ups, strategy=first_candidate, clock=FakeClock()) as router:
            stream = await router.aresponses("g", "hi", stream=True)
            assert stream.deployment_id == "u0"
            got: list[ResponseEvent] = []
            with pytest.raises(StreamInterruptedError):
                await drain_into(stream, got)
            assert len(got) == 5
            assert len(ups[1].received) == 0  # no failover once the caller has events
            u0 = router.statistics().by_id("u0")
            assert (u0.failures, u0.in_flight) == (1, 0)


async def test_abandoned_stream_settles_its_reservation() -> None:
    async with upstreams(1, reply=REPLY, stream_chunks=8) as ups, router_over(ups) as router:
        async with await router.aresponses("g", "hi", stream=True) as stream:
            first = await anext(stream)
            assert first.type == "response.created"
        assert router.statistics().by_id("u0").in_flight == 0


async def test_function_call_round_trip_over_previous_response_id() -> None:
    async with upstreams(2, reply="It is sunny in Paris.") as ups, router_over(ups) as router:
        first = await router.aresponses(
            "g",
            [{"role": "user", "content": "What is the weather in Paris?"}],
            tools=[WEATHER],
        )
        (call,) = first.function_calls
        assert call["name"] == "get_weather"
        openai_response(first.to_dict())
        # A function_call_output input item:
        # https://platform.openai.com/docs/api-reference/responses/create (``input``)
        second = await router.aresponses(
            "g",
            [{"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}],
            previous_response_id=first.id,
            tools=[WEATHER],
        )
        assert second.output_text == "It is sunny in Paris."
        assert second.deployment_id == first.deployment_id
        assert second.usage is not None
        assert second.usage.cached_tokens > 0  # the conversation so far, from the cache
        check_sent(*ups)


async def test_follow_ups_stay_on_the_deployment_that_stored_the_conversation() -> None:
    async with upstreams(3, reply=REPLY) as ups, router_over(ups) as router:
        r = await router.aresponses("g", "Remember the number 7.")
        owner = r.deployment_id
        for _ in range(12):
            r = await router.aresponses("g", "And now?", previous_response_id=r.id)
            assert r.deployment_id == owner
        stream = await router.aresponses("g", "Stream it.", stream=True, previous_response_id=r.id)
        assert stream.deployment_id == owner
        await drain(stream)
        # A fake that did not store the response would have answered 400; none did,
        # and no follow-up reached another account.
        assert all(x.status == 200 for u in ups for x in u.received)
        follow_ups = [
            u.name
            for u in ups
            for x in u.received
            if x.body is not None and "previous_response_id" in x.body
        ]
        assert follow_ups == [owner] * 13


async def test_a_follow_up_whose_deployment_is_cooling_fails_clearly_and_goes_nowhere() -> None:
    async with (
        upstreams(2, reply=REPLY) as ups,
        router_over(ups, strategy=first_candidate) as router,
    ):
        r = await router.aresponses("g", "hi")
        assert r.deployment_id == "u0"
        ups[0].push(Fault.status(503), times=10)
        with pytest.raises(ResponseAffinityError) as caught:
            await router.aresponses("g", "again", previous_response_id=r.id)
        err = caught.value
        assert (err.response_id, err.deployment_id) == (r.id, "u0")
        assert "ServiceUnavailableError" in err.reason
        assert "not sent to another account" in str(err)
        assert isinstance(err.__cause__, Exception)
        # u0 is cooling now: the next follow-up is refused before any request.
        before = len(ups[0].received)
        with pytest.raises(ResponseAffinityError, match="cooling until") as again:
            await router.aresponses("g", "again", previous_response_id=r.id)
        assert again.value.retry_after is not None
        assert len(ups[0].received) == before
        assert all(
            x.body is not None and "previous_response_id" not in x.body for x in ups[1].received
        )
        # A new conversation is free to go to u1.
        fresh = await router.aresponses("g", "start over")
        assert fresh.deployment_id == "u1"


async def test_a_follow_up_moves_within_its_account_and_the_pin_can_be_given() -> None:
    async with upstreams(2, reply=REPLY) as ups:
        # Two deployments on u0's account (same address, same key), one on u1's.
        deployments = [
            Deployment(group="g", model="gpt-test", id="a1", api_base=ups[0].url, api_key=KEY),
            Deployment(group="g", model="gpt-mini", id="a2", api_base=ups[0].url, api_key=KEY),
            deployment(ups[1]),
        ]
        async with Router(deployments, seed=7) as router:
            r = await router.aresponses("g", "hi", deployment_id="a2")
            assert r.deployment_id == "a2"
            seen = set()
            for _ in range(8):
                nxt = await router.aresponses("g", "more", previous_response_id=r.id)
                seen.add(nxt.deployment_id)
            assert seen <= {"a1", "a2"}
            with pytest.raises(ValueError, match="names no deployment"):
                await router.aresponses("g", "hi", deployment_id="nope")


async def test_unstored_responses_are_not_remembered() -> None:
    async with upstreams(1, reply=REPLY) as ups, router_over(ups) as router:
        r = await router.aresponses("g", "hi", store=False)
        assert not r.stored
        assert router.responses_routes.affinity.get(r.id) is None
        stored = await router.aresponses("g", "hi")
        assert router.responses_routes.affinity.get(stored.id) == "u0"


async def test_reasoning_and_incomplete_results_are_typed() -> None:
    async with upstreams(1, reply=REPLY) as ups, router_over(ups) as router:
        r = await router.aresponses("g", "hi", reasoning={"effort": "low"}, max_output_tokens=3)
        assert r.status == "incomplete"
        assert r.incomplete_details == {"reason": "max_output_tokens"}
        assert r.usage is not None
        assert r.usage.reasoning_tokens == 8
        assert r.output[0]["type"] == "reasoning"
        assert r.usage.as_usage().completion_tokens_details is not None
        openai_response(r.to_dict())
        check_sent(*ups)


async def test_bad_calls_fail_before_any_request() -> None:
    async with upstreams(1) as ups, router_over(ups) as router:
        with pytest.raises(ValueError, match="input must not be empty"):
            await router.aresponses("g", "")
        with pytest.raises(TypeError, match="input"):
            await router.aresponses("g", ["not an item"])  # type: ignore[list-item]
        with pytest.raises(TypeError, match="unknown parameter"):
            await router.aresponses("g", "hi", messages=[])  # type: ignore[call-overload]
        assert ups[0].request_count == 0


async def test_groups_without_the_responses_api_are_refused_or_skipped() -> None:
    async with upstreams(1, reply=REPLY) as ups, FakeAnthropic(name="claude") as claude:
        deployments = [
            deployment(ups[0]),
            Deployment(
                group="claude", provider="anthropic", model="claude-sonnet-4-5", id="c",
                api_base=claude.url, api_key=KEY,
            ),
        ]  # fmt: skip
        ups[0].always(Fault.status(500))
        async with Router(deployments, fallbacks={"g": ["claude"]}) as router:
            with pytest.raises(ConfigError, match=r"c \(anthropic\)"):
                await router.aresponses("claude", "hi")
            # The chat fallback to claude is left out of a Responses call's chain.
            with pytest.raises(InternalServerError):
                await router.aresponses("g", "hi")
            assert claude.request_count == 0


async def test_a_follow_up_from_another_process_finds_the_account_holding_it() -> None:
    async with upstreams(3, reply=REPLY) as ups:
        # Another router (another process) created the conversation on u2.
        async with router_over(ups) as other:
            first = await other.aresponses("g", "hi", deployment_id="u2")
        async with router_over(ups, strategy=first_candidate) as router:
            r = await router.aresponses("g", "go on", previous_response_id=first.id)
            assert r.deployment_id == "u2"
            # u0 and u1 said they do not hold it; that is not held against them.
            assert [x.status for x in ups[0].received] == [400]
            assert [x.status for x in ups[1].received] == [400]
            stats = router.statistics()
            assert [stats.by_id(u).failures for u in ("u0", "u1", "u2")] == [0, 0, 0]
            assert [stats.by_id(u).in_flight for u in ("u0", "u1", "u2")] == [0, 0, 0]
            # Found once, remembered: the next follow-up goes straight there.
            again = await router.aresponses("g", "more", previous_response_id=r.id)
            assert again.deployment_id == "u2"
            assert len(ups[0].received) == len(ups[1].received) == 1
        check_sent(*ups)


async def test_a_follow_up_no_account_holds_is_the_callers_error() -> None:
    async with upstreams(2, reply=REPLY) as ups, router_over(ups) as router:
        with pytest.raises(BadRequestError, match="previous_response_not_found"):
            await router.aresponses("g", "hi", previous_response_id="resp_unknown")
        assert sorted(len(u.received) for u in ups) == [1, 1]


async def test_the_calls_deadline_ends_a_stalled_stream_and_a_hung_call() -> None:
    async with upstreams(1, chunk_interval=60.0) as ups, router_over(ups) as router:
        stream = await router.aresponses("g", "hi", stream=True, timeout=0.3)
        got: list[ResponseEvent] = []
        with pytest.raises(DeadlineExceededError):
            await drain_into(stream, got)
        assert [e.type for e in got] == ["response.created"]
        ups[0].always(Fault.hang())
        with pytest.raises((DeadlineExceededError, APITimeoutError)):
            await router.aresponses("g", "hi", timeout=0.3)
        u0 = router.statistics().by_id("u0")
        assert (u0.in_flight, u0.failures, u0.state) == (0, 0, "healthy")


# --- request ids, tags and metadata ---------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_events_result_and_stream_carry_the_callers_id_tags_and_metadata(
    stream: bool,
) -> None:
    hook = Recorder()
    meta = {"tenant": "acme"}
    async with (
        upstreams(1, reply=REPLY, stream_chunks=3) as ups,
        router_over(ups, hooks=[hook], deployment={"tags": ["eu"]}) as router,
    ):
        mode: dict[str, Any] = {"stream": stream}
        got: ResponseResult | ResponseStream = await router.aresponses(
            "g", "Tell me a pangram.", tags=["eu"], metadata=meta, request_id="resp-1", **mode
        )
        if isinstance(got, ResponseStream):
            assert got.request_id == "resp-1"
            await drain(got)
            assert got.response is not None
            result = got.response
        else:
            result = got
        fresh: ResponseResult | ResponseStream = await router.aresponses("g", "Again.", **mode)
        if isinstance(fresh, ResponseStream):
            await drain(fresh)
    assert result.request_id == "resp-1"
    assert "request_id" not in result.to_dict()
    openai_response(result.to_dict())
    start, start2 = hook.starts
    assert (start.request_id, start.group, start.kind, start.stream) == (
        "resp-1",
        "g",
        "responses",
        stream,
    )
    assert start.tags == {"eu"}
    assert start.metadata is meta
    ok, ok2 = hook.successes
    assert (ok.request_id, ok.group, ok.tags) == ("resp-1", "g", frozenset({"eu"}))
    assert ok.metadata is meta
    assert ok.input_tokens
    assert ok.output_tokens == 11
    assert start2.request_id == ok2.request_id == fresh.request_id != "resp-1"
    assert dict(ok2.metadata) == {}
    # The caller's metadata is interlock's: never sent to the provider.
    check_sent(*ups)
    assert all("metadata" not in (x.body or {}) for x in ups[0].received)


async def test_openais_own_metadata_goes_in_extra_body() -> None:
    # https://platform.openai.com/docs/api-reference/responses/create#responses-create-metadata
    async with upstreams(1, reply=REPLY) as ups, router_over(ups) as router:
        await router.aresponses("g", "hi", extra_body={"metadata": {"order": "42"}})
    assert (ups[0].received[0].body or {})["metadata"] == {"order": "42"}
    check_sent(*ups)


async def test_errors_carry_the_request_id() -> None:
    hook = Recorder()
    async with (
        upstreams(2, reply=REPLY, stream_chunks=6) as ups,
        router_over(ups, hooks=[hook], strategy=first_candidate) as router,
    ):
        # Cut after the first events: the caller's error.
        ups[0].push(Fault.cut_stream(2))
        stream = await router.aresponses("g", "hi", stream=True, request_id="r-cut")
        with pytest.raises(StreamInterruptedError) as cut:
            await drain(stream)
        assert cut.value.request_id == "r-cut"
        # Every deployment refuses: the last failure, with the id.
        ups[0].always(Fault.status(401))
        ups[1].always(Fault.status(401))
        with pytest.raises(InterlockError) as refused:
            await router.aresponses("g", "hi", metadata={"k": 1}, request_id="r-401")
        assert refused.value.request_id == "r-401"
        assert {f.request_id for f in hook.failures} == {"r-cut", "r-401"}
        assert all(f.metadata == {"k": 1} for f in hook.failures if f.request_id == "r-401")


async def test_an_affinity_error_carries_the_request_id() -> None:
    async with (
        upstreams(2, reply=REPLY) as ups,
        router_over(ups, strategy=first_candidate) as router,
    ):
        r = await router.aresponses("g", "hi")
        ups[0].push(Fault.status(503), times=10)
        with pytest.raises(ResponseAffinityError) as sent:
            await router.aresponses("g", "again", previous_response_id=r.id, request_id="a-1")
        assert sent.value.request_id == "a-1"
        # Refused before any request (u0 cools): the id is still on the error.
        with pytest.raises(ResponseAffinityError) as refused:
            await router.aresponses("g", "again", previous_response_id=r.id, request_id="a-2")
        assert refused.value.request_id == "a-2"


async def test_bad_request_ids_and_metadata_are_refused() -> None:
    async with upstreams(1, reply=REPLY) as ups, router_over(ups) as router:
        with pytest.raises(TypeError, match="request_id must be a str"):
            await router.aresponses("g", "hi", request_id=b"x")  # type: ignore[call-overload]
        with pytest.raises(ValueError, match="request_id must be 1 to 256"):
            await router.aresponses("g", "hi", request_id="")
        with pytest.raises(TypeError, match="metadata must be a mapping"):
            await router.aresponses("g", "hi", metadata=[("k", "v")])  # type: ignore[call-overload]
    assert ups[0].request_count == 0


async def test_a_response_and_a_finished_stream_carry_their_cost() -> None:
    # Prices per token set on the deployment: cost is the usage the response reported
    # at those prices (cached input tokens at the input price, none set apart here).
    async with FakeUpstream() as up:
        d = Deployment(
            group="g",
            model="gpt-4o",
            api_base=up.url,
            api_key="sk-test",
            input_cost_per_token=1e-6,
            output_cost_per_token=2e-6,
        )
        async with Router([d]) as router:
            r = await router.aresponses("g", input="Hi")
            assert r.usage is not None
            assert r.cost == pytest.approx(
                r.usage.input_tokens * 1e-6 + r.usage.output_tokens * 2e-6
            )
            assert "cost" not in r.to_dict()
            s = await router.aresponses("g", input="Hi", stream=True)
            async for _ in s:
                pass
            assert s.usage is not None
            assert s.cost == pytest.approx(
                s.usage.input_tokens * 1e-6 + s.usage.output_tokens * 2e-6
            )
