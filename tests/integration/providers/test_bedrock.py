"""AWS Bedrock through a real Router: Converse, ConverseStream (binary event stream),
tools, images, embeddings and errors, every request signed by botocore and checked by
FakeBedrock.

Wire shapes: Converse https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html,
ConverseStream https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html,
InvokeModel (embeddings) https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_InvokeModel.html,
SigV4 https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv.html.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest
from yarl import URL

from interlock import (
    AuthenticationError,
    ContentPolicyViolationError,
    ContextWindowExceededError,
    Deployment,
    InterlockError,
    InternalServerError,
    RateLimitError,
    RetryPolicy,
    Router,
    ServiceUnavailableError,
    StreamInterruptedError,
)
from interlock.providers.aws import FrozenCredentials, sign
from interlock.testing import FakeBedrock, Fault
from interlock.testing.eventstream import event_frame, exception_frame
from interlock.testing.fake_bedrock import TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY

USER = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
ONE_TRY = RetryPolicy(max_attempts=1, max_wait=0)
CLAUDE = "anthropic.claude-3-5-sonnet-20240620-v1:0"
SESSION = "FQoGZXIvYXdzEfake-session-token//////////"
PIXEL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "YPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def weather_calls(body: dict[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    return [("get_weather", {"city": "Paris"})] if body.get("toolConfig") else []


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Test credentials in the environment, where botocore's chain finds them; nothing
    may reach the instance metadata service."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TEST_SECRET_ACCESS_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
async def bedrock() -> AsyncIterator[FakeBedrock]:
    async with FakeBedrock(tool_calls=weather_calls, session_token=SESSION) as up:
        yield up


def dep(up: FakeBedrock, model: str = CLAUDE, **kw: Any) -> Deployment:
    return Deployment(
        group=kw.pop("group", "g"), provider="bedrock", model=model, api_base=up.url,
        aws_region="us-east-1", **kw,
    )  # fmt: skip


async def collect(stream: Any) -> tuple[str, list[Any]]:
    text, chunks = [], []
    async for chunk in stream:
        chunks.append(chunk)
        for c in chunk.choices:
            text.append(c.delta.content or "")
    return "".join(text), chunks


async def test_converse_round_trip_signed_on_the_encoded_path(bedrock: FakeBedrock) -> None:
    async with Router([dep(bedrock)], retry=ONE_TRY) as router:
        messages = [{"role": "system", "content": "Be brief."}, *USER]
        r = await router.acompletion(
            model="g", messages=messages, max_tokens=50, temperature=0.3, stop="END",
            extra_body={"additionalModelRequestFields": {"top_k": 5}},
        )  # fmt: skip
    assert r.choices[0].message.content == "Hello from FakeUpstream."
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None
    assert r.usage.completion_tokens == 6
    seen = bedrock.received[-1]
    assert seen.status == 200
    assert seen.path == f"/model/{CLAUDE}/converse"  # aiohttp decodes it for the log...
    assert seen.headers["Authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential={TEST_ACCESS_KEY_ID}/"
    )
    assert seen.headers["X-Amz-Security-Token"] == SESSION
    assert seen.body == {
        "messages": [{"role": "user", "content": [{"text": USER[0]["content"]}]}],
        "system": [{"text": "Be brief."}],
        "inferenceConfig": {"maxTokens": 50, "temperature": 0.3, "stopSequences": ["END"]},
        "additionalModelRequestFields": {"top_k": 5},
    }
    assert bedrock.signatures_rejected == 0


async def test_the_wire_path_keeps_the_encoded_colon(bedrock: FakeBedrock) -> None:
    # ...but the bytes on the wire (what was signed) carry %3A: a client that decoded
    # or re-encoded the path after signing would fail the fake's check.
    seen: list[str] = []

    async def on_request_start(session: Any, ctx: Any, params: Any) -> None:
        seen.append(params.url.raw_path)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    credentials = FrozenCredentials(TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY, SESSION)
    url = f"{bedrock.url}/model/{CLAUDE.replace(':', '%3A')}/converse"
    body = b'{"messages": [{"role": "user", "content": [{"text": "hi"}]}]}'
    headers = sign(credentials, "us-east-1", url, body, {"Content-Type": "application/json"})
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        async with session.post(URL(url, encoded=True), data=body, headers=headers) as resp:
            assert resp.status == 200
        # The same signature on a path sent with a literal ":" is another request.
        decoded = URL(url.replace("%3A", ":"), encoded=True)
        async with session.post(decoded, data=body, headers=headers) as resp:
            assert resp.status == 403
            assert resp.headers["x-amzn-ErrorType"].startswith("InvalidSignatureException")
        # And a wrong secret key is refused too.
        wrong = FrozenCredentials(TEST_ACCESS_KEY_ID, "not-the-secret", SESSION)
        bad = sign(wrong, "us-east-1", url, body, {"Content-Type": "application/json"})
        async with session.post(URL(url, encoded=True), data=body, headers=bad) as resp:
            assert resp.status == 403
    assert seen[0] == f"/model/{CLAUDE.replace(':', '%3A')}/converse"
    assert bedrock.signatures_rejected == 2


async def test_converse_stream_round_trip(bedrock: FakeBedrock) -> None:
    async with Router([dep(bedrock)], retry=ONE_TRY) as router:
        stream = await router.acompletion(model="g", messages=USER, stream=True)
        text, chunks = await collect(stream)
    assert text == "Hello from FakeUpstream."
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert stream.usage is not None
    assert stream.usage.completion_tokens == 6
    assert bedrock.received[-1].path == f"/model/{CLAUDE}/converse-stream"


async def test_tools_and_tool_results_plain_and_stream(bedrock: FakeBedrock) -> None:
    async with Router([dep(bedrock)], retry=ONE_TRY) as router:
        r = await router.acompletion(
            model="g", messages=USER, tools=[WEATHER_TOOL], tool_choice="required"
        )
        assert r.choices[0].finish_reason == "tool_calls"
        call = (r.choices[0].message.tool_calls or [])[0]
        assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
        sent = bedrock.received[-1].body
        assert sent is not None
        assert sent["toolConfig"]["toolChoice"] == {"any": {}}
        assert (
            sent["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]
            == (
                WEATHER_TOOL["function"]["parameters"]  # type: ignore[index]
            )
        )
        follow: list[dict[str, Any]] = [
            *USER,
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": '{"temp": 21}'},
        ]
        stream = await router.acompletion(
            model="g", messages=follow, tools=[WEATHER_TOOL], stream=True
        )
        _, chunks = await collect(stream)
    body = bedrock.received[-1].body
    assert body is not None
    assert body["messages"][1]["content"][0]["toolUse"]["input"] == {"city": "Paris"}
    result = body["messages"][2]["content"][0]["toolResult"]
    assert result == {"toolUseId": call["id"], "content": [{"text": '{"temp": 21}'}]}
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for c in chunk.choices:
            for tc in c.delta.tool_calls or ():
                entry = calls.setdefault(tc["index"], {"name": "", "arguments": ""})
                entry["name"] = tc.get("function", {}).get("name") or entry["name"]
                entry["arguments"] += tc.get("function", {}).get("arguments") or ""
    assert calls == {0: {"name": "get_weather", "arguments": '{"city":"Paris"}'}}


async def test_images(bedrock: FakeBedrock) -> None:
    content = [{"type": "text", "text": "What is this?"},
               {"type": "image_url", "image_url": {"url": PIXEL}}]  # fmt: skip
    async with Router([dep(bedrock)], retry=ONE_TRY) as router:
        await router.acompletion(model="g", messages=[{"role": "user", "content": content}])
    body = bedrock.received[-1].body
    assert body is not None
    image = body["messages"][0]["content"][1]["image"]
    assert image["format"] == "png"
    assert image["source"]["bytes"] == PIXEL.split(",", 1)[1]


async def consume(router: Router, stream: bool) -> None:
    if stream:
        await collect(await router.acompletion(model="g", messages=USER, stream=True))
    else:
        await router.acompletion(model="g", messages=USER)


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault.rate_limit(2), RateLimitError),
        (Fault.status(429, error_type="ModelNotReadyException"), ServiceUnavailableError),
        (Fault.status(503), ServiceUnavailableError),
        (Fault.status(500), InternalServerError),
        (Fault.context_window(), ContextWindowExceededError),
        (Fault.content_policy(), ContentPolicyViolationError),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_errors_map(
    bedrock: FakeBedrock, fault: Fault, expected: type[InterlockError], stream: bool
) -> None:
    bedrock.always(fault)
    async with Router([dep(bedrock)], retry=ONE_TRY) as router:
        with pytest.raises(expected) as info:
            await consume(router, stream)
    assert type(info.value) is expected
    assert info.value.deployment_id == "g-0"
    if fault.kind == "content_policy":
        assert "guardrail_intervened" in str(info.value)


async def test_stream_cut_and_mid_stream_exception(bedrock: FakeBedrock) -> None:
    async with Router([dep(bedrock)], retry=ONE_TRY) as router:
        bedrock.push(Fault.cut_stream(3))
        stream = await router.acompletion(model="g", messages=USER, stream=True)
        with pytest.raises(StreamInterruptedError):
            await collect(stream)
        frames = event_frame("messageStart", {"role": "assistant"}) + exception_frame(
            "throttlingException", f"slow down {SESSION}"
        )
        bedrock.push(Fault.malformed(frames, content_type="application/vnd.amazon.eventstream"))
        stream = await router.acompletion(model="g", messages=USER, stream=True)
        with pytest.raises(RateLimitError) as info:
            await collect(stream)
    assert SESSION not in str(info.value)
    assert "[redacted]" in str(info.value)


async def test_a_corrupt_event_stream_is_malformed(bedrock: FakeBedrock) -> None:
    frame = bytearray(event_frame("messageStart", {"role": "assistant"}))
    frame[-1] ^= 0xFF  # the message CRC no longer matches
    bedrock.push(Fault.malformed(bytes(frame), content_type="application/vnd.amazon.eventstream"))
    async with Router([dep(bedrock)], retry=ONE_TRY) as router:
        with pytest.raises(InterlockError, match="unreadable"):
            await router.acompletion(model="g", messages=USER, stream=True)


@pytest.mark.parametrize(
    ("model", "expected_calls"),
    [("amazon.titan-embed-text-v2:0", 3), ("cohere.embed-english-v3", 1)],
)
async def test_embeddings(bedrock: FakeBedrock, model: str, expected_calls: int) -> None:
    async with Router([dep(bedrock, model)], retry=ONE_TRY) as router:
        e = await router.aembedding(model="g", input=["a", "bb", "ccc"])
    assert [x.index for x in e.data] == [0, 1, 2]
    assert len(e.data[0].embedding) == 8
    assert bedrock.request_count == expected_calls
    assert bedrock.received[-1].path == f"/model/{model}/invoke"
    if model.startswith("amazon"):
        assert e.usage is not None
        assert e.usage.prompt_tokens == 3


async def test_explicit_keys_profile_less(
    bedrock: FakeBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.delenv("AWS_SESSION_TOKEN")
    good = dep(bedrock, aws_access_key_id=TEST_ACCESS_KEY_ID,
               aws_secret_access_key=TEST_SECRET_ACCESS_KEY, aws_session_token=SESSION)  # fmt: skip
    async with Router([good], retry=ONE_TRY) as router:
        r = await router.acompletion(model="g", messages=USER)
    assert r.choices[0].message.content
    assert TEST_SECRET_ACCESS_KEY not in repr(good)
    assert SESSION not in repr(good)


async def test_wrong_secret_is_an_authentication_error_that_never_leaks(
    bedrock: FakeBedrock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong/secret/key/ZZZZZZZZZZZZZZZZZZZZ"
    d = dep(bedrock, aws_access_key_id=TEST_ACCESS_KEY_ID, aws_secret_access_key=wrong,
            aws_session_token=SESSION)  # fmt: skip
    async with Router([d], retry=ONE_TRY) as router:
        with pytest.raises(AuthenticationError) as info:
            await router.acompletion(model="g", messages=USER)
        texts = [str(info.value), repr(info.value), "".join(
            traceback.format_exception(info.value))]  # fmt: skip
        texts += [repr(router), repr(router.deployments), repr(router.config),
                  repr(router.statistics()), repr(router.parts.transports["bedrock"])]  # fmt: skip
    assert "InvalidSignatureException" in str(info.value)
    texts += [rec.getMessage() for rec in caplog.records]
    for text in texts:
        assert wrong not in text
        assert SESSION not in text
        assert TEST_SECRET_ACCESS_KEY not in text


async def test_missing_credentials_are_an_authentication_error(
    bedrock: FakeBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var)
    async with Router([dep(bedrock)], retry=ONE_TRY) as router:
        with pytest.raises(AuthenticationError) as info:
            await router.acompletion(model="g", messages=USER)
    assert "aws credentials could not be loaded" in str(info.value)
    assert info.value.__cause__ is None
    assert bedrock.request_count == 0


@pytest.mark.parametrize("stream", [False, True])
async def test_deployment_and_call_headers_are_sent_and_signed(
    bedrock: FakeBedrock, stream: bool
) -> None:
    # Extra headers (a gateway's routing header, the call's own) go on the wire and
    # into the SigV4 signature: the fake recomputes it over every header it received.
    d = dep(bedrock, headers={"x-portkey-provider": "bedrock", "x-team": "a"})
    async with Router([d], retry=ONE_TRY) as router:
        extra = {"x-team": "b", "X-Title": "app"}
        if stream:
            s = await router.acompletion(model="g", messages=USER, stream=True, extra_headers=extra)
            await collect(s)
        else:
            await router.acompletion(model="g", messages=USER, extra_headers=extra)
    seen = bedrock.received[-1]
    assert seen.status == 200
    assert seen.headers["x-portkey-provider"] == "bedrock"
    assert seen.headers["x-team"] == "b"  # the call's wins
    assert seen.headers["X-Title"] == "app"
    signed = seen.headers["Authorization"].split("SignedHeaders=")[1].split(",")[0]
    assert {"x-portkey-provider", "x-team", "x-title"} <= set(signed.split(";"))
